"""The reuse cache (stratabatch.reuse) and its options: expiry on an injected clock, LRU bounds
in entries and bytes, scope isolation, errors never stored, the same object served, sizes."""

from __future__ import annotations

import sys

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from stratabatch import ConfigError, HandlerError
from stratabatch.config import BatchConfig
from stratabatch.dedup import normalize_key, scope_of
from stratabatch.reuse import (
    CLEARS_ON,
    ENTRY_OVERHEAD,
    ReuseCache,
    encoded_size,
    estimate_size,
    reuse_cache_for,
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def key_of(text: str, scope: bytes = b"") -> tuple:
    """A key of the core's shape (its scoped form): the hash of the normalized text."""
    return (scope, hash(normalize_key(text)), False)


def cache(clock: Clock | None = None, **kw) -> ReuseCache:
    args = {"ttl_s": 10.0, "max_entries": 100, "max_bytes": 1 << 20}
    args.update(kw)
    return ReuseCache(
        args.pop("ttl_s"),
        args.pop("max_entries"),
        args.pop("max_bytes"),
        clock=clock or Clock(),
        **args,
    )


def put(c: ReuseCache, text: str, result, scope: bytes = b"", **kw):
    n = normalize_key(text)
    return c.put(key_of(text, scope), n, result, scope, **kw)


def get(c: ReuseCache, text: str, scope: bytes = b"", now=None):
    n = normalize_key(text)
    return c.get(key_of(text, scope), n, scope, now)


# --------------------------------------------------------------------------- expiry


def test_an_answer_serves_twins_until_its_ttl_and_not_at_it():
    clock = Clock(1000.0)
    c = cache(clock, ttl_s=10.0)
    answer = {"text": "Paris"}
    put(c, "capital of France?", answer)
    clock.t = 1009.999
    got = get(c, "  Capital of FRANCE? ")  # an exact twin: the same normalized key
    assert got is not None
    value, age = got
    assert value is answer
    assert age == pytest.approx(9.999)
    clock.t = 1010.0
    assert get(c, "capital of France?") is None
    s = c.stats()
    assert (s.hits, s.misses, s.expirations, s.entries, s.bytes) == (1, 1, 1, 0, 0)


def test_age_counts_from_the_birth_the_caller_gives_and_a_stale_answer_is_not_stored():
    clock = Clock(1000.0)
    c = cache(clock, ttl_s=10.0)
    put(c, "q", "a", born=995.0)  # its handler call began 5 s ago
    assert get(c, "q")[1] == pytest.approx(5.0)
    clock.t = 1004.999
    assert get(c, "q") is not None
    clock.t = 1005.0
    assert get(c, "q") is None
    assert put(c, "old", "a", born=clock.t - 10.0) is None
    assert get(c, "old") is None


def test_lookups_read_the_injected_clock_or_the_time_given():
    clock = Clock(0.0)
    c = cache(clock, ttl_s=1.0)
    put(c, "q", "a")
    assert get(c, "q", now=0.5)[1] == pytest.approx(0.5)
    assert get(c, "q", now=1.0) is None  # the given time, not the clock's 0.0


def test_expire_sweeps_entries_past_their_ttl_wherever_they_are_in_use_order():
    clock = Clock(0.0)
    dropped = []
    c = cache(clock, ttl_s=10.0, on_drop=dropped.append)
    put(c, "a", 1)
    clock.t = 5.0
    put(c, "b", 2)
    get(c, "a")  # a becomes the most recently used
    clock.t = 10.0
    assert c.expire() == 1
    assert [e.norm for e in dropped] == ["a"] and not dropped[0].live
    assert [e.norm for e in c.entries()] == ["b"]
    assert c.stats().expirations == 1


def test_a_put_drops_the_expired_entries_at_the_front():
    clock = Clock(0.0)
    c = cache(clock, ttl_s=10.0)
    for i in range(5):
        put(c, f"q{i}", i)
    clock.t = 20.0
    put(c, "new", 0)
    assert len(c) == 1
    s = c.stats()
    assert (s.entries, s.expirations, s.evictions) == (1, 5, 0)


# --------------------------------------------------------------------------- LRU bounds


def test_entry_bound_evicts_the_least_recently_used_and_a_hit_refreshes():
    dropped = []
    c = cache(max_entries=3, on_drop=dropped.append)
    for t in ("a", "b", "c"):
        put(c, t, t.upper())
    assert get(c, "a") is not None  # a is now the most recently used: b is the least
    put(c, "d", "D")
    assert get(c, "b") is None
    assert all(get(c, t) is not None for t in ("a", "c", "d"))
    assert [e.norm for e in dropped] == ["b"]
    put(c, "e", "E")  # a, c, d were all used since b; a before c, c before d
    assert get(c, "a") is None
    s = c.stats()
    assert (s.entries, s.evictions) == (3, 2)


def test_a_miss_does_not_refresh():
    c = cache(max_entries=2)
    put(c, "a", 1)
    put(c, "b", 2)
    assert c.get(key_of("a"), "not a", b"") is None  # same key, other text: a miss
    put(c, "c", 3)
    assert get(c, "a") is None and get(c, "b") is not None


def test_byte_bound_evicts_least_recently_used_until_the_bytes_fit():
    per = 1000 + 1 + ENTRY_OVERHEAD  # a result of 1000 bytes under a one-letter key
    c = cache(max_bytes=3 * per)
    for t in ("a", "b", "c"):
        put(c, t, object(), size=1000)
    assert c.stats().bytes == 3 * per
    get(c, "a")
    put(c, "d", object(), size=1000)
    assert get(c, "b") is None and len(c) == 3
    put(c, "e", object(), size=2000)  # twice as large: two must go (c, then a)
    assert [e.norm for e in c.entries()] == ["d", "e"]
    s = c.stats()
    assert s.bytes == per + (2000 + 1 + ENTRY_OVERHEAD) <= 3 * per
    assert s.evictions == 3


def test_a_result_larger_than_the_byte_bound_alone_is_refused_and_evicts_nothing():
    c = cache(max_bytes=10_000)
    put(c, "small", "x", size=10)
    assert put(c, "huge", "y", size=20_000) is None
    assert get(c, "huge") is None and get(c, "small") is not None
    assert c.stats().refused == 1


def test_lowered_bounds_apply_at_once():
    c = cache(max_entries=10)
    for i in range(10):
        put(c, f"q{i}", i)
    get(c, "q0")
    c.configure(10.0, 3, 1 << 20)
    assert sorted(e.norm for e in c.entries()) == ["q0", "q8", "q9"]


def test_replacing_an_entry_accounts_its_bytes_once_and_drops_the_old_one():
    dropped = []
    c = cache(on_drop=dropped.append)
    first = put(c, "q", "old", size=100)
    put(c, "q", "new", size=300)
    assert get(c, "q")[0] == "new"
    assert dropped == [first] and not first.live
    assert c.stats().bytes == 300 + 1 + ENTRY_OVERHEAD
    assert len(c) == 1


# --------------------------------------------------------------------------- what is served


def test_a_hit_returns_the_very_object_the_first_caller_got():
    c = cache()
    answer = {"choices": [{"text": "hi"}]}
    put(c, "hello", answer)
    for _ in range(3):
        value, _ = get(c, "hello")
        assert value is answer


def test_scopes_never_share_answers():
    c = cache()
    a = scope_of({"model": "small"}, ("model",))
    b = scope_of({"model": "large"}, ("model",))
    put(c, "summarize this", "from small", a)
    assert get(c, "summarize this", b) is None
    assert get(c, "summarize this", a)[0] == "from small"
    # a key that does not carry its scope still cannot serve another scope's answer
    n = normalize_key("summarize this")
    c.put(hash(n), n, "unscoped-from-small", a)
    assert c.get(hash(n), n, b) is None
    assert c.get(hash(n), n, a)[0] == "unscoped-from-small"


def test_a_key_collision_with_another_text_is_a_miss():
    c = cache()
    c.put(42, "what is 2+2", "4")
    assert c.get(42, "what is 2+3") is None
    assert c.get(42, "what is 2+2")[0] == "4"


def test_errors_are_never_stored():
    c = cache()
    for err in (ValueError("backend down"), HandlerError("boom"), KeyboardInterrupt()):
        assert put(c, "q", err) is None
        assert get(c, "q") is None
    assert c.stats().refused == 3 and len(c) == 0
    put(c, "q", "fine")
    assert put(c, "q", RuntimeError("later failure")) is None
    assert get(c, "q")[0] == "fine"  # the stored success stays; the error did not replace it


def test_falsy_results_are_answers_too():
    c = cache()
    for i, value in enumerate((None, 0, "", [], False)):
        put(c, f"q{i}", value)
        got = get(c, f"q{i}")
        assert got is not None and got[0] is value


# --------------------------------------------------------------------------- forget, clear


def test_forget_drops_one_scope_and_clear_everything():
    dropped = []
    c = cache(on_drop=dropped.append)
    a = scope_of({"user": "ann"}, ("user",))
    b = scope_of({"user": "bob"}, ("user",))
    for i in range(3):
        put(c, f"q{i}", i, a)
        put(c, f"q{i}", -i, b)
    assert c.forget(a) == 3
    assert all(get(c, f"q{i}", a) is None for i in range(3))
    assert all(get(c, f"q{i}", b) is not None for i in range(3))
    assert len(dropped) == 3 and all(e.scope == a and not e.live for e in dropped)
    assert c.forget() == 3  # None: every scope
    s = c.stats()
    assert (s.entries, s.bytes, s.forgotten) == (0, 0, 6)
    assert len(dropped) == 6


def test_run_time_changes_of_the_key_or_match_options_drop_the_cache():
    config = BatchConfig(reuse="exact")
    c = reuse_cache_for(config, clock=Clock())
    assert c is not None
    for name in ("dedup_threshold", "dedup_guards", "embedder", "dedup_key", "normalize"):
        assert name in CLEARS_ON
        put(c, "q", "a")
        c.reconfigure(config, name)
        assert len(c) == 0, name
    put(c, "q", "a")
    c.reconfigure(config, "window_ms")  # batching options leave answers alone
    assert len(c) == 1
    config.reuse_max_entries = 1
    put(c, "r", "b")
    c.reconfigure(config, "reuse_max_entries")
    assert [e.norm for e in c.entries()] == ["r"]


# --------------------------------------------------------------------------- near path hooks


def test_the_near_path_serves_an_entry_it_holds_until_it_leaves():
    clock = Clock(0.0)
    c = cache(clock, ttl_s=10.0, max_entries=1)
    e = put(c, "q", "answer", handle=7)
    assert e.handle == 7
    assert c.hit(e)[0] == "answer"
    s = c.stats()
    assert (s.hits, s.near_hits, s.misses) == (1, 1, 0)
    put(c, "other", "x")  # evicts e: a handle still held elsewhere is stale now
    assert not e.live and c.hit(e) is None
    e2 = c.entries()[0]
    clock.t = 10.0
    assert c.hit(e2) is None and len(c) == 0


# --------------------------------------------------------------------------- sizes


def test_put_takes_a_given_size_or_asks_size_of():
    seen = []

    def size_of(obj):
        seen.append(obj)
        return 5000

    c = cache(size_of=size_of)
    result = object()
    put(c, "ab", result)
    put(c, "cd", "x", size=7)
    assert seen == [result]  # size_of only when the size was not given
    assert c.stats().bytes == (5000 + 2 + ENTRY_OVERHEAD) + (7 + 2 + ENTRY_OVERHEAD)


def test_a_result_size_of_cannot_size_is_refused_and_put_does_not_raise():
    def size_of(obj):
        raise TypeError("cannot size this")

    c = cache(size_of=size_of)
    assert put(c, "q", object()) is None
    assert get(c, "q") is None
    assert c.stats().refused == 1


def test_engine_mode_sizes_by_the_msgpack_length_and_refuses_what_it_could_not_send():
    import msgpack
    import numpy as np

    size_of = encoded_size(max_result_bytes=1000)
    value = {"text": "hello", "scores": [0.5, 1.5], "n": 3}
    assert size_of(value) == len(msgpack.packb(value))
    assert size_of(np.arange(3)) == len(msgpack.packb([0, 1, 2]))
    c = cache(size_of=size_of)
    e = put(c, "ok", value)
    assert e is not None and e.size == len(msgpack.packb(value)) + 2 + ENTRY_OVERHEAD
    assert put(c, "too big", "x" * 2000) is None  # over max_result_bytes: its caller failed
    assert put(c, "not sendable", object()) is None
    assert c.stats().refused == 2 and len(c) == 1


def test_estimate_size_of_plain_data_is_the_sum_of_getsizeof():
    data = {"text": "x" * 500, "tokens": [1, 2, 3.5], "meta": ("a", b"bb", None)}
    g = sys.getsizeof
    exact = (
        g(data)
        + sum(g(k) for k in data)
        + g(data["text"])
        + g(data["tokens"])
        + sum(g(x) for x in data["tokens"])
        + g(data["meta"])
        + sum(g(x) for x in data["meta"])
    )
    assert estimate_size(data) == exact
    assert estimate_size("é" * 100) == g("é" * 100)


def test_estimate_size_of_a_large_container_is_close_and_counts_a_shared_one_once():
    big = [("w%06d" % i) * 10 for i in range(100_000)]
    exact = sys.getsizeof(big) + sum(sys.getsizeof(s) for s in big)
    assert abs(estimate_size(big) - exact) / exact < 0.02
    shared = ["y" * 1000]
    twice = [shared, shared]
    assert estimate_size(twice) == sys.getsizeof(twice) + estimate_size(shared)


def test_estimate_size_ends_on_cycles_and_deep_nesting_within_its_budget():
    a: list = []
    a.append(a)
    assert estimate_size(a) == sys.getsizeof(a)
    deep: list = []
    node = deep
    for _ in range(50_000):
        nxt: list = []
        node.append(nxt)
        node = nxt
    one = sys.getsizeof(deep)  # (a list grown by append: its over-allocation counts)
    # it walks 100 of them and stops (what lies deeper is not seen: counted at most once)
    assert 100 * one <= estimate_size(deep, max_nodes=100) <= 102 * one


def test_estimate_size_reads_an_instance_dict():
    class Answer:
        def __init__(self):
            self.text = "z" * 10_000

    assert estimate_size(Answer()) > 10_000


# --------------------------------------------------------------------------- a model


@settings(max_examples=300, deadline=None)
@example(  # a used entry expires behind a live one: it stays counted until it is reached
    [("put", 0, 0), ("tick", 0, 1000), ("put", 1, 0), ("tick", 0, 500), ("get", 0, 0)]
    + [("tick", 0, 1000), ("put", 2, 0)],
    5,
    1,
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["put", "get", "tick"]),
            st.integers(0, 7),  # which text
            st.integers(0, 3000),  # a result's size, or a tick in ms
        ),
        max_size=60,
    ),
    st.integers(1, 5),
    st.integers(1, 4),
)
def test_the_cache_agrees_with_a_plain_lru_ttl_model(ops, max_entries, budget_k):
    """Random puts, gets and clock ticks against a list-based model: the same answers, the
    same entries in the same use order, the same bytes (a put drops the expired entries at
    the front of the use order, then evicts from it while a bound is exceeded)."""
    clock = Clock(0.0)
    ttl = 2.0
    max_bytes = budget_k * 1000 + ENTRY_OVERHEAD + 10
    c = cache(clock, ttl_s=ttl, max_entries=max_entries, max_bytes=max_bytes)
    model: list[list] = []  # [text, value, born, size], least recently used first
    for op, i, n in ops:
        text = f"t{i}"
        if op == "tick":
            clock.t += n / 1000.0
            continue
        if op == "get":
            want = None
            for row in model:
                if row[0] == text:
                    model.remove(row)
                    if clock.t - row[2] < ttl:
                        model.append(row)  # used: now the most recent
                        want = row[1]
                    break
            got = get(c, text)
            assert (got[0] if got is not None else None) == want
        else:
            value = (text, clock.t)
            size = n + len(text) + ENTRY_OVERHEAD
            stored = put(c, text, value, size=n)
            if size > max_bytes:
                assert stored is None
            else:
                model[:] = [r for r in model if r[0] != text]
                while model and clock.t - model[0][2] >= ttl:  # expired at the front go
                    model.pop(0)
                model.append([text, value, clock.t, size])
                while len(model) > max_entries or sum(r[3] for r in model) > max_bytes:
                    model.pop(0)
        assert [e.norm for e in c.entries()] == [r[0] for r in model]
        assert c.stats().bytes == sum(r[3] for r in model)


