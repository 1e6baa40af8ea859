"""Benchmark: the multiprocess engine against the embedded processor and a mp.Queue server.

One run, peers side by side, same workload: a no-op async handler, ``window_ms=1``, exact
dedup (about 20% duplicates), 256 requests outstanding in total.

* **embedded**: one process, ``BatchProcessor`` and 256 asyncio tasks.
* **engine**: ``stratabatch-engine`` (``python -m stratabatch.cli``) and ``--clients`` client
  processes (asyncio on uvloop, ``stratabatch.connect()``), 256 / clients tasks each.
* **mp.Queue**: the plain batching server of ``stratabatch.perf.mpqueue_server`` (what a user
  would otherwise write) and as many client processes, each keeping 256 / clients requests
  outstanding from a sender thread, answers read by a second thread.
* **engine (embedding)**: the engine with the default dedup strategy.

Reported per mode (median of ``--repeats`` runs, each after a warm-up): requests per second
(all clients together, first send to last answer), latency p50/p99 (send to answer, in the
client), and the server process's CPU time per request (``/proc/PID/stat``; for the embedded
mode the whole process's). After the engine runs, its idle CPU over ``--idle-s`` seconds.

Usage::

    python perf/bench_engine.py [--requests 40000] [--repeats 3] [--clients 4] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import queue
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUTSTANDING = 256
WINDOW_MS = 1.0
_TICKS = os.sysconf("SC_CLK_TCK")


async def noop(requests: list) -> list:
    """The benchmark's batch handler: one small result per request, nothing else."""
    return [1] * len(requests)


def queries(seed: int, n: int) -> list[str]:
    """``n`` query texts, about 20% of them repeats of 200 popular ones."""
    rng = random.Random(seed)
    return [
        f"popular {rng.randrange(200)}" if rng.random() < 0.2 else f"q {seed}-{i}" for i in range(n)
    ]


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def summary(lat_ns: np.ndarray, n: int, wall_s: float, cpu_s: float) -> dict[str, float]:
    """One run's figures."""
    return {
        "rps": n / wall_s,
        "p50_ms": float(np.percentile(lat_ns, 50)) / 1e6,
        "p99_ms": float(np.percentile(lat_ns, 99)) / 1e6,
        "cpu_us_per_req": cpu_s / n * 1e6,
    }


# --------------------------------------------------------------------------- (a) embedded


async def _embedded(n: int, seed: int) -> tuple[np.ndarray, float, float]:
    import stratabatch

    qs = queries(seed, n)
    lat = np.zeros(n, np.int64)
    async with stratabatch.BatchProcessor(
        noop, window_ms=WINDOW_MS, dedup_strategy="exact"
    ) as batch:
        await batch.warm_up()
        it = iter(range(n))

        async def worker() -> None:
            for i in it:
                t = time.perf_counter_ns()
                await batch.process({"query": qs[i]})
                lat[i] = time.perf_counter_ns() - t

        cpu0 = time.process_time()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(OUTSTANDING)))
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    return lat, wall, cpu


def run_embedded(n: int, seed: int) -> dict[str, float]:
    import uvloop

    lat, wall, cpu = uvloop.run(_embedded(n, seed))
    return summary(lat, n, wall, cpu)


# --------------------------------------------------------------------------- (b) engine


def _engine_client(name: str, n: int, tasks: int, seed: int, go: Any, out: Any) -> None:
    import uvloop

    import stratabatch

    async def main() -> None:
        client = stratabatch.connect(name)
        qs = queries(seed, n)
        lat = np.zeros(n, np.int64)
        it = iter(range(n))

        async def worker() -> None:
            for i in it:
                t = time.perf_counter_ns()
                await client.process({"query": qs[i]})
                lat[i] = time.perf_counter_ns() - t

        await client.process({"query": "hello"})
        out.put(("ready", None))
        while not go.is_set():
            await asyncio.sleep(0.001)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(tasks)))
        out.put(("done", (t0, time.perf_counter(), lat.tobytes())))
        await client.close()

    uvloop.run(main())


