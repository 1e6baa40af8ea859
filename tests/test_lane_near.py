"""The default strategy's single calls on the row lane (engine/lanework.py ``LaneWork._lead``): a
request alone in its partition leads there without a record; one that is not makes the lane
hand its waiting callers to the general path; a near twin of running lane work joins it as a
row (through the general path's stand-in group). The decisions are those of the general path:
the same handler items and the same answers, caller for caller."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from stratabatch import BatchProcessor, BatchTimeoutError
from stratabatch.errors import InvalidRequestError
from stratabatch.lane import LaneGroup
from stratabatch.records import Request


class Gate:
    """A handler that records its items and answers only when released."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, reqs: list[dict[str, Any]]) -> list[str]:
        self.items.extend(r["query"] for r in reqs)
        self.started.set()
        await self.release.wait()
        return [f"A:{r['query']}" for r in reqs]


async def _until(cond: Any, tries: int = 3000) -> None:
    for _ in range(tries):
        if cond():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


class Released:
    """Releases ``gate`` on the way out (a failed check must not leave the handler waiting
    for close() to time it out)."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def __enter__(self) -> Gate:
        return self.gate

    def __exit__(self, *exc: Any) -> None:
        self.gate.release.set()


async def test_a_request_alone_in_its_partition_leads_on_the_lane_and_leaves_the_index():
    gate = Gate()
    gate.release.set()
    async with BatchProcessor(gate, window_ms=2, cold_start="wait") as batch:
        await batch.warm_up()
        core = batch._core
        index = core._dedup.leaders
        holders: list[Any] = []
        real = core.submit_one

        def spy(*a: Any, **k: Any) -> Any:
            h = real(*a, **k)
            holders.append(h)
            return h

        core.submit_one = spy  # type: ignore[method-assign]
        got = await asyncio.gather(
            *(batch.process({"query": f"order {n} status"}) for n in (11, 12, 13))
        )
        assert got == [f"A:order {n} status" for n in (11, 12, 13)]
        assert [type(h) for h in holders] == [LaneGroup] * 3  # no record made
        assert not index.lazy and index.live == 0 and not core._lanes.shadows
        assert core._lanes.hold == 0
    assert sorted(gate.items) == [f"order {n} status" for n in (11, 12, 13)]


async def test_a_near_twin_of_a_waiting_lane_leader_is_merged_by_the_general_path():
    """``min_size=2`` holds the first request grouped; its near twin (same numbers) is not
    alone in its partition: the lane hands both over, and they become one handler item."""
    gate = Gate()
    gate.release.set()
    async with BatchProcessor(
        gate, window_ms=5, min_size=2, max_wait_ms=60_000, cold_start="wait"
    ) as batch:
        await batch.warm_up()
        core = batch._core
        index = core._dedup.leaders
        first = asyncio.ensure_future(batch.process({"query": "Where is my parcel 4417?"}))
        await _until(lambda: bool(index.lazy))
        assert type(next(iter(index.lazy.values()))) is LaneGroup
        twin = asyncio.ensure_future(batch.process({"query": "where is my parcel 4417"}))
        await _until(lambda: core._lanes.hold > 0)  # handed over: the lane rests
        assert not core.lane_open
        other = asyncio.ensure_future(batch.process({"query": "and my refund 88"}))
        assert await first == await twin == "A:Where is my parcel 4417?"
        assert await other == "A:and my refund 88"
        stats = batch.get_stats()
    assert gate.items == ["Where is my parcel 4417?", "and my refund 88"]
    assert stats.near_merges == 1 and stats.inflight_coalesced == 0
    assert core._lanes.hold == 0  # (idle again)


async def test_twins_of_running_lane_work_join_it_near_and_exact():
    """While a lane leader runs, its near twin from a list call joins it through the stand-in
    group (with its similarity in ``Completed``), and a single call repeating that twin's
    text joins it too; one handler item answers all three."""
    gate = Gate()
    with Released(gate):
        async with BatchProcessor(gate, window_ms=2, cold_start="wait") as batch:
            await batch.warm_up()
            core = batch._core
            first = asyncio.ensure_future(batch.process({"query": "Cancel order 5521 please"}))
            await gate.started.wait()
            stream = batch.process_streaming([{"query": "cancel order 5521 please!"}])
            second = asyncio.ensure_future(stream.__anext__())
            await _until(lambda: bool(core._lanes.shadows))
            third = asyncio.ensure_future(batch.process({"query": "cancel order 5521 please!"}))
            await _until(lambda: core.waiting == 0 and batch.get_stats().inflight_coalesced == 2)
            assert not second.done() and not third.done()
            gate.release.set()
            done = await second
            assert await first == await third == done.result == "A:Cancel order 5521 please"
            stats = batch.get_stats()
            index = core._dedup.leaders
            assert not core._lanes.shadows and not core._lanes.shadow_of and not index.lazy
            assert index.live == 0 and not core._dedup.exact
    assert gate.items == ["Cancel order 5521 please"]
    assert batch.dedup_threshold_in_force <= done.similarity < 1.0
    assert done.merged_into == -1
    assert stats.near_merges == 2 and stats.inflight_coalesced == 2


async def test_a_near_twin_that_joined_running_lane_work_times_out_alone():
    gate = Gate()
    with Released(gate):
        async with BatchProcessor(gate, window_ms=2, cold_start="wait") as batch:
            await batch.warm_up()
            core = batch._core
            first = asyncio.ensure_future(batch.process({"query": "Refund for ticket 9090"}))
            await gate.started.wait()
            twin = asyncio.ensure_future(
                batch.process({"query": "refund for ticket 9090?"}, timeout=0.05)
            )
            with pytest.raises(BatchTimeoutError):
                await twin
            assert core._lanes.shadows  # its lane work still runs
            gate.release.set()
            assert await first == "A:Refund for ticket 9090"
            stats = batch.get_stats()
    assert gate.items == ["Refund for ticket 9090"]
    assert stats.timeouts == 1 and not core._lanes.shadows


async def test_a_request_with_its_own_vector_is_checked_in_the_caller():
    gate = Gate()
    gate.release.set()
    async with BatchProcessor(gate, window_ms=2, cold_start="wait") as batch:
        await batch.warm_up()
        await batch.process({"query": "first 1"})  # (the loop's calls take the inline path)
        with pytest.raises(InvalidRequestError):
            await batch.process({"query": "bad 2", "embedding": [float("nan"), 1.0]})
        holders: list[Any] = []
        real = batch._core.submit

        def spy(req: Any) -> None:
            holders.append(req)
            real(req)

        batch._core.submit = spy  # type: ignore[method-assign]
        vec = [1.0] + [0.0] * (batch._core.vector_dim() - 1)
        assert await batch.process({"query": "own 3", "embedding": vec}) == "A:own 3"
        assert [type(h) for h in holders] == [Request]  # the general path's record
        assert batch.get_stats().errors == 0


def _traffic(seed: int) -> tuple[list[str], list[str]]:
    """Two waves of texts: distinct ones with numbers of their own (lone: they lead on the
    lane); then near and exact twins of the first wave, and new texts (some without numbers,
    some sharing a first-wave text's numbers)."""
    rng = random.Random(seed)
    words = ["parcel", "refund", "invoice", "ticket", "order", "account", "card", "plan"]
    first = []
    for k in range(24):
        w = rng.sample(words, 3)
        first.append(f"{w[0]} {w[1]} {k * 7 + 100} {w[2]}")
    second = []
    for _ in range(24):
        t = rng.choice(first)
        r = rng.random()
        second.append(t + "?" if r < 0.4 else t.upper() if r < 0.6 else t.replace(" ", "  "))
    second += [" ".join(rng.sample(words, 3)) for _ in range(4)]
    second += [f"new {rng.choice(words)} {rng.randrange(100, 268)}" for _ in range(4)]
    rng.shuffle(second)
    return first, second


async def _run(seed: int, general: bool) -> tuple[list[str], list[Any], tuple[int, int, int]]:
    first, second = _traffic(seed)
    gate = Gate()
    with Released(gate):
        return await _waves(gate, first, second, general)


async def _waves(
    gate: Gate, first: list[str], second: list[str], general: bool
) -> tuple[list[str], list[Any], tuple[int, int, int]]:
    async with BatchProcessor(
        gate, window_ms=5, max_size=64, cold_start="wait", enable_priorities=general
    ) as batch:
        await batch.warm_up()
        a = [asyncio.ensure_future(batch.process({"query": t})) for t in first]
        await gate.started.wait()
        await asyncio.sleep(0.02)  # (the first wave runs: one batch)
        b = [asyncio.ensure_future(batch.process({"query": t})) for t in second]
        await _until(lambda: batch._core.waiting == 0 and len(gate.items) > len(first))
        gate.release.set()
        got = await asyncio.gather(*a, *b)
        st = batch.get_stats()
    return gate.items, got, (st.near_merges, st.exact_merges, st.inflight_coalesced)


@pytest.mark.parametrize("seed", [0, 1])
async def test_the_lane_decides_as_the_general_path(seed):
    """The same traffic through the lane (default options) and through the general path
    (``enable_priorities``: every request gets a record; all of priority 0): the same handler
    items, the same answers, the same merges."""
    print(f"seed={seed}")
    lane = await _run(seed, general=False)
    general = await _run(seed, general=True)
    assert lane == general


async def test_an_exact_twin_from_a_list_call_joins_running_lane_work_as_an_exact_merge():
    gate = Gate()
    with Released(gate):
        async with BatchProcessor(gate, window_ms=2, cold_start="wait") as batch:
            await batch.warm_up()
            first = asyncio.ensure_future(batch.process({"query": "Track parcel 7710"}))
            await gate.started.wait()
            stream = batch.process_streaming([{"query": "track  PARCEL 7710"}])
            second = asyncio.ensure_future(stream.__anext__())
            await _until(lambda: batch.get_stats().inflight_coalesced == 1)
            gate.release.set()
            done = await second
            assert await first == done.result == "A:Track parcel 7710"
            stats = batch.get_stats()
    assert gate.items == ["Track parcel 7710"]
    assert done.similarity == 1.0 and stats.exact_merges == 1 and stats.near_merges == 0
    assert not batch._core._lanes.shadows  # (no stand-in was needed)
