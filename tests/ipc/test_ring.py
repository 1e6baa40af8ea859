"""SPSC byte ring: framing, wrap-around, limits, handshake flags, and multi-process stress."""

from __future__ import annotations

import collections
import inspect
import mmap
import os
import subprocess
import sys
import time
import uuid
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratabatch.ipc.doorbell import Doorbell
from stratabatch.ipc.errors import FrameError, FrameTooLargeError, SegmentLayoutError
from stratabatch.ipc.ring import WRAP, Ring, frame_bytes, wait_any_readable
from stratabatch.ipc.segment import Segment, segment_name

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
    name = segment_name("rs" + uuid.uuid4().hex[:8], "rings")
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
