"""The coalescing handle (stratabatch.rayclient) against a fake deployment handle and a twin
router made as Serve makes it: its grouping by the router's replica, each caller's answer or
error, timeouts; the cluster tests are in test_ray_router.py and test_ray_faults.py."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
import ray

from stratabatch import BatchTimeoutError, HandlerError, InvalidRequestError
from stratabatch.ray import CoalescingHandle
from stratabatch.rayrouter import live_router, rendezvous, route_key, router_class

SEED = 20261207


class FakeReplica:
    def __init__(self, replica_id: Any) -> None:
        self.replica_id = replica_id
        self.max_ongoing_requests = 100

    async def get_queue_len(self, *, deadline_s: float) -> int:
        return 0


def twin_router(app: str, replicas: int = 4) -> tuple[Any, list[FakeReplica]]:
    """A TwinRouter of deployment ``answers`` of ``app``, as Serve makes one in a caller, with
    ``replicas`` replicas."""
    from ray.serve._private.common import DeploymentHandleSource, DeploymentID, ReplicaID

    dep = DeploymentID(name="answers", app_name=app)
    router = router_class()(
        deployment_id=dep,
        handle_source=DeploymentHandleSource.UNKNOWN,
        use_replica_queue_len_cache=True,
    )
    router.initialize_state(strategy="exact")
    reps = [FakeReplica(ReplicaID(f"rep{i}", dep)) for i in range(replicas)]
    router.update_replicas(reps)
    return router, reps


class FakeHandle:
    """A deployment handle whose ``process`` calls answer after ``delay`` what ``answer``
    returns for the list (or raise what it raises), and record each call."""

    def __init__(self, app: str, router: Any, answer: Any = None, delay: float = 0.01) -> None:
        self.app_name = app
        self.deployment_name = "answers"
        self.router = router
        self.answer = answer or (lambda reqs: [{"echo": r["query"]} for r in reqs])
        self.delay = delay
        self.calls: list[tuple[list[dict[str, Any]], dict[str, Any], str | None]] = []
        self.responses: list[asyncio.Future[Any]] = []

    def options(self, *, method_name: str) -> FakeHandle:
        assert method_name == "process"
        return self

    def remote(self, requests: list[dict[str, Any]], **kwargs: Any) -> Any:
        assert kwargs["return_exceptions"] is True
        # where the router sends the list: by its first request
        ids = self.router.replica_ids if self.router else ()
        where = rendezvous(route_key(requests[0]), ids) if ids else None
        self.calls.append((list(requests), kwargs, where))

        async def answered() -> Any:
            await asyncio.sleep(self.delay)
            return self.answer(requests)

        response = asyncio.ensure_future(answered())  # (as a DeploymentResponse: cancel())
        self.responses.append(response)
        return response


async def test_groups_a_loop_turn_by_the_routers_replica_and_answers_each_caller() -> None:
    router, _ = twin_router("client-group")
    assert live_router("client-group", "answers") is router
    handle = FakeHandle("client-group", router)
    client = CoalescingHandle(handle, max_batch=8)
    rng = random.Random(SEED)
    print("seed", SEED)
    texts = [f"question {rng.randrange(40)}" for _ in range(100)]
    futs = [client.remote({"query": t}) for t in texts]  # one loop turn
    got = await asyncio.gather(*futs)
    assert [g["echo"] for g in got] == texts  # each caller its own answer
    ids = router.replica_ids
    for requests, _, where in handle.calls:
        assert len(requests) <= 8
        # every request of a call has the call's replica as its key's
        assert {rendezvous(route_key(r), ids) for r in requests} == {where}
    assert len(handle.calls) < 25  # 100 requests, 4 replicas, at most 8 a call: 13-16 calls
    assert client.calls == len(handle.calls) and client.requests == 100
    # twins in one call, whatever their spelling: the same replica
    twins = [client.remote({"query": q}) for q in ("Hi there", "  HI   there ", "hi there")]
    await asyncio.gather(*twins)
    assert len({w for _, _, w in handle.calls[-1:]}) == 1 and len(handle.calls[-1][0]) == 3


async def test_each_caller_gets_its_own_error_or_answer() -> None:
    router, _ = twin_router("client-errors", replicas=1)

    def answer(reqs: list[dict[str, Any]]) -> list[Any]:
        return [
            HandlerError("boom", exc_type="ValueError", exc_message="boom")
            if r["query"] == "bad"
            else r["query"]
            for r in reqs
        ]

    client = CoalescingHandle(FakeHandle("client-errors", router, answer))
    futs = [client.remote({"query": q}) for q in ("a", "bad", "b")]
    futs.append(client.remote("not a mapping"))  # type: ignore[arg-type]
    got = await asyncio.gather(*futs, return_exceptions=True)
    assert got[0] == "a" and got[2] == "b"
    assert isinstance(got[1], HandlerError) and isinstance(got[3], InvalidRequestError)


async def test_a_failed_call_fails_only_its_own_callers() -> None:
    router, _ = twin_router("client-died")
    ids = router.replica_ids
    dead = ids[0]

    class Handle(FakeHandle):
        def remote(self, requests: list[dict[str, Any]], **kwargs: Any) -> Any:
            where = rendezvous(route_key(requests[0]), ids)
            if where != dead:
                return super().remote(requests, **kwargs)

            async def died() -> Any:
                raise ray.exceptions.ActorDiedError()

            return asyncio.ensure_future(died())

    client = CoalescingHandle(Handle("client-died", router))
    reqs = [{"query": f"q{i}"} for i in range(60)]
    got = await asyncio.gather(*(client.remote(r) for r in reqs), return_exceptions=True)
    for r, g in zip(reqs, got, strict=True):
        if rendezvous(route_key(r), ids) == dead:
            assert isinstance(g, ray.exceptions.ActorDiedError)
        else:
            assert g == {"echo": r["query"]}
    died = [g for g in got if isinstance(g, BaseException)]
    assert 0 < len(died) < len(reqs) and len({id(g) for g in died}) == len(died)


async def test_reuse_false_goes_in_calls_of_its_own_with_its_other_options() -> None:
    router, _ = twin_router("client-reuse", replicas=1)
    handle = FakeHandle("client-reuse", router)
    client = CoalescingHandle(handle)
    futs = [
        client.remote({"query": "a"}),
        client.remote({"query": "b"}, reuse=False, priority=2, timeout=9.0),
        client.remote({"query": "c"}),
        client.remote({"query": "d"}, reuse=False, priority=2, timeout=9.0),
        client.remote({"query": "e"}, reuse="no"),  # type: ignore[arg-type]
    ]
    got = await asyncio.gather(*futs, return_exceptions=True)
    assert got[:4] == [{"echo": q} for q in "abcd"]
    assert isinstance(got[4], InvalidRequestError) and "reuse must be True or False" in str(got[4])
    calls = {
        tuple(r["query"] for r in reqs): (kw["reuse"], kw["priority"])
        for reqs, kw, _ in handle.calls
    }
    assert calls == {("a", "c"): (True, 0), ("b", "d"): (False, 2)}
    assert 8.0 < handle.calls[1][1]["timeout"] <= 9.0


async def test_forget_checks_its_scope_before_any_call() -> None:
    client = CoalescingHandle(FakeHandle("client-forget", None))  # (its options() refuses)
    for bad in ("user", ["user"], {1: "a"}):
        with pytest.raises(TypeError):
            await client.forget(bad)  # type: ignore[arg-type]


async def test_the_callers_timeout_holds_and_goes_to_the_replica() -> None:
    router, _ = twin_router("client-timeout", replicas=2)
    handle = FakeHandle("client-timeout", router, delay=5.0)
    client = CoalescingHandle(handle)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    fast = client.remote({"query": "a"}, timeout=0.2)
    slow = client.remote({"query": "b"}, timeout=0.4)
    with pytest.raises(BatchTimeoutError):
        await fast
    assert 0.19 <= loop.time() - t0 < 0.35
    with pytest.raises(BatchTimeoutError):
        await slow
    sent = {tuple(r["query"] for r in reqs): kw["timeout"] for reqs, kw, _ in handle.calls}
    assert 0.15 < sent[("a",)] <= 0.2 and 0.35 < sent[("b",)] <= 0.4
    await asyncio.sleep(0.01)
    assert all(c.cancelled() for c in handle.responses)  # every caller gone: the calls too


async def test_a_call_is_cancelled_when_all_its_callers_have_gone() -> None:
    router, _ = twin_router("client-cancel", replicas=1)
    handle = FakeHandle("client-cancel", router, delay=0.2)
    client = CoalescingHandle(handle)
    gone_early = client.remote({"query": "never sent"})
    gone_early.cancel()  # before the flush: not sent
    futs = [client.remote({"query": q}) for q in ("a", "b")]
    await asyncio.sleep(0.05)
    assert [[r["query"] for r in reqs] for reqs, _, _ in handle.calls] == [["a", "b"]]
    futs[0].cancel()
    await asyncio.sleep(0)
    assert not handle.responses[0].cancelled()  # "b" still waits for it
    futs[1].cancel()
    await asyncio.sleep(0.01)
    assert handle.responses[0].cancelled()


async def test_without_a_twin_router_it_sends_one_call_a_request_until_it_knows() -> None:
    handle = FakeHandle("client-serve", None)
    client = CoalescingHandle(handle)
    first = await asyncio.gather(*(client.remote({"query": f"q{i}"}) for i in range(5)))
    assert len(handle.calls) == 5 and len(first) == 5
    # a call came back and no twin router exists: Serve's router, one call for the turn
    await asyncio.gather(*(client.remote({"query": f"r{i}"}) for i in range(5)))
    assert len(handle.calls) == 6 and [r["query"] for r in handle.calls[-1][0]] == [
        f"r{i}" for i in range(5)
    ]


def pending(args: list[Any]) -> Any:
    from ray.serve._private.common import RequestMetadata
    from ray.serve._private.request_router.common import PendingRequest

    meta = RequestMetadata(request_id="r", internal_request_id=f"{random.random()}")
    return PendingRequest(args=args, kwargs={}, metadata=meta)


async def test_the_router_sends_each_coalesced_call_to_its_requests_replica() -> None:
    router, reps = twin_router("client-route")
    handle = FakeHandle("client-route", router)
    client = CoalescingHandle(handle)
    await asyncio.gather(*(client.remote({"query": f"where is parcel {i}?"}) for i in range(80)))
    assert len(handle.calls) >= 4
    for requests, _, _ in handle.calls:
        ranks = await router.choose_replicas(reps, pending([requests]))
        chosen = ranks[0][0].replica_id.unique_id
        assert {rendezvous(route_key(r), router.replica_ids) for r in requests} == {chosen}


async def test_a_dead_replica_leaves_the_routers_view_and_its_keys_move() -> None:
    router, reps = twin_router("client-view")
    ids = router.replica_ids
    router.on_replica_actor_died(reps[0].replica_id)
    assert router.replica_ids == tuple(i for i in ids if i != reps[0].replica_id.unique_id)
    handle = FakeHandle("client-view", router)
    client = CoalescingHandle(handle)
    await asyncio.gather(*(client.remote({"query": f"q{i}"}) for i in range(40)))
    assert reps[0].replica_id.unique_id not in {w for _, _, w in handle.calls}


def test_options_are_checked() -> None:
    for bad in ({"max_batch": 0}, {"max_batch": 1.5}, {"flush_ms": -1}, {"flush_ms": 5000}):
        with pytest.raises(ValueError):
            CoalescingHandle(FakeHandle("client-bad", None), **bad)
