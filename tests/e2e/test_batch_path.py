"""The batch as the unit of work between processes: a client sends every request of one
event-loop iteration in one frame, and the engine answers it in few frames, not one a request."""

from __future__ import annotations

import asyncio

from stratabatch.client import EngineClient


async def test_one_loop_iterations_requests_leave_in_one_frame(start_engine):
    eng = start_engine("--window-ms", "5", "--dedup-strategy", "exact")
    async with EngineClient(eng.name) as client:
        assert (await client.process({"query": "warm"}))["answer"] == "WARM"
        conn = client._connection()
        pushed: list[int] = []
        drained: list[int] = []
        push, drain = conn.requests.try_push, conn.responses.drain

        def counting_push(frame):
            pushed.append(len(frame))
            return push(frame)

        def counting_drain(*args):
            frames = drain(*args)
            drained.append(len(frames))
            return frames

        conn.requests.try_push = counting_push
        conn.responses.drain = counting_drain
        singles = [client.process({"query": f"q{i % 150}"}) for i in range(300)]
        many = client.process([{"query": f"list {i}"} for i in range(50)])
        results = await asyncio.gather(*singles, many)
    # every answer is its own request's (150 distinct texts, twins merged)
    assert [r["answer"] for r in results[:300]] == [f"Q{i % 150}" for i in range(300)]
    assert [r["answer"] for r in results[300]] == [f"LIST {i}" for i in range(50)]
    # 350 requests made in one loop iteration: one frame, one push
    assert len(pushed) == 1
    # answered in a few frames (one per engine pass that finished work), not 350
    assert 1 <= sum(drained) <= 20, drained


async def test_a_list_and_singles_of_other_iterations_are_separate_frames(start_engine):
    eng = start_engine("--window-ms", "1", "--dedup-strategy", "exact")
    async with EngineClient(eng.name) as client:
        conn = client._connection()
        pushed: list[int] = []
        push = conn.requests.try_push
        conn.requests.try_push = lambda frame: (pushed.append(1), push(frame))[1]
        for i in range(5):
            assert (await client.process({"query": f"x{i}"}))["answer"] == f"X{i}"
    assert len(pushed) == 5  # one frame per iteration that made requests
