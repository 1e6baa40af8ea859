"""Atomics and fence: semantics in one process, and atomicity across real, overlapping processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from numba import njit

from stratabatch.ipc.atomics import atomic_add, atomic_cas, atomic_load, atomic_store, fence
from stratabatch.ipc.segment import Segment, segment_name
from tests.conftest import run_name

MAGIC = b"SBATOM01"
# Slots of the shared int64 array, each on its own cache line (8 int64 = 64 bytes).
START, READY, COUNTER, INTERLEAVED, PROG = 0, 8, 16, 24, 32  # PROG: two slots, 32 and 40
SLOTS = 48
N_ADDS = 500_000
HERE = os.path.dirname(os.path.abspath(__file__))


def test_semantics_int64_and_uint64():
    a = np.zeros(4, np.int64)
    assert atomic_add(a, 1, 5) == 0 and atomic_add(a, 1, -2) == 5 and a[1] == 3
    assert atomic_cas(a, 1, 3, 10) == 3 and a[1] == 10  # swapped
    assert atomic_cas(a, 1, 3, 20) == 10 and a[1] == 10  # not swapped
    atomic_store(a, 2, -7)
    assert atomic_load(a, 2) == -7
    u = np.zeros(2, np.uint64)
    atomic_store(u, 0, 2**64 - 1)
    assert atomic_load(u, 0) == 2**64 - 1
    assert atomic_add(u, 0, 1) == 2**64 - 1 and u[0] == 0  # wraps like the hardware
    fence()


def test_works_on_strided_views_and_checks_bounds():
    base = np.zeros(10, np.int64)
    view = base[::2]
    atomic_add(view, 3, 9)
    assert base[6] == 9
    with pytest.raises(IndexError):
        atomic_load(base, 10)
    with pytest.raises(IndexError):
        atomic_add(base, -1, 1)


def test_rejects_unsupported_arrays():
    from numba.core.errors import TypingError

    with pytest.raises(TypingError, match="integer"):
        atomic_add(np.zeros(2, np.float64), 0, 1)
    with pytest.raises(TypingError, match="1-D"):
        atomic_load(np.zeros((2, 2), np.int64), 0)
    ro = np.zeros(2, np.int64)
    ro.flags.writeable = False
    with pytest.raises(TypingError, match="read-only"):
        atomic_store(ro, 0, 1)


@njit(cache=True)
def _jit_uses_all(a):
    atomic_store(a, 0, 1)
    fence()
    atomic_add(a, 0, 2)
    atomic_cas(a, 0, 3, 4)
    return atomic_load(a, 0)


def test_callable_from_jitted_code():
    assert _jit_uses_all(np.zeros(1, np.uint64)) == 4
    assert _jit_uses_all(np.zeros(1, np.int64)) == 4


# ------------------------------------------------------------------ cross-process
# Each worker increments until it has done N_ADDS *and* has seen the other do as many, and (for
# atomic_add) until one of them has seen the other's adds land between two of its own: the
# loops are known to have overlapped whatever the scheduler did, because neither stops before
# that is seen (while both keep adding, it must be). The expected total is the sum of the
# iteration counts the workers record. That a non-atomic load + store loses updates under the
# same race is shown by perf/demo_atomics_race.py: whether it does in one run is up to the
# scheduler, so it is a demonstration, not a test.


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
    published = 0
    prev = -2
    i = 0
    while i < cap:
        if kind == 0:  # atomic read-modify-write
            old = atomic_add(a, COUNTER, 1)
            if old != prev + 1 and prev != -2:
                interleaved += 1  # the other process added in between: proof of overlap
            prev = old
        else:  # compare-and-swap loop
            while True:
                cur = atomic_load(a, COUNTER)
                if atomic_cas(a, COUNTER, cur, cur + 1) == cur:
                    break
        i += 1
        if (i & 1023) == 0:
            atomic_add(a, INTERLEAVED, interleaved - published)
            published = interleaved
            atomic_store(a, mine, i)
            if (
                i >= n
                and atomic_load(a, other) >= n
                and (kind != 0 or atomic_load(a, INTERLEAVED) > 0)
            ):
                break
    atomic_add(a, INTERLEAVED, interleaved - published)
    atomic_store(a, mine, i)
    return i


KINDS = {"atomic": 0, "cas": 1}
NO_CAP = 1 << 62  # the workers stop on the conditions above; a hung one is killed by _race


def _worker(name: str, me: int, kind: str, n: int) -> None:
    seg = Segment.attach(name, magic=MAGIC, version=1)
    try:
        a = seg.array(np.int64, 0, SLOTS)
        _run(np.zeros(SLOTS, np.int64), 0, KINDS[kind], 1, 1)  # compile/load before the start
        _spin_until_start(a)
        _run(a, me, KINDS[kind], n, NO_CAP)
    finally:
        seg.close()


def _race(kind: str, n: int) -> tuple[int, int, int]:
    """Two processes increment one counter; returns (counter, expected, interleavings)."""
    name = segment_name(run_name("at"), kind)
    code = (
        f"import sys; sys.path.insert(0, {HERE!r}); import test_atomics as t; "
        f"t._worker({name!r}, int(sys.argv[1]), {kind!r}, {n})"
    )
    with Segment.create(name, SLOTS * 8, magic=MAGIC, version=1) as seg:
        a = seg.array(np.int64, 0, SLOTS)
        procs = [subprocess.Popen([sys.executable, "-c", code, str(me)]) for me in range(2)]
        try:
            deadline = time.monotonic() + 120
            while atomic_load(a, READY) < 2:
                assert all(p.poll() is None for p in procs), "a worker died before the start"
                assert time.monotonic() < deadline, "workers never reached the start line"
                time.sleep(0.001)
            atomic_store(a, START, 1)
            for p in procs:
                assert p.wait(120) == 0
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        expected = int(a[PROG] + a[PROG + 8])
        assert expected >= 2 * n
        return int(a[COUNTER]), expected, int(a[INTERLEAVED])


@pytest.fixture(scope="module", autouse=True)
def _warm_cache():
    """Compile the loops once here so both workers load them from numba's cache."""
    a = np.zeros(SLOTS, np.int64)
    for kind in KINDS.values():
        _run(a, 0, kind, 1, 1)
    a[START] = 1
    _spin_until_start(a)


@pytest.mark.slow
def test_atomic_add_is_exact_across_overlapping_processes():
    total, expected, interleaved = _race("atomic", N_ADDS)
    assert total == expected
    assert interleaved > 0  # the loops really overlapped (the workers wait until they have)


@pytest.mark.slow
def test_cas_increment_is_exact_across_processes():
    total, expected, _ = _race("cas", N_ADDS // 4)
    assert total == expected
