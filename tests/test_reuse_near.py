"""Near reuse (stratabatch.nearreuse, ``reuse="near"``): a stored answer serves a later near
twin that in-window dedup would have merged with it, never a trap sibling; scopes, the ttl,
the bounds and run-time changes hold for its index rows as for the entries."""

from __future__ import annotations

import pytest

from stratabatch import BatchProcessor
from stratabatch.config import BatchConfig
from stratabatch.dedup import normalize_key
from stratabatch.grouping import Deduper
from stratabatch.nearreuse import NearReuse, _Text
from stratabatch.reuse import ReuseCache


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def near_cache(clock: Clock | None = None, ttl_s: float = 60.0, max_entries: int = 100, **opts):
    config = BatchConfig(reuse="near", **opts)
    cache = ReuseCache(ttl_s, max_entries, 1 << 20, clock=clock or Clock())
    return cache, NearReuse(cache, Deduper(config, None), config)


def put(cache: ReuseCache, near: NearReuse, text: str, result, scope: bytes = b"", flush=True):
    n = normalize_key(text)
    e = cache.put((scope, hash(n), False), n, result, scope, size=10)
    if e is not None:
        near.store(e, text)
        if flush:  # (filed now; else at the next lookup)
            near.flush()
    return e


RESET = "How do I reset my password?"
# (stored, later ask): each pair's cosine is at or above the default threshold (0.80) but for
# the number pair (another partition), and a guard vetoes it
TRAPS = [
    ("How do I turn on the lights?", "How do I turn off the lights?"),  # opposites, 0.85
    ("I can log in to my account", "I cannot log in to my account"),  # negation, 0.87
    ("increase the font size", "decrease the font size"),  # opposites, 0.87
    ("order 123 status", "order 124 status"),  # numbers
    ("order 123 status", "order 123 status 2"),  # numbers
]


def test_canonical_and_typo_twins_are_served_the_same_object():
    cache, near = near_cache()
    answer = {"a": "reset it"}
    put(cache, near, RESET, answer, flush=False)
    assert near.index.live == 0  # (filed by the next lookup)
    got = near.lookup("hey, how do I reset my password", b"")  # same canonical text
    assert got is not None and got.result is answer and got.similarity == 1.0
    got = near.lookup("How do I reset my pasword?", b"")  # a typo: through the index
    assert got is not None and got.result is answer and 0.8 <= got.similarity < 1.0
    assert near.lookup("How do I reset my password on the app?", b"") is None  # more words
    assert (near.canon_hits, near.similar_hits, near.misses) == (1, 1, 1)
    s = cache.stats()
    assert (s.hits, s.near_hits) == (2, 2)


@pytest.mark.parametrize(("stored", "ask"), TRAPS)
def test_a_trap_sibling_is_not_served(stored, ask):
    cache, near = near_cache()
    put(cache, near, stored, "stored")
    assert near.lookup(ask, b"") is None
    assert near.lookup(stored + "!", b"") is not None  # (the stored one is findable)


def _reuse_vetoes(near: NearReuse) -> list:
    return [v for v in near.dedup.vetoes if v.reuse]


