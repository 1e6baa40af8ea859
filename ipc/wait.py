"""Waiting on rings: spin on the other side's index, then sleep on a doorbell.

Two bare eventfd wake-ups (a round trip) cost about 17 us on this VM, more than a whole
round trip between two spinning sides, so a side that has just been active first polls the
other side's index for up to ``spin_us`` microseconds and sleeps only if nothing arrives
meanwhile. The spin reads ``head`` (consumer) or ``tail`` (producer) and yields the CPU
between reads (``sched_yield``, so a third process on two cores does not turn the spin into
a stall); it never waits in the kernel and raises no flag, so the sleep handshake of
:mod:`stratabatch.ipc.ring` that follows it is unchanged. The spin follows activity: once a
wait has run out its spin, waits on that ring sleep at once until a drain returns frames
again (``Ring.spin_armed``), so an idle side uses no CPU.

The consumer's waits are :func:`wait_any_readable` (blocking) and
:func:`wait_any_readable_async` (asyncio, uvloop); :func:`poll_any_readable` is their spin
alone. The producer's wait for room is ``Ring.push``, whose spin is ``Ring.poll_room``.

This module reads the rings' headers but imports nothing from :mod:`stratabatch.ipc.ring`
at run time (the ring imports it), so each ring hands over what a poll reads through
``Ring._head_probe``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from stratabatch.ipc.ring import Ring

DEFAULT_SPIN_US = 50
"""Microseconds a waiting side polls the ring before it sleeps (measured: docs/ipc.md).

Spins of 10-200 us gave the same round-trip p50; longer ones trimmed the p99 a little and
cost CPU in proportion under sparse traffic (a spin that runs out is pure cost).
"""

MAX_SPIN_US = 100_000
"""Largest ``spin_us`` accepted: a spin is a short bounded phase, not a way to busy-wait."""

# Spins yield the CPU between polls: sched_yield returns at once when nothing else wants this
# CPU, and otherwise lets the peer we wait for run. Without it, a third busy process on the
# two cores made spins burn their whole budget: round-trip p99 200-310 us, against 42-57 us
# with the yield and 65-70 us sleeping at once (docs/ipc.md).
_yield_cpu = os.sched_yield


class Waitable(Protocol):
    """A doorbell a side can sleep on."""

    def wait(self, timeout: float | None) -> bool:
        """Block until rung (True) or until ``timeout`` seconds pass (False)."""


class AsyncWaitable(Protocol):
    """A doorbell a side can await from asyncio."""

    async def wait_async(self, timeout: float | None = None) -> bool:
        """Wait until rung (True) or until ``timeout`` seconds pass (False)."""


def validate_spin_us(spin_us: float) -> int:
    """Check a spin duration in microseconds and return it in nanoseconds.

    Raises:
        ValueError: ``spin_us`` is not a number in ``[0, MAX_SPIN_US]``.
    """
    # runs on every wait, so the common case is tested first (isinstance is slower); NaN
    # fails the range test
    cls = spin_us.__class__
    if (cls is int or cls is float) and 0 <= spin_us <= MAX_SPIN_US:
        return int(spin_us * 1000)
    if (
        isinstance(spin_us, bool)
        or not isinstance(spin_us, (int, float))
        or not 0 <= spin_us <= MAX_SPIN_US
    ):
        raise ValueError(
            f"spin_us must be a number of microseconds in [0, {MAX_SPIN_US}] "
            f"(0 disables the spin), got {spin_us!r}"
        )
    return int(spin_us * 1000)


# ------------------------------------------------------------------ spin phase


def poll_any_readable(rings: Sequence[Ring], spin_us: float = 0.0) -> bool:
    """Poll the consumer side of ``rings`` for up to ``spin_us`` microseconds.

    The spin phase of a wait: reads of each ``head``, with ``sched_yield`` between rounds,
    and no flag (the producers are not told anyone waits). ``spin_us=0`` checks each ring
    once, which is what an event-loop consumer does once per loop iteration.

    Returns:
        True as soon as one ring has a published frame, False if the spin ran out first.

    Raises:
        ValueError: ``spin_us`` is not in ``[0, MAX_SPIN_US]``.
    """
    return _poll_any(rings, validate_spin_us(spin_us))


def _poll_any(rings: Sequence[Ring], spin_ns: int) -> bool:
    """:func:`poll_any_readable` with the spin already validated and in nanoseconds."""
    if len(rings) == 1:  # the common case (a client on its response ring), kept lean
        h64, head, tail = rings[0]._head_probe()
        if h64[head] != tail:
            return True
        clock = time.perf_counter_ns
        end = clock() + spin_ns
        while clock() < end:
            _yield_cpu()
            if h64[head] != tail:
                return True
        return False
    probes = [ring._head_probe() for ring in rings]
    clock = time.perf_counter_ns
    end = clock() + spin_ns
    while True:
        for h64, head, tail in probes:
            if h64[head] != tail:
                return True
        if clock() >= end:
            return False
        _yield_cpu()


def _spin_until_at_least(words: memoryview, index: int, least: int, spin_ns: int) -> int:
    """Read ``words[index]`` until it is >= ``least``; return it, or -1 once ``spin_ns`` pass.

    The producer's spin for room (``Ring.poll_room``): always reads at least once.
    """
    clock = time.perf_counter_ns
    end = clock() + spin_ns
    while True:
        value = words[index]
        if value >= least:
            return value
        if clock() >= end:
            return -1
        _yield_cpu()


# ------------------------------------------------------------------ consumer waits


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


__all__ = [
    "DEFAULT_SPIN_US",
    "MAX_SPIN_US",
    "AsyncWaitable",
    "Waitable",
    "poll_any_readable",
    "validate_spin_us",
    "wait_any_readable",
    "wait_any_readable_async",
]