class Engine:
    """A ``stratabatch-engine`` subprocess for the benchmark."""

    def __init__(self, strategy: str) -> None:
        self.name = f"bench-{os.getpid()}-{strategy}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stratabatch.cli",
                "--handler",
                "perf.bench_engine:noop",
                "--name",
                self.name,
                "--window-ms",
                str(WINDOW_MS),
                "--dedup-strategy",
                strategy,
                "--max-queue",
                "100000",
                "--log-level",
                "WARNING",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith(b"stratabatch-engine ready"):
            self.proc.kill()
            raise SystemExit(f"the engine did not start: {line!r}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _run_clients(
    target: Any, args_for: Any, clients: int, n: int, server_pid: int
) -> dict[str, float]:
    ctx = mp.get_context("fork")
    go, out = ctx.Event(), ctx.Queue()
    per = n // clients
    procs = [ctx.Process(target=target, args=(*args_for(c, per), go, out)) for c in range(clients)]
    for p in procs:
        p.start()
    for _ in procs:
        kind, _ = out.get(timeout=120)
        assert kind == "ready"
    cpu0 = proc_cpu_s(server_pid)
    go.set()
    runs = [out.get(timeout=600)[1] for _ in procs]
    cpu = proc_cpu_s(server_pid) - cpu0
    for p in procs:
        p.join(30)
    t0 = min(r[0] for r in runs)
    t1 = max(r[1] for r in runs)
    lat = np.concatenate([np.frombuffer(r[2], np.int64) for r in runs])
    return summary(lat, per * clients, t1 - t0, cpu)


def run_engine(eng: Engine, n: int, clients: int, seed: int) -> dict[str, float]:
    tasks = OUTSTANDING // clients
    return _run_clients(
        _engine_client,
        lambda c, per: (eng.name, per, tasks, seed * 100 + c),
        clients,
        n,
        eng.proc.pid,
    )


def idle_cpu_percent(pid: int, seconds: float) -> float:
    cpu0 = proc_cpu_s(pid)
    time.sleep(seconds)
    return (proc_cpu_s(pid) - cpu0) / seconds * 100


# --------------------------------------------------------------------------- (c) mp.Queue


def _mpq_client(
    cid: int, inbox: Any, outbox: Any, n: int, outstanding: int, seed: int, go: Any, out: Any
) -> None:
    qs = queries(seed, n)
    lat = np.zeros(n, np.int64)
    sent = np.zeros(n, np.int64)
    room = threading.Semaphore(outstanding)

    def read() -> None:
        for _ in range(n):
            rid, _res, err = outbox.get()
            lat[rid] = time.perf_counter_ns() - sent[rid]
            room.release()

    inbox.put((cid, -1, {"query": "hello"}))
    outbox.get()
    out.put(("ready", None))
    go.wait()
    reader = threading.Thread(target=read)
    reader.start()
    t0 = time.perf_counter()
    for i in range(n):
        room.acquire()
        sent[i] = time.perf_counter_ns()
        inbox.put((cid, i, {"query": qs[i]}))
    reader.join()
    out.put(("done", (t0, time.perf_counter(), lat.tobytes())))


