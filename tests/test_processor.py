"""The embedded BatchProcessor: batching, exact dedup, fan-out, errors, timeouts, backpressure."""

from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest

from stratabatch import (
    BatchProcessor,
    BatchTimeoutError,
    ConfigError,
    HandlerError,
    InvalidRequestError,
    QueueFullError,
    RequestTooLargeError,
)
from stratabatch.dedup import normalize_key


class Recorder:
    """An async handler that records each batch and answers with a function of each request."""

    def __init__(self, delay: float = 0.0, answer=None):
        self.batches: list[list[dict]] = []
        self.delay = delay
        self.answer = answer or (lambda r: f"answer:{r.get('query')}")
        self.running = 0
        self.max_running = 0

    async def __call__(self, reqs):
        self.batches.append(list(reqs))
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return [self.answer(r) for r in reqs]
        finally:
            self.running -= 1

    @property
    def items(self):
        return [r for b in self.batches for r in b]


def exact(handler, **kw):
    kw.setdefault("dedup_strategy", "exact")
    kw.setdefault("window_ms", 5)
    return BatchProcessor(handler, **kw)


def test_timeline_of_one_window_on_a_virtual_clock(run_virtual):
    rec = Recorder()
    seen_at = []

    async def handler(reqs):
        seen_at.append(asyncio.get_running_loop().time())
        return await rec(reqs)

    async def main():
        batch = BatchProcessor(handler, window_ms=50, max_size=32, dedup_strategy="exact")
        await batch.warm_up()
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        async def at(ms, q):
            await asyncio.sleep(ms / 1000)
            return await batch.process({"query": q})

        out = await asyncio.gather(at(0, "one"), at(10, "two"), at(25, "three"))
        await batch.close()
        return out, t0

    out, t0 = run_virtual(main)
    assert out == ["answer:one", "answer:two", "answer:three"]
    assert [len(b) for b in rec.batches] == [3]
    assert seen_at[0] - t0 == pytest.approx(0.050, abs=1e-6)


def test_max_size_closes_early_and_min_size_waits_for_max_wait(run_virtual):
    seen = []

    async def handler(reqs):
        seen.append((asyncio.get_running_loop().time(), len(reqs)))
        return [0] * len(reqs)

    async def main():
        batch = BatchProcessor(handler, window_ms=50, max_size=4, dedup_strategy="exact")
        await batch.warm_up()
        t0 = asyncio.get_running_loop().time()
        await asyncio.gather(*(batch.process({"query": str(i)}) for i in range(4)))
        small = BatchProcessor(
            handler, window_ms=50, min_size=2, max_wait_ms=80, dedup_strategy="exact"
        )
        await small.warm_up()
        t1 = asyncio.get_running_loop().time()
        await small.process({"query": "alone"})
        await batch.close()
        await small.close()
        return t0, t1

    t0, t1 = run_virtual(main)
    assert seen[0] == (pytest.approx(t0, abs=1e-6), 4)  # full batch: no wait for the window
    assert seen[1] == (pytest.approx(t1 + 0.080, abs=1e-6), 1)  # held past 50 ms, to 80 ms


