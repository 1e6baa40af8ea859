"""The simulated expensive backend and its cost model.

A call with n items takes ``overhead_ms + n * per_item_ms`` and costs ``n * price_per_item_usd``;
at most ``concurrency`` calls run at once (later ones wait for a slot, as a client-side limiter in
front of a rate-limited hosted API would make them). The default (30 ms + 3 ms/item, 4 concurrent,
$0.002 per item) is a hosted LLM or embedding API: tens of ms of round trip and queueing per call,
a few ms of model time per item, a small concurrency allowance per API key. docs/perf.md says why.

Every result names the request it answered (``answer_to``, its ``rid``), echoes its text, and the
call it came from (``call``, unique across processes, and ``batch``, the call's size), so the
harness can count calls and items from the outcomes alone and detect a wrong merge or an answer
delivered to the wrong caller.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

ENV_VAR = "STRATABATCH_PERF_BACKEND"
"""Environment variable through which a backend in another process (the engine) gets its model."""


@dataclass(frozen=True)
class CostModel:
    """Time and price of the simulated backend."""

    overhead_ms: float = 30.0
    """Fixed time of one call, whatever its size."""
    per_item_ms: float = 3.0
    """Added time per item in a call."""
    concurrency: int = 4
    """Calls that may run at once."""
    price_per_item_usd: float = 0.002
    """Price of one item."""

    def call_ms(self, n: int) -> float:
        """Duration of one call of ``n`` items."""
        return self.overhead_ms + n * self.per_item_ms

    def ideal_seconds(self, calls_needed: int, items: int) -> float:
        """Shortest time in which ``concurrency`` slots run ``items`` in ``calls_needed`` calls."""
        busy_ms = calls_needed * self.overhead_ms + items * self.per_item_ms
        return busy_ms / 1000 / self.concurrency

    def to_env(self) -> str:
        """This model as the JSON that :func:`from_env` reads."""
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> CostModel:
        """The model in ``$STRATABATCH_PERF_BACKEND`` (the default model when unset)."""
        raw = os.environ.get(ENV_VAR)
        return cls(**json.loads(raw)) if raw else cls()


def _answer(req: Any, call: str, n: int) -> dict[str, Any]:
    return {"answer_to": req.get("rid"), "query": req.get("query"), "call": call, "batch": n}


class SimBackend:
    """The backend as an asyncio batch handler: ``await backend(requests) -> results``.

    Args:
        model: the cost model.
        time_scale: multiplies every duration (tests use a small one).
    """

    def __init__(self, model: CostModel, time_scale: float = 1.0) -> None:
        self.model = model
        self.time_scale = time_scale
        self.calls = 0
        self.items = 0
        self.max_running = 0
        self._running = 0
        self._ids = itertools.count()
        self._prefix = f"{os.getpid()}-{id(self):x}"
        self._sem: asyncio.Semaphore | None = None

    async def __call__(self, requests: Sequence[Any]) -> list[dict[str, Any]]:
        """Answer one call: wait for a slot, sleep per the model, return one result per item."""
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.model.concurrency)
        n = len(requests)
        call = f"{self._prefix}-{next(self._ids)}"
        async with self._sem:
            self._running += 1
            self.max_running = max(self.max_running, self._running)
            try:
                await asyncio.sleep(self.model.call_ms(n) * self.time_scale / 1000)
            finally:
                self._running -= 1
        self.calls += 1
        self.items += n
        return [_answer(r, call, n) for r in requests]


class SyncSimBackend:
    """The same backend for threads: a blocking ``backend(requests) -> results``.

    Args:
        model: the cost model.
        time_scale: multiplies every duration.
    """

    def __init__(self, model: CostModel, time_scale: float = 1.0) -> None:
        self.model = model
        self.time_scale = time_scale
        self.calls = 0
        self.items = 0
        self._lock = threading.Lock()
        self._sem = threading.BoundedSemaphore(model.concurrency)
        self._ids = itertools.count()
        self._prefix = f"{os.getpid()}-{id(self):x}"

    def __call__(self, requests: Sequence[Any]) -> list[dict[str, Any]]:
        """Answer one call, blocking the calling thread for the call's duration."""
        n = len(requests)
        call = f"{self._prefix}-{next(self._ids)}"
        with self._sem:
            time.sleep(self.model.call_ms(n) * self.time_scale / 1000)
        with self._lock:
            self.calls += 1
            self.items += n
        return [_answer(r, call, n) for r in requests]


def engine_handler() -> SimBackend:
    """Zero-argument handler factory for ``stratabatch-engine``.

    Named as ``--handler stratabatch.perf.backend:engine_handler``.

    The cost model comes from ``$STRATABATCH_PERF_BACKEND`` (JSON of :class:`CostModel`).
    """
    return SimBackend(CostModel.from_env())
