"""Faults under the twin router, on the module's Ray cluster (tests/ray/conftest.py): a replica
killed mid-batch and mid-traffic, and a node removed with its replica. Every caller gets
exactly one outcome (its right value, or a documented error: Ray's RayActorError family, "may
have run"), within its timeout; the dead replica's keys move to the replicas left, and twins
merge there again.

The handler waits for a gate actor, so that the requests of a phase are all taken by the
replicas (their handle calls assigned) before the fault: what is in flight is known, not left
to the scheduler.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections import Counter
from typing import Any

import ray
from ray import cloudpickle, serve
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from stratabatch.dedup import normalize_key
from stratabatch.ray import batch_handle, coalescing_handle, deployment, forget, get_stats
from stratabatch.rayrouter import live_router, rendezvous, route_key
from tests.ray.gate import GATE, Gate, gated

# the handlers below travel to the replicas by value (the workers cannot import this module)
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SEED = 20261207
TIMEOUT_S = 30.0  # each request's own timeout (stratabatch's), and the wait for each outcome
REPLICA = {"num_cpus": 0.5}


def on_head() -> NodeAffinitySchedulingStrategy:
    """On the head node, which no test takes down (the driver runs there)."""
    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)


def new_gate() -> Any:
    return (
        ray.remote(num_cpus=0)(Gate)
        .options(name=GATE[0], namespace=GATE[1], scheduling_strategy=on_head())
        .remote()
    )


class Caller:
    """A second ingress: a handle held by an actor on the head node."""

    def __init__(self, app: str) -> None:
        self.handle = batch_handle(app)

    async def send(self, request: dict[str, Any], timeout: float) -> Any:
        """The request's result as an ObjectRef, once a replica has taken it."""
        return await self.handle.remote(request, timeout=timeout)._to_object_ref()


class Traffic:
    """Requests through two ingresses (this process's handle and the caller actor's), each
    a Ray ObjectRef once assigned to a replica."""

    def __init__(self, app: str) -> None:
        self.direct = batch_handle(app)
        self.caller = (
            ray.remote(num_cpus=0)(Caller).options(scheduling_strategy=on_head()).remote(app)
        )

    async def send(self, requests: list[dict[str, Any]]) -> list[Any]:
        """Send each request through one ingress, in turn; their refs once all are taken."""
        sends = []
        for i, r in enumerate(requests):
            if i % 2:
                sends.append(self.caller.send.remote(r, TIMEOUT_S))
            else:
                sends.append(self.direct.remote(r, timeout=TIMEOUT_S)._to_object_ref())
        return list(await asyncio.wait_for(asyncio.gather(*sends), TIMEOUT_S))

    def close(self) -> None:
        ray.kill(self.caller)


def is_replica_death(error: BaseException) -> bool:
    """A documented error for a request whose replica died: Ray's RayActorError family
    (ActorDiedError; ActorUnavailableError while the node is unreachable), maybe wrapped in
    a RayTaskError. The request may have run."""
    kinds = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)
    return isinstance(error, kinds) or isinstance(getattr(error, "cause", None), kinds)


async def outcomes(refs: list[Any]) -> list[Any]:
    """Each ref's value or error; a ref with neither within TIMEOUT_S fails the test."""

    async def one(ref: Any) -> Any:
        try:
            return await asyncio.wait_for(ref, TIMEOUT_S)
        except asyncio.TimeoutError:
            raise AssertionError(f"no outcome within {TIMEOUT_S} s") from None
        except Exception as e:  # noqa: BLE001 - the error is the outcome
            return e

    return list(await asyncio.gather(*(one(r) for r in refs)))


def check(requests: list[dict[str, Any]], got: list[Any]) -> tuple[list[dict], list[int]]:
    """Every outcome is the request's right value or a replica death; (values, failed idx)."""
    values, failed = [], []
    for i, (r, g) in enumerate(zip(requests, got, strict=True)):
        if isinstance(g, BaseException):
            assert is_replica_death(g), f"request {i}: undocumented error {g!r}"
            failed.append(i)
        else:
            assert normalize_key(g["text"]) == normalize_key(r["query"]), (r, g)
            values.append(g)
    return values, failed


def live_replicas(app: str, name: str) -> list[str]:
    prefix = f"SERVE_REPLICA::{app}#{name}#"
    return sorted(
        a["name"][len(prefix) :]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(prefix)
    )


