"""The records the core works on: a request, a group of duplicates, a running batch.

Life of a request::

    RAW --dedup pass--> GROUPED (in a pending group) --dispatch--> INFLIGHT --> DONE
     |                                                                ^
     +-- exact twin of in-flight work: coalesced into it -------------+
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

RAW, GROUPED, INFLIGHT, DONE = range(4)


class Request:
    """One accepted request, as the core sees it.

    Attributes:
        payload: The request mapping handed to the handler (if it leads its group).
        priority: Higher runs first with ``enable_priorities``.
        deadline: Loop time after which the caller has given up, or None.
        sink: Opaque to the core: whom to answer (a call of the processor, a client slot...).
        index: Opaque to the core: the position within the sink's call.
        text: The dedup text (``payload[dedup_key]`` if it is a str), or None.
        vector: The request's own embedding (float32, unit norm), or None.
        similarity: Similarity to the request whose handler item answers it; None if it is
            that request itself.
        size: Bytes of its msgpack encoding (what ``max_request_bytes`` limits).
        merged_with: Set by the core when the outcome is delivered: the request whose handler
            item answered this one, or None if this one went to the handler itself (or never
            reached a group).
        canon: The canonical text of ``text`` (:func:`stratabatch.canon.canonical_texts`:
            its canonical words apart by spaces), set when it is embedded or first judged by a
            guard; None before.
        features: Its guard features (:class:`stratabatch.guards.Features`), computed the
            first time a guard reads it; None before.
        fresh: Its caller asked for a fresh answer (``process(..., reuse=False)``): the
            reuse cache never answers it (twins still merge with it; its answer is stored).
    """

    __slots__ = (
        "payload",
        "priority",
        "deadline",
        "sink",
        "index",
        "text",
        "vector",
        "arrival",
        "seq",
        "state",
        "group",
        "key",
        "norm",
        "similarity",
        "exact",
        "timer",
        "size",
        "merged_with",
        "canon",
        "features",
        "numkey",
        "wprof",
        "reuse_age",
        "fresh",
    )

    def __init__(
        self,
        payload: Mapping[str, Any],
        priority: int = 0,
        deadline: float | None = None,
        sink: Any = None,
        index: int = 0,
        text: str | None = None,
        vector: Any = None,
        size: int = 0,
    ) -> None:
        # (positional parameters too: the hot path builds one record per request, and a call
        # by keywords costs twice the stores below)
        self.payload = payload
        self.priority = priority
        self.deadline = deadline
        self.sink = sink
        self.index = index
        self.text = text
        self.vector = vector
        self.size = size
        self.arrival = 0.0
        self.seq = 0
        self.state = RAW
        self.exact = False
        self.group: Group | None = None
        # its deadline's timer: a loop timer of its own, or the dict of requests sharing one
        # (Core.deadline_tick_s); None without a deadline or once answered
        self.timer: asyncio.TimerHandle | TickShare | None = None
        self.merged_with: Request | None = None
        self.key: Any = None  # its exact key: a hash, or a tuple with a scope
        self.norm: str | bytes | None = None
        self.similarity: float | None = None
        self.numkey: int | None = None  # the numbers guard's partition key, once computed
        self.canon: str | None = None  # canonical text of text (stratabatch.canon)
        self.features: Any = None  # guard features of text, computed on first need
        self.wprof: Any = None  # its key words for the word index, when computed off the loop
        self.reuse_age: float | None = None  # answered from the reuse cache: the answer's age
        self.fresh = False  # its call said reuse=False: the reuse cache's lookup skips it

    @property
    def leader(self) -> Request | None:
        """The request whose payload went (or goes) to the handler for this one."""
        return self.group.leader if self.group is not None else None


def plain_request(
    payload: Any,
    key: str,
    priority: int,
    deadline: float | None,
    sink: Any,
    index: int,
    size: int = 0,
) -> Request:
    """The record of a checked request without a vector of its own: its text is the payload's
    ``key`` field when that is a string (the dedup key), else None."""
    t = payload.get(key)
    return Request(
        payload,
        priority,
        deadline,
        sink,
        index,
        t if type(t) is str or isinstance(t, str) else None,
        None,
        size,
    )


class TickShare(dict[int, "Request"]):
    """The requests (by ``seq``) whose deadlines fall in one tick and share its timer
    (:attr:`stratabatch.core.Core.deadline_tick_s`); ``handle`` is that timer, ``ticks`` the
    core's table of shares and ``key`` this one's tick in it."""

    __slots__ = ("handle", "ticks", "key")

    def __init__(self, ticks: dict[int, TickShare], key: int) -> None:
        super().__init__()
        self.handle: asyncio.TimerHandle | None = None
        self.ticks = ticks
        self.key = key


def cancel_timer(req: Request) -> None:
    """``req`` needs its deadline's timer no more: cancel its own, or leave the shared one
    (the last to leave cancels it)."""
    t = req.timer
    if t is not None:
        req.timer = None
        if type(t) is TickShare:
            t.pop(req.seq, None)
            if not t:
                if t.handle is not None:
                    t.handle.cancel()
                if t.ticks.get(t.key) is t:
                    del t.ticks[t.key]
        else:
            t.cancel()  # type: ignore[union-attr]


class Group:
    """Requests that share one handler item: the leader and its duplicates."""

    __slots__ = (
        "leader",
        "members",
        "live",
        "priority",
        "first_arrival",
        "seq",
        "keys",
        "row",
        "part",
        "batch",
    )

    def __init__(self, leader: Request, part: Any = None) -> None:
        """``leader`` leads the new group (it becomes GROUPED, with no merge similarity);
        ``part`` is its dedup partition."""
        leader.group = self
        leader.state = GROUPED
        leader.similarity = None
        self.leader = leader
        # None while the leader is its only member (most groups): a list, like every
        # container, is one more object for the cyclic GC to walk while the group waits
        self.members: list[Request] | tuple[()] | None = None
        self.live = 1
        self.priority = leader.priority
        self.first_arrival = leader.arrival
        self.seq = leader.seq
        # its exact keys (stratabatch.grouping.Deduper.exact): None, one key, or a list
        self.keys: Any = None
        self.row: int | None = None  # its leader's row in the LeaderIndex
        self.part = part
        self.batch: Batch | None = None

    def member_list(self) -> list[Request] | tuple[Request, ...]:
        """Its members, the leader first (empty once the core has let the group go)."""
        ms = self.members
        return (self.leader,) if ms is None else ms

    def add(self, req: Request, state: int, similarity: float, exact: bool) -> None:
        """``req`` becomes a live member in ``state`` (GROUPED, or INFLIGHT when it joins a
        running group), merged at ``similarity`` (``exact``: by an exact key)."""
        req.group = self
        req.state = state
        req.similarity = similarity
        req.exact = exact
        self.live += 1
        ms = self.members
        if ms is None:
            self.members = [self.leader, req]
        else:
            ms.append(req)  # type: ignore[union-attr]  # (a group let go, _GONE, takes no one)


class Batch:
    """Groups handed to the handler in one call.

    Attributes:
        groups: Its groups, in the order of the handler's items.
        live: Members still waiting for an outcome (the call is abandoned at 0).
        call: Its handler call (:class:`stratabatch.runner.Call`), once started.
        task: The task running the handler, once started.
    """

    __slots__ = ("groups", "live", "call", "task")

    def __init__(self, groups: list[Group], live: int) -> None:
        self.groups = groups
        self.live = live
        self.call: Any = None
        self.task: asyncio.Task | None = None