# --------------------------------------------------------------------------- options


def test_the_cache_refuses_bounds_that_are_not_positive():
    for args, field in (((0, 1, 1), "reuse_ttl_s"), ((1, 0, 1), "reuse_max_entries")):
        with pytest.raises(ConfigError, match=f"{field} must be > 0") as info:
            ReuseCache(*args)
        assert info.value.field == field
    c = cache()
    with pytest.raises(ConfigError, match="reuse_max_bytes must be > 0"):
        c.configure(1.0, 1, -5)
    assert (c.ttl_s, c.max_entries) == (10.0, 100)  # unchanged


def test_reuse_is_off_by_default_and_none_means_off():
    assert BatchConfig().reuse == "off"
    assert BatchConfig(reuse=None).reuse == "off"
    assert reuse_cache_for(BatchConfig()) is None
    c = reuse_cache_for(
        BatchConfig(reuse="exact", reuse_ttl_s=5, reuse_max_entries=7, reuse_max_bytes=8192)
    )
    assert (c.ttl_s, c.max_entries, c.max_bytes) == (5.0, 7, 8192)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"reuse": "sometimes"}, r"reuse must be one of off, exact, near; got 'sometimes'"),
        ({"reuse": True}, r"reuse must be one of off, exact, near; got True"),
        ({"reuse_ttl_s": 0}, r"reuse_ttl_s must be in \(0, 86400\], got 0"),
        ({"reuse_ttl_s": float("inf")}, r"reuse_ttl_s must be in \(0, 86400\], got inf"),
        ({"reuse_ttl_s": "60"}, r"reuse_ttl_s must be a number, got '60'"),
        ({"reuse_max_entries": 0}, r"reuse_max_entries must be in \[1, 100000000\], got 0"),
        ({"reuse_max_entries": 2.5}, r"reuse_max_entries must be an integer, got 2.5"),
        ({"reuse_max_bytes": 100}, r"reuse_max_bytes must be in \[4096, 1099511627776\]"),
        (
            {"reuse": "exact", "enable_dedup": False},
            r"reuse='exact' needs enable_dedup=True",
        ),
    ],
)
def test_reuse_options_are_validated_with_the_field_named(options, message):
    with pytest.raises(ConfigError, match=message) as info:
        BatchConfig(**options)
    assert info.value.field in options


