"""The outcomes the core gives (a component of the core): a finished batch's fan-out, a failed
group, one request's outcome.

Every accepted request gets exactly one outcome, through the ``on_complete`` hook the core was
made with (for a request whose ``sink`` is an asyncio future that succeeds, the future's result
is set here instead: the common case of ``BatchProcessor``, spared a call per request). A
request answered leaves the records it was linked to: its group lets it go, its timer is
cancelled, and its group's exact keys and leader row stop attracting twins once the group is
answered. Each caller that fails gets its own exception object (:func:`copy_error`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from .errors import BatchTimeoutError, HandlerError, QueueFullError, StratabatchError, copy_error
from .grouping import Deduper
from .records import DONE, INFLIGHT, Batch, Group, Request, cancel_timer
from .stats import StatsRecorder

__all__ = ["GONE", "Answers", "OnComplete", "OnCompleteMany"]

OnComplete = Callable[[Request, Any, "BaseException | None"], None]
OnCompleteMany = Callable[[list[Request], list[Any]], None]

GONE: tuple = ()  # the members of a group the core let go (a tuple: nothing joins it)

_Future = asyncio.Future


class Answers:
    """Gives outcomes.

    Args:
        on_complete: The core's completion hook (see :class:`~stratabatch.core.Core`).
        stats: The core's stats recorder.
        dedup: The core's :class:`~stratabatch.grouping.Deduper` (an answered group's keys and
            row are dropped there).
        loop: Returns the core's loop (set once the core is bound).

    Attributes:
        clock: The core's clock (:attr:`Core.clock <stratabatch.core.Core.clock>`, set when
            it binds): an outcome given outside a batch's fan-out is stamped from it.
        on_complete: The hook; may be replaced (the core's ``_on_complete`` sets it).
        on_complete_many: None, or the hook for a batch's successes at once: called once per
            finished batch with the requests answered with a value and their values, in the
            order ``on_complete`` would have seen them, instead of ``on_complete`` for each
            (the engine's outbox: one call per batch, not per request). Errors still go
            through ``on_complete``. The same contract as ``on_complete``.
    """

    def __init__(
        self,
        on_complete: OnComplete,
        stats: StatsRecorder,
        dedup: Deduper,
        loop: Callable[[], asyncio.AbstractEventLoop | None],
    ) -> None:
        self.on_complete = on_complete
        self.on_complete_many: OnCompleteMany | None = None
        self._stats = stats
        self._dedup = dedup
        self._loop = loop
        self.clock: Callable[[], float] = time.monotonic
        #: None, or called with each group answered with a value, the value and the time
        #: its handler call began (the reuse cache's store)
        self.store: Callable[[Group, Any, float], None] | None = None

    def batch(
        self, batch: Batch, results: Any, error: BaseException | None, cancelled: bool, now: float
    ) -> None:
        """Give each member of each group of ``batch`` its outcome (the handler's ``results``,
        or ``error``, or the batch was ``cancelled``); let each group go once answered."""
        dedup = self._dedup
        if cancelled or error is not None:
            for g in batch.groups:
                dedup.drop_keys(g)
                # cancelled: every waiter left; anyone who joined since is answered here
                self.group_failed(
                    g, error if error is not None else StratabatchError("the batch was cancelled")
                )
            return
        on_complete = self.on_complete
        many = self.on_complete_many
        got: list[Request] = []  # for on_complete_many: the answered and their values
        values: list[Any] = []
        exact = dedup.exact
        done: list[float] = []  # arrival times of the answered, for the stats (per batch)
        rows: list[int] = []  # the groups' leader rows, let go in one call (drop_many)
        store = self.store
        started = batch.call.started if batch.call is not None else now
        try:
            for g, value in zip(batch.groups, results, strict=True):
                ks = g.keys
                if ks is not None:
                    if type(ks) is not list and exact.get(ks) is g:  # (its leader's key alone)
                        del exact[ks]
                    else:
                        dedup.drop_keys(g)
                row = g.row
                if row is not None:
                    rows.append(row)
                    g.row = None
                if isinstance(value, BaseException):
                    self.group_failed(
                        g,
                        HandlerError.from_exception(
                            value, "the handler returned an error for this request"
                        ),
                    )
                    for m in g.member_list():
                        m.group = None
                    g.members = GONE
                    g.batch = None
                    continue
                if store is not None:
                    store(g, value, started)
                if g.members is None:  # the leader alone (most groups)
                    m = g.leader
                    if m.state == INFLIGHT:
                        m.state = DONE
                        if m.timer is not None:
                            cancel_timer(m)
                        done.append(m.arrival)
                        sink = m.sink
                        if type(sink) is _Future:  # a single call's future (see on_complete)
                            if not sink.done():
                                sink.set_result(value)
                        elif many is not None:
                            got.append(m)
                            values.append(value)
                        else:
                            try:
                                on_complete(m, value, None)
                            except Exception as e:  # the hook's bug stays with this request
                                self.hook_failed(e)
                    m.group = None
                else:
                    lead = g.leader
                    for m in g.members:
                        if m.state == INFLIGHT:
                            m.state = DONE
                            if m.timer is not None:
                                cancel_timer(m)
                            if m is not lead:
                                m.merged_with = lead
                            done.append(m.arrival)
                            if many is not None:
                                got.append(m)
                                values.append(value)
                            else:
                                try:
                                    on_complete(m, value, None)
                                except Exception as e:
                                    self.hook_failed(e)
                        m.group = None
                g.members = GONE
                g.batch = None
        finally:  # (a bug of ours above must not strand those already taken from groups)
            if rows:
                dedup.leaders.drop_many(rows)
            if got:
                try:
                    many(got, values)  # type: ignore[misc]  # (got is empty without it)
                except Exception as e:  # the hook's bug stays with these requests
                    self.hook_failed(e)
        if done:
            self._stats.record_done_many(done, now)

    def group_failed(self, g: Group, error: BaseException) -> None:
        """Every member of ``g`` still waiting gets its own copy of ``error``."""
        for m in g.member_list():
            if m.state == INFLIGHT:
                self.finish(m, None, copy_error(error))  # each caller its own exception

    def finish(
        self, req: Request, value: Any, error: BaseException | None, now: float | None = None
    ) -> None:
        """``req`` gets its outcome now (an error, or a value outside a batch's fan-out)."""
        req.state = DONE
        if req.timer is not None:
            cancel_timer(req)
        if now is None:
            now = self.clock()
        g = req.group
        req.merged_with = g.leader if g is not None and g.leader is not req else None
        st = self._stats
        st.record_done(now - req.arrival, now)
        if error is not None:
            if isinstance(error, BatchTimeoutError):
                st.timeouts += 1
            elif isinstance(error, QueueFullError):
                st.rejected += 1
            else:
                st.errors += 1
        try:
            self.on_complete(req, value, error)
        except Exception as e:  # the hook's bug stays with this request
            self.hook_failed(e)

    def hook_failed(self, e: Exception) -> None:
        """``on_complete`` raised: report it to the loop, never to another request."""
        loop = self._loop()
        assert loop is not None
        loop.call_exception_handler(
            {
                "message": "stratabatch: on_complete raised (it must not)",
                "exception": e,
            }
        )
