"""The blocking client (``connect(name, sync=True)``) against a real engine: calls handed to
its loop thread enter the client's books there directly (no task per call), and keep every
promise of the asyncio client: answers in order, refusals in the caller, timeouts, many
threads at once."""

from __future__ import annotations

import threading
import time

import pytest

from stratabatch import BatchTimeoutError, InvalidRequestError
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