@pytest.mark.parametrize("guards", ["all", "some"])
def test_guard_vetoes_of_near_lookups_are_in_the_veto_log(guards, caplog):
    # every guard on: the guard kernel refuses (one pair alone, then a call's pairs at once);
    # some guards: Deduper.veto decides. Either way the window's log holds the refusal,
    # marked as a reuse lookup, and the guards say why when it is read.
    opts = {} if guards == "all" else {"dedup_guards": ("polarity", "scope", "residue")}
    cache, near = near_cache(**opts)
    put(cache, near, "increase the font size", "up")
    put(cache, near, "cancel my order", "cancelled")
    with caplog.at_level("DEBUG", logger="stratabatch.dedup"):
        assert near.lookup("decrease the font size", b"") is None
    (rec,) = _reuse_vetoes(near)
    assert (rec.request.text, rec.leader.text) == (
        "decrease the font size",
        "increase the font size",
    )
    assert rec.similarity >= near.dedup.threshold() - 1e-6
    assert str(rec.veto) == "polarity: increase / decrease"
    assert "kept apart from the stored answer of 'increase the font size'" in caplog.text
    asks = ["cancel my orders", "decrease the font size!", "cancel my ordr"]
    got = near.lookup_many([_Text(a) for a in asks], [b""] * 3, None, None)
    assert [g is None for g in got] == [True, True, False]  # (a typo is served)
    recs = _reuse_vetoes(near)
    assert [(r.request.text, r.leader.text, str(r.veto)) for r in recs[1:]] == [
        ("cancel my orders", "cancel my order", "scope: order / orders"),
        ("decrease the font size!", "increase the font size", "polarity: increase / decrease"),
    ]
    assert len(near.dedup.vetoes) == 3  # (no window merge was asked)


def test_scopes_do_not_share_near_twins():
    cache, near = near_cache(dedup_scope=("model",))
    put(cache, near, RESET, "a", scope=b"A")
    for ask in ("hey, how do I reset my password", "How do I reset my pasword?"):
        assert near.lookup(ask, b"B") is None
        assert near.lookup(ask, b"") is None
        got = near.lookup(ask, b"A")
        assert got is not None and got.result == "a"


def test_expired_entries_are_not_served_and_leave_the_index():
    clock = Clock()
    cache, near = near_cache(clock, ttl_s=10.0)
    put(cache, near, RESET, "a")
    clock.t += 9.0
    got = near.lookup("How do I reset my pasword?", b"")
    assert got is not None and got.age == pytest.approx(9.0)
    clock.t += 1.0
    assert near.lookup("How do I reset my pasword?", b"") is None
    assert near.lookup("hey, how do I reset my password", b"") is None
    assert len(cache) == 0 and near.index.live == 0


def test_entries_that_leave_the_cache_leave_the_index():
    cache, near = near_cache(max_entries=2)
    put(cache, near, RESET, "a")
    put(cache, near, "What is the capital of France?", "b")
    put(cache, near, "How do I cancel my subscription?", "c")  # evicts the first
    assert near.index.live == 2 and len(cache) == 2
    assert near.lookup("How do I reset my pasword?", b"") is None
    assert near.lookup("hey, how do I reset my password", b"") is None
    assert near.lookup("what is the capital of Frnace", b"").result == "b"
    put(cache, near, "What is the capital of France?", "b2")  # replaced: one row, the new one
    assert near.index.live == 2
    assert near.lookup("what is the capital of Frnace", b"").result == "b2"
    cache.forget(b"")
    assert near.index.live == 0 and near.lookup("how do i cancel my subscription", b"") is None
    put(cache, near, RESET, "a")
    cache.clear()
    assert near.index.live == 0 and near.lookup("How do I reset my pasword?", b"") is None


def test_an_entry_that_leaves_before_it_is_filed_is_never_filed():
    cache, near = near_cache(max_entries=1)
    put(cache, near, RESET, "a", flush=False)
    put(cache, near, "What is the capital of France?", "b", flush=False)  # evicts the first
    assert near.lookup("How do I reset my pasword?", b"") is None
    assert near.index.live == 1 and near.lookup("what is the capital of Frnace", b"").result == "b"


def test_errors_are_never_filed():
    cache, near = near_cache()
    assert put(cache, near, RESET, ValueError("no")) is None
    assert near.index.live == 0 and near.lookup("How do I reset my pasword?", b"") is None


