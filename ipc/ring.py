"""Single-producer single-consumer byte ring in shared memory.

A ring lives in any writable buffer (typically a slice of a
:class:`~stratabatch.ipc.segment.Segment` payload) of :meth:`Ring.nbytes` bytes, 64-byte
aligned. Layout, all integers little-endian u64 unless noted::

    offset  written by  field
         0  producer    head: bytes ever published (monotonic, never wraps in practice)
        64  consumer    tail: bytes ever consumed
       128  consumer    consumer_asleep: 1 while the consumer sleeps (the producer clears it)
       192  producer    producer_asleep: 1 while the producer waits for room (consumer clears)
       256  init        magic "SBRING01", capacity, max_frame (validated on attach)
       320  both        data: ``capacity`` bytes (a power of two)

Each field has its own 64-byte cache line, so the indices the two sides update on every frame
never share a line (no false sharing); the asleep flags only change around a sleep. A frame is
``u32 length | payload | zero..7 pad bytes`` aligned to 8; a frame never straddles the end
of the data area: when it does not fit before the end the producer writes the wrap marker
(length ``0xFFFFFFFF``) and continues at offset 0.

Ordering: the producer writes a frame, then stores ``head``; the consumer loads ``head``,
copies the frames out, then stores ``tail``. On x86-64 (TSO) aligned 8-byte stores and loads
made from CPython are already release stores and acquire loads, so the hot path needs no
barrier there; on weaker CPUs a full fence is added before each publish and after each read
of the other side's index. The one reordering TSO allows, a later load passing an earlier
store, is exactly the doorbell handshake, so it always gets a full fence (:func:`fence`):
a sleeper sets its flag, fences, re-checks the ring and only then sleeps; a publisher
publishes, fences, and rings the sleeper's doorbell only if the flag is set, clearing it
first so that one sleep costs one eventfd write, not one per frame. Neither side can miss
the other: of two fenced store-then-load sequences at least one load sees the other's store.

Waiting is spin-then-sleep (:mod:`stratabatch.ipc.wait` has the waits and the spin): a side
that has just been active first polls the other side's index for up to ``spin_us``
microseconds, and only then runs the handshake above and sleeps. The spin adds reads in
front of the handshake and changes nothing in it.

Why not jitted helpers for the hot path: a numba call costs ~100 ns from Python with no
arguments but 350-550 ns with a few int or array arguments (type dispatch), while an
argument-less fence is ~100 ns; plain ``memoryview`` stores and slice copies are 30-150 ns.

Consumption is batched: :meth:`Ring.drain` copies out everything published and frees the
space with a single ``tail`` store. A malformed ring (a producer writing garbage) raises
:class:`~stratabatch.ipc.errors.FrameError` from :meth:`Ring.drain` instead of looping or
reading out of bounds.
"""

from __future__ import annotations

import mmap
import platform
import sys
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

import numpy as np

from stratabatch.ipc.errors import FrameError, FrameTooLargeError, SegmentLayoutError
from stratabatch.ipc.wait import (  # the wait names stay importable from here
    DEFAULT_SPIN_US,
    MAX_SPIN_US,
    AsyncWaitable,
    Waitable,
    _spin_until_at_least,
    poll_any_readable,
    validate_spin_us,
    wait_any_readable,
)

if TYPE_CHECKING:
    if sys.version_info >= (3, 12):
        from collections.abc import Buffer
    else:
        from typing_extensions import Buffer

    Payload = bytes | bytearray | memoryview
    """A frame's payload: a bytes-like object whose ``len()`` is its size in bytes."""

HEADER_BYTES = 320
"""Bytes of ring header before the data area."""

MAGIC = 0x3130474E49524253  # b"SBRING01" as a little-endian u64: marks an initialised ring
WRAP = 0xFFFFFFFF
"""Length value of the wrap marker: the rest of the data area up to its end is skipped."""

# u64 word indices in the header
_HEAD, _TAIL, _CONSUMER_ASLEEP, _PRODUCER_ASLEEP = 0, 8, 16, 24
_MAGIC, _CAPACITY, _MAX_FRAME = 32, 33, 34
_MIN_CAPACITY = 64
# x86-64 keeps stores in order and loads in order (TSO), so an aligned 8-byte store made by
# CPython is already a release and a load an acquire; only store-then-load needs a fence.
# Weaker CPUs get a fence on each side of the publish and after reading the other's index.
_TSO = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")

