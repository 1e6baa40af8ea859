"""The seed's "High-Traffic API" use case, with every uvicorn worker sharing one engine.

Run an engine, then the app with as many workers as you like::

    stratabatch-engine --handler examples.fastapi_app:answer_batch --name api --window-ms 50
    uvicorn examples.fastapi_app:app --workers 4

Each worker process connects to the engine once (``stratabatch.connect()`` returns the
process's one client; it is made on the first request, after uvicorn has forked the workers).
Identical questions that reach different workers in the same window cost one handler item.
``GET /api/stats`` shows the engine's counters, for all workers together.

``STRATABATCH_ENGINE`` names the engine (default ``api``).

Each worker settles its garbage collector once it has started (:func:`lifespan`, with
``stratabatch.gctune.settle()``, undone at shutdown): a request waiting for the engine lives
through young collections, so without it the worker's full collections come often and walk
every object of FastAPI, pydantic and the rest of the process (27 ms each; ~20 us of a
worker's CPU a request under perf/bench_http.py's load, docs/perf.md).
"""

from __future__ import annotations

import gc
import itertools
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException

import stratabatch
from stratabatch.gctune import settle

ENGINE = os.environ.get("STRATABATCH_ENGINE", "api")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Settle the worker's garbage collector after its start-up (``gc.freeze()`` of what the
    imports made, a higher young threshold; see ``stratabatch.gctune``), and undo it at
    shutdown."""
    before = settle()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


app = FastAPI(title="stratabatch high-traffic API example", lifespan=lifespan)
_calls = itertools.count(1)  # handler calls, numbered in the engine


async def answer_batch(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The engine's batch handler: one call per batch of unique questions.

    A stand-in for an expensive backend (an LLM, a search index): it answers each question
    and says which call answered it and how many questions shared that call.
    """
    call = next(_calls)
    return [
        {"answer": f"answer to: {r['query']}", "batch_size": len(requests), "call": call}
        for r in requests
    ]


@app.post("/api/query")
async def query(request: dict[str, Any]) -> Any:
    """Answer one question through the shared engine (the seed's ``batch.process(request)``)."""
    try:
        result = await stratabatch.connect(ENGINE).process(request, timeout=30)
    except stratabatch.InvalidRequestError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    except stratabatch.BatchTimeoutError as exc:
        raise HTTPException(status_code=504, detail=str(exc)) from None
    except (stratabatch.QueueFullError, stratabatch.EngineUnavailableError) as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from None
    return {**result, "worker": os.getpid()}


@app.get("/api/stats")
async def stats() -> dict[str, Any]:
    """The engine's statistics, all workers together."""
    st = stratabatch.connect(ENGINE).get_stats()
    return {
        "total_requests": st.total_requests,
        "unique_requests": st.unique_requests,
        "duplicates": st.duplicates,
        "total_batches": st.total_batches,
        "dedup_rate": st.dedup_rate,
        "worker": os.getpid(),
    }
