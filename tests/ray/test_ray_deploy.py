"""stratabatch.ray: options checked at decoration, the merge of replica statistics and the stats
board (no cluster), then deployments on a local 3-node Ray cluster (tests/ray/conftest.py):
twins meeting on one replica through two handles and HTTP, a class handler with bind arguments,
errors as stratabatch's types, HTTP status codes, merged statistics equal to what the callers
counted, Ray metrics, and a deletion that drains.

Two applications are deployed for the whole module (a deployment takes ~5 s): ``twins``
(a batch function on 2 replicas behind the twin router, with exact reuse) and ``model`` (a
sync class handler, Serve's router); examples/ray_app.py deploys and deletes its own.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from ray import cloudpickle, serve

import stratabatch
from stratabatch import BatchTimeoutError, ConfigError, HandlerError, InvalidRequestError, Stats
from stratabatch.errors import StratabatchError, copy_error
from stratabatch.ray import (
    ForgetIncompleteError,
    batch_handle,
    coalescing_handle,
    deployment,
    forget,
    get_stats,
)
from stratabatch.raystats import (
    StatsBoard,
    forget_total,
    merge_rounds,
    merge_stats,
    stats_from_dict,
    stats_to_dict,
)

# the handlers below travel to the replicas by value (the workers cannot import this module)
cloudpickle.register_pickle_by_value(sys.modules[__name__])

REPLICA = {"num_cpus": 0.5}
TIMEOUT = 60.0  # seconds any one step of a cluster test may take at most


# --------------------------------------------------------------------------- handlers


async def tagged(requests: list[dict]) -> list:
    """Answers each request with the handler call it ran in (a fresh id per call), the call's
    size and the replica; a query starting with "fail" fails alone, naming its call too."""
    await asyncio.sleep(0.05)
    call = uuid.uuid4().hex
    replica = serve.get_replica_context().replica_tag
    out: list = []
    for r in requests:
        if r["query"].startswith("fail"):
            out.append(ValueError(f"asked to fail call={call} size={len(requests)}"))
        else:
            out.append(
                {"query": r["query"], "call": call, "size": len(requests), "replica": replica}
            )
    return out


class Suffix:
    """A sync class handler: appends the suffix its __init__ got through .bind()."""

    def __init__(self, suffix: str, *, shout: bool = False) -> None:
        self.suffix = suffix
        self.shout = shout

    def __call__(self, requests: list[dict]) -> list[str]:
        for r in requests:
            if r.get("sleep"):
                time.sleep(r["sleep"])
            if r["query"] == "raise":
                raise RuntimeError("the model broke")
        out = [r["query"] + self.suffix for r in requests]
        return [o.upper() for o in out] if self.shout else out


# --------------------------------------------------------------------------- no cluster


def test_import_stratabatch_does_not_import_ray() -> None:
    code = "import sys, stratabatch; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_importing_stratabatch_ray_without_ray_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "try:\n"
        "    import stratabatch.ray\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 'pip install "stratabatch[ray]"' in out.stdout


def test_bad_options_are_config_errors_at_decoration() -> None:
    with pytest.raises(ConfigError) as got:
        deployment(window_ms=-5)
    with pytest.raises(ConfigError) as same:  # the processor's own check and message
        stratabatch.BatchProcessor(window_ms=-5)
    assert str(got.value) == str(same.value) and got.value.field == "window_ms"
    with pytest.raises(ConfigError, match="did you mean 'window_ms'"):
        deployment(tagged, window_msx=5)
    with pytest.raises(ConfigError, match="route must be one of twins, serve"):
        deployment(tagged, route="nearest")
    with pytest.raises(ConfigError, match="num_replicas must be an int >= 1, got 0"):
        deployment(tagged, num_replicas=0)
    with pytest.raises(ConfigError, match="imbalance must be an int >= 0"):
        deployment(tagged, imbalance=-1)
    with pytest.raises(ConfigError, match="batch function or class"):
        deployment(42)

    class NoCall:
        pass

    with pytest.raises(ConfigError, match="has no __call__"):
        deployment(NoCall)


@pytest.mark.parametrize(
    "bad",
    [
        {"reuse": "nearest"},
        {"reuse_ttl_s": 0},
        {"reuse_max_entries": 0},
        {"reuse_max_bytes": 100},
        {"reuse": "exact", "enable_dedup": False},
    ],
)
def test_bad_reuse_options_are_the_processors_config_errors_at_decoration(bad: dict) -> None:
    with pytest.raises(ConfigError) as got:
        deployment(tagged, **bad)
    with pytest.raises(ConfigError) as same:
        stratabatch.BatchProcessor(**bad)
    assert (str(got.value), got.value.field) == (str(same.value), same.value.field)


def test_reuse_options_reach_every_replicas_processor_and_the_board_its_scope() -> None:
    reuse = {"reuse": "near", "reuse_ttl_s": 30.0, "reuse_max_entries": 5,
             "reuse_max_bytes": 1 << 20}  # fmt: skip
    with pytest.raises(ConfigError, match="did you mean 'reuse_ttl_s'"):
        deployment(tagged, reuse_ttl=5)
    dep = deployment(tagged, dedup_scope=("user",), **reuse)
    replica = dep.batch_deployment.func_or_class
    assert replica._options == {"dedup_scope": ("user",), **reuse}  # (BatchProcessor's kwargs)
    (board,) = dep.batch_deployment._deployment_config.deployment_actors
    assert board.init_kwargs == {"dedup_scope": ["user"]}


def test_forget_checks_its_arguments_before_asking_anything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray

    asked: list[object] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: asked.append(1) or True)
    with pytest.raises(TypeError, match="takes a mapping of dedup_scope fields"):
        forget("answers", ["user"])
    with pytest.raises(TypeError, match="scope fields are str"):
        forget("answers", {1: "a"})
    with pytest.raises(ConfigError, match="timeout must be seconds > 0"):
        forget("answers", timeout=0)
    assert asked == []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(StratabatchError, match="connect to the cluster first"):
        forget("answers")


def test_get_stats_without_a_ray_connection_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(StratabatchError, match="connect to the cluster first"):
        get_stats("answers")


def test_a_deployment_names_its_two_deployments() -> None:
    dep = deployment(Suffix, route="serve")
    assert (dep.name, dep.ingress_name) == ("Suffix", "Suffix_ingress")
    assert deployment(name="answers")(tagged).name == "answers"


def test_serve_options_go_to_the_batch_deployment() -> None:
    dep = deployment(tagged, num_replicas=2)
    more = dep.options(num_replicas=3, graceful_shutdown_timeout_s=5.0)
    assert more.batch_deployment.num_replicas == 3 and dep.batch_deployment.num_replicas == 2
    assert more.name == dep.name == "tagged"
    with pytest.raises(ConfigError, match="request_router_config: set by stratabatch.ray"):
        dep.options(request_router_config={})


def _stats(**kw: object) -> Stats:
    base = dict.fromkeys(
        (
            "total_requests total_batches unique_requests duplicates inflight_coalesced "
            "queue_depth errors timeouts rejected exact_merges near_merges"
        ).split(),
        0,
    )
    base.update(
        avg_batch_size=0.0,
        dedup_rate=0.0,
        requests_per_second=0.0,
        cost_saved_usd=0.0,
        latency_ms_p50=0.0,
        latency_ms_p95=0.0,
        latency_ms_p99=0.0,
        window_ms=5.0,
        merge_similarity_histogram=(0,) * 101,
    )
    base.update(kw)
    return Stats(**base)  # type: ignore[arg-type]


def test_merge_adds_counts_and_bounds_percentiles() -> None:
    hist_a = (0,) * 100 + (3,)
    hist_b = (1,) + (0,) * 99 + (2,)
    a = _stats(
        total_requests=10, total_batches=2, avg_batch_size=3.0, unique_requests=6,
        duplicates=4, dedup_rate=0.4, exact_merges=3, near_merges=1, errors=1,
        latency_ms_p50=4.0, latency_ms_p95=9.0, latency_ms_p99=12.0,
        merge_similarity_histogram=hist_a, batch_size_max=4, requests_per_second=5.0,
        reuse_hits=3, reuse_near_hits=1, reuse_entries=7, reuse_bytes=700,
        reuse_similarity_histogram=(0,) * 95 + (1,) + (0,) * 5,
    )  # fmt: skip
    b = _stats(
        total_requests=5, total_batches=4, avg_batch_size=1.25, unique_requests=5,
        latency_ms_p50=6.0, latency_ms_p95=7.0, latency_ms_p99=20.0, queue_depth=2,
        merge_similarity_histogram=hist_b, window_ms=8.0, requests_per_second=1.5,
        reuse_hits=2, reuse_near_hits=2, reuse_entries=4, reuse_bytes=400,
        reuse_similarity_histogram=(0,) * 90 + (2,) + (0,) * 10,
    )  # fmt: skip
    idle = _stats(latency_ms_p99=99.0)  # served nothing: its percentiles do not count
    m = merge_stats([a, b, idle])
    assert (m.total_requests, m.total_batches, m.unique_requests, m.duplicates) == (15, 6, 11, 4)
    assert (m.errors, m.queue_depth, m.exact_merges, m.near_merges) == (1, 2, 3, 1)
    assert m.avg_batch_size == pytest.approx(11 / 6)
    assert m.dedup_rate == pytest.approx(4 / 15)
    assert m.requests_per_second == pytest.approx(6.5)
    assert (m.latency_ms_p50, m.latency_ms_p95, m.latency_ms_p99) == (6.0, 9.0, 20.0)
    assert m.merge_similarity_histogram == (1,) + (0,) * 99 + (5,)
    assert (m.window_ms, m.batch_size_max) == (8.0, 4)
    assert (m.reuse_hits, m.reuse_near_hits, m.reuse_entries, m.reuse_bytes) == (5, 3, 11, 1100)
    assert m.reuse_similarity_histogram == (0,) * 90 + (2,) + (0,) * 4 + (1,) + (0,) * 5
    assert merge_stats([a]) == a  # one replica: its own stats
    assert merge_stats([]) == replace(_stats(), window_ms=0.0, merge_similarity_histogram=())
    assert stats_from_dict(json.loads(json.dumps(stats_to_dict(a)))) == a


def test_merge_rounds_keeps_a_gone_replicas_counts_not_what_it_held() -> None:
    live = _stats(total_requests=4, duplicates=2, reuse_hits=2, reuse_entries=2, reuse_bytes=90)
    gone = _stats(total_requests=6, duplicates=3, reuse_hits=3, reuse_entries=5, reuse_bytes=500,
                  queue_depth=2)  # fmt: skip
    rounds = [
        {"replicas": {"r1": stats_to_dict(live), "r0": {}}, "gone": {}, "stale": []},
        {"replicas": {}, "gone": {"r2": stats_to_dict(gone), "r3": {}}, "stale": []},
    ]
    m = merge_rounds(rounds)
    assert (m.total_requests, m.duplicates, m.reuse_hits) == (10, 5, 5)
    # its cache and its queue went with it
    assert (m.reuse_entries, m.reuse_bytes, m.queue_depth) == (2, 90, 0)


class _Dead:
    """An actor handle whose actor has died: its readiness call raises."""

    class _Ready:
        def remote(self) -> object:
            async def fail() -> None:
                raise ConnectionError("actor died")

            return fail()

    __ray_ready__ = _Ready()


async def test_the_board_waits_for_each_live_replica_once_a_round() -> None:
    board = StatsBoard()
    one, two = _stats(total_requests=1), _stats(total_requests=2)
    seen = await board.join("r1", None)
    await board.join("r2", _Dead())

    async def replica(name: str, stats: Stats, seen: int) -> None:
        now, orders = await board.poll(seen, 5.0)
        assert orders == []
        await board.report(name, now, stats_to_dict(stats))

    answering = asyncio.ensure_future(replica("r1", one, seen))
    got = await board.collect(1.0)  # r2 never answers: its actor is dead
    await answering
    assert got["replicas"] == {"r1": stats_to_dict(one)}
    assert got["gone"] == {"r2": {}} and got["stale"] == []
    # a stopping replica's final snapshot keeps counting; the round no longer waits for it
    await board.leave("r1", stats_to_dict(two))
    got = await board.collect(1.0)
    assert got == {"replicas": {}, "gone": {"r1": stats_to_dict(two), "r2": {}}, "stale": []}


async def test_a_board_round_reports_a_silent_live_replica_as_stale() -> None:
    class Alive:
        class _Ready:
            def remote(self) -> object:
                return asyncio.sleep(0)

        __ray_ready__ = _Ready()

    board = StatsBoard()
    await board.join("r1", Alive())
    got = await board.collect(0.4)
    assert got["stale"] == ["r1"] and got["replicas"] == {"r1": {}}


# --------------------------------------------------------------------------- the cluster


@pytest.fixture(scope="module")
def apps(ray_cluster) -> Iterator[object]:
    """The module's two applications, deployed once."""
    twins = deployment(tagged, name="tagged", num_replicas=2, ray_actor_options=REPLICA,
                       window_ms=500, max_wait_ms=1000, dedup_strategy="exact",
                       reuse="exact", reuse_ttl_s=3600)  # fmt: skip
    serve.run(twins.bind(), name="twins", route_prefix="/twins")
    model = deployment(Suffix, name="suffix", route="serve", ray_actor_options=REPLICA,
                       window_ms=20, dedup_strategy="exact", processing_timeout=1.0)  # fmt: skip
    serve.run(model.bind("!", shout=True), name="model", route_prefix="/model")
    yield ray_cluster
    for name in ("twins", "model"):
        if name in serve.status().applications:
            serve.delete(name)


