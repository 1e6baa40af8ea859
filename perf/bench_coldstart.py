"""Benchmark: cold start, with an empty numba cache and with a warm one.

Every measurement runs in a fresh process, with ``NUMBA_CACHE_DIR`` pointing at a new empty
directory ("empty") or at one a previous run filled ("warm"):

* **import**: ``import stratabatch`` (in-process time; the interpreter's own start excluded).
* **warm_up <strategy>**: an embedded ``BatchProcessor(dedup_strategy=...)``: ``await
  warm_up()``, then the first request after it (``first``: its own time, after warm_up).
* **engine <strategy>**: ``stratabatch-engine`` launched to its "ready" line, and to the
  first answer of a client that connects as soon as it is ready (both from the launch).
* **kernel groups**: with an empty cache, numba's compile time per module (``numba:compile``
  events, each kernel's own time without the kernels it compiles inside it), summed over the
  cold ``warm_up`` runs of each strategy: where a first start spends its time.
* **parallel** (``--parallel``): the default strategy's cold warm-up as it is, against two
  worker processes filling the empty cache (one per kernel module) while the main process
  waits, then its warm-up loading from the cache; both in this run.

Wall time and CPU time (user + sys of the measured process) are both reported: the machine
may be shared, and CPU time is what the work costs. Medians of ``--repeats`` runs.

Usage::

    python perf/bench_coldstart.py [--repeats 3] [--strategies exact,embedding,hybrid]
                                   [--skip-engine] [--parallel] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ("exact", "embedding", "hybrid")
_TICKS = os.sysconf("SC_CLK_TCK")


async def noop(requests: list) -> list:
    """The engine's handler in this benchmark: nothing to do."""
    return [None] * len(requests)


# ------------------------------------------------------------------ child programs

_IMPORT = """
import json, resource, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
c0, t0 = cpu(), time.perf_counter()
import stratabatch
print(json.dumps({"wall": time.perf_counter() - t0, "cpu": cpu() - c0}))
"""

_WARM_UP = """
import asyncio, json, resource, sys, threading, time
from collections import defaultdict
from numba.core import event

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

class Compiles(event.Listener):
    # each kernel's own compile time: nested compiles (callees) are taken out of the caller's
    def __init__(self):
        self.stack = defaultdict(list)
        self.own = defaultdict(float)
        self.count = defaultdict(int)
    def on_start(self, ev):
        self.stack[threading.get_ident()].append([time.perf_counter(), 0.0])
    def on_end(self, ev):
        t0, inner = self.stack[threading.get_ident()].pop()
        took = time.perf_counter() - t0
        st = self.stack[threading.get_ident()]
        if st:
            st[-1][1] += took
        d = ev.data["dispatcher"]
        self.own[d.py_func.__module__] += took - inner
        self.count[d.py_func.__module__] += 1

compiles = Compiles()
event.register("numba:compile", compiles)
from stratabatch import BatchProcessor

async def handler(requests):
    return [None] * len(requests)

async def main(strategy, cold_start):
    batch = BatchProcessor(handler, dedup_strategy=strategy, cold_start=cold_start)
    c0, t0 = cpu(), time.perf_counter()
    await batch.warm_up()
    c1, t1 = cpu(), time.perf_counter()
    await batch.process([{"query": "where is my order 123"}, {"query": "Where is my order 123?"},
                         {"query": "reset my password please"}])
    c2, t2 = cpu(), time.perf_counter()
    near = None
    if batch.dedup_strategy_in_force != strategy:  # near kernels compiling in the background
        while batch.dedup_strategy_in_force != strategy:
            await asyncio.sleep(0.05)
        near = time.perf_counter() - t0
    await batch.close()
    print(json.dumps({"wall": t1 - t0, "cpu": c1 - c0, "first_wall": t2 - t1,
                      "first_cpu": c2 - c1, "near_wall": near, "groups": dict(compiles.own),
                      "kernels": dict(compiles.count)}))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""

# a worker of the parallel warm-up: loads one module's kernels the way the warm-up does
_PARALLEL_WORKER = {
    "kernels": """
import numpy as np
from stratabatch.kernels import xxh64_batch
from stratabatch.embed import default_embedder
from stratabatch.canon import canonical_texts
xxh64_batch(np.zeros(8, np.uint8), np.array([0, 8], np.int64))
emb = default_embedder()
emb.embed(["warm up", "warm-up"])
if hasattr(emb, "embed_profiled"):
    emb.embed_profiled(["warm up", "warm-up"])
canonical_texts(["warm up", "hi there"])
""",
    "index": """
