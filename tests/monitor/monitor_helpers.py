"""Helpers of the monitor tests: a counters block written by the test, as the engine would."""

from __future__ import annotations

from typing import Any

from stratabatch.ipc.counters import CountersWriter
from tests.conftest import run_name

T0_NS = 1_780_000_000_000_000_000
"""A fixed engine start (unix ns) for tests that show an uptime."""


def engine_name() -> str:
    """A name no other test (or another worktree's run) uses at the same time."""
    return run_name("mon")


def publish(w: CountersWriter, **over: Any) -> dict[str, Any]:
    """Write a full set of Stats fields (known values, overridable) and return them."""
    hist = [0] * 101
    hist[93], hist[95], hist[97], hist[100] = 3, 5, 2, 40
    stats: dict[str, Any] = {
        "total_requests": 123_456,
        "total_batches": 4_321,
        "avg_batch_size": 17.5,
        "unique_requests": 70_000,
        "duplicates": 53_000,
        "dedup_rate": 0.4293,
        "inflight_coalesced": 1_234,
        "requests_per_second": 812.4,
        "cost_saved_usd": 106.0,
        "latency_ms_p50": 12.34,
        "latency_ms_p95": 45.6,
        "latency_ms_p99": 78.9,
        "queue_depth": 17,
        "window_ms": 48.5,
        "errors": 7,
        "timeouts": 3,
        "rejected": 2,
        "exact_merges": 40_000,
        "near_merges": 13_000,
        "merge_similarity_histogram": tuple(hist),
        "dropped": 456,
        "batch_size_max": 32,
        "adaptive_a_ms": 4.2,
        "adaptive_b_ms": 0.85,
        "reuse_hits": 0,
        "reuse_near_hits": 0,
        "reuse_similarity_histogram": (0,) * 101,
        "reuse_entries": 0,
        "reuse_bytes": 0,
    }
    stats.update(over)
    with w.update():
        w.write_stats(stats)
        w.set("inflight_batches", 2)
        w.set("clients_connected", 2)
        w.set("dedup_threshold", 0.93)
        w.observe_many("batch_size", [32] * 40 + [16] * 10 + [3])
    return stats
