"""The reuse cache's control surface in engine mode: ``forget`` over the client's socket and a
per-call ``reuse=False`` in the request frame's options, with both clients; a malformed forget
message or options map fails alone and the engine goes on."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgpack
import pytest

import stratabatch
from stratabatch import InvalidRequestError
from stratabatch.client import EngineClient
from stratabatch.ipc.frames import FrameDecoder

from .conftest import CHILD_PYTHONPATH


def _env(log: Path) -> dict[str, str]:
    # the engine runs the tree these tests import (a PYTHONPATH of the caller's comes first)
    path = CHILD_PYTHONPATH
    return {"PYTHONPATH": path, "SB_E2E_LOG": str(log)}


def _items(log: Path) -> int:
    """Handler items the engine ran so far (one line each)."""
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_forget_and_reuse_false_with_both_clients(start_engine, tmp_path):
    log = tmp_path / "items.log"
    eng = start_engine(
        "--window-ms", "2", "--dedup-strategy", "exact", "--reuse", "exact",
        "--reuse-ttl-s", "600", "--dedup-scope", "model", env=_env(log),
    )  # fmt: skip
    a, b = {"query": "q", "model": "a"}, {"query": "q", "model": "b"}
    with stratabatch.connect(eng.name, sync=True) as client:
        client.process([a, b])
        client.process([a, b])
        assert _items(log) == 2  # the second time from the cache
        assert client.forget({"model": "a"}) == 1
        client.process(a)
        assert _items(log) == 3
        client.process(b, reuse=False)
        client.process([b], reuse=False)
        assert list(client.process_streaming([b], reuse=False))[0].error is None
        assert _items(log) == 6
        client.process([a, b])
        assert _items(log) == 6
        with pytest.raises(TypeError, match="forget"):
            client.forget("a")
        with pytest.raises(InvalidRequestError, match="'modle' is not a dedup_scope field"):
            client.forget({"modle": "a"})
        with pytest.raises(InvalidRequestError, match="reuse must be True or False"):
            client.process(a, reuse="no")
        s = client.get_stats()
        assert s.reuse_entries == 2 and s.reuse_hits == 4

    async def go() -> None:
        client = EngineClient(eng.name)
        await client.process(a, reuse=False)
        await client.process([a], reuse=False)
        got = [c async for c in client.process_streaming([a, b], reuse=False)]
        assert [c.error for c in got] == [None, None]
        assert _items(log) == 10
        await client.process([a, b])
        assert _items(log) == 10
        with pytest.raises(TypeError, match="forget"):
            client.forget(["model"])
        assert client.forget({}) == 2
        assert client.forget() == 0
        await client.process(a)
        assert _items(log) == 11
        await client.close()

    asyncio.run(go())


def test_malformed_forget_messages_and_options_fail_alone(start_engine, tmp_path):
    eng = start_engine(
        "--window-ms", "2", "--dedup-strategy", "exact", "--reuse", "exact",
        "--dedup-scope", "model", env=_env(tmp_path / "items.log"),
    )  # fmt: skip

    async def go() -> None:
        client = EngineClient(eng.name)
        await client.process({"query": "x", "model": "a"})
        conn = client._connection()
        for fields, error in (
            ({}, "TypeError"),
            ({"scope": 5}, "TypeError"),
            ({"scope": ["model"]}, "TypeError"),
            ({"scope": {"nope": 1}}, "InvalidRequestError"),
        ):
            reply = conn.ask("forget", 5.0, **fields)
            assert reply["error"][0] == error, reply
        assert conn.ask("forget", 5.0, scope={"model": "a"})["dropped"] == 1
        # request frames with options: a bad map fails its request only
        frame = msgpack.packb(
            [
                [910001, 0, 0, -1, {"query": "y", "model": "a"}, {"reuse": 1}],
                [910002, 0, 0, -1, {"query": "y", "model": "a"}, {"nope": True}],
                [910003, 0, 0, -1, {"query": "y", "model": "a"}, "reuse"],
                [910004, 0, 0, -1, {"query": "y", "model": "a"}, {"reuse": False}],
                [910005, 0, 0, -1, {"query": "y", "model": "a"}],
            ]
        )
        assert conn.requests.try_push(frame)
        conn.engine_bell.ring()
        answers: list = []
        dec = FrameDecoder()
        t0 = time.monotonic()
        while len(answers) < 5 and time.monotonic() - t0 < 10:
            for data in conn.responses.drain():
                answers += dec.responses(data)
            time.sleep(0.01)
        got = sorted((r.id, r.status) for r in answers)
        assert got == [(910001, 1), (910002, 1), (910003, 1), (910004, 0), (910005, 0)], answers
        assert (await client.process({"query": "still", "model": "a"}))["answer"] == "STILL"
        conn.pending.clear()
        await client.close()

    asyncio.run(go())
    assert eng.proc.poll() is None
    assert "Traceback" not in eng.log()
