"""A reference model of the embedded core, for the differential test (tests/test_differential.py).

Plain dicts and lists, no asyncio: given a scenario (options, and calls arriving at known times),
:func:`simulate` predicts what ``BatchProcessor`` does with it: the handler calls (when, and which
items in which order), and each call's outcome (result, error type, or cancelled, and when).
Times are integer nanoseconds, so every comparison is exact.

The rules, from the README ("How a request travels", "Options", "Errors") and DESIGN.md
("Semantics"), and where those are silent, from what the core does today (marked "observed"),
written out as a simulation of the core's moments:

* **Looks** (observed). The core looks at its queue at these moments only: a window timer
  firing; right after a call's requests are submitted, when the arrivals plus the waiting
  groups reach ``max_size`` or the window has already ended; right after a handler call ends;
  right after a request leaves (its caller's timeout, its caller cancelled). A look first groups
  every request that arrived since the last look (the dedup pass), then takes batches while one
  is due and a handler slot is free, then sets the window and the next timer. A handler call
  that ends (not cancelled) first groups what arrived while it ran, then answers, so a twin
  arriving while its unique runs always waits for that result (README "How a request travels").
* **Grouping** (a pass, in arrival order). A request whose exact key (its scope fields and its
  text, normalized with NFKC + casefold + whitespace collapse when ``normalize``) is the key of a
  member of a waiting group joins that group; of a running group someone still waits for, it
  waits for that group's result (inflight coalescing). Otherwise, with near dedup (here a
  ``dedup_function`` the test defines, :func:`similarity`, 1.0 or 0.0; guards off), it joins
  the first waiting group, in arrival order, of the same scope whose *leader* (first member) is
  a near twin. Otherwise it leads a new group. A group's keys attract twins while it waits or
  runs; a member's key is filed only if no other group holds it (a leader's always is).
* **Due.** A batch is due when ``max_size`` groups wait, or the oldest group (by its leader's
  arrival) has waited ``max_wait_ms``, or the window has ended and at least ``min_size`` groups
  wait. A batch takes ``max_size`` groups: the oldest first; with ``enable_priorities``, the
  groups that waited ``max_wait_ms`` first (oldest first), then the highest priority (a group has
  the highest priority of its members), oldest first within a priority.
* **Window.** A window opens when a request arrives into an empty queue and lasts
  ``min(window_ms, max_wait_ms)``; after a batch is taken with groups still waiting, the next
  window opens at once (observed). The timer is set to the next moment a batch can become due
  (the window's end, or the oldest group's ``max_wait_ms``); while every handler slot is busy no
  timer runs (the end of a handler call looks again).
* **Handler.** It receives each group's leader payload, even when the leader itself has left.
  Every live member gets its group's result; a ``dedup_function`` merge and an exact merge are
  answered alike. A handler exception fails every request of the batch; an ``Exception`` at
  position i fails group i; ``processing_timeout`` fails the batch with ``BatchTimeoutError``.
  A streaming call's ``Completed.merged_into`` names the group's leader (its index when it is
  of the same call, else -1; None for the leader itself and for a request that left before a
  pass grouped it), failed requests included (observed); ``similarity`` is then 1.0 here.
* **Leaving.** A caller's timeout fails its request with ``BatchTimeoutError``; a cancelled call
  leaves without an outcome. A running batch whose last waiter left is cancelled (its handler
  is never called if it had not started). A list call without ``return_exceptions`` raises its
  first error, and its other requests leave.
* **One instant** (observed). What happens at one instant happens in steps, in the order the
  event loop runs them (:attr:`_Model.ready`, its ready queue): a task woken by an outcome, a
  cancelled batch's task, a batch's first step and its handler's first step, and the look, each
  queued when the core asks for it. E.g. a look asked for before a batch lost its last waiter
  runs before that batch ends: it still finds the batch running, its slot taken, its keys held.
* **Backpressure.** ``max_queue`` counts requests not yet handed to the handler (a coalesced
  request no longer counts). ``reject`` refuses the request (a list call raises, its requests
  already queued leave); ``drop_lowest`` evicts the waiting request of the lowest priority,
  the newest among equals (observed; the README says only "the lowest-priority"), if it is below
  the newcomer's, else refuses. ``wait`` is exercised only with a queue that never fills.
* **Stats.** As README "Stats": ``total_requests == unique_requests + duplicates + dropped +
  queue_depth``; a request leaving before it reaches the handler is ``dropped``.

Not modelled (the generator never produces them): a queue full under ``on_full="wait"``, near
dedup by the built-in embedder and its guards, adaptive windows, sync handlers (a thread and a
virtual clock do not mix), a streaming call left early by its consumer, large passes (sliced,
or run in a thread). Where the order is the event loop's and not the core's, :func:`simulate`
reports the scenario as ambiguous and the test draws another: events
closer than :data:`TIE_NS` (the loop fires a timer up to 1 ns early); timers due at one instant
whose order matters (the loop's timer heap does not keep equal times in order: a list call's
requests timing out as one of them ends a batch, batches taken together ending together and
failing a list call); a group reaching ``max_wait_ms`` exactly at a look that chooses by
priority (the core decides "has waited" in floats, both ways).
"""

