"""Handlers for the engine's shutdown, fairness and failure-logging tests (``--handler``)."""

from __future__ import annotations

import asyncio

from .handlers import _log


async def stubborn(requests: list) -> list:
    """Never finishes: swallows every cancellation (a handler a hostile user might write)."""
    _log(requests)
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass


async def sleepy(requests: list) -> list:
    """Sleep as long as the longest ``sleep`` field of the batch asks, then echo."""
    _log(requests)
    await asyncio.sleep(max(float(r.get("sleep", 0)) for r in requests))
    return [{"answer": str(r.get("query", "")).upper()} for r in requests]


async def missing_key(requests: list) -> list:
    """Fails every batch the way a handler reading the wrong field does."""
    return [r["prompt"] for r in requests]
