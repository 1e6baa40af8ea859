"""The twin router (stratabatch.rayrouter): its keys against the core's own dedup, the
rendezvous choice as replicas come and go, the overload fallback, the router class driven
without a cluster; then on the module's Ray cluster, twins through different handles.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from ray import cloudpickle

from stratabatch import BatchProcessor, ConfigError
from stratabatch.dedup import normalize_key
from stratabatch.rayrouter import (
    COARSE_TAIL,
    PREFERRED_TRIES,
    Choice,
    choose,
    coarse_key,
    key_for,
    rendezvous,
    rendezvous_order,
    request_of,
    route_counts,
    route_key,
    router_class,
)
from tests.ray.gate import GATE, Gate, gated

SEED = 20261207

# the handlers below travel to the replicas by value (the workers cannot import this module)
cloudpickle.register_pickle_by_value(sys.modules[__name__])

BASES = [
    "How do I reset my password?",
    "Where is my order 1234?",
    "Cancel my subscription",
    "What is the capital of France?",
    "Ünïcödé text with ﬁ ligature",
    "",
    "   ",
]


def variants(text: str, rng: random.Random) -> list[str]:
    """Ways of typing ``text`` that the core's exact dedup (normalize=True) merges or not:
    case, whitespace, NFKC forms, and one that changes a letter."""
    out = [
        text,
        text.upper(),
        text.lower(),
        "  " + "   ".join(text.split()) + " \t",
        unicodedata.normalize("NFKD", text),
        text.replace(" ", "\u00a0"),  # a no-break space: whitespace to str.split
        text + "x",
    ]
    rng.shuffle(out)
    return out


async def core_groups(requests: list[dict[str, Any]], **options: Any) -> list[int]:
    """Which handler item answered each request (a number per item), by the core's own dedup
    in one burst."""
    made = iter(range(1 << 30))

    async def handler(items: list[dict[str, Any]]) -> list[int]:
        return [next(made) for _ in items]

    async with BatchProcessor(
        handler, window_ms=20, max_size=4096, cold_start="wait", **options
    ) as batch:
        return await batch.process(requests)


def assert_keys_match_core(requests: list[dict[str, Any]], keys: list[bytes], groups: list[int]):
    for i in range(len(requests)):
        for j in range(i + 1, len(requests)):
            same_key = keys[i] == keys[j]
            same_group = groups[i] == groups[j]
            assert same_key == same_group, (requests[i], requests[j], same_key, same_group)


@pytest.mark.parametrize("normalize", [True, False])
async def test_route_key_equal_exactly_for_the_cores_exact_twins(normalize: bool) -> None:
    rng = random.Random(SEED)
    print("seed", SEED)
    requests: list[dict[str, Any]] = []
    for base in BASES:
        for text in variants(base, rng):
            requests.append({"query": text, "i": len(requests)})
    # requests without the text: only the same whole request merges (key order aside)
    requests += [
        {"i": 1000, "other": 1},
        {"i": 1000, "other": 1},
        {"other": 1, "i": 1000},
        {"i": 1000, "other": 2},
        {"query": 5, "i": 1001},
        {"i": 1001, "query": 5},
    ]
    groups = await core_groups(requests, dedup_strategy="exact", normalize=normalize)
    keys = [route_key(r, dedup_key="query", normalize=normalize) for r in requests]
    assert len(set(groups)) < len(requests) - 3  # twins merged beyond the whole-request ones
    assert_keys_match_core(requests, keys, groups)


async def test_route_key_scope_separates_as_the_core_does() -> None:
    requests = [
        {"query": "hi", "model": "a", "i": 0},
        {"query": "HI ", "model": "a", "i": 1},
        {"query": "hi", "model": "b", "i": 2},
        {"query": "hi", "i": 3},  # no model: another scope than model=None
        {"query": "hi", "model": None, "i": 4},
        {"query": "hi", "model": "a", "user": 1, "i": 5},  # a field outside the scope
        {"query": "hi", "model": ["x", {"b": 1, "a": 2}], "i": 6},
        {"query": "hi", "model": ["x", {"a": 2, "b": 1}], "i": 7},  # map order is no matter
    ]
    groups = await core_groups(requests, dedup_strategy="exact", dedup_scope=("model",))
    keys = [route_key(r, dedup_scope=["model"]) for r in requests]
    assert keys[0] == keys[1] == keys[5]
    assert keys[6] == keys[7]
    assert len({keys[0], keys[2], keys[3], keys[4], keys[6]}) == 5
    assert_keys_match_core(requests, keys, groups)


def test_route_key_refuses_what_is_not_a_request() -> None:
    with pytest.raises(TypeError, match="mapping"):
        route_key(["not", "a", "mapping"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        route_key({"query": "hi", "model": object()}, dedup_scope=["model"])


def test_coarse_key_shared_by_exact_twins_and_near_twins() -> None:
    rng = random.Random(SEED)
    for base in BASES:
        twins = [t for t in variants(base, rng) if not t.endswith("x")]  # the core's twins
        assert len({route_key({"query": t}) for t in twins}) == 1
        assert len({coarse_key({"query": t}) for t in twins}) == 1
    near = [
        "How do I update my billing address?",
        "how do i update my billing address",
        "Hey there, how do I update my billing address? thx",
        "How can I update my billing address?",
        "How do I upadte my billing address?",  # a typo outside the two rarest words
    ]
    assert len({coarse_key({"query": t}) for t in near}) == 1
    other = coarse_key({"query": "How do I reset my password?"})
    assert other != coarse_key({"query": near[0]})


def test_coarse_key_scope_and_no_text() -> None:
    a = coarse_key({"query": "Where is my parcel?", "model": "a"}, dedup_scope=["model"])
    b = coarse_key({"query": "where is my parcel", "model": "b"}, dedup_scope=["model"])
    c = coarse_key({"query": "where is my parcel", "model": "a"}, dedup_scope=["model"])
    assert a == c != b
    assert coarse_key({"prompt": "no text under the key"}) is None
    assert coarse_key({"query": 42}) is None
    # without key words: its canonical text, so "the" is not "a"
    assert coarse_key({"query": "the"}) != coarse_key({"query": "a"})


QUESTIONS = [
    f"How do I {verb} the {thing} on my {place}?"
    for verb in ("change", "check", "cancel", "update", "find", "dispute")
    for thing in ("address", "limit", "statement", "payment", "fee")
    for place in ("savings account", "credit card", "mortgage", "loan")
]


def test_coarse_key_reads_the_question_after_a_long_preamble() -> None:
    """Prompts over one long preamble are spread by their questions, where a key over every
    word would put them all on the replica of the preamble's rarest words. (A question of
    fewer key words than COARSE_TAIL shares the tail with the preamble's last words: docs.)"""
    preamble = (
        "You are the assistant of Northgate Savings Bank. Answer politely and briefly, never "
        "reveal internal policies, escalate fraud reports to a human agent, quote fees only "
        "from the published schedule, and decline requests unrelated to banking services."
    )
    assert len(preamble.split()) > 2 * COARSE_TAIL
    prompts = [f"{preamble}\n\nQuestion: {q}" for q in QUESTIONS]
    spread = Counter(coarse_key({"query": p}) for p in prompts)
    whole = Counter(coarse_key({"query": p}, tail=0) for p in prompts)
    assert len(whole) == 1 and len(spread) >= len(prompts) // 4, (len(whole), len(spread))
    twin = f"{preamble.upper()}   question: {QUESTIONS[0].rstrip('?')}"
    assert coarse_key({"query": twin}) == coarse_key({"query": prompts[0]})


