"""SPSC byte ring: framing, wrap-around, limits, handshake flags, and multi-process stress."""

from __future__ import annotations

import collections
import inspect
import mmap
import os
import subprocess
import sys
import time
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stratabatch.ipc.ring as ring_module
import stratabatch.ipc.wait as wait_module
from stratabatch.ipc.doorbell import Doorbell, wait_any_readable
from stratabatch.ipc.errors import FrameError, FrameTooLargeError, SegmentLayoutError
from stratabatch.ipc.ring import (
    MAX_SPIN_US,
    WRAP,
    Ring,
    frame_bytes,
    poll_any_readable,
    validate_spin_us,
)
from stratabatch.ipc.segment import Segment, segment_name
from tests.conftest import run_name

MAGIC = b"SBRTEST1"


def _pair(capacity: int = 1024, max_frame: int = 100, *, numpy_buf: bool = False):
    """A producer and a consumer view of one ring (over an mmap, or a numpy buffer)."""
    if numpy_buf:
        raw = np.zeros(Ring.nbytes(capacity) + 64, np.uint8)
        buf = memoryview(raw)[(-raw.ctypes.data) % 64 :]
    else:
        buf = memoryview(mmap.mmap(-1, Ring.nbytes(capacity)))
    prod = Ring(buf, capacity=capacity, max_frame=max_frame, init=True)
    cons = Ring(buf, capacity=capacity, max_frame=max_frame, init=False)
    return prod, cons


class CountingBell:
    def __init__(self) -> None:
        self.rings = 0

    def ring(self) -> None:
        self.rings += 1


@pytest.mark.parametrize("numpy_buf", [False, True])
def test_frames_come_out_in_order_and_the_ring_empties(numpy_buf):
    prod, cons = _pair(numpy_buf=numpy_buf)
    assert cons.empty() and cons.drain() == []
    msgs = [b"a", b"", b"hello world", bytes(range(100)), bytearray(b"xyz"), memoryview(b"mv")]
    for m in msgs:
        assert prod.try_push(m)
    assert not cons.empty()
    assert cons.used_bytes() == sum(frame_bytes(len(m)) for m in msgs)
    out = cons.drain()
    assert out == [bytes(m) for m in msgs] and all(type(x) is bytes for x in out)
    assert cons.empty() and cons.head == cons.tail == prod.head


def test_full_ring_refuses_without_writing_and_reports_false():
    prod, cons = _pair(capacity=256, max_frame=100)
    pushed = 0
    while prod.try_push(bytes([pushed]) * 60):  # 64-byte frames
        pushed += 1
    assert pushed == 4
    head = prod.head
    assert not prod.try_push(b"x")
    assert prod.head == head
    assert cons.drain(max_frames=1) == [bytes([0]) * 60]
    assert prod.try_push(b"y" * 60)  # freed space is reusable
    assert cons.drain() == [bytes([i]) * 60 for i in range(1, 4)] + [b"y" * 60]


def test_oversized_frame_refused_before_writing():
    prod, cons = _pair(capacity=1024, max_frame=100)
    assert prod.try_push(b"x" * 100)
    with pytest.raises(FrameTooLargeError, match="101 bytes.*limit of 100") as info:
        prod.try_push(b"x" * 101)
    assert (info.value.size, info.value.limit) == (101, 100)
    assert isinstance(info.value, ValueError)
    assert cons.drain() == [b"x" * 100]


