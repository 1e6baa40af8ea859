"""perf/bench_ray.py's --quick path end to end on a local 3-node Ray cluster, and
stratabatch-perf's Ray Serve modes on a tiny workload: every request gets exactly one outcome and
every answer is right. No figure is asserted (speed is the benchmark's business, not a test's).
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest

from stratabatch.perf.backend import CostModel
from stratabatch.perf.benchutil import ROOT
from stratabatch.perf.harness import account
from stratabatch.perf.modes import Settings
from stratabatch.perf.modes_ray import RayServeMode, StratabatchServeMode
from stratabatch.perf.workload import WorkloadConfig, generate

with warnings.catch_warnings():
    # Ray Serve's pydantic models use keywords pydantic 2 deprecates (warned once, at import)
    warnings.simplefilter("ignore", DeprecationWarning)
    import ray.serve  # noqa: F401

SYSTEMS = (
    "(a) stratabatch, twins, coalescing",
    "(b) Serve @serve.batch",
    "(c) stratabatch, Serve's router",
    "(d) stratabatch-engine, 1 host",
)


@pytest.mark.timeout(300)
def test_quick_run_answers_every_request_once_and_right(tmp_path):
    out = tmp_path / "bench_ray.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "perf" / "bench_ray.py"),
            "--quick",
            "--systems",
            "a,b,c,d",  # ((e), (a) through plain handles, is the path tests/ray takes)
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["failed"] == "" and doc["left_running"] == [] and doc["skipped"] == {}
    assert doc["processes_started"] > 10  # the cluster's processes were seen (and are gone)
    assert sorted(doc["systems"]) == sorted(SYSTEMS)
    n = doc["workload"]["truth"]["requests"]
    for name, r in doc["systems"].items():
        assert r["requests"] == r["outcomes"] == n, name
        bad = (r["lost"], r["duplicated"], r["stray"], r["errors"], r["wrong"])
        assert bad == (0, 0, 0, 0, 0), (name, r["error_kinds"])
        assert 0 < r["backend_items"] <= n and r["cpu_us_per_request"] > 0, name
        parts = r["cpu_breakdown"].values()
        assert sum(p["total"] for p in parts) == pytest.approx(r["cpu_us_per_request"], rel=0.01)
        assert all(p["total"] == pytest.approx(p["idle"] + p["traffic"], abs=0.2) for p in parts)
        assert sum(r["missed_twins"].values()) <= n, name
    # (a)'s drivers counted the Ray calls their coalescing handles sent
    assert 0 < doc["systems"][SYSTEMS[0]]["ray_calls"] <= n
    assert 0 < doc["floors_items_per_request"]["intent"] <= 1
    # (b) never merges; the stratabatch systems do (the workload has twins in every burst)
    assert doc["systems"]["(b) Serve @serve.batch"]["backend_items"] == n
    for name in (SYSTEMS[0], SYSTEMS[2], SYSTEMS[3]):
        assert doc["systems"][name]["merges"] > 0, name
    assert "(a) backend items vs (b)" in {t["target"] for t in doc["targets"]}


FAST = Settings(
    model=CostModel(overhead_ms=2, per_item_ms=0.1, concurrency=2),
    window_ms=5,
    max_size=8,
    timeout_s=60,
)
TINY = WorkloadConfig(seed=2, clients=2, bursts=2, burst_size=40, burst_ms=20, gap_ms=50)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", [RayServeMode(), StratabatchServeMode()], ids=lambda m: m.name)
async def test_perf_ray_modes_answer_every_request_once(mode):
    assert mode.unavailable() is None  # the test extra installs ray
    w = generate(TINY)
    seen: list[int] = []
    run = await mode.run(w, FAST, seen.append)
    r = account(w, run, FAST, mode.batch_size)
    assert sum(seen) == len(w)
    assert (r["lost"], r["duplicated"], r["errors"], r["mismatched_answers"]) == (0, 0, 0, 0)
    assert r["wrong_merges"] == 0 and run.cpu_s is not None and run.cpu_s > 0
    if isinstance(mode, StratabatchServeMode):
        assert r["merges"] > 0
    else:
        assert r["backend_items"] == len(w)
