"""The handler runner (stratabatch.runner) and the core's public surface for the engine:
``on_batch_start``, ``completed`` and ``record_error``."""

from __future__ import annotations

import asyncio

import pytest

from stratabatch import BatchProcessor, BatchTimeoutError


async def echo(reqs):
    return [r["query"] for r in reqs]


def echo_sync(reqs):
    return [r["query"] for r in reqs]


@pytest.mark.parametrize("handler", [echo, echo_sync])
async def test_on_batch_start_hears_each_handler_call_with_its_size(handler):
    b = BatchProcessor(handler, window_ms=5, max_size=4, enable_dedup=False)
    core = b._core
    sizes: list[int] = []
    core.on_batch_start = sizes.append
    assert core.on_batch_start == sizes.append
    got = await b.process([{"query": str(i)} for i in range(10)])
    assert got == [str(i) for i in range(10)]
    assert sorted(sizes) == [2, 4, 4]
    assert core.completed == 10
    await b.close()


async def test_record_error_counts_in_the_stats_and_completed_does_not_move():
    b = BatchProcessor(echo, window_ms=1, enable_dedup=False)
    assert await b.process({"query": "a"}) == "a"
    core = b._core
    core.record_error()
    assert b.get_stats().errors == 1 and core.completed == 1
    await b.close()


async def test_a_hanging_handler_times_out_once_and_its_late_result_goes_nowhere():
    release = asyncio.Event()
    calls = 0

    async def hang(reqs):
        nonlocal calls
        calls += 1
        if calls == 1:
            try:
                await release.wait()
            except asyncio.CancelledError:
                await release.wait()  # ignores cancellation: abandoned, not awaited
        return [r["query"] for r in reqs]

    b = BatchProcessor(hang, window_ms=1, enable_dedup=False, processing_timeout=0.05)
    with pytest.raises(BatchTimeoutError, match="processing_timeout"):
        await b.process({"query": "slow"})
    assert await b.process({"query": "next"}) == "next"
    release.set()
    await asyncio.sleep(0.01)
    st = b.get_stats()
    assert st.timeouts == 1 and st.total_requests == 2 and st.unique_requests == 2
    await b.close()


def test_submit_many_queues_in_order_at_once_and_a_full_batch_does_not_wait(run_virtual):
    # The engine hands a client's frame to the core as one run (Core.submit_many): the
    # requests keep their order, share one arrival time, and a run that fills max_size is
    # taken at once, not at the end of the window it opened.
    from stratabatch.records import Request

    seen: list[tuple[float, list[str]]] = []
    outcomes: dict[int, object] = {}

    async def handler(reqs):
        seen.append((asyncio.get_running_loop().time(), [r["query"] for r in reqs]))
        return [r["query"].upper() for r in reqs]

    async def main():
        b = BatchProcessor(handler, window_ms=500, max_size=3, dedup_strategy="exact")
        await b.warm_up()
        core = b._core
        core._on_complete = lambda req, value, error: outcomes.__setitem__(req.index, value)
        loop = asyncio.get_running_loop()
        core.bind(loop)
        t0 = loop.time()
        core.submit_many([Request({"query": q}, index=i, text=q) for i, q in enumerate("abcd")])
        assert [r.seq for r in core._raw] == [0, 1, 2, 3]
        assert len({r.arrival for r in core._raw}) == 1
        assert core.waiting == 4 and b.get_stats().total_requests == 4
        await asyncio.sleep(0.1)  # well inside the 500 ms window
        assert [(t - t0, qs) for t, qs in seen] == [(0.0, ["a", "b", "c"])]  # full: at once
        await core.close()
        return t0

    run_virtual(main)
    assert [q for _, qs in seen for q in qs] == ["a", "b", "c", "d"]
    assert outcomes == {0: "A", 1: "B", 2: "C", 3: "D"}


