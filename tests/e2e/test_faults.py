"""Faults with real processes: killed clients, a killed engine, garbage in a ring, another uid,
exactly-once under random client kills."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any

import numpy as np
import pytest

import stratabatch
from stratabatch import EngineUnavailableError
from stratabatch.client import EngineClient
from stratabatch.ipc.segment import Segment, segment_name
from stratabatch.wire import CONTROL_MAGIC, CONTROL_VERSION, pack_message

from .conftest import run_workers

_SLOT_BASE, _SLOT_WORDS = 8, 4


def _slot_pids(name: str, slots: int = 64) -> list[int]:
    with Segment.attach(
        segment_name(name, "control"), magic=CONTROL_MAGIC, version=CONTROL_VERSION
    ) as seg:
        words = seg.array(np.int64, 0, _SLOT_BASE + _SLOT_WORDS * slots).copy()
    return [int(words[_SLOT_BASE + _SLOT_WORDS * s]) for s in range(slots)]


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _wait_line(p: subprocess.Popen, prefix: bytes) -> None:
    assert p.stdout is not None
    while True:
        line = p.stdout.readline()
        assert line, (p.stderr.read() if p.stderr else b"").decode()
        if line.startswith(prefix):
            return


def _result(p: subprocess.Popen, timeout: float = 60) -> dict:
    # read through the buffered file objects: lines already buffered by readline() would be
    # skipped by communicate(), which reads the raw descriptors
    assert p.stdout is not None and p.stderr is not None
    out = p.stdout.read()
    err = p.stderr.read()
    p.wait(timeout)
    p.stdout.close()
    p.stderr.close()
    assert p.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1])


def test_sigkill_of_a_client_mid_stream(start_engine):
    eng = start_engine("--window-ms", "2", "--dedup-strategy", "exact")
    fds_before = _fds(eng.pid)
    procs = run_workers([["stream", eng.name, "2000"] for _ in range(3)])
    for p in procs:
        _wait_line(p, b"done 100")
    victim = procs[0]
    victim.send_signal(signal.SIGKILL)
    t_kill = time.monotonic()
    victim.wait()
    victim.stdout.close()
    victim.stderr.close()
    while victim.pid in _slot_pids(eng.name):
        assert time.monotonic() - t_kill < 1.0, "the dead client's slot was not freed in 1 s"
        time.sleep(0.01)
    for p in procs[1:]:
        out = _result(p)
        assert out["outcomes"] == out["sent"] == 2000 and out["twice"] == 0
        assert out["n_errors"] == 0, out["errors"]
    deadline = time.monotonic() + 5
    while _fds(eng.pid) != fds_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _fds(eng.pid) == fds_before  # every client's socket, pidfd and doorbell closed
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(segment_name(eng.name, "ring"))]
    assert f"client left: pid {victim.pid}" in eng.log()


def test_sigkill_of_the_engine_fails_waiting_calls_and_clients_reconnect(start_engine):
    eng = start_engine(
        "--window-ms", "2", "--dedup-strategy", "exact", handler="tests.e2e.handlers:faulty"
    )

    async def go() -> None:
        client = EngineClient(eng.name)
        assert await client.process({"query": "before"}) == {"answer": "BEFORE"}
        calls = [
            asyncio.ensure_future(client.process({"query": f"h{i}", "fault": "hang"}))
            for i in range(5)
        ]
        await asyncio.sleep(0.3)
        t_kill = time.monotonic()
        eng.kill()
        for c in calls:
            with pytest.raises(EngineUnavailableError, match="died|closed"):
                await asyncio.wait_for(c, 2.0)
        assert time.monotonic() - t_kill < 1.0
        with pytest.raises(EngineUnavailableError):
            await client.process({"query": "nobody home"})
        # a new engine of the same name starts over the dead one's segments
        new = start_engine("--window-ms", "2", "--dedup-strategy", "exact")
        assert "reclaimed stale segment" in new.log()
        assert await client.process({"query": "after"}) == {"answer": "AFTER", "n": 1}
        await client.close()

    asyncio.run(go())


def test_garbage_in_one_ring_only_drops_that_client(start_engine):
    eng = start_engine("--window-ms", "2", "--dedup-strategy", "exact")

    async def go() -> None:
        good = EngineClient(eng.name)
        bad = run_workers([["garbage", eng.name]])[0]
        _wait_line(bad, b"connected")
        assert await good.process({"query": "one"}) == {"answer": "ONE", "n": 1}
        out = _result(bad)
        assert out["dropped"] and "closed the connection" in out["dropped"]
        # a client that corrupts its ring's header is dropped too
        evil = EngineClient(eng.name)
        conn = evil._connection()
        conn.requests._h64[0] = 1 << 40  # head far past anything published
        conn.engine_bell.ring()
        t0 = time.monotonic()
        while conn.dead is None and time.monotonic() - t0 < 5:
            await asyncio.sleep(0.01)
        assert conn.dead is not None
        for i in range(20):
            assert (await good.process({"query": f"q{i}"}))["answer"] == f"Q{i}"
        await good.close()
        await evil.close()

    asyncio.run(go())
    log = eng.log()
    assert "unreadable request frame" in log and "corrupt request ring" in log


_OTHER_UID_SCRIPT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(bytes.fromhex(sys.argv[2]))
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data[4:].decode("latin-1"))
"""