@pytest.mark.parametrize("strategy", ["exact", "embedding", "hybrid"])
async def test_thousand_callers_with_duplicates_each_get_their_own_result(strategy):
    seed = random.randrange(2**32)
    print("seed", seed)
    rnd = random.Random(seed)
    distinct = [f"question number {i} about topic {i * 7 % 13}" for i in range(700)]
    texts = distinct + [rnd.choice(distinct) for _ in range(300)]
    # duplicates differ in surface only: case and whitespace
    texts = [t if i < 700 or rnd.random() < 0.5 else "  " + t.upper() for i, t in enumerate(texts)]
    rnd.shuffle(texts)
    rec = Recorder(answer=lambda r: "A:" + normalize_key(r["query"]))
    async with exact(rec, max_size=32, window_ms=2, dedup_strategy=strategy) as batch:
        results = await asyncio.gather(
            *(batch.process({"query": t, "n": i}) for i, t in enumerate(texts))
        )
        stats = batch.get_stats()
    assert results == ["A:" + normalize_key(t) for t in texts]
    keys = [normalize_key(r["query"]) for r in rec.items]
    assert len(keys) == len(set(keys)) == 700  # each normalized key reached the handler once
    assert all(len(b) <= 32 for b in rec.batches)
    assert stats.total_requests == 1000
    assert stats.unique_requests == 700 and stats.duplicates == 300
    assert stats.total_requests == stats.unique_requests + stats.duplicates
    assert stats.exact_merges == 300 and stats.near_merges == 0
    assert stats.merge_similarity_histogram[100] == 300
    assert stats.dedup_rate == pytest.approx(0.3)
    assert stats.queue_depth == 0 and stats.errors == 0


async def test_twin_of_inflight_work_coalesces_instead_of_running_again():
    rec = Recorder(delay=0.2)
    async with exact(rec) as batch:
        first = asyncio.ensure_future(batch.process({"query": "slow one"}))
        while not rec.batches:
            await asyncio.sleep(0.005)
        second = await batch.process({"query": "SLOW   one"})
        assert await first == second == "answer:slow one"
        stats = batch.get_stats()
    assert len(rec.items) == 1
    assert stats.inflight_coalesced == 1 and stats.duplicates == 1


def test_twin_coalesces_even_when_the_run_ends_before_the_next_look(run_virtual):
    # The twin arrives 50 ms into a 100 ms run, alone: its own window (300 ms) would end long
    # after the run. The end of the run groups it first, so it waits for that run's result
    # instead of being a second handler item 350 ms later.
    rec = Recorder(delay=0.1)

    async def main():
        batch = BatchProcessor(rec, window_ms=300, max_size=2, dedup_strategy="exact")
        await batch.warm_up()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        a = asyncio.ensure_future(batch.process({"query": "slow one"}))
        b = asyncio.ensure_future(batch.process({"query": "other"}))  # fills the batch: it runs
        await asyncio.sleep(0.05)
        twin = await batch.process({"query": "slow one"})
        answered_at = loop.time() - t0
        out = (await a, await b, twin)
        stats = batch.get_stats()
        await batch.close()
        return out, answered_at, stats

    out, answered_at, stats = run_virtual(main)
    assert out == ("answer:slow one", "answer:other", "answer:slow one")
    assert [r["query"] for r in rec.items] == ["slow one", "other"]
    assert answered_at == pytest.approx(0.1, abs=1e-6)
    assert stats.inflight_coalesced == 1 and stats.duplicates == 1


async def test_list_call_returns_results_in_caller_order_with_duplicates():
    rec = Recorder()
    async with exact(rec) as batch:
        out = await batch.process([{"query": "b"}, {"query": "a"}, {"query": "B"}])
    assert out == ["answer:b", "answer:a", "answer:b"]
    assert sorted(r["query"] for r in rec.items) == ["a", "b"]


async def test_per_item_error_fails_only_that_request():
    async def handler(reqs):
        return [ValueError("no such order") if r["query"] == "bad" else "ok" for r in reqs]

    async with exact(handler) as batch:
        out = await batch.process(
            [{"query": "good"}, {"query": "bad"}, {"query": "BAD"}], return_exceptions=True
        )
        assert out[0] == "ok"
        for err in out[1:]:
            assert isinstance(err, HandlerError)
            assert err.exc_type == "ValueError" and err.exc_message == "no such order"
        with pytest.raises(HandlerError, match="no such order"):
            await batch.process({"query": "bad"})
        assert await batch.process({"query": "fine"}) == "ok"