def test_wrap_marker_skips_the_tail_gap():
    prod, cons = _pair(capacity=256, max_frame=100)
    for _ in range(3):
        assert prod.try_push(b"a" * 60)  # 3 x 64 bytes: offset 192
    assert len(cons.drain()) == 3
    assert prod.try_push(b"b" * 70)  # 80 bytes do not fit in the last 64: wrap to offset 0
    assert prod.head == 192 + 64 + 80
    assert cons._d32[192 // 4] == WRAP
    assert cons.drain() == [b"b" * 70]
    # the gap counts against free space: with the tail at 192 a frame needing the gap fails
    for _ in range(2):
        assert prod.try_push(b"c" * 60)
    assert cons.drain() == [b"c" * 60] * 2


def test_push_many_stops_when_full_and_publishes_once():
    prod, cons = _pair(capacity=256, max_frame=100)
    assert prod.push_many([b"q" * 60] * 10) == 4
    assert cons.drain() == [b"q" * 60] * 4
    with pytest.raises(FrameTooLargeError, match="frame 1 "):
        prod.push_many([b"ok", b"x" * 101, b"never"])
    assert cons.drain() == [b"ok"]  # the frame before the refused one is published


def test_constructor_validation():
    buf = memoryview(mmap.mmap(-1, Ring.nbytes(1024) + 64))
    with pytest.raises(ValueError, match="power of two"):
        Ring(buf, capacity=1000, max_frame=10, init=True)
    with pytest.raises(ValueError, match=r"max_frame must be in \[1, 508\]"):
        Ring(buf, capacity=1024, max_frame=509, init=True)
    with pytest.raises(ValueError, match="max_frame"):
        Ring(buf, capacity=1024, max_frame=0, init=True)
    with pytest.raises(ValueError, match="needs"):
        Ring(buf[: Ring.nbytes(1024) - 1], capacity=1024, max_frame=10, init=True)
    with pytest.raises(ValueError, match="aligned"):
        Ring(buf[8:], capacity=1024, max_frame=10, init=True)
    with pytest.raises(ValueError, match="writable"):
        Ring(bytes(Ring.nbytes(1024)), capacity=1024, max_frame=10, init=True)
    assert Ring(buf, capacity=1024, max_frame=508, init=True).max_frame == 508


def test_attach_checks_header():
    buf = memoryview(mmap.mmap(-1, Ring.nbytes(1024)))
    with pytest.raises(SegmentLayoutError, match="ring header"):
        Ring(buf, capacity=1024, max_frame=100, init=False)  # never initialised
    Ring(buf, capacity=1024, max_frame=100, init=True)
    with pytest.raises(SegmentLayoutError, match="ring header"):
        Ring(buf, capacity=1024, max_frame=200, init=False)
    with pytest.raises(SegmentLayoutError, match="ring header"):
        Ring(buf, capacity=512, max_frame=100, init=False)


def test_attach_resumes_positions():
    prod, cons = _pair()
    prod.try_push(b"one")
    cons.drain()
    prod.try_push(b"two")
    new_cons = Ring(prod._mv, capacity=1024, max_frame=100, init=False)  # a restarted consumer
    assert new_cons.drain() == [b"two"]
    new_prod = Ring(prod._mv, capacity=1024, max_frame=100, init=False)  # a restarted producer
    new_prod.try_push(b"three")  # continues after the published head
    assert new_cons.drain() == [b"three"]


def test_corrupt_frames_raise_frame_error():
    prod, cons = _pair(capacity=256, max_frame=100)
    prod.try_push(b"x" * 10)
    prod._d32[0] = 5000  # a length over the limit
    with pytest.raises(FrameError, match="claims 5000 bytes"):
        cons.drain()

    prod, cons = _pair(capacity=256, max_frame=100)
    prod.try_push(b"x" * 10)
    prod._d32[0] = 90  # within the limit but past the published head
    with pytest.raises(FrameError, match="claims 90"):
        cons.drain()

    prod, cons = _pair(capacity=256, max_frame=100)
    prod._h64[0] = 10_000  # head further ahead than the ring holds
    with pytest.raises(FrameError, match="head 10000"):
        cons.drain()

    prod, cons = _pair(capacity=256, max_frame=100)
    prod.try_push(b"x")
    prod._d32[0] = WRAP  # a wrap marker at offset 0 jumps 256 bytes, past head 8
    with pytest.raises(FrameError, match="wrap marker"):
        cons.drain()


def test_consumer_handshake_rings_once_per_sleep():
    prod, cons = _pair()
    bell = CountingBell()
    prod.wake_consumer = bell
    prod.try_push(b"1")
    assert bell.rings == 0  # nobody asleep: no syscall
    assert not cons.consumer_sleep_check()  # a frame is waiting: do not sleep
    assert cons.drain() == [b"1"]
    assert cons.consumer_sleep_check()  # empty: flag set, may sleep
    prod.try_push(b"2")
    prod.try_push(b"3")
    assert bell.rings == 1  # the flag was claimed by the first push
    cons.consumer_awake()
    assert cons.drain() == [b"2", b"3"]


def test_producer_handshake_on_full_ring():
    prod, cons = _pair(capacity=256, max_frame=100)
    bell = CountingBell()
    cons.wake_producer = bell
    while prod.try_push(b"z" * 60):
        pass
    assert prod.producer_sleep_check(60)
    cons.drain(max_frames=1)
    assert bell.rings == 1
    prod.producer_awake()
    assert not prod.producer_sleep_check(60)  # room now: do not sleep, flag withdrawn
    assert prod._h64[24] == 0
    assert prod.try_push(b"z" * 60)


def test_blocking_push_times_out_when_nobody_drains():
    prod, _ = _pair(capacity=256, max_frame=100)
    with Doorbell() as bell:
        for _ in range(4):
            assert prod.push(b"w" * 60, bell, timeout=1.0)
        t0 = time.monotonic()
        assert not prod.push(b"w" * 60, bell, timeout=0.05)
        assert 0.04 <= time.monotonic() - t0 < 5


def test_wait_any_readable_wakes_for_any_ring():
    rings = [_pair() for _ in range(3)]
    with Doorbell() as bell:
        for prod, _ in rings:
            prod.wake_consumer = bell
        consumers = [c for _, c in rings]
        assert not wait_any_readable(bell, consumers, 0.01)  # nothing: times out
        rings[2][0].try_push(b"late")
        assert wait_any_readable(bell, consumers, 5.0)
        assert [c.drain() for c in consumers] == [[], [], [b"late"]]
        assert all(c._h64[16] == 0 for c in consumers)  # flags withdrawn


# ------------------------------------------------------------------ spin before sleep


class RecordingBell:
    """A doorbell to sleep on that nobody rings: records each wait's timeout, then times out."""

    def __init__(self) -> None:
        self.timeouts: list[float | None] = []

    def wait(self, timeout: float | None) -> bool:
        self.timeouts.append(timeout)
        return False


class YieldHook:
    """Stands in for the spin's sched_yield: counts the calls, may act on the n-th one."""

    def __init__(self, at: int = 0, action: Callable[[], object] | None = None) -> None:
        self.calls, self.at, self.action = 0, at, action

    def __call__(self) -> None:
        self.calls += 1
        if self.calls == self.at:
            self.action()


def test_poll_readable_sees_a_frame_at_once_and_bounds_its_spin(monkeypatch):
    yields = YieldHook()
    monkeypatch.setattr(wait_module, "_yield_cpu", yields)
    prod, cons = _pair()
    assert not cons.poll_readable()  # spin_us=0: one look
    assert yields.calls == 0
    t0 = time.perf_counter()
    assert not cons.poll_readable(spin_us=20_000)
    assert 0.02 <= time.perf_counter() - t0 < 5
    assert yields.calls > 0  # the spin gives the CPU away between looks
    prod.try_push(b"x")
    yields.calls = 0
    assert cons.poll_readable(spin_us=MAX_SPIN_US)
    assert poll_any_readable([_pair()[1], cons], spin_us=MAX_SPIN_US)
    assert yields.calls == 0  # found on the first look
    assert cons._h64[16] == 0  # polling never declares the consumer asleep
    assert cons.drain() == [b"x"]


def test_poll_room_waits_for_the_consumer_without_raising_the_flag(monkeypatch):
    prod, cons = _pair(capacity=256, max_frame=100)
    while prod.try_push(b"z" * 60):
        pass
    assert not prod.poll_room(60)
    t0 = time.perf_counter()
    assert not prod.poll_room(60, spin_us=20_000)
    assert 0.02 <= time.perf_counter() - t0 < 5
    assert prod._h64[24] == 0  # the producer's asleep flag stays down
    # the consumer frees one frame while the producer spins
    yields = YieldHook(at=3, action=lambda: cons.drain(max_frames=1))
    monkeypatch.setattr(wait_module, "_yield_cpu", yields)
    assert prod.poll_room(60, spin_us=MAX_SPIN_US)
    assert yields.calls == 3
    assert not prod.poll_room(100)  # 64 bytes free, a 100-byte payload needs 112
    assert prod.try_push(b"z" * 60)


@pytest.mark.parametrize("bad", [-1, MAX_SPIN_US + 1, float("nan"), float("inf"), True, "5", None])
def test_spin_us_out_of_range_is_refused_everywhere(bad):
    prod, cons = _pair()
    match = rf"spin_us must be a number of microseconds in \[0, {MAX_SPIN_US}\].*got {bad!r}"
    with pytest.raises(ValueError, match=match):
        cons.poll_readable(bad)
    with pytest.raises(ValueError, match=match):
        prod.poll_room(10, bad)
    with pytest.raises(ValueError, match=match):
        prod.push(b"x", RecordingBell(), 1.0, spin_us=bad)
    with pytest.raises(ValueError, match=match):
        wait_any_readable(RecordingBell(), [cons], 1.0, spin_us=bad)
    assert cons.empty()  # push refused the call before writing
    assert validate_spin_us(np.float64(2.5)) == 2500 and validate_spin_us(0) == 0


def test_a_frame_published_during_the_spin_skips_the_handshake(monkeypatch):
    prod, cons = _pair()
    rung = CountingBell()
    prod.wake_consumer = rung
    sleeps = RecordingBell()
    prod.try_push(b"first")
    assert cons.drain() == [b"first"]  # activity: the next wait spins
    # the producer publishes while the consumer spins (at its third yield)
    yields = YieldHook(at=3, action=lambda: prod.try_push(b"late"))
    monkeypatch.setattr(wait_module, "_yield_cpu", yields)
    assert wait_any_readable(sleeps, [cons], 10.0, spin_us=MAX_SPIN_US)
    assert yields.calls == 3
    assert sleeps.timeouts == [] and rung.rings == 0  # never asleep, never rung
    assert cons._h64[16] == 0
    assert cons.drain() == [b"late"]


def test_spin_follows_activity_only():
    prod, cons = _pair()
    bell = RecordingBell()
    assert cons.spin_armed  # a new consumer spins once
    assert not wait_any_readable(bell, [cons], 0.05, spin_us=10_000)
    # the spin ran first and used part of the timeout; then the wait slept the rest
    assert len(bell.timeouts) == 1 and bell.timeouts[0] <= 0.05 - 0.009
    assert not cons.spin_armed
    # idle: the next waits sleep at once, with the whole timeout
    assert not wait_any_readable(bell, [cons], 0.05, spin_us=10_000)
    assert not wait_any_readable(bell, [cons], 0.05, spin_us=10_000)
    assert bell.timeouts[1:] == [0.05, 0.05]
    assert cons._h64[16] == 0  # the flag was raised for each sleep and withdrawn
    prod.try_push(b"work")
    assert cons.drain() == [b"work"]
    assert cons.spin_armed  # activity re-arms the spin
    assert not wait_any_readable(bell, [cons], 0.05, spin_us=10_000)
    assert bell.timeouts[3] < 0.05
    # spin_us=0 never spins, armed or not
    prod.try_push(b"more")
    cons.drain()
    assert not wait_any_readable(bell, [cons], 0.05, spin_us=0)
    assert bell.timeouts[4] == 0.05 and cons.spin_armed


def test_blocking_push_spins_for_room_before_sleeping(monkeypatch):
    prod, cons = _pair(capacity=256, max_frame=100)
    rung = CountingBell()
    cons.wake_producer = rung
    while prod.try_push(b"p" * 60):
        pass
    sleeps = RecordingBell()
    yields = YieldHook(at=3, action=lambda: cons.drain(max_frames=1))
    monkeypatch.setattr(wait_module, "_yield_cpu", yields)
    assert prod.push(b"q" * 60, sleeps, timeout=10.0, spin_us=MAX_SPIN_US)
    assert yields.calls == 3
    assert sleeps.timeouts == [] and rung.rings == 0  # room came during the spin
    # no consumer: the spin runs out, then the producer sleeps for what is left of the timeout
    t0 = time.perf_counter()
    assert not prod.push(b"r" * 60, sleeps, timeout=0.05, spin_us=10_000)
    assert 0.009 <= time.perf_counter() - t0 < 5
    assert len(sleeps.timeouts) >= 1 and sleeps.timeouts[0] <= 0.05 - 0.009
    assert prod._h64[24] == 0
    assert cons.drain() == [b"p" * 60] * 3 + [b"q" * 60]


def test_the_wait_is_still_reachable_from_the_ring_module():
    assert ring_module.wait_any_readable is wait_any_readable
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ring_module.nope  # noqa: B018
    prod, cons = _pair()
    with Doorbell() as bell:
        prod.wake_consumer = bell
        assert not cons.wait_readable(bell, 0.01, spin_us=0)
        prod.try_push(b"x")
        assert cons.wait_readable(bell, 5.0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(min_size=0, max_size=120).map(lambda b: ("push", b)),
            st.integers(min_value=0, max_value=3).map(lambda k: ("drain", k)),
        ),
        max_size=80,
    )
)
def test_matches_a_fifo_model(ops):
    prod, cons = _pair(capacity=256, max_frame=120)
    model: collections.deque[bytes] = collections.deque()
    for op, arg in ops:
        if op == "push":
            size = frame_bytes(len(arg))
            off = prod.head % 256
            gap = 256 - off if off + size > 256 else 0
            fits = prod.used_bytes() + gap + size <= 256
            assert prod.try_push(arg) == fits
            if fits:
                model.append(arg)
        else:
            got = cons.drain(max_frames=arg)
            want = [model.popleft() for _ in range(min(arg, len(model)) if arg else len(model))]
            assert got == want
    assert cons.drain() == list(model)
    assert cons.empty()