def twin_pairs(n: int, tag: str, rng: random.Random) -> list[dict[str, Any]]:
    """``n`` exact twin pairs, flattened: requests 2i and 2i + 1 are twins."""
    out = []
    for i in range(n):
        text = f"{tag}: status of ticket {i}-{rng.randrange(10**6)}?"
        out += [{"query": text}, {"query": "  " + text.upper()}]
    return out


async def fault_mid_batch(
    app: str, name: str, traffic: Traffic, fault: Any, rng: random.Random
) -> str:
    """Twins in flight on every replica, held by the gate; then ``fault()`` (returns the id of
    the replica it took down), more requests while the routers may still count the dead
    replica, and the gate opens. Checks every outcome; returns the dead replica."""
    before = live_replicas(app, name)
    gate = new_gate()
    try:
        held_reqs = twin_pairs(60, "held", rng)
        held_refs = await traffic.send(held_reqs)  # all taken: in the replicas' windows
        dead = await asyncio.to_thread(fault)
        after_reqs = twin_pairs(30, "after", rng)
        after_sends = asyncio.ensure_future(traffic.send(after_reqs))
        await asyncio.sleep(0)
        await gate.open.remote()
        after_refs = await after_sends
        got_held = await outcomes(held_refs)
        got_after = await outcomes(after_refs)
    finally:
        ray.kill(gate)
    values, failed = check(held_reqs, got_held)
    keyed_dead = {i for i, r in enumerate(held_reqs) if rendezvous(route_key(r), before) == dead}
    kinds = Counter(type(got_held[i]).__name__ for i in failed)
    print(
        f"{app}: {len(held_reqs)} in flight, {len(keyed_dead)} keyed to the dead replica; "
        f"{len(failed)} failed ({dict(kinds)}), {len(values)} answered"
    )
    assert keyed_dead, "no request was in flight on the replica taken down"
    assert set(failed) <= keyed_dead  # only the dead replica's callers fail
    assert len(failed) >= 0.9 * len(keyed_dead)  # (a twin's answer is its leader's)
    assert all(v["replica"] != dead for v in values)
    # sent right after the fault: Serve retries a request no replica took, so it is answered
    values, failed = check(after_reqs, got_after)
    print(f"{app}: {len(after_reqs)} sent after the fault, {len(failed)} failed")
    assert all(v["replica"] != dead for v in values)
    return dead


async def dedup_resumes(app: str, traffic: Traffic, dead: str, rng: random.Random) -> None:
    """Twins merge again, each at its key's replica among the replicas the routers know now
    (those that answer: the ones left, and a replacement once Serve has started one); in
    rounds until every router has caught up."""
    deadline = asyncio.get_running_loop().time() + 60.0
    while True:
        gate = new_gate()
        try:
            reqs = twin_pairs(40, "resume", rng)
            refs = await traffic.send(reqs)
            await gate.open.remote()
            got = await outcomes(refs)
        finally:
            ray.kill(gate)
        values, failed = check(reqs, got)
        view = sorted({v["replica"] for v in values})
        merged = sum(
            isinstance(a, dict) and isinstance(b, dict) and a["item"] == b["item"]
            for a, b in zip(got[0::2], got[1::2], strict=True)
        )
        at_key = sum(
            v["replica"] == rendezvous(route_key(r), view)
            for r, v in zip(reqs, got, strict=True)
            if isinstance(v, dict)
        )
        print(f"{app}: resumed on {view}: {merged}/40 twins merged, {at_key}/80 at their key's")
        assert dead not in view
        if not failed and merged >= 0.99 * 40 and at_key == len(reqs):
            return
        assert asyncio.get_running_loop().time() < deadline, "dedup did not resume in 60 s"
        await asyncio.sleep(1.0)


