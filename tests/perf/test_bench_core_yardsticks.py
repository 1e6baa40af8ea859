"""bench_core's exact yardstick keeps what it claims of the contract: exact twins (after
normalization) share one handler item and take no batch slot, a twin of running work waits for
its result, a caller that left is not sent, the queue count goes back to zero. No figure is
asserted."""

from __future__ import annotations

import asyncio

import pytest

from stratabatch.perf import bench_core


def _recording(calls: list[list[str]], delay: float = 0.0):
    async def handler(requests):
        calls.append([r.get("query", "?") for r in requests])
        if delay:
            await asyncio.sleep(delay)
        return [str(r.get("query", r)).upper() for r in requests]

    return handler


async def test_exact_yardstick_merges_normalized_twins_without_taking_slots():
    calls: list[list[str]] = []
    b = bench_core.ExactBatcher(_recording(calls), 50.0, 4)
    texts = ["a", "A", " a ", "b", "c", "Caf\u00e9", "CAF\u00c9", "d", "e"]
    got = await asyncio.gather(*(b.process({"query": t}) for t in texts))
    # four distinct keys fill the first batch (twins take no slot); "CAF\u00c9" waits for
    # the running "Caf\u00e9", and the window sends the rest
    assert calls == [["a", "b", "c", "Caf\u00e9"], ["d", "e"]]
    assert got[:3] == ["A", "A", "A"] and got[5] == got[6] == "CAF\u00c9"
    assert b.duplicates == 3 and b.waiting == 0 and not b.index
    await b.close()


async def test_exact_yardstick_twin_of_running_work_waits_for_its_result():
    calls: list[list[str]] = []
    b = bench_core.ExactBatcher(_recording(calls, delay=0.05), 1.0, 32)
    first = asyncio.ensure_future(b.process({"query": "x"}))
    while not calls:  # (the window closes and the handler starts)
        await asyncio.sleep(0.001)
    twin = asyncio.ensure_future(b.process({"query": "X"}))
    assert await first == "X" and await twin == "X"
    assert calls == [["x"]] and b.waiting == 0 and not b.index
    await b.close()


async def test_exact_yardstick_skips_a_caller_that_left_and_keys_requests_without_text():
    calls: list[list[str]] = []
    b = bench_core.ExactBatcher(_recording(calls), 20.0, 32)
    gone = asyncio.ensure_future(b.process({"query": "y"}))
    await asyncio.sleep(0)
    gone.cancel()
    kept = asyncio.gather(b.process({"query": "z"}), b.process({"n": 1}), b.process({"n": 1}))
    assert await kept == ["Z", "{'N': 1}", "{'N': 1}"]
    assert calls == [["z", "?"]] and b.waiting == 0 and not b.index and b.duplicates == 1
    await b.close()


async def test_exact_yardstick_refuses_a_request_over_the_size_limit_before_queueing():
    from stratabatch import RequestTooLargeError

    b = bench_core.ExactBatcher(bench_core.noop, 1.0, 4)
    b.max_bytes = 100
    with pytest.raises(RequestTooLargeError):
        await b.process({"query": "x" * 200})
    assert b.pending == [] and b.waiting == 0 and not b.index
    await b.close()


def test_bench_core_runs_a_subset_of_systems(tmp_path):
    out = tmp_path / "core.json"
    args = ["--requests", "300", "--repeats", "1", "--systems", "exact-yardstick,exact"]
    assert bench_core.main([*args, "--json", str(out)]) == 0
    import json

    data = json.loads(out.read_text())
    assert set(data["medians"]) == {bench_core.MINIMAL, bench_core.EXACTYARD, bench_core.EXACT}
    assert [t["target"] for t in data["targets"]] == ["exact: CPU/req vs the batcher"]
    with pytest.raises(SystemExit):
        bench_core.main(["--systems", "nope"])
