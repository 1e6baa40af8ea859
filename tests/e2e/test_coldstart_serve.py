"""A first start with the default ``cold_start="serve"``: it serves at once with exact dedup while
its near-dedup kernels compile in a separate process, then turns near dedup on by itself.

Each test gives numba an empty ``NUMBA_CACHE_DIR`` of its own. The two that wait for the
compile pay the default strategy's first compile (20-60 s of CPU on two cores).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import stratabatch

from .conftest import CHILD_PYTHONPATH, ROOT

TWINS = [{"query": "where is my order"}, {"query": "where is my order"}]
NEAR = [{"query": "where is my order"}, {"query": "where is my order please"}]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_first_engine_start_serves_at_once_then_turns_near_dedup_on(
    start_engine, engine_name, tmp_path
):
    cache = tmp_path / "numba"
    eng = start_engine(env={"NUMBA_CACHE_DIR": str(cache)}, name=engine_name)
    client = stratabatch.connect(eng.name, sync=True, timeout=30)
    try:
        # served before the near kernels are compiled: identical requests merge, near ones not
        assert [r["n"] for r in client.process(TWINS, timeout=60)] == [1, 1]
        log = eng.log()
        assert "near-duplicate dedup is on" not in log, log
        assert [r["n"] for r in client.process(NEAR, timeout=60)] == [2, 2]
        lines = log.splitlines()
        begin = [i for i, line in enumerate(lines) if "in a separate process (pid" in line]
        ready = [i for i, line in enumerate(lines) if "INFO ready: " in line]
        assert begin and ready and begin[0] < ready[0], log
        child = int(re.search(r"in a separate process \(pid (\d+)\)", lines[begin[0]])[1])
        assert "until they load, only identical requests merge" in lines[begin[0]]

        _wait_for(lambda: "near-duplicate dedup is on" in eng.log(), 480, "the background compile")
        assert not _alive(child)
        assert [r["n"] for r in client.process(NEAR, timeout=60)] == [1, 1]
    finally:
        client.close()
    assert eng.stop() == 0, eng.log()

    # the next start loads everything from the cache before "ready", and says nothing of it
    eng = start_engine(env={"NUMBA_CACHE_DIR": str(cache)}, name=engine_name)
    client = stratabatch.connect(eng.name, sync=True, timeout=30)
    try:
        assert [r["n"] for r in client.process(NEAR, timeout=60)] == [1, 1]
    finally:
        client.close()
    assert eng.stop() == 0, eng.log()
    assert "compil" not in eng.log(), eng.log()


EMBEDDED = """
import asyncio, logging, sys, time
logging.basicConfig(format="%(name)s %(levelname)s %(message)s", stream=sys.stdout)
from stratabatch import BatchProcessor
from tests.warm_probe import compiled, rehearse

LOUD = True

async def handler(requests):
    if LOUD:
        print("HANDLER", len(requests), flush=True)
    return [r.get("query") for r in requests]

async def main(wait_for_compile):
    global LOUD
    batch = BatchProcessor(handler, window_ms=5)
    await batch.warm_up()
    print("IN FORCE", batch.dedup_strategy_in_force, flush=True)
    await batch.process([{"query": "where is my order"}, {"query": "where is my order"}])
    await batch.process([{"query": "hi there"}, {"query": "hi there please"}])
    if wait_for_compile:
        deadline = time.monotonic() + 480  # (a first compile: 300+ s at a load of 6)
        while batch.dedup_strategy_in_force == "exact" and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        print("IN FORCE", batch.dedup_strategy_in_force, flush=True)
        await batch.process([{"query": "hi there"}, {"query": "hi there please"}])
        # nothing compiles here after near dedup turned on: the child's kernels loaded, and
        # tests/warm_probe.py's varied traffic reaches no new version of any kernel
        LOUD = False
        before = compiled()
        await rehearse(batch)
        after = compiled()
        print("COMPILED AFTER", {k: v for k, v in after.items() if v != before.get(k, 0)})
    await batch.close()
    print("CLOSED", flush=True)

asyncio.run(main(sys.argv[1] == "wait"))
"""


def _embedded(tmp_path: Path, how: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", EMBEDDED, how],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PYTHONPATH": CHILD_PYTHONPATH,
            "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
        },
        cwd=ROOT,
        timeout=570,  # (under the suite's 600 s a test)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_an_embedded_first_warm_up_returns_at_once_then_near_dedup_turns_on(tmp_path):
    out = _embedded(tmp_path, "wait")
    lines = [line for line in out.splitlines() if not line.startswith("stratabatch.warm")]
    assert lines == [
        "IN FORCE exact",
        "HANDLER 1",  # identical requests merge meanwhile
        "HANDLER 2",  # near ones do not
        "IN FORCE embedding",
        "HANDLER 1",  # near dedup, once compiled
        "COMPILED AFTER {}",
        "CLOSED",
    ], out
    assert "compiling kernels for strategy=embedding in a separate process (pid" in out
    assert "compiled kernels for strategy=embedding in " in out
    assert "near-duplicate dedup is on" in out


def test_closing_during_the_background_compile_stops_its_process(tmp_path):
    out = _embedded(tmp_path, "close")
    assert out.splitlines()[-1] == "CLOSED", out
    assert "near-duplicate dedup is on" not in out, out
    child = int(re.search(r"in a separate process \(pid (\d+)\)", out)[1])
    _wait_for(lambda: not _alive(child), 10, f"the compile process {child} to exit")
