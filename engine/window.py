"""When a batch closes and which waiting groups it takes: pure logic, time passed in.

The scheduler holds no requests and reads no clock: the core tells it what waits and what
time it is, and asks two questions, "is a batch due now?" and "when should I look again?".
That is what lets the timing rules be tested exactly, with made-up times.

Rules (DESIGN.md, "Window"):

* A window opens when a request arrives into an empty queue and closes ``window_ms`` later,
  or at once when ``max_size`` unique requests wait.
* If fewer than ``min_size`` wait when it closes, it stays open until ``min_size`` arrive or
  the oldest request has waited ``max_wait_ms``.
* No request waits longer than ``max_wait_ms`` (handler time excluded): when the oldest
  reaches it, the batch is due whatever the other rules say.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Protocol


class Waiting(Protocol):
    """What the selection needs to know of a waiting group."""

    priority: int
    first_arrival: float
    seq: int


class WindowScheduler:
    """Decides when the current window closes.

    Args:
        window_ms: Length of a window.
        max_size: Unique requests that close a window at once.
        min_size: Unique requests a closing window must hold, or it waits (up to max_wait_ms).
        max_wait_ms: Longest any request waits in the queue.
    """

    __slots__ = ("window_s", "max_size", "min_size", "max_wait_s", "opened_at", "window_end")

    def __init__(self, window_ms: float, max_size: int, min_size: int, max_wait_ms: float):
        self.window_s = window_ms / 1000.0
        self.max_size = max_size
        self.min_size = min_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.opened_at: float | None = None
        self.window_end: float | None = None

    def configure(self, window_ms: float, max_size: int, min_size: int, max_wait_ms: float) -> None:
        """Take new option values; an open window keeps its opening time."""
        self.window_s = window_ms / 1000.0
        self.max_size = max_size
        self.min_size = min_size
        self.max_wait_s = max_wait_ms / 1000.0
        if self.opened_at is not None:
            self.window_end = self.opened_at + min(self.window_s, self.max_wait_s)

    @property
    def is_open(self) -> bool:
        """Whether a window is open (something waits)."""
        return self.opened_at is not None

    def open(self, now: float, window_s: float | None = None) -> None:
        """Open a window at ``now`` (of ``window_s``, default the configured length)."""
        self.opened_at = now
        length = self.window_s if window_s is None else window_s
        self.window_end = now + min(length, self.max_wait_s)

    def close(self) -> None:
        """Forget the window: the queue is empty."""
        self.opened_at = None
        self.window_end = None

    def due(self, now: float, waiting: int, oldest_arrival: float) -> bool:
        """Whether a batch should be taken now from ``waiting`` unique requests."""
        if waiting <= 0 or self.window_end is None:
            return False
        if waiting >= self.max_size or now >= oldest_arrival + self.max_wait_s:
            return True
        return now >= self.window_end and waiting >= self.min_size

    def next_check(self, now: float, waiting: int, oldest_arrival: float) -> float | None:
        """The earliest time at which ``due`` can turn true without new arrivals."""
        if waiting <= 0 or self.window_end is None:
            return None
        starve_at = oldest_arrival + self.max_wait_s
        if self.window_end > now:
            return min(self.window_end, starve_at)
        return starve_at  # window over but short of min_size: only starvation closes it now


def select(
    groups: Sequence[Waiting] | Iterable[Waiting],
    limit: int,
    now: float,
    max_wait_s: float,
    priorities: bool,
) -> list[Waiting]:
    """Pick up to ``limit`` groups for the next batch.

    Without priorities: oldest first. With priorities: groups that have waited ``max_wait_s``
    first (oldest first), then highest priority, FIFO within a priority.

    ``groups`` must be in arrival order (ascending ``seq``).
    """
    if not priorities:
        return list(islice(groups, limit))
    starved: list[Waiting] = []
    rest: list[Waiting] = []
    for g in groups:
        # the same float expression as WindowScheduler.due and next_check (a starvation timer
        # fires at first_arrival + max_wait_s): "now - max_wait_s" can round to the other side
        (starved if now >= g.first_arrival + max_wait_s else rest).append(g)
    if len(starved) >= limit:
        return starved[:limit]
    best = heapq.nsmallest(limit - len(starved), rest, key=lambda g: (-g.priority, g.seq))
    return starved + best