def run_mpqueue(n: int, clients: int, seed: int) -> dict[str, float]:
    from stratabatch.perf.backend import CostModel
    from stratabatch.perf.mpqueue_server import serve

    ctx = mp.get_context("fork")
    inbox = ctx.Queue()
    outboxes = [ctx.Queue() for _ in range(clients)]
    stats = ctx.Queue()
    free = CostModel(overhead_ms=0.0, per_item_ms=0.0, concurrency=4, price_per_item_usd=0.0)
    server = ctx.Process(target=serve, args=(inbox, outboxes, WINDOW_MS, 32, free, 1.0, stats))
    server.start()
    try:
        per_outstanding = OUTSTANDING // clients
        return _run_clients(
            _mpq_client,
            lambda c, per: (c, inbox, outboxes[c], per, per_outstanding, seed * 100 + c),
            clients,
            n,
            server.pid,
        )
    finally:
        inbox.put(None)
        with_stats = None
        try:
            with_stats = stats.get(timeout=30)
        except queue.Empty:
            pass
        server.join(10)
        if server.is_alive():
            server.kill()
            server.join()
        del with_stats


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Run every mode ``--repeats`` times (round-robin), print the table, write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=40_000, help="requests per run (all clients)")
    ap.add_argument("--warmup", type=int, default=4_000, help="requests of each warm-up run")
    ap.add_argument("--repeats", type=int, default=3, help="measured runs per mode")
    ap.add_argument("--clients", type=int, default=4, help="client processes (engine, mp.Queue)")
    ap.add_argument("--idle-s", type=float, default=3.0, help="seconds of idle CPU measurement")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = ap.parse_args(argv)
    modes = ["embedded", "engine", "mp.Queue", "engine (embedding)"]
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    engines = {"engine": Engine("exact"), "engine (embedding)": Engine("embedding")}
    idle: dict[str, float] = {}
    try:
        for rep in range(args.repeats + 1):  # the first round is the warm-up
            n = args.warmup if rep == 0 else args.requests
            for mode in modes:
                seed = rep * 10 + modes.index(mode)
                if mode == "embedded":
                    r = run_embedded(n, seed)
                elif mode == "mp.Queue":
                    r = run_mpqueue(n, args.clients, seed)
                else:
                    r = run_engine(engines[mode], n, args.clients, seed)
                if rep:
                    runs[mode].append(r)
                    print(
                        f"run {rep} {mode:<20} {r['rps']:>9,.0f} req/s  p50 {r['p50_ms']:.2f}"
                        f" ms  p99 {r['p99_ms']:.2f} ms  cpu {r['cpu_us_per_req']:.1f} us/req",
                        file=sys.stderr,
                        flush=True,
                    )
        for mode, eng in engines.items():
            idle[mode] = idle_cpu_percent(eng.proc.pid, args.idle_s)
    finally:
        for eng in engines.values():
            eng.stop()
    med = {m: {k: statistics.median(r[k] for r in runs[m]) for k in runs[m][0]} for m in modes}
    peer = med["mp.Queue"]
    print(
        f"\n{args.requests:,} requests per run, {args.repeats} runs (medians), no-op handler, "
        f"window_ms={WINDOW_MS:g}, {OUTSTANDING} outstanding, {args.clients} client processes"
    )
    print(
        f"{'mode':<22}{'req/s':>10}{'x mp.Queue':>12}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'server CPU us/req':>19}"
    )
    for m in modes:
        r = med[m]
        print(
            f"{m:<22}{r['rps']:>10,.0f}{r['rps'] / peer['rps']:>12.2f}{r['p50_ms']:>9.2f}"
            f"{r['p99_ms']:>9.2f}{r['cpu_us_per_req']:>19.1f}"
        )
    print("embedded: CPU of the whole process (clients included); others: the server process")
    for m, pct in idle.items():
        print(f"{m} idle CPU over {args.idle_s:g} s: {pct:.2f} %")
    e = med["engine"]
    checks = {
        "engine >= 2x mp.Queue": e["rps"] >= 2 * peer["rps"],
        "engine p99 < mp.Queue p99": e["p99_ms"] < peer["p99_ms"],
        "engine CPU <= 6 us/request": e["cpu_us_per_req"] <= 6.0,
        "engine idle CPU < 1 %": idle["engine"] < 1.0,
    }
    print("targets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in checks.items()))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "medians": med,
                    "runs": runs,
                    "idle_cpu_pct": idle,
                    "targets": checks,
                    "args": vars(args),
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