async def _deltas(app: str, traffic) -> tuple[object, Stats, Stats]:
    before = await asyncio.to_thread(get_stats, app)
    out = await asyncio.wait_for(traffic(), TIMEOUT)
    after = await asyncio.to_thread(get_stats, app)
    return out, before, after


async def test_exact_twins_from_two_handles_and_http_meet_in_one_handler_item(apps) -> None:
    ingress = serve.get_app_handle("twins")
    direct = batch_handle("twins")
    url = f"{apps.http_url}/twins"
    keys = [f"twin question {i}" for i in range(16)]

    async def traffic() -> list:
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:

            async def by_http(q: str) -> dict:
                r = await http.post(url, json={"query": q})
                assert r.status_code == 200, r.text
                return r.json()

            calls = []
            for k in keys:  # each text three times: two handles, and HTTP; cased apart
                calls += [ingress.remote({"query": k}), direct.remote({"query": k.upper()}),
                          by_http(f"  {k} ")]  # fmt: skip
            return await asyncio.gather(*calls)

    results, before, after = await _deltas("twins", traffic)
    by_key: dict[str, set[str]] = {}
    for r in results:
        by_key.setdefault(r["query"].strip().lower(), set()).add(r["call"])
    assert {k: len(v) for k, v in by_key.items()} == dict.fromkeys(keys, 1)
    # one handler item per text, the two others merged
    assert after.unique_requests - before.unique_requests == len(keys)
    assert after.duplicates - before.duplicates == 2 * len(keys)