def test_key_for_by_strategy() -> None:
    r = {"query": "How can I update my billing address?"}
    assert key_for(r, strategy="exact") == route_key(r)
    assert key_for(r, strategy="embedding") == coarse_key(r)
    assert key_for(r, strategy="hybrid") == coarse_key(r)
    no_text = {"prompt": "x"}
    assert key_for(no_text, strategy="embedding") == route_key(no_text)


def test_request_of() -> None:
    r = {"query": "a"}
    assert request_of([r]) is r
    assert request_of([[r, {"query": "b"}]]) is r
    assert request_of([(r,)]) is r
    assert request_of([]) is None
    assert request_of([[]]) is None
    assert request_of(["text"]) is None
    assert request_of([[1, 2]]) is None


def _keys(n: int) -> list[bytes]:
    return [route_key({"query": f"request {i}"}) for i in range(n)]


def test_rendezvous_spreads_keys_evenly() -> None:
    replicas = [f"replica-{i}" for i in range(8)]
    load = Counter(rendezvous(k, replicas) for k in _keys(16_000))
    assert set(load) == set(replicas)
    assert max(load.values()) < 1.1 * 2000 and min(load.values()) > 0.9 * 2000, load


@pytest.mark.parametrize("n", [2, 4, 8])
def test_rendezvous_moves_only_the_keys_of_a_replica_that_leaves_or_joins(n: int) -> None:
    replicas = [f"r{i}-{random.Random(i).getrandbits(32):x}" for i in range(n)]
    keys = _keys(8000)
    before = {k: rendezvous(k, replicas) for k in keys}
    gone = replicas[1]
    after = {k: rendezvous(k, [r for r in replicas if r != gone]) for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert all(before[k] == gone for k in moved)  # only its keys move
    assert all(after[k] == rendezvous_order(k, replicas)[1] for k in moved)  # to their next
    assert sum(1 for k in keys if before[k] == gone) == len(moved)  # and all of them move
    assert abs(len(moved) / len(keys) - 1 / n) < 0.25 / n
    new = "r-new"
    joined = {k: rendezvous(k, [*replicas, new]) for k in keys}
    moved = [k for k in keys if before[k] != joined[k]]
    assert all(joined[k] == new for k in moved)  # only to the new one
    assert abs(len(moved) / len(keys) - 1 / (n + 1)) < 0.25 / (n + 1)


def test_rendezvous_order_does_not_depend_on_the_replicas_order() -> None:
    replicas = [f"replica-{i}" for i in range(6)]
    for k in _keys(200):
        shuffled = replicas[:]
        random.Random(k).shuffle(shuffled)
        assert rendezvous(k, shuffled) == rendezvous(k, replicas)
        assert rendezvous_order(k, shuffled) == rendezvous_order(k, replicas)
        assert rendezvous_order(k, replicas)[0] == rendezvous(k, replicas)
    with pytest.raises(ValueError):
        rendezvous(b"k", [])


def test_choose_prefers_the_keys_replica_under_the_threshold() -> None:
    replicas = [f"replica-{i}" for i in range(4)]
    rng = random.Random(SEED)
    for k in _keys(200):
        pref = rendezvous(k, replicas)
        lens = {r: rng.randrange(0, 50) for r in replicas}
        lens[pref] = min(lens.values()) + 10  # exactly at the threshold: still preferred
        c = choose(k, replicas, lens, imbalance=10, rng=rng)
        assert c.preferred == pref and not c.fallback
        assert c.ranks[0] == (pref,)
        assert len(c.ranks[1]) == 2 and pref not in c.ranks[1]  # if it is full or silent
    # a first try offers the preferred replica alone, unless it is overloaded
    k = _keys(1)[0]
    pref = rendezvous(k, replicas)
    assert choose(k, replicas, {}, imbalance=10, alone=True).ranks == ((pref,),)
    lens = {r: 0 for r in replicas} | {pref: 11}
    assert choose(k, replicas, lens, imbalance=10, alone=True).fallback
    # unknown queues are not held against a replica
    k = _keys(1)[0]
    assert not choose(k, replicas, {}, imbalance=0).fallback
    pref = rendezvous(k, replicas)
    assert not choose(k, replicas, {pref: 1000}, imbalance=0).fallback


def test_choose_falls_back_to_two_choices_past_the_threshold() -> None:
    replicas = [f"replica-{i}" for i in range(5)]
    rng = random.Random(SEED)
    firsts: Counter[str] = Counter()
    for k in _keys(400):
        pref = rendezvous(k, replicas)
        lens = {r: 3 for r in replicas}
        lens[pref] = 3 + 11
        c = choose(k, replicas, lens, imbalance=10, rng=rng)
        assert c.fallback and c.preferred == pref
        assert len(c.ranks[0]) == 2 and pref not in c.ranks[0] and len(set(c.ranks[0])) == 2
        assert c.ranks[1] == (pref,)
        firsts.update(c.ranks[0])
    assert set(firsts) == set(replicas)  # random among the others, not a fixed pair


def test_choose_with_one_or_two_replicas() -> None:
    k = _keys(1)[0]
    assert choose(k, ["only"], {"only": 10**6}, imbalance=0) == Choice("only", (("only",),), False)
    c = choose(k, ["a", "b"], {"a": 100, "b": 100, rendezvous(k, ["a", "b"]): 500}, imbalance=1)
    assert c.fallback and len(c.ranks[0]) == 1
    with pytest.raises(ValueError):
        choose(k, [], {}, imbalance=1)


# ---------------------------------------------------------------------------------------------
# The router class, driven as Serve drives it, without a cluster
# ---------------------------------------------------------------------------------------------


class FakeReplica:
    """What the router reads of Serve's RunningReplica."""

    def __init__(self, replica_id: Any) -> None:
        self.replica_id = replica_id
        self.max_ongoing_requests = 100

    async def get_queue_len(self, *, deadline_s: float) -> int:
        return 0


def make_router(app: str, **options: Any) -> tuple[Any, list[FakeReplica]]:
    from ray.serve._private.common import DeploymentHandleSource, DeploymentID, ReplicaID

    dep = DeploymentID(name="answers", app_name=app)
    router = router_class()(
        deployment_id=dep,
        handle_source=DeploymentHandleSource.UNKNOWN,
        use_replica_queue_len_cache=True,
    )
    router.initialize_state(**options)
    return router, [FakeReplica(ReplicaID(f"rep{i}", dep)) for i in range(4)]


def pending(args: list[Any], internal_id: str | None = None) -> Any:
    from ray.serve._private.common import RequestMetadata
    from ray.serve._private.request_router.common import PendingRequest

    meta = RequestMetadata(request_id="r", internal_request_id=internal_id or f"{random.random()}")
    return PendingRequest(args=args, kwargs={}, metadata=meta)


def served(router: Any, pr: Any, replica: Any) -> None:
    """What Serve does once a routing round chose ``replica`` for ``pr`` and it took it."""
    router._fulfill_next_pending_request(replica, pr.metadata)
    assert pr.future.result() is replica
    router.on_request_routed(pr, replica.replica_id, None)


async def test_router_keeps_nothing_of_a_request_once_placed_or_given_up() -> None:
    router, replicas = make_router("app-memory", strategy="exact")
    placed = [pending([{"query": f"q{i}"}]) for i in range(5)]
    given_up = [pending([{"query": f"g{i}"}]) for i in range(5)]
    for pr in placed + given_up:
        await router.choose_replicas(replicas, pr)
    for pr in placed:
        served(router, pr, replicas[0])
    for pr in given_up:
        pr.future.cancel()
    router._sweep()
    assert not router._preferred and not router._routed
    assert route_counts("app-memory").preferred + route_counts("app-memory").fallback == 5


async def test_router_gives_each_of_one_requests_calls_its_own_replica() -> None:
    """The handle calls made while serving one request share its internal_request_id; each
    still gets a replica, its key's, through Serve's own routing loop."""
    router, replicas = make_router("app-fanout", strategy="exact")
    router.update_replicas(replicas)
    ids = [r.replica_id.unique_id for r in replicas]
    reqs = [{"query": f"question {i}"} for i in range(8)]
    got = await asyncio.wait_for(
        asyncio.gather(
            *(router._choose_replica_for_request(pending([r], "one-request")) for r in reqs)
        ),
        10.0,
    )
    assert [g.replica_id.unique_id for g in got] == [rendezvous(route_key(r), ids) for r in reqs]
    assert len({g.replica_id.unique_id for g in got}) > 1  # (else any answer would do)


async def test_router_routes_by_key_and_counts_where_requests_went() -> None:
    router, replicas = make_router("app-count", strategy="exact", imbalance=5)
    ids = [r.replica_id.unique_id for r in replicas]
    req = {"query": "Where is my order?"}
    pr = pending([req])
    ranks = await router.choose_replicas(replicas, pr)
    pref = rendezvous(route_key(req), ids)
    assert [r.replica_id.unique_id for r in ranks[0]] == [pref]
    assert pr.routing_context.should_backoff  # (else Serve would ask again without a pause)
    for _ in range(PREFERRED_TRIES):  # its first tries: the preferred replica alone
        assert len(ranks) == 1
        ranks = await router.choose_replicas(replicas, pr)  # it did not answer in time
    assert [r.replica_id.unique_id for r in ranks[0]] == [pref] and len(ranks[1]) == 2
    served(router, pr, ranks[0][0])
    # the preferred replica past the threshold: two others first
    by_id = {r.replica_id.unique_id: r for r in replicas}
    for rid, r in by_id.items():
        router.replica_queue_len_cache.update(r.replica_id, 20 if rid == pref else 2)
    pr2 = pending([[{"query": "where is my ORDER? "}, {"query": "another"}]])
    ranks = await router.choose_replicas(replicas, pr2)
    assert pref not in [r.replica_id.unique_id for r in ranks[0]] and len(ranks[0]) == 2
    served(router, pr2, ranks[0][0])
    # no request mapping: Serve's usual choice, counted apart, never an error
    for args in ([], [42], [["text"]], [{"query": "x", "model": object()}]):
        pr3 = pending(args)
        router_s, _ = make_router("app-count", dedup_scope=["model"])
        ranks = await router_s.choose_replicas(replicas, pr3)
        assert len(ranks) == 1 and 1 <= len(ranks[0]) <= 2
        served(router_s, pr3, ranks[0][0])
    assert await router.choose_replicas([], pending([req])) == []
    counts = route_counts("app-count", "answers")
    assert (counts.preferred, counts.fallback, counts.unkeyed) == (1, 1, 4)
    assert route_counts("no such app").preferred == 0


async def test_router_near_strategy_keys_by_the_coarse_key_from_its_first_request() -> None:
    router, replicas = make_router("app-near", strategy="embedding")
    ids = [r.replica_id.unique_id for r in replicas]
    twins = ["How do I update my billing address?", "Hey, how can I update my billing address"]
    # the first request may come while the kernels load: keyed in a thread meanwhile
    got = await asyncio.gather(
        *(router.choose_replicas(replicas, pending([{"query": t}])) for t in twins)
    )
    want = rendezvous(coarse_key({"query": twins[0]}), ids)
    assert [g[0][0].replica_id.unique_id for g in got] == [want, want]


async def test_router_default_threshold_is_half_of_max_ongoing_requests() -> None:
    router, replicas = make_router("app-half", strategy="exact")
    req = {"query": "Where is my order?"}
    pref = rendezvous(route_key(req), [r.replica_id.unique_id for r in replicas])
    for at, fallback in ((50, False), (51, True)):  # max_ongoing_requests 100: threshold 50
        for r in replicas:
            n = at if r.replica_id.unique_id == pref else 0
            router.replica_queue_len_cache.update(r.replica_id, n)
        ranks = await router.choose_replicas(replicas, pending([req]))
        assert (pref not in [r.replica_id.unique_id for r in ranks[0]]) == fallback


def test_router_options_are_checked() -> None:
    for bad in (
        {"strategy": "fuzzy"},
        {"imbalance": -1},
        {"imbalance": True},
        {"dedup_scope": "model"},
        {"dedup_key": 3},
        {"normalize": "yes"},
        {"colour": "blue"},
    ):
        with pytest.raises(ConfigError):
            make_router("app-bad", **bad)
    router, _ = make_router("app-default")
    assert router._imbalance is None  # half of max_ongoing_requests, see the next test


# ---------------------------------------------------------------------------------------------
# On the module's Ray cluster (tests/ray/conftest.py): twins from different handles
# ---------------------------------------------------------------------------------------------

REPLICA = {"num_cpus": 0.5}


async def through_gate(app: str, calls: Any, expected: int) -> list[Any]:
    """Run ``calls`` (a gather) with the handler held until the replicas have taken
    ``expected`` requests (the app's merged stats say so), then let it go."""
    import ray

    from stratabatch.ray import get_stats

    gate = ray.remote(num_cpus=0)(Gate).options(name=GATE[0], namespace=GATE[1]).remote()
    try:
        expected += (await asyncio.to_thread(get_stats, app)).total_requests
        running = asyncio.ensure_future(calls)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60.0
        while True:
            taken = (await asyncio.to_thread(get_stats, app)).total_requests
            if taken >= expected or running.done() or loop.time() > deadline:
                break
            await asyncio.sleep(0.2)
        assert taken == expected, f"the replicas took {taken} of {expected} requests"
        await gate.open.remote()
        return list(await asyncio.wait_for(running, 60.0))
    finally:
        ray.kill(gate)


def live_replicas(app: str, name: str) -> list[str]:
    """The unique ids of the live replicas of deployment ``name`` of ``app``."""
    import ray

    prefix = f"SERVE_REPLICA::{app}#{name}#"
    return sorted(
        a["name"][len(prefix) :]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(prefix)
    )


class Paths:
    """Ways into one application: its handle (through the ingress), a handle straight to the
    batch deployment from this process, HTTP through Serve's proxy, and a handle held by an
    actor on another node."""

    NAMES = ("ingress", "direct", "http", "actor")

    def __init__(self, ray_cluster: Any, app: str, route: str, ingress: Any) -> None:
        import httpx
        import ray

        from stratabatch.ray import batch_handle

        @ray.remote(num_cpus=0)
        class Caller:
            def __init__(self, app: str) -> None:
                self.handle = batch_handle(app)

            async def call(self, request: dict[str, Any]) -> Any:
                return await self.handle.remote(request)

        self.app = app
        self.ingress = ingress
        self.direct = batch_handle(app)
        self.url = f"{ray_cluster.http_url}{route}"
        # (as many connections as calls: a call holds one until the gate opens)
        self.http = httpx.AsyncClient(timeout=90.0, limits=httpx.Limits(max_connections=None))
        self.actor = Caller.remote(app)
        self.used: Counter[str] = Counter()
        self.order: list[str] = []

    async def send(self, path: str, request: dict[str, Any]) -> Any:
        if path == "ingress":
            return await self.ingress.remote(request)
        if path == "direct":
            return await self.direct.remote(request)
        if path == "http":
            answer = await self.http.post(self.url, json=request)
            assert answer.status_code == 200, answer.text
            return answer.json()
        return await self.actor.call.remote(request)

    async def close(self) -> None:
        import ray

        await self.http.aclose()
        ray.kill(self.actor)


async def send_pairs(
    paths: Paths, pairs: list[tuple[dict[str, Any], dict[str, Any]]]
) -> list[tuple[Any, Any]]:
    """Each pair's two requests at once, through two different paths (every combination in
    turn); the answers in pair order."""
    combos = [(a, b) for a in Paths.NAMES for b in Paths.NAMES if a != b]
    calls = []
    for i, (x, y) in enumerate(pairs):
        pa, pb = combos[i % len(combos)]
        paths.used.update((pa, pb))
        paths.order += [pa, pb]
        calls.append(paths.send(pa, x))
        calls.append(paths.send(pb, y))
    got = await through_gate(paths.app, asyncio.gather(*calls), 2 * len(pairs))
    return [(got[2 * i], got[2 * i + 1]) for i in range(len(pairs))]


def exact_twin_pairs(n: int, rng: random.Random) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    out = []
    for i in range(n):
        text = f"Where is my order {i} of {rng.randrange(10**6)}?"
        twin = rng.choice([text.upper(), "  " + text.lower(), text.replace(" ", "   ")])
        out.append(({"query": text}, {"query": twin}))
    return out


async def test_exact_twins_from_any_handle_meet_on_one_replica(ray_cluster: Any) -> None:
    from ray import serve

    from stratabatch.ray import deployment

    app = deployment(
        gated,
        name="twins",
        num_replicas=3,
        ray_actor_options=REPLICA,
        window_ms=20,
        max_size=64,
        dedup_strategy="exact",
    ).bind()
    ingress = serve.run(app, name="exact", route_prefix="/exact")
    paths = Paths(ray_cluster, "exact", "/exact", ingress)
    try:
        rng = random.Random(SEED)
        print("seed", SEED)
        pairs = exact_twin_pairs(240, rng)
        got = await send_pairs(paths, pairs)
        ids = live_replicas("exact", "twins")
        assert len(ids) == 3
        for (x, _), (a, b) in zip(pairs, got, strict=True):
            assert normalize_key(a["text"]) == normalize_key(b["text"]) == normalize_key(x["query"])
        merged = sum(a["item"] == b["item"] for a, b in got)
        sent = [x for xy in pairs for x in xy]
        off_key = Counter(
            path
            for path, x, r in zip(paths.order, sent, [r for ab in got for r in ab], strict=True)
            if r["replica"] != rendezvous(route_key(x), ids)
        )
        at_key = len(sent) - sum(off_key.values())
        print(
            f"exact twins merged: {merged}/{len(pairs)}; requests at their key's replica: "
            f"{at_key}/{len(sent)} (elsewhere, by path: {dict(off_key)}); the driver's "
            f"router: {route_counts('exact', 'twins')}"
        )
        assert merged >= 0.99 * len(pairs)
        assert at_key >= 0.99 * len(sent)
        assert {a["replica"] for a, _ in got} == set(ids)  # the keys spread over all three
        # a list through the ingress: one handle call per request from one ingress request
        # (they share its internal_request_id), each to its key's replica
        listed = [{"query": f"listed request {i}"} for i in range(8)]

        async def process() -> Any:
            return await ingress.process.remote(listed)

        answers = await through_gate("exact", process(), len(listed))
        assert [a["text"] for a in answers] == [r["query"] for r in listed]
        assert [a["replica"] for a in answers] == [rendezvous(route_key(r), ids) for r in listed]
        counts = route_counts("exact", "twins")  # (this process's share: the direct handle)
        assert counts.preferred + counts.fallback == paths.used["direct"]
        assert counts.preferred >= 0.99 * paths.used["direct"] and counts.unkeyed == 0
    finally:
        await paths.close()
        serve.delete("exact")


async def labelled_twins(n: int, rng: random.Random) -> list[tuple[str, str]]:
    """``n`` of the labelled near-repeat pairs that the default strategy merges in one process
    (tests/data: guard_pairs.jsonl, with the round-2 pairs, and dedup_pairs.jsonl)."""
    from stratabatch.perf.eval_quality import merged_pairs

    data = Path(__file__).resolve().parents[1] / "data"
    pairs = []
    for name in ("guard_pairs.jsonl", "dedup_pairs.jsonl"):
        for line in (data / name).read_text().splitlines():
            if line.strip():
                p = json.loads(line)
                if p["dup"]:
                    pairs.append(p)
    merged = await merged_pairs(pairs, cold_start="wait")
    twins = sorted({(p["a"], p["b"]) for p, m in zip(pairs, merged, strict=True) if m})
    return rng.sample(twins, n)


async def test_near_twins_share_of_merges_on_the_cluster(ray_cluster: Any) -> None:
    """Near twins meet when they share the coarse key (perf/eval_ray_keys.py: ~91% of the
    labelled twins do); those that meet merge as in one process."""
    from ray import serve

    from stratabatch.ray import deployment

    rng = random.Random(SEED)
    print("seed", SEED)
    twins = await labelled_twins(150, rng)
    app = deployment(
        gated,
        name="near",
        num_replicas=3,
        ray_actor_options=REPLICA,
        window_ms=20,
        max_size=64,
        dedup_strategy="embedding",
        dedup_scope=("pair",),  # (each pair alone, as perf/eval_quality.py keeps them)
        cold_start="wait",
    ).bind()
    ingress = serve.run(app, name="near", route_prefix="/near")
    paths = Paths(ray_cluster, "near", "/near", ingress)
    try:
        pairs = [
            ({"query": a, "pair": i}, {"query": b, "pair": i}) for i, (a, b) in enumerate(twins)
        ]
        got = await send_pairs(paths, pairs)
        scope = ["pair"]
        keyed = [
            coarse_key(x, dedup_scope=scope) == coarse_key(y, dedup_scope=scope) for x, y in pairs
        ]
        merged = [a["item"] == b["item"] for a, b in got]
        met = [a["replica"] == b["replica"] for a, b in got]
        n_keyed = sum(keyed)
        merged_keyed = sum(m for m, k in zip(merged, keyed, strict=True) if k)
        print(
            f"near twins: {sum(keyed)}/{len(pairs)} share the coarse key, {sum(met)} met on one "
            f"replica, {sum(merged)} merged ({sum(merged) / len(pairs):.1%}); of those sharing "
            f"the key, {merged_keyed} merged"
        )
        assert all(m for m, k in zip(met, keyed, strict=True) if k)
        assert merged_keyed >= 0.97 * n_keyed
        assert sum(merged) >= 0.8 * len(pairs)
    finally:
        await paths.close()
        serve.delete("near")


class CoalescingCaller:
    """An actor on the cluster sending its requests through a coalescing handle."""

    def __init__(self, app: str) -> None:
        from stratabatch.ray import coalescing_handle

        self.handle = coalescing_handle(app)

    async def send(self, requests: list[dict[str, Any]]) -> tuple[list[Any], int]:
        got = await asyncio.gather(*(self.handle.remote(r, timeout=90.0) for r in requests))
        return list(got), self.handle.calls


async def test_coalescing_handles_answer_each_caller_once_with_twins_merged(
    ray_cluster: Any,
) -> None:
    """Two coalescing handles (this process's and an actor's) send exact twin pairs, each
    pair's requests one through each: every caller gets its own answer, each request is at
    its key's replica, twins merge, and the handles send fewer calls than requests."""
    import ray
    from ray import serve

    from stratabatch.ray import coalescing_handle, deployment
    from stratabatch.rayrouter import live_router

    app = deployment(
        gated,
        name="twins",
        num_replicas=3,
        ray_actor_options=REPLICA,
        window_ms=20,
        max_size=64,
        dedup_strategy="exact",
    ).bind()
    serve.run(app, name="coalesce", route_prefix=None)
    gate = ray.remote(num_cpus=0)(Gate).options(name=GATE[0], namespace=GATE[1]).remote()
    caller = ray.remote(num_cpus=0)(CoalescingCaller).remote("coalesce")
    try:
        handle = coalescing_handle("coalesce")
        await gate.open.remote()  # a first call each: the handles' routers are made
        await handle.remote({"query": "warm up"}, timeout=60.0)
        await caller.send.remote([{"query": "warm up too"}])
    finally:
        ray.kill(gate)
    try:
        rng = random.Random(SEED)
        print("seed", SEED)
        pairs = exact_twin_pairs(150, rng)
        mine = [x for x, _ in pairs]
        theirs = [y for _, y in pairs]
        calls0 = handle.calls

        async def both() -> Any:
            remote = caller.send.remote(theirs)
            local = await asyncio.gather(*(handle.remote(r, timeout=90.0) for r in mine))
            return local, await remote

        local, (remote, _) = await through_gate("coalesce", both(), 2 * len(pairs))
        ids = live_replicas("coalesce", "twins")
        assert len(ids) == 3 and live_router("coalesce", "twins").replica_ids == tuple(ids)
        for requests, answers in ((mine, local), (theirs, remote)):
            assert [normalize_key(a["text"]) for a in answers] == [
                normalize_key(r["query"]) for r in requests
            ]
            assert [a["replica"] for a in answers] == [
                rendezvous(route_key(r), ids) for r in requests
            ]
        merged = sum(a["item"] == b["item"] for a, b in zip(local, remote, strict=True))
        calls = handle.calls - calls0
        print(f"coalesced: {merged}/{len(pairs)} twins merged; {len(mine)} requests, {calls} calls")
        assert merged >= 0.99 * len(pairs)
        assert calls <= len(mine) // 10  # one call a replica for the loop turn, 64 at most
    finally:
        ray.kill(caller)
        serve.delete("coalesce")