@pytest.mark.parametrize("kind", ["raise", "short", "not_a_list"])
async def test_whole_batch_handler_failures_are_clear_and_the_processor_goes_on(kind):
    calls = 0

    async def handler(reqs):
        nonlocal calls
        calls += 1
        if calls == 1:
            if kind == "raise":
                raise KeyError("backend down")
            if kind == "short":
                return ["x"] * (len(reqs) - 1)
            return "not a list"
        return ["ok"] * len(reqs)

    async with exact(handler) as batch:
        res = await batch.process([{"query": "a"}, {"query": "b"}], return_exceptions=True)
        assert all(isinstance(e, HandlerError) for e in res)
        msg = str(res[0])
        if kind == "raise":
            assert "KeyError" in msg and "backend down" in msg and res[0].exc_type == "KeyError"
        elif kind == "short":
            assert "returned 1 results for a batch of 2" in msg
        else:
            assert "must return a list of 2 results" in msg and "str" in msg
        assert await batch.process({"query": "c"}) == "ok"
        assert batch.get_stats().errors == 2


async def test_handler_hanging_past_processing_timeout_times_out_and_next_requests_run():
    async def handler(reqs):
        if any(r["query"] == "hang" for r in reqs):
            await asyncio.sleep(3600)
        return ["ok"] * len(reqs)

    async with exact(handler, processing_timeout=0.2) as batch:
        with pytest.raises(BatchTimeoutError, match="processing_timeout=0.2s"):
            await batch.process({"query": "hang"})
        assert await batch.process({"query": "next"}) == "ok"
        assert batch.get_stats().timeouts == 1


async def test_sync_handler_hanging_in_its_thread_does_not_stall_the_processor():
    release = threading.Event()

    def handler(reqs):
        if any(r["query"] == "hang" for r in reqs):
            release.wait(10)
        return ["ok"] * len(reqs)

    async with exact(handler, processing_timeout=0.2) as batch:
        with pytest.raises(BatchTimeoutError):
            await batch.process({"query": "hang"})
        assert await batch.process({"query": "next"}) == "ok"
    release.set()


async def test_sync_handler_runs_in_a_thread_while_the_loop_keeps_collecting():
    loop_thread = threading.get_ident()
    handler_threads = []

    def handler(reqs):
        handler_threads.append(threading.get_ident())
        time.sleep(0.15)
        return [r["query"] for r in reqs]

    async with exact(handler, window_ms=1, max_inflight_batches=2) as batch:
        first = asyncio.ensure_future(batch.process({"query": "first"}))
        await asyncio.sleep(0.05)  # handler is sleeping in its thread now
        t = time.perf_counter()
        ticks = 0
        while time.perf_counter() - t < 0.05:
            await asyncio.sleep(0.001)
            ticks += 1
        second = await batch.process({"query": "second"})
        assert await first == "first" and second == "second"
    assert ticks > 10  # the loop was free while the handler ran
    assert loop_thread not in handler_threads


async def test_max_inflight_batches_bounds_concurrent_handler_calls():
    rec = Recorder(delay=0.05)
    async with exact(rec, max_size=2, window_ms=1, max_inflight_batches=2) as batch:
        await asyncio.gather(*(batch.process({"query": str(i)}) for i in range(12)))
    assert rec.max_running == 2
    assert len(rec.batches) == 6


async def test_caller_timeout_raises_and_the_expired_request_never_reaches_the_handler():
    rec = Recorder(delay=0.3)
    async with exact(rec, max_size=1, window_ms=1, max_inflight_batches=1) as batch:
        blocker = asyncio.ensure_future(batch.process({"query": "blocker"}))
        await asyncio.sleep(0.02)
        with pytest.raises(BatchTimeoutError, match="still queued"):
            await batch.process({"query": "late"}, timeout=0.05)
        assert await blocker == "answer:blocker"
        await asyncio.sleep(0.05)
        stats = batch.get_stats()
    assert [r["query"] for r in rec.items] == ["blocker"]
    assert stats.timeouts == 1 and stats.dropped == 1
    assert stats.total_requests == stats.unique_requests + stats.duplicates + stats.dropped