async def test_merged_stats_equal_what_the_callers_counted(apps) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed={seed}")
    rng = random.Random(seed)
    ingress = serve.get_app_handle("twins")
    direct = batch_handle("twins")
    texts = [f"fail {i}" if i % 7 == 0 else f"counted {i}" for i in range(24)]
    sent = [rng.choice(texts) for _ in range(80)]  # ~40% repeats

    async def traffic() -> list:
        calls = [(ingress if i % 2 else direct).remote({"query": q}) for i, q in enumerate(sent)]
        listed = [{"query": q} for q in sent[:10]]
        calls.append(ingress.process.remote(listed, return_exceptions=True))
        return await asyncio.gather(*calls, return_exceptions=True)

    outcomes, before, after = await _deltas("twins", traffic)
    flat = [*outcomes[:-1], *outcomes[-1]]
    requests = len(sent) + 10
    calls: dict[str, int] = {}  # handler call -> its size, as the callers saw it
    errors = 0
    for o in flat:
        if isinstance(o, BaseException):
            assert isinstance(o, HandlerError), o
            errors += 1
            words = dict(w.split("=") for w in o.exc_message.split() if "=" in w)
            calls[words["call"]] = int(words["size"])
        else:
            calls[o["call"]] = o["size"]
    d = {
        f: getattr(after, f) - getattr(before, f)
        for f in ("total_requests", "total_batches", "unique_requests", "duplicates", "errors")
    }
    assert d == {
        "total_requests": requests,
        "total_batches": len(calls),
        "unique_requests": sum(calls.values()),
        "duplicates": requests - sum(calls.values()),
        "errors": errors,
    }
    assert after.queue_depth == 0