# ------------------------------------------------------------------ multi-process stress

STRESS_CAPACITY = 1 << 20
STRESS_MAX_FRAME = 4096
POOL_BYTES = 1 << 22
WAIT_S = 10.0  # the safety-net timeout; hitting it counts as a failure


def _plan(seed: int, count: int):
    """Frame i is pool[offs[i] : offs[i] + sizes[i]], all derived from ``seed``."""
    rng = np.random.default_rng(seed)
    pool = rng.bytes(POOL_BYTES)
    sizes = rng.integers(1, STRESS_MAX_FRAME + 1, count).tolist()
    offs = rng.integers(0, POOL_BYTES - STRESS_MAX_FRAME, count).tolist()
    return pool, sizes, offs


def _ring_at(seg: Segment, index: int, *, init: bool, **bells) -> Ring:
    size = Ring.nbytes(STRESS_CAPACITY)
    return Ring(
        seg.buf[index * size : (index + 1) * size],
        capacity=STRESS_CAPACITY,
        max_frame=STRESS_MAX_FRAME,
        init=init,
        **bells,
    )


# The producer runs in a fresh interpreter that imports only what it needs (not pytest or
# hypothesis), so four of them start quickly; it shares _plan's source with the consumer.
PRODUCER = f"""
import sys
import numpy as np
from stratabatch.ipc.doorbell import Doorbell
from stratabatch.ipc.ring import Ring
from stratabatch.ipc.segment import Segment

POOL_BYTES, STRESS_MAX_FRAME = {POOL_BYTES}, {STRESS_MAX_FRAME}
{inspect.getsource(_plan)}
name, index, seed, count, cons_fd, prod_fd = sys.argv[1], *map(int, sys.argv[2:7])
wait_s = float(sys.argv[7])
pool, sizes, offs = _plan(seed, count)
seg = Segment.attach(name, magic={MAGIC!r}, version=1)
size = Ring.nbytes({STRESS_CAPACITY})
ring = Ring(
    seg.buf[index * size : (index + 1) * size],
    capacity={STRESS_CAPACITY},
    max_frame=STRESS_MAX_FRAME,
    init=False,
    wake_consumer=Doorbell.from_fd(cons_fd),
)
my_bell = Doorbell.from_fd(prod_fd)
pool_mv = memoryview(pool)
total = timeouts = 0
print("ready", flush=True)
sys.stdin.readline()  # start together, when the consumer's clock starts
for i in range(count):
    frame = pool_mv[offs[i] : offs[i] + sizes[i]]
    total += sizes[i]
    while not ring.try_push(frame):
        if ring.producer_sleep_check(len(frame)):
            if not my_bell.wait(wait_s):
                timeouts += 1
            ring.producer_awake()
print(total, timeouts, flush=True)
ring.close()
seg.close()
"""


