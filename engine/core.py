"""The batching core: windows, dedup, dispatch, fan-out, timeouts and stats, for both modes.

The core works on plain :class:`Request` records and reports each outcome through one
completion hook, ``on_complete(request, value, error)``. The embedded :class:`BatchProcessor`
resolves asyncio futures from that hook; the engine process writes response frames to a ring
from it. Nothing here knows which of the two it serves.

The records it works on are in ``records.py`` (with the life of a request drawn there), the
dedup stages in ``grouping.py``.

Every transition happens on the core's event loop; the only other thread is a sync handler's,
which hands its result back with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from .config import BatchConfig
from .dedup import LeaderIndex
from .errors import (
    BatchTimeoutError,
    ConfigError,
    HandlerError,
    QueueFullError,
    StratabatchError,
)
from .grouping import Grouping
from .records import DONE, GROUPED, INFLIGHT, RAW, Batch, Group, Request
from .stats import Stats, StatsRecorder
from .window import WindowScheduler, select

__all__ = ["DONE", "GROUPED", "INFLIGHT", "RAW", "Core", "OnComplete", "Request"]

OnComplete = Callable[["Request", Any, "BaseException | None"], None]


class Core(Grouping):
    """The batching engine behind both modes.

    Args:
        config: Validated options; the core reads them live, call :meth:`reconfigure` after
            changing one.
        on_complete: Called exactly once per accepted request with ``(request, value, error)``.
        handler: The batch handler (async or sync), or None until :meth:`set_handler`.
    """

    def __init__(self, config: BatchConfig, on_complete: OnComplete, handler: Any = None) -> None:
        self.config = config
        self._on_complete = on_complete
        self._handler: Any = None
        self._handler_is_async = False
        if handler is not None:
            self.set_handler(handler)
        self.stats = StatsRecorder()
        c = config
        self._sched = WindowScheduler(c.window_ms, c.max_size, c.min_size, c.max_wait_ms)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._raw: list[Request] = []
        self._pending: dict[int, Group] = {}  # by seq: arrival order
        # exact key -> the group it belongs to, pending or running: the group itself for its
        # leader's key, (group, norm, similarity, exact) for a member's own key
        self._exact: dict[Any, Any] = {}
        self._batches: set[Batch] = set()
        self._waiting = 0
        self._seq = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._pump_scheduled = False
        self._closing = False
        self._idle: asyncio.Event | None = None
        self._room_waiters: deque[asyncio.Future] = deque()
        self._warm: asyncio.Future | None = None
        self._warm_error: BaseException | None = None
        self._evict_heap: list[tuple[int, int, Request]] = []
        self._embedder: Any = None
        self._leaders = LeaderIndex()
        self._adaptive: Any = None
        self._window_now_ms = c.window_ms
        self.reconfigure()

    # ----------------------------------------------------------------- set-up

    def set_handler(self, handler: Any) -> None:
        """Install the batch handler: ``list[request] -> list[result]``, async or sync."""
        if not callable(handler):
            raise ConfigError(f"handler must be callable, got {handler!r}", field="handler")
        self._handler = handler
        self._handler_is_async = inspect.iscoroutinefunction(handler) or (
            inspect.iscoroutinefunction(getattr(handler, "__call__", None))  # noqa: B004
        )

    @property
    def handler(self) -> Any:
        """The installed handler, or None."""
        return self._handler

    def reconfigure(self, name: str | None = None) -> None:
        """Pick up changed options (all of them, or just ``name``)."""
        c = self.config
        self._sched.configure(c.window_ms, c.max_size, c.min_size, c.max_wait_ms)
        if name in (None, "embedder"):
            self._embedder = None
            self._leaders.reset()
        if name in (None, "adaptive", "target_latency_ms", "min_window_ms", "max_window_ms",
                    "max_size", "max_inflight_batches"):
            if c.adaptive:
                from .adaptive import AdaptiveWindow

                self._adaptive = AdaptiveWindow(
                    target_latency_ms=c.target_latency_ms,
                    min_window_ms=c.min_window_ms,
                    max_window_ms=c.max_window_ms,
                    max_size=c.max_size,
                    max_inflight_batches=c.max_inflight_batches,
                )
                self._window_now_ms = self._adaptive.current_window_ms
            else:
                self._adaptive = None
                self._window_now_ms = c.window_ms
        if not c.adaptive:
            self._window_now_ms = c.window_ms
        if c.on_full == "drop_lowest" and not self._evict_heap and self._waiting:
            self._rebuild_evict_heap()
        if self._loop is not None and (self._raw or self._pending):
            self._schedule_pump()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach the core to ``loop``; it stays on that loop for life."""
        if self._loop is None:
            self._loop = loop
            self._idle = asyncio.Event()
            self._idle.set()
            self._warm = loop.create_future()
            if self.config.enable_dedup:
                threading.Thread(target=self._warm_up, name="stratabatch-warmup",
                                 daemon=True).start()
            else:
                self._warm.set_result(None)
        elif self._loop is not loop:
            raise StratabatchError(
                "this processor is bound to another event loop; create one per loop"
            )

    def _warm_up(self) -> None:
        """Load (or compile) the numba kernels off the event loop, so the loop never stalls
        on the first dedup; the pump holds new requests until this is done."""
        error: BaseException | None = None
        try:
            import numpy as np

            from .kernels import leader_cluster, xxh64_batch

            xxh64_batch(np.zeros(8, np.uint8), np.array([0, 8], np.int64))
            if self.config.dedup_strategy in ("embedding", "hybrid") and \
                    self.config.embedder is None and self.config.dedup_function is None:
                emb = self.embedder()
                x = emb.embed(["warm up", "warm-up"])
                leader_cluster(np.ascontiguousarray(x, np.float32), np.zeros(2, np.int64), 0.9, 0)
        except BaseException as e:  # reported on the loop: the first dedup pass raises it
            error = e
        loop = self._loop
        assert loop is not None
        try:
            loop.call_soon_threadsafe(self._warmed, error)
        except RuntimeError:
            pass  # the loop closed first

    def _warmed(self, error: BaseException | None) -> None:
        if not self._warm.done():
            self._warm.set_result(None)
        if error is not None:
            self._warm_error = error
        self._schedule_pump()

    async def warm_up(self) -> None:
        """Wait until the dedup kernels are loaded (bind first)."""
        if self._warm is not None:
            await asyncio.shield(self._warm)

    # ------------------------------------------------------------- admission

    @property
    def waiting(self) -> int:
        """Accepted requests not yet handed to the handler."""
        return self._waiting

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has begun: no new requests are accepted."""
        return self._closing

    def make_room(self, priority: int) -> bool:
        """Apply ``on_full`` for one more request of ``priority``.

        Returns True if it may be submitted now, False if the caller should wait for room
        (``on_full="wait"``).

        Raises:
            QueueFullError: ``on_full`` is "reject", or "drop_lowest" and nothing waiting has a
                lower priority.
        """
        c = self.config
        if self._waiting < c.max_queue:
            return True
        if c.on_full == "wait":
            return False
        if c.on_full == "drop_lowest":
            victim = self._lowest_waiting()
            if victim is not None and victim.priority < priority:
                self._leave(victim)
                self._finish(victim, None, QueueFullError(
                    f"evicted: the queue is full (max_queue={c.max_queue}) and a request of "
                    f"priority {priority} arrived; this one had priority {victim.priority}"
                ))
                return True
            self.stats.rejected += 1
            raise QueueFullError(
                f"queue full (max_queue={c.max_queue}) and no waiting request has a priority "
                f"below {priority}"
            )
        self.stats.rejected += 1
        raise QueueFullError(f"queue full: {self._waiting} requests wait (max_queue={c.max_queue})")

    async def wait_for_room(self, deadline: float | None) -> None:
        """Wait until the queue has room (``on_full="wait"``), at most until ``deadline``.

        Raises:
            QueueFullError: the deadline passed first.
        """
        loop = self._loop
        assert loop is not None
        fut = loop.create_future()
        self._room_waiters.append(fut)
        try:
            if deadline is None:
                await fut
            else:
                await asyncio.wait_for(fut, max(0.0, deadline - loop.time()))
        except (TimeoutError, asyncio.TimeoutError):
            self.stats.rejected += 1
            raise QueueFullError(
                f"queue still full (max_queue={self.config.max_queue}) when the caller's "
                "timeout ran out"
            ) from None
        finally:
            if not fut.done():
                fut.cancel()
            try:
                self._room_waiters.remove(fut)
            except ValueError:
                pass

    def _notify_room(self) -> None:
        room = self.config.max_queue - self._waiting
        while room > 0 and self._room_waiters:
            fut = self._room_waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                room -= 1

    def _lowest_waiting(self) -> Request | None:
        heap = self._evict_heap
        while heap:
            _, _, req = heap[0]
            if req.state in (RAW, GROUPED):
                return req
            heapq.heappop(heap)
        return None

    def _rebuild_evict_heap(self) -> None:
        live = [r for r in self._raw if r.state == RAW]
        for g in self._pending.values():
            live.extend(m for m in g.members if m.state == GROUPED)
        self._evict_heap = [(r.priority, -r.seq, r) for r in live]
        heapq.heapify(self._evict_heap)

    # ------------------------------------------------------------- submission

    def submit(self, req: Request) -> None:
        """Queue an accepted request. Its outcome arrives through ``on_complete``."""
        loop = self._loop
        if loop is None:
            raise StratabatchError("bind() the core to an event loop before submitting")
        if self._closing:
            raise StratabatchError("the processor is closed; no new requests are accepted")
        if self._handler is None:
            raise ConfigError(
                "no handler: pass handler= to BatchProcessor or decorate one with @batch.handler",
                field="handler",
            )
        now = loop.time()
        req.arrival = now
        req.seq = self._seq
        self._seq += 1
        self.stats.total_requests += 1
        self._waiting += 1
        self._raw.append(req)
        if self._idle is not None and self._idle.is_set():
            self._idle.clear()
        if self.config.on_full == "drop_lowest":
            heapq.heappush(self._evict_heap, (req.priority, -req.seq, req))
        if req.deadline is not None:
            req.timer = loop.call_later(max(0.0, req.deadline - now), self._expire, req)
        if self._adaptive is not None:
            self._adaptive.observe_arrival(now)
        sched = self._sched
        if not sched.is_open:
            sched.open(now, self._window_s(now))
            self._arm_timer(now, force=True)
        elif len(self._raw) + len(self._pending) >= sched.max_size or now >= sched.window_end:
            self._schedule_pump()

    def _window_s(self, now: float) -> float:
        if self._adaptive is not None:
            queued = len(self._pending) + len(self._raw)
            waited = 0.0
            if self._pending:
                waited = (now - next(iter(self._pending.values())).first_arrival) * 1000.0
            self._window_now_ms = self._adaptive.window_ms(
                now, queued=max(queued, 1), waited_ms=max(waited, 0.0))
        return self._window_now_ms / 1000.0

    # ------------------------------------------------------------- leaving

    def abandon(self, req: Request) -> None:
        """The caller gave up on ``req`` (cancelled): drop it without an outcome.

        Its twins are unaffected; shared work is cancelled only when its last waiter leaves.
        """
        if req.state == DONE:
            return
        self._leave(req)
        req.state = DONE
        if req.timer is not None:
            req.timer.cancel()
            req.timer = None
        self._after_change()

    def _expire(self, req: Request) -> None:
        req.timer = None
        if req.state == DONE:
            return
        self._leave(req)
        self._finish(req, None, BatchTimeoutError(
            "the caller's timeout ran out before a result was ready"
            + (" (request was still queued)" if req.group is None or req.group.batch is None
               else " (handler still running)")
        ))
        self._after_change()

    def _leave(self, req: Request) -> None:
        """Take ``req`` out of whatever structure holds it (no outcome delivered here)."""
        st = req.state
        if st == RAW:
            req.state = DONE  # the dedup pass skips it; the list is filtered lazily
            self._waiting -= 1
            self.stats.dropped += 1
        elif st == GROUPED:
            g = req.group
            assert g is not None
            req.state = DONE
            self._waiting -= 1
            self.stats.dropped += 1
            g.live -= 1
            if g.live == 0:
                self._remove_pending(g)
        elif st == INFLIGHT:
            g = req.group
            assert g is not None and g.batch is not None
            req.state = DONE
            g.live -= 1
            b = g.batch
            b.live -= 1
            if b.live == 0 and b.task is not None and not b.task.done():
                b.task.cancel()  # nobody waits for any of its results any more

    def _remove_pending(self, g: Group, keep_keys: bool = False) -> None:
        """Take ``g`` out of the pending groups; its exact keys stay if it is being sent (a
        twin arriving while it runs coalesces into it)."""
        self._pending.pop(g.seq, None)
        if g.row is not None:
            self._leaders.drop(g.row)
            g.row = None
        if not keep_keys:
            self._drop_keys(g)

    def _drop_keys(self, g: Group) -> None:
        exact = self._exact
        for k in g.keys:
            entry = exact.get(k)
            if entry is g or (type(entry) is tuple and entry[0] is g):
                del exact[k]

    def _after_change(self) -> None:
        if self._room_waiters:
            self._notify_room()
        if self._loop is not None:
            self._schedule_pump()

    # ------------------------------------------------------------- the pump

    def _schedule_pump(self) -> None:
        if not self._pump_scheduled and self._loop is not None:
            self._pump_scheduled = True
            self._loop.call_soon(self._pump)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._pump()

    def _arm_timer(self, now: float, force: bool = False) -> None:
        if not self._pending and not self._raw:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = self._timer_at = None
            return
        if self._pending:
            oldest = next(iter(self._pending.values())).first_arrival
            when = self._sched.next_check(now, len(self._pending), oldest)
        else:  # only raw requests: their window end is the next look
            when = self._sched.window_end
        if when is None:
            return
        if self._timer is not None:
            if not force and self._timer_at is not None and self._timer_at <= when:
                return
            self._timer.cancel()
        assert self._loop is not None
        self._timer_at = when
        self._timer = self._loop.call_later(max(0.0, when - now), self._on_timer)

    def _pump(self) -> None:
        """Dedup what arrived, take every batch that is due, and set the next wake-up."""
        self._pump_scheduled = False
        loop = self._loop
        if loop is None:
            return
        now = loop.time()
        if self._raw:
            if self._warm is not None and not self._warm.done():
                return  # the kernels are loading; _warmed() pumps again
            arrived = [r for r in self._raw if r.state == RAW]
            self._raw = []
            try:
                if self._warm_error is not None:
                    raise self._warm_error
                self._dedup_pass(arrived)
            except Exception as e:  # never strand what arrived: each request gets the error
                for r in arrived:
                    self._fail_raw(r, StratabatchError(f"dedup failed: {type(e).__name__}: {e}"))
        sched = self._sched
        c = self.config
        took = False
        while self._pending and len(self._batches) < c.max_inflight_batches:
            oldest = next(iter(self._pending.values())).first_arrival
            if not (self._closing or sched.due(now, len(self._pending), oldest)):
                break
            chosen = select(self._pending.values(), c.max_size, now, sched.max_wait_s,
                            c.enable_priorities)
            self._dispatch(chosen, now)  # type: ignore[arg-type]
            took = True
        if not self._pending or len(self._batches) >= c.max_inflight_batches:
            # empty, or due work waits for a handler slot: a finishing batch pumps again
            if not self._pending:
                sched.close()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = self._timer_at = None
        else:
            if took or not sched.is_open:
                sched.open(now, self._window_s(now))
            self._arm_timer(now, force=took)
        if took and self._room_waiters:
            self._notify_room()
        self._check_idle()

    def _check_idle(self) -> None:
        if self._idle is not None and not self._raw and not self._pending and not self._batches:
            self._idle.set()

    # ------------------------------------------------------------- dispatch

    def _dispatch(self, groups: list[Group], now: float) -> None:
        live_total = 0
        sent: list[Group] = []
        st = self.stats
        for g in groups:
            self._remove_pending(g, keep_keys=True)
            live = []
            for m in g.members:
                if m.state != GROUPED:
                    continue
                if m.deadline is not None and m.deadline <= now:
                    self._expire(m)  # its timer is due this very tick: never send it
                    continue
                m.state = INFLIGHT
                if live:
                    st.record_merge(1.0 if m.similarity is None else m.similarity,
                                    m.exact or m.similarity is None)
                live.append(m)
            if not live:
                self._drop_keys(g)
                continue
            self._waiting -= len(live)
            live_total += len(live)
            sent.append(g)
        if not sent:
            return
        batch = Batch(sent, live_total)
        for g in sent:
            g.batch = batch
        st.record_batch(len(sent))
        self._batches.add(batch)
        assert self._loop is not None
        batch.task = self._loop.create_task(self._run(batch))

    async def _call_handler(self, payloads: list[Any]) -> Any:
        if self._handler_is_async:
            return await self._handler(payloads)
        loop = self._loop
        assert loop is not None
        fut = loop.create_future()
        handler = self._handler

        def settle(value: Any, error: BaseException | None) -> None:
            if fut.done():
                return
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(value)

        def work() -> None:
            try:
                value, error = handler(payloads), None
            except BaseException as e:  # handed to the loop, raised there
                value, error = None, e
            try:
                loop.call_soon_threadsafe(settle, value, error)
            except RuntimeError:
                pass  # the loop closed while this thread ran: nobody is left to answer

        # A daemon thread per batch, not a pool: a sync handler that hangs past
        # processing_timeout cannot be killed, and must neither block later batches nor
        # interpreter exit.
        threading.Thread(target=work, name="stratabatch-handler", daemon=True).start()
        result = await fut
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _run(self, batch: Batch) -> None:
        loop = self._loop
        assert loop is not None
        payloads = [g.leader.payload for g in batch.groups]
        n = len(payloads)
        timeout = self.config.processing_timeout
        t0 = loop.time()
        results: Any = None
        error: BaseException | None = None
        cancelled = False
        try:
            if timeout is None:
                results = await self._call_handler(payloads)
            else:
                results = await asyncio.wait_for(self._call_handler(payloads), timeout)
        except asyncio.CancelledError:
            cancelled = True
        except (TimeoutError, asyncio.TimeoutError):
            error = BatchTimeoutError(
                f"the handler did not finish a batch of {n} within processing_timeout="
                f"{timeout:g}s"
            )
        except Exception as e:
            error = HandlerError.from_exception(e, f"the handler raised on a batch of {n}")
        now = loop.time()
        elapsed = now - t0
        if error is None and not cancelled:
            if not isinstance(results, (list, tuple)):
                error = HandlerError(
                    f"the handler must return a list of {n} results (one per request, in "
                    f"order), got {type(results).__name__}"
                )
            elif len(results) != n:
                error = HandlerError(
                    f"the handler returned {len(results)} results for a batch of {n}; it must "
                    "return exactly one result per request, in order"
                )
            elif self._adaptive is not None:
                self._adaptive.observe_batch(n, elapsed)
        self._batches.discard(batch)
        try:
            self._fan_out(batch, results, error, cancelled, now)
        except Exception as e:  # a bug of ours must not strand anyone: answer who is left
            for g in batch.groups:
                self._fail_group(g, StratabatchError(
                    f"internal error while answering a batch: {type(e).__name__}: {e}"))
        finally:
            for g in batch.groups:  # break the request<->group<->batch cycles: no GC work
                self._drop_keys(g)
                for m in g.members:
                    m.group = None
                g.members = []
                g.batch = None
            batch.groups = []
            self._schedule_pump()
            self._check_idle()

    def _fan_out(self, batch: Batch, results: Any, error: BaseException | None,
                 cancelled: bool, now: float) -> None:
        """Give each member of each group its outcome."""
        for i, g in enumerate(batch.groups):
            self._drop_keys(g)
            if cancelled:  # every waiter left; anyone who joined since is answered here
                self._fail_group(g, StratabatchError("the batch was cancelled"))
                continue
            if error is not None:
                self._fail_group(g, error)
                continue
            value = results[i]
            if isinstance(value, BaseException):
                self._fail_group(g, HandlerError.from_exception(
                    value, "the handler returned an error for this request"))
            else:
                for m in g.members:
                    if m.state == INFLIGHT:
                        self._finish(m, value, None, now)

    def _fail_group(self, g: Group, error: BaseException) -> None:
        first = True
        for m in g.members:
            if m.state == INFLIGHT:
                err = error if first else _copy_error(error)
                first = False
                self._finish(m, None, err)

    # ------------------------------------------------------------- outcomes

    def _finish(self, req: Request, value: Any, error: BaseException | None,
                now: float | None = None) -> None:
        req.state = DONE
        if req.timer is not None:
            req.timer.cancel()
            req.timer = None
        if now is None:
            assert self._loop is not None
            now = self._loop.time()
        st = self.stats
        st.record_done(now - req.arrival, now)
        if error is not None:
            if isinstance(error, BatchTimeoutError):
                st.timeouts += 1
            elif isinstance(error, QueueFullError):
                st.rejected += 1
            else:
                st.errors += 1
        self._on_complete(req, value, error)

    # ------------------------------------------------------------- stats, close

    def snapshot(self) -> Stats:
        """A consistent :class:`Stats` of this core."""
        loop = self._loop
        now = loop.time() if loop is not None else 0.0
        a = getattr(self._adaptive, "a_ms", 0.0) if self._adaptive is not None else 0.0
        b = getattr(self._adaptive, "b_ms", 0.0) if self._adaptive is not None else 0.0
        return self.stats.snapshot(
            now=now, queue_depth=self._waiting, window_ms=self._window_now_ms,
            cost_per_request=self.config.cost_per_request_usd, adaptive_a_ms=a, adaptive_b_ms=b,
        )

    async def close(self) -> None:
        """Stop accepting, run everything queued without waiting for windows, and wait."""
        self._closing = True
        for fut in list(self._room_waiters):
            if not fut.done():
                fut.set_exception(StratabatchError("the processor closed while waiting for room"))
        if self._loop is None or self._idle is None:
            return
        self._schedule_pump()
        await self._idle.wait()


def _copy_error(error: BaseException) -> BaseException:
    """A fresh exception equal to ``error`` for each caller (tracebacks are per raise)."""
    if isinstance(error, HandlerError):
        new: BaseException = HandlerError(
            str(error), exc_type=error.exc_type, exc_message=error.exc_message
        )
    else:
        try:
            new = type(error)(*error.args)
        except Exception:
            return error
    new.__cause__ = error.__cause__
    return new