def _metric_sum(url: str, name: str, application: str) -> float:
    total = 0.0
    for line in httpx.get(url, timeout=5.0).text.splitlines():
        if line.startswith(name + "{") and f'application="{application}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_ray_metrics_show_the_replicas_counts(apps) -> None:
    import ray

    direct = batch_handle("twins")
    sent = ["metric a", "metric b", "metric a", "fail metric"]
    for _ in range(2):  # the second time from the reuse cache (the error runs again)
        await asyncio.wait_for(
            asyncio.gather(*[direct.remote({"query": q}) for q in sent], return_exceptions=True),
            TIMEOUT,
        )
    stats = await asyncio.to_thread(get_stats, "twins")
    assert stats.total_requests >= 2 * len(sent) and stats.errors >= 2
    assert stats.reuse_hits >= 3 and stats.reuse_entries >= 2
    urls = [
        f"http://{n['NodeManagerAddress']}:{n['MetricsExportPort']}/metrics"
        for n in ray.nodes()
        if n["Alive"]
    ]
    deadline = time.monotonic() + 30.0
    while True:  # the replicas feed their metrics each second, Ray exports them each second
        got = {
            name: sum(_metric_sum(u, f"ray_{name}", "twins") for u in urls)
            for name in (
                "stratabatch_requests_total",
                "stratabatch_handler_items_total",
                "stratabatch_batches_total",
                "stratabatch_errors_total",
                "stratabatch_reuse_hits_total",
                "stratabatch_reuse_entries",
            )  # fmt: skip
        }
        want = {
            "stratabatch_requests_total": stats.total_requests,
            "stratabatch_handler_items_total": stats.unique_requests,
            "stratabatch_batches_total": stats.total_batches,
            "stratabatch_errors_total": stats.errors,
            "stratabatch_reuse_hits_total": stats.reuse_hits,
            "stratabatch_reuse_entries": stats.reuse_entries,
        }
        if got == want or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert got == want


