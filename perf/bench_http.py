"""Benchmark: the FastAPI example with the engine against the same app without batching, over HTTP.

One HTTP load generator, ``wrk`` (``--connections`` 64, ``--threads`` 1, ``--latency``), POSTs
JSON ``{"query": ...}`` to ``/api/query``. Servers (``--workers`` uvicorn workers each, 2):

* **engine**: ``uvicorn examples.fastapi_app:app`` with ``STRATABATCH_ENGINE`` naming a
  ``stratabatch-engine`` (``--dedup-strategy exact --window-ms 1 --max-size 32``) that runs the
  scenario's handler;
* **unbatched**: ``uvicorn stratabatch.perf.http_apps:app``: the example's own app and route,
  its ``stratabatch.connect()`` replaced by a direct call of the same handler with a batch of one
  (``perf/http_apps.py``);
* **mosec** (scenario a only, when ``mosec`` is installed): the same answer on mosec with its
  dynamic batching (max_batch_size 32, max_wait_time 1 ms), POSTed to ``/inference``.

Scenarios, each with its own servers, the systems alternating (round-robin), medians of
``--repeats`` runs of ``--duration`` seconds after a warm-up run:

* **(a) distinct**: every request a new text; the example's ``answer_batch`` as the handler.
  Target: the engine's server CPU per request <= 1.15x the unbatched app's.
* **(b) 40% duplicates**: 40% of the requests repeat one of the last 64 new texts sent (most
  of them still being answered: twins a batcher can merge); the handler is
  the simulated backend of ``perf/backend.py`` (30 ms + 3 ms per item a call, 4 calls at once:
  the engine's one backend gets 4, each unbatched worker 4 / workers, so both apps hold the same
  4 backend slots in all). Targets: more req/s and fewer backend items than the unbatched app.

Server CPU: every process of the server (the uvicorn master and workers, the engine, mosec's
processes), per thread from ``/proc/PID/task/TID/schedstat``, over the wrk run, divided by the
requests wrk completed (the engine's own share beside it: "of it engine"). App wakes/req:
the voluntary context switches of the app's processes (uvicorn's, not the engine's) per
request, each a sleep something had to end (a socket, a doorbell, a timer); engine wakes/req:
the engine process's own. Backend items:
counted by the handler in every process, over the same run; items/req divides them by the
requests wrk completed (both apps serve different numbers of requests in the same time, so the
totals are not comparable).

``wrk`` is required and never installed by this script: ``apt-get install wrk`` (Debian,
Ubuntu), ``brew install wrk`` (macOS). Without it the script says so and exits 2.

Usage::

    python perf/bench_http.py [--quick] [--duration 5] [--repeats 3] [--workers 2]
                              [--connections 64] [--scenarios a,b] [--no-mosec] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from stratabatch.perf.backend import ENV_VAR, CostModel
from stratabatch.perf.benchutil import (
    ROOT,
    Cleanup,
    Engine,
    cpu_delta_s,
    descendants,
    kill_tree,
    load_average,
    median_of,
    print_targets,
    stop_process,
    tree_cpu_s,
)
from stratabatch.perf.http_apps import read_counts

WRK_SCRIPT = r"""
-- wrk script of perf/bench_http.py; args: duplicate fraction, path, seed. A duplicate repeats
-- one of the last 64 new texts this thread sent: with 64 connections those are mostly still
-- being answered, so a batcher can merge them (a twin that arrives after its original was
-- answered is a cache's business, not a batcher's).
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  dups = tonumber(args[1])
  path = args[2]
  seed = args[3]
  counter = 0
  recent = {}
  math.randomseed(tonumber(seed) * 1000 + tid)
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
function request()
  local q
  if #recent > 0 and math.random() < dups then
    q = recent[math.random(1, #recent)]
  else
    counter = counter + 1
    q = "q " .. seed .. "-" .. tid .. "-" .. counter
    recent[(counter - 1) % 64 + 1] = q
  end
  return wrk.format(nil, path, nil, '{"query": "' .. q .. '"}')
end
"""

SCENARIOS = {
    "a": ("distinct, no-op", 0.0),
    "b": ("40% duplicates, simulated backend", 0.4),
}


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One HTTP server under test: its processes, its port, its path, its counters folder."""

    def __init__(self, label: str, path: str, counts: str | None) -> None:
        self.label, self.path, self.counts = label, path, counts
        self.port = free_port()
        self.procs: list[subprocess.Popen[Any]] = []
        self.engine: Engine | None = None

    @property
    def pids(self) -> list[int]:
        """Root pids of the server's process trees."""
        return [p.pid for p in self.procs] + ([self.engine.pid] if self.engine else [])

    def spawn(self, cmd: list[str], env: dict[str, str], log: Path) -> None:
        """Start one process of the server, its output into ``log``."""
        with open(log, "ab") as out:
            self.procs.append(
                subprocess.Popen(
                    cmd, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
                )
            )

    def wait_ready(self, timeout_s: float = 60) -> None:
        """Until a request is answered with 200 (each worker connects on its first request)."""
        end = time.monotonic() + timeout_s
        body = json.dumps({"query": "ready?"}).encode()
        while True:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{self.port}{self.path}",
                    data=body,
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(req, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            dead = [p.args for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > end:
                raise RuntimeError(f"{self.label} did not start: {dead or 'timeout'}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop every process of the server (SIGTERM, then SIGKILL of what is left)."""
        for p in self.procs:
            stop_process(p)
            kill_tree(p.pid)
        if self.engine is not None:
            self.engine.stop()


def start_servers(
    scenario: str, a: argparse.Namespace, tmp: Path, cleanup: Cleanup
) -> list[Server]:
    """The scenario's servers, started and answering."""
    uvicorn = [sys.executable, "-m", "uvicorn", "--workers", str(a.workers)]
    uvicorn += ["--no-access-log", "--log-level", "warning", "--host", "127.0.0.1"]
    path = [os.environ.get("PYTHONPATH", ""), str(ROOT)]  # a set PYTHONPATH goes first
    env: dict[str, str] = {"PYTHONPATH": os.pathsep.join(p for p in path if p)}
    if scenario == "a":
        handler = "examples.fastapi_app:answer_batch"
        engine_env: dict[str, str] = {}
        app_env = {"BENCH_HTTP_HANDLER": handler}
    else:
        handler = "stratabatch.perf.http_apps:sim_handler"
        model = CostModel()
        per_worker = CostModel(
            model.overhead_ms, model.per_item_ms, max(1, model.concurrency // a.workers)
        )
        engine_env = {ENV_VAR: model.to_env()}
        app_env = {"BENCH_HTTP_HANDLER": handler, ENV_VAR: per_worker.to_env()}
    servers = []

    counted = scenario == "b"
    engine = Server("engine", "/api/query", str(tmp / "engine-counts") if counted else None)
    cleanup.add(engine.stop)
    if engine.counts:
        os.makedirs(engine.counts)
        engine_env["BENCH_HTTP_COUNTS"] = engine.counts
    options = ["--dedup-strategy", "exact", "--window-ms", "1", "--max-size", "32"]
    if scenario == "b":
        options += ["--max-inflight-batches", "4"]
    name = f"bench-http-{os.getpid()}-{scenario}"
    engine.engine = Engine(name, handler, options, cleanup, {**env, **engine_env})
    engine.spawn(
        [*uvicorn, "--port", str(engine.port), "examples.fastapi_app:app"],
        {**env, "STRATABATCH_ENGINE": name},
        tmp / "engine-app.log",
    )
    servers.append(engine)

    plain = Server("unbatched", "/api/query", str(tmp / "plain-counts") if counted else None)
    cleanup.add(plain.stop)
    if plain.counts:
        os.makedirs(plain.counts)
        app_env["BENCH_HTTP_COUNTS"] = plain.counts
    plain.spawn(
        [*uvicorn, "--port", str(plain.port), "stratabatch.perf.http_apps:app"],
        {**env, **app_env},
        tmp / "unbatched-app.log",
    )
    servers.append(plain)

    if scenario == "a" and a.mosec:
        mosec = Server("mosec", "/inference", None)
        cleanup.add(mosec.stop)
        mosec.spawn(
            [
                sys.executable,
                "-m",
                "stratabatch.perf.http_mosec",
                "--port",
                str(mosec.port),
                "--path",
                str(tmp / "mosec"),
                "--log-level",
                "warning",
            ],
            env,
            tmp / "mosec.log",
        )
        servers.append(mosec)
    for s in servers:
        s.wait_ready()
    return servers


def run_wrk(
    server: Server, a: argparse.Namespace, dups: float, seconds: float, seed: int, script: Path
) -> dict[str, float]:
    """One wrk run against ``server``; req/s, latency, server CPU per request, backend items."""
    cmd = ["wrk", "-t", str(a.threads), "-c", str(a.connections), "-d", f"{seconds:g}s"]
    cmd += ["--latency", "-s", str(script), f"http://127.0.0.1:{server.port}"]
    cmd += ["--", f"{dups:g}", server.path, str(seed)]
    counts0 = read_counts(server.counts) if server.counts else (0, 0)
    before = tree_cpu_s(server.pids)
    eng_pids = [server.engine.pid] if server.engine is not None else []
    eng_before = tree_cpu_s(eng_pids)
    app_pids = [p.pid for p in server.procs]
    wakes0, eng_wakes0 = sleeps(app_pids), sleeps(eng_pids)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    wakes, eng_wakes = sleeps(app_pids) - wakes0, sleeps(eng_pids) - eng_wakes0
    cpu = cpu_delta_s(before, tree_cpu_s(server.pids))
    eng_cpu = cpu_delta_s(eng_before, tree_cpu_s(eng_pids)) if eng_pids else float("nan")
    counts1 = read_counts(server.counts) if server.counts else (0, 0)
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "p99_ms": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "requests": requests,
        "server_cpu_us": cpu / max(requests, 1) * 1e6,
        # of it, the engine process's own (the rest: the app's workers and uvicorn)
        "engine_cpu_us": eng_cpu / max(requests, 1) * 1e6,
        "server_cpu_pct": cpu / seconds * 100,
        # sleeps of the app's processes (the engine's not counted) per request
        "app_wakes": wakes / max(requests, 1),
        # the engine process's sleeps per request (a doorbell or a timer ended each)
        "engine_wakes": eng_wakes / max(requests, 1) if eng_pids else float("nan"),
        "backend_items": counts1[1] - counts0[1] if server.counts else float("nan"),
        "backend_calls": counts1[0] - counts0[0] if server.counts else float("nan"),
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0,
    }


def sleeps(pids: list[int]) -> int:
    """Voluntary context switches so far of every thread in the process trees rooted at
    ``pids``: each is a sleep (in epoll, a lock, a read) that something had to wake."""
    total = 0
    for root in pids:
        for pid in descendants(root):
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    with open(f"/proc/{pid}/task/{tid}/status") as f:
                        for line in f:
                            if line.startswith("voluntary_ctxt_switches"):
                                total += int(line.split()[1])
                except OSError:
                    pass
    return total


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios, print the tables and the targets, write JSON."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = ap.add_argument
    add("--quick", action="store_true", help="short run: 2 s runs, 2 rounds")
    add("--duration", type=float, help="seconds of each wrk run (5; --quick 2)")
    add("--repeats", type=int, help="measured rounds; the median is reported (3; --quick 2)")
    add("--workers", type=int, default=2, help="uvicorn workers of each app (2)")
    add("--connections", type=int, default=64, help="wrk connections (64)")
    add("--threads", type=int, default=1, help="wrk threads (1)")
    add("--scenarios", default="a,b", help="a (distinct, no-op), b (40%% duplicates), or a,b")
    add("--no-mosec", dest="mosec", action="store_false", help="leave mosec out")
    add("--json", metavar="FILE", help="write every figure as JSON")
    a = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        print(
            "bench_http needs the wrk HTTP load generator, which is not installed: "
            "apt-get install wrk (Debian, Ubuntu), brew install wrk (macOS), or build it from "
            "https://github.com/wg/wrk",
            file=sys.stderr,
        )
        return 2
    mosec_note = None
    if a.mosec:
        try:
            import mosec  # noqa: F401
        except ImportError:
            a.mosec = False
            mosec_note = "mosec is not installed (pip install mosec): skipped"
    seconds = a.duration or (2.0 if a.quick else 5.0)
    repeats = a.repeats or (2 if a.quick else 3)
    load0 = load_average()
    print(f"bench_http: {load0}", flush=True)
    print(
        f"wrk {a.threads} thread(s), {a.connections} connections, {seconds:g} s per run; "
        f"uvicorn {a.workers} workers; median of {repeats} rounds (round-robin) after a warm-up",
        flush=True,
    )
    if mosec_note:
        print(mosec_note)
    results: dict[str, Any] = {}
    rows: list[tuple[str, str, str, bool | None]] = []
    with Cleanup() as cleanup, tempfile.TemporaryDirectory(prefix="bench-http-") as tmpdir:
        tmp = Path(tmpdir)
        script = tmp / "post.lua"
        script.write_text(WRK_SCRIPT)
        for scenario in a.scenarios.split(","):
            title, dups = SCENARIOS[scenario]
            servers = start_servers(scenario, a, tmp, cleanup)
            runs: dict[str, list[dict[str, float]]] = {s.label: [] for s in servers}
            for rnd in range(repeats + 1):
                for i, server in enumerate(servers):
                    r = run_wrk(server, a, dups, seconds if rnd else 1.0, rnd * 10 + i, script)
                    label = f"round {rnd}" if rnd else "warm-up"
                    print(
                        f"{scenario} {label:>8} {server.label:<10}{r['rps']:>9,.0f} req/s  p99 "
                        f"{r['p99_ms']:8.2f} ms  server CPU {r['server_cpu_us']:7.1f} us/req"
                        f"  app wakes/req {r['app_wakes']:5.2f}"
                        f"  engine wakes/req {r['engine_wakes']:5.2f}"
                        f"  items {r['backend_items']:>7}",
                        file=sys.stderr,
                        flush=True,
                    )
                    if rnd:
                        runs[server.label].append(r)
            for server in servers:
                server.stop()
            med = {label: median_of(rs) for label, rs in runs.items()}
            base = med["unbatched"]
            print(f"\n({scenario}) {title}: medians of {repeats} rounds")
            print(
                f"{'server':<11}{'req/s':>9}{'x unbatched':>13}{'p50 ms':>9}{'p99 ms':>9}"
                f"{'server CPU us/req':>19}{'x unbatched':>13}{'items/req':>11}"
                f"{'of it engine':>14}{'app wakes/req':>15}{'engine wakes/req':>18}"
            )
            for label, r in med.items():
                r["x_unbatched_rps"] = r["rps"] / base["rps"]
                r["x_unbatched_cpu"] = r["server_cpu_us"] / base["server_cpu_us"]
                r["items_per_request"] = r["backend_items"] / max(r["requests"], 1)
                per = r["items_per_request"]
                items = "" if per != per else f"{per:.2f}"  # NaN: not counted
                print(
                    f"{label:<11}{r['rps']:>9,.0f}{r['x_unbatched_rps']:>12.2f}x"
                    f"{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['server_cpu_us']:>19.1f}"
                    f"{r['x_unbatched_cpu']:>12.2f}x{items:>11}"
                    + (
                        f"{'':>14}"
                        if r["engine_cpu_us"] != r["engine_cpu_us"]
                        else f"{r['engine_cpu_us']:>14.1f}"
                    )
                    + f"{r['app_wakes']:>15.2f}"
                    + (f"{ew:>18.2f}" if (ew := r["engine_wakes"]) == ew else "")
                )
            bad = {k: sum(x["non_2xx"] + x["socket_errors"] for x in v) for k, v in runs.items()}
            if any(bad.values()):
                print(f"non-2xx responses or socket errors: {bad}")
            results[scenario] = {"title": title, "medians": med, "runs": runs}
            e = med["engine"]
            if scenario == "a":
                x = e["x_unbatched_cpu"]
                target = "(a) distinct: server CPU/req vs unbatched"
                rows.append((target, f"{x:.2f}x", "<= 1.15x", x <= 1.15))
                if "mosec" in med:
                    xm = e["rps"] / med["mosec"]["rps"]
                    rows.append(("(a) distinct: req/s vs mosec", f"{xm:.2f}x", "reported", None))
            else:
                x = e["x_unbatched_rps"]
                rows.append(("(b) 40% dups: req/s vs unbatched", f"{x:.2f}x", "> 1x", x > 1))
                per_e, per_u = e["items_per_request"], base["items_per_request"]
                rows.append(
                    (
                        "(b) 40% dups: backend items / request",
                        f"{per_e:.2f} / {per_u:.2f}",
                        "fewer",
                        per_e < per_u,
                    )
                )
    load1 = load_average()
    print(f"\n{load1} at the end")
    targets = print_targets(rows)
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                {
                    "scenarios": results,
                    "targets": targets,
                    "load_average": {"start": load0, "end": load1},
                    "skipped": mosec_note,
                    "settings": {**vars(a), "duration": seconds, "repeats": repeats},
                },
                indent=1,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