def test_many_entries_each_find_their_own_typo_twin():
    # past the index's table threshold (256 rows): the word table draws the candidates
    cache, near = near_cache(max_entries=1000)
    topics = [f"topic{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(300)]
    for i, t in enumerate(topics):
        put(cache, near, f"how do I configure the {t} module", i)
    for i in (0, 150, 299):
        got = near.lookup(f"how do I configur the {topics[i]} module", b"")
        assert got is not None and got.result == i


def handler_of(calls):
    async def handler(reqs):
        calls.append([r["query"] for r in reqs])
        return [
            {"answer": r["query"]} if "fail" not in r["query"] else ValueError("no") for r in reqs
        ]

    return handler


async def test_a_near_twin_after_the_window_gets_the_stored_object():
    calls = []
    async with BatchProcessor(
        handler_of(calls), window_ms=1, reuse="near", cold_start="wait"
    ) as batch:
        first = await batch.process({"query": RESET})
        again = await batch.process({"query": "hey, how do I reset my password"})
        typo = await batch.process({"query": "How do I reset my pasword?"})
        assert again is first and typo is first
        trap = await batch.process({"query": "How do I reset my password 2?"})
        assert trap is not first
        got = [c async for c in batch.process_streaming([{"query": "how do i reset my pasword"}])]
        assert got[0].result is first and got[0].reused_age_s is not None
        assert 0.8 <= got[0].similarity < 1.0
        s = batch.get_stats()
        assert (s.reuse_hits, s.reuse_near_hits, s.near_merges) == (3, 3, 0)
        # near hits in their own histogram, none in the merges': the canonical twin at 1.0
        assert sum(s.reuse_similarity_histogram) == 3 and s.reuse_similarity_histogram[100] == 1
        assert sum(s.merge_similarity_histogram) == 0
        assert s.total_requests == s.unique_requests + s.duplicates + s.dropped + s.queue_depth
    assert len(calls) == 2


async def test_exact_reuse_does_not_serve_near_twins():
    calls = []
    async with BatchProcessor(
        handler_of(calls), window_ms=1, reuse="exact", cold_start="wait"
    ) as batch:
        await batch.process({"query": RESET})
        await batch.process({"query": "hey, how do I reset my password"})
    assert len(calls) == 2


async def test_errors_are_not_reused_near():
    calls = []
    async with BatchProcessor(
        handler_of(calls), window_ms=1, reuse="near", cold_start="wait"
    ) as batch:
        for q in ("please fail now", "please fail now!"):
            with pytest.raises(Exception, match="no"):
                await batch.process({"query": q})
        assert batch.get_stats().reuse_hits == 0
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("name", "value"),
    [("dedup_threshold", 0.85), ("dedup_guards", ("polarity", "roles")), ("embedder", None)],
)
async def test_run_time_changes_drop_the_near_rows(name, value):
    calls = []
    async with BatchProcessor(
        handler_of(calls), window_ms=1, reuse="near", cold_start="wait"
    ) as batch:
        await batch.process({"query": RESET})
        core = batch._core
        core.near.flush()
        assert core.near.index.live == 1
        setattr(batch, name, value)
        assert batch.get_stats().reuse_entries == 0 and core.near.index.live == 0
        await batch.process({"query": "How do I reset my pasword?"})
        assert batch.get_stats().reuse_near_hits == 0
    assert len(calls) == 2


@pytest.mark.parametrize(
    "ask",
    [
        "hey, how do I reset my password",
        "How do I reset my pasword?",
        "How do I reset my password on the app?",
        "How do I not reset my password?",
    ],
)
async def test_near_reuse_is_never_looser_than_the_window(ask):
    # what a window merges with RESET, and what near reuse serves from RESET's stored answer
    calls = []
    async with BatchProcessor(handler_of(calls), window_ms=50, cold_start="wait") as batch:
        await batch.process([{"query": RESET}, {"query": ask}])
    merged = calls == [[RESET]]
    calls = []
    async with BatchProcessor(
        handler_of(calls), window_ms=1, reuse="near", cold_start="wait"
    ) as batch:
        await batch.process({"query": RESET})
        await batch.process({"query": ask})
        served = batch.get_stats().reuse_near_hits == 1
    assert served == merged