def _run_stress(n_producers: int, per_producer: int, seed: int) -> None:
    print(f"stress: {n_producers} producers x {per_producer} frames, seed={seed}")
    name = segment_name(run_name("rs"), "rings")
    size = Ring.nbytes(STRESS_CAPACITY)
    plans = [_plan(seed + k, per_producer) for k in range(n_producers)]
    with (
        Segment.create(name, size * n_producers, magic=MAGIC, version=1) as seg,
        Doorbell() as cons_bell,
    ):
        prod_bells = [Doorbell() for _ in range(n_producers)]
        rings = [
            _ring_at(seg, k, init=True, wake_producer=prod_bells[k]) for k in range(n_producers)
        ]
        procs = []
        try:
            for k in range(n_producers):
                argv = [name, k, seed + k, per_producer, cons_bell.fd, prod_bells[k].fd, WAIT_S]
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-c", PRODUCER, *map(str, argv)],
                        pass_fds=(cons_bell.fd, prod_bells[k].fd),
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                )
            for p in procs:
                assert p.stdout.readline().strip() == "ready"
            t0 = time.perf_counter()
            for p in procs:
                p.stdin.write("go\n")
                p.stdin.flush()
            got = [0] * n_producers
            nbytes = [0] * n_producers
            timeouts = 0
            deadline = time.monotonic() + 300
            while sum(got) < n_producers * per_producer:
                assert time.monotonic() < deadline, f"stalled at {got}"
                progressed = False
                for k, ring in enumerate(rings):
                    frames = ring.drain()
                    if not frames:
                        continue
                    progressed = True
                    pool, sizes, offs = plans[k]
                    i = got[k]
                    assert i + len(frames) <= per_producer, f"producer {k}: too many frames"
                    for frame in frames:
                        # byte-for-byte against the plan: catches loss, duplication,
                        # reordering and corruption, and is stronger than a checksum
                        if frame != pool[offs[i] : offs[i] + sizes[i]]:
                            want = pool[offs[i] : offs[i] + sizes[i]]
                            raise AssertionError(
                                f"producer {k} frame {i}: got {len(frame)} bytes "
                                f"crc32 {zlib.crc32(frame)}, want {sizes[i]} bytes "
                                f"crc32 {zlib.crc32(want)}"
                            )
                        nbytes[k] += len(frame)
                        i += 1
                    got[k] = i
                if not progressed:
                    for p in procs:
                        assert p.poll() in (None, 0), "a producer died"
                    if all(r.consumer_sleep_check() for r in rings):
                        if not cons_bell.wait(WAIT_S):
                            timeouts += 1
                    for r in rings:
                        r.consumer_awake()
            for k, p in enumerate(procs):
                out, _ = p.communicate(timeout=60)
                print(f"producer {k}: {out.strip()}")
                assert p.returncode == 0
                sent_bytes, prod_timeouts = map(int, out.split())
                assert sent_bytes == nbytes[k] == sum(plans[k][1])
                timeouts += prod_timeouts
            elapsed = time.perf_counter() - t0
            print(f"{sum(got)} frames, {sum(nbytes) / 1e6:.0f} MB in {elapsed:.2f} s")
            assert timeouts == 0, f"{timeouts} waits ended by the safety-net timeout"
            for ring in rings:
                assert ring.empty()
                assert ring.head > 100 * STRESS_CAPACITY  # it wrapped around many times
                ring.close()
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            for b in prod_bells:
                b.close()