async def test_a_cancelled_caller_never_fails_its_twin():
    rec = Recorder(delay=0.1)
    async with exact(rec) as batch:
        a = asyncio.ensure_future(batch.process({"query": "shared"}))
        b = asyncio.ensure_future(batch.process({"query": "Shared"}))
        await asyncio.sleep(0.03)  # both in flight now, one handler item
        a.cancel()
        assert await b == "answer:shared"
        with pytest.raises(asyncio.CancelledError):
            await a
    assert len(rec.items) == 1


async def test_work_is_cancelled_when_its_last_waiter_leaves():
    started, finished = asyncio.Event(), []

    async def handler(reqs):
        started.set()
        await asyncio.sleep(0.5)
        finished.append(True)
        return ["x"] * len(reqs)

    async with exact(handler) as batch:
        a = asyncio.ensure_future(batch.process({"query": "q"}))
        await started.wait()
        a.cancel()
        await asyncio.sleep(0.6)
    assert finished == []


async def test_queue_full_reject():
    rec = Recorder(delay=0.1)
    async with exact(
        rec, max_queue=2, on_full="reject", max_inflight_batches=1, max_size=1, window_ms=1
    ) as batch:
        running = asyncio.ensure_future(batch.process({"query": "running"}))
        await asyncio.sleep(0.02)
        waiting = [asyncio.ensure_future(batch.process({"query": f"w{i}"})) for i in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFullError, match="max_queue=2"):
            await batch.process({"query": "one too many"})
        assert await asyncio.gather(running, *waiting)
        assert batch.get_stats().rejected == 1


async def test_queue_full_drop_lowest_evicts_the_lowest_priority_waiter():
    # "running" holds the one batch slot until the evictions are checked: it is in the
    # handler before the others come (a fixed sleep failed when this test ran first in its
    # process: the first dispatch waits for the hash kernel's load, ~0.3 s), and stays there
    # until the gate opens (a fixed delay could end first under load)
    gate = asyncio.Event()
    started = asyncio.Event()
    rec = Recorder()

    async def handler(reqs):
        if reqs[0]["query"] == "running":
            started.set()
            await gate.wait()
        return await rec(reqs)

    async with exact(
        handler,
        max_queue=2,
        on_full="drop_lowest",
        max_inflight_batches=1,
        max_size=1,
        window_ms=1,
        enable_priorities=True,
    ) as batch:
        running = asyncio.ensure_future(batch.process({"query": "running"}))
        await asyncio.wait_for(started.wait(), 30)
        low = asyncio.ensure_future(batch.process({"query": "low"}, priority=1))
        mid = asyncio.ensure_future(batch.process({"query": "mid"}, priority=5))
        await asyncio.sleep(0)
        high = asyncio.ensure_future(batch.process({"query": "high"}, priority=9))
        with pytest.raises(QueueFullError, match="evicted"):
            await low
        gate.set()
        assert await high == "answer:high" and await mid == "answer:mid"
        with pytest.raises(QueueFullError):  # priority 0 is below everyone waiting
            await asyncio.gather(
                batch.process({"query": "a"}, priority=9),
                batch.process({"query": "b"}, priority=9),
                batch.process({"query": "c"}, priority=0),
            )
        await running


async def test_queue_full_wait_waits_for_room_then_runs_or_times_out():
    rec = Recorder(delay=0.05)
    async with exact(
        rec, max_queue=1, on_full="wait", max_inflight_batches=1, max_size=1, window_ms=1
    ) as batch:
        out = await asyncio.gather(*(batch.process({"query": str(i)}) for i in range(5)))
        assert out == [f"answer:{i}" for i in range(5)]
        slow = Recorder(delay=1.0)
        batch.handler(slow)
        blocker = asyncio.ensure_future(batch.process({"query": "blocker"}))
        await asyncio.sleep(0.02)
        queued = asyncio.ensure_future(batch.process({"query": "queued"}))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFullError, match="timeout"):
            await batch.process({"query": "no room"}, timeout=0.1)
        await asyncio.gather(blocker, queued)


