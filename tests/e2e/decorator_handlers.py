"""Handlers for tests/e2e/test_decorator_engine.py: what an engine behind
``@stratabatch.batch(engine=NAME)`` runs."""

from __future__ import annotations

import os


async def upper(requests: list) -> list:
    """Each request's field names and its text upper-cased; one log line per handler item."""
    path = os.environ.get("SB_E2E_LOG")
    if path:
        with open(path, "a") as f:
            f.write("".join(f"{sorted(r)}\n" for r in requests))
    return [{"keys": sorted(r), "text": str(next(iter(r.values()))).upper()} for r in requests]
