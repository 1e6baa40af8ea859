"""Statistics of a processor: the frozen :class:`Stats` snapshot and the recorder that feeds it.

Accounting: every accepted request ends in exactly one of these, so at any moment
``total_requests == unique_requests + duplicates + dropped + queue_depth``. Requests refused at
the door (``rejected``, ``InvalidRequestError``) were never accepted and are not in the sum.
With no timeouts and no evictions this is simply ``total_requests == unique_requests +
duplicates`` once the queue is empty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The binning rule belongs to the counters block's schema (what the engine publishes and a
# monitor reads); counters_layout is stdlib-only, so this import stays cheap.
from stratabatch.ipc.counters_layout import SIMILARITY_BINS, similarity_bin

_LATENCY_RING = 16384  # recent completions kept for percentiles (power of two)
_RATE_WINDOW_S = 10


@dataclass(frozen=True)
class Stats:
    """A consistent snapshot of one processor's counters, from ``get_stats()``."""

    total_requests: int
    """Requests accepted (refused-at-the-door requests are not counted here, see ``rejected``)."""
    total_batches: int
    """Handler calls made."""
    avg_batch_size: float
    """Mean number of items per handler call (unique requests per batch)."""
    unique_requests: int
    """Items sent to the handler."""
    duplicates: int
    """Accepted requests answered by another request's handler item (merged or coalesced)."""
    dedup_rate: float
    """``duplicates / total_requests`` (0.0 before the first request)."""
    inflight_coalesced: int
    """Duplicates that joined work already executing in the handler (a subset of ``duplicates``)."""
    requests_per_second: float
    """Completed requests per second over the last 10 s (since the first request if younger)."""
    cost_saved_usd: float
    """``duplicates * cost_per_request_usd``."""
    latency_ms_p50: float
    """Median latency, submission to outcome, over the last 16,384 completed requests."""
    latency_ms_p95: float
    """95th percentile latency over the same completions."""
    latency_ms_p99: float
    """99th percentile latency over the same completions."""
    queue_depth: int
    """Requests waiting for a batch now (not yet handed to the handler)."""
    window_ms: float
    """The window in force now (moves with ``adaptive=True``)."""
    errors: int
    """Requests answered with an error other than a timeout or backpressure."""
    timeouts: int
    """Requests answered with BatchTimeoutError (caller timeout or processing_timeout)."""
    rejected: int
    """Requests answered with QueueFullError: refused at the door, or evicted while waiting."""
    exact_merges: int
    """Duplicates whose normalized key equals their unique's (similarity 1.0)."""
    near_merges: int
    """Duplicates merged by embedding similarity or by ``dedup_function``."""
    merge_similarity_histogram: tuple[int, ...]
    """101 bins: bin ``i < 100`` counts merges with similarity in ``[i/100, (i+1)/100)`` (bin 0
    also below 0), bin 100 counts similarity 1.0 (all exact merges land there). The binning is
    ``stratabatch.ipc.counters_layout.similarity_bin``, the counters block's own."""
    dropped: int = 0
    """Accepted requests that left the queue without reaching the handler: their caller timed
    out or was cancelled, they were evicted by ``on_full="drop_lowest"``, or their dedup step
    failed (a ``dedup_function`` error, a bad embedding)."""
    batch_size_max: int = 0
    """Largest handler call so far."""
    adaptive_a_ms: float = 0.0
    """Fitted fixed cost per handler call, ms (``adaptive=True``; 0.0 otherwise)."""
    adaptive_b_ms: float = 0.0
    """Fitted cost per item, ms (``adaptive=True``; 0.0 otherwise)."""
    reuse_hits: int = 0
    """Duplicates answered from the reuse cache (a subset of ``duplicates``, in neither
    ``exact_merges`` nor ``near_merges``)."""
    reuse_near_hits: int = 0
    """Of ``reuse_hits``, those answered through near reuse (``reuse="near"``: a near twin of
    a stored answer, found by the same embedder, threshold and guards as in-window dedup)."""
    reuse_similarity_histogram: tuple[int, ...] = (0,) * SIMILARITY_BINS
    """The similarities of the near twins answered from the reuse cache (``reuse_near_hits``),
    in the bins of ``merge_similarity_histogram`` and apart from it (a window's merges only)."""
    reuse_entries: int = 0
    """Answers the reuse cache holds now."""
    reuse_bytes: int = 0
    """Bytes the reuse cache accounts for now."""