async def test_priorities_order_a_batch_and_a_group_runs_at_its_highest_priority():
    rec = Recorder(delay=0.1)
    async with exact(
        rec, enable_priorities=True, max_size=2, window_ms=1, max_inflight_batches=1
    ) as batch:
        first = asyncio.ensure_future(batch.process({"query": "occupier"}))
        await asyncio.sleep(0.02)
        calls = [
            batch.process({"query": "p1"}, priority=1),
            batch.process({"query": "p5"}, priority=5),
            batch.process({"query": "p3"}, priority=3),
            batch.process({"query": "P1"}, priority=9),  # twin lifts p1's group to 9
        ]
        await asyncio.gather(first, *calls)
    assert [r["query"] for r in rec.batches[1]] == ["p1", "p5"]
    assert [r["query"] for r in rec.batches[2]] == ["p3"]


async def test_streaming_yields_in_completion_order_with_merge_info():
    async def handler(reqs):
        await asyncio.sleep(0.1 if reqs[0]["query"] == "slow" else 0.0)
        return [r["query"] for r in reqs]

    async with exact(handler, max_size=1, window_ms=1) as batch:
        got = [
            c
            async for c in batch.process_streaming(
                [{"query": "slow"}, {"query": "fast"}, {"query": "FAST"}]
            )
        ]
    assert [c.index for c in got][0] in (1, 2)
    assert got[-1].index == 0 and got[-1].result == "slow"
    by_index = {c.index: c for c in got}
    assert by_index[1].merged_into is None and by_index[1].similarity is None
    assert by_index[2].merged_into == 1 and by_index[2].similarity == 1.0
    assert by_index[2].result == "fast" and by_index[2].ok


async def test_close_drains_everything_queued():
    rec = Recorder()
    batch = exact(rec, window_ms=10_000, max_wait_ms=600_000)
    futs = [asyncio.ensure_future(batch.process({"query": str(i)})) for i in range(10)]
    await asyncio.sleep(0.02)
    assert rec.batches == []  # the long window still holds them
    await batch.close()
    assert sorted(await asyncio.gather(*futs)) == sorted(f"answer:{i}" for i in range(10))
    with pytest.raises(Exception, match="closed"):
        await batch.process({"query": "after"})


async def test_dedup_scope_keeps_different_models_apart():
    rec = Recorder(answer=lambda r: r["model"])
    async with exact(rec, dedup_scope=("model",)) as batch:
        out = await batch.process(
            [
                {"query": "hi", "model": "a"},
                {"query": "hi", "model": "b"},
                {"query": "HI", "model": "a"},
            ]
        )
    assert out == ["a", "b", "a"] and len(rec.items) == 2


async def test_requests_without_the_key_merge_only_when_identical():
    rec = Recorder(answer=lambda r: r.get("x"))
    async with exact(rec) as batch:
        out = await batch.process([{"x": 1, "y": [1, 2]}, {"y": [1, 2], "x": 1}, {"x": 2}])
    assert out == [1, 1, 2] and len(rec.items) == 2


async def test_dedup_disabled_sends_every_request():
    rec = Recorder()
    async with exact(rec, enable_dedup=False) as batch:
        await batch.process([{"query": "a"}, {"query": "a"}])
    assert len(rec.items) == 2


async def test_custom_dedup_function_and_its_errors_fail_only_the_affected_request():
    def same_first_word(r1, r2):
        if r1["query"] == "explode":
            raise RuntimeError("boom")
        if r1["query"] == "weird":
            return 7
        return 1.0 if r1["query"].split()[0] == r2["query"].split()[0] else 0.0

    rec = Recorder()
    # word guards off: this checks the function's plumbing ("today" / "tomorrow" is a trap
    # the entities guard would veto, see tests/test_guards.py)
    async with BatchProcessor(
        rec, dedup_function=same_first_word, window_ms=5, dedup_guards=()
    ) as batch:
        await batch.process({"query": "warm up"})
        out = await batch.process(
            [
                {"query": "weather today"},
                {"query": "weather tomorrow"},
                {"query": "explode"},
                {"query": "weird"},
                {"query": "invoice please"},
            ],
            return_exceptions=True,
        )
        assert out[0] == out[1] == "answer:weather today"
        assert isinstance(out[2], HandlerError) and "dedup_function raised" in str(out[2])
        assert isinstance(out[3], HandlerError) and "[0, 1]" in str(out[3])
        assert out[4] == "answer:invoice please"
        assert await batch.process({"query": "after"}) == "answer:after"