def test_run_time_assignments_of_reuse_options_are_validated_and_rolled_back():
    config = BatchConfig(reuse="exact")
    with pytest.raises(ConfigError, match="needs enable_dedup=True") as info:
        config.enable_dedup = False
    assert info.value.field == "enable_dedup"
    assert config.enable_dedup is True
    with pytest.raises(ConfigError, match="must be one of off, exact, near") as info:
        config.reuse = "nearby"
    assert info.value.field == "reuse" and config.reuse == "exact"
    config.reuse = "near"
    config.reuse = "off"
    config.enable_dedup = False  # fine once reuse is off
    heard = []
    config.subscribe(heard.append)
    config.reuse_ttl_s = 2.5
    assert heard == ["reuse_ttl_s"] and config.reuse_ttl_s == 2.5


def test_a_mistyped_reuse_option_is_suggested():
    from stratabatch import BatchProcessor

    with pytest.raises(ConfigError, match="did you mean 'reuse_ttl_s'"):
        BatchProcessor(reuse_ttl=5)


# --------------------------------------------------------------------------- perf scripts


def test_repeat_traffic_is_seeded_and_its_replay_meets_the_floor_of_exact_reuse():
    from stratabatch.perf.repeat_traffic import (
        RepeatConfig,
        generate_repeat,
        repeat_truth,
        replay,
    )

    cfg = RepeatConfig(seed=3, minutes=0.5, rate=40.0)
    w = generate_repeat(cfg)
    assert [(r.text, r.t) for r in w.requests] == [
        (r.text, r.t) for r in generate_repeat(cfg).requests
    ]
    truth = repeat_truth(w)
    assert truth["requests"] == len(w.requests) > 600
    assert truth["distinct_intents"] <= truth["distinct_exact_keys"] < truth["requests"]
    # a cache that outlives the run and holds everything: one item per distinct exact key
    full = replay(w, ttl_s=3600.0, max_entries=1_000_000)
    assert full["backend_items"] == truth["distinct_exact_keys"]
    assert full["wrong_answers"] == 0
    assert full["reuse_hits"] == truth["requests"] - truth["distinct_exact_keys"]
    # bounded: never more entries than allowed, and more backend items than the floor
    small = replay(w, ttl_s=3600.0, max_entries=20)
    assert small["peak_entries"] == 20 and small["entries_each_minute"][-1] == 20
    assert small["backend_items"] > full["backend_items"]
    assert small["evictions"] == small["backend_items"] - 20