@pytest.mark.skipif(os.getuid() != 0, reason="changing uid needs root")
def test_another_uid_is_refused(start_engine):
    from stratabatch.ipc.frames import FRAME_VERSION
    from stratabatch.wire import PROTOCOL_VERSION

    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 that another uid can run")
    run_dir = tempfile.mkdtemp(prefix="sb-uid-")
    try:
        os.chmod(run_dir, 0o755)
        eng = start_engine("--dedup-strategy", "exact", env={"XDG_RUNTIME_DIR": run_dir})
        sock_dir = os.path.join(run_dir, "stratabatch")
        assert os.stat(sock_dir).st_mode & 0o777 == 0o700
        # open the door the directory mode keeps shut: SO_PEERCRED must still refuse
        os.chmod(sock_dir, 0o755)
        path = os.path.join(sock_dir, f"{eng.name}.sock")
        os.chmod(path, 0o777)
        hello = pack_message(
            {"op": "hello", "protocol": PROTOCOL_VERSION, "frame_version": FRAME_VERSION, "pid": 1}
        ).hex()
        proc = subprocess.run(
            [python, "-I", "-c", _OTHER_UID_SCRIPT, path, hello],
            user=65534,
            group=65534,
            capture_output=True,
            timeout=30,
        )
        assert proc.returncode == 0, proc.stderr.decode()
        assert "refused" in proc.stdout.decode("latin-1")
        assert "uid 65534" in proc.stdout.decode("latin-1")
        assert "client refused: pid" in eng.log() and "uid 65534" in eng.log()
        eng.stop()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def test_exactly_once_under_random_client_kills(start_engine):
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    eng = start_engine("--window-ms", "3", "--dedup-strategy", "exact")
    procs = run_workers([["stream", eng.name, "1500"] for _ in range(5)])
    for p in procs:
        _wait_line(p, b"done 0")
    victims = rng.sample(procs, 2)
    for v in victims:
        time.sleep(rng.uniform(0.0, 0.5))
        v.send_signal(signal.SIGKILL)
    for v in victims:
        v.wait()
        v.stdout.close()
        v.stderr.close()
    for p in procs:
        if p in victims:
            continue
        out = _result(p)
        assert out["outcomes"] == out["sent"] and out["twice"] == 0
        assert out["n_errors"] == 0, out["errors"]
    with stratabatch.connect(eng.name, sync=True) as client:
        st = client.get_stats()
    assert st.total_requests == st.unique_requests + st.duplicates + st.dropped + st.queue_depth


def test_sigterm_answers_every_queued_request_and_exits_0(start_engine):
    eng = start_engine(
        "--window-ms", "20000", "--max-wait-ms", "20000", "--dedup-strategy", "exact"
    )

    async def go() -> None:
        client = EngineClient(eng.name)
        calls = [asyncio.ensure_future(client.process({"query": f"w{i % 4}"})) for i in range(10)]
        await asyncio.sleep(0.3)  # queued in the engine, their window far away
        assert not any(c.done() for c in calls)
        t0 = time.monotonic()
        eng.proc.send_signal(signal.SIGTERM)
        results = await asyncio.wait_for(asyncio.gather(*calls), 5.0)
        assert [r["answer"] for r in results] == [f"W{i % 4}" for i in range(10)]
        assert time.monotonic() - t0 < 3.0
        with pytest.raises(EngineUnavailableError):
            await client.process({"query": "after"})
        await client.close()

    asyncio.run(go())
    assert eng.proc.wait(30) == 0, eng.log()
    eng.stop()
    log = eng.log()
    assert "shutdown: stopping (1 clients, 10 requests queued)" in log and "shutdown: done" in log
    assert not os.path.exists(eng.ready_line.split("socket=")[1].strip())
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(segment_name(eng.name, "x")[:-1])]


