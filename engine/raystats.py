"""Statistics of a stratabatch deployment on Ray Serve: merging the replicas' ``Stats``, the
board that gathers them, and the replicas' Ray metrics.

Serve has no call that reaches every replica of a deployment, so each deployment gets a small
board: a deployment-scoped actor (Serve's ``deployment_actors``, created and removed with the
deployment) that the replicas report to. A replica keeps one long-poll call open on the board;
:meth:`StatsBoard.collect` starts a new round, which ends every replica's poll, and each replica
answers with a snapshot taken after the round began. A caller that counted its answers before
asking therefore finds every one of them in the merged totals (exact at quiescence).

A replica that stops gracefully sends a last snapshot after its processor drained; its counts
stay in the totals. A replica that dies keeps the counts of its last snapshot (what it did
after that is lost), and a round does not wait for it past its timeout.

Merging (:func:`merge_stats`): counters add up; see the function for the fields that do not.
:func:`merge_rounds` merges what rounds of boards gathered: a replica that is gone holds
nothing any more, so its last snapshot counts without its gauges of what is held now (the
queue, the reuse cache's entries and bytes).

The board also carries ``forget`` orders (:meth:`StatsBoard.forget`): a round whose replicas
each drop stored answers of their reuse cache before they answer it. A replica that is gone
held its answers in its own memory, so they went with it; one that is live and fails or does
not answer in time makes :func:`forget_total` raise :class:`ForgetIncompleteError`.

This module imports nothing of Ray at import time except in :class:`ReplicaMetrics`, so the
merge can be used and tested without it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from stratabatch.ipc.counters_layout import STATS_HISTOGRAMS

from .errors import StratabatchError
from .stats import Stats

BOARD_NAME = "stratabatch_stats"
"""The name of the stats board among a deployment's ``deployment_actors``."""

_SUMMED = (
    "total_requests",
    "total_batches",
    "unique_requests",
    "duplicates",
    "inflight_coalesced",
    "requests_per_second",
    "cost_saved_usd",
    "queue_depth",
    "errors",
    "timeouts",
    "rejected",
    "exact_merges",
    "near_merges",
    "dropped",
    "reuse_hits",
    "reuse_near_hits",
    "reuse_entries",
    "reuse_bytes",
)
_FIELDS = frozenset(f.name for f in dataclasses.fields(Stats))
_HELD = {"queue_depth": 0, "reuse_entries": 0, "reuse_bytes": 0}
"""The fields of what a processor holds now: none for a replica that is gone."""


class ForgetIncompleteError(StratabatchError, RuntimeError):
    """``forget`` did not reach every live replica of the deployment: one failed, or did not
    answer in time. The replicas that answered have dropped their entries.

    Attributes:
        dropped: The entries the replicas that answered dropped.
        replicas: Each replica that did not, by its Serve replica id: what happened.
    """

    def __init__(
        self, message: str, dropped: int = 0, replicas: Mapping[str, str] | None = None
    ) -> None:
        # (all in args: copies of the error, as stratabatch.ray makes them, keep every field)
        super().__init__(message, dropped, dict(replicas or {}))
        self.dropped = dropped
        self.replicas = dict(replicas or {})

    def __str__(self) -> str:
        return str(self.args[0])


def stats_to_dict(stats: Stats) -> dict[str, Any]:
    """``stats`` as plain values (what a replica sends to its board)."""
    out = {f: getattr(stats, f) for f in _FIELDS}
    for f in STATS_HISTOGRAMS:
        out[f] = list(getattr(stats, f))
    return out


def stats_from_dict(values: Mapping[str, Any]) -> Stats:
    """The :class:`Stats` of :func:`stats_to_dict`'s mapping (unknown keys are ignored)."""
    kwargs = {k: v for k, v in values.items() if k in _FIELDS}
    for f in STATS_HISTOGRAMS:
        if f in kwargs:
            kwargs[f] = tuple(kwargs[f])
    return Stats(**kwargs)