async def test_repeats_are_served_from_their_replicas_reuse_cache_until_forgotten(apps) -> None:
    """With 2 replicas, the twin router sends a repeat to the replica that stored its answer:
    every repeat through every path is a reuse hit (the backend ran each text once);
    reuse=False (and HTTP's Cache-Control: no-cache) asks afresh with its other options;
    forget fans out to both replicas and sums what they dropped."""
    ingress = serve.get_app_handle("twins")
    direct = batch_handle("twins")
    coalescing = coalescing_handle("twins")
    url = f"{apps.http_url}/twins"
    texts = [f"reuse question {i}" for i in range(24)]

    def stats() -> Any:
        return asyncio.to_thread(get_stats, "twins")

    async def by_http(http: httpx.AsyncClient, q: str, fresh: bool = False) -> dict:
        headers = {"Cache-Control": "no-cache"} if fresh else {}
        r = await http.post(url, json={"query": q}, headers=headers)
        assert r.status_code == 200, r.text
        return r.json()

    s0 = await stats()
    first = await asyncio.wait_for(
        asyncio.gather(*[ingress.remote({"query": t}) for t in texts]), TIMEOUT
    )
    s1 = await stats()
    assert len({f["replica"] for f in first}) == 2  # (the texts' keys spread over both)
    assert s1.reuse_entries - s0.reuse_entries == len(texts)
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        again = await asyncio.wait_for(
            asyncio.gather(
                *[ingress.remote({"query": t}) for t in texts],
                *[direct.remote({"query": t.upper()}) for t in texts],
                *[coalescing.remote({"query": t}, timeout=TIMEOUT) for t in texts],
                *[by_http(http, t) for t in texts],
                ingress.process.remote([{"query": t} for t in texts]),
            ),
            TIMEOUT,
        )
        s2 = await stats()
        repeats = [*again[:-1], *again[-1]]
        assert [a["call"] for a in repeats] == [f["call"] for f in first] * 5
        assert s2.unique_requests == s1.unique_requests  # not one handler item more
        assert s2.reuse_hits - s1.reuse_hits == len(repeats)
        assert s2.duplicates - s1.duplicates == len(repeats)

        # reuse=False: a fresh handler item each, through each path; the request keeps its
        # other options (a timeout shorter than the 500 ms window runs out)
        fresh = await asyncio.wait_for(
            asyncio.gather(
                ingress.remote({"query": texts[0]}, reuse=False),
                direct.remote({"query": texts[1]}, reuse=False, priority=3),
                coalescing.remote({"query": texts[2]}, reuse=False, timeout=TIMEOUT),
                by_http(http, texts[3], fresh=True),
                ingress.process.remote([{"query": texts[4]}], reuse=False),
            ),
            TIMEOUT,
        )
        fresh = [*fresh[:-1], *fresh[-1]]
        assert all(f["call"] != first[i]["call"] for i, f in enumerate(fresh))
        with pytest.raises(BatchTimeoutError):
            await ingress.remote({"query": texts[5]}, reuse=False, timeout=0.05)
        with pytest.raises(BatchTimeoutError):
            await coalescing.remote({"query": texts[5]}, reuse=False, timeout=0.05)
        with pytest.raises(InvalidRequestError, match="reuse must be True or False"):
            await ingress.process.remote([{"query": texts[5]}], reuse="no")
        with pytest.raises(InvalidRequestError, match="reuse must be True or False"):
            await coalescing.remote({"query": texts[5]}, reuse=1)
        # the fresh answers were stored: later asks get them
        later = await asyncio.gather(*[direct.remote({"query": t}) for t in texts[:5]])
        assert [x["call"] for x in later] == [f["call"] for f in fresh]

    # forget: its arguments are checked before any replica drops anything
    held = (await stats()).reuse_entries
    with pytest.raises(InvalidRequestError, match="'user' is not a dedup_scope field"):
        await ingress.forget.remote({"user": "ann"})
    with pytest.raises(InvalidRequestError, match="'user' is not a dedup_scope field"):
        await coalescing.forget({"user": "ann"})
    with pytest.raises(InvalidRequestError, match="'user' is not a dedup_scope field"):
        await asyncio.to_thread(forget, "twins", {"user": "ann"})
    with pytest.raises(TypeError):
        await ingress.forget.remote("ann")
    assert (await stats()).reuse_entries == held >= len(texts)
    # every replica drops its entries; the sum comes back
    assert await ingress.forget.remote() == held
    assert (await stats()).reuse_entries == 0
    again = await direct.remote({"query": texts[0]})
    assert again["call"] not in {first[0]["call"], fresh[0]["call"]}  # asked afresh
    assert await coalescing.forget() == 1
    assert await direct.forget.remote({}) == 0  # (a handle straight to a replica: all of them)
    assert await asyncio.to_thread(forget, "twins") == 0