@pytest.mark.parametrize(
    "bad, err, match",
    [
        ("just a string", InvalidRequestError, "mapping"),
        ({"query": object()}, InvalidRequestError, "not msgpack-serializable"),
        ({"query": "x" * 2000}, RequestTooLargeError, "max_request_bytes=1024"),
        ({"query": "x", "embedding": [float("nan"), 1.0]}, InvalidRequestError, "embedding"),
    ],
)
async def test_bad_requests_get_a_clear_error_and_the_processor_keeps_serving(bad, err, match):
    rec = Recorder()
    async with BatchProcessor(
        rec, max_request_bytes=1024, window_ms=2, dedup_strategy="hybrid"
    ) as batch:
        with pytest.raises(err, match=match):
            await batch.process(bad)
        with pytest.raises(err):
            await batch.process([{"query": "fine"}, bad])
        assert await batch.process({"query": "fine"}) == "answer:fine"
    assert [r["query"] for r in rec.items] == ["fine"]  # nothing of a refused call was sent


def test_config_out_of_range_raises_config_error_naming_field_and_range():
    with pytest.raises(ConfigError, match=r"window_ms must be in \(0, 60000\], got -5") as e:
        BatchProcessor(window_ms=-5)
    assert e.value.field == "window_ms"
    with pytest.raises(ConfigError, match="on_full must be one of"):
        BatchProcessor(on_full="explode")
    with pytest.raises(ConfigError, match="unknown option"):
        BatchProcessor(windw_ms=5)
    batch = BatchProcessor()
    batch.dedup_threshold = 0.95
    assert batch.dedup_threshold == 0.95
    with pytest.raises(ConfigError, match=r"dedup_threshold must be in \(0, 1\], got -1"):
        batch.dedup_threshold = -1
    assert batch.dedup_threshold == 0.95  # a refused assignment changes nothing
    with pytest.raises(ConfigError, match="max_size must be >= min_size"):
        BatchProcessor(min_size=8).max_size = 4


async def test_no_handler_is_a_clear_error():
    batch = BatchProcessor(window_ms=5)
    with pytest.raises(ConfigError, match="no handler"):
        await batch.process({"query": "x"})

    @batch.handler
    async def h(reqs):
        return ["ok"] * len(reqs)

    assert await batch.process({"query": "x"}) == "ok"
    await batch.close()


def test_a_starving_low_priority_request_goes_first_after_max_wait(run_virtual):
    done_at = {}

    async def handler(reqs):
        await asyncio.sleep(0.010)
        return [r["query"] for r in reqs]

    async def main():
        batch = BatchProcessor(
            handler,
            enable_priorities=True,
            max_size=1,
            window_ms=1,
            max_wait_ms=50,
            max_inflight_batches=1,
            dedup_strategy="exact",
        )
        await batch.warm_up()
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        async def ask(q, prio, at_ms):
            await asyncio.sleep(at_ms / 1000)
            await batch.process({"query": q}, priority=prio)
            done_at[q] = (loop.time() - t0) * 1000

        # a steady stream of high-priority work, more than the handler can keep up with
        highs = [ask(f"high {i}", 10, 2 * i) for i in range(40)]
        await asyncio.gather(ask("low", 0, 1), *highs)
        await batch.close()

    run_virtual(main)
    # without the rule "low" would run after all 40 highs (~400 ms); with it, soon after
    # it has waited max_wait_ms (50 ms) plus the batch running at that moment (10 ms)
    assert done_at["low"] <= 1 + 50 + 10 + 10 + 1e-6
    assert max(done_at.values()) > done_at["low"] + 200


