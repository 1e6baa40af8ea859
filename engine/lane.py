"""The row lane: plain requests as rows of their handler item, without a record each (a
component of the core).

The core's general path makes a :class:`~stratabatch.records.Request` record per request and
a :class:`~stratabatch.records.Group` per handler item, and moves each record through its
states (raw, grouped, in flight, done). That path serves every option. Most engine traffic
needs none of it: a frame's plain requests (no deadline, no embedding, no arena row) under
exact dedup or none, without scopes, priorities or eviction; and the embedded single calls of
the default strategy, whose requests mostly lead alone in their partition (texts with numbers
of their own): those lead on the lane, filed in the leader index without a row, as the general
path's pass files them (``LaneWork._lead``). For them the lane keeps one
object per *handler item* (:class:`LaneGroup`), holding its first caller's fields inline and
its twins as rows ``(sink, id, arrival, payload, priority)``; a caller is its group plus its
id. A batch's fan-out is one loop over groups and rows.

The lane serves while the general path has nothing waiting. A request that needs the general
path makes the lane hand its waiting rows over first (:meth:`Lane.hand_over`): each becomes a
record again, in arrival order, with its caller's sink repointed, and the general path goes
on from there as if they had come that way. Nothing is lost or answered twice in the move.

What the lane does not do (the general path does): priorities, scopes, eviction, and near
dedup beyond a request alone in its partition (one that is not makes the lane hand its
waiting callers over; a near twin of running lane work joins it through a stand-in group of
the general path, ``LaneWork.shadow``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

from .config import BatchConfig
from .dedup import canonical_bytes, normalize_key
from .records import Batch, Request, plain_request

__all__ = ["ROW", "Lane", "LaneBatch", "LaneGroup", "lane_fits"]

# a twin row's fields in LaneGroup.more (flat, six per row)
ROW = 6
# the norm of an arrival not grouped yet (in Lane.raw, not in Lane.waiting)
UNGROUPED: Any = object()


def lane_fits(config: BatchConfig, near: bool = False) -> bool:
    """Whether the options in force let plain requests take the lane: exact dedup (or none)
    without a scope or a dedup function, no priorities, and no eviction; with ``near``, the
    default strategy too (embedding dedup with the numbers guard, without a scope or a
    dedup function, and no reuse of answers beyond exact twins), whose requests lead on the
    lane while each is alone in its partition (see the core's lane pass)."""
    c = config
    return (
        (
            not c.enable_dedup
            or (
                c.dedup_function is None
                and not c.dedup_scope
                and (
                    c.dedup_strategy == "exact"
                    or (
                        near
                        and c.dedup_strategy == "embedding"
                        and c.guard_numbers
                        and c.reuse in (None, "off", "exact")  # (answers of near twins: not here)
                    )
                )
            )
        )
        and not c.enable_priorities
        and c.on_full != "drop_lowest"
    )


class LaneGroup:
    """One handler item of the lane: its first caller's payload and fields, and its twins.

    Attributes:
        payload: The first caller's request: what the handler gets.
        norm: Its exact key (the normalized text, or the canonical bytes of the payload), None
            without dedup, or :data:`UNGROUPED` while it is an arrival not grouped yet.
        sink, rid, arrival, priority, deadline: The first caller's (``sink`` None once it
            left or was answered; ``deadline`` a time on the core's clock, or None).
        lead: The first caller's sink, for good (a twin's merge meta names it).
        more: None, or the twins' rows, flat: ``[sink, id, arrival, payload, priority,
            deadline, ...]`` (a row's sink None once it left).
        live: Callers still waiting for this item.
        batch: The :class:`LaneBatch` running it, once taken.
        row: None, or ``~part`` while it leads its partition in the leader index without a
            row (near dedup on the lane: :meth:`stratabatch.index.LeaderIndex.lead_lazy`).
        part: Its near-dedup partition (the key of its text's numbers), or None.
        sims: None, or the merge similarity of each twin row merged as a near twin, by
            ``(sink, id)`` (a twin row without an entry merged exactly: 1.0).
    """

    __slots__ = (
        "payload",
        "norm",
        "sink",
        "rid",
        "arrival",
        "priority",
        "deadline",
        "lead",
        "more",
        "live",
        "batch",
        "row",
        "part",
        "sims",
    )

    def __init__(
        self,
        payload: Any,
        norm: Any,
        sink: Any,
        rid: int,
        arrival: float,
        priority: int,
        deadline: float | None,
    ) -> None:
        self.payload = payload
        self.norm = norm
        self.sink = sink
        self.rid = rid
        self.arrival = arrival
        self.priority = priority
        self.deadline = deadline
        self.lead = sink
        self.more: list[Any] | None = None
        self.live = 1
        self.batch: LaneBatch | None = None
        self.row: int | None = None
        self.part: int | None = None
        self.sims: dict[tuple[Any, int], float] | None = None

    def rows(self) -> list[tuple[Any, ...]]:
        """The callers still waiting: ``(sink, id, arrival, payload, priority, deadline)``,
        first caller first."""
        out = []
        if self.sink is not None:
            out.append(
                (self.sink, self.rid, self.arrival, self.payload, self.priority, self.deadline)
            )
        more = self.more
        if more is not None:
            for i in range(0, len(more), ROW):
                if more[i] is not None:
                    out.append(tuple(more[i : i + ROW]))
        return out

    def similarity_of(self, sink: Any, rid: int) -> float:
        """The merge similarity of twin row ``(sink, rid)`` (1.0 unless it merged as a near
        twin: :attr:`sims`)."""
        sims = self.sims
        return 1.0 if sims is None else sims.get((sink, rid), 1.0)

    def drop(self, sink: Any, rid: int) -> tuple[float, float | None] | None:
        """The caller ``(sink, rid)`` leaves: its ``(arrival, deadline)``; None if it is not
        one of this item's (or was answered already: ``live`` is 0)."""
        if not self.live:
            return None
        if self.sink is sink and self.rid == rid:
            self.sink = None
            row = (self.arrival, self.deadline)
        else:
            more = self.more
            if more is None:
                return None
            for i in range(0, len(more), ROW):
                if more[i] is sink and more[i + 1] == rid:
                    more[i] = None
                    row = (more[i + 2], more[i + 5])
                    break
            else:
                return None
        self.live -= 1
        return row


class LaneBatch(Batch):
    """A handler call of lane groups (``groups`` holds :class:`LaneGroup`; ``lane`` is the
    lane they came from)."""

    __slots__ = ("lane",)
    lane: Lane


Deliver = Callable[[list[LaneGroup], list[Any]], list[float]]
"""Answers the callers of each group with its value; returns the arrival times of every
caller it answered, for the stats. A row whose caller is gone is skipped."""
Fail = Callable[["LaneGroup", Any, int, float, BaseException], None]
"""Answers one caller ``(sink, id, arrival)`` of a group with an error."""
Repoint = Callable[[Any, int, Any], None]
"""A caller ``(sink, id)`` is now answered through ``holder``: a record of the general path (a
hand-over), or a lane group (a twin of the general path joined the lane's running work)."""
General = Callable[[Any, int, float, Any, int, Any, "float | None"], "Request | LaneGroup | None"]
"""``(sink, id, arrival, payload, priority, key, deadline) -> record``: a row whose key
matches work the general path runs joins it there as a record (or, when that work is running
lane work, as a row of that lane group, returned); None if there is none."""


class Lane:
    """The rows waiting in the lane, its exact index, and its hooks to the callers.

    Args:
        config: The live options.
        deliver, fail, repoint: The sink's side (the engine's outbox).

    Attributes:
        waiting: Groups not taken yet, in arrival order (each with a caller still waiting).
        index: Exact key -> its group, waiting or running (a twin joins or coalesces).
        raw: Arrivals the next :meth:`group` groups.
    """

    def __init__(self, config: BatchConfig, deliver: Deliver, fail: Fail, repoint: Repoint):
        self.config = config
        self.deliver = deliver
        self.fail = fail
        self.repoint = repoint
        self.waiting: deque[LaneGroup] = deque()
        self.index: dict[Any, LaneGroup] = {}
        #: arrivals not grouped yet (a group of one each), in arrival order
        self.raw: list[LaneGroup] = []
        #: set by the core: a row that is a twin of the general path's running work
        self.general: General | None = None
        #: set by the core: the deadlines of one tick of this many seconds share one timer,
        #: armed by ``arm(tick)`` when the tick gets its first row; 0: each row with a
        #: deadline gets a timer of its own, ``arm_one(group, sink, id, deadline)``
        self.tick_s = 0.0
        self.arm: Callable[[int], None] | None = None
        self.arm_one: Callable[[LaneGroup, Any, int, float], Any] | None = None
        #: tick -> the rows whose deadlines fall in it: ``(sink, id) -> (group, deadline)``
        self.ticks: dict[int, dict[tuple[Any, int], tuple[LaneGroup, float]]] = {}
        #: (sink, id) -> the timer of its own of a row with a deadline (``tick_s`` 0)
        self.timers: dict[tuple[Any, int], Any] = {}
        #: None, or (near dedup on the lane) the list :meth:`group` appends each group it
        #: files as a new item to, in order (the core decides them and clears it)
        self.led: list[LaneGroup] | None = None
        #: set by the core with ``led``: ``groups`` are answered or failed (their leader
        #: index entries go)
        self.release: Callable[[list[LaneGroup]], None] | None = None

    def add(
        self, sink: Any, pending: dict[int, Any], items: list[list[Any]], now: float, offset: float
    ) -> tuple[int, list[int]]:
        """File plain items ``[id, priority, deadline_ns, row, payload]`` of ``sink`` that
        arrived at ``now`` among the arrivals (:attr:`raw`: grouped by the next
        :meth:`group`, as the general path's pass groups its arrivals at the next look);
        ``pending`` is the sink's callers by id (each gets what holds it). A deadline
        (``deadline_ns`` on ``time.monotonic_ns``'s clock, 0 for none) becomes the core's time
        ``offset + deadline_ns / 1e9``.

        Returns:
            ``(taken, repeated)``: how many were taken, and the ids already pending (not
            taken: the caller must answer them).
        """
        raw = self.raw
        repeated: list[int] = []
        taken = 0
        new = object.__new__
        for item in items:
            rid = item[0]
            if rid in pending:
                repeated.append(rid)
                continue
            # LaneGroup(...) inline: a third cheaper than the call to __init__, once a request
            g = new(LaneGroup)
            g.payload = item[4]
            g.norm = UNGROUPED
            g.sink = g.lead = sink
            g.rid = rid
            g.arrival = now
            g.priority = item[1]
            g.more = g.batch = g.row = g.part = g.sims = None
            g.live = 1
            dl = item[2]
            if dl:
                g.deadline = deadline = offset + dl / 1e9
                self._tick(g, sink, rid, deadline)
            else:
                g.deadline = None
            raw.append(g)
            pending[rid] = g
            taken += 1
        return taken, repeated

    def add_texts(
        self,
        sink: Any,
        pending: dict[int, Any],
        key: str,
        ids: list[int],
        texts: list[str],
        now: float,
    ) -> tuple[int, list[int]]:
        """:meth:`add` for requests ``{key: texts[i]}`` of ids ``ids`` (none with a priority
        or a deadline), given as two columns (a text frame's, as decoded): no item list each."""
        raw = self.raw
        repeated: list[int] = []
        taken = 0
        new = object.__new__
        for rid, text in zip(ids, texts, strict=True):
            if rid in pending:
                repeated.append(rid)
                continue
            # (add's inline LaneGroup, with priority 0 and no deadline)
            g = new(LaneGroup)
            g.payload = {key: text}
            g.norm = UNGROUPED
            g.sink = g.lead = sink
            g.rid = rid
            g.arrival = now
            g.priority = 0
            g.more = g.batch = g.deadline = g.row = g.part = g.sims = None
            g.live = 1
            raw.append(g)
            pending[rid] = g
            taken += 1
        return taken, repeated

    def add_deadlines(
        self,
        sink: Any,
        pending: dict[int, Any],
        ids: list[int],
        deadlines: list[int],
        offset: float,
        repeated: list[int],
    ) -> None:
        """Give the callers :meth:`add_texts` just took (``ids``, less those ``repeated``)
        their deadlines: ``deadlines[i]`` on ``time.monotonic_ns``'s clock (0 for none)
        becomes the core's time ``offset + deadline_ns / 1e9``, as :meth:`add` does."""
        skip = set(repeated)
        for rid, dl in zip(ids, deadlines, strict=True):
            if dl and rid not in skip:
                g = pending[rid]
                g.deadline = deadline = offset + dl / 1e9
                self._tick(g, sink, rid, deadline)

    def add_one(
        self, sink: Any, payload: Any, priority: int, now: float, deadline: float | None
    ) -> LaneGroup:
        """:meth:`add` for one caller without a table of callers (its sink is its own, e.g.
        a future; its id 0), with ``deadline`` a time on the core's clock or None. Returns
        what holds it (until :meth:`group` moves it: see :attr:`repoint`)."""
        g = LaneGroup(payload, UNGROUPED, sink, 0, now, priority, deadline)
        if deadline is not None:
            self._tick(g, sink, 0, deadline)
        self.raw.append(g)
        return g

    def group(
        self, general_runs: bool = False, reused: Callable[[Any], Any] | None = None
    ) -> tuple[int, int, list[float]]:
        """The pass over the arrivals: each one not gone joins the waiting or running group
        of its exact key (its holder is repointed there), or the general path's running work
        of that key (:attr:`general`, asked only if ``general_runs``), or is answered from
        the reuse cache (``reused(norm)``: None, or the stored answer and its age), or leads
        a new group.

        Returns:
            ``(coalesced, joined, answered)``: how many joined the lane's running work, and
            the general path's (neither waits any more; the second is counted by
            :attr:`general`), and the arrival times of those answered from the cache.
        """
        answered: list[float] = []
        led = self.led
        hits: list[LaneGroup] = []
        values: list[Any] = []
        raw, self.raw = self.raw, []
        waiting = self.waiting
        coalesced = joined = 0
        c = self.config
        if not c.enable_dedup:
            for g in raw:
                if g.live:
                    g.norm = None
                    waiting.append(g)
            return 0, 0, answered
        general = self.general if general_runs else None
        index = self.index
        lookup = index.get
        wait = waiting.append
        key = c.dedup_key
        normalize = c.normalize
        repoint = self.repoint
        join = " ".join
        for g in raw:
            if not g.live:
                continue  # left or expired meanwhile
            payload = g.payload
            t = payload.get(key)
            if type(t) is str or isinstance(t, str):
                if not normalize:
                    n: Any = t
                elif t.isascii():  # (normalize_key's result for ASCII, without its call)
                    n = t.lower()
                    # most texts have no whitespace to collapse: only single spaces inside
                    # (isprintable: no ASCII control character, so no other whitespace);
                    # strip() returns the text itself when it has nothing to strip
                    if "  " in n or not n.isprintable() or n.strip() is not n:
                        n = join(n.split())
                else:
                    n = normalize_key(t)
            else:
                n = canonical_bytes(payload)
            h = lookup(n)
            if h is not None:
                b = h.batch
                if b is None or b.live > 0:  # waiting, or running with a caller
                    sink, rid, deadline = g.sink, g.rid, g.deadline
                    more = h.more
                    row = (sink, rid, g.arrival, payload, g.priority, deadline)
                    if more is None:
                        h.more = list(row)
                    else:
                        more += row
                    h.live += 1
                    g.sink = None
                    g.live = 0
                    if deadline is not None:  # its deadline now expires it from h
                        self.untick(sink, rid, deadline)
                        self._tick(h, sink, rid, deadline)
                    repoint(sink, rid, h)
                    if b is not None:
                        b.live += 1
                        coalesced += 1
                    continue
            if general is not None:
                rec = general(g.sink, g.rid, g.arrival, payload, g.priority, n, g.deadline)
                if rec is not None:
                    if g.deadline is not None and type(rec) is not LaneGroup:
                        self.untick(g.sink, g.rid, g.deadline)  # (the record's own timer)
                    repoint(g.sink, g.rid, rec)
                    g.sink = None
                    g.live = 0
                    joined += 1
                    continue
            if reused is not None:
                got = reused(n)
                if got is not None:  # a stored answer: its one caller gets it after the pass
                    if g.deadline is not None:
                        self.untick(g.sink, g.rid, g.deadline)
                    hits.append(g)
                    values.append(got[0])
                    g.live = 0
                    continue
            g.norm = n
            index[n] = g
            wait(g)
            if led is not None:
                led.append(g)
        if hits:  # (one deliver for the pass's stored answers)
            answered = self.deliver(hits, values)
            for g in hits:
                g.sink = None
        return coalesced, joined, answered

    def add_row(
        self,
        g: LaneGroup,
        sink: Any,
        rid: int,
        arrival: float,
        payload: Any,
        priority: int,
        deadline: float | None,
    ) -> None:
        """One more caller of ``g`` (a twin that came another way)."""
        row = (sink, rid, arrival, payload, priority, deadline)
        if g.more is None:
            g.more = list(row)
        else:
            g.more += row
        g.live += 1
        if deadline is not None:
            self._tick(g, sink, rid, deadline)

    def _tick(self, g: LaneGroup, sink: Any, rid: int, deadline: float) -> None:
        if not self.tick_s:
            self.timers[(sink, rid)] = self.arm_one(g, sink, rid, deadline)  # type: ignore[misc]
            return
        k = math.ceil(deadline / self.tick_s)
        rows = self.ticks.get(k)
        if rows is None:
            rows = self.ticks[k] = {}
            self.arm(k)  # type: ignore[misc]  # (set with tick_s)
        rows[(sink, rid)] = (g, deadline)

    def untick(self, sink: Any, rid: int, deadline: float) -> None:
        """The caller ``(sink, rid)`` with ``deadline`` was answered or left: its tick need
        not expire it (an emptied tick's timer finds nothing)."""
        if not self.tick_s:
            timer = self.timers.pop((sink, rid), None)
            if timer is not None:
                timer.cancel()
            return
        rows = self.ticks.get(math.ceil(deadline / self.tick_s))
        if rows is not None:
            rows.pop((sink, rid), None)

    def take(self, max_size: int, now: float) -> tuple[list[LaneGroup], bool]:
        """The next batch's groups: up to ``max_size``, oldest first (see :meth:`start`),
        and whether one of them needs a look before it goes: a twin row, or a first caller
        whose deadline is ``now`` or past (the common batch needs none: one pass here)."""
        waiting = self.waiting
        if len(waiting) <= max_size:  # (all of them: a copy, not a pop each)
            groups = list(waiting)
            waiting.clear()
        else:
            groups = [waiting.popleft() for _ in range(max_size)]
        if not self.ticks and not self.timers:
            return groups, False  # no caller of the lane has a deadline: none is due
        look = False
        for g in groups:
            if g.more is not None or (
                g.deadline is not None and g.sink is not None and g.deadline <= now
            ):
                look = True
                break
        return groups, look

    def start(self, groups: list[LaneGroup]) -> tuple[LaneBatch, int, int]:
        """``groups`` (each with a caller) go to the handler as one batch.

        Returns:
            ``(batch, live, twins)``: the batch, the callers it answers, and how many of
            them are twins of another caller of the same item (merges).
        """
        batch = LaneBatch(groups, 0)  # type: ignore[arg-type]
        live = 0
        for g in groups:
            live += g.live
            g.batch = batch
        batch.live = live
        return batch, live, live - len(groups)

    def forget(self, groups: list[LaneGroup]) -> None:
        """``groups`` are being answered: their keys stop attracting twins."""
        if self.release is not None:
            self.release(groups)
        index = self.index
        if index:
            for g in groups:
                if index.get(g.norm) is g:
                    del index[g.norm]

    def settle(self, groups: list[LaneGroup]) -> None:
        """``groups`` were answered: their keys stop attracting twins (:meth:`forget`), no
        caller of theirs is left to leave or expire (``live`` 0: :meth:`LaneGroup.drop`
        finds nobody), and their callers' deadlines are forgotten. The groups keep their
        other fields: nothing reads them once ``live`` is 0."""
        if self.release is not None:
            self.release(groups)
        index = self.index
        if index:
            pop = index.pop
            for g in groups:
                n = g.norm
                h = pop(n, None)  # (one look-up: its own key, almost always)
                if h is not g and h is not None:
                    index[n] = h  # a later group's (this one's callers had all left)
                g.live = 0
        else:
            for g in groups:
                g.live = 0
        if self.ticks or self.timers:  # (a caller of the lane has a deadline)
            for g in groups:
                if g.deadline is not None and g.sink is not None:
                    self.untick(g.sink, g.rid, g.deadline)
                more = g.more
                if more is not None:
                    for i in range(0, len(more), ROW):
                        if more[i] is not None and more[i + 5] is not None:
                            self.untick(more[i], more[i + 1], more[i + 5])

    def unwait(self, g: LaneGroup) -> None:
        """Waiting group ``g`` lost its last caller: it leaves the queue and the index (an
        arrival not grouped yet is skipped by the next :meth:`group`)."""
        if g.norm is UNGROUPED:
            return
        if self.release is not None:
            self.release([g])
        try:
            self.waiting.remove(g)
        except ValueError:
            pass  # (taken for a batch meanwhile: the dispatch skips it)
        if self.index.get(g.norm) is g:
            del self.index[g.norm]

    def hand_over(self, next_seq: int) -> list[Request]:
        """Every waiting caller as a record of the general path, group by group (seq from
        ``next_seq``: the general path's exact pass makes the same items, in the same order,
        from them); the lane keeps nothing waiting. Each caller is repointed to its record;
        a record with a deadline needs its timer armed."""
        out: list[Request] = []
        key = self.config.dedup_key
        repoint = self.repoint
        seq = next_seq
        for g in [*self.waiting, *self.raw]:  # (the raw arrived after every waiting row)
            if self.index.get(g.norm) is g:
                del self.index[g.norm]
            for sink, rid, arrival, payload, priority, deadline in g.rows():
                if deadline is not None:
                    self.untick(sink, rid, deadline)
                r = plain_request(payload, key, priority, deadline, sink, rid)
                r.arrival = arrival
                r.seq = seq
                seq += 1
                repoint(sink, rid, r)
                out.append(r)
            g.sink = None
            g.more = None
            g.live = 0
        self.waiting.clear()
        self.raw = []
        return out