async def test_a_class_handler_gets_its_bind_arguments(apps) -> None:
    handle = serve.get_app_handle("model")
    assert await handle.remote({"query": "a"}) == "A!"
    assert await handle.process.remote([{"query": "b"}, {"query": "c"}]) == ["B!", "C!"]
    assert await batch_handle("model").remote({"query": "d"}) == "D!"


async def test_errors_arrive_as_stratabatch_types(apps) -> None:
    for handle in (serve.get_app_handle("model"), batch_handle("model")):
        with pytest.raises(HandlerError) as e:
            await handle.remote({"query": "raise"})
        cause = getattr(e.value, "cause", e.value)  # Ray's RayTaskError(HandlerError) wraps it
        assert type(cause) is HandlerError
        assert (cause.exc_type, cause.exc_message) == ("RuntimeError", "the model broke")
        assert "the model broke" in str(e.value)
        with pytest.raises(BatchTimeoutError):
            await handle.remote({"query": "slow", "sleep": 2.0})
        with pytest.raises(InvalidRequestError, match="a request is a mapping, got str"):
            await handle.remote("not a mapping")
    with pytest.raises(InvalidRequestError):
        await serve.get_app_handle("model").process.remote([{"query": "ok"}, 3])


async def test_http_answers_json_with_status_codes(apps) -> None:
    url = f"{apps.http_url}/model"
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        ok = await http.post(url, json={"query": "x"})
        many = await http.post(url, json=[{"query": "x"}, {"query": "y"}])
        bad_json = await http.post(url, content=b"{nope")
        not_request = await http.post(url, json="x")
        failed = await http.post(url, json={"query": "raise"})
        slow = await http.post(url, json={"query": "z", "sleep": 2.0})
    assert (ok.status_code, ok.json()) == (200, "X!")
    assert (many.status_code, many.json()) == (200, ["X!", "Y!"])
    assert bad_json.status_code == 400 and bad_json.json()["error"] == "InvalidRequestError"
    assert not_request.status_code == 400 and "got str" in not_request.json()["message"]
    assert failed.status_code == 500
    assert (
        failed.json()
        == {
            "error": "HandlerError",
            "message": failed.json()["message"],
        }
        and "RuntimeError: the model broke" in failed.json()["message"]
    )
    assert slow.status_code == 504 and slow.json()["error"] == "BatchTimeoutError"


