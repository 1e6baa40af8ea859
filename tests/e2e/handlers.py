"""Batch handlers the e2e tests run inside real engine processes (``--handler``).

Each handler appends one line per handler item to the file named by ``SB_E2E_LOG`` (when set),
so a test can count exactly what reached the backend across all client processes.
"""

from __future__ import annotations

import asyncio
import os
import time


def _log(requests: list) -> None:
    path = os.environ.get("SB_E2E_LOG")
    if path:
        with open(path, "a") as f:
            f.write("".join(f"{r.get('query', '')}\n" for r in requests))


async def echo(requests: list) -> list:
    """Answer each request with its query upper-cased (and the number of the item's batch)."""
    _log(requests)
    return [{"answer": str(r.get("query", "")).upper(), "n": len(requests)} for r in requests]


async def slow_echo(requests: list) -> list:
    """:func:`echo` taking 1 s: duplicates that arrive while it runs coalesce into it."""
    _log(requests)
    await asyncio.sleep(1.0)
    return [{"answer": str(r.get("query", "")).upper(), "n": len(requests)} for r in requests]


def sync_echo(requests: list) -> list:
    """The sync twin of :func:`echo` (runs in the core's handler thread)."""
    _log(requests)
    return [{"answer": str(r.get("query", "")).upper()} for r in requests]


async def noop(requests: list) -> list:
    """The benchmark's handler: one small result per item, nothing else."""
    return [1] * len(requests)


async def faulty(requests: list) -> list:
    """Fail in the way the request's ``fault`` field asks for (else echo)."""
    kinds = {r.get("fault") for r in requests}
    if "raise" in kinds:
        raise KeyError("boom")
    if "count" in kinds:
        return [1] * (len(requests) + 1)
    if "hang" in kinds:
        await asyncio.sleep(30)
    out = []
    for r in requests:
        if r.get("fault") == "encode":
            out.append({"not": {1, 2, 3}})  # a set: msgpack cannot carry it
        elif r.get("fault") == "item":
            out.append(ValueError(f"bad item {r.get('query')}"))
        else:
            out.append({"answer": str(r.get("query", "")).upper()})
    return out


class Model:
    """A "model" loaded once per engine: ``--handler tests.e2e.handlers:Model``."""

    def __init__(self) -> None:
        self.loaded_at = time.time()

    async def __call__(self, requests: list) -> list:
        return [{"answer": str(r.get("query", "")).upper(), "model": True} for r in requests]


def make_model() -> Model:
    """A zero-argument factory: ``--handler tests.e2e.handlers:make_model``."""
    return Model()
