"""The engine's client under faults, with real engine processes: connections a forked child or
another holder of the socket must not keep open, reconnecting to a stuck engine without
blocking the event loop, timeouts that fire on time and keep the engine's own error, and
unbounded timeouts."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

import stratabatch
from stratabatch import BatchTimeoutError, EngineUnavailableError, InvalidRequestError
from stratabatch.client import EngineClient
from stratabatch.ipc.segment import Segment, segment_name
from stratabatch.wire import CONTROL_MAGIC, CONTROL_VERSION

from .conftest import CHILD_PYTHONPATH, ROOT

_SLOT_BASE, _SLOT_WORDS = 8, 4


def _slot_pids(name: str, slots: int) -> list[int]:
    """The pid in each client slot of the engine's control segment (0: free)."""
    with Segment.attach(
        segment_name(name, "control"), magic=CONTROL_MAGIC, version=CONTROL_VERSION
    ) as seg:
        words = seg.array(np.int64, 0, _SLOT_BASE + _SLOT_WORDS * slots).copy()
    return [int(words[_SLOT_BASE + _SLOT_WORDS * s]) for s in range(slots)]


def _links(pid: int) -> list[str]:
    """What the open descriptors of process ``pid`` refer to."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            pass
    return out


def _until(check: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@contextmanager
def _stopped(pid: int) -> Iterator[None]:
    """The engine ``pid`` is stuck (SIGSTOP) inside the block; it runs on after it."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


# --------------------------------------------------------------- closed means closed (item 4)


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
def test_a_forked_child_does_not_keep_the_connections_its_parent_closes(start_engine, sync):
    """A parent connects and forks a child that lives on, closes and reconnects, and again,
    more times than the engine has slots: every reconnect gets a slot, and the slots come
    back."""
    eng = start_engine("--window-ms", "2", "--dedup-strategy", "exact", "--max-clients", "2")
    cycles = 6
    worker = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests/e2e/client_worker.py"),
            "forkcycle",
            eng.name,
            str(cycles),
            "1" if sync else "0",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": CHILD_PYTHONPATH},
        cwd=ROOT,
    )
    assert worker.stdin is not None and worker.stdout is not None
    try:
        assert worker.stdout.readline() == b"connected\n"
        line = worker.stdout.readline()
        assert line, worker.stderr.read().decode() if worker.stderr else ""
        out = json.loads(line)
        assert out["errors"] == []
        assert out["ok"] == 2 * cycles  # the inherited connections kept serving the parent
        # the children still live and hold copies of every descriptor they inherited: only
        # the parent's current connection holds a slot
        assert _until(lambda: _slot_pids(eng.name, 2).count(worker.pid) == 1, 2.0), _slot_pids(
            eng.name, 2
        )
        for child in out["children"]:
            os.kill(child, 0)  # alive
            assert child not in _slot_pids(eng.name, 2)
            # and it let go of its copies: no socket, no ring segment mapped (in its at-fork
            # hook, which runs when the child first gets a CPU: on a loaded machine that may
            # be after the parent has reported)
            assert _until(
                lambda child=child: not [s for s in _links(child) if s.startswith("socket:")], 10.0
            ), _links(child)
            with open(f"/proc/{child}/maps") as f:
                assert segment_name(eng.name, "ring") not in f.read()
        worker.stdin.write(b"\n")
        worker.stdin.flush()
        assert worker.wait(30) == 0, worker.stderr.read().decode() if worker.stderr else ""
    finally:
        if worker.poll() is None:
            worker.kill()  # the child exits too: its pipe's write end closes
            worker.wait()
        for f in (worker.stdin, worker.stdout, worker.stderr):
            if f is not None:
                f.close()
    assert _until(lambda: _slot_pids(eng.name, 2) == [0, 0], 2.0), _slot_pids(eng.name, 2)
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(segment_name(eng.name, "ring"))]


def test_another_holder_of_the_socket_does_not_keep_a_closed_connection_open(start_engine):
    """close() ends the connection for every holder of its socket (a shutdown, not only a
    close of this process's descriptor)."""
    eng = start_engine("--window-ms", "2", "--dedup-strategy", "exact", "--max-clients", "2")

    async def go() -> None:
        client = EngineClient(eng.name)
        assert await client.process({"query": "a"}) == {"answer": "A", "n": 1}
        conn = client._connection()
        holder = os.dup(conn.sock.fileno())  # as a child forked without our hooks would
        try:
            assert os.getpid() in _slot_pids(eng.name, 2)
            await client.close()
            assert _until(lambda: os.getpid() not in _slot_pids(eng.name, 2), 2.0)
        finally:
            os.close(holder)

    asyncio.run(go())


