"""Reuse wired into the core (prototype): later exact twins are answered from the cache."""

from __future__ import annotations

import asyncio

import pytest

from stratabatch import BatchProcessor


def counting_handler(calls):
    async def handler(reqs):
        calls.append([r["query"] for r in reqs])
        return [
            {"answer": r["query"].upper()} if "fail" not in r["query"] else ValueError("no")
            for r in reqs
        ]

    return handler


async def test_a_later_exact_twin_gets_the_stored_answer_object():
    calls = []
    async with BatchProcessor(counting_handler(calls), window_ms=1, reuse="exact") as batch:
        first = await batch.process({"query": "What is  RAY?"})
        again = await batch.process({"query": "what is ray?"})
        assert again is first
        assert calls == [["What is  RAY?"]]
        s = batch.get_stats()
        assert (s.reuse_hits, s.duplicates, s.unique_requests, s.reuse_entries) == (1, 1, 1, 1)
        assert s.total_requests == s.unique_requests + s.duplicates + s.dropped + s.queue_depth
        assert s.exact_merges == 0


async def test_reuse_off_calls_again():
    calls = []
    async with BatchProcessor(counting_handler(calls), window_ms=1) as batch:
        await batch.process({"query": "q"})
        await batch.process({"query": "q"})
    assert len(calls) == 2


async def test_errors_are_not_reused():
    calls = []
    async with BatchProcessor(counting_handler(calls), window_ms=1, reuse="exact") as batch:
        for _ in range(2):
            with pytest.raises(Exception, match="no"):
                await batch.process({"query": "please fail"})
        assert len(calls) == 2
        assert batch.get_stats().reuse_hits == 0


async def test_expired_answers_are_not_served():
    calls = []
    async with BatchProcessor(
        counting_handler(calls), window_ms=1, reuse="exact", reuse_ttl_s=0.05
    ) as batch:
        await batch.process({"query": "q"})
        await asyncio.sleep(0.1)
        await batch.process({"query": "q"})
    assert len(calls) == 2


async def test_scopes_do_not_share():
    calls = []
    async with BatchProcessor(
        counting_handler(calls), window_ms=1, reuse="exact", dedup_scope=("model",)
    ) as batch:
        a = await batch.process({"query": "q", "model": "a"})
        b = await batch.process({"query": "q", "model": "b"})
        a2 = await batch.process({"query": "q", "model": "a"})
    assert len(calls) == 2 and a2 is a and b is not a


async def test_streaming_says_reused_and_age():
    calls = []
    async with BatchProcessor(counting_handler(calls), window_ms=1, reuse="exact") as batch:
        await batch.process([{"query": "x"}])
        got = [c async for c in batch.process_streaming([{"query": "x"}, {"query": "y"}])]
    by = {c.request["query"]: c for c in got}
    assert by["x"].reused_age_s is not None and by["x"].reused_age_s >= 0
    assert by["x"].merged_into == -1 and by["x"].similarity == 1.0
    assert by["y"].reused_age_s is None and by["y"].merged_into is None


async def test_run_time_threshold_change_drops_the_cache():
    calls = []
    async with BatchProcessor(counting_handler(calls), window_ms=1, reuse="exact") as batch:
        await batch.process({"query": "q"})
        batch.dedup_threshold = 0.9
        assert batch.get_stats().reuse_entries == 0
        await batch.process({"query": "q"})
    assert len(calls) == 2