def _hostile_frames(rng: random.Random, n: int) -> list[bytes]:
    """Frames a broken or hostile client might push: every field wrong in some way."""
    import msgpack

    ints = [0, 1, -1, 2**31, -(2**31) - 1, 2**63 - 1, 2**64 - 1, 10**30]
    values = [
        None,
        True,
        1.5,
        "s",
        b"b",
        [],
        {},
        {"query": "q"},
        {"query": 5},
        {"embedding": [float("nan")]},
        {"embedding": "x"},
        {"embedding": [1.0] * 384},
        {"query": "q", "embedding": [0.0] * 384},
        {1: 2},
        [[[[[]]]]] * 3,
    ]
    out = []
    for i in range(n):
        kind = rng.randrange(8)
        if kind == 0:
            out.append(rng.randbytes(rng.randrange(1, 64)))
        elif kind == 1:  # the right shape, random field values
            frame = [
                rng.choice(ints + [i]),
                rng.choice(ints),
                rng.choice(ints),
                rng.choice(ints + [0, 5, 64 * 64]),
                rng.choice(values),
            ]
            try:
                out.append(msgpack.packb(frame))
            except (OverflowError, TypeError, ValueError):
                out.append(b"\x90")
        elif kind == 2:  # the wrong number of items
            out.append(msgpack.packb([i] * rng.randrange(0, 8)))
        elif kind == 3:  # nested deep
            v: Any = {"query": "deep"}
            for _ in range(rng.randrange(30, 200)):
                v = [v]
            out.append(msgpack.packb([i, 0, 0, -1, v]))
        elif kind == 4:  # a valid request, sometimes with a reused id
            out.append(msgpack.packb([rng.choice([7, 7, i]), 0, 0, -1, {"query": f"ok {i}"}]))
        elif kind == 5:  # truncated valid frame
            data = msgpack.packb([i, 0, 0, -1, {"query": "cut"}])
            out.append(data[: rng.randrange(1, len(data))])
        elif kind == 6:  # a batch of plain items, an id repeated in it or from before
            ids = [rng.choice([7, 7, i, 1000 * i + j]) for j in range(rng.randrange(1, 6))]
            out.append(msgpack.packb([[r, 0, 0, -1, {"query": f"b {r}"}] for r in ids]))
        else:  # a text frame: valid, a repeated id, a field of the wrong type or length
            n_items = rng.randrange(1, 6)
            ids = [rng.choice([7, i, 1000 * i + j, -1, "x"]) for j in range(n_items)]
            texts = [rng.choice(["t", "", 5, None, ["l"]]) for _ in range(n_items)]
            frame = [rng.choice(["query", "query", "other"]), ids, texts]
            if rng.random() < 0.2:
                frame[rng.randrange(1, 3)] = rng.choice([[], 3, ids[:-1]])
            out.append(msgpack.packb(frame))
    return out


def test_hostile_frames_never_take_the_engine_down(start_engine):
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    eng = start_engine("--window-ms", "2", "--dedup-strategy", "embedding")

    async def go() -> None:
        good = EngineClient(eng.name)
        for _round in range(8):
            evil = EngineClient(eng.name)
            conn = evil._connection()
            for frame in _hostile_frames(rng, 200):
                if conn.dead is not None or not conn.requests.try_push(frame):
                    break
            conn.engine_bell.ring()
            r = await good.process({"query": f"still there {_round}"}, timeout=10)
            assert r["answer"] == f"STILL THERE {_round}"
            await asyncio.sleep(0.05)
            conn.pending.clear()
            await evil.close()
        await good.close()

    asyncio.run(go())
    assert eng.proc.poll() is None  # alive; the fixture checks it exits 0
    assert "internal error" not in eng.log() and "Traceback" not in eng.log()


@pytest.mark.parametrize("strategy", ["exact", "embedding"])
def test_a_frame_repeating_an_id_gets_one_answer_per_item_and_the_repeat_an_error(
    start_engine, strategy
):
    """The engine takes an all-plain frame whole (the row lane's, or the general path's
    records); one that repeats an id goes item by item instead: each item is answered once,
    the repeat with an error naming it. Text and batch frames alike."""
    import msgpack

    from stratabatch.ipc.frames import FrameDecoder

    eng = start_engine("--window-ms", "2", "--dedup-strategy", strategy)

    async def go() -> None:
        client = EngineClient(eng.name)
        conn = client._connection()
        frames = [
            msgpack.packb(["query", [900001, 900002, 900001], ["a", "b", "c"]]),
            msgpack.packb([[900011, 0, 0, -1, {"query": "d"}], [900011, 0, 0, -1, {"query": "e"}]]),
            msgpack.packb(["query", [900021, 900022], ["f", "g"]]),  # taken whole
        ]
        for frame in frames:
            assert conn.requests.try_push(frame)
        conn.engine_bell.ring()
        # the loop is held here, so the client drains nothing: the test reads the ring
        answers: list[Any] = []
        dec = FrameDecoder()
        t0 = time.monotonic()
        while len(answers) < 7 and time.monotonic() - t0 < 10:
            for data in conn.responses.drain():
                answers += dec.responses(data)
            time.sleep(0.01)
        got = sorted(
            (r.id, r.status, r.value["answer"] if r.status == 0 else str(r.value)) for r in answers
        )
        assert [g[:2] for g in got] == [
            (900001, 0),
            (900001, 1),
            (900002, 0),
            (900011, 0),
            (900011, 1),
            (900021, 0),
            (900022, 0),
        ], got
        assert "already pending" in got[1][2] and "already pending" in got[4][2]
        assert [g[2] for g in got if g[1] == 0] == list("ABDFG")  # (the first of a repeat)
        await client.close()

    asyncio.run(go())