def test_trap_siblings_are_one_or_two_words_apart_or_the_same_words_reordered():
    from stratabatch.perf.repeat_traffic import RepeatConfig, generate_repeat, trap_siblings

    w = generate_repeat(RepeatConfig(minutes=0.1))
    sib = trap_siblings(w)
    text = {i.id: normalize_key(i.text) for i in w.intents.values()}
    by_text = {t: i for i, t in text.items()}
    on = by_text[normalize_key("Turn on the kitchen lights")]
    off = by_text[normalize_key("Turn off the kitchen lights")]
    assert off in sib[on] and on in sib[off]
    there = by_text[normalize_key("Find flights from Paris to London")]
    back = by_text[normalize_key("Find flights from London to Paris")]
    assert back in sib[there]
    weather = by_text[normalize_key("What's the weather in Paris?")]
    assert on not in sib.get(weather, set())


def test_bench_reuse_runs_every_row_and_writes_its_json(tmp_path, capsys):
    import json

    from stratabatch.perf import bench_reuse

    out = tmp_path / "r.json"
    assert (
        bench_reuse.main(
            ["--entries", "500", "--lookups", "1000", "--repeats", "1", "--json", str(out)]
        )
        == 0
    )
    got = json.loads(out.read_text())
    systems = {(r["system"], r["lookup"]) for r in got["rows"]}
    assert ("ReuseCache.get", "hit") in systems and ("dict.get (floor)", "miss") in systems
    assert ("functools.lru_cache", "miss (+insert)") in systems
    assert [t["target"].split(",")[0] for t in got["targets"]][:3] == ["exact lookup"] * 3
    assert "near lookup" in capsys.readouterr().out


