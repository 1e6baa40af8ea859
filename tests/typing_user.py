"""A small typed user of stratabatch, checked by mypy in tests/test_typing.py (never run).

Each ``# reveal: T`` comment is the type mypy must reveal on its line, each ``# error: CODE``
an error mypy must report there; any other error fails the test.
"""

from __future__ import annotations

from typing import Any, reveal_type

import stratabatch
from stratabatch import BatchOptions, BatchProcessor, connect


async def answer(requests: list[dict[str, Any]]) -> list[str]:
    return [str(r["query"]) for r in requests]


def count(requests: list[dict[str, Any]]) -> list[int]:
    return [len(r) for r in requests]


@stratabatch.batch(window_ms=20, max_size=32, dedup_strategy="exact")
async def embed(texts: list[str]) -> list[list[float]]:
    return [[float(len(t))] for t in texts]


@stratabatch.batch
def shout(texts: list[str]) -> list[str]:
    return [t.upper() for t in texts]


class Model:
    @stratabatch.batch(max_size=8)
    async def run(self, requests: list[dict[str, Any]]) -> list[int]:
        return [1 for _ in requests]


@stratabatch.batch(engine="emb")
async def remote(texts: list[str]) -> list[float]:
    raise NotImplementedError  # the engine's handler answers


def options() -> BatchOptions:
    return {"window_ms": 5, "dedup_strategy": "exact"}


async def main() -> None:
    reveal_type(connect("x"))  # reveal: stratabatch.client.EngineClient
    reveal_type(connect("x", sync=True))  # reveal: stratabatch.client.SyncEngineClient
    batch = BatchProcessor(answer, window_ms=5)
    reveal_type(batch)  # reveal: stratabatch.processor.BatchProcessor[str]
    reveal_type(await batch.process({"query": "a"}))  # reveal: str
    reveal_type(await batch.process([{"query": "a"}]))  # reveal: list[str]
    reveal_type(BatchProcessor(count))  # reveal: stratabatch.processor.BatchProcessor[int]
    reveal_type(BatchProcessor(**options()))  # reveal: stratabatch.processor.BatchProcessor[Any]
    reveal_type(await embed("hi"))  # reveal: list[float]
    reveal_type(await embed.many(["a", "b"]))  # reveal: list[list[float]]
    reveal_type(await shout("hi"))  # reveal: str
    reveal_type(await Model().run({"query": "q"}))  # reveal: int
    reveal_type(Model().run.processor)  # reveal: stratabatch.processor.BatchProcessor[int]
    reveal_type(await remote("x"))  # reveal: float
    reveal_type(remote.processor)  # reveal: stratabatch.client.EngineClient
    BatchProcessor(answer, window_ms="50")  # error: call-overload
    stratabatch.batch(dedup_strategy="fuzzy")  # error: call-overload
    await embed(3)  # error: arg-type
