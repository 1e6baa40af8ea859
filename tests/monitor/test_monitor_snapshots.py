"""SVG snapshots of the dashboard at 80x24 and 160x48 (textual pinned exactly in the test extra).

The block holds fixed values, the clock is the test's (two refreshes 10 s apart, so the rates
are known) and the engine pid is written as 4242, so the screen is the same on every run. The
handler's name is as long as a real one (``examples.fastapi_app:answer_batch``): at 80 columns
it is cut and the state still shows. Update after a deliberate change of the screen with
``pytest tests/monitor/test_monitor_snapshots.py --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from monitor_helpers import T0_NS, engine_name, publish

from stratabatch.ipc.counters import CountersWriter
from stratabatch.monitor.app import MonitorApp

NOW = T0_NS + 754_000_000_000


CLIENTS = ((40_017, 52_113, 3), (40_034, 49_870, 2), (40_051, 21_473, 2))
"""(pid, requests, errors) of each client at the second refresh."""
GROWTH = (3_012, 2_970, 2_142)
"""Requests of each client in the 10 s between the two refreshes (812.4 req/s in all)."""
TOTALS = {"total_requests": 123_456, "total_batches": 4_321, "errors": 7}
BEFORE = {"total_requests": 123_456 - sum(GROWTH), "total_batches": 4_321 - 464, "errors": 5}


@pytest.fixture
def demo_block():
    name = engine_name()
    w = CountersWriter.create(
        name,
        info={
            "name": "demo",
            "handler": "examples.fastapi_app:answer_batch",
            "max_size": 32,
            "dedup_strategy": "hybrid",
            "adaptive": True,
            "min_window_ms": 20.0,
            "max_window_ms": 200.0,
            "target_latency_ms": 50.0,
            "max_inflight_batches": 4,
        },
        max_clients=16,
        history_s=300,
        started_at_ns=T0_NS,
    )
    try:
        hist = [0] * 101
        for i, c in zip(range(92, 101), (9, 30, 41, 33, 20, 12, 6, 2, 1), strict=True):
            hist[i] = c
        hist[100] += 40_000
        publish(w, merge_similarity_histogram=tuple(hist), **BEFORE)
        w.set("engine_pid", 4242)
        w.set("updated_at_ns", NOW)
        w.set("dedup_threshold", 0.92)
        w.observe_many(
            "batch_size", [1] * 5 + [4] * 12 + [12] * 30 + [16] * 55 + [24] * 90 + [32] * 140
        )
        t0 = NOW // 1_000_000_000 - 300
        for k in range(300):
            w.push_second_sample(
                t_s=t0 + k,
                requests=int(800 + 400 * math.sin(k / 15.0)),
                latency_ms_p99=60.0 + 25.0 * math.sin(k / 9.0) + (k % 7),
            )
        for slot, ((pid, req, err), grew) in enumerate(zip(CLIENTS, GROWTH, strict=True)):
            w.set_row(
                "clients",
                slot,
                pid=pid,
                connected=1,
                requests=req - grew,
                errors=err,
                connected_at_ns=NOW - (slot + 1) * 61_000_000_000,
            )
        yield name, w
    finally:
        w.close()


def _app(demo: tuple[str, CountersWriter]) -> tuple[MonitorApp, Callable[[Any], Awaitable[None]]]:
    """The app, first refreshed 10 s before ``NOW``; and what runs before the snapshot is
    taken: the clients' traffic of those 10 s, then a refresh at ``NOW``."""
    name, w = demo
    now = [NOW - 10_000_000_000]
    app = MonitorApp(name, poll=False, chart_period=0.0, clock=lambda: now[0])

    async def ten_seconds_later(pilot: Any) -> None:
        with w.update():
            for key, value in TOTALS.items():
                w.set(key, value)
        for slot, (_pid, req, _err) in enumerate(CLIENTS):
            w.set_row("clients", slot, requests=req)
        now[0] = NOW
        app.poll_now()
        await pilot.pause()

    return app, ten_seconds_later


def test_dashboard_80x24(snap_compare, demo_block):
    app, run_before = _app(demo_block)
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_dashboard_160x48(snap_compare, demo_block):
    app, run_before = _app(demo_block)
    assert snap_compare(app, terminal_size=(160, 48), run_before=run_before)
