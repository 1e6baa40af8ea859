"""The perf modes end to end on tiny workloads with a fast backend: every outcome exactly once."""

from __future__ import annotations

import asyncio
import shutil

import pytest

import stratabatch
from stratabatch.perf.backend import CostModel, SimBackend, SyncSimBackend
from stratabatch.perf.harness import account
from stratabatch.perf.modes import Embedded, Settings, Unbatched
from stratabatch.perf.modes_engine import EngineMode, engine_command
from stratabatch.perf.mpqueue_server import MpQueuePeer
from stratabatch.perf.workload import WorkloadConfig, generate

FAST = Settings(model=CostModel(overhead_ms=2, per_item_ms=0.1, concurrency=2),
                window_ms=5, max_size=8, timeout_s=30)
TINY = WorkloadConfig(seed=2, clients=2, bursts=2, burst_size=60, burst_ms=20, gap_ms=50)


async def test_backend_keeps_its_concurrency_limit():
    backend = SimBackend(CostModel(overhead_ms=5, per_item_ms=0, concurrency=3))
    results = await asyncio.gather(*(backend([{"rid": i, "query": str(i)}]) for i in range(12)))
    assert backend.max_running == 3
    assert (backend.calls, backend.items) == (12, 12)
    assert [r[0]["answer_to"] for r in results] == list(range(12))
    assert len({r[0]["call"] for r in results}) == 12


def test_sync_backend_answers_each_item_with_its_request():
    backend = SyncSimBackend(CostModel(overhead_ms=1, per_item_ms=0))
    out = backend([{"rid": 4, "query": "a"}, {"rid": 9, "query": "b"}])
    assert [(o["answer_to"], o["query"], o["batch"]) for o in out] == [(4, "a", 2), (9, "b", 2)]
    assert out[0]["call"] == out[1]["call"]


@pytest.mark.parametrize("mode", [Unbatched(), Embedded("off"), Embedded("exact")],
                         ids=lambda m: m.name)
async def test_in_process_modes_answer_every_request_once(mode):
    w = generate(TINY)
    seen = []
    run = await mode.run(w, FAST, seen.append)
    r = account(w, run, FAST, mode.batch_size or FAST.max_size)
    assert sum(seen) == len(w)
    assert (r["lost"], r["duplicated"], r["errors"], r["mismatched_answers"]) == (0, 0, 0, 0)
    if mode.name == "stratabatch exact":
        assert r["wrong_merges"] == 0 and r["dups_caught"] > 0
    if mode.name == "unbatched":
        assert r["backend_calls"] == len(w)


async def test_mpqueue_peer_answers_every_request_once():
    w = generate(TINY)
    seen = []
    run = await MpQueuePeer().run(w, FAST, seen.append)
    r = account(w, run, FAST, FAST.max_size)
    assert (r["lost"], r["duplicated"], r["errors"], r["mismatched_answers"]) == (0, 0, 0, 0)
    assert r["wrong_merges"] == 0
    assert r["backend_items"] < len(w)  # exact twins in one batch were merged
    assert run.notes["server_items"] == r["backend_items"]
    assert sum(seen) == len(w)


def test_engine_mode_is_skipped_exactly_when_the_engine_is_missing():
    reason = EngineMode().unavailable()
    has_connect = callable(getattr(stratabatch, "connect", None))
    has_command = engine_command() is not None or shutil.which("stratabatch-engine")
    if has_connect and has_command:
        assert reason is None
    else:
        assert reason is not None
        assert ("connect" in reason) != has_connect or "stratabatch-engine" in reason


async def test_sweep_runs_both_loads_at_every_point():
    from stratabatch.perf.sweep import run_sweep

    bursts = generate(TINY)
    steady = generate(WorkloadConfig(seed=3, arrivals="poisson", rate_high=400, rate_low=40,
                                     half_period_ms=100, duration_s=0.2))
    ticks = []
    rows = await run_sweep(bursts, steady, FAST.model, [1.0, 5.0], [4, 8], 1,
                           lambda: ticks.append(1))
    assert len(ticks) == 8
    assert [(r["window_ms"], r["max_size"]) for r in rows] == [(1.0, 4), (5.0, 4), (1.0, 8),
                                                               (5.0, 8)]
    for r in rows:
        assert (r["lost"], r["duplicated"], r["stray"], r["mismatched_answers"]) == (0, 0, 0, 0)
        assert r["burst_throughput_rps"] > 0 and r["steady_backend_calls"] > 0
