"""Admission: ``max_queue`` and ``on_full``, the eviction heap, and callers waiting for room.

A component the core holds. It counts the requests waiting in the queue (accepted, not yet
handed to the handler), decides what one more request does when the queue is full (wait,
reject, or evict the lowest-priority waiting request), and wakes the callers waiting for
room, one per freed place, in the order they came.

It holds no requests of its own beyond the eviction heap (``(priority, -seq, request)``,
lazily cleaned: a request that left stays on the heap until it reaches the top); the core
tells it what arrives (:meth:`Admission.arrived`), what leaves (:meth:`Admission.release`),
and evicts the victim it names.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .errors import QueueFullError, StratabatchError
from .logs import QUEUE, RateLimitedLog
from .records import GROUPED, RAW, Request

if TYPE_CHECKING:
    from .config import BatchConfig
    from .stats import StatsRecorder

__all__ = ["Admission"]


class Admission:
    """The queue's door; see the module doc.

    Args:
        config: The live options (``max_queue``, ``on_full``).
        stats: Where refusals are counted (``rejected``).
        live: Returns every request waiting now (to rebuild the eviction heap).
        evict: Takes a waiting request out of the queue with the given error.

    Attributes:
        waiting: Accepted requests not yet handed to the handler.
        evict_heap: ``(priority, -seq, request)`` of waiting requests with
            ``on_full="drop_lowest"``; empty under the other policies.
    """

    def __init__(
        self,
        config: BatchConfig,
        stats: StatsRecorder,
        live: Callable[[], Iterable[Request]],
        evict: Callable[[Request, QueueFullError], None],
    ) -> None:
        self.config = config
        self._stats = stats
        self._live = live
        self._evict = evict
        self.waiting = 0
        self.evict_heap: list[tuple[int, int, Request]] = []
        self.evicting = False  # on_full == "drop_lowest": arrivals go on the heap
        self._room_waiters: deque[asyncio.Future] = deque()
        self._full_log: RateLimitedLog | None = None  # requests turned away (on_full)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clock: Callable[[], float] | None = None

    def bind(
        self, loop: asyncio.AbstractEventLoop, clock: Callable[[], float] | None = None
    ) -> None:
        """Attach to the core's loop; ``clock`` is the core's (the one callers' deadlines
        are on; None: the loop's ``time()``)."""
        self._loop = loop
        self._clock = clock = loop.time if clock is None else clock
        self._full_log = RateLimitedLog(
            logging.getLogger(QUEUE),
            logging.WARNING,
            "queue-full event",
            clock=clock,
            call_later=loop.call_later,
        )

    def configure(self, name: str | None) -> None:
        """Pick up changed options (all of them, or just ``name``)."""
        if name in (None, "on_full"):
            # requests queued under another policy were never put on the heap: rebuild it
            self.evicting = self.config.on_full == "drop_lowest"
            if self.evicting:
                self.rebuild()
            else:
                self.evict_heap = []
        if name == "max_queue" and self._room_waiters:
            self.notify_room()

    # ------------------------------------------------------------- the door

    def has_room(self) -> bool:
        """Whether one more request fits under ``max_queue`` now (changes nothing)."""
        return self.waiting < self.config.max_queue

    def make_room(self, priority: int) -> bool:
        """Apply ``on_full`` for one more request of ``priority``.

        Returns True if it may be submitted now, False if the caller should wait for room
        (``on_full="wait"``).

        Raises:
            QueueFullError: ``on_full`` is "reject", or "drop_lowest" and nothing waiting has a
                lower priority.
        """
        c = self.config
        if self.waiting < c.max_queue:
            return True
        if c.on_full == "wait":
            return False
        if c.on_full == "drop_lowest":
            victim = self.lowest_waiting()
            if victim is not None and victim.priority < priority:
                self._evict(
                    victim,
                    self.turned_away(
                        QueueFullError(
                            f"evicted: the queue is full (max_queue={c.max_queue}) and a request "
                            f"of priority {priority} arrived; this one had priority "
                            f"{victim.priority}"
                        )
                    ),
                )
                return True
            self._stats.rejected += 1
            raise self.turned_away(
                QueueFullError(
                    f"queue full (max_queue={c.max_queue}) and no waiting request has a "
                    f"priority below {priority}"
                )
            )
        self._stats.rejected += 1
        raise self.turned_away(
            QueueFullError(f"queue full: {self.waiting} requests wait (max_queue={c.max_queue})")
        )

    def turned_away(self, error: QueueFullError) -> QueueFullError:
        """Log a request that backpressure turned away (``stratabatch.queue``, WARNING, at
        most one line every 10 s with a count of the rest); return ``error``."""
        if self._full_log is not None:
            self._full_log.event(f"{error} (on_full={self.config.on_full})")
        return error

    async def wait_for_room(self, deadline: float | None) -> None:
        """Wait until the queue has room (``on_full="wait"``), at most until ``deadline``.

        Raises:
            QueueFullError: the deadline passed first.
        """
        loop = self._loop
        assert loop is not None and self._clock is not None
        fut = loop.create_future()
        self._room_waiters.append(fut)
        try:
            if deadline is None:
                await fut
            else:
                await asyncio.wait_for(fut, max(0.0, deadline - self._clock()))
        except (TimeoutError, asyncio.TimeoutError):
            self._stats.rejected += 1
            raise self.turned_away(
                QueueFullError(
                    f"queue still full (max_queue={self.config.max_queue}) when the caller's "
                    "timeout ran out"
                )
            ) from None
        except BaseException:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._forget(fut)
                self.notify_room()  # woken, but leaving: the room goes to the next waiter
            raise
        finally:
            if not fut.done():
                fut.cancel()
            self._forget(fut)

    def _forget(self, fut: asyncio.Future) -> None:
        try:
            self._room_waiters.remove(fut)
        except ValueError:
            pass

    # ------------------------------------------------------------- arrivals, departures

    def arrived(self, req: Request) -> None:
        """``req`` was queued (the caller counted it in :attr:`waiting`): with
        ``drop_lowest`` it goes on the eviction heap."""
        heap = self.evict_heap
        heapq.heappush(heap, (req.priority, -req.seq, req))
        if len(heap) > 2 * self.waiting + 1024:  # mostly requests that left: rebuild
            self.rebuild()

    def release(self, n: int) -> None:
        """``n`` requests stopped waiting in the queue: room for as many waiting callers."""
        self.waiting -= n
        if self._room_waiters:
            self.notify_room()

    def notify_room(self) -> None:
        """Wake as many callers waiting for room as there are free places."""
        room = self.config.max_queue - self.waiting
        while room > 0 and self._room_waiters:
            fut = self._room_waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                room -= 1

    @property
    def anyone_waiting_for_room(self) -> bool:
        """Whether a caller waits for room now."""
        return bool(self._room_waiters)

    # ------------------------------------------------------------- eviction

    def lowest_waiting(self) -> Request | None:
        """The waiting request ``drop_lowest`` evicts first, or None."""
        heap = self.evict_heap
        while heap:
            _, _, req = heap[0]
            if req.state in (RAW, GROUPED):
                return req
            heapq.heappop(heap)
        return None

    def rebuild(self) -> None:
        """Build the eviction heap anew from what waits now."""
        self.evict_heap = [(r.priority, -r.seq, r) for r in self._live()]
        heapq.heapify(self.evict_heap)

    # ------------------------------------------------------------- close

    def close(self) -> None:
        """Fail every caller waiting for room (the core closes)."""
        for fut in list(self._room_waiters):
            if not fut.done():
                fut.set_exception(StratabatchError("the processor closed while waiting for room"))

    def stop_logging(self) -> None:
        """Flush and stop the rate-limited queue-full log."""
        if self._full_log is not None:
            self._full_log.close()