def test_on_complete_many_gets_each_batch_successes_at_once_and_errors_one_by_one(run_virtual):
    # The engine's outbox takes a finished batch's answers in one call (Core.on_complete_many):
    # once per handler call, every member that got a value (twins too), in the batch's order;
    # an item the handler failed still goes through on_complete, one request at a time.
    from stratabatch.records import Request

    many: list[list[tuple[int, object, object]]] = []
    singles: list[tuple[int, str]] = []

    async def handler(reqs):
        return [ValueError("no") if r["query"] == "bad" else r["query"].upper() for r in reqs]

    async def main():
        b = BatchProcessor(handler, window_ms=500, max_size=3, dedup_strategy="exact")
        await b.warm_up()
        core = b._core
        core._on_complete = lambda req, value, error: singles.append(
            (req.index, type(error).__name__)
        )
        core.on_complete_many = lambda reqs, values: many.append(
            [
                (r.index, v, None if r.merged_with is None else r.merged_with.index)
                for r, v in zip(reqs, values, strict=True)
            ]
        )
        core.bind(asyncio.get_running_loop())
        qs = ["a", "bad", "a", "c", "d"]
        core.submit_many([Request({"query": q}, index=i, text=q) for i, q in enumerate(qs)])
        await asyncio.sleep(1.0)
        await core.close()

    run_virtual(main)
    # batch 1: "a" (with its twin 2), "bad", "c"; batch 2: "d" at the window's end
    assert many == [[(0, "A", None), (2, "A", 0), (3, "C", None)], [(4, "D", None)]]
    assert singles == [(1, "HandlerError")]


def test_a_single_request_that_fills_max_size_leaves_at_once(run_virtual):
    # README: a window closes at once when max_size unique requests wait; with max_size=1
    # that is every request, single calls included (submit), not only an engine's frame.
    seen: list[float] = []

    async def handler(reqs):
        seen.append(asyncio.get_running_loop().time())
        return [r["query"] for r in reqs]

    async def main():
        b = BatchProcessor(handler, window_ms=500, max_size=1, dedup_strategy="exact")
        await b.warm_up()
        t0 = asyncio.get_running_loop().time()
        assert await b.process({"query": "a"}) == "a"
        await b.close()
        return t0

    t0 = run_virtual(main)
    assert [t - t0 for t in seen] == [0.0]


def test_deadlines_of_one_tick_share_a_timer_and_expire_within_the_tick(run_virtual):
    # The engine's core (deadline_tick_s > 0): requests whose deadlines fall in one tick share
    # one loop timer; each is expired at its deadline or up to a tick after, never before; a
    # request answered in time leaves its tick, and the last one to leave cancels the timer.
    release = asyncio.Event()

    async def handler(reqs):
        if any(r["query"].startswith("slow") for r in reqs):
            await release.wait()
        return [r["query"] for r in reqs]

    async def main():
        b = BatchProcessor(handler, window_ms=1, max_size=8, dedup_strategy="exact")
        await b.warm_up()
        core = b._core
        core.deadline_tick_s = 0.01
        loop = asyncio.get_running_loop()
        # answered in time: their tick's timer goes with the last of them
        assert await asyncio.gather(
            *(b.process({"query": f"fast {i}"}, timeout=5.0) for i in range(5))
        ) == [f"fast {i}" for i in range(5)]
        assert core._ticks == {}
        ends: list[float] = []
        t1 = loop.time()

        async def slow(i):
            try:
                await b.process({"query": f"slow {i}"}, timeout=0.0123 + i * 0.001)
            except BatchTimeoutError:
                ends.append(loop.time() - t1)

        tasks = [asyncio.create_task(slow(i)) for i in range(3)]
        await asyncio.sleep(0)
        await asyncio.sleep(0.005)
        assert len(core._ticks) <= 2  # 3 deadlines, 12.3-14.3 ms: one or two ticks
        await asyncio.gather(*tasks)
        release.set()
        await b.close()
        return ends

    ends = run_virtual(main)
    deadlines = [0.0123 + i * 0.001 for i in range(3)]
    assert len(ends) == 3
    for end, deadline in zip(sorted(ends), deadlines, strict=True):
        assert deadline <= end + 1e-9 <= deadline + 0.01 + 1e-6