def merge_stats(parts: Iterable[Stats]) -> Stats:
    """One :class:`Stats` for the replicas whose snapshots are ``parts``.

    * Counts, rates and the queue depth are summed (``requests_per_second`` too: the replicas
      serve at once), and so is the similarity histogram, bin by bin.
    * ``avg_batch_size`` is recomputed from the summed items and batches; ``dedup_rate`` from
      the summed duplicates and requests.
    * ``latency_ms_p50/p95/p99``: the largest of the replicas that completed requests. The
      p-th percentile of the union of several samples lies between the smallest and the
      largest of their p-th percentiles, so this is an upper bound, equal to the true value
      when the replicas' latencies are alike (and exact for one replica). The replicas'
      samples themselves are not sent.
    * ``window_ms``, ``batch_size_max``: the largest. ``adaptive_a_ms`` and
      ``adaptive_b_ms``: the mean over the replicas weighted by their batches.

    An empty ``parts`` gives a ``Stats`` of zeros.
    """
    parts = list(parts)
    sums: dict[str, Any] = {f: 0 for f in _SUMMED}
    hist: list[int] = []
    rhist: list[int] = []
    items = 0.0
    lat = [0.0, 0.0, 0.0]
    window = 0.0
    size_max = 0
    a = b = 0.0
    for s in parts:
        for f in _SUMMED:
            sums[f] += getattr(s, f)
        h = s.merge_similarity_histogram
        if len(hist) < len(h):
            hist += [0] * (len(h) - len(hist))
        for i, x in enumerate(h):
            hist[i] += x
        h = s.reuse_similarity_histogram
        if len(rhist) < len(h):
            rhist += [0] * (len(h) - len(rhist))
        for i, x in enumerate(h):
            rhist[i] += x
        items += s.avg_batch_size * s.total_batches
        if s.total_requests:
            lat = [max(lat[0], s.latency_ms_p50), max(lat[1], s.latency_ms_p95),
                   max(lat[2], s.latency_ms_p99)]  # fmt: skip
        window = max(window, s.window_ms)
        size_max = max(size_max, s.batch_size_max)
        a += s.adaptive_a_ms * s.total_batches
        b += s.adaptive_b_ms * s.total_batches
    batches = sums["total_batches"]
    total = sums["total_requests"]
    return Stats(
        avg_batch_size=items / batches if batches else 0.0,
        dedup_rate=sums["duplicates"] / total if total else 0.0,
        latency_ms_p50=lat[0],
        latency_ms_p95=lat[1],
        latency_ms_p99=lat[2],
        window_ms=window,
        merge_similarity_histogram=tuple(hist),
        reuse_similarity_histogram=tuple(rhist) if rhist else Stats.reuse_similarity_histogram,
        batch_size_max=size_max,
        adaptive_a_ms=a / batches if batches else 0.0,
        adaptive_b_ms=b / batches if batches else 0.0,
        **sums,
    )


def merge_rounds(rounds: Iterable[Mapping[str, Any]]) -> Stats:
    """One :class:`Stats` for what :meth:`StatsBoard.collect` rounds returned (one a board):
    the live replicas' snapshots and those of the replicas that are gone, whose counts stay
    in the totals but whose queue and reuse cache went with them (``queue_depth``,
    ``reuse_entries`` and ``reuse_bytes`` count the live replicas only)."""
    parts = []
    for r in rounds:
        parts += [stats_from_dict(s) for s in r["replicas"].values() if s]
        parts += [stats_from_dict({**s, **_HELD}) for s in r["gone"].values() if s]
    return merge_stats(parts)