def _pseudo_words(rng, n):
    out = set()
    while len(out) < n:
        out.add("".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(3)))
    return sorted(out)


@pytest.mark.parametrize("entries", [100, 600])  # below and past the word table's 256 rows
def test_index_query_lists_what_filing_each_query_would(entries):
    # LeaderIndex.query against append + candidates of each query alone (in an index built
    # the same way): the same candidates, and the index as it was
    import random

    import numpy as np

    from stratabatch.index import INDEX_MIN_ROWS, LeaderIndex
    from stratabatch.nearreuse import _Text

    seed = 20261208 + entries
    rng = random.Random(seed)
    print("seed", seed)
    voc = _pseudo_words(rng, 40)  # (few words: many texts share keys and near vectors)
    texts = list(
        {
            f"how can I {rng.choice(voc)} the {rng.choice(voc)} of {rng.choice(voc)}?"
            for _ in range(2 * entries)
        }
    )[:entries]
    config = BatchConfig(reuse="near")
    dedup = Deduper(config, None)
    assert dedup.word_keyed()
    threshold = dedup.threshold()

    def rows_of(strs):
        stubs = [_Text(t) for t in strs]
        vec = dedup.embed_requests(stubs)
        return vec, [dedup.profile_of(t) for t in stubs]

    vec, profiles = rows_of(texts)

    def build():
        index = LeaderIndex()
        index.dim = vec.shape[1]
        start = index.append(vec, [0] * entries, profiles)
        rows = list(range(start, start + entries))
        index.lead_many(rows, [object() for _ in rows], [0] * entries, True)
        index.file_leaders(rows)
        return index

    index = build()
    asks = [t.replace(t.split()[3], t.split()[3][:2] + t.split()[3][3:]) for t in texts[:20]]
    asks += [f"how can I {rng.choice(voc)} the {rng.choice(voc)}" for _ in range(20)]
    asks += texts[20:25]
    qvec, qprofiles = rows_of(asks)
    qpids = [0] * len(asks)
    pool_used = index._pool_used
    off, got_rows, got_sims = index.query(qvec, qpids, qprofiles, threshold)
    assert index.live == entries
    found = 0
    for q in range(len(asks)):
        alone = build()
        s = alone.append(qvec[q : q + 1], [0], qprofiles[q : q + 1])
        o, r, sims = alone.candidates(s, threshold)[:3]
        assert int(o[1]) == len(r) and (r < s).all()
        a, b = int(off[q]), int(off[q + 1])
        assert got_rows[a:b].tolist() == r.tolist(), asks[q]
        assert np.allclose(got_sims[a:b], sims)
        found += b - a
    assert found >= 20
    if entries > INDEX_MIN_ROWS:  # the word table: no row added, no key filed
        state = (len(index), index.dead, index._pool_used, index.table.state[:2].tolist())
        assert state[:3] == (entries, 0, pool_used)
    again = index.query(qvec, qpids, qprofiles, threshold)
    assert [x.tolist() for x in again] == [off.tolist(), got_rows.tolist(), got_sims.tolist()]
    if entries > INDEX_MIN_ROWS:
        assert (len(index), index.dead, index._pool_used, index.table.state[:2].tolist()) == state


def test_a_failing_lookup_or_filing_is_logged_once_a_kind_and_serves_nothing(monkeypatch, caplog):
    # an embedder that raises (or a bug) must not fail a batch's fan-out, nor pass in silence
    cache, near = near_cache()
    put(cache, near, RESET, {"a": "reset it"})

    def boom(*args, **kwargs):
        raise RuntimeError("embedder down")

    monkeypatch.setattr(near, "_similar", boom)
    with caplog.at_level("ERROR", logger="stratabatch.dedup"):
        assert near.lookup("how do i reset my pasword", b"") is None
        assert near.lookup("how do i reset my pasword", b"") is None
    assert near.failures == 2
    logged = [r for r in caplog.records if r.name == "stratabatch.dedup"]
    assert len(logged) == 1 and "RuntimeError" in logged[0].getMessage()
    assert logged[0].exc_info is not None
    monkeypatch.setattr(near, "_file", boom)
    e = put(cache, near, "cancel my subscription", {"a": "done"})
    assert near.failures == 3 and e.handle is None  # (its exact twins are still served)
    n = normalize_key("cancel my subscription")
    assert cache.get((b"", hash(n), False), n, b"")[0] == {"a": "done"}