from __future__ import annotations

import heapq
import unicodedata
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

TIE_NS = 5  # events closer than this are ambiguous (asyncio fires timers 1 ns early)


@dataclass(frozen=True)
class Options:
    """The options of one scenario (the processor gets them as ``BatchProcessor`` options)."""

    window_ns: int
    max_size: int
    min_size: int
    max_wait_ns: int
    max_inflight: int
    priorities: bool
    mode: str  # "exact" | "near" (a dedup_function) | "off" (enable_dedup=False)
    normalize: bool
    scoped: bool  # dedup_scope=("model",)
    processing_timeout_ns: int | None
    max_queue: int
    on_full: str
    handler_base_ns: int
    handler_item_ns: int


@dataclass(frozen=True)
class Req:
    """One request: ``{"id": rid, "query": text, "model": model}``."""

    rid: int
    text: str
    model: str

    def payload(self) -> dict[str, Any]:
        return {"id": self.rid, "query": self.text, "model": self.model}


@dataclass(frozen=True)
class Call:
    """One call: ``process()`` of a single request (``single``) or of a list, or
    ``process_streaming()`` of a list (``stream``)."""

    cid: int
    at_ns: int
    reqs: tuple[Req, ...]
    single: bool
    priority: int = 0
    timeout_ns: int | None = None
    cancel_at_ns: int | None = None
    return_exceptions: bool = False
    stream: bool = False


@dataclass
class Trace:
    """What a scenario did (the core's run and the model's prediction are compared as these).

    ``batches``: ``(start_ns, [ids])`` per handler call, in call order. ``outcomes``: per call
    id, ``("ok", value, t_ns)``, ``("error", type_name, t_ns)`` or ``("cancelled", t_ns)``; a
    list call's value is a list of results, with ``("error", type_name)`` in failed places; a
    streaming call's, per request in list order, ``(result or ("error", type_name),
    merged_into, similarity, t_ns)`` of its ``Completed``.
    """

    batches: list[tuple[int, list[int]]] = field(default_factory=list)
    outcomes: dict[int, tuple] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    ambiguous: str | None = None


# ----------------------------------------------------------------- shared with the test


