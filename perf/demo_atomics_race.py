"""Lost updates without an atomic read-modify-write: a demonstration, not a test.

Two processes add 1 to one int64 of a shared-memory segment, three ways:

* ``atomic``: ``atomic_add`` (``lock xadd``);
* ``cas``: a compare-and-swap loop (``atomic_load`` + ``atomic_cas``, retried);
* ``racy``: ``atomic_load``, then ``atomic_store`` of the value + 1. Each access is atomic, so
  numba cannot fold the loop into one add (a plain ``a[0] += 1`` loop would be, and would
  "pass"), but the pair is not: an add of the other process between the two is lost.

Each worker spins on a shared start flag, then adds until it has done ``--adds`` *and* has
seen the other worker do as many, so the loops overlap for a while even on a busy machine. The
expected total is the sum of the iterations both workers record. ``atomic`` and ``cas`` end at
exactly that total in every run (tests/ipc/test_atomics.py asserts it); ``racy`` loses updates
whenever the two loops overlap or one is preempted between its load and its store, which is
why every shared counter of stratabatch uses ``atomic_add``. How many it loses, and whether it
loses any at all (a run the scheduler serialized loses none), is up to the scheduler: that is
why this lives in perf/ and not in the test suite.

Usage: python perf/demo_atomics_race.py [--adds 250000] [--repeats 3] [--kinds atomic,cas,racy]
                                        [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid

import numpy as np
from numba import njit

from stratabatch.ipc.atomics import atomic_add, atomic_cas, atomic_load, atomic_store
from stratabatch.ipc.segment import Segment, segment_name

MAGIC = b"SBRACE01"
# Slots of the shared int64 array, each on its own cache line (8 int64 = 64 bytes).
START, READY, COUNTER, INTERLEAVED, PROG = 0, 8, 16, 24, 32  # PROG: two slots, 32 and 40
SLOTS = 48
KINDS = {"atomic": 0, "cas": 1, "racy": 2}
WAIT_S = 300.0


@njit(cache=True)
def _spin_until_start(a):
    atomic_add(a, READY, 1)
    while atomic_load(a, START) == 0:
        pass


@njit(cache=True)
def _run(a, me, kind, n, cap):
    mine = PROG + 8 * me
    other = PROG + 8 * (1 - me)
    interleaved = 0
    prev = -2
    i = 0
    while i < cap:
        if kind == 0:
            old = atomic_add(a, COUNTER, 1)
            if old != prev + 1 and prev != -2:
                interleaved += 1  # the other process added in between: the loops overlapped
            prev = old
        elif kind == 1:
            while True:
                cur = atomic_load(a, COUNTER)
                if atomic_cas(a, COUNTER, cur, cur + 1) == cur:
                    break
        else:
            v = atomic_load(a, COUNTER)
            # extra loads (START is 1: they add nothing) widen the window between load and store
            for _ in range(8):
                v += atomic_load(a, START) - 1
            atomic_store(a, COUNTER, v + 1)
        i += 1
        if (i & 1023) == 0:
            atomic_store(a, mine, i)
            if i >= n and atomic_load(a, other) >= n:
                break
    atomic_store(a, mine, i)
    atomic_add(a, INTERLEAVED, interleaved)
    return i


def _warm() -> None:
    a = np.zeros(SLOTS, np.int64)
    for kind in KINDS.values():
        _run(a, 0, kind, 1, 1)
    a[START] = 1
    _spin_until_start(a)


def worker(name: str, me: int, kind: int, n: int) -> None:
    """One racer (runs in a child process): attach, wait for the start flag, add."""
    seg = Segment.attach(name, magic=MAGIC, version=1)
    try:
        a = seg.array(np.int64, 0, SLOTS)
        _warm()  # compiled (or loaded from numba's cache) before the start line
        _spin_until_start(a)
        _run(a, me, kind, n, 50 * n)
    finally:
        seg.close()


def race(kind: str, n: int) -> dict[str, float]:
    """Two processes add to one counter; returns the counter, the expected total and more."""
    name = segment_name(f"race{uuid.uuid4().hex[:8]}", kind)
    code = (
        "import sys; from stratabatch.perf.demo_atomics_race import worker; "
        f"worker({name!r}, int(sys.argv[1]), {KINDS[kind]}, {n})"
    )
    with Segment.create(name, SLOTS * 8, magic=MAGIC, version=1) as seg:
        a = seg.array(np.int64, 0, SLOTS)
        procs = [subprocess.Popen([sys.executable, "-c", code, str(me)]) for me in range(2)]
        try:
            deadline = time.monotonic() + WAIT_S
            while atomic_load(a, READY) < 2:
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError("a worker died before the start")
                if time.monotonic() > deadline:
                    raise RuntimeError("the workers never reached the start line")
                time.sleep(0.001)
            t0 = time.perf_counter_ns()
            atomic_store(a, START, 1)
            codes = [p.wait(WAIT_S) for p in procs]
            elapsed_ns = time.perf_counter_ns() - t0
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        if codes != [0, 0]:
            raise RuntimeError(f"a worker failed: exit codes {codes}")
        total, expected = int(a[COUNTER]), int(a[PROG] + a[PROG + 8])
        return {
            "counter": total,
            "expected": expected,
            "lost": expected - total,
            "lost_pct": 100.0 * (expected - total) / expected,
            "interleavings": int(a[INTERLEAVED]),
            "ms": elapsed_ns / 1e6,
        }


def main(argv: list[str] | None = None) -> int:
    """Run each kind ``--repeats`` times and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adds", type=int, default=250_000, help="adds per worker, at least")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--kinds", default="atomic,cas,racy", help="comma-separated, from " + ", ".join(KINDS)
    )
    parser.add_argument("--json", metavar="FILE", help="also write the runs as JSON")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or args.adds < 1 or args.repeats < 1:
        parser.error(f"kinds from {', '.join(KINDS)} (got {unknown}), adds and repeats >= 1")
    _warm()  # compile once here: the workers load the kernels from numba's cache
    race(kinds[0], 1024)  # warm-up: process start, attach, cache load
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    for rep in range(args.repeats):
        for kind in kinds:
            runs[kind].append(race(kind, args.adds))
        print(f"repeat {rep + 1}/{args.repeats} done", file=sys.stderr)
    print(
        f"two processes, >= {args.adds:,} adds each, {args.repeats} repeats (medians; "
        f"runs lost: runs that lost any update / all runs; overlaps: adds by the other "
        f"process seen between two of one's own)"
    )
    print(
        f"{'kind':<8} {'expected':>12} {'counter':>12} {'lost':>10} {'lost %':>8} "
        f"{'runs lost':>10} {'overlaps':>10} {'ms':>8}"
    )
    for kind, rs in runs.items():
        med = {f: statistics.median(r[f] for r in rs) for f in rs[0]}
        lossy = sum(r["lost"] > 0 for r in rs)
        overlaps = f"{med['interleavings']:,.0f}" if kind == "atomic" else "-"
        print(
            f"{kind:<8} {med['expected']:>12,.0f} {med['counter']:>12,.0f} "
            f"{med['lost']:>10,.0f} {med['lost_pct']:>8.2f} {f'{lossy}/{len(rs)}':>10} "
            f"{overlaps:>10} {med['ms']:>8.1f}"
        )
    bad = [k for k in ("atomic", "cas") if k in runs and any(r["lost"] for r in runs[k])]
    if bad:
        print(f"ERROR: {', '.join(bad)} lost updates", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"adds": args.adds, "repeats": args.repeats, "runs": runs}, f, indent=2)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
