"""The best schedule the backend allows: the reference a mode's busy time is measured against.

A mode sends ``k`` items to a backend that runs at most ``concurrency`` calls at once, each call
of at most ``max_size`` items lasting ``overhead + n x per_item``, and no item can be sent before
its request arrives. :func:`best_schedule_ms` builds a schedule that keeps all three limits and
returns how long it takes from the first arrival to the last answer. Because it is a real
schedule, a batcher can match it (1.00x); a bound that ignores arrivals or assumes full calls in
whole rounds (``ceil(k / max_size)`` calls spread evenly over the slots) cannot be met on a burst
whose unique items make a few rounds, which is what the default workload sends.

How it is built: the question "can every item be answered by time T?" is answered in reversed
time, where arrivals become deadlines and every slot starts free at 0: the slot that frees first
takes the next most urgent items, as many as finish before the most urgent one's deadline (at
most ``max_size``). The shortest T for which that succeeds is found by bisection, starting from
:func:`lower_bound_ms`, a bound no schedule can beat.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

__all__ = ["Call", "best_schedule", "best_schedule_ms", "lower_bound_ms"]

Call = tuple[float, int, int]
"""One backend call of a schedule: ``(start_ms, first_item, items)``."""


def _balanced_ms(
    items: int, concurrency: int, max_size: int, overhead_ms: float, per_item_ms: float
) -> float:
    """Shortest time for ``items`` all available at once: the busiest slot holds ceil(k / c)."""
    if items <= 0:
        return 0.0
    per_slot = math.ceil(items / concurrency)
    return math.ceil(per_slot / max_size) * overhead_ms + per_slot * per_item_ms


def lower_bound_ms(
    arrivals_ms: Sequence[float],
    concurrency: int,
    max_size: int,
    overhead_ms: float,
    per_item_ms: float,
) -> float:
    """A time no schedule beats: for each arrival, the items arriving from then on, balanced.

    Args:
        arrivals_ms: when each item's request arrived, sorted.
        concurrency: calls at once.
        max_size: most items in one call.
        overhead_ms: time of a call, whatever its size.
        per_item_ms: added time per item.

    Returns:
        Milliseconds from the first arrival to the last answer, at least.
    """
    if not arrivals_ms:
        return 0.0
    n, first = len(arrivals_ms), arrivals_ms[0]
    return max(
        arrivals_ms[i]
        - first
        + _balanced_ms(n - i, concurrency, max_size, overhead_ms, per_item_ms)
        for i in range(n)
    )


def _calls_by(
    total_ms: float,
    since_first: Sequence[float],
    concurrency: int,
    max_size: int,
    overhead_ms: float,
    per_item_ms: float,
) -> list[Call] | None:
    """The calls that answer every item by ``total_ms`` after the first arrival, or None.

    Works in reversed time, where the item that arrives last is due first and every slot is
    free at 0 (see the module docstring). Returns ``(start_ms, first_item, items)`` per call in
    forward time; ``first_item`` indexes ``since_first`` (sorted ascending).
    """
    n = len(since_first)
    free = [0.0] * concurrency
    calls = []
    j = 0  # items done in reversed order: the j latest arrivals
    while j < n:
        due = total_ms - since_first[n - 1 - j]
        start = heapq.heappop(free)
        room = (
            math.floor((due - start - overhead_ms) / per_item_ms + 1e-9)
            if per_item_ms > 0
            else max_size
        )
        take = min(max_size, n - j, room)
        end = start + overhead_ms + take * per_item_ms
        if take < 1 or end > due + 1e-9:
            return None
        heapq.heappush(free, end)
        calls.append((total_ms - end, n - j - take, take))
        j += take
    return sorted(calls)


def best_schedule(
    arrivals_ms: Sequence[float],
    concurrency: int,
    max_size: int,
    overhead_ms: float,
    per_item_ms: float,
) -> tuple[float, list[Call]]:
    """A schedule of these items that keeps every limit, as short as the construction finds.

    Args:
        arrivals_ms: when each item's request arrived, sorted.
        concurrency: calls at once.
        max_size: most items in one call.
        overhead_ms: time of a call, whatever its size.
        per_item_ms: added time per item.

    Returns:
        ``(ms, calls)``: milliseconds from the first arrival to the last answer (within 0.1% of
        the shortest the construction reaches), and the calls as ``(start_ms, first_item,
        items)``, times from the first arrival, items by index into ``arrivals_ms``.
    """
    if not arrivals_ms:
        return 0.0, []
    since = [t - arrivals_ms[0] for t in arrivals_ms]
    limits = (concurrency, max_size, overhead_ms, per_item_ms)
    lo = lower_bound_ms(arrivals_ms, *limits)
    hi = lo
    calls = _calls_by(hi, since, *limits)
    while calls is None:
        lo, hi = hi, hi * 1.25 + overhead_ms + per_item_ms
        calls = _calls_by(hi, since, *limits)
    while hi - lo > 1e-3 * hi:
        mid = (lo + hi) / 2
        found = _calls_by(mid, since, *limits)
        if found is None:
            lo = mid
        else:
            hi, calls = mid, found
    return hi, calls


def best_schedule_ms(
    arrivals_ms: Sequence[float],
    concurrency: int,
    max_size: int,
    overhead_ms: float,
    per_item_ms: float,
) -> float:
    """Milliseconds from the first arrival to the last answer of :func:`best_schedule`."""
    return best_schedule(arrivals_ms, concurrency, max_size, overhead_ms, per_item_ms)[0]