# --------------------------------------------------------------- reconnecting (item 6)


def test_reconnecting_to_a_stuck_engine_does_not_block_the_loop(start_engine):
    """After an engine restart, the next calls reconnect through the event loop: a stuck new
    engine costs each call its own timeout, and every other task runs on meanwhile."""
    eng = start_engine("--window-ms", "2", "--dedup-strategy", "exact")

    async def go() -> None:
        loop = asyncio.get_running_loop()
        client = EngineClient(eng.name)  # the handshake timeout is connect()'s 5 s
        assert await client.process({"query": "a"}) == {"answer": "A", "n": 1}
        eng.kill()
        with pytest.raises(EngineUnavailableError):
            await client.process({"query": "gone"}, timeout=2)
        t0 = time.monotonic()
        with pytest.raises(EngineUnavailableError, match="nothing listens"):
            await client.process({"query": "absent"}, timeout=0.5)  # no engine at all
        assert time.monotonic() - t0 < 0.4
        new = start_engine("--window-ms", "2", "--dedup-strategy", "exact")
        gaps: list[float] = []

        async def heartbeat() -> None:
            while True:
                t = loop.time()
                await asyncio.sleep(0.01)
                gaps.append(loop.time() - t)

        beat = asyncio.ensure_future(heartbeat())
        with _stopped(new.pid):
            for call in (
                client.process({"query": "b"}, timeout=0.5),
                client.process(
                    [{"query": "b"}, {"query": "c"}], timeout=0.5, return_exceptions=True
                ),
                _drain(client.process_streaming([{"query": "b"}], timeout=0.5)),
            ):
                t0 = time.monotonic()
                with pytest.raises(BatchTimeoutError, match="while connecting"):
                    await call
                elapsed = time.monotonic() - t0
                assert 0.45 <= elapsed < 1.0, elapsed
            await asyncio.sleep(0.05)
            assert len(gaps) > 50 and max(gaps) < 0.25, max(gaps)
        beat.cancel()
        # the engine runs again: the reconnect those calls started completes
        assert await client.process({"query": "d"}, timeout=10) == {"answer": "D", "n": 1}
        await client.close()

    asyncio.run(go())


async def _drain(agen: Any) -> list[Any]:
    return [item async for item in agen]


# --------------------------------------------------------------- timeouts (items 9, 11)


def test_a_stuck_engine_fails_each_call_at_its_timeout(start_engine):
    """process(timeout=t) waits t, not t + a grace, whatever the engine does; each request
    without an answer fails with BatchTimeoutError, as in embedded mode."""
    eng = start_engine("--window-ms", "2", "--dedup-strategy", "exact")

    def timed(t: float, elapsed: float) -> None:
        assert t - 0.01 <= elapsed < t + 0.3, elapsed

    async def go() -> None:
        client = EngineClient(eng.name)
        assert await client.process({"query": "a"}) == {"answer": "A", "n": 1}
        with _stopped(eng.pid):
            t0 = time.monotonic()
            with pytest.raises(BatchTimeoutError, match=r"caller's timeout \(0.2 s\)"):
                await client.process({"query": "b"}, timeout=0.2)
            timed(0.2, time.monotonic() - t0)
            t0 = time.monotonic()
            with pytest.raises(BatchTimeoutError):
                await client.process([{"query": "b"}, {"query": "c"}], timeout=0.2)
            timed(0.2, time.monotonic() - t0)
            t0 = time.monotonic()
            out = await client.process(
                [{"query": "b"}, {"query": "c"}], timeout=0.3, return_exceptions=True
            )
            timed(0.3, time.monotonic() - t0)
            assert [type(r) for r in out] == [BatchTimeoutError] * 2
            t0 = time.monotonic()
            done = await _drain(
                client.process_streaming([{"query": "b"}, {"query": "c"}], timeout=0.2)
            )
            timed(0.2, time.monotonic() - t0)
            assert sorted(d.index for d in done) == [0, 1]
            assert all(isinstance(d.error, BatchTimeoutError) for d in done)
        assert await client.process({"query": "e"}, timeout=10) == {"answer": "E", "n": 1}
        await client.close()

    asyncio.run(go())
    with stratabatch.connect(eng.name, sync=True) as client, _stopped(eng.pid):
        t0 = time.monotonic()
        with pytest.raises(BatchTimeoutError):
            client.process({"query": "s"}, timeout=0.2)
        timed(0.2, time.monotonic() - t0)


def _loops() -> list[Any]:
    import uvloop

    return [
        pytest.param(asyncio.new_event_loop, id="asyncio"),
        pytest.param(uvloop.new_event_loop, id="uvloop"),
    ]


