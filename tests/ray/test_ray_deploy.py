"""stratabatch.ray on a local 3-node Ray cluster (tests/ray/conftest.py): deployments of
batch functions and classes, handles and HTTP, errors, merged statistics and metrics."""

from __future__ import annotations

import sys

from ray import cloudpickle, serve

from stratabatch.ray import deployment

# the handlers below travel to the replicas by value (the workers cannot import this module)
cloudpickle.register_pickle_by_value(sys.modules[__name__])

REPLICA = {"num_cpus": 0.5}


async def upper(requests: list[dict]) -> list[str]:
    return [r["query"].upper() for r in requests]


async def test_a_function_through_a_handle(ray_cluster):
    app = deployment(
        upper,
        name="upper",
        route="serve",
        num_replicas=2,
        ray_actor_options=REPLICA,
        window_ms=5,
        dedup_strategy="exact",
    ).bind()
    handle = serve.run(app, name="fn", route_prefix="/fn")
    try:
        assert await handle.remote({"query": "hi"}) == "HI"
        assert await handle.process.remote([{"query": "a"}, {"query": "b"}]) == ["A", "B"]
    finally:
        serve.delete("fn")
