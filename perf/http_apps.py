"""The servers behind ``perf/bench_http.py``, other than the example with its engine.

* ``app``: ``examples/fastapi_app.py`` without batching, for ``uvicorn
  stratabatch.perf.http_apps:app``. The example's own app and route, with the name
  ``stratabatch`` in the example's module bound to a stand-in whose ``connect()`` returns a
  client that calls the handler directly with a batch of one (the handler named in
  ``$BENCH_HTTP_HANDLER``, ``module:attr``, resolved as ``stratabatch-engine --handler`` does).
  Everything else the route does (FastAPI's parsing, the error mapping, the response) is the
  example's, so the two differ only in how the request reaches the handler.
* ``sim_handler``: the handler factory of the duplicates scenario: the simulated backend of
  ``perf/backend.py`` (its cost model in ``$STRATABATCH_PERF_BACKEND``) counting its calls and
  items into ``$BENCH_HTTP_COUNTS/PID`` (two little-endian int64), so the bench can add up the
  backend items of every process.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from typing import Any

import stratabatch

from .backend import CostModel, SimBackend


class _Direct:
    """A stand-in for the engine client: one handler call per request."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler

    async def process(self, request: Any, **options: Any) -> Any:
        result = self.handler([request])
        if hasattr(result, "__await__"):
            result = await result
        return result[0]


class _Unbatched:
    """What the example sees as ``stratabatch``: the package, but ``connect`` calls directly."""

    def __init__(self) -> None:
        from stratabatch.cli import load_object, resolve_handler

        spec = os.environ.get("BENCH_HTTP_HANDLER", "examples.fastapi_app:answer_batch")
        self._client = _Direct(resolve_handler(load_object(spec)))

    def connect(self, name: str = "default", **options: Any) -> _Direct:
        return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(stratabatch, name)


def __getattr__(name: str) -> Any:
    # built on first use, in the uvicorn worker: the example is imported only for the app
    if name == "app":
        from examples import fastapi_app

        fastapi_app.stratabatch = _Unbatched()  # type: ignore[assignment]
        return fastapi_app.app
    raise AttributeError(name)


class _Counting:
    """The simulated backend, writing its calls and items to a per-process file after each call."""

    def __init__(self, backend: SimBackend, path: str | None) -> None:
        self.backend = backend
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600) if path else None

    async def __call__(self, requests: Sequence[Any]) -> list[Any]:
        out = await self.backend(requests)
        if self.fd is not None:
            os.pwrite(self.fd, struct.pack("<qq", self.backend.calls, self.backend.items), 0)
        return out


def sim_handler() -> _Counting:
    """Zero-argument factory of the counting simulated backend (``--handler`` target)."""
    folder = os.environ.get("BENCH_HTTP_COUNTS")
    path = os.path.join(folder, str(os.getpid())) if folder else None
    return _Counting(SimBackend(CostModel.from_env()), path)


def read_counts(folder: str) -> tuple[int, int]:
    """Backend calls and items, all processes that wrote into ``folder`` together."""
    calls = items = 0
    for entry in os.listdir(folder):
        with open(os.path.join(folder, entry), "rb") as f:
            data = f.read(16)
        if len(data) == 16:
            c, i = struct.unpack("<qq", data)
            calls, items = calls + c, items + i
    return calls, items
