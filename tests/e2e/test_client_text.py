"""The asyncio client's text frames and answers frames against a real engine: one event-loop
iteration's calls of the key alone leave in a text frame, the rest in a batch frame, and every
caller gets its own answer (plain answers come back in an answers frame, twins with their merge
in a batch frame)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import stratabatch


def upper(requests: list[Any]) -> list[Any]:
    """The test's handler: the query upper-cased, a plain str (answers frames carry it)."""
    return [str(r.get("query", "")).upper() for r in requests]


@pytest.mark.parametrize("strategy", ["exact", "embedding"])  # (the row lane; the general path)
async def test_text_calls_mixed_with_others_each_get_their_own_answer(start_engine, strategy):
    eng = start_engine(
        "--window-ms", "2", "--dedup-strategy", strategy, "--cold-start", "wait",
        handler="tests.e2e.test_client_text:upper",
    )  # fmt: skip
    client = stratabatch.connect(eng.name)
    try:
        requests: list[dict[str, Any]] = [{"query": f"text {i}"} for i in range(200)]
        requests += [{"query": f"text {i}"} for i in range(0, 200, 7)]  # twins
        requests += [{"query": f"héllo {i}"} for i in range(20)]  # not ASCII
        requests += [{"query": f"two {i}", "user": i} for i in range(20)]  # another field
        for _ in range(3):
            answers = await asyncio.gather(*(client.process(r) for r in requests))
            assert answers == [r["query"].upper() for r in requests]
            got = await asyncio.gather(
                *(client.process({"query": f"p {i}"}, priority=1) for i in range(10)),
                *(client.process({"query": f"t {i}"}, timeout=30) for i in range(10)),
            )
            assert got == [f"P {i}" for i in range(10)] + [f"T {i}" for i in range(10)]
            # calls with a timeout alone in their iteration: a text frame with deadlines
            got = await asyncio.gather(
                *(client.process({"query": f"d {i % 7}"}, timeout=30) for i in range(30))
            )
            assert got == [f"D {i % 7}" for i in range(30)]
    finally:
        await client.close()
    assert "Traceback" not in eng.log() and "internal error" not in eng.log()
