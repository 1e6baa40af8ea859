"""The core's clock: on uvloop, whose ``loop.time()`` is the monotonic clock in whole
milliseconds, the core stamps arrivals and completions with ``time.monotonic()`` (the same
clock at full resolution), so latencies below a millisecond are not rounded to 0 or 1 ms; its
timers still run on the loop, and a caller's deadline never fires before it by that clock. A
loop with a clock of its own (the suite's virtual clock) is read through ``loop.time()``, as
tests/test_processor.py checks."""

from __future__ import annotations

import asyncio
import time

import pytest
import uvloop

from stratabatch import BatchProcessor, BatchTimeoutError
from stratabatch.core import Core


def _whole_ms(seconds: float) -> bool:
    ms = seconds * 1000.0
    return abs(ms - round(ms)) < 1e-6


@pytest.mark.parametrize("strategy", [None, "exact"])
def test_latencies_on_uvloop_keep_their_fraction_of_a_millisecond(strategy):
    async def handler(reqs):
        return [r["query"] for r in reqs]

    async def main():
        options = {"enable_dedup": False} if strategy is None else {"dedup_strategy": strategy}
        batch = BatchProcessor(handler, window_ms=1, max_size=8, **options)
        await batch.process({"query": "bind"})  # (binds the core to this loop)
        core = batch._core
        assert core.clock is time.monotonic
        core.stats.keep_latencies()
        core.stats.take_latencies()
        for rnd in range(20):  # single calls (the row lane) and list calls (the general path)
            singles = [batch.process({"query": f"s {rnd} {i}"}) for i in range(12)]
            await asyncio.gather(
                *singles, batch.process([{"query": f"l {rnd} {i}"} for i in range(5)])
            )
        got = core.stats.take_latencies()
        stats = batch.get_stats()
        await batch.close()
        return got, stats

    got, stats = uvloop.run(main())
    assert len(got) == 20 * 17
    assert all(0.0 <= x < 10.0 for x in got)
    # uvloop's loop.time() made every latency a whole number of milliseconds (0, 1, 2 ms)
    assert sum(not _whole_ms(x) for x in got) > len(got) // 2
    pcts = (stats.latency_ms_p50, stats.latency_ms_p95, stats.latency_ms_p99)
    assert not all(abs(p - round(p)) < 1e-9 for p in pcts), pcts


@pytest.mark.parametrize("call", ["single", "list"])  # a lane row's timer, a record's timer
def test_a_callers_timeout_on_uvloop_never_fires_before_it_by_the_monotonic_clock(call):
    async def main():
        gate = asyncio.Event()

        async def handler(reqs):
            await gate.wait()
            return [None] * len(reqs)

        batch = BatchProcessor(handler, window_ms=50, dedup_strategy="exact")
        early = []
        for i in range(15):
            timeout = 0.0005 + i * 0.0003  # (fractions of uvloop's millisecond timer steps)
            req = {"query": f"q {i}"}
            t0 = time.monotonic()
            with pytest.raises(BatchTimeoutError):
                await batch.process(req if call == "single" else [req], timeout=timeout)
            waited = time.monotonic() - t0
            if waited < timeout - 1e-5:  # (the deadline is stamped after t0)
                early.append((timeout, waited))
        gate.set()
        await batch.close()
        return early

    assert uvloop.run(main()) == []


def test_the_core_reads_the_loops_own_clock_when_it_has_one_of_its_own():
    class Stepped(asyncio.SelectorEventLoop):
        def time(self) -> float:
            return 1000.0 + super().time()

    from stratabatch.config import BatchConfig

    for make, want_monotonic in ((asyncio.new_event_loop, True), (uvloop.new_event_loop, True)):
        loop = make()
        core = Core(BatchConfig(), lambda *a: None)
        core.bind(loop)
        assert (core.clock is time.monotonic) == want_monotonic
        loop.close()
    loop = Stepped()
    core = Core(BatchConfig(), lambda *a: None)
    core.bind(loop)
    assert core.clock == loop.time and core.clock() > 1000.0
    loop.close()