_fence_lock = threading.Lock()


def _lock_fence() -> None:
    """Full memory barrier on x86: an uncontended lock's acquire and release.

    CPython's lock is a POSIX semaphore; taking and giving it are ``lock cmpxchg`` and
    ``lock xadd``, and on x86 a locked instruction orders every load and store around it like
    ``mfence``. About 160 ns, against 60 ns for numba's ``fence`` intrinsic, but it keeps numba
    (about 0.3 s of import) out of client processes, which need rings but no jitted code.
    """
    _fence_lock.acquire()  # blocking: a failed try-acquire would execute no locked op
    _fence_lock.release()


def _pick_fence() -> None:
    """Use numba's fence where numba is loaded anyway (the engine) or the CPU is not x86."""
    global fence
    if not _TSO or "numba" in sys.modules:
        from stratabatch.ipc.atomics import fence as numba_fence

        fence = numba_fence


fence = _lock_fence
"""The ring's full memory barrier (picked again each time a ring is made)."""
_pick_fence()


class Bell(Protocol):
    """What a ring needs of a doorbell: something to ring."""

    def ring(self) -> None:
        """Wake the side sleeping on this doorbell."""


def _address(buf: memoryview | mmap.mmap) -> int:
    return int(np.frombuffer(buf, dtype=np.uint8, count=0).ctypes.data)


def frame_bytes(payload_len: int) -> int:
    """Return the bytes a frame with ``payload_len`` payload bytes occupies in a ring."""
    return (payload_len + 11) & ~7


