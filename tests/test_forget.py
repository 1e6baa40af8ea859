"""The reuse cache's control surface in embedded mode: ``forget(scope)`` and the per-call
``reuse=False`` (issue 23's Control)."""

from __future__ import annotations

import asyncio

import pytest

from stratabatch import BatchProcessor, InvalidRequestError


def numbered_handler(calls):
    """Each handler item answers with its call number, so a fresh answer differs from a stored
    one."""

    async def handler(reqs):
        calls.append([r["query"] for r in reqs])
        return [{"q": r["query"], "call": len(calls)} for r in reqs]

    return handler


def scoped(calls, **kw):
    return BatchProcessor(
        numbered_handler(calls),
        window_ms=1,
        reuse="exact",
        dedup_scope=("model", "user"),
        **kw,
    )


async def fill(batch):
    for model in ("small", "big"):
        for user in ("u1", "u2"):
            await batch.process({"query": "q", "model": model, "user": user})
    assert batch.get_stats().reuse_entries == 4


async def test_forget_everything_returns_the_count_and_twins_call_again():
    calls = []
    async with scoped(calls) as batch:
        await fill(batch)
        assert batch.forget() == 4
        assert batch.get_stats().reuse_entries == 0
        assert batch.forget() == 0
        await batch.process({"query": "q", "model": "small", "user": "u1"})
        assert len(calls) == 5


async def test_forget_one_whole_scope():
    calls = []
    async with scoped(calls) as batch:
        await fill(batch)
        assert batch.forget({"model": "small", "user": "u1"}) == 1
        assert batch.get_stats().reuse_entries == 3
        # the others are still served from the cache; the forgotten one calls again
        await batch.process({"query": "q", "model": "small", "user": "u2"})
        assert len(calls) == 4
        await batch.process({"query": "q", "model": "small", "user": "u1"})
        assert len(calls) == 5


async def test_forget_by_some_fields_matches_any_value_of_the_others():
    calls = []
    async with scoped(calls) as batch:
        await fill(batch)
        assert batch.forget({"user": "u2"}) == 2
        assert batch.forget({"model": "big"}) == 1  # (big/u2 went already)
        assert batch.forget({"user": "nobody"}) == 0
        assert batch.get_stats().reuse_entries == 1
        assert batch.forget({}) == 1


async def test_scope_values_compare_canonically():
    calls = []
    async with BatchProcessor(
        numbered_handler(calls), window_ms=1, reuse="exact", dedup_scope=("params", "user")
    ) as batch:
        await batch.process({"query": "q", "params": ("t", 1), "user": "u"})
        await batch.process({"query": "q", "params": {"b": 1, "a": 2}, "user": "u"})
        assert batch.forget({"params": ["t", 1]}) == 1
        assert batch.forget({"params": {"a": 2, "b": 1}, "user": "u"}) == 1


async def test_a_request_without_a_scope_field_is_a_scope_of_its_own():
    calls = []
    async with scoped(calls) as batch:
        await batch.process({"query": "q", "model": "small"})  # no user
        await batch.process({"query": "q", "model": "small", "user": None})
        assert batch.forget({"model": "small", "user": None}) == 1
        assert batch.forget({"model": "small"}) == 1


async def test_bad_scopes_raise_and_drop_nothing():
    calls = []
    async with scoped(calls) as batch:
        await fill(batch)
        for bad in ("small", ["model"], 3, {1: "x"}):
            with pytest.raises(TypeError, match="forget"):
                batch.forget(bad)
        with pytest.raises(InvalidRequestError, match=r"'modle' is not a dedup_scope field"):
            batch.forget({"modle": "small"})
        with pytest.raises(TypeError, match="cannot be encoded"):
            batch.forget({"model": object()})
        assert batch.get_stats().reuse_entries == 4


async def test_without_a_scope_only_everything_can_be_forgotten():
    calls = []
    async with BatchProcessor(numbered_handler(calls), window_ms=1, reuse="exact") as batch:
        await batch.process({"query": "q"})
        with pytest.raises(InvalidRequestError, match="has no dedup_scope"):
            batch.forget({"model": "x"})
        assert batch.forget({}) == 1


async def test_with_reuse_off_forget_is_0_and_still_checks():
    async with BatchProcessor(numbered_handler([]), window_ms=1) as batch:
        await batch.process({"query": "q"})
        assert batch.forget() == 0
        with pytest.raises(TypeError):
            batch.forget("x")


