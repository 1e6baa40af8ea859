"""The engine's counters block: what ``stratabatch-monitor`` reads, written from the core's stats.

One :class:`Publisher` per engine owns the counters segment ``stratabatch-UID-NAME-counters``
and is its only writer. The engine calls :meth:`Publisher.batch` for every handler call,
:meth:`Publisher.totals` after every loop pass that changed something (cheap: copies of
integer counters), and :meth:`Publisher.tick` from a 10 Hz timer (percentiles, gauges, the
per-second sample ring, the client table and the ``updated_at_ns`` heartbeat).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from stratabatch.ipc.counters import CountersWriter

from .stats import Stats, StatsRecorder

_COUNTERS = (
    "total_requests",
    "total_batches",
    "unique_requests",
    "duplicates",
    "inflight_coalesced",
    "errors",
    "timeouts",
    "rejected",
    "exact_merges",
    "near_merges",
    "dropped",
    "batch_size_max",
)
_INFO_OPTIONS = (
    "window_ms",
    "max_size",
    "dedup_strategy",
    "adaptive",
    "target_latency_ms",
    "min_window_ms",
    "max_window_ms",
    "max_inflight_batches",
    "max_queue",
    "cost_per_request_usd",
    "reuse",
    "reuse_ttl_s",
    "reuse_max_entries",
    "reuse_max_bytes",
)


def engine_info(name: str, handler: Any, config: Any) -> dict[str, Any]:
    """The engine's identity and key options, as the counters block's ``info`` map."""
    mod = getattr(handler, "__module__", None) or type(handler).__module__
    qual = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    info: dict[str, Any] = {"name": name, "handler": f"{mod}:{qual}"[:120]}
    for opt in _INFO_OPTIONS:
        info[opt] = getattr(config, opt)
    return info


class Publisher:
    """Writes one engine's stats into its counters segment.

    Args:
        engine_name: The engine's name (the segment is named after it).
        max_clients: Rows of the per-client table.
        info: The engine's identity and options (see :func:`engine_info`).
    """

    def __init__(
        self, engine_name: str, max_clients: int, info: dict[str, Any] | None = None
    ) -> None:
        self._started_ns = time.time_ns()
        self._w = CountersWriter.create(
            engine_name, info=info, max_clients=max_clients, started_at_ns=self._started_ns
        )
        self._sizes: list[int] = []
        self._second = int(time.time())
        self.threshold = 0.0

    def batch(self, size: int) -> None:
        """Record one handler call of ``size`` items."""
        self._sizes.append(size)

    def totals(
        self, rec: StatsRecorder, queue_depth: int, inflight_batches: int, clients: int
    ) -> None:
        """Copy the recorder's totals, the batch sizes and latencies seen since last time."""
        w = self._w
        sizes, self._sizes = self._sizes, []
        lat = rec.take_latencies()  # (seconds: every outcome since the last totals)
        with w.update():
            for name in _COUNTERS:
                w.set(name, getattr(rec, name))
            if sizes:
                w.observe_many("batch_size", np.asarray(sizes, np.float64))
            if lat:
                w.observe_many("latency_ms", np.asarray(lat, np.float64) * 1000.0)
            w.set_histogram("merge_similarity_histogram", rec.similarity_hist)
            w.set_histogram("reuse_similarity_histogram", rec.reuse_similarity_hist)
            w.set("queue_depth", queue_depth)
            w.set("inflight_batches", inflight_batches)
            w.set("clients_connected", clients)
            w.set("updated_at_ns", time.time_ns())

    def tick(self, stats: Stats, inflight_batches: int, clients: int) -> None:
        """Write a full snapshot and, once a second, a row of the seconds ring."""
        w = self._w
        with w.update():
            w.write_stats(stats)
            w.set("inflight_batches", inflight_batches)
            w.set("clients_connected", clients)
            w.set("dedup_threshold", self.threshold)
        sec = int(time.time())
        if sec != self._second:
            w.sample_second(self._second)
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
        self._w.close()


__all__ = ["Publisher"]