class Ring:
    """A single-producer single-consumer ring of byte frames in a shared buffer.

    One process (or thread) pushes, one drains. Each side builds its own ``Ring`` over the
    same memory: the creator with ``init=True``, the other with ``init=False``, both with the
    same ``capacity`` and ``max_frame``.

    Args:
        buf: Writable buffer of at least :meth:`nbytes` bytes, 64-byte aligned.
        capacity: Data-area size in bytes, a power of two >= 64.
        max_frame: Largest payload accepted, >= 1, with ``frame_bytes(max_frame) <=
            capacity // 2`` so that a frame always fits once the ring has drained.
        init: True to initialise the header (the creator; the ring starts empty), False to
            attach to a ring initialised elsewhere (its header is validated).
        wake_consumer: Doorbell of the consumer, rung after a push when it is asleep
            (producer side).
        wake_producer: Doorbell of the producer, rung after a drain when it waits for room
            (consumer side).

    Attributes:
        spin_armed: Consumer side: True while a wait on this ring should spin before it
            sleeps. Set by every :meth:`drain` that returns frames, cleared by a wait whose
            spin ran out, so the spin follows activity and an idle consumer never spins.

    Raises:
        ValueError: Bad capacity, max_frame, buffer size or alignment.
        SegmentLayoutError: ``init=False`` and the header is not an initialised ring with that
            capacity and max_frame.
    """

    def __init__(
        self,
        buf: Buffer,
        *,
        capacity: int,
        max_frame: int,
        init: bool,
        wake_consumer: Bell | None = None,
        wake_producer: Bell | None = None,
    ) -> None:
        if not isinstance(capacity, int) or capacity < _MIN_CAPACITY or capacity & (capacity - 1):
            raise ValueError(
                f"capacity must be a power of two >= {_MIN_CAPACITY}, got {capacity!r}"
            )
        if (
            not isinstance(max_frame, int)
            or max_frame < 1
            or frame_bytes(max_frame) > capacity // 2
        ):
            raise ValueError(
                f"max_frame must be in [1, {capacity // 2 - 4}] for capacity {capacity} "
                f"(a frame may use at most half the ring), got {max_frame!r}"
            )
        mv = memoryview(buf).cast("B")
        need = self.nbytes(capacity)
        if len(mv) < need:
            raise ValueError(
                f"ring of capacity {capacity} needs {need} bytes, the buffer has {len(mv)}"
            )
        if mv.readonly:
            raise ValueError("ring buffer must be writable")
        mv = mv[:need]
        if _address(mv) % 64:
            raise ValueError(
                f"ring buffer must start 64-byte aligned, got address % 64 == {_address(mv) % 64}"
            )
        _pick_fence()
        self._mv = mv
        self._h64 = mv[:HEADER_BYTES].cast("Q")
        self._data = mv[HEADER_BYTES:]
        self._d32 = self._data.cast("I")
        # Frame bytes are copied through the underlying mmap when there is one: slicing an
        # mmap makes bytes directly (~75 ns) where a memoryview slice + tobytes() takes ~230.
        owner = memoryview(buf).obj
        if isinstance(owner, mmap.mmap) and not owner.closed:
            self._raw: mmap.mmap | memoryview = owner
            self._base = _address(self._data) - _address(owner)
            self._raw_is_mmap = True
        else:
            self._raw = self._data
            self._base = 0
            self._raw_is_mmap = False
        self._capacity = capacity
        self._mask = capacity - 1
        self._max_frame = max_frame
        self.wake_consumer = wake_consumer
        self.wake_producer = wake_producer
        h64 = self._h64
        if init:
            for i in range(len(h64)):
                h64[i] = 0
            h64[_CAPACITY] = capacity
            h64[_MAX_FRAME] = max_frame
            fence()
            h64[_MAGIC] = MAGIC
            fence()
        else:
            seen = (h64[_MAGIC], h64[_CAPACITY], h64[_MAX_FRAME])
            if seen != (MAGIC, capacity, max_frame):
                raise SegmentLayoutError(
                    "ring header does not match: expected (magic, capacity, max_frame) = "
                    f"{(hex(MAGIC), capacity, max_frame)}, found {(hex(seen[0]),) + seen[1:]}"
                )
        fence()
        # Each side keeps its own position; the other side's is re-read only when needed.
        self._head = h64[_HEAD]  # producer: authoritative head
        self._tail_seen = h64[_TAIL]  # producer: the last tail it read
        self._tail = self._tail_seen  # consumer: authoritative tail
        self.spin_armed = True

    @classmethod
    def create(
        cls,
        buf: Buffer,
        *,
        capacity: int,
        max_frame: int,
        wake_consumer: Bell | None = None,
        wake_producer: Bell | None = None,
    ) -> Ring:
        """Initialise a new, empty ring in ``buf`` (the creator's side; ``init=True``).

        Same arguments as the constructor; :meth:`attach` is the other side.
        """
        return cls(
            buf,
            capacity=capacity,
            max_frame=max_frame,
            init=True,
            wake_consumer=wake_consumer,
            wake_producer=wake_producer,
        )

    @classmethod
    def attach(
        cls,
        buf: Buffer,
        *,
        capacity: int,
        max_frame: int,
        wake_consumer: Bell | None = None,
        wake_producer: Bell | None = None,
    ) -> Ring:
        """Use a ring another process created in ``buf`` (``init=False``; its header is checked).

        Raises:
            SegmentLayoutError: ``buf`` holds no ring of that capacity and max_frame.
        """
        return cls(
            buf,
            capacity=capacity,
            max_frame=max_frame,
            init=False,
            wake_consumer=wake_consumer,
            wake_producer=wake_producer,
        )

    @staticmethod
    def nbytes(capacity: int) -> int:
        """Return the buffer size a ring of ``capacity`` data bytes needs (header included)."""
        return HEADER_BYTES + capacity

    # ------------------------------------------------------------------ properties

    @property
    def capacity(self) -> int:
        """Size of the data area in bytes."""
        return self._capacity

    @property
    def max_frame(self) -> int:
        """Largest payload :meth:`try_push` accepts, in bytes."""
        return self._max_frame

    @property
    def head(self) -> int:
        """Bytes published so far (as currently visible in shared memory)."""
        return self._h64[_HEAD]

    @property
    def tail(self) -> int:
        """Bytes consumed so far (as currently visible in shared memory)."""
        return self._h64[_TAIL]

    def used_bytes(self) -> int:
        """Bytes published and not yet consumed (frames, padding and wrap gaps)."""
        return self._h64[_HEAD] - self._h64[_TAIL]

    def empty(self) -> bool:
        """True if no published frame waits for the consumer."""
        return self._h64[_HEAD] == self._h64[_TAIL]

    # ------------------------------------------------------------------ producer

    def _place(self, head: int, size: int) -> int:
        """Write a wrap marker if needed; return the head to write a ``size``-byte frame at.

        Returns -1 if the frame does not fit (nothing written).
        """
        cap = self._capacity
        off = head & self._mask
        gap = cap - off if off + size > cap else 0
        if head + gap + size - self._tail_seen > cap:
            self._tail_seen = tail = self._h64[_TAIL]
            if not _TSO:
                fence()
            if head + gap + size - tail > cap:
                return -1
        if gap:
            self._d32[off >> 2] = WRAP
        return head + gap

    def _publish_head(self, head: int) -> None:
        h64 = self._h64
        if not _TSO:
            fence()
        h64[_HEAD] = head
        fence()  # the store above must be visible before we read the consumer's flag
        if h64[_CONSUMER_ASLEEP]:
            self._wake(_CONSUMER_ASLEEP, self.wake_consumer)

    def _wake(self, flag: int, bell: Bell | None) -> None:
        """Clear the sleeper's flag, then ring its doorbell.

        Clearing first makes later publishes skip the syscall until the sleeper sets the flag
        again. A plain store is enough (no compare-and-swap): if the sleeper re-armed its flag
        for a new sleep just before our store wiped it, the ring that follows still wakes
        that sleep, and the woken side re-checks and re-arms.
        """
        self._h64[flag] = 0
        if bell is not None:
            bell.ring()

    def try_push(self, payload: Payload) -> bool:
        """Append one frame; never blocks.

        Args:
            payload: Bytes-like object of at most :attr:`max_frame` bytes.

        Returns:
            True if the frame was published, False if the ring is full (nothing was written).

        Raises:
            FrameTooLargeError: The payload is over :attr:`max_frame`; nothing was written.
        """
        n = len(payload)
        if n > self._max_frame:
            raise FrameTooLargeError(
                f"frame of {n} bytes is over this ring's limit of {self._max_frame} bytes",
                size=n,
                limit=self._max_frame,
            )
        size = (n + 11) & -8
        head = self._head
        off = head & self._mask
        if off + size > self._capacity or head + size - self._tail_seen > self._capacity:
            head = self._place(head, size)
            if head < 0:
                return False
            off = head & self._mask
        self._d32[off >> 2] = n
        off += self._base + 4
        self._raw[off : off + n] = payload
        self._head = head = head + size
        # publish (inlined _publish_head: this is the hot path)
        h64 = self._h64
        if not _TSO:
            fence()
        h64[_HEAD] = head
        fence()
        if h64[_CONSUMER_ASLEEP]:
            self._wake(_CONSUMER_ASLEEP, self.wake_consumer)
        return True

    def push_many(self, payloads: Iterable[Payload]) -> int:
        """Append frames in order until one does not fit, publishing them with one store.

        Args:
            payloads: Bytes-like objects, each at most :attr:`max_frame` bytes.

        Returns:
            How many leading payloads were pushed (all of them if they fit).

        Raises:
            FrameTooLargeError: A payload is over the limit; the ones before it are pushed and
                published, it and the ones after it are not.
        """
        head = self._head
        limit = self._max_frame
        cap = self._capacity
        mask = self._mask
        raw = self._raw
        base = self._base + 4
        d32 = self._d32
        count = 0
        try:
            for payload in payloads:
                n = len(payload)
                if n > limit:
                    raise FrameTooLargeError(
                        f"frame {count} of {n} bytes is over this ring's limit of {limit} bytes",
                        size=n,
                        limit=limit,
                    )
                size = (n + 11) & -8
                at = head
                if (at & mask) + size > cap or at + size - self._tail_seen > cap:
                    at = self._place(at, size)
                    if at < 0:
                        break
                off = at & mask
                d32[off >> 2] = n
                off += base
                raw[off : off + n] = payload
                head = at + size
                count += 1
        finally:
            if head != self._head:  # publish what was written, also when a payload was refused
                self._head = head
                self._publish_head(head)
        return count

    def producer_sleep_check(self, size: int) -> bool:
        """Declare the producer asleep waiting for room; True if it should really sleep.

        Sets ``producer_asleep``, fences, and re-checks whether a payload of ``size`` bytes
        fits now. If it does, the flag is withdrawn and False is returned (do not sleep).
        After True, sleep on the producer's doorbell, then call :meth:`producer_awake`.
        """
        h64 = self._h64
        h64[_PRODUCER_ASLEEP] = 1
        fence()
        self._tail_seen = tail = h64[_TAIL]
        head = self._head
        fsize = frame_bytes(size)
        off = head & self._mask
        gap = self._capacity - off if off + fsize > self._capacity else 0
        if head + gap + fsize - tail <= self._capacity:
            h64[_PRODUCER_ASLEEP] = 0
            return False
        return True

    def producer_awake(self) -> None:
        """Withdraw the producer's asleep flag after waking."""
        self._h64[_PRODUCER_ASLEEP] = 0

    def poll_room(self, size: int, spin_us: float = 0.0) -> bool:
        """Poll ``tail`` for up to ``spin_us`` microseconds until a ``size``-byte payload fits.

        The producer's spin phase: reads of ``tail`` with ``sched_yield`` between them, and
        no flag (the consumer is not told anyone waits). ``spin_us=0`` checks once.

        Returns:
            True if the payload fits now, False if the spin ran out first.

        Raises:
            ValueError: ``spin_us`` is not in ``[0, MAX_SPIN_US]``.
        """
        spin_ns = validate_spin_us(spin_us)
        fsize = frame_bytes(size)
        head = self._head
        off = head & self._mask
        gap = self._capacity - off if off + fsize > self._capacity else 0
        need = head + gap + fsize - self._capacity  # the least tail that makes room
        tail = _spin_until_at_least(self._h64, _TAIL, need, spin_ns)
        if tail < 0:
            return False
        self._tail_seen = tail
        if not _TSO:
            fence()
        return True

    def push(
        self,
        payload: Payload,
        bell: Waitable,
        timeout: float | None = None,
        *,
        spin_us: float = DEFAULT_SPIN_US,
    ) -> bool:
        """Append one frame; while the ring is full, spin (once per call), then sleep.

        Args:
            payload: Bytes-like object of at most :attr:`max_frame` bytes.
            bell: The producer's own doorbell (the consumer rings it after draining).
            timeout: Seconds to wait for room at most; None waits forever.
            spin_us: Microseconds to poll for room before sleeping, in ``[0, MAX_SPIN_US]``;
                0 sleeps at once.

        Returns:
            True if pushed, False if the ring stayed full for ``timeout`` seconds.

        Raises:
            FrameTooLargeError: The payload is over :attr:`max_frame`; nothing was written.
            ValueError: ``spin_us`` is out of range.
        """
        validate_spin_us(spin_us)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.try_push(payload):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            if spin_us:
                # one spin per call: a consumer slower than that is waited for asleep
                spin, spin_us = (spin_us if left is None else min(spin_us, left * 1e6)), 0
                if self.poll_room(len(payload), spin):
                    continue
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self.producer_sleep_check(len(payload)):
                try:
                    bell.wait(left)
                finally:
                    self.producer_awake()
        return True

    async def push_async(
        self,
        payload: Payload,
        bell: AsyncWaitable,
        timeout: float | None = None,
    ) -> bool:
        """Append one frame from asyncio; while the ring is full, await the producer's doorbell.

        The asyncio twin of :meth:`push`: it never blocks the event loop and never spins (a
        spin inside a coroutine would hold the loop). While the ring is full it raises the
        producer's asleep flag (:meth:`producer_sleep_check`) and awaits ``bell``, which the
        consumer rings after draining.

        Args:
            payload: Bytes-like object of at most :attr:`max_frame` bytes.
            bell: The producer's own doorbell, or anything with an awaitable
                ``wait_async(timeout)`` woken when it rings.
            timeout: Seconds to wait for room at most; None waits forever.

        Returns:
            True if pushed, False if the ring stayed full for ``timeout`` seconds.

        Raises:
            FrameTooLargeError: The payload is over :attr:`max_frame`; nothing was written.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.try_push(payload):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            if self.producer_sleep_check(len(payload)):
                try:
                    await bell.wait_async(left)
                finally:
                    self.producer_awake()
        return True

    # ------------------------------------------------------------------ consumer

    def drain(self, max_frames: int = 0) -> list[bytes]:
        """Copy out every published frame (at most ``max_frames`` if > 0) and free their space.

        The space is released with one ``tail`` store after the copies, and the producer's
        doorbell is rung if it was waiting for room.

        Returns:
            The payloads in push order (empty if nothing was published).

        Raises:
            FrameError: The ring holds a malformed frame or an impossible head (a corrupt or
                hostile producer); the ring is unusable afterwards.
        """
        h64 = self._h64
        head = h64[_HEAD]
        tail = self._tail
        if head == tail:
            return []
        if not _TSO:
            fence()
        cap = self._capacity
        if not 0 < head - tail <= cap:
            raise FrameError(f"corrupt ring: head {head} is not within (tail {tail}, tail + {cap}]")
        raw = self._raw
        base = self._base + 4
        as_bytes = self._raw_is_mmap
        d32 = self._d32
        mask = self._mask
        limit = self._max_frame
        out: list[bytes] = []
        append = out.append
        while tail < head:
            off = tail & mask
            n = d32[off >> 2]
            if n == WRAP:
                tail += cap - off
                if tail > head:
                    raise FrameError(f"corrupt ring: wrap marker at {off} runs past head {head}")
                continue
            end = tail + ((n + 11) & -8)
            if n > limit or end > head:
                raise FrameError(
                    f"corrupt ring: frame at offset {off} claims {n} bytes (limit {limit}, "
                    f"{head - tail - 4} published)"
                )
            off += base
            # raw is the mmap (slices are bytes) exactly when as_bytes: no isinstance per frame
            append(raw[off : off + n] if as_bytes else raw[off : off + n].tobytes())  # type: ignore[union-attr,arg-type]
            tail = end
            if len(out) == max_frames:
                break
        self._tail = tail
        self.spin_armed = True
        if not _TSO:
            fence()
        h64[_TAIL] = tail
        fence()  # the store above must be visible before we read the producer's flag
        if h64[_PRODUCER_ASLEEP]:
            self._wake(_PRODUCER_ASLEEP, self.wake_producer)
        return out

    def consumer_sleep_check(self) -> bool:
        """Declare the consumer asleep; True if the ring is still empty and it should sleep.

        Sets ``consumer_asleep``, fences, and re-checks ``head``. If a frame arrived meanwhile
        the flag is withdrawn and False is returned. After True, sleep on the consumer's
        doorbell (with a bounded timeout as a safety net), then call :meth:`consumer_awake`.
        """
        h64 = self._h64
        h64[_CONSUMER_ASLEEP] = 1
        fence()
        if h64[_HEAD] != self._tail:
            h64[_CONSUMER_ASLEEP] = 0
            return False
        return True

    def consumer_awake(self) -> None:
        """Withdraw the consumer's asleep flag after waking."""
        self._h64[_CONSUMER_ASLEEP] = 0

    def poll_readable(self, spin_us: float = 0.0) -> bool:
        """Poll ``head`` for up to ``spin_us`` microseconds; True once a frame is published.

        Same as ``poll_any_readable((self,), spin_us)``.
        """
        return poll_any_readable((self,), spin_us)

    def wait_readable(
        self, bell: Waitable, timeout: float | None, *, spin_us: float = DEFAULT_SPIN_US
    ) -> bool:
        """Wait (spin, then sleep on the consumer's ``bell``) until a frame is published.

        Same as :func:`stratabatch.ipc.wait.wait_any_readable` on this one ring.

        Returns:
            True if frames are waiting, False on timeout.
        """
        return wait_any_readable(bell, (self,), timeout, spin_us=spin_us)

    def _head_probe(self) -> tuple[memoryview, int, int]:
        """What a consumer's poll reads: the header words, head's index in them, the tail."""
        return self._h64, _HEAD, self._tail

    def close(self) -> None:
        """Release this object's views of the buffer (the ring's memory is untouched)."""
        self._raw = self._data
        for view in (self._d32, self._data, self._h64, self._mv):
            view.release()

    def __repr__(self) -> str:
        return (
            f"<Ring capacity={self._capacity} max_frame={self._max_frame} "
            f"head={self._head} tail={self._tail}>"
        )


__all__ = [
    "DEFAULT_SPIN_US",
    "HEADER_BYTES",
    "MAX_SPIN_US",
    "WRAP",
    "AsyncWaitable",
    "Bell",
    "Ring",
    "Waitable",
    "frame_bytes",
    "poll_any_readable",
    "validate_spin_us",
]
