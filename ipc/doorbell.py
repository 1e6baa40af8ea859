"""Eventfd doorbells: wake a process sleeping on a ring, blocking or from asyncio.

A doorbell is one Linux ``eventfd`` (non-blocking, close-on-exec). :meth:`Doorbell.ring`
adds 1 to its counter; a sleeper waits until the counter is non-zero and resets it with one
read, so any number of rings while it was busy cost it one wake-up. The fd is an ordinary
descriptor: it can be inherited (``pass_fds``) or sent over a Unix socket with SCM_RIGHTS
(:func:`socket.send_fds`) and adopted on the other side with :meth:`Doorbell.from_fd`.

A doorbell alone can lose nothing but can wake for nothing; the no-lost-wake-up guarantee
comes from the handshake with the ring's asleep flags (see :mod:`stratabatch.ipc.ring`): the
sleeper sets its flag, fences and re-checks before it calls :meth:`Doorbell.wait`, the
publisher publishes, fences and rings only if the flag was set.

The consumer's waits, :func:`wait_any_readable` (blocking) and :func:`wait_any_readable_async`
(asyncio, uvloop), spin before they sleep. Two bare eventfd wake-ups (a round trip) cost
about 17 us on this VM, more than a whole round trip between two spinning sides, so a side
that has just been active polls its rings for up to ``spin_us`` microseconds and sleeps
only if nothing arrives meanwhile. The spin reads ``head`` and yields the CPU between reads
(``sched_yield``, so a third process on two cores does not turn the spin into a stall); it
never waits in the kernel and raises no flag, and the handshake after it is unchanged. The
spin follows activity: once a wait has run out its spin, waits on that ring sleep at once
until a drain returns frames again (``Ring.spin_armed``), so an idle side uses no CPU.
"""

from __future__ import annotations

import asyncio
import math
import os
import select
import time
from collections.abc import Iterable
from typing import Protocol

from stratabatch.ipc.ring import (  # _poll_any: poll_any_readable minus the validation
    DEFAULT_SPIN_US,
    Ring,
    Waitable,
    _poll_any,
    validate_spin_us,
)

_EVENTFD_LINK = "anon_inode:[eventfd]"


class Doorbell:
    """One eventfd to wake one sleeper.

    Args:
        fd: An existing eventfd to adopt (see :meth:`from_fd`); None creates a new one.

    The instance owns its fd and closes it in :meth:`close` (also as a context manager).
    """

    def __init__(self, fd: int | None = None) -> None:
        if fd is None:
            fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:
            _check_eventfd(fd)
            os.set_blocking(fd, False)
        self._fd = fd
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    @classmethod
    def from_fd(cls, fd: int, *, dup: bool = False) -> Doorbell:
        """Adopt an eventfd received from another process (SCM_RIGHTS or inheritance).

        Args:
            fd: The descriptor; it is switched to non-blocking mode.
            dup: Duplicate it first and own the copy (the caller keeps ``fd``).

        Raises:
            ValueError: ``fd`` is not an eventfd.
        """
        _check_eventfd(fd)
        if dup:
            fd = os.dup(fd)
        return cls(fd)

    @property
    def fd(self) -> int:
        """The eventfd descriptor (-1 once closed)."""
        return self._fd

    def fileno(self) -> int:
        """The eventfd descriptor, for ``select``/``loop.add_reader``."""
        return self._fd

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._fd < 0

    def ring(self) -> None:
        """Wake the sleeper (or make its next wait return at once)."""
        try:
            os.eventfd_write(self._fd, 1)
        except BlockingIOError:
            pass  # the counter is at its maximum: the sleeper will wake anyway

    def clear(self) -> bool:
        """Consume pending rings without blocking; True if there were any."""
        try:
            os.eventfd_read(self._fd)
        except BlockingIOError:
            return False
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the doorbell rings, then consume the rings.

        Args:
            timeout: Seconds to wait at most; None waits forever.

        Returns:
            True if it rang (possibly before the call), False if ``timeout`` passed.
        """
        # No read first: poll() returns at once when rings are pending, so the sleep path
        # costs poll + read, and an already-rung bell the same.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is None:
                ms = -1
            else:
                left = deadline - time.monotonic()
                ms = max(0, math.ceil(left * 1000))
            self._poll.poll(ms)
            if self.clear():
                return True
            if ms == 0:
                return False

    async def wait_async(self, timeout: float | None = None) -> bool:
        """Await the doorbell from asyncio or uvloop (via ``loop.add_reader``).

        For a long-lived consumer, registering ``loop.add_reader(bell.fileno(), callback)``
        once and calling :meth:`clear` in the callback saves two epoll calls per wait.

        Returns:
            True if it rang, False if ``timeout`` seconds passed.
        """
        if self.clear():
            return True
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            fut: asyncio.Future[None] = loop.create_future()

            def readable(fut: asyncio.Future[None] = fut) -> None:
                if not fut.done():
                    fut.set_result(None)

            loop.add_reader(self._fd, readable)
            try:
                if deadline is None:
                    await fut
                else:
                    left = deadline - loop.time()
                    if left <= 0:
                        return self.clear()
                    try:
                        await asyncio.wait_for(fut, left)
                    except asyncio.TimeoutError:
                        return self.clear()
            finally:
                loop.remove_reader(self._fd)
            if self.clear():
                return True

    def close(self) -> None:
        """Close the eventfd. Idempotent."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            self._poll.unregister(fd)
            os.close(fd)

    def __enter__(self) -> Doorbell:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Doorbell fd={self._fd}>"