async def test_deleting_an_app_drains_its_requests_and_its_board(apps) -> None:
    handle = serve.get_app_handle("model")
    waiting = [handle.remote({"query": f"drain {i}", "sleep": 0.1}) for i in range(6)]
    await asyncio.sleep(0.3)  # (accepted or not yet: every one must be answered either way)
    deleting = threading.Thread(target=serve.delete, args=("model",))
    deleting.start()
    try:
        got = await asyncio.wait_for(asyncio.gather(*waiting), TIMEOUT)
    finally:
        await asyncio.to_thread(deleting.join, TIMEOUT)
    assert got == [f"DRAIN {i}!" for i in range(6)]
    with pytest.raises(StratabatchError, match="no stratabatch application 'model'"):
        await asyncio.to_thread(get_stats, "model")


def test_the_example_runs(apps) -> None:
    from examples import ray_app

    cloudpickle.register_pickle_by_value(ray_app)
    stats = ray_app.main(apps.http_port)
    # 10 questions, each 3 times at once: they merge in a window or into running work, or
    # (sent after their twin's call finished) are answered from the replica's reuse cache;
    # a copy the router sent to the other replica (its imbalance fallback) runs again
    assert stats.total_requests == 30 and stats.errors == 0
    assert 10 <= stats.unique_requests <= 30
    assert stats.unique_requests + stats.duplicates == 30