async def test_repeat_traffic_live_runs_the_batcher_and_the_loader_peer():
    from stratabatch.perf.repeat_traffic import RepeatConfig, generate_repeat, live, repeat_truth

    w = generate_repeat(RepeatConfig(seed=5, minutes=0.1, rate=40.0))
    truth = repeat_truth(w)
    batch = await live(w, "batch", speedup=60.0)
    loader = await live(w, "loader", speedup=60.0)
    assert batch["wrong_answers"] == loader["wrong_answers"] == 0
    assert truth["distinct_exact_keys"] <= batch["backend_items"] <= truth["requests"]
    # a cache of futures keyed by the normalized text: one item per distinct exact key
    assert loader["backend_items"] == truth["distinct_exact_keys"]


def test_the_engine_takes_the_reuse_options_as_flags_and_variables():
    from stratabatch.cli import build_parser, options_from

    args = build_parser().parse_args(
        ["--handler", "x:y", "--reuse", "exact", "--reuse-ttl-s", "5", "--reuse-max-entries", "9"]
    )
    opts = options_from(args, environ={"STRATABATCH_REUSE_MAX_BYTES": "8192"})
    assert opts == {
        "reuse": "exact",
        "reuse_ttl_s": 5.0,
        "reuse_max_entries": 9,
        "reuse_max_bytes": 8192,
    }
    config = BatchConfig(**opts)
    assert (config.reuse, config.reuse_ttl_s, config.reuse_max_bytes) == ("exact", 5.0, 8192)
    near = BatchConfig(
        **options_from(build_parser().parse_args(["--handler", "x:y", "--reuse", "near"]))
    )
    assert near.reuse == "near"