def _check_eventfd(fd: int) -> None:
    if not isinstance(fd, int) or fd < 0:
        raise ValueError(f"doorbell fd must be a non-negative int, got {fd!r}")
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except FileNotFoundError:
        raise ValueError(f"fd {fd} is not open") from None
    except OSError:  # no /proc: trust the caller
        return
    if target != _EVENTFD_LINK:
        raise ValueError(f"fd {fd} is not an eventfd (it is {target!r})")


class AsyncWaitable(Protocol):
    """A doorbell a side can await from asyncio."""

    async def wait_async(self, timeout: float | None = None) -> bool:
        """Wait until rung (True) or until ``timeout`` seconds pass (False)."""


def _spin_budget(rings: tuple[Ring, ...], spin_us: float, timeout: float | None) -> int:
    """Nanoseconds to spin before sleeping: 0 unless one of the rings saw activity."""
    spin_ns = validate_spin_us(spin_us)
    if spin_ns:
        # plain loop and no min(): this runs on every wait, often on the round trip's path
        for ring in rings:
            if ring.spin_armed:
                if timeout is not None and timeout * 1e9 < spin_ns:
                    return max(0, int(timeout * 1e9))
                return spin_ns
    return 0


def _spun_out(rings: tuple[Ring, ...], timeout: float | None, t0: int) -> float | None:
    """Disarm the rings after a fruitless spin; return what is left of ``timeout``."""
    for ring in rings:
        ring.spin_armed = False
    if timeout is None:
        return None
    return max(0.0, timeout - (time.perf_counter_ns() - t0) / 1e9)


def _sleep_check(rings: tuple[Ring, ...]) -> bool:
    """The sleeper's half of the handshake on every ring; True if all are still empty."""
    for ring in rings:
        if not ring.consumer_sleep_check():
            return False
    return True


def _awake(rings: tuple[Ring, ...]) -> None:
    for ring in rings:
        ring.consumer_awake()


def wait_any_readable(
    bell: Waitable,
    rings: Iterable[Ring],
    timeout: float | None,
    *,
    spin_us: float = DEFAULT_SPIN_US,
) -> bool:
    """Consumer of rings sharing one doorbell: spin, then sleep until any of them has frames.

    If a ring is ``spin_armed`` (frames were drained since its last fruitless spin), the
    rings are first polled for up to ``spin_us`` microseconds (reads of ``head`` with
    ``sched_yield`` between them, no flag); a spin that runs out disarms them. Then the
    sleeper's half of the handshake runs on every ring (flag, fence, re-check) before
    blocking on ``bell``; the flags are withdrawn on return.

    Args:
        bell: The consumer's doorbell, rung by the producers of ``rings``.
        rings: The rings this side consumes.
        timeout: Seconds to wait at most, the spin included (a safety net: with the
            handshake no wake-up is lost); None waits forever.
        spin_us: Microseconds to poll before sleeping, in ``[0, MAX_SPIN_US]``; 0 sleeps
            at once.

    Returns:
        True if some ring has frames (or the bell rang), False if ``timeout`` passed silently.

    Raises:
        ValueError: ``spin_us`` is out of range.
    """
    if rings.__class__ is not tuple:
        rings = tuple(rings)
    spin_ns = _spin_budget(rings, spin_us, timeout)
    if spin_ns:
        t0 = time.perf_counter_ns()
        if _poll_any(rings, spin_ns):
            return True
        timeout = _spun_out(rings, timeout, t0)
    try:
        if not _sleep_check(rings):
            return True
        return bell.wait(timeout) or any(not ring.empty() for ring in rings)
    finally:
        _awake(rings)


async def wait_any_readable_async(
    bell: AsyncWaitable,
    rings: Iterable[Ring],
    timeout: float | None,
    *,
    spin_us: float = DEFAULT_SPIN_US,
) -> bool:
    """:func:`wait_any_readable` for asyncio and uvloop; the spin never blocks the loop.

    The spin phase checks the rings once per event-loop iteration, with ``await
    asyncio.sleep(0)`` in between so every other task and callback keeps running, for up to
    ``spin_us`` microseconds; then the handshake runs and the task awaits
    ``bell.wait_async``. A consumer driven by a ``loop.add_reader`` callback follows the
    same rule: after handling a wake-up, check the rings once per loop iteration for a
    while (``poll_any_readable(rings)``) before it sets its asleep flags, and never loops
    inside the callback.

    Returns:
        True if some ring has frames (or the bell rang), False if ``timeout`` passed silently.

    Raises:
        ValueError: ``spin_us`` is out of range.
    """
    rings = tuple(rings)
    spin_ns = _spin_budget(rings, spin_us, timeout)
    if spin_ns:
        t0 = time.perf_counter_ns()
        end = t0 + spin_ns
        while not _poll_any(rings, 0):
            if time.perf_counter_ns() >= end:
                break
            await asyncio.sleep(0)
        else:
            return True
        timeout = _spun_out(rings, timeout, t0)
    try:
        if not _sleep_check(rings):
            return True
        return await bell.wait_async(timeout) or any(not ring.empty() for ring in rings)
    finally:
        _awake(rings)


__all__ = ["AsyncWaitable", "Doorbell", "wait_any_readable", "wait_any_readable_async"]