class _FakeReplica:
    """A replica of the board's protocol whose reuse cache is a dict of scope -> entries:
    it polls, carries out the forget orders, and reports, until stopped."""

    def __init__(self, board: StatsBoard, name: str, cache: dict[str, int], fail: bool = False):
        self.board, self.name, self.cache, self.fail = board, name, cache, fail
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        seen = await self.board.join(self.name, None)
        self.task = asyncio.ensure_future(self._loop(seen))

    def _forget(self, scope: dict | None) -> int | str:
        if self.fail:
            return "RuntimeError: the cache is locked"
        names = [k for k in self.cache if scope is None or k == scope.get("user", k)]
        return sum(self.cache.pop(k) for k in names)

    async def _loop(self, seen: int) -> None:
        while True:
            now, orders = await self.board.poll(seen, 5.0)
            if now > seen:
                dropped = {r: self._forget(scope) for r, scope in orders}
                await self.board.report(self.name, now, {}, dropped)
                seen = now

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_a_forget_round_sums_the_live_replicas_and_names_one_that_fails() -> None:
    board = StatsBoard(dedup_scope=("user",))
    a = _FakeReplica(board, "r1", {"ann": 3, "bob": 2})
    b = _FakeReplica(board, "r2", {"ann": 1})
    bad = _FakeReplica(board, "r3", {"ann": 4}, fail=True)
    await board.join("r4", _Dead())  # died without leaving: found gone, adds nothing
    for r in (a, b, bad):
        await r.start()
    try:
        out = await board.forget({"user": "ann"}, 1.0)
        assert out == {"dropped": {"r1": 3, "r2": 1}, "failed": {"r3": out["failed"]["r3"]},
                       "stale": [], "gone": ["r4"]}  # fmt: skip
        with pytest.raises(ForgetIncompleteError) as e:
            forget_total([out], 1.0)
        assert (e.value.dropped, list(e.value.replicas)) == (4, ["r3"])
        assert "replica r3 failed: RuntimeError: the cache is locked" in str(e.value)
        assert "The others dropped 4 entries" in str(e.value)
        # (it crosses Ray, pickled, and the ingress's copy of it: every field kept)
        for copy in (cloudpickle.loads(cloudpickle.dumps(e.value)), copy_error(e.value)):
            assert (type(copy), str(copy)) == (ForgetIncompleteError, str(e.value))
            assert (copy.dropped, copy.replicas) == (4, e.value.replicas)
        await board.leave("r3", {})
        assert forget_total([await board.forget(None, 1.0)], 1.0) == 2  # bob's
        assert a.cache == b.cache == {} and board._orders == {}
    finally:
        for r in (a, b, bad):
            await r.stop()


async def test_a_forget_order_waits_for_a_silent_replica_and_reaches_late_joiners() -> None:
    class Alive:
        class _Ready:
            def remote(self) -> object:
                return asyncio.sleep(0)

        __ray_ready__ = _Ready()

    board = StatsBoard()
    await board.join("slow", Alive())  # live, but it does not poll during the round
    out = await board.forget(None, 0.4)
    assert out["stale"] == ["slow"] and out["dropped"] == {}
    with pytest.raises(ForgetIncompleteError, match="replica slow did not answer within 0.4 s"):
        forget_total([out], 0.4)
    # a replica that joins while the order is still going round carries it out too
    late = _FakeReplica(board, "late", {"x": 2})
    slow = _FakeReplica(board, "slow", {"y": 5})
    await late.start()
    await slow.start()  # (joined already: it gets the order on its next poll)
    try:
        for _ in range(100):
            if not late.cache and not slow.cache:
                break
            await asyncio.sleep(0.01)
        assert late.cache == slow.cache == {} and board._orders == {}
    finally:
        await late.stop()
        await slow.stop()


async def test_the_board_checks_forget_arguments_before_any_order() -> None:
    board = StatsBoard(dedup_scope=("user", "model"))
    with pytest.raises(TypeError):
        await board.forget("ann", 1.0)
    with pytest.raises(InvalidRequestError, match="'team' is not a dedup_scope field"):
        await board.forget({"team": "x"}, 1.0)
    assert board._round == 0 and board._orders == {}
    assert (await board.forget({"model": "m"}, 1.0))["dropped"] == {}  # (no replica)
    assert StatsBoard().check_forget({}) is None  # {} matches every entry, with no scope too
