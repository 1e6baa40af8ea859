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


def test_blocking_calls_of_many_threads_leave_together(start_engine):
    """Threads calling a sync=True client while its loop thread is busy: their calls start
    together, in one frame (the blocking client batches across threads)."""
    import threading
    import time

    from stratabatch.client import SyncEngineClient

    eng = start_engine("--window-ms", "2", "--dedup-strategy", "exact")
    with SyncEngineClient(eng.name) as client:
        assert client.process({"query": "warm"})["answer"] == "WARM"
        conn = client._client._conn
        pushed: list[int] = []
        push = conn.requests.try_push
        conn.requests.try_push = lambda frame: (pushed.append(1), push(frame))[1]
        results: dict[int, object] = {}
        handed = threading.Event()

        def hold_the_loop() -> None:  # the loop thread busy while the threads call
            handed.wait(10)
            time.sleep(0.2)

        client._loop.call_soon_threadsafe(hold_the_loop)

        def call(i: int) -> None:
            results[i] = client.process({"query": f"t{i}"})

        threads = [threading.Thread(target=call, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(client._inq) < 32 and time.monotonic() < deadline:
            time.sleep(0.01)
        handed.set()
        for t in threads:
            t.join(30)
    assert {i: r["answer"] for i, r in results.items()} == {i: f"T{i}" for i in range(32)}
    assert len(pushed) == 1