@pytest.mark.parametrize("new_loop", _loops())
def test_an_answer_that_came_in_time_wins_over_the_timer(start_engine, new_loop):
    """The engine answered before the deadline but the client's loop was busy until after it:
    the answer is delivered, not a timeout (whichever of the timer and the doorbell's reader
    the loop runs first)."""
    eng = start_engine("--window-ms", "1", "--dedup-strategy", "exact")

    async def go() -> None:
        client = EngineClient(eng.name)
        assert await client.process({"query": "warm"}) == {"answer": "WARM", "n": 1}
        one = asyncio.ensure_future(client.process({"query": "late"}, timeout=0.3))
        many = asyncio.ensure_future(client.process([{"query": "x"}, {"query": "y"}], timeout=0.3))
        await asyncio.sleep(0)  # both calls queued their requests
        await asyncio.sleep(0)  # ... and the batch frame of that loop iteration left
        time.sleep(1.5)  # the loop is busy: the engine answers, then the deadlines pass
        # the timer runs before the doorbell's reader: as if the loop ran them in that order
        client._connection().bell.clear()
        assert (await one)["answer"] == "LATE"
        assert [r["answer"] for r in await many] == ["X", "Y"]
        await client.close()

    loop = new_loop()
    try:
        loop.run_until_complete(go())
    finally:
        loop.close()


def test_the_engines_own_timeout_reaches_the_caller_as_it_is(start_engine):
    """A BatchTimeoutError of the engine (processing_timeout) keeps its message: the client
    does not rewrite it into one about the caller's timeout."""
    eng = start_engine(
        "--window-ms",
        "2",
        "--dedup-strategy",
        "exact",
        "--processing-timeout",
        "1",
        handler="tests.e2e.handlers:faulty",
    )

    def engines(exc: BaseException | None) -> None:
        assert isinstance(exc, BatchTimeoutError)
        assert "processing_timeout=1s" in str(exc) and "caller" not in str(exc), str(exc)

    async def go() -> None:
        client = EngineClient(eng.name)
        t0 = time.monotonic()
        with pytest.raises(BatchTimeoutError) as ei:
            await client.process({"query": "h", "fault": "hang"}, timeout=5)
        engines(ei.value)
        assert time.monotonic() - t0 < 3.0
        with pytest.raises(BatchTimeoutError) as ei:
            await client.process([{"query": "h", "fault": "hang"}], timeout=5)
        engines(ei.value)
        out = await client.process(
            [{"query": "h", "fault": "hang"}], timeout=5, return_exceptions=True
        )
        engines(out[0])
        done = await _drain(client.process_streaming([{"query": "h", "fault": "hang"}], timeout=5))
        engines(done[0].error)
        await client.close()

    asyncio.run(go())


# --------------------------------------------------------------- unbounded timeouts (item 10)


def test_an_unbounded_timeout_means_no_deadline_in_both_modes(start_engine):
    eng = start_engine("--window-ms", "2", "--dedup-strategy", "exact")

    async def handler(requests: list) -> list:
        return [{"answer": r["query"].upper(), "n": len(requests)} for r in requests]

    async def calls(client: Any) -> list[Any]:
        out = []
        for timeout in (math.inf, 1e300, 1e9):
            out.append(await client.process({"query": "a"}, timeout=timeout))
            out.append(await client.process([{"query": "b"}], timeout=timeout))
            out.append(
                [
                    d.result
                    for d in await _drain(
                        client.process_streaming([{"query": "c"}], timeout=timeout)
                    )
                ]
            )
        return out

    async def refusals(client: Any) -> list[str]:
        out = []
        for timeout in (math.nan, -1, 0, -math.inf, "1", True):
            for call in (
                client.process({"query": "a"}, timeout=timeout),
                client.process([{"query": "a"}], timeout=timeout),
                _drain(client.process_streaming([{"query": "a"}], timeout=timeout)),
            ):
                with pytest.raises(InvalidRequestError) as ei:
                    await call
                out.append(str(ei.value))
        return out

    async def go() -> None:
        embedded = stratabatch.BatchProcessor(handler, dedup_strategy="exact", window_ms=2)
        client = EngineClient(eng.name)
        expected = [
            {"answer": "A", "n": 1},
            [{"answer": "B", "n": 1}],
            [{"answer": "C", "n": 1}],
        ] * 3
        assert await calls(embedded) == expected
        assert await calls(client) == expected
        assert await refusals(client) == await refusals(embedded)
        await embedded.close()
        await client.close()

    asyncio.run(go())
    with stratabatch.connect(eng.name, sync=True) as sync_client:
        assert sync_client.process({"query": "s"}, timeout=math.inf) == {"answer": "S", "n": 1}