async def test_reuse_false_bypasses_the_cache_and_refreshes_the_entry():
    calls = []
    async with BatchProcessor(numbered_handler(calls), window_ms=1, reuse="exact") as batch:
        first = await batch.process({"query": "q"})
        fresh = await batch.process({"query": "q"}, reuse=False)
        assert len(calls) == 2 and fresh is not first and fresh["call"] == 2
        # the fresh answer replaced the stored one
        assert await batch.process({"query": "q"}) is fresh
        fresh_list = await batch.process([{"query": "q"}, {"query": "r"}], reuse=False)
        assert len(calls) == 3 and fresh_list[0]["call"] == 3
        done = [c async for c in batch.process_streaming([{"query": "q"}], reuse=False)]
        assert len(calls) == 4 and done[0].reused_age_s is None
        assert await batch.process([{"query": "q"}]) == [done[0].result]
        s = batch.get_stats()
        assert s.reuse_hits == 2
        assert s.total_requests == s.unique_requests + s.duplicates + s.dropped + s.queue_depth


async def test_reuse_false_bypasses_near_reuse_too():
    # reuse="near": neither the near twin nor the exact twin of a stored answer is served when
    # the call says reuse=False, alone or beside a twin of the same pass that did not say it
    calls = []
    async with BatchProcessor(
        numbered_handler(calls), window_ms=1, reuse="near", cold_start="wait"
    ) as batch:
        await batch.warm_up()
        first = await batch.process({"query": "How do I reset my password?"})
        assert await batch.process({"query": "how do i reset my pasword"}) is first
        fresh = await batch.process({"query": "how do i reset my pasword"}, reuse=False)
        assert fresh is not first and len(calls) == 2
        pair = await asyncio.gather(
            batch.process({"query": "How do I reset my password"}, reuse=False),
            batch.process({"query": "How do I reset my password"}),
        )
        assert len(calls) == 3 and pair[0] is pair[1] and pair[0] not in (first, fresh)
        assert batch.get_stats().reuse_near_hits == 1


async def test_reuse_false_still_merges_with_a_waiting_twin():
    calls = []
    async with BatchProcessor(numbered_handler(calls), window_ms=20, reuse="exact") as batch:
        a, b = await asyncio.gather(
            batch.process({"query": "q"}, reuse=False), batch.process({"query": "q"})
        )
        assert a is b and calls == [["q"]]


async def test_reuse_false_with_reuse_off_is_a_plain_call():
    calls = []
    async with BatchProcessor(numbered_handler(calls), window_ms=1) as batch:
        assert (await batch.process({"query": "q"}, reuse=False))["call"] == 1
        assert (await batch.process([{"query": "q"}], reuse=False))[0]["call"] == 2


async def test_a_bad_reuse_flag_is_refused_before_anything_is_queued():
    calls = []
    async with BatchProcessor(numbered_handler(calls), window_ms=1, reuse="exact") as batch:
        for bad in ("off", None, 0, 1):
            with pytest.raises(InvalidRequestError, match="reuse must be True or False"):
                await batch.process({"query": "q"}, reuse=bad)
            with pytest.raises(InvalidRequestError, match="reuse must be True or False"):
                await batch.process([{"query": "q"}], reuse=bad)
            with pytest.raises(InvalidRequestError, match="reuse must be True or False"):
                async for _ in batch.process_streaming([{"query": "q"}], reuse=bad):
                    pass
        assert calls == [] and batch.get_stats().total_requests == 0


def test_forget_by_some_fields_walks_the_entries_once_however_many_scopes_match():
    # (a walk over the entries a matching scope made a partial forget O(entries x scopes):
    # 23 s on the event loop for 1,000 scopes of 100,000 entries)
    from stratabatch.dedup import normalize_key, scope_of
    from stratabatch.reuse import ReuseCache
    from stratabatch.reusecontrol import forget

    fields = ("tenant", "user")
    cache = ReuseCache(600.0, 10_000, 1 << 30)
    for i in range(3_000):
        scope = scope_of({"tenant": f"t{i % 2}", "user": f"u{i % 500}"}, fields)
        key = normalize_key(f"question {i}")
        cache.put((scope, hash(key), False), key, i, scope, size=10)
    walks = []
    entries, drop = cache.entries, cache.forget
    cache.entries = lambda: walks.append("entries") or entries()
    cache.forget = lambda scope: walks.append("forget") or drop(scope)
    assert forget(cache, fields, {"tenant": "t1"}) == 1_500  # 250 scopes
    assert walks == ["entries", "forget"]
    left = {(e.result % 2) for e in entries()}
    assert left == {0} and len(entries()) == 1_500
