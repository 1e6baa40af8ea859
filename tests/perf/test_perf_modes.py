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

FAST = Settings(
    model=CostModel(overhead_ms=2, per_item_ms=0.1, concurrency=2),
    window_ms=5,
    max_size=8,
    timeout_s=30,
)
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


@pytest.mark.parametrize(
    "mode", [Unbatched(), Embedded("off"), Embedded("exact")], ids=lambda m: m.name
)
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
    steady = generate(
        WorkloadConfig(
            seed=3,
            arrivals="poisson",
            rate_high=400,
            rate_low=40,
            half_period_ms=100,
            duration_s=0.2,
        )
    )
    ticks = []
    rows = await run_sweep(
        bursts, steady, FAST.model, [1.0, 5.0], [4, 8], 1, lambda: ticks.append(1)
    )
    assert len(ticks) == 8
    assert [(r["window_ms"], r["max_size"]) for r in rows] == [
        (1.0, 4),
        (5.0, 4),
        (1.0, 8),
        (5.0, 8),
    ]
    for r in rows:
        assert (r["lost"], r["duplicated"], r["stray"], r["mismatched_answers"]) == (0, 0, 0, 0)
        assert r["burst_throughput_rps"] > 0 and r["steady_backend_calls"] > 0


class _FakeClient:
    """Stands in for ``connect()``'s client: answers through a local simulated backend."""

    def __init__(self) -> None:
        self.backend = SimBackend(FAST.model)
        self.closed = False

    async def process(self, request, *, timeout=None, priority=0):
        return (await self.backend([request]))[0]

    async def close(self) -> None:
        self.closed = True


def _fake_engine(tmp_path, body: str):
    import sys

    script = tmp_path / "fake-engine"
    script.write_text(f"#!{sys.executable}\n{body}")
    script.chmod(0o755)
    return str(script)


READY_THEN_WAIT = """
import signal, sys, time
signal.signal(signal.SIGINT, lambda *a: sys.exit(0))
name = sys.argv[sys.argv.index("--name") + 1]
print("stratabatch-engine ready name=%s pid=0 socket=/nowhere" % name, flush=True)
time.sleep(60)
sys.exit(3)
"""


async def test_engine_adapter_runs_clients_and_stops_the_engine(monkeypatch, tmp_path):
    """The adapter's plumbing (start, ready line, client processes, SIGINT) with stand-ins for
    the engine command and ``connect``: the real ones replace them without a code change."""
    from stratabatch.perf import modes_engine

    async def connect(name):  # awaitable, as the async client's connect may be
        return _FakeClient()

    monkeypatch.setattr(stratabatch, "connect", connect, raising=False)
    monkeypatch.setattr(
        modes_engine, "engine_command", lambda: _fake_engine(tmp_path, READY_THEN_WAIT)
    )
    mode = EngineMode("exact")
    assert mode.unavailable() is None
    w = generate(TINY)
    seen = []
    run = await mode.run(w, FAST, seen.append)
    r = account(w, run, FAST, FAST.max_size)
    assert (r["lost"], r["duplicated"], r["errors"], r["mismatched_answers"]) == (0, 0, 0, 0)
    assert sum(seen) == len(w)
    assert run.notes["engine_exit"] == 0
    assert any("ready" in line for line in run.notes["engine_log"])


async def test_engine_adapter_reports_an_engine_that_dies_before_ready(monkeypatch, tmp_path):
    from stratabatch.perf import modes_engine

    monkeypatch.setattr(stratabatch, "connect", lambda name: _FakeClient(), raising=False)
    monkeypatch.setattr(
        modes_engine,
        "engine_command",
        lambda: _fake_engine(tmp_path, "print('no handler', flush=True)\nraise SystemExit(2)\n"),
    )
    with pytest.raises(RuntimeError, match="did not get ready.*no handler"):
        await EngineMode("exact").run(generate(TINY), FAST, lambda _k: None)
