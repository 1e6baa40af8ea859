"""Ray Serve ``@serve.batch`` through a DeploymentHandle, when the ``peers`` extra is installed.

One deployment replica batches with ``max_batch_size=max_size`` and
``batch_wait_timeout_s=window_ms / 1000`` and calls the simulated backend (same cost model, its
concurrency limit inside the replica); the harness process sends every request through the
handle at its arrival time. No dedup: ``@serve.batch`` has none. Skipped when ray is not
installed (``pip install "stratabatch[peers]"``).
"""

from __future__ import annotations

import importlib.util
import time
from typing import Any

from .backend import CostModel, SimBackend
from .modes import ModeRun, Progress, Settings, drive_open_loop
from .workload import Workload


class RayServeMode:
    """Ray Serve's batching as a peer."""

    name = "Ray Serve @serve.batch"
    batch_size = 0

    def unavailable(self) -> str | None:
        """None when ``ray.serve`` can be imported."""
        if importlib.util.find_spec("ray") is None:
            return 'ray is not installed (pip install "stratabatch[peers]")'
        return None

    async def run(self, workload: Workload, settings: Settings, progress: Progress) -> ModeRun:
        """Deploy one batching replica, drive it through its handle, shut Serve down."""
        import ray
        from ray import serve

        self.batch_size = settings.max_size
        model_env = settings.model.to_env()
        max_size, wait_s = settings.max_size, settings.window_ms / 1000
        time_scale = settings.time_scale

        @serve.deployment(max_ongoing_requests=max(1000, 2 * len(workload)))
        class Batcher:
            def __init__(self) -> None:
                import json

                self.backend = SimBackend(CostModel(**json.loads(model_env)), time_scale)

            @serve.batch(max_batch_size=max_size, batch_wait_timeout_s=wait_s)
            async def handle(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
                return await self.backend(requests)

            async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
                return await self.handle(request)

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        try:
            handle = serve.run(Batcher.bind(), name="stratabatch-perf", route_prefix=None)

            async def submit(payload: dict[str, Any]) -> Any:
                return await handle.remote(payload)

            c0 = time.process_time()
            outcomes = await drive_open_loop(workload, submit, progress, settings.timeout_s)
            cpu = time.process_time() - c0
        finally:
            serve.shutdown()
            ray.shutdown()
        return ModeRun(outcomes, cpu, {"cpu_is": "driver process only", "untested_here": True})
