"""Benchmark: stratabatch-engine against the mp.Queue batching server a user would write.

One run, the systems alternating (round-robin: every system once, then again), medians of
``--repeats`` rounds after a warm-up round. Workload of issue 19: a no-op handler,
``window_ms=1``, ``max_size=32``, exact dedup (about 20% duplicates: 200 popular texts),
``--clients`` client processes (4) x ``--outstanding`` requests outstanding each (64).

Systems (each a fresh set of client processes per run; the engines live for the whole run):

* **engine, asyncio clients**: ``stratabatch-engine --dedup-strategy exact``; each client process
  runs 64 asyncio tasks on uvloop, each ``await client.process(request)`` in a loop
  (``stratabatch.connect(name)``).
* **engine, sync=True clients**: the same engine; each client process runs 64 threads, each
  calling the blocking ``client.process(request)`` in a loop (``connect(name, sync=True)``): a
  threaded sync web worker. This is the target's system.
* **engine, sync=True, lists**: one thread per client process calling
  ``client.process(list of 64)`` in a loop (reported, no target).
* **engine, default embedding**: an engine with the default dedup strategy, asyncio clients.
* **mp.Queue peer**: ``stratabatch.perf.mpqueue_server``, the peer of the targets: one server
  process answering each client once per batch (one message holding all of that client's
  answers), the no-op handler called inline (a thread-pool hop per batch would only add cost
  to the peer); each client process runs the same 64 asyncio tasks on uvloop through the
  peer's ``QueueClient``, one ``put`` per request.
* **mp.Queue peer, coalescing**: the same, but the client puts each event-loop iteration's
  requests as one message (what the engine's client is meant to do too); reported beside it.
* **+ the contract's checks** (a yardstick, not a peer): the coalescing peer keeping the least
  of what the engine's contract asks per request: the request rule checked in the caller (its
  cheapest form), msgpack on the wire both ways instead of pickle (a map with non-str keys or
  an item that is no map refused in the server), the exact key normalized (case, whitespace),
  and an arrival time per message with a latency ring in the server. What it costs is what a
  contract-keeping design needs at the least; the engine's cost beyond it is its own design
  (rings, books, deadlines, fairness, stats, running-work coalescing).

Reported per system: req/s (first send to last answer, all clients), latency p50/p99 (call to
answer, in the caller), CPU us per request of the clients (each client process's whole CPU
time during the run, every thread), of the server (the engine's process tree, or the peer's
server process, from ``/proc/PID/stat``) and both together, and the ratios to the peer. Then,
on the exact engine: its CPU per request under a trickle (one client, one request at a time,
paced at one per ms), and its idle CPU with one connected idle client over ``--idle-s``
seconds. Last, two floors with no stratabatch in them (perf/floors.py): a bare uvloop server
under the same trickle (the VM's price of a window's two wake-ups), and caller threads handing
each call to a responder thread (the least a threaded blocking client pays per call). The
issue's targets are printed with measured / wanted / met, the floors beside the two they bound.

Usage::

    python perf/bench_engine.py [--quick] [--requests 40000] [--repeats 3] [--clients 4]
                                [--outstanding 64] [--json FILE]

A full run takes about 40 s on 2 shared cores (load 4); ``--quick`` about 15 s. Every engine, client
process, shared-memory segment and socket the run made is gone when it ends, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import queue
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from stratabatch.perf.benchutil import (
    Cleanup,
    Engine,
    cpu_delta_s,
    load_average,
    median_of,
    print_targets,
    proc_cpu_s,
    tree_cpu_s,
)
from stratabatch.perf.floors import handoff_floor, trickle_floor

WINDOW_MS = 1.0
MAX_SIZE = 32
HANDLER = "stratabatch.perf.bench_engine:noop"


async def noop(requests: list[Any]) -> list[Any]:
    """The engine's batch handler: one small result per request, nothing else."""
    return [1] * len(requests)


def sync_noop(requests: list[Any]) -> list[Any]:
    """The peer's batch handler: the same, blocking."""
    return [1] * len(requests)


