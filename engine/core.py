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
import logging
import math
import sys
import time
from collections.abc import Callable
from typing import Any

from .admission import Admission
from .answers import GONE, Answers, OnComplete, OnCompleteMany
from .config import BatchConfig
from .errors import (
    BatchTimeoutError,
    ConfigError,
    HandlerError,
    QueueFullError,
    StratabatchError,
)
from .failurelog import FailureLog
from .grouping import Deduper
from .lane import Lane
from .lanework import LaneWork
from .nearreuse import NearReuse
from .passes import Passes
from .records import (
    DONE,
    GROUPED,
    INFLIGHT,
    RAW,
    Batch,
    Group,
    Request,
    TickShare,
    cancel_timer,
)
from .reuse import CLEARS_ON, ReuseCache, reuse_cache_for
from .runner import Runner
from .stats import Stats, StatsRecorder
from .warmup import Warmup
from .window import WindowScheduler, select

__all__ = ["DONE", "GROUPED", "INFLIGHT", "RAW", "Core", "OnComplete", "Request"]


# How long close() lets cancelled handler calls finish their own clean-up before it returns.
_ABANDON_GRACE_S = 0.5

# A deadline's own timer that fires more than this before it by the core's clock waits for
# the rest (uvloop rounds a timer to whole milliseconds), at least _REARM_S more (a shorter
# wait rounds to none there, and would spin).
_EARLY_S = 1e-6
_REARM_S = 0.001