async def coalesced_fault(app: str, name: str, rng: random.Random) -> None:
    """Requests through a coalescing handle, one call a replica, held by the gate; a replica
    is killed: the requests of its call fail with a replica death, all others are answered,
    each within its timeout."""
    handle = coalescing_handle(app)
    gate = new_gate()
    try:
        await gate.open.remote()
        await handle.remote({"query": "warm up"}, timeout=TIMEOUT_S)  # (the router is made)
    finally:
        ray.kill(gate)
    deadline = asyncio.get_running_loop().time() + 60.0
    while len(live_replicas(app, name)) != 3 or len(live_router(app, name).replica_ids) != 3:
        assert asyncio.get_running_loop().time() < deadline, "no third replica in 60 s"
        await asyncio.sleep(0.5)
    view = live_router(app, name).replica_ids
    gate = new_gate()
    try:
        reqs = twin_pairs(40, "coalesced", rng)
        calls0 = handle.calls
        expected = (await asyncio.to_thread(get_stats, app)).total_requests + len(reqs)
        futs = [handle.remote(r, timeout=TIMEOUT_S) for r in reqs]  # one loop turn
        await asyncio.sleep(0)
        assert handle.calls - calls0 <= 3  # (one call a replica)
        while (await asyncio.to_thread(get_stats, app)).total_requests < expected:
            assert asyncio.get_running_loop().time() < deadline + TIMEOUT_S, "not all taken"
            await asyncio.sleep(0.2)  # (until every call is on its replica, in the handler)
        dead = view[0]
        actor = ray.get_actor(f"SERVE_REPLICA::{app}#{name}#{dead}", namespace="serve")
        ray.kill(actor, no_restart=True)
        await gate.open.remote()
        got = await outcomes(futs)
    finally:
        ray.kill(gate)
    values, failed = check(reqs, got)
    keyed_dead = {i for i, r in enumerate(reqs) if rendezvous(route_key(r), view) == dead}
    print(
        f"{app}, coalesced: {len(reqs)} in {handle.calls - calls0} calls, "
        f"{len(keyed_dead)} keyed to the killed replica; {len(failed)} failed"
    )
    assert keyed_dead and set(failed) == keyed_dead  # its call's requests, and only those
    assert all(v["replica"] != dead for v in values)


async def test_replica_killed_mid_batch_and_mid_traffic(ray_cluster: Any) -> None:
    rng = random.Random(SEED)
    print("seed", SEED)
    app = deployment(
        gated,
        name="kill",
        num_replicas=3,
        ray_actor_options=REPLICA,
        window_ms=20,
        max_size=64,
        dedup_strategy="exact",
        reuse="exact",
        reuse_ttl_s=3600,
    ).bind()
    serve.run(app, name="kill", route_prefix="/kill")
    traffic = Traffic("kill")
    try:

        def kill() -> str:
            victim = live_replicas("kill", "kill")[0]
            actor = ray.get_actor(f"SERVE_REPLICA::kill#kill#{victim}", namespace="serve")
            ray.kill(actor, no_restart=True)
            return victim

        dead = await fault_mid_batch("kill", "kill", traffic, kill, rng)
        await dedup_resumes("kill", traffic, dead, rng)
        await coalesced_fault("kill", "kill", rng)
        # two replicas were killed: their entries went with them, and forget reaches the
        # live ones (without an error for the dead): it drops what get_stats says they hold
        held = (await asyncio.to_thread(get_stats, "kill")).reuse_entries
        assert held > 0
        assert await asyncio.to_thread(forget, "kill") == held
        assert (await asyncio.to_thread(get_stats, "kill")).reuse_entries == 0
    finally:
        traffic.close()
        serve.delete("kill")


async def test_node_removed_with_its_replica(ray_cluster: Any) -> None:
    """Two nodes join: one with room for two replicas, one for one; then the second is removed
    with its replica (and Serve has nowhere to start a replacement)."""
    rng = random.Random(SEED + 1)
    print("seed", SEED + 1)
    cluster = ray_cluster.cluster
    keeper = cluster.add_node(num_cpus=1, resources={"twin_slot": 2}, object_store_memory=80 << 20)
    victim = cluster.add_node(num_cpus=1, resources={"twin_slot": 1}, object_store_memory=80 << 20)
    cluster.wait_for_nodes()
    app = deployment(
        gated,
        name="node",
        num_replicas=3,
        ray_actor_options={"num_cpus": 0.25, "resources": {"twin_slot": 1}},
        window_ms=20,
        max_size=64,
        dedup_strategy="exact",
    ).bind()
    traffic = None
    try:
        serve.run(app, name="node", route_prefix="/node")
        traffic = Traffic("node")
        replicas = live_replicas("node", "node")
        assert len(replicas) == 3

        def node_of(rid: str) -> str:
            actor = ray.get_actor(f"SERVE_REPLICA::node#node#{rid}", namespace="serve")
            return ray.get(
                actor.__ray_call__.remote(lambda _: ray.get_runtime_context().get_node_id())
            )

        on_victim = [rid for rid in replicas if node_of(rid) == victim.node_id]
        assert len(on_victim) == 1

        def remove() -> str:
            cluster.remove_node(victim)
            return on_victim[0]

        dead = await fault_mid_batch("node", "node", traffic, remove, rng)
        await dedup_resumes("node", traffic, dead, rng)
    finally:
        if traffic is not None:
            traffic.close()
        serve.delete("node")
        if victim in cluster.worker_nodes:
            cluster.remove_node(victim)
        cluster.remove_node(keeper)
