"""The window_ms x max_size sweep of the default strategy, on two loads.

Under a burst that outruns the backend, batches close on ``max_size`` because requests pile up
while every call slot is busy, so the window hardly matters there and the burst shows
*capacity*: how fast a setting drains a spike. Under a steady load within capacity, batches close
on the window, so the window shows in *latency* and in the number of calls. Each point therefore
runs both: the run's bursts (fewer of them) for throughput, and a square-wave Poisson load for
latency and calls. Repeats go round-robin; each figure is from the median run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .backend import CostModel
from .harness import account, median_run
from .modes import Embedded, Settings
from .workload import Workload

BURST_KEYS = (
    "throughput_rps",
    "latency_ms_p50",
    "latency_ms_p99",
    "backend_calls",
    "backend_items",
    "vs_best_schedule",
)
STEADY_KEYS = (
    "throughput_rps",
    "latency_ms_p50",
    "latency_ms_p95",
    "latency_ms_p99",
    "backend_calls",
    "backend_items",
    "avg_call_size",
)
FAILURES = ("lost", "duplicated", "stray", "mismatched_answers", "wrong_merges")


async def run_sweep(
    bursts: Workload,
    steady: Workload,
    model: CostModel,
    windows: Sequence[float],
    sizes: Sequence[int],
    repeats: int,
    advance: Callable[[], None],
) -> list[dict[str, Any]]:
    """Run the embedding strategy at every (window_ms, max_size) on both loads.

    Args:
        bursts: the spike load (throughput).
        steady: the load within capacity (latency and calls).
        model: the backend's cost model.
        windows: window_ms values.
        sizes: max_size values.
        repeats: runs per point and load.
        advance: called after each run.

    Returns:
        One row per point: ``window_ms``, ``max_size``, ``burst_<figure>`` and
        ``steady_<figure>`` for the figures in ``BURST_KEYS`` / ``STEADY_KEYS``, and the failure
        counts (lost, duplicated, stray, mismatched answers, wrong merges) summed over all runs.
    """
    points = [(w, m) for m in sizes for w in windows]
    runs: dict[tuple[float, int, str], list[dict[str, Any]]] = {}
    for _ in range(max(1, repeats)):
        for window, size in points:
            settings = Settings(model=model, window_ms=window, max_size=size)
            for label, load in (("burst", bursts), ("steady", steady)):
                mode = Embedded("embedding", max_size=size, window_ms=window)
                run = await mode.run(load, settings, lambda _k: None)
                runs.setdefault((window, size, label), []).append(
                    account(load, run, settings, size)
                )
                advance()
    rows = []
    for window, size in points:
        b = median_run(runs[(window, size, "burst")])
        s = median_run(runs[(window, size, "steady")])
        row: dict[str, Any] = {"window_ms": window, "max_size": size, "repeats": b["repeats"]}
        row.update({f"burst_{k}": b[k] for k in BURST_KEYS})
        row.update({f"steady_{k}": s[k] for k in STEADY_KEYS})
        row["burst_throughput_rps_runs"] = b["throughput_rps_runs"]
        row["steady_latency_ms_p99_runs"] = s["latency_ms_p99_runs"]
        for k in FAILURES:
            row[k] = sum(r[k] for label in ("burst", "steady") for r in runs[(window, size, label)])
        rows.append(row)
    return rows