def forget_total(outcomes: Sequence[Mapping[str, Any]], timeout_s: float) -> int:
    """The entries dropped, summed over what :meth:`StatsBoard.forget` returned (one a
    board).

    Raises:
        ForgetIncompleteError: A live replica failed to forget, or did not answer within
            ``timeout_s``; it names each, and carries what the others dropped.
    """
    dropped = 0
    missed: dict[str, str] = {}
    for o in outcomes:
        dropped += sum(o["dropped"].values())
        missed.update({r: f"failed: {m}" for r, m in o["failed"].items()})
        missed.update({r: f"did not answer within {timeout_s:g} s" for r in o["stale"]})
    if missed:
        which = "; ".join(f"replica {r} {m}" for r, m in sorted(missed.items()))
        raise ForgetIncompleteError(
            f"forget reached {len(missed)} live replica(s) too few: {which}. The others "
            f"dropped {dropped} entries; a replica that did not answer in time still drops "
            "them when it gets the order (forget again to know)",
            dropped,
            missed,
        )
    return dropped


class StatsBoard:
    """The deployment-scoped actor the replicas of one deployment report to (an async actor:
    Serve starts it with the deployment and removes it with it).

    Replicas call :meth:`join`, then loop on :meth:`poll` and :meth:`report`; a stopping
    replica calls :meth:`leave` with its last snapshot. Readers call :meth:`collect`, and
    :meth:`forget` for a round that drops stored answers on every replica first.

    Args:
        dedup_scope: The deployment's ``dedup_scope`` fields (what ``forget`` may name).
    """

    def __init__(self, dedup_scope: Sequence[str] = ()) -> None:
        self._scope = tuple(dedup_scope)
        self._orders: dict[int, dict[str, Any] | None] = {}  # round -> forget scope, until seen
        self._dropped: dict[int, dict[str, int | str]] = {}  # round -> replica -> count | error
        self._round = 0
        self._wake: asyncio.Event | None = None
        self._answered: asyncio.Event | None = None
        self._live: dict[str, dict[str, Any]] = {}  # replica -> its last snapshot ({} before one)
        self._seen: dict[str, int] = {}  # replica -> the round its last snapshot answered
        self._actors: dict[str, Any] = {}  # replica -> its actor handle (to probe a silent one)
        self._gone: dict[str, dict[str, Any]] = {}  # replicas that left: their last snapshot

    def _events(self) -> tuple[asyncio.Event, asyncio.Event]:
        if self._wake is None or self._answered is None:  # (made on the actor's own loop)
            self._wake, self._answered = asyncio.Event(), asyncio.Event()
        return self._wake, self._answered

    async def join(self, replica: str, actor: Any) -> int:
        """Register ``replica`` (its Serve replica id) and its actor handle; returns the
        round it has seen: the current one, or the one before the oldest forget order still
        going round (a replica may have stored answers before it joined)."""
        self._live.setdefault(replica, {})
        first = min(self._orders, default=self._round + 1) - 1
        self._seen.setdefault(replica, min(self._round, first))
        self._actors[replica] = actor
        return self._seen[replica]

    async def poll(
        self, seen: int, wait_s: float
    ) -> tuple[int, list[tuple[int, dict[str, Any] | None]]]:
        """Wait until a round later than ``seen`` starts, or ``wait_s`` passes.

        Returns:
            The current round (a replica answers it when it is later than ``seen``) and the
            forget orders of the rounds after ``seen``, oldest first: ``(round, scope)``, which
            the replica carries out before it answers.
        """
        wake, _ = self._events()
        deadline = time.monotonic() + wait_s
        while self._round <= seen:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(wake.wait(), left)
            except TimeoutError:
                break
        return self._round, [(r, o) for r, o in sorted(self._orders.items()) if r > seen]

    async def report(
        self,
        replica: str,
        round_: int,
        stats: dict[str, Any],
        dropped: Mapping[int, int | str] | None = None,
    ) -> None:
        """A snapshot of ``replica``'s processor, taken after round ``round_`` began, and what
        it did with the forget orders :meth:`poll` gave it: by round, the entries it dropped
        or why it failed (a str)."""
        if replica in self._gone:
            return
        self._live[replica] = stats
        self._seen[replica] = max(self._seen.get(replica, 0), round_)
        for r, outcome in (dropped or {}).items():
            if r in self._dropped:
                self._dropped[r][replica] = outcome
        self._prune()
        _, answered = self._events()
        answered.set()

    async def leave(self, replica: str, stats: dict[str, Any]) -> None:
        """``replica`` stops: ``stats`` is its final snapshot (its processor has drained)."""
        self._live.pop(replica, None)
        self._seen.pop(replica, None)
        self._actors.pop(replica, None)
        self._gone[replica] = stats
        self._prune()
        _, answered = self._events()
        answered.set()

    def _prune(self) -> None:
        """Drop the forget orders every live replica has carried out."""
        low = min(self._seen.values(), default=self._round)
        for r in [r for r in self._orders if r <= low]:
            del self._orders[r]

    def check_forget(self, scope: Any) -> None:
        """Raise what ``forget(scope)`` would raise for its argument (nothing is dropped).

        Raises:
            TypeError: ``scope`` is neither None nor a mapping of str fields.
            InvalidRequestError: It names a field that is not one of ``dedup_scope``.
        """
        from .reusecontrol import forget

        forget(None, self._scope, scope)  # (checks; no cache: drops nothing)

    async def forget(self, scope: Any, timeout_s: float) -> dict[str, Any]:
        """Start a round in which every live replica drops the stored answers of its reuse
        cache that ``scope`` names (None: all) before it answers, and wait (at most
        ``timeout_s``) for their answers. The argument is checked first: nothing is asked of a
        replica when it is wrong.

        Returns:
            ``{"dropped": {id: entries}, "failed": {id: why}, "stale": [id, ...], "gone":
            [id, ...]}``: what each replica that answered dropped, the replicas whose forget
            raised, the live replicas that did not answer in time (they still carry the order
            out when they get it), and the replicas found gone meanwhile.

        Raises:
            TypeError, InvalidRequestError: As :meth:`check_forget`.
        """
        self.check_forget(scope)
        gone = set(self._gone)
        wake, _ = self._events()
        self._round += 1
        target = self._round
        self._orders[target] = None if scope is None else dict(scope)
        self._dropped[target] = {}
        wake.set()
        wake.clear()
        try:
            await self._wait_round(target, timeout_s)
            outcome = self._dropped[target]
        finally:
            del self._dropped[target]
            self._prune()
        return {
            "dropped": {r: n for r, n in outcome.items() if not isinstance(n, str)},
            "failed": {r: n for r, n in outcome.items() if isinstance(n, str)},
            "stale": [r for r, seen in self._seen.items() if seen < target],
            "gone": sorted(set(self._gone) - gone),
        }

    async def collect(self, timeout_s: float) -> dict[str, Any]:
        """Start a round and wait (at most ``timeout_s``) for every live replica's answer.

        Returns:
            ``{"replicas": {id: snapshot}, "gone": {id: snapshot}, "stale": [id, ...]}``:
            the live replicas' snapshots, the final snapshots of replicas that stopped or
            died, and the live replicas that did not answer in time (their previous snapshot
            is in ``replicas``).
        """
        wake, _ = self._events()
        self._round += 1
        target = self._round
        wake.set()
        wake.clear()  # (the waiting polls were woken; later polls wait for the next round)
        await self._wait_round(target, timeout_s)
        stale = [r for r, seen in self._seen.items() if seen < target]
        return {"replicas": dict(self._live), "gone": dict(self._gone), "stale": stale}

    async def _wait_round(self, target: int, timeout_s: float) -> None:
        """Until every live replica has answered round ``target``, or ``timeout_s`` passed;
        at half the time, the silent replicas whose actor is dead are moved to the gone."""
        _, answered = self._events()
        deadline = time.monotonic() + timeout_s
        probed = False
        while True:
            missing = [r for r, seen in self._seen.items() if seen < target]
            if not missing:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if not probed and left < timeout_s / 2:
                probed = True
                await self._drop_dead(missing)
                continue
            answered.clear()
            try:
                await asyncio.wait_for(answered.wait(), min(left, timeout_s / 2))
            except TimeoutError:
                pass

    async def _drop_dead(self, replicas: list[str]) -> None:
        """Move the replicas among ``replicas`` whose actor is dead to the gone ones (their
        last snapshot counts, as a stopped replica's final one does)."""
        for r in replicas:
            actor = self._actors.get(r)
            if actor is None:
                continue
            try:
                await asyncio.wait_for(actor.__ray_ready__.remote(), 1.0)
            except TimeoutError:
                continue  # alive but busy: it may still answer
            except Exception:  # noqa: BLE001 - Ray's actor-died errors, whichever it raises
                self._gone[r] = self._live.pop(r, {})
                self._seen.pop(r, None)
                self._actors.pop(r, None)
        self._prune()


