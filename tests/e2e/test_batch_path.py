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


def test_blocking_callers_answered_together_send_together(start_engine):
    """Threads calling a sync=True client, answered in one pass, make their next calls
    together: those leave in a few batch frames, not one frame per thread (the blocking
    client batches across threads, as an asyncio client batches one loop iteration)."""
    import threading

    from stratabatch.client import SyncEngineClient
    from stratabatch.ipc.frames import FrameDecoder

    threads_n = 32
    # a long window: every first call is in the engine's one pass, answered together
    eng = start_engine("--window-ms", "400", "--max-size", "64", "--dedup-strategy", "exact")
    with SyncEngineClient(eng.name) as client:
        assert client.process({"query": "warm"})["answer"] == "WARM"
        conn = client._conn
        decode = FrameDecoder(conn.limits).requests
        second: list[int] = []  # per frame pushed: how many second calls it holds
        push = conn.requests.try_push

        def counting_push(frame):
            n = sum(1 for r in decode(frame) if "second" in str(r.payload))
            if n:
                second.append(n)
            return push(frame)

        conn.requests.try_push = counting_push
        results: dict[int, list[object]] = {}
        start = threading.Barrier(threads_n)

        def call(i: int) -> None:
            start.wait(10)
            first = client.process({"query": f"first {i}"})
            results[i] = [first, client.process({"query": f"second {i}"})]

        threads = [threading.Thread(target=call, args=(i,)) for i in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert {i: [r["answer"] for r in rs] for i, rs in results.items()} == {
        i: [f"FIRST {i}", f"SECOND {i}"] for i in range(threads_n)
    }
    assert sum(second) == threads_n
    # one frame for the burst, and the last caller's own call; a thread the scheduler
    # holds back past the burst sends alone: a few frames, never one per thread
    assert len(second) <= 8, second


async def test_plain_requests_and_ones_the_general_path_takes_share_a_window(start_engine):
    # plain requests take the engine core's row lane; one with an arena vector takes its
    # general path and the lane's waiting rows move there first: every caller is answered,
    # and twins merge whichever way they came
    eng = start_engine("--window-ms", "20", "--dedup-strategy", "exact")
    vec = [1.0] + [0.0] * 383
    async with EngineClient(eng.name) as client:
        rs = await client.process(
            [{"query": "a"}, {"query": "A ", "embedding": vec}, {"query": "b"}, {"query": "a"}],
            timeout=10,
        )
        assert [r["answer"] for r in rs] == ["A", "A", "B", "A"]
        assert {r["n"] for r in rs} == {2}  # one handler call of two items
        rs = await asyncio.gather(
            client.process({"query": "x"}),
            client.process({"query": "x", "embedding": vec}, timeout=10),
            client.process({"query": "y"}, priority=3),
        )
        assert [r["answer"] for r in rs] == ["X", "X", "Y"]
        st = client.get_stats()
    assert (st.total_requests, st.unique_requests, st.duplicates) == (7, 4, 3)