@pytest.mark.parametrize("calls", [1, 20])
def test_an_answer_filed_with_its_requests_lookup_is_filed_as_without(calls):
    # an answer's request missed a near lookup first (its vector and key words computed
    # then): its filing takes them instead of computing them again, and files the same row
    words = ("change", "close", "rename", "export", "merge", "verify", "upgrade", "share")
    texts = [f"how do I {w} the {o} of my account" for w in words for o in ("owner", "plan")]
    typos = [t.replace("account", "acount") for t in texts]
    got = []
    for hand_over in (False, True):
        cache, near = near_cache(max_entries=1000)
        put(cache, near, "where is my parcel", "p")  # (the cache is not empty: lookups run)
        reqs = [_Text(t) for t in texts]
        for a in range(0, len(reqs), calls):
            part = reqs[a : a + calls]
            assert near.lookup_many(part, [b""] * len(part), None, None) == [None] * len(part)
        # (an index this small compares every request's vector: each is embedded and kept)
        assert len(near._kept) == len(texts)
        for t, r in zip(texts, reqs, strict=True):
            n = normalize_key(t)
            e = cache.put((b"", hash(n), False), n, t, b"", size=10)
            near.store(e, t, None, r if hand_over else None)
        near.flush()
        assert len(near._kept) == (0 if hand_over else len(texts))
        owners = near.index.owners
        rows = sorted((i for i, h in enumerate(owners) if h), key=lambda i: owners[i].entry.result)
        got.append(
            (
                near.index.mat[rows].tobytes(),
                [owners[i].text.canon for i in rows],
                [(h.result, h.similarity) for h in (near.lookup(q, b"") for q in typos)],
            )
        )
    assert got[0] == got[1]
    assert [r for r, _ in got[1][2]] == texts


def test_a_meaning_embedder_past_the_compare_bound_says_so_once(monkeypatch, caplog):
    # an embedder that judges meaning below the index's threshold has no table to find its
    # candidates: past EXHAUSTIVE_MAX_ENTRIES a lookup would compare with every entry, so the
    # similar-text step stops (canonical twins still served) and a warning says it, once
    import stratabatch.nearreuse as nearreuse
    from stratabatch.embed import HashingEmbedder

    base = HashingEmbedder()

    def meaning(texts):  # (a user's embedder: merges_paraphrases is taken as True)
        return base(texts)

    monkeypatch.setattr(nearreuse, "EXHAUSTIVE_MAX_ENTRIES", 3)
    cache, near = near_cache(embedder=meaning, dedup_threshold=0.85)
    put(cache, near, RESET, {"a": "reset it"})
    assert near.lookup("how do i reset my pasword", b"") is not None  # (one entry: compared)
    for i, text in enumerate(["cancel my subscription", "change my email", "delete my data"]):
        put(cache, near, text, {"a": i})
    with caplog.at_level("WARNING", logger="stratabatch.dedup"):
        assert near.lookup("how do i reset my pasword", b"") is None  # typo: not compared
        assert near.lookup("how do i resett my password", b"") is None
        got = near.lookup("hey, how do I reset my password", b"")  # same canonical text
    assert got is not None and got.result == {"a": "reset it"}
    assert near.skipped == 2
    said = [r.getMessage() for r in caplog.records if r.name == "stratabatch.dedup"]
    assert len(said) == 1 and "4 stored answers, over the 3" in said[0]
    assert "reuse_max_entries <= 3" in said[0]
