"""The engine and its clients as real processes: dedup across processes, the handshake, the
client surface, handler faults, limits."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import time

import pytest

import stratabatch
from stratabatch import (
    BatchTimeoutError,
    EngineUnavailableError,
    HandlerError,
    InvalidRequestError,
    QueueFullError,
    RequestTooLargeError,
    StratabatchError,
)
from stratabatch.client import EngineClient
from stratabatch.ipc.counters import COUNTERS_MAGIC, COUNTERS_VERSION, CountersReader
from stratabatch.ipc.segment import Segment, segment_name
from stratabatch.wire import socket_path

from .client_worker import workload
from .conftest import run_workers


def _finish(procs: list[subprocess.Popen], timeout: float = 90.0) -> list[dict]:
    from .test_faults import _result

    return [_result(p, timeout) for p in procs]


def _wait_connected(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line.strip() == b"connected", line + (p.stderr.read() if p.stderr else b"")


def test_two_processes_same_query_one_window_one_handler_item(start_engine, tmp_path):
    log = tmp_path / "items.log"
    eng = start_engine(
        "--window-ms",
        "400",
        "--max-wait-ms",
        "400",
        "--dedup-strategy",
        "exact",
        env={"SB_E2E_LOG": str(log)},
    )
    barrier = tmp_path / "go"
    procs = run_workers(
        [["one", eng.name, str(barrier), "What is the capital of France?"] for _ in range(2)]
    )
    _wait_connected(procs)
    barrier.touch()
    outs = _finish(procs)
    assert [o["result"]["answer"] for o in outs] == ["WHAT IS THE CAPITAL OF FRANCE?"] * 2
    assert not any(o["numba_loaded"] for o in outs)  # clients stay light: no numba
    assert log.read_text().splitlines() == ["What is the capital of France?"]
    assert "client joined" in eng.log() and "client left" in eng.log()


def test_eight_clients_2000_requests_40_percent_duplicates(start_engine, tmp_path):
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    n, per = 8, 2000
    queries = [q for client in workload(seed, n, per) for q in client]
    unique = len(set(queries))
    # One window that closes as soon as every distinct query waits (the machine's two cores
    # are shared by nine processes, so the arrival spread is long); a duplicate arriving after
    # that joins its twin in the handler (which takes 1 s) by in-flight coalescing.
    log = tmp_path / "items.log"
    eng = start_engine(
        "--window-ms",
        "30000",
        "--max-wait-ms",
        "30000",
        "--max-size",
        str(unique),
        "--dedup-strategy",
        "exact",
        "--max-queue",
        "100000",
        handler="tests.e2e.handlers:slow_echo",
        env={"SB_E2E_LOG": str(log)},
    )
    barrier = tmp_path / "go"
    n, per = 8, 2000
    procs = run_workers(
        [["load", eng.name, str(barrier), str(seed), str(i), str(n), str(per)] for i in range(n)]
    )
    _wait_connected(procs)
    barrier.touch()
    outs = _finish(procs)
    assert all(o["sent"] == per and o["results"] == per and o["bad"] == 0 for o in outs), outs
    items = log.read_text().splitlines()
    assert len(items) == unique, (len(items), unique, eng.log()[-2000:])
    assert sorted(items) == sorted(set(queries))  # one handler item per distinct query
    with stratabatch.connect(eng.name, sync=True) as client:
        st = client.get_stats()
    assert st.total_requests == n * per
    assert st.unique_requests == unique
    assert st.duplicates == n * per - unique
    assert st.errors == st.timeouts == st.rejected == 0


async def test_client_surface_against_a_real_engine(start_engine):
    eng = start_engine("--window-ms", "20", "--dedup-strategy", "embedding")
    async with EngineClient(eng.name) as client:
        assert await client.process({"query": "hello"}) == {"answer": "HELLO", "n": 1}
        rs = await client.process(
            [{"query": "a"}, {"query": "b"}, {"query": "a"}], priority=3, timeout=10
        )
        assert [r["answer"] for r in rs] == ["A", "B", "A"]
        seen = [c async for c in client.process_streaming([{"query": "x"}, {"query": "x"}])]
        assert sorted(c.index for c in seen) == [0, 1]
        merged = [c for c in seen if c.merged_into is not None]
        assert len(merged) == 1 and merged[0].merged_into == 0 and merged[0].similarity == 1.0
        # a vector through the arena: the handler sees it, near twins merge
        vec = [1.0] + [0.0] * 383
        rs = await client.process(
            [
                {"query": "tell me a joke", "embedding": vec},
                {"query": "tell me a joke!", "embedding": vec},
            ]
        )
        assert rs[0] == rs[1] == {"answer": "TELL ME A JOKE", "n": 1}
        # refused in the caller, before anything is sent
        with pytest.raises(InvalidRequestError):
            await client.process("not a mapping")  # type: ignore[arg-type]
        with pytest.raises(InvalidRequestError, match="not msgpack-serializable"):
            await client.process({"query": {1, 2}})
        with pytest.raises(InvalidRequestError, match="dimension 2"):
            await client.process({"query": "v", "embedding": [1.0, 2.0]})
        with pytest.raises(InvalidRequestError, match="NaN"):
            await client.process({"query": "v", "embedding": [float("nan")] * 384})
        with pytest.raises(RequestTooLargeError):
            await client.process({"query": "x" * (2 << 20)})
        rs = await client.process([{"query": "ok"}, 5], return_exceptions=True)
        assert rs[0]["answer"] == "OK" and isinstance(rs[1], InvalidRequestError)
        st = client.get_stats()
        assert st.total_requests >= 9 and st.duplicates >= 2
        # the counters block the monitor reads says the same
        await asyncio.sleep(0.3)
        with Segment.attach(
            segment_name(eng.name, "counters"), magic=COUNTERS_MAGIC, version=COUNTERS_VERSION
        ) as seg:
            snap = CountersReader(seg.buf).snapshot()
        assert snap["total_requests"] == st.total_requests
        assert snap["duplicates"] == st.duplicates
        assert snap["engine_pid"] == eng.pid and snap["clients_connected"] == 1
        assert abs(snap["updated_at_ns"] - time.time_ns()) < 2e9
        assert [row["pid"] for row in snap["clients"]] == [os.getpid()]
        assert snap["clients"][0]["requests"] == st.total_requests
        assert snap["batch_size"]["count"] == st.total_batches
        assert snap["latency_ms"]["count"] == st.total_requests  # every outcome, once


def test_sync_client_from_threads(start_engine):
    from concurrent.futures import ThreadPoolExecutor

    eng = start_engine("--window-ms", "5", "--dedup-strategy", "exact")
    client = stratabatch.connect(eng.name, sync=True)
    assert stratabatch.connect(eng.name, sync=True) is client  # one per process
    with ThreadPoolExecutor(8) as pool:
        out = list(pool.map(lambda i: client.process({"query": f"t{i % 7}"}), range(200)))
    assert [o["answer"] for o in out] == [f"T{i % 7}" for i in range(200)]
    got = list(client.process_streaming([{"query": "s"}, {"query": "t"}]))
    assert sorted(c.result["answer"] for c in got) == ["S", "T"]
    client.close()
    assert stratabatch.connect(eng.name, sync=True) is not client
    stratabatch.connect(eng.name, sync=True).close()


@pytest.mark.parametrize("handler", ["tests.e2e.handlers:Model", "tests.e2e.handlers:make_model"])
def test_handler_may_be_a_class_or_a_factory(start_engine, handler):
    eng = start_engine("--dedup-strategy", "exact", "--window-ms", "5", handler=handler)
    with stratabatch.connect(eng.name, sync=True) as c:
        assert c.process({"query": "m"}) == {"answer": "M", "model": True}


async def test_handler_faults_reach_the_client_and_the_engine_serves_on(start_engine):
    eng = start_engine(
        "--window-ms",
        "5",
        "--dedup-strategy",
        "exact",
        "--processing-timeout",
        "0.5",
        handler="tests.e2e.handlers:faulty",
    )
    async with EngineClient(eng.name) as client:
        with pytest.raises(HandlerError) as ei:
            await client.process({"query": "a", "fault": "raise"})
        assert ei.value.exc_type == "KeyError" and "boom" in ei.value.exc_message
        with pytest.raises(HandlerError, match="returned 2 results for a batch of 1"):
            await client.process({"query": "b", "fault": "count"})
        with pytest.raises(BatchTimeoutError, match="processing_timeout"):
            await client.process({"query": "c", "fault": "hang"})
        with pytest.raises(HandlerError) as ei:
            await client.process({"query": "d", "fault": "encode"})
        assert ei.value.exc_type == "FrameError" and "cannot be sent" in str(ei.value)
        with pytest.raises(HandlerError) as ei:
            await client.process({"query": "e", "fault": "item"})
        assert ei.value.exc_type == "ValueError"
        assert await client.process({"query": "fine"}) == {"answer": "FINE"}
        st = client.get_stats()
        assert st.errors == 4 and st.timeouts == 1
    log = eng.log()  # a failing batch is logged, with its traceback the first time
    assert "the handler raised on a batch of 1: KeyError" in log and "Traceback" in log


async def test_caller_timeout_is_enforced_by_the_engine(start_engine):
    eng = start_engine(
        "--window-ms", "5", "--dedup-strategy", "exact", handler="tests.e2e.handlers:faulty"
    )
    async with EngineClient(eng.name) as client:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(BatchTimeoutError):
            await client.process({"query": "slow", "fault": "hang"}, timeout=0.3)
        assert loop.time() - t0 < 1.2
        assert await client.process({"query": "after"}) == {"answer": "AFTER"}


async def test_the_engine_drops_queued_work_whose_caller_timed_out(start_engine):
    # The engine expires a queued request at its caller's deadline (its tick's shared timer,
    # up to 10 ms late) and never hands it to the handler afterwards: the only batch is the one
    # that holds the handler's one slot.
    eng = start_engine(
        "--window-ms",
        "1",
        "--dedup-strategy",
        "exact",
        "--max-inflight-batches",
        "1",
        "--processing-timeout",
        "1",
        handler="tests.e2e.handlers:faulty",
    )
    async with EngineClient(eng.name) as client:
        hang = asyncio.ensure_future(client.process({"query": "h", "fault": "hang"}))
        await asyncio.sleep(0.1)  # it runs, holding the slot
        with pytest.raises(BatchTimeoutError):
            await client.process({"query": "queued"}, timeout=0.2)
        with pytest.raises(BatchTimeoutError, match="processing_timeout"):
            await hang
        assert await client.process({"query": "after"}) == {"answer": "AFTER"}
        st = client.get_stats()
        assert st.timeouts == 2 and st.total_batches == 2  # the hang's, then "after"'s
        assert st.total_requests == 3


def test_missing_engine_names_the_socket_path(engine_name):
    with pytest.raises(EngineUnavailableError) as ei:
        stratabatch.connect(engine_name)
    assert socket_path(engine_name) in str(ei.value)


def test_client_slots_limit_and_reuse(start_engine):
    eng = start_engine("--dedup-strategy", "exact", "--max-clients", "2")

    async def go() -> None:
        a, b = EngineClient(eng.name), EngineClient(eng.name)
        with pytest.raises(EngineUnavailableError, match="all 2 client slots are taken"):
            EngineClient(eng.name)
        await b.close()
        c = EngineClient(eng.name)  # the freed slot is reused
        assert (await c.process({"query": "x"}))["answer"] == "X"
        await a.close()
        await c.close()

    asyncio.run(go())
    assert "client refused" in eng.log()


def test_forked_child_gets_a_clear_error(start_engine):
    eng = start_engine("--dedup-strategy", "exact")
    client = stratabatch.connect(eng.name, sync=True)
    assert client.process({"query": "p"})["answer"] == "P"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            client.process({"query": "c"})
            msg = b"no error"
        except StratabatchError as exc:
            msg = str(exc).encode()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            msg = repr(exc).encode()
        os.write(w, msg)
        os._exit(0)
    os.close(w)
    msg = os.read(r, 4096)
    os.close(r)
    os.waitpid(pid, 0)
    assert b"forked" in msg and b"stratabatch.connect() in the child" in msg
    assert client.process({"query": "p2"})["answer"] == "P2"  # the parent is unaffected
    client.close()


async def test_a_full_ring_follows_on_full(start_engine):
    """The engine stops draining when its queue is full; the client's ring then fills up."""
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
        "--max-request-bytes",
        "200",
        "--max-result-bytes",
        "200",
        "--processing-timeout",
        "2",
        handler="tests.e2e.handlers:faulty",
    )  # (small limits: a small ring)
    flood = [{"query": f"f{i}", "fault": "hang"} for i in range(6000)]
    async with EngineClient(eng.name, on_full="reject") as client:
        with pytest.raises(QueueFullError, match="ring to engine .* is full"):
            await client.process(flood)
    async with EngineClient(eng.name, on_full="wait") as client:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(QueueFullError, match="still full"):
            await client.process(flood, timeout=0.5)
        assert loop.time() - t0 < 2.0