def queries(seed: int, n: int) -> list[str]:
    """``n`` query texts, about 20% of them repeats of 200 popular ones."""
    rng = random.Random(seed)
    return [
        f"popular {rng.randrange(200)}" if rng.random() < 0.2 else f"q {seed}-{i}" for i in range(n)
    ]


# --------------------------------------------------------------------------- client processes


async def _async_callers(process: Any, qs: list[str], lat: np.ndarray, tasks: int) -> None:
    it = iter(range(len(qs)))

    async def caller() -> None:
        for i in it:
            t = time.perf_counter_ns()
            await process({"query": qs[i]})
            lat[i] = time.perf_counter_ns() - t

    await asyncio.gather(*(caller() for _ in range(tasks)))


def _thread_callers(client: Any, qs: list[str], lat: np.ndarray, threads: int) -> None:
    it = iter(range(len(qs)))

    def caller() -> None:
        for i in it:
            t = time.perf_counter_ns()
            client.process({"query": qs[i]})
            lat[i] = time.perf_counter_ns() - t

    pool = [threading.Thread(target=caller) for _ in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()


def _list_caller(client: Any, qs: list[str], lat: np.ndarray, size: int) -> None:
    for start in range(0, len(qs), size):
        t = time.perf_counter_ns()
        client.process([{"query": q} for q in qs[start : start + size]])
        lat[start : start + size] = time.perf_counter_ns() - t


def client_main(
    kind: str, target: Any, cid: int, n: int, width: int, seed: int, go: Any, out: Any
) -> None:
    """One client process: connect, warm up, say ready, run ``n`` requests on ``go``, report.

    ``kind``: ``async`` / ``sync`` / ``list`` (engine ``target`` = its name) or ``peer``
    (``target`` = (inbox, outbox)). ``width``: tasks, threads or list length.
    """
    qs = queries(seed, n)
    lat = np.zeros(n, np.int64)

    def timed(run: Any) -> tuple[float, float, float]:
        cpu0, t0 = time.process_time(), time.perf_counter()
        run()
        return t0, time.perf_counter(), time.process_time() - cpu0

    if kind in ("sync", "list"):
        import stratabatch

        client = stratabatch.connect(target, sync=True)
        client.process({"query": "hello"})
        out.put(("ready", cid))
        go.wait()
        if kind == "sync":
            t0, t1, cpu = timed(lambda: _thread_callers(client, qs, lat, width))
        else:
            t0, t1, cpu = timed(lambda: _list_caller(client, qs, lat, width))
        client.close()
    else:
        import uvloop

        async def main() -> tuple[float, float, float]:
            if kind in PEER_KINDS:
                from stratabatch.perf.mpqueue_server import QueueClient

                client: Any = QueueClient(
                    cid, *target, coalesce=kind == "coalescing", checked=kind == "checked"
                )
            else:
                import stratabatch

                client = stratabatch.connect(target)
            await client.process({"query": "hello"})
            out.put(("ready", cid))
            await asyncio.to_thread(go.wait)
            cpu0, t0 = time.process_time(), time.perf_counter()
            await _async_callers(client.process, qs, lat, width)
            t1, cpu = time.perf_counter(), time.process_time() - cpu0
            if kind in PEER_KINDS:
                await asyncio.to_thread(client.close)
            else:
                await client.close()
            return t0, t1, cpu

        t0, t1, cpu = uvloop.run(main())
    out.put(("done", (t0, t1, cpu, lat.tobytes())))


def run_clients(
    kind: str,
    target_for: Any,
    server_pids: list[int],
    a: argparse.Namespace,
    n: int,
    seed: int,
) -> dict[str, float]:
    """Run ``a.clients`` client processes of ``kind`` against the server; one run's figures."""
    ctx = mp.get_context("fork")
    go, out = ctx.Event(), ctx.Queue()
    per = n // a.clients
    procs = [
        ctx.Process(
            target=client_main,
            args=(kind, target_for(c), c, per, a.outstanding, seed * 100 + c, go, out),
            daemon=True,
        )
        for c in range(a.clients)
    ]
    try:
        for p in procs:
            p.start()
        for _ in procs:
            _get(out, procs, 120)  # ready
        before = tree_cpu_s(server_pids)
        go.set()
        runs = [_get(out, procs, 600)[1] for _ in procs]
        server_cpu = cpu_delta_s(before, tree_cpu_s(server_pids))
        for p in procs:
            p.join(30)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    total = per * a.clients
    lat = np.concatenate([np.frombuffer(r[3], np.int64) for r in runs])
    wall = max(r[1] for r in runs) - min(r[0] for r in runs)
    client_cpu = sum(r[2] for r in runs)
    return {
        "rps": total / wall,
        "p50_ms": float(np.percentile(lat, 50)) / 1e6,
        "p99_ms": float(np.percentile(lat, 99)) / 1e6,
        "client_cpu_us": client_cpu / total * 1e6,
        "server_cpu_us": server_cpu / total * 1e6,
        "total_cpu_us": (client_cpu + server_cpu) / total * 1e6,
    }


def _get(out: Any, procs: list[Any], timeout_s: float) -> Any:
    """The next message of a client; fail when a client died or nothing came in time."""
    end = time.monotonic() + timeout_s
    while True:
        try:
            return out.get(timeout=0.5)
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > end:
                raise RuntimeError(f"a client process failed (exit codes {dead})") from None


def run_peer(kind: str, a: argparse.Namespace, n: int, seed: int) -> dict[str, float]:
    """One run of the mp.Queue peer: a fresh server process and client processes."""
    from stratabatch.perf.mpqueue_server import serve

    ctx = mp.get_context("fork")
    inbox = ctx.Queue()
    outboxes = [ctx.Queue() for _ in range(a.clients)]
    server = ctx.Process(
        target=serve,
        args=(inbox, outboxes, sync_noop, WINDOW_MS, MAX_SIZE),
        kwargs={"checked": kind == "checked"},
        daemon=True,
    )
    server.start()
    try:
        return run_clients(kind, lambda c: (inbox, outboxes[c]), [server.pid], a, n, seed)
    finally:
        inbox.put(None)
        server.join(10)
        if server.is_alive():
            server.kill()
            server.join()


# --------------------------------------------------------------------------- trickle and idle


def trickle_client(name: str, n: int, out: Any) -> None:
    """One client, one request at a time, each started at the next 1 ms tick (or at once when
    the previous answer came later)."""
    import uvloop

    import stratabatch

    async def main() -> None:
        client = stratabatch.connect(name)
        await client.process({"query": "hello"})
        out.put(("ready", os.getpid()))
        t0 = start = time.perf_counter()
        cpu0 = time.process_time()
        for i in range(n):
            await client.process({"query": f"trickle {i}"})
            start += 0.001
            delay = start - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        out.put(("done", (time.perf_counter() - t0, time.process_time() - cpu0)))
        await client.close()

    uvloop.run(main())


def idle_client(name: str, out: Any, stop: Any) -> None:
    """One connected client that sends one request and then waits, idle, until ``stop``."""
    import uvloop

    import stratabatch

    async def main() -> None:
        client = stratabatch.connect(name)
        await client.process({"query": "hello"})
        out.put(("ready", os.getpid()))
        await asyncio.to_thread(stop.wait)
        await client.close()

    uvloop.run(main())


def run_trickle(engine: Engine, n: int) -> dict[str, float]:
    """Engine CPU per request under one request per ms from one sequential client."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    proc = ctx.Process(target=trickle_client, args=(engine.name, n, out), daemon=True)
    proc.start()
    try:
        _get(out, [proc], 120)
        before = tree_cpu_s([engine.pid])
        wall, client_cpu = _get(out, [proc], 120 + n / 100)[1]
        engine_cpu = cpu_delta_s(before, tree_cpu_s([engine.pid]))
        proc.join(30)
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
    return {
        "requests": n,
        "rps": n / wall,
        "engine_cpu_us": engine_cpu / n * 1e6,
        "client_cpu_us": client_cpu / n * 1e6,
    }


def run_idle(engine: Engine, seconds: float) -> dict[str, float]:
    """CPU % of the engine (and of the idle client) over ``seconds`` with one idle client."""
    ctx = mp.get_context("fork")
    out, stop = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=idle_client, args=(engine.name, out, stop), daemon=True)
    proc.start()
    try:
        client_pid = _get(out, [proc], 120)[1]
        time.sleep(0.5)  # past any spin after the hello request
        e0, c0 = tree_cpu_s([engine.pid]), proc_cpu_s(client_pid)
        time.sleep(seconds)
        engine_cpu = cpu_delta_s(e0, tree_cpu_s([engine.pid]))
        client_cpu = proc_cpu_s(client_pid) - c0
        stop.set()
        proc.join(30)
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
    return {
        "seconds": seconds,
        "engine_pct": engine_cpu / seconds * 100,
        "client_pct": client_cpu / seconds * 100,
    }


# --------------------------------------------------------------------------- main

CHECKED = "  + the contract's checks"
PEER_KINDS = ("peer", "coalescing", "checked")
SYSTEMS = {  # name: (--systems key, client kind, engine dedup strategy or None for the peer)
    "engine, asyncio clients": ("async", "async", "exact"),
    "engine, sync=True clients": ("sync", "sync", "exact"),
    "engine, sync=True, lists": ("lists", "list", "exact"),
    "engine, default embedding": ("embedding", "async", "default"),
    "mp.Queue peer": ("peer", "peer", None),
    "mp.Queue peer, coalescing": ("coalescing", "coalescing", None),
    CHECKED: ("checked", "checked", None),
}
COALESCING = "mp.Queue peer, coalescing"
SYNC = "engine, sync=True clients"
PEER = "mp.Queue peer"


def start_engine(strategy: str, cleanup: Cleanup) -> Engine:
    """An engine with the benchmark's options; ``default`` leaves the dedup strategy unset."""
    options = ["--window-ms", f"{WINDOW_MS:g}", "--max-size", str(MAX_SIZE)]
    options += ["--cold-start", "wait"]  # near dedup in force from the first request
    if strategy != "default":
        options += ["--dedup-strategy", strategy]
    name = f"bench-{os.getpid()}-{strategy}"
    return Engine(name, HANDLER, options, cleanup)


def main(argv: list[str] | None = None) -> int:
    """Run every system ``--repeats`` times round-robin, then trickle and idle; print, JSON."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = ap.add_argument
    add("--quick", action="store_true", help="short run: 8,000 requests a run, short trickle")
    add("--requests", type=int, help="requests per run, all clients (40,000; --quick 8,000)")
    add("--warmup", type=int, help="requests of the warm-up round (a quarter of --requests)")
    add("--repeats", type=int, default=3, help="measured rounds; the median is reported (3)")
    add("--clients", type=int, default=4, help="client processes (4)")
    add("--outstanding", type=int, default=64, help="requests outstanding per client (64)")
    add("--trickle", type=int, help="requests of the trickle run (3,000; --quick 1,000)")
    add("--idle-s", type=float, help="seconds of the idle measurement (5; --quick 2)")
    keys = ",".join(v[0] for v in SYSTEMS.values())
    add("--systems", default=keys, help=f"comma-separated subset of {keys} (peer always)")
    add("--json", metavar="FILE", help="write every figure as JSON")
    a = ap.parse_args(argv)
    n = a.requests or (8_000 if a.quick else 40_000)
    warm = a.warmup or max(n // 4, a.clients * a.outstanding)
    trickle_n = a.trickle or (1_000 if a.quick else 3_000)
    idle_s = a.idle_s or (2.0 if a.quick else 5.0)
    systems = [s for s, v in SYSTEMS.items() if v[0] in a.systems.split(",") or s == PEER]
    # no engine is started for a system left out
    load0 = load_average()
    print(f"bench_engine: {load0}", flush=True)
    print(
        f"no-op handler, window {WINDOW_MS:g} ms, max_size {MAX_SIZE}, ~20% duplicates, "
        f"{a.clients} client processes x {a.outstanding} outstanding, {n:,} requests per run, "
        f"median of {a.repeats} rounds (round-robin) after a warm-up round",
        flush=True,
    )
    runs: dict[str, list[dict[str, float]]] = {s: [] for s in systems}
    with Cleanup() as cleanup:
        engines = {
            strategy: start_engine(strategy, cleanup)
            for strategy in sorted({SYSTEMS[s][2] for s in systems if SYSTEMS[s][2]})
        }
        for rnd in range(a.repeats + 1):
            for i, system in enumerate(systems):
                _, kind, strategy = SYSTEMS[system]
                seed = rnd * 10 + i
                count = n if rnd else warm
                if strategy is None:
                    r = run_peer(kind, a, count, seed)
                else:
                    eng = engines[strategy]
                    r = run_clients(kind, lambda c, e=eng: e.name, [eng.pid], a, count, seed)
                label = f"round {rnd}" if rnd else "warm-up"
                print(
                    f"{label:>8} {system:<28}{r['rps']:>9,.0f} req/s  p50 {r['p50_ms']:6.2f} ms"
                    f"  p99 {r['p99_ms']:6.2f} ms  CPU us/req {r['client_cpu_us']:5.1f} + "
                    f"{r['server_cpu_us']:5.1f} = {r['total_cpu_us']:5.1f}",
                    file=sys.stderr,
                    flush=True,
                )
                if rnd:
                    runs[system].append(r)
        exact = engines.get("exact")
        trickle = run_trickle(exact, trickle_n) if exact else None
        idle = run_idle(exact, idle_s) if exact else None
    floor_trickle = trickle_floor(trickle_n) if trickle else None
    floor_handoff = handoff_floor(a.clients, a.outstanding, n) if SYNC in runs else None
    load1 = load_average()
    med = {s: median_of(runs[s]) for s in systems}
    peer = med[PEER]
    strong = med.get(COALESCING)
    for r in med.values():
        r["x_peer_rps"] = r["rps"] / peer["rps"]
        r["x_peer_cpu"] = r["total_cpu_us"] / peer["total_cpu_us"]
        if strong:
            r["x_coalescing_peer_rps"] = r["rps"] / strong["rps"]
    print(f"\nmedians of {a.repeats} rounds; CPU us per request: clients + server = total")
    print(
        f"{'system':<28}{'req/s':>9}{'x peer':>8}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'clients':>9}{'server':>8}{'total':>7}{'x peer':>8}{'x coal.':>8}"
    )
    for s in systems:
        r = med[s]
        print(
            f"{s:<28}{r['rps']:>9,.0f}{r['x_peer_rps']:>7.2f}x{r['p50_ms']:>8.2f}"
            f"{r['p99_ms']:>8.2f}"
            f"{r['client_cpu_us']:>9.1f}{r['server_cpu_us']:>8.1f}{r['total_cpu_us']:>7.1f}"
            f"{r['x_peer_cpu']:>7.2f}x" + (f"{r['x_coalescing_peer_rps']:>7.2f}x" if strong else "")
        )
    print(
        "server: the engine's process tree, or the peer's server process; clients: every "
        "client process's CPU (all threads) during the run. x peer: req/s and total CPU "
        "against the mp.Queue peer (one put per request, the targets' peer); x coal.: req/s "
        "against the peer whose client puts one message per event-loop iteration"
    )
    if trickle:
        print(
            f"trickle (exact engine, 1 client, sequential, paced 1/ms): {trickle['rps']:,.0f} "
            f"req/s, engine CPU {trickle['engine_cpu_us']:.1f} us/req, client "
            f"{trickle['client_cpu_us']:.1f} us/req over {trickle['requests']:,} requests"
        )
    if floor_trickle:
        print(
            f"floor of the trickle (a bare uvloop server: eventfd wake, 1 ms loop timer, one "
            f"task, eventfd back; no stratabatch): server CPU {floor_trickle['server_cpu_us']:.1f}"
            f" us/req at {floor_trickle['rps']:,.0f} req/s"
        )
    if floor_handoff:
        print(
            f"floor of sync=True clients ({a.clients} processes x {a.outstanding} threads handing "
            f"each call to a responder thread and blocking on a lock; no stratabatch): "
            f"{floor_handoff['cpu_us']:.1f} us/req of client CPU"
        )
    if idle:
        print(
            f"idle (exact engine, 1 connected idle client, {idle['seconds']:g} s): engine "
            f"{idle['engine_pct']:.2f} % CPU, client {idle['client_pct']:.2f} %"
        )
    print(f"{load1} at the end")
    targets = print_targets(_targets(med, trickle, idle, floor_trickle, floor_handoff))
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                {
                    "medians": med,
                    "runs": runs,
                    "trickle": trickle,
                    "idle": idle,
                    "floor_trickle": floor_trickle,
                    "floor_handoff": floor_handoff,
                    "targets": targets,
                    "load_average": {"start": load0, "end": load1},
                    "settings": {
                        **vars(a),
                        "requests": n,
                        "warmup": warm,
                        "window_ms": WINDOW_MS,
                        "max_size": MAX_SIZE,
                    },
                },
                indent=1,
            )
        )
    return 0


def _targets(
    med: dict[str, dict[str, float]],
    trickle: dict[str, float] | None,
    idle: dict[str, float] | None,
    floor_trickle: dict[str, float] | None = None,
    floor_handoff: dict[str, float] | None = None,
) -> list[tuple[str, str, str, bool | None]]:
    peer = med[PEER]
    rows: list[tuple[str, str, str, bool | None]] = []
    e = med.get("engine, asyncio clients")
    if e:
        x, p99, cpu = e["x_peer_rps"], e["p99_ms"], e["total_cpu_us"]
        rows.append(("asyncio clients: req/s vs peer", f"{x:.2f}x", ">= 3x", x >= 3))
        rows.append(
            (
                "asyncio clients: p99 vs peer",
                f"{p99:.2f} / {peer['p99_ms']:.2f} ms",
                "lower",
                p99 < peer["p99_ms"],
            )
        )
        rows.append(("asyncio clients: total CPU us/req", f"{cpu:.1f}", "<= 6", cpu <= 6))
    s = med.get(SYNC)
    if s:
        x = s["x_peer_rps"]
        rows.append(("sync=True clients: req/s vs peer", f"{x:.2f}x", ">= 1.5x", x >= 1.5))
        if floor_handoff:
            cpu = s["client_cpu_us"]
            rows.append(
                (
                    "  client CPU us/req (hand-off floor)",
                    f"{cpu:.1f} ({floor_handoff['cpu_us']:.1f})",
                    "reported",
                    None,
                )
            )
    d = med.get("engine, default embedding")
    if d:
        x = d["x_peer_rps"]
        rows.append(("default embedding: req/s vs peer", f"{x:.2f}x", "reported", None))
        rows.append(("  (dedup round 2's target)", f"{x:.2f}x", ">= 2x", x >= 2))
    if trickle:
        cpu = trickle["engine_cpu_us"]
        rows.append(("trickle 1/ms: engine CPU us/req", f"{cpu:.1f}", "<= 15", cpu <= 15))
        if floor_trickle:
            f = floor_trickle["server_cpu_us"]
            rows.append(("  floor: bare uvloop server, same trickle", f"{f:.1f}", "reported", None))
    if idle:
        pct = idle["engine_pct"]
        rows.append(("idle, 1 client: engine CPU %", f"{pct:.2f}", "< 1", pct < 1))
    return rows


if __name__ == "__main__":
    sys.exit(main())
