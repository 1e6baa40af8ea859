"""The row lane's coordination, a component of the core (:class:`~stratabatch.core.Core`).

The lane's data structures are in ``lane.py``; this module moves its callers through them on
the core's loop: arrivals (:meth:`LaneWork.submit_rows`, :meth:`LaneWork.submit_texts`, the
embedded single call's :meth:`LaneWork.submit_one`), the lane's dedup pass and its near
leaders, twins met across the lane and the general path both ways (a general twin of running
lane work joins it as a row; a near twin of the general path meets a lane leader through its
stand-in group, :meth:`LaneWork.shadow`), deadlines, hand-overs to the general path,
dispatch, and answering a lane batch.

The lane runs through the core's shared machinery, the one window, queue bound, handler slots
and idle state of both paths; :class:`LaneHost` names every member of the core it uses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from itertools import repeat
from typing import Any, Protocol

from .admission import Admission
from .answers import GONE, Answers
from .config import BatchConfig
from .errors import BatchTimeoutError, HandlerError, StratabatchError, copy_error
from .grouping import Deduper
from .lane import UNGROUPED, Deliver, Fail, Lane, LaneBatch, LaneGroup, Repoint, lane_fits
from .passes import Passes
from .records import DONE, INFLIGHT, Batch, Group, Request, cancel_timer, plain_request
from .reuse import ReuseCache
from .runner import Runner
from .stats import StatsRecorder
from .window import WindowScheduler

__all__ = ["LaneHost", "LaneWork", "general_key"]

_new = object.__new__

# After the lane hands the default strategy's requests over to the general path (one of them
# was not alone in its partition), the lane stays closed to them for this many of the general
# path's batches, doubled for each hand-over since the lane last led a pass (at most
# 2**_NEAR_HOLD_DOUBLINGS times), or until the core is idle: traffic whose texts share
# partitions (texts without numbers) would otherwise take the lane and be handed over again
# and again (measured on bench_core's no-digit texts: 15 hand-overs of 7% of the requests in
# 30,000 with a fixed hold of 64 batches).
_NEAR_HOLD_BATCHES = 64
_NEAR_HOLD_DOUBLINGS = 6

# A row's own deadline timer that fires more than this before it by the core's clock waits
# for the rest, at least _REARM_S more (as the core's own deadline timers).
_EARLY_S = 1e-6
_REARM_S = 0.001


def general_key(norm: Any) -> Any:
    """The general path's exact key of a lane row's normalized key ``norm`` (a text: its
    hash; a request without the text: its canonical encoding's, unscoped): the lane asks the
    general path's running work and the reuse cache under it."""
    return hash(norm) if type(norm) is str else (b"", hash(norm), True)


class _Warm(Protocol):
    """The core's kernel warm-up (:class:`stratabatch.warmup.Warmup`), as the lane reads it."""

    @property
    def ready(self) -> bool: ...


class LaneHost(Protocol):
    """What the lane's coordination uses of its core: the shared clock, loop and options,
    its fixed components (read once, at :class:`LaneWork`'s creation), and the services of
    the window, the queue bound, the handler slots and the general path that both paths go
    through."""

    config: BatchConfig
    stats: StatsRecorder
    loop: asyncio.AbstractEventLoop | None
    clock: Callable[[], float]
    reuse: ReuseCache | None
    _admission: Admission
    _sched: WindowScheduler
    _dedup: Deduper
    _passes: Passes
    _answers: Answers
    _runner: Runner
    _batches: set[Batch]
    _pending: dict[int, Group]
    _closing: bool
    _is_idle: bool
    _adaptive: Any
    _pump_scheduled: bool

    @property
    def _warmup(self) -> _Warm: ...

    @property
    def lane_open(self) -> bool: ...

    @property
    def deadline_tick_s(self) -> float: ...

    def _refuse(self) -> None: ...

    def _arrived(self, lane: Lane, n: int, now: float, counted: bool = False) -> None: ...

    def _release(self, n: int) -> None: ...

    def _schedule_pump(self) -> None: ...

    def _after_change(self) -> None: ...

    def _check_idle(self) -> None: ...

    def _next_seq(self) -> int: ...

    def _requeue(self, make: Callable[[int], list[Request]]) -> None: ...

    def _run_passes(self) -> None: ...

    def _arm_deadline(self, req: Request, now: float) -> None: ...

    def abandon(self, req: Request) -> None: ...

    def _start(self, batch: Batch, payloads: list[Any], ended: Callable[..., None]) -> None: ...

    def _checked(
        self, n: int, results: Any, error: BaseException | None, cancelled: bool, elapsed: float
    ) -> BaseException | None: ...


class LaneWork:
    """The row lane's coordination for ``core`` (see the module docstring); the core holds
    one and hands it its lane's part of each look (:meth:`run_pass`, :meth:`dispatch`).

    Attributes:
        lane: The lane while the options let plain requests take it, else None.
        hooks: The sink's ``(deliver, fail, repoint)`` once :meth:`enable` ran, else None.
        near: Whether the default strategy's requests take the lane (``enable(near=True)``).
        hold: The general path's batches left before the lane serves near traffic again.
        strikes: Hand-overs since the lane last led a near pass.
        shadows: The general path's stand-in groups of running lane groups (:meth:`shadow`),
            and ``shadow_of`` the other way.
        maybe_general: True while the general path may hold a waiting request or the lane
            may be closed (set where that can begin: the core's submit and close, a
            hand-over, a lane that goes): :meth:`submit_one` checks ``lane_open`` in full
            only then, and clears it when open.
    """

    def __init__(self, core: LaneHost) -> None:
        self.core = core
        self._config = core.config
        self._stats = core.stats
        self._admission = core._admission
        self._sched = core._sched
        self._dedup = core._dedup
        self._passes = core._passes
        self._warmup = core._warmup
        self._answers = core._answers
        self.lane: Lane | None = None
        self.hooks: tuple[Deliver, Fail, Repoint] | None = None
        self.near = False
        self.hold = 0
        self.strikes = 0
        self.shadows: dict[Group, LaneGroup] = {}
        self.shadow_of: dict[LaneGroup, Group] = {}
        self.maybe_general = True

    def enable(self, deliver: Deliver, fail: Fail, repoint: Repoint, near: bool = False) -> None:
        """Let plain requests take the row lane (:mod:`stratabatch.lane`), answered through
        these hooks of their sink: ``deliver(groups, values)`` answers each group's callers
        with its value and returns their arrival times, ``fail(group, sink, id, arrival,
        error)`` one caller with an error, ``repoint(sink, id, record)`` moves a caller to a record
        of the general path. The engine's outbox is such a sink; a caller is its group and
        its id. ``near``: the default strategy's requests take the lane too (the sink then
        reads :attr:`LaneGroup.sims <stratabatch.lane.LaneGroup>` for a near twin's merge
        similarity, and sends a request with its own ``"embedding"`` the general way)."""
        self.hooks = (deliver, fail, repoint)
        self.near = near
        self.fit()

    def fit(self) -> None:
        """The options changed: hand waiting rows over, then keep a lane only if they fit."""
        if self.lane is not None and (self.lane.waiting or self.lane.raw):
            self.hand_over()
        c = self._config
        fits = self.hooks is not None and lane_fits(c, self.near)
        if fits and self.lane is None:
            lane = self.lane = Lane(c, *self.hooks)  # type: ignore[misc]
            lane.tick_s = self.core.deadline_tick_s
            lane.general = self._general_twin
            lane.arm = lambda k: self._arm_tick(lane, k)
            lane.arm_one = self._arm_row
            if self.near:  # (its groups may hold leader index entries: let them go)
                lane.release = self._release_index
        if fits and self.lane is not None:
            near = c.enable_dedup and c.dedup_strategy == "embedding"
            self.lane.led = [] if near else None
        elif not fits:
            self.lane = None  # (its running batches finish through their own calls)
            self.maybe_general = True

    def submit_rows(self, sink: Any, pending: dict[int, Any], items: list[list[Any]]) -> list[int]:
        """Queue plain items ``[id, priority, deadline_ns, row, payload]`` of ``sink`` through
        the row lane (while :attr:`Core.lane_open`): no arena row, a mapping payload already
        checked, a deadline on ``time.monotonic_ns``'s clock or 0 (expired as
        :attr:`Core.deadline_tick_s` says). ``pending`` is the sink's callers by id: each item's id
        gets its :class:`~stratabatch.lane.LaneGroup` there (:meth:`abandon_row` takes it).

        Returns:
            The ids already pending (not queued: the sink answers them).

        Raises:
            StratabatchError: as :meth:`Core.submit` (nothing is queued then).
        """
        lane, now = self._arrival()
        taken, repeated = lane.add(
            sink,
            pending,
            items,
            now,
            now - time.monotonic_ns() / 1e9,  # (the core's time of 0 ns)
        )
        if taken:
            self.core._arrived(lane, taken, now)
        return repeated

    def submit_texts(
        self,
        sink: Any,
        pending: dict[int, Any],
        key: str,
        ids: list[int],
        texts: list[str],
        deadlines: list[int] | None = None,
    ) -> list[int]:
        """:meth:`submit_rows` for requests ``{key: texts[i]}`` of ids ``ids`` (none with a
        priority), given as columns: a text frame's, as decoded; ``deadlines``: None, or each
        one's ``deadline_ns`` as :meth:`submit_rows` reads it (0 for none).

        Returns:
            The ids already pending (not queued: the sink answers them).

        Raises:
            StratabatchError: as :meth:`Core.submit` (nothing is queued then).
        """
        lane, now = self._arrival()
        taken, repeated = lane.add_texts(sink, pending, key, ids, texts, now)
        if deadlines is not None:
            offset = now - time.monotonic_ns() / 1e9  # (the core's time of 0 ns)
            lane.add_deadlines(sink, pending, ids, deadlines, offset, repeated)
        if taken:
            self.core._arrived(lane, taken, now)
        return repeated

    def submit_one(
        self, sink: Any, payload: Any, priority: int = 0, deadline: float | None = None
    ) -> LaneGroup | None:
        """Queue one checked request through the row lane for ``sink``, a caller of its own
        (an asyncio future: the embedded single call), with ``deadline`` a time on
        :attr:`Core.clock` or None,
        if it can go now: the lane is open (:attr:`Core.lane_open`) and the queue has room (as
        :meth:`Core.make_room` says without waiting). Call it on the core's loop.

        One call per request with the checks and the row inline, then the arrival's
        accounting and window (:meth:`Core._arrived`): the embedded single call's hot path.

        Returns:
            What holds it (:meth:`abandon_holder` takes it; the lane's ``repoint`` hook
            hears when that changes), or None when it cannot go now (nothing was queued:
            the caller applies ``on_full`` with :meth:`Core.make_room`, or takes the general
            path when the lane is not open).

        Raises:
            StratabatchError: as :meth:`Core.submit` (nothing is queued then).
        """
        if self.maybe_general:  # (rarely: see __init__)
            if not self.core.lane_open:
                return None
            self.maybe_general = False
        lane: Lane = self.lane  # type: ignore[assignment]  # (open: not None)
        adm = self._admission
        if adm.waiting >= self._config.max_queue:
            return None
        sched = self._sched
        end = sched.window_end
        core = self.core
        # (an open window holds an accepted request: the core is bound and has a handler,
        # which cannot be unset; so only a window's first arrival needs the look)
        if end is None and (core.loop is None or core._runner.handler is None):
            core._refuse()
        now = core.clock()
        if deadline is not None:
            g = lane.add_one(sink, payload, priority, now, deadline)
        else:  # (add_one's lines without a deadline, its LaneGroup(...) inline as Lane.add's)
            g = _new(LaneGroup)
            g.payload = payload
            g.sink = g.lead = sink
            g.rid = 0
            g.arrival = now
            g.priority = priority
            g.deadline = g.more = g.batch = g.row = g.part = g.sims = None
            g.live = 1
            raw = lane.raw
            if raw or self._config.enable_dedup:
                g.norm = UNGROUPED
                raw.append(g)
            else:  # nothing to group: it waits at once (as the lane's pass would file it)
                g.norm = None
                lane.waiting.append(g)
        # _arrived's lines for one arrival in an open window, inline (a call less per request)
        self._stats.total_requests += 1
        adm.waiting += 1
        if end is None or core._is_idle or core._adaptive is not None:
            core._arrived(lane, 1, now, counted=True)
        elif not core._pump_scheduled and (
            now >= end or len(lane.raw) + len(lane.waiting) >= sched.max_size
        ):
            core._schedule_pump()
        return g

    def _arrival(self) -> tuple[Lane, float]:
        """The lane arrivals go to now, and the time they arrive (as :meth:`Core.submit`, refuse
        them when the core takes nothing)."""
        loop = self.core.loop
        if loop is None or self.core._closing or self.core._runner.handler is None:
            self.core._refuse()
        lane = self.lane
        assert lane is not None and not self.core._pending and not self._passes.raw
        return lane, self.core.clock()

    def run_pass(self, lane: Lane) -> None:
        """Group the lane's arrivals (:meth:`stratabatch.lane.Lane.group`), as the general
        path's pass groups its own: twins joining running work stop waiting."""
        coalesced, joined, answered = lane.group(
            bool(self._dedup.exact), None if self.core.reuse is None else self._reused
        )
        led = lane.led
        if led:
            lane.led = []
            self._lead(led)
        if answered:
            st = self._stats
            st.duplicates += len(answered)
            st.reuse_hits += len(answered)
            st.record_done_many(answered, self.core.clock())
            self.core._release(len(answered))
        if coalesced:
            st = self._stats
            st.record_exact_merges(coalesced)
            st.inflight_coalesced += coalesced
        if coalesced or joined:
            self.core._release(coalesced + joined)

    def _lead(self, led: list[LaneGroup]) -> None:
        """Near dedup of the lane pass's new items ``led``: each leads its partition without a
        row in the leader index, as the general path's pass would lead it, when every one of
        them is alone in its partition (:meth:`stratabatch.grouping.Deduper.lone_parts`); else
        the general path takes every caller the lane has waiting (:meth:`hand_over`) and
        decides them in one pass, in arrival order, as if they had come that way."""
        parts = None
        if self._warmup.ready and not self._passes.preparing:
            key = self._config.dedup_key
            parts = self._dedup.lone_parts([g.payload.get(key) for g in led])
        if parts is not None:
            for g, pid in zip(led, parts, strict=True):
                g.part = pid
            self._dedup.leaders.lead_lazy(led, parts)  # (each group's row: ~pid)
            self.strikes = 0
            return
        self.hand_over()
        self.hold = _NEAR_HOLD_BATCHES << min(self.strikes, _NEAR_HOLD_DOUBLINGS)
        self.strikes += 1
        self.core._run_passes()

    def _release_index(self, groups: list[LaneGroup]) -> None:
        """``groups`` of the lane are answered, failed or handed over: their entries in the
        leader index go (a lazy leader's, or its stand-in group's row and exact keys)."""
        rows: list[int] = []
        shadows = self.shadow_of
        for g in groups:
            row = g.row
            if row is not None:
                rows.append(row)
                g.row = None
            if shadows:
                s = shadows.pop(g, None)
                if s is not None:
                    del self.shadows[s]
                    self._dedup.drop_keys(s)
                    if s.row is not None:
                        rows.append(s.row)
                        s.row = None
                    for m in s.member_list():
                        m.group = None
                    s.members = GONE
                    s.batch = None
        if rows:
            self._dedup.leaders.drop_many(rows)

    def shadow(self, lg: LaneGroup) -> Group:
        """The general path's stand-in group for running lane group ``lg`` that leads its
        partition without a row, when a request of that partition comes to the general path
        (:meth:`stratabatch.grouping.Deduper.materialize`): its leader record is embedded and
        compared as any leader's; a near twin that joins it becomes a row of ``lg``
        (:meth:`Core.coalesce`). Never sent: ``lg``'s batch answers it.

        ``lg`` runs: the general path never passes while the lane has callers waiting (they
        are handed over first), so a lazy leader it meets is the lane's only while it runs.
        """
        assert lg.batch is not None, "a waiting lane group met by the general path"
        req = plain_request(lg.payload, self._config.dedup_key, lg.priority, None, lg.lead, lg.rid)
        req.arrival = lg.arrival
        req.seq = self.core._next_seq()
        req.norm = lg.norm
        req.key = general_key(lg.norm)
        g = Group(req, lg.part)
        req.state = INFLIGHT
        g.batch = lg.batch
        self.shadows[g] = lg
        self.shadow_of[lg] = g
        return g

    def join(
        self,
        lg: LaneGroup,
        sink: Any,
        rid: int,
        arrival: float,
        payload: Any,
        priority: int,
        deadline: float | None,
        similarity: float,
        exact: bool,
    ) -> None:
        """A twin (near, or exact of a near twin) of running lane group ``lg`` waits for its
        result as a row of it; its merge is counted here."""
        b: LaneBatch = lg.batch  # type: ignore[assignment]  # (running)
        b.lane.add_row(lg, sink, rid, arrival, payload, priority, deadline)
        b.live += 1
        if similarity != 1.0 or not exact:
            if lg.sims is None:
                lg.sims = {}
            lg.sims[(sink, rid)] = similarity
        st = self._stats
        st.record_merge(similarity, exact)
        st.inflight_coalesced += 1

    def abandon_holder(self, holder: Any, sink: Any, rid: int) -> None:
        """The caller ``(sink, rid)`` held by ``holder`` (a record, or a lane group) gave up:
        :meth:`Core.abandon` or :meth:`abandon_row`."""
        if type(holder) is LaneGroup:
            self.abandon_row(holder, sink, rid)
        else:
            self.core.abandon(holder)

    def _general_twin(
        self,
        sink: Any,
        rid: int,
        now: float,
        payload: Any,
        priority: int,
        norm: Any,
        deadline: float | None,
    ) -> Request | LaneGroup | None:
        """A row arriving in the lane whose exact key matches work the general path runs:
        it joins that work as a record (returned), as a twin arriving there would (its
        merge is counted here), or, when that work is a stand-in of running lane work
        (:meth:`shadow`), that lane group as a row (the group returned); None if there is no
        such work."""
        key = general_key(norm)
        entry = self._dedup.exact.get(key)
        if entry is None:
            return None
        if type(entry) is tuple:
            g, n, sim, ex = entry
        else:
            g, n, sim, ex = entry, entry.leader.norm, 1.0, True
        b = g.batch
        if n != norm or b is None or b.live <= 0:
            return None
        lg = self.shadows.get(g) if self.shadows else None
        if lg is not None:  # a twin of a near twin that joined running lane work: it joins too
            if deadline is not None and self.lane is not None:
                self.lane.untick(sink, rid, deadline)  # (filed again with lg)
            self.join(lg, sink, rid, now, payload, priority, deadline, sim, ex)
            return lg
        req = plain_request(payload, self._config.dedup_key, priority, deadline, sink, rid)
        req.arrival = now
        req.seq = self.core._next_seq()
        req.norm = norm
        req.key = key
        g.add(req, INFLIGHT, sim, ex)
        b.live += 1
        if deadline is not None:
            self.core._arm_deadline(req, self.core.clock())
        self._stats.record_merge(sim, ex)
        self._stats.inflight_coalesced += 1
        return req

    def _reused(self, norm: Any) -> Any:
        """The stored answer and its age for a lane row of exact key ``norm``, or None (the
        key as the general path makes it: the two paths share entries)."""
        key = general_key(norm)
        return self.core.reuse.get(key, norm)  # type: ignore[union-attr]  # (only with reuse on)

    def lane_twins(self) -> Callable[[Request, Any], bool] | None:
        """:meth:`stratabatch.grouping.GroupOps.lane_twins`: :meth:`_twin` while the
        row lane has keys (work it runs), else None."""
        lane = self.lane
        return self._twin if lane is not None and lane.index else None

    def _twin(self, req: Request, norm: Any) -> bool:
        """``req`` of the general path is an exact twin (``norm``) of work the row lane runs:
        it leaves the general path and waits for that work's result as a row (its sink's
        caller is repointed to the group)."""
        lane = self.lane
        assert lane is not None
        g = lane.index.get(norm)
        if g is None:
            return False
        b = g.batch
        if b is None or b.live <= 0:
            return False
        lane.add_row(g, req.sink, req.index, req.arrival, req.payload, req.priority, req.deadline)
        b.live += 1
        req.state = DONE  # (its caller is the row now)
        if req.timer is not None:
            cancel_timer(req)
        st = self._stats
        st.record_merge(1.0, True)
        st.inflight_coalesced += 1
        self.core._release(1)
        lane.repoint(req.sink, req.index, g)
        return True

    def abandon_row(self, group: LaneGroup, sink: Any, rid: int) -> None:
        """The caller ``(sink, rid)`` of lane group ``group`` gave up (:meth:`Core.abandon`'s
        row form): drop it without an outcome; shared work is cancelled only when its last
        waiter leaves."""
        if self._leave(group, sink, rid) is not None:
            self.core._after_change()

    def _leave(self, g: LaneGroup, sink: Any, rid: int) -> tuple[float, bool] | None:
        """Take the caller ``(sink, rid)`` out of ``g`` (no outcome given here): out of its
        deadline's tick, and out of the queue (counted dropped, its room freed) or of the
        running batch (cancelled when nobody is left waiting for it).

        Returns:
            ``(arrival, queued)``, or None if it was not a caller of ``g`` any more.
        """
        row = g.drop(sink, rid)
        if row is None:
            return None
        b = g.batch
        lane = b.lane if b is not None else self.lane
        if row[1] is not None and lane is not None:
            lane.untick(sink, rid, row[1])
        if b is None:  # waiting: it leaves the queue
            if g.live == 0 and lane is not None:
                lane.unwait(g)
            self._stats.dropped += 1
            self.core._release(1)
            return row[0], True
        b.live -= 1
        if b.live == 0 and b.call is not None:
            b.call.cancel()  # nobody waits for any of its results any more
        return row[0], False

    def hand_over(self) -> None:
        """The general path takes the lane's waiting callers, as records, first in line."""
        lane = self.lane
        assert lane is not None
        if lane.release is not None and lane.waiting:
            lane.release(list(lane.waiting))  # (lazy leaders of the index: decided again)
        self.maybe_general = True
        self.core._requeue(lane.hand_over)

    def _arm_row(self, g: LaneGroup, sink: Any, rid: int, deadline: float) -> Any:
        loop = self.core.loop
        assert loop is not None
        return loop.call_at(deadline, self._row_due, g, sink, rid, deadline)

    def _row_due(self, g: LaneGroup, sink: Any, rid: int, deadline: float) -> None:
        """The timer of its own of a row with a deadline (``deadline_tick_s`` 0): it expires,
        unless the timer came early by the core's clock (a loop whose timers have millisecond
        steps, as uvloop's): then it waits for the rest."""
        left = deadline - self.core.clock()
        if left <= _EARLY_S:
            self._expire(g, sink, rid)
            return
        b = g.batch
        lane = b.lane if b is not None else self.lane
        loop = self.core.loop
        if lane is not None and loop is not None and (sink, rid) in lane.timers:
            lane.timers[(sink, rid)] = loop.call_later(
                max(left, _REARM_S), self._row_due, g, sink, rid, deadline
            )

    def _arm_tick(self, lane: Lane, k: int) -> None:
        loop = self.core.loop
        assert loop is not None
        loop.call_at(k * lane.tick_s, self._tick, lane, k)

    def _tick(self, lane: Lane, k: int) -> None:
        """A tick's timer: expire the lane's rows whose deadline has come (a timer may fire up
        to a millisecond early: the others wait for another look just after the tick)."""
        rows = lane.ticks.pop(k, None)
        loop = self.core.loop
        if not rows or loop is None:
            return
        now = self.core.clock()
        early: dict[tuple[Any, int], tuple[LaneGroup, float]] = {}
        for (sink, rid), (g, deadline) in rows.items():
            if deadline > now:
                early[(sink, rid)] = (g, deadline)
            else:
                self._expire(g, sink, rid)
        if early:
            lane.ticks.setdefault(k, {}).update(early)
            loop.call_at(k * lane.tick_s + 0.001, self._tick, lane, k)

    def _expire(self, g: LaneGroup, sink: Any, rid: int) -> None:
        """The deadline of caller ``(sink, rid)`` of ``g`` came: it gets a timeout (as
        :meth:`Core._expire` gives a record)."""
        left = self._leave(g, sink, rid)
        if left is None:
            return  # answered or gone meanwhile
        arrival, queued = left
        where = " (request was still queued)" if queued else " (handler still running)"
        assert self.hooks is not None
        now = self.core.clock()
        st = self._stats
        st.record_done(now - arrival, now)
        st.timeouts += 1
        try:
            self.hooks[1](
                g,
                sink,
                rid,
                arrival,
                BatchTimeoutError("the caller's timeout ran out before a result was ready" + where),
            )
        except Exception as e:  # the hook's bug stays with this caller
            self._answers.hook_failed(e)
        self.core._after_change()

    def dispatch(self, lane: Lane, now: float) -> None:
        groups, look = lane.take(self._config.max_size, now)
        expired = False
        for g in (
            groups if look else ()
        ):  # a row due this very tick is never sent (as Core._dispatch)
            if (g.deadline is not None and g.sink is not None and g.deadline <= now) or (
                g.more is not None
            ):
                for sink, rid, _, _, _, deadline in g.rows():
                    if deadline is not None and deadline <= now:
                        self._expire(g, sink, rid)
                        expired = True
        if expired:
            for g in groups:
                if not g.live and lane.index.get(g.norm) is g:
                    del lane.index[g.norm]
            if lane.release is not None:
                lane.release([g for g in groups if not g.live])
            groups = [g for g in groups if g.live]
            if not groups:
                return
        batch, live, twins = lane.start(groups)
        batch.lane = lane
        self.core._release(live)
        st = self._stats
        if twins:
            st.record_exact_merges(twins)
        self.core._start(
            batch,
            [g.payload for g in batch.groups],  # type: ignore[attr-defined]
            lambda results, error, cancelled, elapsed: self._ran(
                lane, batch, results, error, cancelled, elapsed
            ),
        )

    def _ran(
        self,
        lane: Lane,
        batch: LaneBatch,
        results: Any,
        error: BaseException | None,
        cancelled: bool,
        elapsed: float,
    ) -> None:
        """The handler call of a lane batch ended: answer its callers, forget it."""
        groups: list[LaneGroup] = batch.groups  # type: ignore[assignment]
        error = self.core._checked(len(groups), results, error, cancelled, elapsed)
        if batch not in self.core._batches:
            return
        self.core._batches.discard(batch)
        if not cancelled:
            # (twins that arrived while it ran join it first, as in Core._ran)
            self.core._run_passes()
        if lane.raw and not cancelled and self.lane is lane:
            self.run_pass(lane)
        now = self.core.clock()
        try:  # (each group is settled once answered: its key stops attracting twins)
            if cancelled or error is not None:
                self._fail(
                    lane,
                    groups,
                    error if error is not None else StratabatchError("the batch was cancelled"),
                    now,
                )
            else:
                ok: list[LaneGroup] = groups
                values: list[Any] = results
                if any(map(isinstance, results, repeat(BaseException))):  # (a loop in C)
                    ok, values = [], []
                    for g, value in zip(groups, results, strict=True):
                        if isinstance(value, BaseException):
                            self._fail(
                                lane,
                                [g],
                                HandlerError.from_exception(
                                    value, "the handler returned an error for this request"
                                ),
                                now,
                            )
                        else:
                            ok.append(g)
                            values.append(value)
                arrivals = lane.deliver(ok, values)
                reuse = self.core.reuse
                if reuse is not None and batch.call is not None:
                    started = batch.call.started
                    for g, v in zip(ok, values, strict=True):
                        n = g.norm
                        if n is not None:
                            reuse.put(general_key(n), n, v, born=started)
                lane.settle(ok)
                if arrivals:
                    self._stats.record_done_many(arrivals, now)
        except Exception as e:  # a bug of ours must not strand anyone: answer who is left
            lane.forget(groups)
            for g in groups:
                g.batch = None
            self._fail(
                lane,
                [g for g in groups if g.live],
                StratabatchError(
                    f"internal error while answering a batch: {type(e).__name__}: {e}"
                ),
                now,
            )
        finally:  # (settle() let go of every group, each answered or failed)
            batch.groups = []
            batch.call = None
            self.core._schedule_pump()
            self.core._check_idle()

    def _fail(self, lane: Lane, groups: list[LaneGroup], error: BaseException, now: float) -> None:
        """Every caller still waiting in ``groups`` gets its own copy of ``error``."""
        st = self._stats
        for g in groups:
            rows = g.rows()
            lane.settle([g])
            for sink, rid, arrival, _, _, _ in rows:
                st.record_done(now - arrival, now)
                if isinstance(error, BatchTimeoutError):
                    st.timeouts += 1
                else:
                    st.errors += 1
                try:
                    lane.fail(g, sink, rid, arrival, copy_error(error))
                except Exception as e:  # the hook's bug stays with this caller
                    self._answers.hook_failed(e)