def _clock_of(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """The core's clock on ``loop``: ``time.monotonic`` when the loop's own clock is the
    monotonic clock (asyncio's loops: their ``time()`` returns it, read here without that
    method's Python frame; uvloop's: its ``time()`` is that clock in whole milliseconds),
    else the loop's ``time()`` (a loop with a clock of its own, e.g. a test's virtual one).

    On uvloop the stamps then keep the clock's full resolution (a latency of a fraction of a
    millisecond is not rounded to 0 or 1 ms), and the loop's timers (``call_at``, on its own
    clock) keep their meaning: uvloop's clock lags the monotonic one by less than a
    millisecond, so a timer fires that much later by the core's clock, or up to half a
    millisecond earlier from rounding, which the deadlines' timers check (:data:`_EARLY_S`).
    """
    read = loop.time
    if getattr(read, "__func__", None) is asyncio.BaseEventLoop.time:
        return time.monotonic
    uv = sys.modules.get("uvloop.loop")  # (never imported here: only if the loop is one)
    if (
        uv is not None
        and isinstance(loop, uv.Loop)
        and getattr(read, "__self__", None) is loop
        and type(loop).time is uv.Loop.time  # (not a subclass's clock of its own)
    ):
        return time.monotonic
    return read


def _key_scope(key: Any) -> bytes:
    """The dedup scope an exact key carries (b"" for an unscoped text's plain hash)."""
    return key[0] if type(key) is tuple else b""


class Core:
    """The batching engine behind both modes.

    Args:
        config: Validated options; the core reads them live (assignments to ``config`` are
            applied at once through :meth:`reconfigure`).
        on_complete: Called exactly once per accepted request with ``(request, value, error)``,
            on the core's loop, except for a request whose ``sink`` is an asyncio future that
            succeeds: the core sets its result itself (if the future is not done), the
            common case of ``BatchProcessor`` spared a call per request. The contract: it
            must not raise and must not call back into the core (submit, abandon...)
            synchronously; schedule such work instead. An exception it raises anyway is
            reported to the loop's exception handler and never reaches another request.
        handler: The batch handler (async or sync), or None until :meth:`set_handler`.
    """

    def __init__(self, config: BatchConfig, on_complete: OnComplete, handler: Any = None) -> None:
        self.config = config
        self._runner = Runner()
        if handler is not None:
            self.set_handler(handler)
        self.stats = StatsRecorder()
        c = config
        self._sched = WindowScheduler(c.window_ms, c.max_size, c.min_size, c.max_wait_ms)
        #: The event loop the core is bound to (:meth:`bind`), or None; read-only.
        self.loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[int, Group] = {}  # by seq: arrival order
        self._dedup = Deduper(config, self)
        # the outcomes: fan-out, failures, one request's answer (engine/answers.py)
        self._answers = Answers(on_complete, self.stats, self._dedup, lambda: self.loop)
        self._batches: set[Batch] = set()
        self._failures: FailureLog | None = None
        self._admission = Admission(config, self.stats, self._live_waiting, self._evict)
        self._seq = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._pump_scheduled = False
        self._deadline_tick_s = 0.0  # (deadline_tick_s)
        self._ticks: dict[int, TickShare] = {}  # tick -> the requests sharing its timer
        #: called at the start of every look, before the dedup pass (the engine reads its
        #: request rings there, so arrivals that came without waking it join this look)
        self.on_look: Callable[[], None] | None = None
        self._closing = False
        self._idle: asyncio.Event | None = None
        self._is_idle = False  # mirrors self._idle.is_set() (read per request)
        self._warmup = Warmup(self)  # the kernels, loaded off the loop (engine/warmup.py)
        # the arrivals and the dedup pass over them, in slices (engine/passes.py)
        self._passes = Passes(
            config,
            self._dedup,
            self._pending,
            self.reject,
            self._schedule_pump,
            lambda: self._warmup.error,
        )
        self._adaptive: Any = None
        self._window_now_ms = c.window_ms
        #: The core's clock (seconds): every time it stamps or compares (arrivals,
        #: completions, windows, deadlines) is read from it; see :meth:`bind`.
        self.clock: Callable[[], float] = time.monotonic
        #: The reuse cache (``reuse="exact"`` or ``"near"``), or None.
        self.reuse: ReuseCache | None = None
        #: Its near path (``reuse="near"``), or None.
        self.near: NearReuse | None = None
        # the row lane's coordination (engine/lanework.py; the lane itself: engine/lane.py),
        # its entry points bound here: the row paths' calls cost no delegating frame
        self._lanes = lanes = LaneWork(self)
        self._dedup.shadow = lanes.shadow
        #: :meth:`stratabatch.lanework.LaneWork.enable`.
        self.enable_lane = lanes.enable
        #: :meth:`stratabatch.lanework.LaneWork.submit_rows`.
        self.submit_rows = lanes.submit_rows
        #: :meth:`stratabatch.lanework.LaneWork.submit_texts`.
        self.submit_texts = lanes.submit_texts
        #: :meth:`stratabatch.lanework.LaneWork.submit_one` (the embedded single call).
        self.submit_one = lanes.submit_one
        #: :meth:`stratabatch.lanework.LaneWork.abandon_row`.
        self.abandon_row = lanes.abandon_row
        #: :meth:`stratabatch.lanework.LaneWork.abandon_holder`.
        self.abandon_holder = lanes.abandon_holder
        #: :meth:`stratabatch.grouping.GroupOps.lane_twins`
        #: (:meth:`stratabatch.lanework.LaneWork.lane_twins`).
        self.lane_twins = lanes.lane_twins
        self.reconfigure()
        config.subscribe(self.reconfigure)

    # ----------------------------------------------------------------- set-up

    def set_handler(self, handler: Any) -> None:
        """Install the batch handler: ``list[request] -> list[result]``, async or sync."""
        self._runner.set_handler(handler)

    @property
    def handler(self) -> Any:
        """The installed handler, or None."""
        return self._runner.handler

    @property
    def on_batch_start(self) -> Callable[[int], None] | None:
        """Called on the core's loop with the batch size as each handler call starts (the
        engine publishes batch sizes and looks at its rings from it), or None. The handler
        itself stays the user's: nothing needs to wrap it."""
        return self._runner.on_start

    @on_batch_start.setter
    def on_batch_start(self, hook: Callable[[int], None] | None) -> None:
        self._runner.on_start = hook

    @property
    def on_complete_many(self) -> OnCompleteMany | None:
        """None, or the hook that gets a finished batch's successes at once instead of
        ``on_complete`` for each (:attr:`stratabatch.answers.Answers.on_complete_many`)."""
        return self._answers.on_complete_many

    @on_complete_many.setter
    def on_complete_many(self, hook: OnCompleteMany | None) -> None:
        self._answers.on_complete_many = hook

    @property
    def next_look_at(self) -> float | None:
        """Loop time (``loop.time()``) of the next look a timer of the core is set for (a
        window's end, a group's ``max_wait_ms``), or None when none is set."""
        at = self._timer_at
        loop = self.loop
        if at is None or loop is None or self.clock == loop.time:
            return at
        return at - self.clock() + loop.time()  # (from the core's clock to the loop's)

    @property
    def completed(self) -> int:
        """Outcomes delivered so far (grows by one per answered request)."""
        return self.stats.completed

    def record_error(self) -> None:
        """Count one request answered with an error after the core delivered its outcome
        (the engine: a result that cannot be sent to its client)."""
        self.stats.record_error()

    def reconfigure(self, name: str | None = None) -> None:
        """Pick up changed options (all of them, or just ``name``)."""
        c = self.config
        self._sched.configure(c.window_ms, c.max_size, c.min_size, c.max_wait_ms)
        if name in (None, "embedder"):
            self._dedup.reset_embedder()
        if name in ("enable_dedup", "dedup_strategy", "embedder", "dedup_function"):
            self._warmup.ensure()
        if name in (
            None,
            "adaptive",
            "target_latency_ms",
            "min_window_ms",
            "max_window_ms",
            "max_size",
            "max_inflight_batches",
        ):
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
        self._admission.configure(name)
        if name in (None, "reuse"):
            if self.reuse is not None:
                self.reuse.clear()
            self.reuse = reuse_cache_for(c, self.clock)
            self._answers.store = None if self.reuse is None else self._store
            self.near = None
            if self.reuse is not None and c.reuse == "near":
                self.near = NearReuse(self.reuse, self._dedup, c)
        elif self.reuse is not None:
            self.reuse.reconfigure(c, name)
            if self.near is not None and name in CLEARS_ON:
                self.near.reset()  # (the cache dropped every entry; a new embedder's vectors)
        if self._lanes.hooks is not None:
            self._lanes.fit()
        if self.loop is not None and (self._raw or self._pending):
            self._schedule_pump()

    @property
    def deadline_tick_s(self) -> float:
        """0: each request with a deadline gets a loop timer of its own, at that deadline
        (embedded: its caller's timeout). > 0: the deadlines within one tick of this many
        seconds share one timer, at the tick's end (a request is expired up to a tick late;
        a dispatch still never sends expired work). The engine uses it: its clients time
        their calls out themselves, and a timer per request cost ~3 us on the engine's loop.
        The row lane's rows follow it too."""
        return self._deadline_tick_s

    @deadline_tick_s.setter
    def deadline_tick_s(self, value: float) -> None:
        self._deadline_tick_s = value
        lanes = self._lanes
        if lanes.lane is not None:  # a lane of the new tick (rows are filed by their tick)
            if lanes.lane.waiting or lanes.lane.raw:
                lanes.hand_over()
            lanes.lane = None
            lanes.maybe_general = True
            lanes.fit()

    # ------------------------------------------------------------- the row lane
    # (engine/lanework.py coordinates it; what it uses of the core is here and in
    # stratabatch.lanework.LaneHost)

    @property
    def lane_open(self) -> bool:
        """Whether plain requests may take the row lane now (:meth:`submit_rows`,
        :meth:`submit_one`): it is enabled, the options fit, and the general path has nothing
        waiting."""
        return (
            self._lanes.lane is not None
            and not self._passes.raw
            and not self._pending
            and not self._passes.preparing
            and not self._closing
            and not self._lanes.hold
        )

    def _arrived(self, lane: Lane, n: int, now: float, counted: bool = False) -> None:
        """``n`` arrivals joined the lane's raw: the accounting (unless ``counted`` already)
        and window of submit_many."""
        if not counted:
            self.stats.total_requests += n
            self._admission.waiting += n
        if self._is_idle:
            self._is_idle = False
            self._idle.clear()  # type: ignore[union-attr]  # (set by bind)
        if self._adaptive is not None:
            self._adaptive.observe_arrivals(n, now)
        sched = self._sched
        queued = len(lane.raw) + len(lane.waiting)
        if sched.opened_at is None:
            sched.open(now, self._window_s(now))
            self._arm_timer(now, force=True)
            if queued >= sched.max_size:  # (max_size=1: at once)
                self._schedule_pump()
        elif not self._pump_scheduled and (
            queued >= sched.max_size or now >= sched.window_end  # type: ignore[operator]  # (set while it is open)
        ):
            self._schedule_pump()

    def _next_seq(self) -> int:
        """The arrival order number of one more record."""
        seq = self._seq
        self._seq = seq + 1
        return seq

    def _requeue(self, make: Callable[[int], list[Request]]) -> None:
        """Put the records ``make(first_seq)`` returns first in line on the general path
        (the lane's waiting callers, handed over), their deadlines armed."""
        reqs = make(self._seq)
        self._seq += len(reqs)
        self._passes.raw[:0] = reqs
        loop = self.loop
        for r in reqs:
            if r.deadline is not None and loop is not None:
                self._arm_deadline(r, self.clock())

    def _run_passes(self) -> None:
        """Run the general path's dedup pass over its arrivals now, if it can run."""
        passes = self._passes
        loop = self.loop
        if passes.raw and loop is not None and not passes.preparing and self._warmup.ready:
            passes.run(loop)

    # ------------------------------------------------------------- reuse

    def reused(self) -> Callable[[Request], bool] | None:
        """:meth:`stratabatch.grouping.GroupOps.reused`: :meth:`_reused` with reuse on."""
        return None if self.reuse is None else self._reused

    def _reused(self, req: Request) -> bool:
        """Answer ``req`` from the reuse cache if it holds a live answer for its exact key
        (never a ``fresh`` one: its caller said ``reuse=False``)."""
        if req.fresh:
            return False
        key = req.key
        scope = _key_scope(key)
        got = self.reuse.get(  # type: ignore[union-attr]  # (only with reuse on)
            key, req.norm, scope, req.arrival
        )
        if got is None:
            return False
        self._serve_stored(req, got[0], got[1], 1.0, True)
        return True

    def _serve_stored(
        self, req: Request, value: Any, age: float, similarity: float, exact: bool
    ) -> None:
        """Answer ``req`` with a stored answer ``value`` of age ``age`` (a reuse hit, counted
        as a duplicate)."""
        req.reuse_age = age
        req.similarity = similarity
        req.exact = exact
        st = self.stats
        st.duplicates += 1
        st.reuse_hits += 1
        self._release(1)
        self._answers.finish(req, value, None)

    def near_reused(self) -> Callable[[list[Request], Any, Any], list[bool]] | None:
        """:meth:`stratabatch.grouping.GroupOps.near_reused`: :meth:`_near_reused` with
        ``reuse="near"`` (not while a first start's near kernels compile)."""
        if self.near is None or self._dedup.interim_exact:
            return None
        return self._near_reused

    def _near_reused(
        self, reqs: list[Request], vectors: list[Any] | None, followers: dict[Any, list[Request]]
    ) -> list[bool]:
        """Answer the near twins of stored answers among ``reqs`` (a pass's requests that no
        exact twin or stored answer took; ``vectors``: theirs computed ahead, or None), and
        their exact twins of the pass (``followers``, taken out); False for each answered."""
        now = self.clock()
        # a request whose call said reuse=False is never answered from the store, nor is its
        # exact twin of the pass (they run together, as twins in a window do)
        ask = [
            i
            for i, r in enumerate(reqs)
            if not r.fresh and not (followers and any(t.fresh for t in followers.get(r.key, ())))
        ]
        hits: list[Any] = [None] * len(reqs)
        if ask:
            every = len(ask) == len(reqs)
            asked = reqs if every else [reqs[i] for i in ask]
            got = self.near.lookup_many(  # type: ignore[union-attr]  # (only with reuse near)
                asked,
                [_key_scope(r.key) for r in asked],
                vectors if every or vectors is None else [vectors[i] for i in ask],
                now,
            )
            for i, hit in zip(ask, got, strict=True):
                hits[i] = hit
        keep: list[bool] = []
        st = self.stats
        for r, hit in zip(reqs, hits, strict=True):
            if hit is None:
                keep.append(True)
                continue
            keep.append(False)
            twins = followers.pop(r.key, None) if followers else None
            for q in (r, *(t for t in twins or () if t.state == RAW)):
                st.record_near_reuse(hit.similarity)
                self._serve_stored(q, hit.result, hit.age, hit.similarity, False)
        return keep

    def _store(self, g: Group, value: Any, started: float) -> None:
        """A group's handler item succeeded: keep its answer for later twins."""
        lead = g.leader
        key = lead.key
        if key is not None and lead.norm is not None:
            e = self.reuse.put(  # type: ignore[union-attr]  # (only with reuse on)
                key, lead.norm, value, _key_scope(key), born=started
            )
            near = self.near
            if e is not None and near is not None and not self._dedup.interim_exact:
                near.store(e, lead.text, lead.vector, lead)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach the core to ``loop``; it stays on that loop for life."""
        if self.loop is None:
            self.loop = loop
            self.clock = clock = _clock_of(loop)
            self._runner.loop = loop
            self._runner.clock = clock
            self._answers.clock = clock
            if self.reuse is not None:
                self.reuse.clock = clock
            self._failures = FailureLog(loop.call_later)
            self._admission.bind(loop, clock)
            self._idle = asyncio.Event()
            self._idle.set()
            self._is_idle = True
            self._warmup.ensure()
        elif self.loop is not loop:
            raise StratabatchError(
                "this processor is bound to another event loop; create one per loop"
            )

    @property
    def strategy_in_force(self) -> str | None:
        """The dedup strategy the passes run now: ``exact`` while a first start's near-dedup
        kernels compile in the background (``cold_start="serve"``), else the configured one
        (None without dedup)."""
        c = self.config
        if not c.enable_dedup:
            return None
        return "exact" if self._dedup.interim_exact else c.dedup_strategy

    @property
    def warm_log(self) -> tuple[logging.Logger, int]:
        """Where a first start's background compile logs (logger, level); the engine sets it
        to its own log."""
        return self._warmup.log

    @warm_log.setter
    def warm_log(self, value: tuple[logging.Logger, int]) -> None:
        self._warmup.log = value

    async def warm_up(self) -> None:
        """Wait until the dedup kernels are loaded (bind first)."""
        await self._warmup.wait()

    @property
    def _on_complete(self) -> OnComplete:
        """The completion hook (:attr:`stratabatch.answers.Answers.on_complete`)."""
        return self._answers.on_complete

    @_on_complete.setter
    def _on_complete(self, hook: OnComplete) -> None:
        self._answers.on_complete = hook

    @property
    def _raw(self) -> list[Request]:
        """The arrivals not grouped yet (:attr:`stratabatch.passes.Passes.raw`)."""
        return self._passes.raw

    @property
    def _preparing(self) -> bool:
        """Whether a slice's pure half runs in a worker thread now."""
        return self._passes.preparing

    # ------------------------------------------------------------- admission

    @property
    def waiting(self) -> int:
        """Accepted requests not yet handed to the handler."""
        return self._admission.waiting

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has begun: no new requests are accepted."""
        return self._closing

    @property
    def inflight_batches(self) -> int:
        """Handler calls running now."""
        return len(self._batches)

    def has_room(self) -> bool:
        """Whether one more request fits under ``max_queue`` now (changes nothing)."""
        return self._admission.has_room()

    def deadline_from_monotonic_ns(self, deadline_ns: int) -> float:
        """The core's time (:attr:`clock`) matching ``deadline_ns`` on the clock of
        ``time.monotonic_ns()`` (the clock a client process writes a frame's deadline in)."""
        loop = self.loop
        assert loop is not None
        return self.clock() + (deadline_ns - time.monotonic_ns()) / 1e9

    def vector_dim(self) -> int | None:
        """The dimension a request's own ``"embedding"`` must have, if known yet."""
        return self._dedup.vector_dim()

    def threshold(self) -> float:
        """The similarity threshold in force for near merges."""
        return self._dedup.threshold()

    def make_room(self, priority: int) -> bool:
        """Apply ``on_full`` for one more request of ``priority``
        (:meth:`stratabatch.admission.Admission.make_room`).

        Returns True if it may be submitted now, False if the caller should wait for room
        (``on_full="wait"``).

        Raises:
            QueueFullError: ``on_full`` is "reject", or "drop_lowest" and nothing waiting has a
                lower priority.
        """
        adm = self._admission
        if adm.waiting < self.config.max_queue:  # (the common case, without a second call)
            return True
        return adm.make_room(priority)

    async def wait_for_room(self, deadline: float | None) -> None:
        """Wait until the queue has room (``on_full="wait"``), at most until ``deadline``.

        Raises:
            QueueFullError: the deadline passed first.
        """
        await self._admission.wait_for_room(deadline)

    def _evict(self, victim: Request, error: QueueFullError) -> None:
        """``drop_lowest`` evicts ``victim`` (Admission's choice) with ``error``."""
        self._leave(victim)
        self._answers.finish(victim, None, error)

    def _live_waiting(self) -> list[Request]:
        live = [r for r in self._raw if r.state == RAW]
        for g in self._pending.values():
            live.extend(m for m in g.member_list() if m.state == GROUPED)
        return live

    def _release(self, n: int) -> None:
        """``n`` requests stopped waiting in the queue: room for as many waiting callers."""
        self._admission.release(n)

    def _notify_room(self) -> None:
        self._admission.notify_room()

    @property
    def _evict_heap(self) -> list[tuple[int, int, Request]]:
        """The eviction heap (:attr:`stratabatch.admission.Admission.evict_heap`)."""
        return self._admission.evict_heap

    # ------------------------------------------------------------- submission

    def submit(self, req: Request) -> None:
        """Queue an accepted request. Its outcome arrives through ``on_complete``."""
        loop = self.loop
        if loop is None or self._closing or self._runner.handler is None:
            self._refuse()
        lanes = self._lanes
        lane = lanes.lane
        if lane is not None and (lane.waiting or lane.raw):
            lanes.hand_over()  # (first in line: they arrived before it)
        lanes.maybe_general = True
        now = self.clock()
        req.arrival = now
        req.seq = seq = self._seq
        self._seq = seq + 1
        self.stats.total_requests += 1
        adm = self._admission
        adm.waiting += 1
        raw = self._passes.raw
        raw.append(req)
        if self._is_idle:
            self._is_idle = False
            self._idle.clear()  # type: ignore[union-attr]  # (set by bind)
        if adm.evicting:
            adm.arrived(req)
        if req.deadline is not None:
            self._arm_deadline(req, now)
        if self._adaptive is not None:
            self._adaptive.observe_arrival(now)
        sched = self._sched
        if sched.opened_at is None:
            sched.open(now, self._window_s(now))
            self._arm_timer(now, force=True)
            if len(raw) + len(self._pending) >= sched.max_size:  # (max_size=1: at once)
                self._schedule_pump()
        elif len(raw) + len(self._pending) >= sched.max_size or now >= sched.window_end:  # type: ignore[operator]  # (set while it is open)
            self._schedule_pump()

    def submit_many(self, reqs: list[Request]) -> None:
        """Queue accepted requests in order, as :meth:`submit` would one by one, at one
        arrival time (they arrived together: a frame of a client). Nothing is queued if it
        raises (as :meth:`submit`)."""
        if not reqs:
            return
        loop = self.loop
        if loop is None or self._closing or self._runner.handler is None:
            self._refuse()
        lanes = self._lanes
        lane = lanes.lane
        if lane is not None and (lane.waiting or lane.raw):
            lanes.hand_over()
        lanes.maybe_general = True
        now = self.clock()
        n = len(reqs)
        adm = self._admission
        adm.waiting += n
        self.stats.total_requests += n
        seq = self._seq
        evicting = adm.evicting
        for req in reqs:
            req.arrival = now
            req.seq = seq
            seq += 1
            if evicting:
                adm.arrived(req)
            if req.deadline is not None:
                self._arm_deadline(req, now)
        self._seq = seq
        raw = self._passes.raw
        raw.extend(reqs)
        if self._is_idle:
            self._is_idle = False
            self._idle.clear()  # type: ignore[union-attr]  # (set by bind)
        if self._adaptive is not None:
            self._adaptive.observe_arrivals(n, now)
        sched = self._sched
        if sched.opened_at is None:
            sched.open(now, self._window_s(now))
            self._arm_timer(now, force=True)
            if len(raw) + len(self._pending) >= sched.max_size:
                self._schedule_pump()
        elif len(raw) + len(self._pending) >= sched.max_size or now >= sched.window_end:  # type: ignore[operator]  # (set while it is open)
            self._schedule_pump()

    def _refuse(self) -> None:
        """Why :meth:`submit` takes nothing now (raises)."""
        if self.loop is None:
            raise StratabatchError("bind() the core to an event loop before submitting")
        if self._closing:
            raise StratabatchError("the processor is closed; no new requests are accepted")
        raise ConfigError(
            "no handler: pass handler= to BatchProcessor or decorate one with @batch.handler",
            field="handler",
        )

    def _window_s(self, now: float) -> float:
        if self._adaptive is not None:
            count, oldest = self._waiting_groups()
            lane = self._lanes.lane
            queued = count + len(self._raw) + (len(lane.raw) if lane else 0)
            waited = (now - oldest) * 1000.0 if count else 0.0
            self._window_now_ms = self._adaptive.window_ms(
                now, queued=max(queued, 1), waited_ms=max(waited, 0.0)
            )
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
            cancel_timer(req)
        self._after_change()

    def _arm_deadline(self, req: Request, now: float) -> None:
        """Set ``req``'s deadline timer: its own (``deadline_tick_s`` 0), or its share of the
        one timer of the tick its deadline falls in."""
        loop = self.loop
        assert loop is not None and req.deadline is not None
        tick = self.deadline_tick_s
        if not tick:
            req.timer = loop.call_later(max(0.0, req.deadline - now), self._deadline_due, req)
            return
        k = math.ceil(req.deadline / tick)
        shared = self._ticks.get(k)
        if shared is None:
            shared = self._ticks[k] = TickShare(self._ticks, k)
            shared.handle = loop.call_at(k * tick, self._expire_tick, shared)
        shared[req.seq] = req
        req.timer = shared

    def _expire_tick(self, shared: TickShare) -> None:
        """A tick's timer: expire its requests whose deadline has come (a timer may fire up
        to a millisecond early: the others get a timer of their own for the rest)."""
        shared.handle = None
        if self._ticks.get(shared.key) is shared:
            del self._ticks[shared.key]
        loop = self.loop
        if loop is None:
            return
        now = self.clock()
        for req in list(shared.values()):
            if req.deadline is not None and req.deadline > now:
                req.timer = loop.call_later(
                    max(req.deadline - now, _REARM_S), self._deadline_due, req
                )
            else:
                self._expire(req)

    def _deadline_due(self, req: Request) -> None:
        """The timer of its own of ``req``'s deadline: it expires, unless the timer came early
        by the core's clock (a loop whose timers have millisecond steps, as uvloop's): then it
        waits for the rest."""
        left = req.deadline - self.clock()  # type: ignore[operator]  # (armed with one)
        loop = self.loop
        if left <= _EARLY_S or req.state == DONE or loop is None:
            self._expire(req)
        else:
            req.timer = loop.call_later(max(left, _REARM_S), self._deadline_due, req)

    def _expire(self, req: Request) -> None:
        cancel_timer(req)  # (its own timer fired, or it leaves its tick's)
        if req.state == DONE:
            return
        self._leave(req)
        self._answers.finish(
            req,
            None,
            BatchTimeoutError(
                "the caller's timeout ran out before a result was ready"
                + (
                    " (request was still queued)"
                    if req.group is None or req.group.batch is None
                    else " (handler still running)"
                )
            ),
        )
        self._after_change()

    def _leave(self, req: Request) -> None:
        """Take ``req`` out of whatever structure holds it (no outcome delivered here)."""
        st = req.state
        if st == RAW:
            req.state = DONE  # the dedup pass skips it; the list is filtered lazily
            self.stats.dropped += 1
            self._release(1)
        elif st == GROUPED:
            g = req.group
            assert g is not None
            req.state = DONE
            self.stats.dropped += 1
            g.live -= 1
            if g.live == 0:
                self._remove_pending(g)
            self._release(1)
        elif st == INFLIGHT:
            g = req.group
            assert g is not None and g.batch is not None
            req.state = DONE
            g.live -= 1
            b = g.batch
            b.live -= 1
            if b.live == 0 and b.call is not None:
                b.call.cancel()  # nobody waits for any of its results any more

    def _remove_pending(self, g: Group, keep_keys: bool = False) -> None:
        """Take ``g`` out of the pending groups; its exact keys and leader row stay if it is
        being sent (a twin or near twin arriving while it runs coalesces into it)."""
        self._pending.pop(g.seq, None)
        if not keep_keys:
            self._dedup.drop_row(g)
            self._dedup.drop_keys(g)

    # ------------------------------------------------------------- GroupOps (for Deduper)

    def new_group(self, req: Request, part: Any) -> Group:
        """``req`` leads a new pending group."""
        g = Group(req, part)
        self._pending[g.seq] = g
        return g

    def join(self, req: Request, g: Group, similarity: float, exact: bool) -> None:
        """``req`` becomes a duplicate in pending group ``g``."""
        g.add(req, GROUPED, similarity, exact)
        if req.priority > g.priority:
            g.priority = req.priority

    def coalesce(self, req: Request, g: Group, similarity: float, exact: bool) -> None:
        """``req`` waits for the result of ``g``, which is running in the handler now."""
        assert g.batch is not None
        lanes = self._lanes
        lg = lanes.shadows.get(g) if lanes.shadows else None
        if lg is not None:  # running lane work: req becomes a row of it
            lanes.join(
                lg,
                req.sink,
                req.index,
                req.arrival,
                req.payload,
                req.priority,
                req.deadline,
                similarity,
                exact,
            )
            if req.timer is not None:
                cancel_timer(req)  # (its row's deadline is filed with lg)
            # in g as INFLIGHT (its exact twins of this pass follow it), never answered there
            g.add(req, INFLIGHT, similarity, exact)
            self._release(1)
            lanes.hooks[2](req.sink, req.index, lg)  # type: ignore[index]
            return
        g.add(req, INFLIGHT, similarity, exact)
        g.batch.live += 1
        st = self.stats
        st.record_merge(similarity, exact)
        st.inflight_coalesced += 1
        self._release(1)

    def reject(self, req: Request, error: BaseException) -> None:
        """``req`` failed its dedup step: it leaves the queue with ``error``."""
        if req.state != RAW:
            return
        self._leave(req)
        self._answers.finish(req, None, error)

    def pending_groups(self) -> Any:
        """The pending groups, in arrival order."""
        return self._pending.values()

    def _after_change(self) -> None:
        if self._admission.anyone_waiting_for_room:
            self._admission.notify_room()
        if self.loop is not None:
            self._schedule_pump()

    # ------------------------------------------------------------- the pump

    def _schedule_pump(self) -> None:
        if not self._pump_scheduled and self.loop is not None:
            self._pump_scheduled = True
            self.loop.call_soon(self._pump)

    def _on_timer(self) -> None:
        # The timer was due: its time has come, whatever the clock says. uvloop's clock and
        # timers have millisecond resolution (libuv): a timer for 0.4 ms ahead fires at once,
        # with the clock still short of it, and a pump that re-armed it then would spin
        # until the next millisecond tick (a 1 ms window made the engine busy all the time).
        at = self._timer_at
        self._timer = None
        self._timer_at = None
        self._pump(at)

    def _waiting_groups(self) -> tuple[int, float]:
        """How many handler items wait (the general path's pending groups, or else the
        lane's: never both), and the first arrival of the oldest (0.0 if none)."""
        if self._pending:
            return len(self._pending), next(iter(self._pending.values())).first_arrival
        lane = self._lanes.lane
        if lane is not None and lane.waiting:
            return len(lane.waiting), lane.waiting[0].arrival
        return 0, 0.0

    def _arm_timer(self, now: float, force: bool = False) -> None:
        count, oldest = self._waiting_groups()
        lane = self._lanes.lane
        if not count and not self._raw and not (lane is not None and lane.raw):
            if self._timer is not None:
                self._timer.cancel()
                self._timer = self._timer_at = None
            return
        if count:
            when = self._sched.next_check(now, count, oldest)
        else:  # only raw requests: their window end is the next look
            when = self._sched.window_end
        if when is None:
            return
        if self._timer is not None:
            if not force and self._timer_at is not None and self._timer_at <= when:
                return
            self._timer.cancel()
        assert self.loop is not None
        self._timer_at = when
        self._timer = self.loop.call_later(max(0.0, when - now), self._on_timer)

    def _pump(self, due_at: float | None = None) -> None:
        """Dedup what arrived, take every batch that is due, and set the next wake-up
        (``due_at``: the time of the timer that called it, reached by definition)."""
        loop = self.loop
        if loop is None:
            self._pump_scheduled = False
            return
        look = self.on_look
        if look is not None:
            self._pump_scheduled = True  # what it submits is this look's: no second one
            try:
                look()
            except Exception as e:  # the hook's bug must not stop the look
                loop.call_exception_handler(
                    {"message": "stratabatch: on_look raised (it must not)", "exception": e}
                )
        self._pump_scheduled = False
        held = False  # arrivals remain for a later slice: they are deduped before a batch fills
        passes = self._passes
        if passes.raw and not passes.preparing and self._warmup.ready:
            held = passes.run(loop)
        lanes = self._lanes
        lane = lanes.lane
        if lane is not None and lane.raw:
            lanes.run_pass(lane)
        now = self.clock()
        if due_at is not None and due_at > now:
            now = due_at
        sched = self._sched
        c = self.config
        took = False
        if lane is not None and lane.waiting:  # (then nothing is pending on the general path)
            waiting = lane.waiting
            while waiting and len(self._batches) < c.max_inflight_batches:
                if not (self._closing or sched.due(now, len(waiting), waiting[0].arrival)):
                    break
                lanes.dispatch(lane, now)
                took = True
        while self._pending and len(self._batches) < c.max_inflight_batches:
            oldest = next(iter(self._pending.values())).first_arrival
            if not (self._closing or sched.due(now, len(self._pending), oldest)):
                break
            if held and not self._closing and now < oldest + sched.max_wait_s:
                break  # the next slice runs first (scheduled); then the batch is taken
            chosen = select(
                self._pending.values(), c.max_size, now, sched.max_wait_s, c.enable_priorities
            )
            self._dispatch(chosen, now)  # type: ignore[arg-type]
            took = True
        count = len(self._pending) or (len(lane.waiting) if lane is not None else 0)
        if not count or len(self._batches) >= c.max_inflight_batches:
            # empty, or due work waits for a handler slot: a finishing batch pumps again
            if not count and not self._raw and not (lane is not None and lane.raw):
                sched.close()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = self._timer_at = None
        else:
            if took or not sched.is_open:
                sched.open(now, self._window_s(now))
            self._arm_timer(now, force=took)
        self._check_idle()

    def _check_idle(self) -> None:
        if (
            not self._is_idle
            and self._idle is not None
            and not self._raw
            and not self._pending
            and not self._batches
            and not self._preparing
            and not (
                self._lanes.lane is not None and (self._lanes.lane.waiting or self._lanes.lane.raw)
            )
        ):
            self._is_idle = True
            self._idle.set()
            self._lanes.hold = 0

    # ------------------------------------------------------------- dispatch

    def _dispatch(self, groups: list[Group], now: float) -> None:
        live_total = 0
        sent: list[Group] = []
        pending = self._pending
        merges: list[Request] = []
        for g in groups:
            del pending[g.seq]  # (its exact keys and leader row stay: twins coalesce into it)
            ms = g.members
            if ms is None:  # the leader alone (most groups)
                m = g.leader
                if m.deadline is not None and m.deadline <= now:
                    self._expire(m)  # its timer is due this very tick: never send it
                    self._dedup.drop_row(g)
                    self._dedup.drop_keys(g)
                    continue
                m.state = INFLIGHT
                live_total += 1
                sent.append(g)
                continue
            live = 0
            for m in ms:
                if m.state != GROUPED:
                    continue
                if m.deadline is not None and m.deadline <= now:
                    self._expire(m)
                    continue
                m.state = INFLIGHT
                if live:
                    merges.append(m)
                live += 1
            if not live:
                self._dedup.drop_row(g)
                self._dedup.drop_keys(g)
                continue
            live_total += live
            sent.append(g)
        if live_total:
            self._release(live_total)
        if self._lanes.hold:
            self._lanes.hold -= 1
        if not sent:
            return
        st = self.stats
        for m in merges:
            st.record_merge(
                1.0 if m.similarity is None else m.similarity, m.exact or m.similarity is None
            )
        batch = Batch(sent, live_total)
        for g in sent:
            g.batch = batch
        self._start(
            batch,
            [g.leader.payload for g in sent],
            lambda results, error, cancelled, elapsed: self._ran(
                batch, results, error, cancelled, elapsed
            ),
        )

    def _start(self, batch: Batch, payloads: list[Any], ended: Callable[..., None]) -> None:
        """Hand ``batch`` (its ``payloads``, one per group) to the handler; ``ended`` hears
        how the call ended (:meth:`_ran`, or the lane's: see
        :meth:`stratabatch.lanework.LaneWork.dispatch`)."""
        self.stats.record_batch(len(payloads))
        self._batches.add(batch)
        call = self._runner.start(payloads, self.config.processing_timeout, ended)
        batch.call = call
        batch.task = call.task

    def _ran(
        self,
        batch: Batch,
        results: Any,
        error: BaseException | None,
        cancelled: bool,
        elapsed: float,
    ) -> None:
        """The handler call of ``batch`` ended (:class:`~stratabatch.runner.Runner`)."""
        error = self._checked(len(batch.groups), results, error, cancelled, elapsed)
        loop = self.loop
        assert loop is not None
        passes = self._passes
        if passes.raw and not cancelled and not passes.preparing and self._warmup.ready:
            # group what arrived while it ran before answering it: a twin of this running
            # work waits for its result (README "How a request travels"), even when no look
            # came between the twin's arrival and the end of the run
            passes.run(loop)
        lane = self._lanes.lane
        if lane is not None and lane.raw and not cancelled:
            self._lanes.run_pass(lane)
        self._retire(batch, results, error, cancelled, self.clock())

    def _checked(
        self,
        n: int,
        results: Any,
        error: BaseException | None,
        cancelled: bool,
        elapsed: float,
    ) -> BaseException | None:
        """The error of a handler call of ``n`` items that ended (its own, or its results'
        shape), logged; the adaptive window learns from a good one."""
        if error is None and not cancelled:
            if type(results) is not list and not isinstance(results, (list, tuple)):
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
        if error is not None and self._failures is not None:
            self._failures.batch_failed(n, error, timeout=isinstance(error, BatchTimeoutError))
        return error

    def _retire(
        self, batch: Batch, results: Any, error: BaseException | None, cancelled: bool, now: float
    ) -> None:
        """Answer whoever is left in ``batch`` and forget it."""
        if batch not in self._batches:
            return
        self._batches.discard(batch)
        tidy = cancelled or error is not None  # (a fan-out that ends well lets each group go)
        try:
            self._answers.batch(batch, results, error, cancelled, now)  # (drops groups' keys)
        except Exception as e:  # a bug of ours must not strand anyone: answer who is left
            tidy = True
            for g in batch.groups:
                if g.members is GONE:
                    continue
                self._dedup.drop_keys(g)
                self._answers.group_failed(
                    g,
                    StratabatchError(
                        f"internal error while answering a batch: {type(e).__name__}: {e}"
                    ),
                )
        finally:
            for g in batch.groups if tidy else ():  # break the request<->group<->batch
                if g.members is GONE:  # cycles (no GC work)
                    continue
                self._dedup.drop_row(g)
                for m in g.member_list():
                    m.group = None
                g.members = GONE
                g.batch = None
            batch.groups = []
            batch.call = None
            self._schedule_pump()
            self._check_idle()

    # ------------------------------------------------------------- stats, close

    def snapshot(self) -> Stats:
        """A consistent :class:`Stats` of this core."""
        loop = self.loop
        now = self.clock() if loop is not None else 0.0
        a = getattr(self._adaptive, "a_ms", 0.0) if self._adaptive is not None else 0.0
        b = getattr(self._adaptive, "b_ms", 0.0) if self._adaptive is not None else 0.0
        return self.stats.snapshot(
            now=now,
            queue_depth=self._admission.waiting,
            window_ms=self._window_now_ms,
            cost_per_request=self.config.cost_per_request_usd,
            adaptive_a_ms=a,
            adaptive_b_ms=b,
            reuse_entries=0 if self.reuse is None else len(self.reuse),
            reuse_bytes=0 if self.reuse is None else self.reuse.stats().bytes,
        )

    async def close(self) -> None:
        """Stop accepting, run everything queued without waiting for windows, and wait."""
        self._closing = True
        self._lanes.maybe_general = True
        self._warmup.cancel()  # a first start's compile in a child process: stop it
        self._admission.close()
        if self.loop is None or self._idle is None:
            return
        self._schedule_pump()
        await self._idle.wait()
        if self._failures is not None:
            self._failures.close()
        self._admission.stop_logging()
        # cancelled handler calls: a moment for their clean-up, no more
        await self._runner.settle(_ABANDON_GRACE_S)
