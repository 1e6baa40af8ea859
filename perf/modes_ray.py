"""Ray Serve modes, when ``ray[serve]`` is installed (``pip install "stratabatch[ray]"``).

* ``Ray Serve @serve.batch`` (the peer): one replica whose ``__call__`` awaits a
  ``@serve.batch`` method (``max_batch_size=max_size``, ``batch_wait_timeout_s=window_ms /
  1000``, ``max_concurrent_batches`` = the backend's concurrency, as a user who knows the
  backend takes 4 calls at once sets it; the default, 1, would leave 3 slots idle) that calls
  the simulated backend. No dedup: ``@serve.batch`` has none.
* ``stratabatch on Ray Serve``: ``stratabatch.ray.deployment`` over the same backend, one
  replica holding a ``BatchProcessor`` with the run's window and max_size, embedding dedup
  (the default strategy) and ``max_inflight_batches`` = the backend's concurrency, the twins
  router; requests go straight to the batch deployment's handle (as
  ``stratabatch.ray.batch_handle`` gives it).

One replica each, so both hold the same backend budget as every other mode (many replicas and
the router are what ``perf/bench_ray.py`` measures, on a 3-node cluster). Each run starts a
local Ray (``ray.init``, 2 CPUs, no dashboard), deploys, sends one warm-up request (the handle's
router and the replica's dedup kernels, before the clock), then every request from this process
through the handle at its arrival time, and shuts Ray down. Serve's high-throughput mode
(``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``) is set while Ray starts, unless the environment already
says otherwise (the notes of each run say what this process's Serve read).
CPU: this process and every Ray process it started (``/proc``), over the run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

from .backend import CostModel, SimBackend
from .benchutil import cpu_delta_s, tree_cpu_s
from .modes import ModeRun, Progress, Settings, drive_open_loop
from .workload import Workload

THROUGHPUT_OPTIMIZED = "RAY_SERVE_THROUGHPUT_OPTIMIZED"
APP = "stratabatch-perf"
BATCH = "answers"


def ray_unavailable() -> str | None:
    """None when ``ray`` is installed (found without importing it), else why the modes skip."""
    if importlib.util.find_spec("ray") is None:
        return 'ray is not installed (pip install "stratabatch[ray]")'
    return None


async def _drive(
    app: Any, target: str | None, workload: Workload, settings: Settings, progress: Progress
) -> ModeRun:
    """Start Ray, deploy ``app``, send the workload through a handle, stop Ray.

    ``target``: the deployment to call straight (None: the application's ingress handle).
    """
    with _throughput_optimized():
        import ray
        from ray import serve

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    serve_log = logging.getLogger("ray.serve")  # its INFO lines would cut into the progress bar
    level = serve_log.level
    serve_log.setLevel(logging.WARNING)
    try:
        serve.start(proxy_location="Disabled")
        app_handle = serve.run(app, name=APP, route_prefix=None)
        handle = app_handle if target is None else serve.get_deployment_handle(target, APP)

        async def submit(payload: dict[str, Any]) -> Any:
            return await handle.remote(payload)

        await submit({"query": "warm-up", "rid": -1})  # the handle's router, the replica's kernels
        before = tree_cpu_s([os.getpid()])
        outcomes = await drive_open_loop(workload, submit, progress, settings.timeout_s)
        cpu = cpu_delta_s(before, tree_cpu_s([os.getpid()]))
    finally:
        # not serve.shutdown(): it waits out every replica's graceful stop (30 s here); Ray's
        # end stops them, and the next serve.start() in this process makes a new client
        ray.shutdown()
        serve_log.setLevel(level)
    return ModeRun(
        outcomes,
        cpu,
        {
            "cpu_is": "this process (senders, handle) and every Ray process it started, "
            "from the first arrival to the last answer",
            "ray_serve_throughput_optimized": _serve_constant("RAY_SERVE_THROUGHPUT_OPTIMIZED"),
        },
    )


@contextlib.contextmanager
def _throughput_optimized() -> Iterator[None]:
    """``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` while Ray starts (its processes keep it; this one
    reads it when it first imports ``ray.serve``), unless the environment says otherwise; the
    environment as it was afterwards."""
    before = os.environ.get(THROUGHPUT_OPTIMIZED)
    if before is None:
        os.environ[THROUGHPUT_OPTIMIZED] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(THROUGHPUT_OPTIMIZED, None)


def _serve_constant(name: str) -> Any:
    """What this process's Serve read for ``name`` when it was imported."""
    from ray.serve._private import constants

    return getattr(constants, name, None)


class RayServeMode:
    """Ray Serve's batching as a peer (one replica)."""

    name = "Ray Serve @serve.batch"
    batch_size = 0

    def unavailable(self) -> str | None:
        """None when ``ray`` is installed."""
        return ray_unavailable()

    async def run(self, workload: Workload, settings: Settings, progress: Progress) -> ModeRun:
        """Deploy one batching replica, drive it through its handle, shut Serve down."""
        with _throughput_optimized():
            from ray import serve

        self.batch_size = settings.max_size
        model_env = settings.model.to_env()
        max_size, wait_s = settings.max_size, settings.window_ms / 1000
        concurrency = settings.model.concurrency
        time_scale = settings.time_scale

        @serve.deployment(
            max_ongoing_requests=max(1000, 2 * len(workload)),
            ray_actor_options={"num_cpus": 0},
        )
        class Batcher:
            def __init__(self) -> None:
                self.backend = SimBackend(CostModel(**json.loads(model_env)), time_scale)

            @serve.batch(
                max_batch_size=max_size,
                batch_wait_timeout_s=wait_s,
                max_concurrent_batches=concurrency,
            )
            async def handle(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
                return await self.backend(requests)

            async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
                return await self.handle(request)

        app = Batcher.bind()  # type: ignore[attr-defined]
        return await _drive(app, None, workload, settings, progress)


class StratabatchServeMode:
    """``stratabatch.ray`` on one Serve replica, the twins router, embedding dedup."""

    name = "stratabatch on Ray Serve"
    batch_size = 0
    dedup = "embedding"
    """(The CLI compiles this strategy's kernels before any mode runs.)"""

    def unavailable(self) -> str | None:
        """None when ``ray`` is installed (``stratabatch.ray`` needs nothing else)."""
        return ray_unavailable()

    async def run(self, workload: Workload, settings: Settings, progress: Progress) -> ModeRun:
        """Deploy the processor's replica, drive it through the batch handle, shut down."""
        with _throughput_optimized():
            from stratabatch.ray import deployment

        self.batch_size = settings.max_size
        dep = deployment(
            SimBackend,
            name=BATCH,
            num_replicas=1,
            route="twins",
            max_ongoing_requests=max(1000, 2 * len(workload)),
            ray_actor_options={"num_cpus": 0},
            window_ms=settings.window_ms,
            max_size=settings.max_size,
            dedup_strategy=self.dedup,
            max_inflight_batches=settings.model.concurrency,
            max_queue=max(10_000, 2 * len(workload)),
            processing_timeout=settings.timeout_s,
            cold_start="wait",
        )
        app = dep.bind(settings.model, settings.time_scale)
        return await _drive(app, BATCH, workload, settings, progress)
