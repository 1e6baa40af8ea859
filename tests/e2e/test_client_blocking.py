"""The blocking client (``connect(name, sync=True)``) against a real engine: caller threads
send their own requests and one reader thread answers them, keeping every promise of the
asyncio client: answers in order, refusals in the caller, timeouts, many threads at once, a
full ring, the engine's death and the reconnect after it."""

from __future__ import annotations

import threading
import time

import pytest

from stratabatch import (
    BatchTimeoutError,
    EngineUnavailableError,
    InvalidRequestError,
    QueueFullError,
)
from stratabatch.client import SyncEngineClient


def test_many_threads_get_their_own_answers(start_engine):
    eng = start_engine("--window-ms", "2", "--dedup-strategy", "exact")
    results: dict[tuple[int, int], object] = {}
    errors: list[BaseException] = []
    with SyncEngineClient(eng.name) as client:

        def caller(t: int) -> None:
            try:
                for i in range(40):
                    if i % 10 == 9:  # a list now and then, twins inside
                        rs = client.process([{"query": f"l{t}-{i}"}, {"query": f"l{t}-{i}"}])
                        results[(t, i)] = [r["answer"] for r in rs]
                    else:
                        results[(t, i)] = client.process({"query": f"q{t % 4}-{i}"})["answer"]
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=caller, args=(t,)) for t in range(16)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
    assert not errors, errors
    for (t, i), got in results.items():
        if i % 10 == 9:
            assert got == [f"L{t}-{i}"] * 2
        else:
            assert got == f"Q{t % 4}-{i}"
    assert len(results) == 16 * 40


def test_refusals_reach_the_calling_thread_and_nothing_is_sent(start_engine, tmp_path):
    log = tmp_path / "items.log"
    eng = start_engine(
        "--window-ms", "2", "--dedup-strategy", "exact", env={"SB_E2E_LOG": str(log)}
    )
    with SyncEngineClient(eng.name) as client:
        assert client.process({"query": "warm"})["answer"] == "WARM"
        with pytest.raises(InvalidRequestError, match="request 0"):
            client.process({"query": {1, 2}})  # a set: msgpack cannot carry it
        with pytest.raises(InvalidRequestError, match="request 1"):
            client.process([{"query": "never sent"}, "not a mapping"])
        rs = client.process([{"query": "kept"}, "not a mapping"], return_exceptions=True)
        assert rs[0]["answer"] == "KEPT" and isinstance(rs[1], InvalidRequestError)
        assert client.process([]) == []
        assert client.process({"query": "after"})["answer"] == "AFTER"
    assert "never sent" not in log.read_text()


def test_a_blocking_calls_timeout_ends_it_and_the_late_answer_is_dropped(start_engine):
    eng = start_engine(
        "--window-ms", "1", "--dedup-strategy", "exact", handler="tests.e2e.handlers:slow_echo"
    )
    with SyncEngineClient(eng.name) as client:
        assert client.process({"query": "warm"})["answer"] == "WARM"
        t0 = time.monotonic()
        with pytest.raises(BatchTimeoutError):
            client.process({"query": "slow"}, timeout=0.2)
        assert time.monotonic() - t0 < 0.9  # the client's timer, not the 1 s handler
        with pytest.raises(BatchTimeoutError):
            client.process([{"query": "slow a"}, {"query": "slow b"}], timeout=0.2)
        # the late answers arrive and are dropped; the client goes on serving
        assert client.process({"query": "next"}, timeout=30)["answer"] == "NEXT"
        assert client.process({"query": "no deadline"}, timeout=float("inf"))["answer"] == (
            "NO DEADLINE"
        )


_SMALL_RING = ("--max-request-bytes", "200", "--max-result-bytes", "200")  # a small ring