from stratabatch import index
index.warm_up()
""",
}


def _env(cache: Path) -> dict[str, str]:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    env.pop("NUMBA_DISABLE_JIT", None)
    return env


def _child(code: str, args: list[str], cache: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        env=_env(cache),
        cwd=ROOT,
        timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return dict(json.loads(proc.stdout.decode().strip().splitlines()[-1]))


def _proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def _engine(strategy: str, cache: Path, name: str) -> dict[str, Any]:
    """Launch an engine; times to its ready line and to a first answer, its CPU at each."""
    import stratabatch

    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stratabatch.cli",
            "--handler",
            "perf.bench_coldstart:noop",
            "--name",
            name,
            "--dedup-strategy",
            strategy,
            "--log-level",
            "INFO",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(cache),
        cwd=ROOT,
    )
    lines: list[bytes] = []
    near_at: list[float] = []

    def read_log() -> None:
        assert proc.stderr is not None
        for ln in proc.stderr:
            lines.append(ln)
            if b"near-duplicate dedup is on" in ln:
                near_at.append(time.perf_counter() - t0)

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        t_ready = time.perf_counter() - t0
        if not line.startswith(b"stratabatch-engine ready"):
            raise RuntimeError(f"engine did not start: {line!r}")
        cpu_ready = _proc_cpu(proc.pid)
        client = stratabatch.connect(name, sync=True, timeout=60)
        try:
            client.process({"query": "where is my order 123"}, timeout=300)
            t_first = time.perf_counter() - t0
            cpu_first = _proc_cpu(proc.pid)
        finally:
            client.close()
        if any(b"in a separate process (pid" in ln for ln in lines):
            deadline = time.monotonic() + 600
            while not near_at and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(10)
    said = any(b"compiling kernels" in ln for ln in lines)
    return {
        "wall": t_ready,
        "cpu": cpu_ready,
        "first_wall": t_first,
        "first_cpu": cpu_first,
        "near_wall": near_at[0] if near_at else None,
        "announced": said,
    }


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _parallel(cache: Path) -> dict[str, Any]:
    """Two workers fill the empty cache, one per kernel module; then the warm-up loads."""
    t0, c0 = time.perf_counter(), _children_cpu()
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env=_env(cache),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for code in _PARALLEL_WORKER.values()
    ]
    for w in workers:
        _, err = w.communicate(timeout=900)
        if w.returncode != 0:
            raise RuntimeError(f"worker failed: {err.decode()[-2000:]}")
    t_workers, cpu_workers = time.perf_counter() - t0, _children_cpu() - c0
    out = _child(_WARM_UP, ["embedding", "wait"], cache)
    return {
        "wall": t_workers + out["wall"],
        "workers_wall": t_workers,
        "cpu": cpu_workers + out["cpu"],
        "main_wall": out["wall"],
    }


# ------------------------------------------------------------------ the run


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def main(argv: list[str] | None = None) -> int:
    """Run the measurements, print the tables, optionally write JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="runs per case (default 3)")
    ap.add_argument(
        "--strategies",
        default=",".join(STRATEGIES),
        help="comma-separated dedup strategies (default: all three)",
    )
    ap.add_argument("--skip-engine", action="store_true", help="no engine cases")
    ap.add_argument(
        "--parallel",
        action="store_true",
        help="also time a warm-up whose cache two worker processes fill",
    )
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args(argv)
    strategies = [s for s in args.strategies.split(",") if s]
    for s in strategies:
        if s not in STRATEGIES:
            ap.error(f"unknown strategy {s!r} (allowed: {', '.join(STRATEGIES)})")

    tmp = Path(tempfile.mkdtemp(prefix="stratabatch-coldstart-"))
    rows: list[dict[str, Any]] = []
    groups: dict[str, list[float]] = {}
    n_new = 0

    def empty() -> Path:
        nonlocal n_new
        n_new += 1
        return tmp / f"empty-{n_new}"

    def case(name: str, cache_kind: str, fn: Any) -> None:
        runs = []
        for i in range(args.repeats):
            print(
                f"  {name} ({cache_kind} cache) {i + 1}/{args.repeats} ...",
                file=sys.stderr,
                flush=True,
            )
            runs.append(fn())
        row = {"case": name, "cache": cache_kind, "runs": runs, "n": len(runs)}
        for key in ("wall", "cpu", "first_wall", "first_cpu", "near_wall"):
            row[key] = _median(runs, key)
        if any("announced" in r for r in runs):
            row["announced"] = all(r.get("announced") for r in runs)
        rows.append(row)

    try:
        warm = {s: tmp / f"warm-{s}" for s in strategies}
        for s in strategies:  # fill each warm cache once, as a build step would (not timed)
            subprocess.run(
                [sys.executable, "-m", "stratabatch.warm", "--strategy", s],
                env=_env(warm[s]),
                cwd=ROOT,
                check=True,
                capture_output=True,
                timeout=900,
            )
        case("import stratabatch", "empty", lambda: _child(_IMPORT, [], empty()))
        case("import stratabatch", "warm", lambda: _child(_IMPORT, [], warm[strategies[0]]))
        for s in strategies:

            def cold(s: str = s) -> dict[str, Any]:
                out = _child(_WARM_UP, [s, "wait"], empty())
                for mod, secs in out["groups"].items():
                    groups.setdefault(f"{s}: {mod}", []).append(secs)
                return out

            if s != "exact":  # the default: exact dedup while a child process compiles
                case(f"warm_up() {s}", "empty", lambda s=s: _child(_WARM_UP, [s, "serve"], empty()))
            case(f"warm_up() {s}{', wait' if s != 'exact' else ''}", "empty", cold)
            case(f"warm_up() {s}", "warm", lambda s=s: _child(_WARM_UP, [s, "serve"], warm[s]))
        if not args.skip_engine:
            for s in strategies:
                k = 0

                def eng(cache_of: Any, s: str = s) -> dict[str, Any]:
                    nonlocal k
                    k += 1
                    return _engine(s, cache_of(), f"coldbench-{os.getpid()}-{s[:3]}{k}")

                case(f"engine {s}", "empty", lambda eng=eng: eng(empty))
                case(f"engine {s}", "warm", lambda eng=eng, s=s: eng(lambda: warm[s]))
        parallel = None
        if args.parallel:
            runs_serial, runs_par = [], []
            for i in range(args.repeats):
                print(f"  parallel {i + 1}/{args.repeats} ...", file=sys.stderr, flush=True)
                runs_serial.append(_child(_WARM_UP, ["embedding", "wait"], empty()))
                runs_par.append(_parallel(empty()))
            parallel = {
                "serial_wall": _median(runs_serial, "wall"),
                "parallel_wall": _median(runs_par, "wall"),
                "parallel_workers_wall": _median(runs_par, "workers_wall"),
                "parallel_main_wall": _median(runs_par, "main_wall"),
                "serial": runs_serial,
                "parallel": runs_par,
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    load = os.getloadavg()
    print(
        f"\ncold start (medians of {args.repeats}; {os.cpu_count()} CPUs, load average "
        f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the end)\n"
    )
    print(
        f"{'case':<26} {'cache':<6} {'wall s':>8} {'CPU s':>7} {'first s':>8} "
        f"{'first CPU':>9} {'near on s':>9}  said"
    )
    for r in rows:

        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.2f}"

        said = {True: "yes", False: "no"}.get(r.get("announced"), "")  # type: ignore[arg-type]
        print(
            f"{r['case']:<26} {r['cache']:<6} {f(r['wall']):>8} {f(r['cpu']):>7} "
            f"{f(r['first_wall']):>8} {f(r['first_cpu']):>9} {f(r['near_wall']):>9}  {said}"
        )
    print("\n  wall/CPU: import; warm_up(); engine: launch to its ready line (CPU: the engine's)")
    print("  first: warm_up: the first request after it; engine: launch to the first answer")
    print("  near on: a first start that compiles its near-dedup kernels in a separate process")
    print("    (cold_start='serve', the default): launch or warm_up() to near dedup on")
    print("  ', wait': cold_start='wait', every kernel compiled in warm_up() (compile time)")
    print("  said: the engine logged 'compiling kernels ...' before compiling")
    table = {k: statistics.median(v) for k, v in groups.items()}
    if table:
        print("\nnumba compile time per module, empty cache (own time, median)\n")
        print(f"{'strategy: module':<40} {'compile s':>9}")
        for k, v in sorted(table.items(), key=lambda kv: -kv[1]):
            print(f"{k:<40} {v:>9.2f}")
    if parallel:
        print("\nparallel warm-up (default strategy, empty cache, medians)\n")
        print(f"  serial warm_up():                    {parallel['serial_wall']:.2f} s")
        print(
            f"  2 workers fill the cache, then load: {parallel['parallel_wall']:.2f} s "
            f"(workers {parallel['parallel_workers_wall']:.2f} s + warm_up "
            f"{parallel['parallel_main_wall']:.2f} s)"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "rows": rows,
                    "compile_by_module": table,
                    "parallel": parallel,
                    "cpus": os.cpu_count(),
                    "loadavg": load,
                },
                fh,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