def normalize_text(text: str) -> str:
    """README: NFKC, casefold and whitespace collapse."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def near_key(text: str) -> tuple[str, str]:
    """``(politeness, rest)``: the normalized text split after a leading "please" or "kindly"
    (politeness "" without one)."""
    t = normalize_text(text)
    for word in ("please", "kindly"):
        if t.startswith(word + " "):
            return word, t[len(word) + 1 :]
    return "", t


def similarity(a: dict[str, Any], b: dict[str, Any]) -> float:
    """The ``dedup_function`` of near-dedup scenarios: 1.0 for the same request said with the
    same politeness or with none on one side, else 0.0. Not transitive on purpose ("please X"
    and "kindly X" are both near "X" but not near each other), so whom a request is compared
    with (its group's leader, DESIGN.md "greedy leader clustering") shows in the groups."""
    (pa, ra), (pb, rb) = near_key(a["query"]), near_key(b["query"])
    return 1.0 if ra == rb and (pa == pb or not pa or not pb) else 0.0


def handler_ns(opts: Options, ids: list[int]) -> int:
    """How long the test's handler takes on a batch of ``ids`` (a jitter keeps ends apart)."""
    jitter = zlib.crc32(repr(ids).encode()) % 1_000_000
    return opts.handler_base_ns + opts.handler_item_ns * len(ids) + jitter


def answer(req_text: str, rid: int) -> Any:
    """The handler's item result: an error for a "boom" text, else ``ans:<id>``."""
    return ValueError("boom") if "boom" in req_text else f"ans:{rid}"


def crashes(texts: list[str]) -> bool:
    """The handler raises (after its sleep) on a batch holding a "crash" text."""
    return any("crash" in t for t in texts)


# ----------------------------------------------------------------- the simulation


class _Model:
    def __init__(self, opts: Options, calls: list[Call]) -> None:
        self.o = opts
        self.calls = {c.cid: c for c in calls}
        self.now = 0
        self.trace = Trace()
        self.events: list[tuple[int, int, str, Any]] = []
        self.evseq = 0
        self.fired: list[int] = []  # times of the events that did something
        # requests: rid -> dict(state raw|grouped|inflight|done, call, index, prio, seq, ...)
        self.reqs: dict[int, dict[str, Any]] = {}
        self.raw: list[int] = []  # arrivals since the last look (departed ones included)
        self.groups: dict[int, dict[str, Any]] = {}
        self.pending: list[int] = []  # waiting groups, by creation (= leader arrival) order
        self.keys: dict[Any, int] = {}  # exact key -> waiting or running group
        self.batches: dict[int, dict[str, Any]] = {}  # running handler calls
        self.seq = 0
        self.waiting = 0  # requests not yet handed to the handler (max_queue counts these)
        self.window_open = False
        self.window_end = 0
        self.timer: int | None = None
        self.timer_gen = 0
        # the steps that follow in the same instant, in order (the loop's ready queue): each
        # is what one task or callback does when its turn comes
        self.ready: deque[tuple[str, Any]] = deque()
        self.look_asked = False  # a look is among the steps (asked for once)
        self.zeroed = 0  # running batches whose last waiter left (for the ambiguity check)
        self.call_state: dict[int, dict[str, Any]] = {}
        self.stats = dict.fromkeys(
            (
                "total_requests",
                "total_batches",
                "unique_requests",
                "duplicates",
                "inflight_coalesced",
                "dropped",
                "timeouts",
                "rejected",
                "errors",
            ),
            0,
        )
        for c in calls:
            self._push(c.at_ns, "arrive", c.cid)
            if c.cancel_at_ns is not None:
                self._push(c.cancel_at_ns, "cancel", c.cid)

    # ---------------------------------------------------------- events

    def _push(self, t: int, kind: str, arg: Any) -> None:
        heapq.heappush(self.events, (t, self.evseq, kind, arg))
        self.evseq += 1

    def run(self) -> Trace:
        while self.events:
            # timers due at one instant all fire before what they cause (the loop runs them
            # in one iteration): e.g. the processing_timeout of two batches taken together
            t = self.events[0][0]
            kinds = []
            while self.events and self.events[0][0] == t:
                _, _, kind, arg = heapq.heappop(self.events)
                if not self._live_event(kind, arg):
                    continue
                self.now = t
                kinds.append(kind)
                getattr(self, "_on_" + kind)(arg)
            if kinds:
                self.fired.append(t)
                if len(kinds) > 1 and set(kinds) != {"batch_end"}:
                    self.trace.ambiguous = f"events {kinds} at one instant, {t} ns"
            ends = len(self.ready) if len(kinds) > 1 else 0  # batches ending together
            while self.ready:
                kind, arg = self.ready.popleft()
                getattr(self, "_step_" + kind)(arg)
                ends -= 1
                if ends == 0 and any(k == "fail" for k, _ in self.ready):
                    # the loop's timer heap orders the ends of batches taken together (equal
                    # times): a list call they fail lets its others go before or after the look
                    self.trace.ambiguous = f"batches end together and fail a call, {t} ns"
        fired = self.fired
        for a, b in zip(fired, fired[1:], strict=False):
            if b - a < TIE_NS:
                self.trace.ambiguous = f"two events {b - a} ns apart at {a} ns"
                break
        self.trace.stats = self.stats
        return self.trace

    def _live_event(self, kind: str, arg: Any) -> bool:
        if kind == "timer":
            return arg == self.timer_gen and self.timer is not None
        if kind == "deadline":  # arg: the requests sharing this deadline
            return any(self.reqs[r]["state"] != "done" for r in arg)
        if kind == "cancel":
            return "outcome" not in self.call_state[arg]
        if kind == "batch_end":
            return arg in self.batches
        return True

    def _ask_look(self) -> None:
        if not self.look_asked:
            self.look_asked = True
            self.ready.append(("look", None))

    def _step_look(self, _: Any) -> None:
        self._look()

    def _step_fail(self, cid: int) -> None:
        """A list call raised its first error: its other requests leave."""
        for rid in self.call_state[cid]["submitted"]:
            self._abandon(rid)

    # ---------------------------------------------------------- arrivals

    def _on_arrive(self, cid: int) -> None:
        self.ready.append(("arrive", cid))  # the call's task takes its first step

    def _step_arrive(self, cid: int) -> None:
        c = self.calls[cid]
        st = self.call_state[cid] = {
            "submitted": [],
            "results": [None] * len(c.reqs),
            "remaining": len(c.reqs),
        }
        deadline = None if c.timeout_ns is None else self.now + c.timeout_ns
        for i, rq in enumerate(c.reqs):
            if not self._make_room(c.priority):
                for rid in st["submitted"]:
                    self._abandon(rid)
                self._call_done(cid, ("error", "QueueFullError", self.now))
                return
            self._submit(rq, c, i, deadline)
            st["submitted"].append(rq.rid)
        if deadline is not None:
            self._push(deadline, "deadline", tuple(st["submitted"]))

    def _make_room(self, priority: int) -> bool:
        o = self.o
        if self.waiting < o.max_queue:
            return True
        assert o.on_full != "wait", "the generator never fills a queue under on_full=wait"
        if o.on_full == "drop_lowest":
            live = [r for r in self.reqs.values() if r["state"] in ("raw", "grouped")]
            if live:
                victim = min(live, key=lambda r: (r["prio"], -r["seq"]))
                if victim["prio"] < priority:
                    self._leave(victim["rid"])
                    self._deliver(victim["rid"], None, "QueueFullError")
                    return True
        self.stats["rejected"] += 1
        return False

    def _submit(self, rq: Req, c: Call, index: int, deadline: int | None) -> None:
        o = self.o
        self.reqs[rq.rid] = {
            "rid": rq.rid,
            "req": rq,
            "call": c.cid,
            "index": index,
            "prio": c.priority,
            "seq": self.seq,
            "arrival": self.now,
            "deadline": deadline,
            "state": "raw",
            "group": None,
        }
        self.seq += 1
        self.stats["total_requests"] += 1
        self.waiting += 1
        self.raw.append(rq.rid)
        if not self.window_open:
            self._open_window()
            self._arm_timer(force=True)
            if len(self.raw) + len(self.pending) >= o.max_size:  # a full batch leaves at once
                self._ask_look()
        elif len(self.raw) + len(self.pending) >= o.max_size or self.now >= self.window_end:
            self._ask_look()

    # ---------------------------------------------------------- leaving

    def _on_cancel(self, cid: int) -> None:
        self.ready.append(("cancel", cid))  # the call's task wakes up cancelled

    def _step_cancel(self, cid: int) -> None:
        if "outcome" in self.call_state[cid]:
            return
        for rid in self.call_state[cid]["submitted"]:
            self._abandon(rid)
        self._call_done(cid, ("cancelled", self.now))

    def _on_deadline(self, rids: tuple[int, ...]) -> None:
        live = [rid for rid in rids if self.reqs[rid]["state"] != "done"]
        zeroed = self.zeroed
        for rid in live:
            self._leave(rid)
            self._deliver(rid, None, "BatchTimeoutError")
            self._ask_look()
        if len(live) > 1 and self.zeroed != zeroed:
            # the requests of a list call time out together, in the order of the loop's timer
            # heap; whether a running batch they leave ends before or after the look depends
            # on which comes first
            self.trace.ambiguous = f"a list call times out as a batch ends, {self.now} ns"

    def _abandon(self, rid: int) -> None:
        if self.reqs[rid]["state"] == "done":
            return
        self._leave(rid)
        self._ask_look()

    def _leave(self, rid: int) -> None:
        r = self.reqs[rid]
        st = r["state"]
        r["state"] = "done"
        if st == "raw":
            self.stats["dropped"] += 1
            self.waiting -= 1
        elif st == "grouped":
            self.stats["dropped"] += 1
            self.waiting -= 1
            g = self.groups[r["group"]]
            g["live"].discard(rid)
            if not g["live"]:
                self.pending.remove(g["gid"])
                self._forget(g)
        elif st == "inflight":
            g = self.groups[r["group"]]
            g["live"].discard(rid)
            b = self.batches[g["batch"]]
            b["live"] -= 1
            if b["live"] == 0:  # nobody waits for it: its task is cancelled, and ends in
                # a later step of this instant (a look asked for before runs first, and still
                # finds it running: its slot taken, its keys held)
                self.zeroed += 1
                b["cancelled"] = True
                if b["started"]:
                    self.ready.append(("ended", b["bid"]))

    # ---------------------------------------------------------- the look

    def _look(self) -> None:
        o = self.o
        self.look_asked = False
        if self.raw:
            self._pass()
        took = False
        while self.pending and len(self.batches) < o.max_inflight:
            if not self._due():
                break
            self._dispatch(self._select())
            took = True
        if not self.pending or len(self.batches) >= o.max_inflight:
            if not self.pending:
                self.window_open = False
            self.timer = None
        else:
            if took or not self.window_open:
                self._open_window()
            self._arm_timer(force=took)

    def _oldest(self) -> int:
        return self.groups[self.pending[0]]["first_arrival"]

    def _due(self) -> bool:
        o = self.o
        n = len(self.pending)
        if n >= o.max_size or self.now >= self._oldest() + o.max_wait_ns:
            return True
        return self.now >= self.window_end and n >= o.min_size

    def _open_window(self) -> None:
        self.window_open = True
        self.window_end = self.now + min(self.o.window_ns, self.o.max_wait_ns)

    def _arm_timer(self, force: bool) -> None:
        if not self.pending and not self.raw:
            self.timer = None
            return
        if self.pending:
            starve = self._oldest() + self.o.max_wait_ns
            when = min(self.window_end, starve) if self.window_end > self.now else starve
        else:
            when = self.window_end
        if self.timer is not None and not force and self.timer <= when:
            return
        self.timer = when
        self.timer_gen += 1
        self._push(when, "timer", self.timer_gen)

    def _on_timer(self, gen: int) -> None:
        self.timer = None
        self._look()

    def _exact_key(self, rq: Req) -> Any:
        o = self.o
        text = normalize_text(rq.text) if o.normalize else rq.text
        return (rq.model if o.scoped else None, text)

    def _pass(self) -> None:
        o = self.o
        raw, self.raw = self.raw, []
        for rid in raw:
            r = self.reqs[rid]
            if r["state"] != "raw":
                continue
            rq: Req = r["req"]
            if o.mode == "off":
                self._new_group(rid, None)
                continue
            key = self._exact_key(rq)
            gid = self.keys.get(key)
            if gid is not None and self.groups[gid]["state"] == "pending":
                self._join(rid, gid, key)
                continue
            if (
                gid is not None
                and self.groups[gid]["state"] == "running"
                and self.batches[self.groups[gid]["batch"]]["live"] > 0
            ):
                self._coalesce(rid, gid)
                continue
            if o.mode == "near":
                scope = rq.model if o.scoped else None
                for pg in self.pending:
                    g = self.groups[pg]
                    lead: Req = self.reqs[g["leader"]]["req"]
                    same_scope = (lead.model if o.scoped else None) == scope
                    if same_scope and similarity(rq.payload(), lead.payload()) >= 0.98:
                        self._join(rid, pg, key)
                        break
                else:
                    self._new_group(rid, key)
                continue
            self._new_group(rid, key)

    def _new_group(self, rid: int, key: Any) -> None:
        r = self.reqs[rid]
        gid = rid  # a group is named for its leader
        self.groups[gid] = {
            "gid": gid,
            "leader": rid,
            "members": [rid],
            "live": {rid},
            "keys": set(),
            "prio": r["prio"],
            "first_arrival": r["arrival"],
            "seq": r["seq"],
            "state": "pending",
            "batch": None,
        }
        self.pending.append(gid)
        r["state"], r["group"] = "grouped", gid
        if key is not None:  # a leader's key takes the place of a batch nobody waits for
            self.keys[key] = gid
            self.groups[gid]["keys"].add(key)

    def _register(self, gid: int, key: Any) -> None:
        if key not in self.keys:
            self.keys[key] = gid
            self.groups[gid]["keys"].add(key)

    def _join(self, rid: int, gid: int, key: Any) -> None:
        r, g = self.reqs[rid], self.groups[gid]
        g["members"].append(rid)
        g["live"].add(rid)
        g["prio"] = max(g["prio"], r["prio"])
        r["state"], r["group"] = "grouped", gid
        self._register(gid, key)

    def _coalesce(self, rid: int, gid: int) -> None:
        r, g = self.reqs[rid], self.groups[gid]
        g["members"].append(rid)
        g["live"].add(rid)
        r["state"], r["group"] = "inflight", gid
        self.batches[g["batch"]]["live"] += 1
        self.stats["duplicates"] += 1
        self.stats["inflight_coalesced"] += 1
        self.waiting -= 1

    def _forget(self, g: dict[str, Any]) -> None:
        g["state"] = "gone"
        for k in g["keys"]:
            if self.keys.get(k) == g["gid"]:
                del self.keys[k]

    def _select(self) -> list[int]:
        o = self.o
        if not o.priorities:
            return self.pending[: o.max_size]
        cutoff = self.now - o.max_wait_ns
        chosen = self._by_priority(cutoff, strict=False)
        if chosen != self._by_priority(cutoff, strict=True):
            # a group reaches max_wait_ms at this very instant (the timer of its starvation
            # fired): the core decides "waited max_wait_ms" in floats, either way
            self.trace.ambiguous = f"a group starves exactly at {self.now} ns"
        return chosen

    def _by_priority(self, cutoff: int, strict: bool) -> list[int]:
        o = self.o
        starved = [
            g
            for g in self.pending
            if self.groups[g]["first_arrival"] < cutoff
            or (not strict and self.groups[g]["first_arrival"] == cutoff)
        ]
        if len(starved) >= o.max_size:
            return starved[: o.max_size]
        rest = [g for g in self.pending if g not in starved]
        rest.sort(key=lambda g: (-self.groups[g]["prio"], self.groups[g]["seq"]))
        return starved + rest[: o.max_size - len(starved)]

    def _dispatch(self, chosen: list[int]) -> None:
        bid = self.stats["total_batches"]
        live_total = 0
        for gid in chosen:
            self.pending.remove(gid)
            g = self.groups[gid]
            g["state"], g["batch"] = "running", bid
            live = [m for m in g["members"] if self.reqs[m]["state"] == "grouped"]
            for m in live:
                self.reqs[m]["state"] = "inflight"
            self.stats["duplicates"] += len(live) - 1
            self.waiting -= len(live)
            live_total += len(live)
        self.stats["total_batches"] += 1
        self.stats["unique_requests"] += len(chosen)
        self.batches[bid] = {
            "bid": bid,
            "groups": chosen,
            "live": live_total,
            "timed_out": False,
            "started": False,
            "cancelled": False,
        }
        self.ready.append(("start", bid))  # the batch's task

    def _step_start(self, bid: int) -> None:
        b = self.batches[bid]
        b["started"] = True
        # cancelled before its first step: the task ends at once, the handler is never called
        self.ready.append(("ended" if b["cancelled"] else "handler", bid))

    def _step_handler(self, bid: int) -> None:
        """The handler's task takes its first step: the handler is called."""
        b = self.batches[bid]
        ids = [self.groups[gid]["leader"] for gid in b["groups"]]
        self.trace.batches.append((self.now, ids))
        took = handler_ns(self.o, ids)
        pt = self.o.processing_timeout_ns
        b["timed_out"] = pt is not None and took > pt
        self._push(self.now + (pt if b["timed_out"] else took), "batch_end", bid)

    def _step_ended(self, bid: int) -> None:
        if bid in self.batches:
            self._retire(self.batches[bid], cancelled=True)
            self._ask_look()

    # ---------------------------------------------------------- outcomes

    def _on_batch_end(self, bid: int) -> None:
        self.ready.append(("end", bid))  # the batch's task wakes up

    def _step_end(self, bid: int) -> None:
        if bid in self.batches:
            if self.raw:  # what arrived while it ran is grouped first: its twins coalesce
                self._pass()
            self._retire(self.batches[bid], cancelled=False)
            self._ask_look()

    def _retire(self, b: dict[str, Any], cancelled: bool) -> None:
        del self.batches[b["bid"]]
        leaders = [self.reqs[self.groups[g]["leader"]]["req"] for g in b["groups"]]
        crash = crashes([q.text for q in leaders])
        for gid, lead in zip(b["groups"], leaders, strict=True):
            g = self.groups[gid]
            self._forget(g)
            if cancelled:
                continue  # nobody is left in it
            if b["timed_out"]:
                value, error = None, "BatchTimeoutError"
            elif crash:
                value, error = None, "HandlerError"
            else:
                value = answer(lead.text, lead.rid)
                error = "HandlerError" if isinstance(value, Exception) else None
            for m in g["members"]:
                if self.reqs[m]["state"] == "inflight":
                    self.reqs[m]["state"] = "done"
                    self._deliver(m, value, error)

    def _deliver(self, rid: int, value: Any, error: str | None) -> None:
        r = self.reqs[rid]
        r["state"] = "done"
        if error == "BatchTimeoutError":
            self.stats["timeouts"] += 1
        elif error == "QueueFullError":
            self.stats["rejected"] += 1
        elif error is not None:
            self.stats["errors"] += 1
        c = self.calls[r["call"]]
        st = self.call_state[c.cid]
        if "outcome" in st:
            return
        if c.single:
            self._call_done(
                c.cid, ("ok", value, self.now) if error is None else ("error", error, self.now)
            )
            return
        if c.stream:  # a Completed: merged_into names the leader, by index in this call
            gid = r["group"]
            lead = None if gid is None else self.groups[gid]["leader"]
            merged = None
            if lead is not None and lead != rid:
                merged = self.reqs[lead]["index"] if self.reqs[lead]["call"] == c.cid else -1
            outcome = value if error is None else ("error", error)
            st["results"][r["index"]] = (outcome, merged, None if merged is None else 1.0, self.now)
            st["remaining"] -= 1
            if st["remaining"] == 0:
                self._call_done(c.cid, ("ok", st["results"], self.now))
            return
        if error is not None and not c.return_exceptions:
            self._call_done(c.cid, ("error", error, self.now))
            self.ready.append(("fail", c.cid))  # its task wakes up with the error
            return
        st["results"][r["index"]] = ("error", error) if error is not None else value
        st["remaining"] -= 1
        if st["remaining"] == 0:
            self._call_done(c.cid, ("ok", st["results"], self.now))

    def _call_done(self, cid: int, outcome: tuple) -> None:
        st = self.call_state[cid]
        if "outcome" not in st:
            st["outcome"] = outcome
            self.trace.outcomes[cid] = outcome


def simulate(opts: Options, calls: list[Call]) -> Trace:
    """Predict the handler calls and every call's outcome for ``calls`` under ``opts``."""
    return _Model(opts, calls).run()