def test_a_full_ring_follows_on_full_and_the_reader_sends_the_rest(start_engine):
    eng = start_engine(
        "--window-ms",
        "1",
        "--dedup-strategy",
        "exact",
        "--max-queue",
        "8",
        "--max-inflight-batches",
        "1",
        "--max-size",
        "4",
        "--processing-timeout",
        "2",
        *_SMALL_RING,
        handler="tests.e2e.handlers:faulty",
    )  # the engine stops draining when its queue is full; the client's ring then fills
    flood = [{"query": f"f{i}", "fault": "hang"} for i in range(6000)]
    with SyncEngineClient(eng.name, on_full="reject") as client:
        with pytest.raises(QueueFullError, match="ring to engine .* is full"):
            client.process(flood)
    with SyncEngineClient(eng.name, on_full="wait") as client:
        t0 = time.monotonic()
        with pytest.raises(QueueFullError, match="still full"):
            client.process(flood, timeout=0.5)
        assert time.monotonic() - t0 < 2.0
    # a list larger than the ring: what has no room waits for the engine to free some, and
    # the reader thread sends it then
    fast = start_engine(
        "--window-ms", "1", "--dedup-strategy", "exact", *_SMALL_RING, name=eng.name + "b"
    )
    with SyncEngineClient(fast.name, on_full="wait") as client:
        conn = client._conn
        slept: list[bool] = []
        sleep_for_room = conn.sleep_for_room

        def counting_sleep(size: int) -> bool:
            slept.append(sleep_for_room(size))
            return slept[-1]

        conn.sleep_for_room = counting_sleep
        many = [{"query": f"m{i}"} for i in range(6000)]
        assert [r["answer"] for r in client.process(many, timeout=60)] == [
            f"M{i}" for i in range(6000)
        ]
    assert any(slept)  # the ring was full at least once


def test_the_engines_death_fails_waiting_calls_at_once_and_the_next_call_reconnects(
    start_engine,
):
    eng = start_engine(
        "--window-ms", "2", "--dedup-strategy", "exact", handler="tests.e2e.handlers:faulty"
    )
    with SyncEngineClient(eng.name) as client:
        assert client.process({"query": "before"}) == {"answer": "BEFORE"}
        errors: list[BaseException] = []

        def hang(i: int) -> None:
            try:
                client.process({"query": f"h{i}", "fault": "hang"})
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=hang, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        t_kill = time.monotonic()
        eng.kill()
        for t in threads:
            t.join(5)
        assert time.monotonic() - t_kill < 2.0
        assert len(errors) == 5 and all(isinstance(e, EngineUnavailableError) for e in errors)
        assert all("died" in str(e) or "closed" in str(e) for e in errors), errors
        with pytest.raises(EngineUnavailableError):
            client.process({"query": "nobody home"})
        new = start_engine("--window-ms", "2", "--dedup-strategy", "exact")
        assert new.pid != eng.pid
        assert client.process({"query": "after"}) == {"answer": "AFTER", "n": 1}
        assert client.get_stats().total_requests >= 1


def test_vectors_of_many_threads_travel_through_the_arena(start_engine):
    eng = start_engine("--window-ms", "5", "--dedup-strategy", "embedding")
    vec = [1.0] + [0.0] * 383
    results: dict[int, object] = {}
    with SyncEngineClient(eng.name) as client:

        def call(i: int) -> None:
            results[i] = client.process(
                [
                    {"query": f"tell me a joke {i}", "embedding": vec},
                    {"query": f"tell me a joke {i}!", "embedding": vec},
                ]
            )

        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        free = len(client._conn._free_rows)
        assert free == len(client._conn.arena.own_range)  # every row given back
    assert len(results) == 8
    for rs in results.values():
        assert rs[0] == rs[1]  # near twins (the same vector) merged


def test_a_threads_calls_in_a_row_each_get_their_own_outcome(start_engine):
    """A caller thread's waiter serves its next call once a call ends with a value: every
    call still gets its own answer or error, never one of an earlier call."""
    from stratabatch import HandlerError

    eng = start_engine(
        "--window-ms", "1", "--dedup-strategy", "exact", handler="tests.e2e.handlers:faulty"
    )
    errors: list[BaseException] = []

    def caller(t: int) -> None:
        try:
            with pytest.raises(InvalidRequestError):
                client.process({"query": {1, 2}})  # refused before a waiter is used
            for i in range(30):
                if i % 7 == 3:
                    with pytest.raises(HandlerError, match=f"bad item t{t}-{i}"):
                        client.process({"query": f"t{t}-{i}", "fault": "item"})
                else:
                    got = client.process({"query": f"t{t}-{i}"}, timeout=10)
                    assert got == {"answer": f"T{t}-{i}"}
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with SyncEngineClient(eng.name) as client:
        threads = [threading.Thread(target=caller, args=(t,), daemon=True) for t in range(4)]
        for th in threads:
            th.start()
        end = time.monotonic() + 60
        for th in threads:
            th.join(max(end - time.monotonic(), 0))
        assert not any(th.is_alive() for th in threads)  # no call was left hanging
    assert not errors, errors