async def test_a_call_is_answered_in_the_step_its_handler_returns_in():
    """``done`` hears a finished handler call from inside the call's own task step, not from
    a done-callback one loop iteration later: a batch's callers (and, in the engine, its
    answer frames) go out that much sooner."""
    from stratabatch.runner import Runner

    async def handler(reqs):
        return [r["query"] for r in reqs]

    runner = Runner()
    runner.set_handler(handler)
    runner.loop = asyncio.get_running_loop()
    heard: list[object] = []
    call = runner.start([{"query": "a"}], None, lambda *a: heard.append(a[0]))
    await asyncio.sleep(0)  # one loop iteration: the task's first (and only) step runs
    assert heard == [["a"]]
    await asyncio.sleep(0)
    assert heard == [["a"]] and call.over  # (once: the done-callback finds it over)


async def test_a_failure_while_answering_is_reported_to_the_loop_not_left_in_the_task():
    """``done`` raising (a bug of ours) reaches the loop's exception handler, as a failing
    loop callback would, instead of staying in the call's task ("never retrieved")."""
    from stratabatch.runner import Runner

    async def handler(reqs):
        return [None] * len(reqs)

    loop = asyncio.get_running_loop()
    seen: list[dict] = []
    loop.set_exception_handler(lambda _loop, ctx: seen.append(ctx))
    runner = Runner()
    runner.set_handler(handler)
    runner.loop = loop

    def done(*_a):
        raise RuntimeError("boom")

    call = runner.start([{"query": "a"}], None, done)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    loop.set_exception_handler(None)
    assert [type(c["exception"]).__name__ for c in seen] == ["RuntimeError"]
    assert call.task is not None and call.task.done() and call.task.exception() is None


def test_calls_in_flight_share_one_deadline_timer_and_each_times_out_at_its_own(run_virtual):
    """``processing_timeout`` deadlines of the calls in flight share one loop timer (a timer
    per call cost the engine ~0.2 us a request): each call still times out at its own
    deadline, a shorter timeout set later first, and no timer is left once none runs."""
    from stratabatch.runner import Runner

    async def scenario():
        loop = asyncio.get_running_loop()
        gate = asyncio.Event()

        async def handler(reqs):
            if reqs[0] != "quick":
                await gate.wait()
            return reqs

        runner = Runner()
        runner.set_handler(handler)
        runner.loop = loop
        t0 = loop.time()
        heard: dict[str, tuple[float, str]] = {}

        def done(name):
            def hear(results, error, cancelled, elapsed):
                heard[name] = (round(loop.time() - t0, 3), type(error).__name__)

            return hear

        runner.start(["slow"], 1.0, done("slow"))
        await asyncio.sleep(0.1)
        runner.start(["quick"], 1.0, done("quick"))  # returns at once
        runner.start(["shorter"], 0.3, done("shorter"))  # the timeout shrank meanwhile
        runner.start(["late"], 1.0, done("late"))
        await asyncio.sleep(2.0)
        assert heard == {
            "quick": (0.1, "NoneType"),
            "shorter": (0.4, "BatchTimeoutError"),
            "slow": (1.0, "BatchTimeoutError"),
            "late": (1.1, "BatchTimeoutError"),
        }
        assert runner._watch_timer is None and not runner._watched  # nothing left armed
        runner.start(["quick"], 1.0, done("again"))
        assert runner._watch_timer is not None
        await asyncio.sleep(0)
        assert heard["again"][1] == "NoneType"
        assert runner._watch_timer is None and not runner._watched
        gate.set()

    run_virtual(scenario)