class _OwnFuture(asyncio.Future):
    """A loop's own future type (a subclass, as a third-party loop may make)."""


class _OwnFutureLoop(asyncio.SelectorEventLoop):
    def __init__(self):
        super().__init__()
        self.made = 0

    def create_future(self):
        self.made += 1
        return _OwnFuture(loop=self)


@pytest.mark.parametrize("options", [{"enable_dedup": False}, {"dedup_strategy": "exact"}])
def test_a_loop_with_its_own_future_type_serves_single_calls(options):
    """A loop whose ``create_future`` makes its own future type: single calls wait on that
    type (the processor does not make plain futures behind its back), and the row lane
    answers them, successes, per-request errors and twins alike (before, a future of
    another type than asyncio.Future was taken for a list call there, and its caller never
    got an answer)."""

    async def handler(reqs):
        return [ValueError("no") if r["query"] == "bad" else r["query"] for r in reqs]

    async def main():
        batch = BatchProcessor(handler, window_ms=1, max_size=8, processing_timeout=5, **options)
        texts = ["a", "b", "bad", "a", "c"]
        out = await asyncio.wait_for(
            asyncio.gather(*(batch.process({"query": t}) for t in texts), return_exceptions=True),
            5,
        )
        await batch.close()
        return out

    loop = _OwnFutureLoop()
    try:
        out = loop.run_until_complete(main())
    finally:
        loop.close()
    assert out[:2] == ["a", "b"] and out[3:] == ["a", "c"]
    assert isinstance(out[2], HandlerError) and "no" in str(out[2])
    assert loop.made >= 5


@pytest.mark.parametrize("options", [{"enable_dedup": False}, {"dedup_strategy": "exact"}])
def test_single_calls_are_timed_on_the_loops_own_clock(run_virtual, options):
    """A single call's arrival is read from the loop's clock, whatever loop it is (asyncio's
    own loops are read without loop.time()'s frame; a loop with a clock of its own, here a
    virtual one, is read through loop.time()): its latency and its window are in that
    clock's time."""

    async def handler(reqs):
        await asyncio.sleep(2.0)
        return [r["query"] for r in reqs]

    async def main():
        batch = BatchProcessor(handler, window_ms=50, max_size=32, **options)
        loop = asyncio.get_running_loop()
        await batch.process({"query": "first"})  # (the first call on a loop binds it)
        t0 = loop.time()
        out = await batch.process({"query": "second"})
        took = loop.time() - t0
        stats = batch.get_stats()
        await batch.close()
        return out, took, stats

    out, took, stats = run_virtual(main)
    assert out == "second"
    assert took == pytest.approx(2.05, abs=1e-6)
    assert stats.latency_ms_p50 == pytest.approx(2050, abs=0.01)
    assert stats.latency_ms_p99 == pytest.approx(2050, abs=0.01)


def test_every_option_is_a_property_of_the_processor_read_and_assigned_through_its_config():
    """Each option reads the live config and assigns through it (validated); the processor
    has no ``__getattr__`` at run time (CPython 3.11 does not specialize attribute loads on a
    class that has one, and ``process()`` reads the processor's attributes per request)."""
    from stratabatch.config import BatchConfig

    assert "__getattr__" not in vars(BatchProcessor)
    batch = BatchProcessor(window_ms=7, max_size=9)
    for name in BatchConfig.option_names():
        assert getattr(batch, name) == getattr(batch.config, name), name
    batch.window_ms = 11
    assert batch.config.window_ms == 11 == batch.window_ms
    with pytest.raises(ConfigError, match="window_ms must be in"):
        batch.window_ms = -1
    with pytest.raises(AttributeError):
        batch.windw_ms  # noqa: B018
