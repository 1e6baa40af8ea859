"""``@stratabatch.batch(engine=NAME)`` against a real engine process."""

from __future__ import annotations

import asyncio

import pytest

import stratabatch
from stratabatch import EngineUnavailableError
from stratabatch.client import EngineClient

HANDLER = "tests.e2e.decorator_handlers:upper"


async def test_engine_backed_function_merges_twins_in_the_engine(start_engine, tmp_path):
    log = tmp_path / "items.log"
    eng = start_engine(
        "--window-ms", "200", "--dedup-strategy", "exact", "--dedup-key", "text",
        handler=HANDLER, env={"SB_E2E_LOG": str(log)},
    )  # fmt: skip
    body_calls: list[list[str]] = []

    @stratabatch.batch(engine=eng.name, on_full="reject")
    async def shout(texts: list[str]) -> list[dict]:
        body_calls.append(texts)  # the engine's handler answers: never called here
        raise NotImplementedError

    @stratabatch.batch(engine=eng.name)
    async def ask(requests: list[dict]) -> list[dict]:
        raise NotImplementedError

    try:
        out = await asyncio.gather(shout("hello"), shout("hello"), shout("bye"))
        # str items travel as {dedup_key: text}, with the engine's dedup_key from the handshake
        assert out == [
            {"keys": ["text"], "text": "HELLO"},
            {"keys": ["text"], "text": "HELLO"},
            {"keys": ["text"], "text": "BYE"},
        ]
        assert log.read_text().splitlines() == ["['text']", "['text']"]  # the twin merged
        assert await ask.many([{"text": "x", "n": 1}]) == [{"keys": ["n", "text"], "text": "X"}]
        assert isinstance(shout.processor, EngineClient) and shout.processor.dedup_key == "text"
        stats = shout.stats()
        assert stats.total_requests == 4 and stats.duplicates == 1
        assert body_calls == []
        # the per-call reuse flag travels to the engine; forget asks the engine (reuse off: 0)
        assert await shout("bye", reuse=False) == {"keys": ["text"], "text": "BYE"}
        assert shout.forget() == 0
        await shout.close()
        assert shout.processor is not None  # a later use connects again
    finally:
        await shout.close()
        await ask.close()


async def test_engine_backed_method_shares_the_client_and_reports_a_missing_engine(
    start_engine, engine_name
):
    eng = start_engine("--dedup-strategy", "exact", handler=HANDLER)

    class Svc:
        @stratabatch.batch(engine=eng.name)
        async def run(self, texts: list[str]) -> list[dict]:
            raise NotImplementedError

    a, b = Svc(), Svc()
    assert a.run is b.run is Svc.run
    try:
        assert (await a.run("q"))["text"] == "Q"  # the engine's dedup_key: query by default
    finally:
        await Svc.run.close()

    @stratabatch.batch(engine=engine_name + "-none", connect_timeout=1.0)
    async def nobody(texts: list[str]) -> list[str]:
        raise NotImplementedError

    with pytest.raises(EngineUnavailableError, match="no stratabatch engine named"):
        await nobody("x")