@pytest.mark.slow
def test_one_million_frames_one_ring():
    _run_stress(1, 1_000_000, seed=int.from_bytes(os.urandom(4), "little"))


@pytest.mark.slow
def test_four_producers_on_four_rings_into_one_consumer():
    _run_stress(4, 250_000, seed=int.from_bytes(os.urandom(4), "little"))


def test_create_and_attach_name_the_two_sides():
    buf = memoryview(mmap.mmap(-1, Ring.nbytes(256)))
    prod = Ring.create(buf, capacity=256, max_frame=60)
    cons = Ring.attach(buf, capacity=256, max_frame=60)
    assert prod.try_push(b"x")
    assert cons.drain() == [b"x"]
    with pytest.raises(SegmentLayoutError):
        Ring.attach(buf, capacity=256, max_frame=50)


async def test_push_async_waits_for_room_without_blocking_the_loop():
    """A full ring suspends the coroutine (other tasks run) until the consumer drains."""
    import asyncio

    buf = memoryview(mmap.mmap(-1, Ring.nbytes(128)))
    with Doorbell.create() as bell:
        prod = Ring.create(buf, capacity=128, max_frame=40)
        cons = Ring.attach(buf, capacity=128, max_frame=40, wake_producer=bell)
        while prod.try_push(b"y" * 40) or prod.try_push(b"y"):
            pass
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        t = asyncio.get_running_loop().create_task(ticker())
        push = asyncio.get_running_loop().create_task(prod.push_async(b"z", bell, 5.0))
        await asyncio.sleep(0.05)
        assert not push.done() and ticks > 5  # waiting, and the loop keeps running
        drained = cons.drain()  # rings the producer's bell: it was flagged asleep
        assert await asyncio.wait_for(push, 2.0) is True
        assert drained and cons.drain() == [b"z"]
        assert await prod.push_async(b"w", bell, 0) is True
        while prod.try_push(b"y" * 40) or prod.try_push(b"y"):
            pass
        t0 = time.monotonic()
        assert await prod.push_async(b"q", bell, 0.05) is False
        assert time.monotonic() - t0 < 1.0
        t.cancel()


def test_doorbell_create_and_attach():
    with Doorbell.create() as a:
        with Doorbell.attach(a.fd, dup=True) as b:
            b.ring()
            assert a.wait(0)
