"""The gate the Ray tests hold their handler at, and that handler.

A phase's requests wait in the handler until the test opens the gate: what the replicas took
(a window, a coalesced call, the requests in flight at a fault) is then known, not left to the
scheduler. One gate a module's cluster, under :data:`GATE`.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from ray import cloudpickle

# the handler travels to the replicas by value (the workers cannot import the tests)
cloudpickle.register_pickle_by_value(sys.modules[__name__])

GATE = ("stratabatch-test-gate", "stratabatch-tests")  # (name, namespace)


async def gated(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One answer per handler item: which item (a fresh id) on which replica, once the gate
    opens. Requests that arrive meanwhile wait in the window or coalesce with the held call."""
    from uuid import uuid4

    import ray
    from ray import serve

    await ray.get_actor(GATE[0], namespace=GATE[1]).wait.remote()
    replica = serve.get_replica_context().replica_id.unique_id
    return [{"text": r["query"], "item": uuid4().hex, "replica": replica} for r in requests]


class Gate:
    """Holds the handler's calls until the test opens it."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()

    async def wait(self) -> None:
        await self.opened.wait()

    async def open(self) -> None:
        self.opened.set()
