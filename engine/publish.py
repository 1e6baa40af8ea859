"""The engine's counters block: what ``stratabatch-monitor`` reads, written from the core's stats.

One :class:`Publisher` per engine owns the counters segment ``stratabatch-UID-NAME-counters``
and is its only writer. The engine calls :meth:`Publisher.batch` for every handler call,
:meth:`Publisher.totals` after every loop pass that changed something (cheap: copies of
integer counters), and :meth:`Publisher.tick` from a 10 Hz timer (percentiles, gauges, the
per-second sample ring, the client table and the ``updated_at_ns`` heartbeat).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from stratabatch.ipc.counters import (
    COUNTERS_MAGIC,
    COUNTERS_VERSION,
    CountersLayout,
    CountersWriter,
)
from stratabatch.ipc.segment import Segment, segment_name

from .stats import Stats, StatsRecorder

_COUNTERS = ("total_requests", "total_batches", "unique_requests", "duplicates",
             "inflight_coalesced", "errors", "timeouts", "rejected", "exact_merges",
             "near_merges")


class Publisher:
    """Writes one engine's stats into its counters segment.

    Args:
        engine_name: The engine's name (the segment is named after it).
        max_clients: Rows of the per-client table.
    """

    def __init__(self, engine_name: str, max_clients: int) -> None:
        layout = CountersLayout.for_stats(max_clients=max_clients)
        self.segment = Segment.create(segment_name(engine_name, "counters"), layout.nbytes,
                                      magic=COUNTERS_MAGIC, version=COUNTERS_VERSION)
        self._w = CountersWriter(self.segment.buf, layout)
        self._started_ns = time.time_ns()
        self._sizes: list[int] = []
        self._lat_ms: list[float] = []
        self._sim_seen = np.zeros(101, np.int64)
        self._last: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        self._second = int(time.time())
        self._second_base: dict[str, int] = dict.fromkeys(
            ("total_requests", "total_batches", "duplicates", "errors"), 0)
        with self._w.update():
            self._w.set("engine_pid", os.getpid())
            self._w.set("started_at_ns", self._started_ns)
            self._w.set("updated_at_ns", self._started_ns)

    def batch(self, size: int) -> None:
        """Record one handler call of ``size`` items (any thread: a list append)."""
        self._sizes.append(size)

    def latency(self, seconds: float) -> None:
        """Record one request's latency, submission to outcome."""
        self._lat_ms.append(seconds * 1000.0)

    def totals(self, rec: StatsRecorder, queue_depth: int, inflight_batches: int,
               clients: int) -> None:
        """Copy the recorder's totals, the batch sizes and latencies seen since last time."""
        w = self._w
        sizes, self._sizes = self._sizes, []
        lat, self._lat_ms = self._lat_ms, []
        with w.update():
            for name in _COUNTERS:
                v = getattr(rec, name)
                if v != self._last[name]:
                    w.add(name, v - self._last[name])
                    self._last[name] = v
            if sizes:
                w.observe_many("batch_size", np.asarray(sizes, np.float64))
            if lat:
                w.observe_many("latency_ms", np.asarray(lat, np.float64))
            hist = rec.similarity_hist
            new = hist - self._sim_seen
            if new.any():
                # Stats bins are [i/100, (i+1)/100) and 1.0; the block's buckets are (.., b]:
                # each Stats bin is observed at its midpoint (1.0 for the top bin)
                mids = np.append((np.arange(100) + 0.5) / 100.0, 1.0)
                w.observe_many("merge_similarity", np.repeat(mids, new))
                self._sim_seen = hist.copy()
            w.set("queue_depth", queue_depth)
            w.set("inflight_batches", inflight_batches)
            w.set("clients_connected", clients)
            w.set("updated_at_ns", time.time_ns())

    def tick(self, stats: Stats, inflight_batches: int, clients: int) -> None:
        """Write a full snapshot's gauges and, once a second, a row of the seconds ring."""
        w = self._w
        now = time.time()
        with w.update():
            w.set("window_ms", stats.window_ms)
            w.set("avg_batch_size", stats.avg_batch_size)
            w.set("dedup_rate", stats.dedup_rate)
            w.set("requests_per_second", stats.requests_per_second)
            w.set("cost_saved_usd", stats.cost_saved_usd)
            w.set("latency_ms_p50", stats.latency_ms_p50)
            w.set("latency_ms_p95", stats.latency_ms_p95)
            w.set("latency_ms_p99", stats.latency_ms_p99)
            w.set("queue_depth", stats.queue_depth)
            w.set("inflight_batches", inflight_batches)
            w.set("clients_connected", clients)
            w.set("updated_at_ns", time.time_ns())
            sec = int(now)
            if sec != self._second:
                base = self._second_base
                cur = {"total_requests": stats.total_requests,
                       "total_batches": stats.total_batches,
                       "duplicates": stats.duplicates, "errors": stats.errors}
                w.push_second_sample(
                    t_s=self._second,
                    requests=cur["total_requests"] - base["total_requests"],
                    batches=cur["total_batches"] - base["total_batches"],
                    duplicates=cur["duplicates"] - base["duplicates"],
                    errors=cur["errors"] - base["errors"],
                    latency_ms_p99=stats.latency_ms_p99,
                    queue_depth=stats.queue_depth,
                )
                self._second_base = cur
                self._second = sec

    def heartbeat(self) -> None:
        """Only move ``updated_at_ns`` (an idle engine is alive, not stalled)."""
        self._w.set("updated_at_ns", time.time_ns())

    def client(self, slot: int, **values: Any) -> None:
        """Set columns of the client table's row ``slot`` (pid, connected, requests, ...)."""
        self._w.set_row("clients", slot, **values)

    def client_left(self, slot: int) -> None:
        """Clear the client table's row ``slot``."""
        self._w.clear_row("clients", slot)

    def close(self) -> None:
        """Release the block and remove its segment."""
        self._w.release()
        self.segment.close()


__all__ = ["Publisher"]