class ReplicaMetrics:
    """A replica's Ray metrics (``ray.util.metrics``), fed from its processor's ``Stats``.

    Counters grow by the difference between two snapshots, so feeding them costs nothing per
    request; gauges take the snapshot's value. Every metric carries the tags ``application``
    and ``deployment``, as Serve's own metrics do (Ray adds its own, such as the node and
    worker).
    """

    COUNTERS = (
        ("stratabatch_requests_total", "total_requests", "Requests accepted."),
        ("stratabatch_handler_items_total", "unique_requests", "Items sent to the handler."),
        ("stratabatch_merged_total", None, "Duplicates merged in a window."),
        (
            "stratabatch_coalesced_total",
            "inflight_coalesced",
            "Duplicates that joined work already running in the handler.",
        ),
        ("stratabatch_batches_total", "total_batches", "Handler calls made."),
        ("stratabatch_errors_total", "errors", "Requests answered with a handler or other error."),
        ("stratabatch_timeouts_total", "timeouts", "Requests answered with BatchTimeoutError."),
        ("stratabatch_rejected_total", "rejected", "Requests answered with QueueFullError."),
        ("stratabatch_reuse_hits_total", "reuse_hits", "Requests answered from the reuse cache."),
        (
            "stratabatch_reuse_near_hits_total",
            "reuse_near_hits",
            "Near twins answered from the reuse cache (of the reuse hits).",
        ),
    )
    GAUGES = (
        ("stratabatch_queue_depth", "queue_depth", "Requests waiting for a batch now."),
        ("stratabatch_window_ms", "window_ms", "The window in force now, ms."),
        ("stratabatch_reuse_entries", "reuse_entries", "Answers the reuse cache holds now."),
        ("stratabatch_reuse_bytes", "reuse_bytes", "Bytes the reuse cache accounts for now."),
    )

    def __init__(self, app: str, deployment: str) -> None:
        from ray.util import metrics

        tags = {"application": app, "deployment": deployment}
        keys = ("application", "deployment")
        self.counters = {
            name: metrics.Counter(name, description=text, tag_keys=keys).set_default_tags(tags)
            for name, _, text in self.COUNTERS
        }
        self.gauges = {
            name: metrics.Gauge(name, description=text, tag_keys=keys).set_default_tags(tags)
            for name, _, text in self.GAUGES
        }
        self.sent: dict[str, float] = {name: 0 for name, _, _ in self.COUNTERS}
        """What each counter has been increased by so far."""

    def update(self, stats: Stats) -> None:
        """Bring the metrics to ``stats`` (a later snapshot of the same processor)."""
        for name, field, _ in self.COUNTERS:
            if field is None:  # merged = duplicates that did not coalesce
                value = stats.duplicates - stats.inflight_coalesced
            else:
                value = getattr(stats, field)
            delta = value - self.sent[name]
            if delta > 0:
                self.counters[name].inc(delta)
                self.sent[name] = value
        for name, field, _ in self.GAUGES:
            self.gauges[name].set(getattr(stats, field))
