"""Every example of the seed document, with the import changed and a handler supplied.

Each test follows one section of ``shared/seed/batch-processing.txt`` in our own words and
checks what the section promises a user. Where the seed's comments promise more than the
default embedder can give (paraphrases merged at 0.98), the test states what really happens.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from stratabatch import BatchProcessor, BatchTimeoutError, Completed


async def echo_handler(requests):
    """Stands in for the expensive backend: one answer per request, in order."""
    return [f"answer to {r['query']!r}" for r in requests]


class Counting:
    def __init__(self, fn=echo_handler):
        self.fn = fn
        self.items = []

    async def __call__(self, requests):
        self.items.extend(r["query"] for r in requests)
        return await self.fn(requests)


async def test_quick_start():
    batch = BatchProcessor(echo_handler, window_ms=50, max_size=32, dedup_threshold=0.98)
    results = await batch.process(
        [
            {"query": "What's the weather?"},
            {"query": "How's the weather today?"},
            {"query": "Show me my invoice"},
        ]
    )
    assert results[0] == 'answer to "What\'s the weather?"'
    assert results[2] == "answer to 'Show me my invoice'"
    # The seed calls the second one "Similar - deduped!". That is a paraphrase: no hashed
    # embedder merges it at 0.98 (see the README's embedder table), so it gets its own answer.
    assert results[1] == 'answer to "How\'s the weather today?"'
    await batch.close()


def test_configuration_block_builds_and_reads_back():
    batch = BatchProcessor(
        window_ms=50,
        max_size=32,
        min_size=2,
        enable_dedup=True,
        dedup_threshold=0.98,
        dedup_strategy="embedding",
        max_wait_ms=100,
        processing_timeout=30,
    )
    assert (batch.window_ms, batch.max_size, batch.min_size) == (50, 32, 2)
    assert (batch.enable_dedup, batch.dedup_threshold, batch.dedup_strategy) == (
        True,
        0.98,
        "embedding",
    )
    assert (batch.max_wait_ms, batch.processing_timeout) == (100, 30)


def test_how_it_works_request_collection_timeline(run_virtual):
    seen = []

    async def handler(reqs):
        seen.append((asyncio.get_running_loop().time(), [r["query"] for r in reqs]))
        return await echo_handler(reqs)

    async def main():
        batch = BatchProcessor(handler, window_ms=50)
        await batch.warm_up()
        t0 = asyncio.get_running_loop().time()

        async def arrive(ms, q):
            await asyncio.sleep(ms / 1000)
            return await batch.process({"query": q})

        await asyncio.gather(
            arrive(0, "Request 1"), arrive(10, "Request 2"), arrive(25, "Request 3")
        )
        await batch.close()
        return t0

    t0 = run_virtual(main)
    assert len(seen) == 1
    when, items = seen[0]
    assert when - t0 == pytest.approx(0.050)  # window closes at 50 ms: one batch of 3
    assert items == ["Request 1", "Request 2", "Request 3"]


async def test_deduplication_and_result_distribution():
    rec = Counting()
    batch = BatchProcessor(rec, window_ms=20)
    requests = [
        {"query": "What's the weather?"},
        {"query": "what's the weather ?"},  # a surface variant the default embedder merges
        {"query": "Show me my invoice"},
        {"query": "WHAT'S THE WEATHER?"},
    ]
    results = await batch.process(requests)
    assert rec.items == ["What's the weather?", "Show me my invoice"]  # process 2 ...
    assert results == [results[0], results[0], results[2], results[0]]  # ... return 4
    assert results[0] != results[2]
    await batch.close()


async def test_embedding_based_strategy_merges_at_the_threshold():
    rec = Counting()
    batch = BatchProcessor(rec, dedup_strategy="embedding", dedup_threshold=0.98, window_ms=20)
    out = await batch.process(
        [{"query": "Track my order"}, {"query": "track my order!"}, {"query": "Cancel my order"}]
    )
    assert out[0] == out[1] != out[2]
    assert len(rec.items) == 2
    await batch.close()


async def test_exact_match_strategy():
    rec = Counting()
    batch = BatchProcessor(rec, dedup_strategy="exact", window_ms=20)
    out = await batch.process(
        [
            {"query": "Reset my password"},
            {"query": "reset  my PASSWORD"},
            {"query": "Reset my password!"},
        ]
    )
    assert out[0] == out[1] != out[2]  # equal after normalization only; "!" differs
    assert rec.items == ["Reset my password", "Reset my password!"]
    await batch.close()


@pytest.mark.parametrize("window_ms, max_size", [(20, 8), (100, 64), (50, 32)])
async def test_batch_size_tuning_presets(window_ms, max_size):
    sizes = []

    async def handler(reqs):
        sizes.append(len(reqs))
        return await echo_handler(reqs)

    batch = BatchProcessor(handler, window_ms=window_ms, max_size=max_size, dedup_strategy="exact")
    await asyncio.gather(*(batch.process({"query": f"q{i}"}) for i in range(100)))
    await batch.close()
    assert sum(sizes) == 100 and max(sizes) == max_size


async def test_monitoring_fields():
    batch = BatchProcessor(echo_handler, window_ms=10, cost_per_request_usd=0.002)
    await batch.process([{"query": "same"}, {"query": "same"}, {"query": "other"}])
    stats = batch.get_stats()
    lines = [
        f"Requests processed: {stats.total_requests}",
        f"Batches created: {stats.total_batches}",
        f"Avg batch size: {stats.avg_batch_size}",
        f"Dedup rate: {stats.dedup_rate:.2%}",
        f"Throughput: {stats.requests_per_second}",
        f"Cost savings: ${stats.cost_saved_usd}",
    ]
    assert lines[0] == "Requests processed: 3"
    assert lines[1] == "Batches created: 1"
    assert lines[2] == "Avg batch size: 2.0"
    assert lines[3] == "Dedup rate: 33.33%"
    assert stats.requests_per_second > 0
    assert stats.cost_saved_usd == pytest.approx(0.002)
    await batch.close()


async def test_use_case_high_traffic_api_and_parallel_processing():
    batch = BatchProcessor(echo_handler, window_ms=10)

    async def query(request):  # the seed's @app.post("/api/query") body
        return await batch.process(request)

    async def process_users(users):
        requests = [{"query": u.query} for u in users]
        return await batch.process(requests)

    one, many = await asyncio.gather(
        query({"query": "status"}),
        process_users([SimpleNamespace(query="a"), SimpleNamespace(query="b")]),
    )
    assert one == "answer to 'status'" and many == ["answer to 'a'", "answer to 'b'"]
    await batch.close()


async def test_cost_optimization_and_runtime_threshold_tuning():
    batch = BatchProcessor(echo_handler, enable_dedup=True, dedup_threshold=0.95, window_ms=10)
    await batch.process([{"query": "hello there"}, {"query": "Hello there"}])
    stats = batch.get_stats()
    if stats.dedup_rate < 0.3:  # the seed's alert: lower the threshold at run time
        batch.dedup_threshold = 0.95
    assert stats.dedup_rate == pytest.approx(0.5)
    batch.dedup_threshold = 0.9
    assert batch.dedup_threshold == 0.9
    await batch.close()


def test_window_presets_and_adaptive_settings_build():
    assert BatchProcessor(window_ms=100).window_ms == 100  # bursty traffic
    assert BatchProcessor(window_ms=20).window_ms == 20  # steady traffic
    b = BatchProcessor(adaptive=True, target_latency_ms=50, min_window_ms=20, max_window_ms=200)
    assert b.adaptive and b.get_stats().window_ms >= 20


async def test_handle_timeouts_gracefully_with_a_fallback():
    async def slow_backend(reqs):
        await asyncio.sleep(5)
        return ["slow"] * len(reqs)

    async def process(r):  # the individual fallback path
        return f"fallback for {r['query']}"

    batch = BatchProcessor(slow_backend, window_ms=5)
    requests = [{"query": "a"}, {"query": "b"}]
    try:
        results = await batch.process(requests, timeout=0.1)
    except BatchTimeoutError:
        results = [await process(r) for r in requests]
    assert results == ["fallback for a", "fallback for b"]


async def test_priority_batching():
    order = []

    async def handler(reqs):
        order.extend(r["query"] for r in reqs)
        await asyncio.sleep(0.05)
        return await echo_handler(reqs)

    batch = BatchProcessor(
        handler,
        enable_priorities=True,
        max_size=1,
        window_ms=1,
        max_inflight_batches=1,
        dedup_strategy="exact",
    )
    blocker = asyncio.ensure_future(batch.process({"query": "blocker"}))
    await asyncio.sleep(0.02)
    low = asyncio.ensure_future(batch.process({"query": "low"}))
    await asyncio.sleep(0)
    high = batch.process({"query": "high"}, priority=10)  # high priority processed first
    await asyncio.gather(blocker, low, high)
    assert order == ["blocker", "high", "low"]
    await batch.close()


async def test_partial_results_streaming():
    async def handler(reqs):
        await asyncio.sleep(0.05 * len(reqs[0]["query"]))
        return await echo_handler(reqs)

    batch = BatchProcessor(handler, max_size=1, window_ms=1, dedup_strategy="exact")
    requests = [{"query": "long"}, {"query": "s"}]

    async def stream():  # the seed's generator: yields each result as it completes
        async for result in batch.process_streaming(requests):
            yield result

    got = [c async for c in stream()]
    assert all(isinstance(c, Completed) for c in got)
    assert [c.index for c in got] == [1, 0]
    assert got[0].result == "answer to 's'"
    await batch.close()


async def test_custom_deduplication():
    def custom_dedup(req1, req2):
        # Our logic: two requests about the same order id are the same work.
        return 1.0 if req1.get("order") == req2.get("order") else 0.0

    rec = Counting()
    batch = BatchProcessor(rec, dedup_function=custom_dedup, window_ms=10)
    out = await batch.process(
        [
            {"query": "where is order 7", "order": 7},
            {"query": "status of order 7?", "order": 7},
            {"query": "where is order 8", "order": 8},
        ]
    )
    assert out[0] == out[1] != out[2]
    assert rec.items == ["where is order 7", "where is order 8"]
    await batch.close()