class StatsRecorder:
    """Mutable counters behind :class:`Stats`; one per core, touched only from its event loop."""

    def __init__(self) -> None:
        self.total_requests = 0
        self.total_batches = 0
        self.batch_items = 0
        self.batch_size_max = 0
        self.unique_requests = 0
        self.duplicates = 0
        self.inflight_coalesced = 0
        self.errors = 0
        self.timeouts = 0
        self.rejected = 0
        self.dropped = 0
        self.exact_merges = 0
        self.near_merges = 0
        self.reuse_hits = 0
        self.reuse_near_hits = 0
        self.reuse_similarity_hist = np.zeros(SIMILARITY_BINS, dtype=np.int64)
        self.similarity_hist = np.zeros(SIMILARITY_BINS, dtype=np.int64)
        self._lat = [0.0] * _LATENCY_RING  # a list: a store is 3x cheaper than numpy's
        self._lat_n = 0
        self._first_done: float | None = None
        self._rate_buckets: dict[int, int] = {}
        self.latency_log: list[float] | None = None
        """None, or every latency (seconds) recorded since its reader last took the list:
        the engine's counters block reads them from here (:meth:`keep_latencies`)."""

    def keep_latencies(self) -> None:
        """From now on, also log each latency in :attr:`latency_log` for a reader that takes
        them (the engine's counters block: one list per batch, not a second per request)."""
        if self.latency_log is None:
            self.latency_log = []

    def take_latencies(self) -> list[float]:
        """The latencies logged since the last call (seconds), and a fresh log."""
        got = self.latency_log
        if not got:
            return []
        self.latency_log = []
        return got

    def record_merge(self, similarity: float, exact: bool) -> None:
        """Count one duplicate merged (not coalesced) with ``similarity`` to its unique."""
        self.duplicates += 1
        if exact:
            self.exact_merges += 1
        else:
            self.near_merges += 1
        self.similarity_hist[similarity_bin(similarity)] += 1

    def record_near_reuse(self, similarity: float) -> None:
        """Count one near twin answered from the reuse cache at ``similarity`` (the caller
        counts it in ``duplicates`` and ``reuse_hits``, as every reuse hit)."""
        self.reuse_near_hits += 1
        self.reuse_similarity_hist[similarity_bin(similarity)] += 1

    def record_exact_merges(self, k: int) -> None:
        """Count ``k`` duplicates merged by their exact key (:meth:`record_merge` for each
        at similarity 1.0)."""
        self.duplicates += k
        self.exact_merges += k
        self.similarity_hist[similarity_bin(1.0)] += k

    def record_batch(self, size: int) -> None:
        """Count one handler call of ``size`` items."""
        self.total_batches += 1
        self.batch_items += size
        self.unique_requests += size
        if size > self.batch_size_max:
            self.batch_size_max = size

    def record_done(self, latency_s: float, now: float) -> None:
        """Count one outcome delivered ``latency_s`` after submission."""
        self._lat[self._lat_n & (_LATENCY_RING - 1)] = latency_s
        self._lat_n += 1
        if self.latency_log is not None:
            self.latency_log.append(latency_s)
        if self._first_done is None:
            self._first_done = now - latency_s
        sec = int(now)
        buckets = self._rate_buckets
        buckets[sec] = buckets.get(sec, 0) + 1
        if len(buckets) > _RATE_WINDOW_S + 1:
            for old in [s for s in buckets if s < sec - _RATE_WINDOW_S]:
                del buckets[old]

    def record_done_many(self, arrivals: list[float], now: float) -> None:
        """Count the outcomes delivered at ``now`` to requests submitted at ``arrivals`` (a
        batch's answers at once: the same counts as :meth:`record_done` for each)."""
        lat = self._lat
        i = self._lat_n & (_LATENCY_RING - 1)
        n = len(arrivals)
        got = [now - a for a in arrivals]
        if i + n <= _LATENCY_RING:
            lat[i : i + n] = got
        else:
            for x in got:
                lat[i] = x
                i = (i + 1) & (_LATENCY_RING - 1)
        self._lat_n += n
        if self.latency_log is not None:
            self.latency_log += got
        if self._first_done is None:
            self._first_done = arrivals[0]
        sec = int(now)
        buckets = self._rate_buckets
        buckets[sec] = buckets.get(sec, 0) + n
        if len(buckets) > _RATE_WINDOW_S + 1:
            for old in [s for s in buckets if s < sec - _RATE_WINDOW_S]:
                del buckets[old]

    def record_error(self) -> None:
        """Count one request answered with an error after all (an engine whose result
        could not be sent); its completion was counted when the core delivered it."""
        self.errors += 1

    @property
    def completed(self) -> int:
        """Outcomes delivered so far (it grows by one per answered request: the engine
        compares it to know whether anything finished since it last published)."""
        return self._lat_n

    def snapshot(
        self,
        *,
        now: float,
        queue_depth: int,
        window_ms: float,
        cost_per_request: float,
        adaptive_a_ms: float = 0.0,
        adaptive_b_ms: float = 0.0,
        reuse_entries: int = 0,
        reuse_bytes: int = 0,
    ) -> Stats:
        """Freeze the counters into a :class:`Stats`."""
        n = min(self._lat_n, _LATENCY_RING)
        if n:
            lat = np.array(self._lat[:n], dtype=np.float64)
            p50, p95, p99 = np.percentile(lat, (50.0, 95.0, 99.0)) * 1000.0
        else:
            p50 = p95 = p99 = 0.0
        rps = 0.0
        if self._first_done is not None:
            lo = int(now) - _RATE_WINDOW_S
            recent = sum(c for s, c in self._rate_buckets.items() if s >= lo)
            span = min(float(_RATE_WINDOW_S + (now - int(now))), now - self._first_done)
            rps = recent / max(span, 1e-3)
        total = self.total_requests
        return Stats(
            total_requests=total,
            total_batches=self.total_batches,
            avg_batch_size=self.batch_items / self.total_batches if self.total_batches else 0.0,
            unique_requests=self.unique_requests,
            duplicates=self.duplicates,
            dedup_rate=self.duplicates / total if total else 0.0,
            inflight_coalesced=self.inflight_coalesced,
            requests_per_second=float(rps),
            cost_saved_usd=self.duplicates * cost_per_request,
            latency_ms_p50=float(p50),
            latency_ms_p95=float(p95),
            latency_ms_p99=float(p99),
            queue_depth=queue_depth,
            window_ms=float(window_ms),
            errors=self.errors,
            timeouts=self.timeouts,
            rejected=self.rejected,
            exact_merges=self.exact_merges,
            near_merges=self.near_merges,
            merge_similarity_histogram=tuple(int(x) for x in self.similarity_hist),
            dropped=self.dropped,
            batch_size_max=self.batch_size_max,
            adaptive_a_ms=float(adaptive_a_ms),
            adaptive_b_ms=float(adaptive_b_ms),
            reuse_hits=self.reuse_hits,
            reuse_near_hits=self.reuse_near_hits,
            reuse_similarity_histogram=tuple(int(x) for x in self.reuse_similarity_hist),
            reuse_entries=reuse_entries,
            reuse_bytes=reuse_bytes,
        )
