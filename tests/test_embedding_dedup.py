"""Near-duplicate dedup through the processor: embedders, own vectors, guards, hybrid, stats."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from stratabatch import BatchProcessor, HandlerError, InvalidRequestError


class Rec:
    def __init__(self):
        self.items = []

    async def __call__(self, reqs):
        self.items.extend(r.get("query") for r in reqs)
        return [f"A:{r.get('query')}" for r in reqs]


async def test_threshold_none_means_the_embedders_recommended_value():
    from stratabatch.embed import default_embedder

    batch = BatchProcessor(Rec())
    assert batch.dedup_threshold is None
    assert batch.dedup_threshold_in_force == default_embedder().recommended_threshold
    batch.dedup_threshold = 0.97
    assert batch.dedup_threshold_in_force == 0.97


async def test_near_merge_records_its_similarity_in_completed_and_stats():
    rec = Rec()
    async with BatchProcessor(rec, window_ms=5) as batch:
        got = [
            c
            async for c in batch.process_streaming(
                [
                    {"query": "Where is my parcel?"},
                    {"query": "where is my parcel"},
                    {"query": "Where is my parcel?"},
                ]
            )
        ]
        stats = batch.get_stats()
    by = {c.index: c for c in got}
    assert rec.items == ["Where is my parcel?"]
    assert by[1].merged_into == 0 and by[1].similarity is not None
    assert batch.dedup_threshold_in_force <= by[1].similarity <= 1.0
    assert by[2].merged_into == 0 and by[2].similarity == 1.0
    assert stats.exact_merges == 1 and stats.near_merges == 1
    assert sum(stats.merge_similarity_histogram) == 2


@pytest.mark.parametrize("strategy", ["embedding", "hybrid"])
async def test_different_numbers_never_merge_with_guard_numbers(strategy):
    rec = Rec()
    async with BatchProcessor(
        rec, window_ms=5, dedup_strategy=strategy, dedup_threshold=0.3
    ) as batch:
        out = await batch.process(
            [
                {"query": "order 123 status"},
                {"query": "order 124 status"},
                {"query": "status of order 123"},
            ]
        )
    assert out[0] != out[1]
    assert out[2] == out[0]  # same number, similar words: merged at this loose threshold


async def test_near_merges_need_the_same_scope_and_the_same_numbers():
    """A partition is the scope and the numbers together: a near twin merges only within
    both ("1000" and "1.000", one, are different numbers)."""
    rec = Rec()
    async with BatchProcessor(
        rec, window_ms=5, dedup_threshold=0.3, dedup_scope=("tenant",), cold_start="wait"
    ) as batch:
        out = await batch.process(
            [
                {"query": "refund 1000 dollars on order 7", "tenant": "a"},
                {"query": "Refund 1000 dollars on order 7!", "tenant": "a"},  # merges
                {"query": "Refund 1000 dollars on order 7!", "tenant": "b"},  # other scope
                {"query": "Refund 1.000 dollars on order 7!", "tenant": "a"},  # other number
                {"query": "Refund 1000 dollars on order 8!", "tenant": "a"},  # other number
            ]
        )
    assert out[1] == out[0]
    assert len(set(out)) == 4 and len(rec.items) == 4


async def test_hybrid_merges_exact_twins_first_then_near_ones():
    rec = Rec()
    async with BatchProcessor(rec, window_ms=5, dedup_strategy="hybrid") as batch:
        await batch.process(
            [
                {"query": "Reset my password"},
                {"query": "reset my password"},
                {"query": "reset my password!"},
                {"query": "Show my invoice"},
            ]
        )
        stats = batch.get_stats()
    assert rec.items == ["Reset my password", "Show my invoice"]
    assert stats.exact_merges == 1 and stats.near_merges == 1


async def test_requests_may_carry_their_own_vectors():
    rec = Rec()
    v = np.random.default_rng(1).normal(size=384).astype(np.float32)
    async with BatchProcessor(rec, window_ms=5, dedup_threshold=0.99) as batch:
        out = await batch.process(
            [
                {"query": "first wording", "embedding": v},
                {"query": "a quite different wording", "embedding": (v * 2).tolist()},
                {"query": "third", "embedding": np.ones(7, np.float32)},
            ],
            return_exceptions=True,
        )
    assert out[0] == out[1] == "A:first wording"
    assert isinstance(out[2], InvalidRequestError) and "dimension" in str(out[2])
    assert rec.items == ["first wording"]


@pytest.mark.parametrize("bad", [[0.0] * 4, [1.0, float("inf"), 0, 0], "not a vector"])
async def test_malformed_own_vectors_fail_only_their_request(bad):
    rec = Rec()
    async with BatchProcessor(rec, window_ms=5) as batch:
        with pytest.raises(InvalidRequestError, match="embedding"):
            await batch.process({"query": "x", "embedding": bad})
        assert await batch.process({"query": "fine"}) == "A:fine"


async def test_a_custom_embedder_callable_and_one_that_fails():
    def by_first_letter(texts):
        out = np.zeros((len(texts), 26), np.float32)
        for i, t in enumerate(texts):
            out[i, (ord(t.strip().lower()[0]) - 97) % 26] = 1.0
        return out

    rec = Rec()
    # word guards off: this checks the embedder's plumbing ("apple" / "avocado" differ in a
    # name the entities guard knows)
    async with BatchProcessor(
        rec, window_ms=5, embedder=by_first_letter, guard_numbers=False, dedup_guards=()
    ) as batch:
        out = await batch.process([{"query": "apple"}, {"query": "avocado"}, {"query": "pear"}])
    assert out == ["A:apple", "A:apple", "A:pear"]

    def broken(texts):
        raise RuntimeError("model server down")

    rec = Rec()
    async with BatchProcessor(rec, window_ms=5, embedder=broken) as batch:
        with pytest.raises(HandlerError, match="embedder failed.*model server down"):
            await batch.process({"query": "anything"})
        batch.embedder = None  # runtime switch back to the built-in embedder
        assert await batch.process({"query": "anything"}) == "A:anything"


async def test_twins_of_queued_work_merge_across_windows_until_it_runs():
    rec = Rec()
    async with BatchProcessor(rec, window_ms=30) as batch:
        first = asyncio.ensure_future(batch.process({"query": "Opening hours?"}))
        await asyncio.sleep(0.01)
        second = await batch.process({"query": "opening hours"})
        assert await first == second
    assert rec.items == ["Opening hours?"]


async def test_adaptive_mode_exposes_its_window_and_fit_in_stats():
    async def handler(reqs):
        await asyncio.sleep(0.002 + 0.0005 * len(reqs))
        return [None] * len(reqs)

    async with BatchProcessor(
        handler,
        adaptive=True,
        target_latency_ms=40,
        min_window_ms=2,
        max_window_ms=100,
        enable_dedup=False,
    ) as batch:
        for burst in range(30):
            await asyncio.gather(
                *(batch.process({"query": f"{burst}-{i}"}) for i in range(1 + burst % 6))
            )
        stats = batch.get_stats()
    assert 2 <= stats.window_ms <= 100
    assert stats.adaptive_a_ms > 0 and stats.adaptive_b_ms >= 0


def _count_features(batch: BatchProcessor) -> list[str]:
    """The texts whose guard features ``batch``'s dedup builds from now on."""
    dedup = batch._core._dedup
    built: list[str] = []
    real = dedup.features_of

    def counting(r):
        built.append(r.text)
        return real(r)

    dedup.features_of = counting
    return built


async def test_near_twins_of_the_same_canonical_text_merge_without_guard_features():
    """Punctuation, case or a filler apart (the same canonical text), a near twin merges
    without the guard features of either text being built: the guards let the same canonical
    words in the same order merge, and building features is most of a guard call's cost."""
    typo = [{"query": "cancel my subscription"}, {"query": "cancel my subscripton"}]
    async with BatchProcessor(Rec(), window_ms=20, cold_start="wait") as batch:
        await batch.warm_up()
        built = _count_features(batch)
        out = await batch.process(
            [{"query": "Where is my parcel?"}, {"query": "where is my parcel!!"}]
        )
        assert out == ["A:Where is my parcel?"] * 2
        assert built == []
        # a typo apart: the guards decide, in the guard kernel at the default guards (no
        # features built either: docs/dedup.md, "The guard kernel")
        assert await batch.process(typo) == ["A:cancel my subscription"] * 2
        assert built == []
    # with a guard switched off the Python guards decide, from both texts' features
    guards = ("polarity", "roles", "scope", "residue")  # entities off
    async with BatchProcessor(Rec(), window_ms=20, cold_start="wait", dedup_guards=guards) as batch:
        await batch.warm_up()
        built = _count_features(batch)
        assert await batch.process(typo) == ["A:cancel my subscription"] * 2
        assert len(built) == 2


async def test_a_pass_without_candidates_decides_without_the_greedy_walk(monkeypatch):
    """Distinct texts (no leader near any of them: the common pass) each lead a group without
    the guards' kernel or the greedy walk being run (~0.3 us a request); a pass with a near
    twin still walks, and merges it."""
    from stratabatch import greedy

    walks = []
    real = greedy.greedy_pass

    def counted(*a, **k):
        walks.append(1)
        return real(*a, **k)

    monkeypatch.setattr(greedy, "greedy_pass", counted)
    rec = Rec()
    async with BatchProcessor(rec, window_ms=5, cold_start="wait") as batch:
        await batch.warm_up()
        walks.clear()
        texts = ["where is my parcel", "cancel the subscription", "weather in paris tomorrow"]
        out = await batch.process([{"query": t} for t in texts])
        assert out == [f"A:{t}" for t in texts]
        assert walks == []
        out = await batch.process(
            [{"query": "how do i reset my password"}, {"query": "how do i reset my pasword"}]
        )
        assert out == ["A:how do i reset my password"] * 2
        assert walks
    assert sorted(rec.items) == sorted([*texts, "how do i reset my password"])


async def test_texts_alone_in_their_partition_lead_unembedded_until_a_twin_comes(monkeypatch):
    """A text whose numbers no other waiting text has is compared with nothing: it leads
    without being embedded (texts of numbers of their own cost no embedding, no canonical text,
    no row). Once a text with its numbers comes, its vector is computed, and the near twin
    merges with it as before; the groups keep the order of arrival."""
    from stratabatch.embed import HashingEmbedder

    embedded: list[str] = []
    real, real_embed = HashingEmbedder.embed_profiled, HashingEmbedder.embed

    def counted(self, texts):
        embedded.extend(texts)
        return real(self, texts)

    def counted_embed(self, texts):  # (a row without its vector gets it so)
        embedded.extend(texts)
        return real_embed(self, texts)

    monkeypatch.setattr(HashingEmbedder, "embed_profiled", counted)
    monkeypatch.setattr(HashingEmbedder, "embed", counted_embed)
    rec = Rec()
    # the window waits for five requests: the twin comes while the first three wait
    async with BatchProcessor(
        rec, window_ms=1, min_size=5, max_wait_ms=30_000, cold_start="wait"
    ) as batch:
        await batch.warm_up()
        embedded.clear()
        dedup = batch._core._dedup
        index = dedup.leaders
        first = [
            "where is my parcel 4417?",
            "cancel my subscription 555",
            "refund for ticket 98",
        ]
        calls = asyncio.ensure_future(batch.process([{"query": t} for t in first]))
        for _ in range(3000):  # (until their pass has run: each leads, under its exact key)
            if len(dedup.exact) == 3:
                break
            await asyncio.sleep(0.001)
        assert embedded == []
        assert index.live == 0 and len(index.lazy) == 3
        last = ["weather in paris on day 12", "open tickets of user 31"]
        later = await batch.process(
            [{"query": "Where is my parcel 4417"}, *({"query": t} for t in last)]
        )
        assert await calls == [f"A:{t}" for t in first]
        assert later == ["A:where is my parcel 4417?", *(f"A:{t}" for t in last)]
        stats = batch.get_stats()
    assert len(embedded) == 2 and all("4417" in t for t in embedded)
    assert stats.near_merges == 1
    assert rec.items == [*first, *last]
    assert not index.lazy and index.live == 0


async def test_a_pass_mixing_lone_and_shared_partitions_keeps_the_order_of_arrival():
    """Texts alone in their partition lead without a row, the others are embedded and
    clustered: their groups still reach the handler in the order the requests came."""
    rec = Rec()
    texts = [
        "invoice 1001 is missing",
        "how do i change my email",
        "ticket 2002 is still open",
        "what are your opening hours",
        "refund of order 3003",
        "how do i change my e-mail",
    ]
    async with BatchProcessor(rec, window_ms=5, cold_start="wait") as batch:
        await batch.warm_up()
        out = await batch.process([{"query": t} for t in texts])
        lazy = len(batch._core._dedup.leaders.lazy)
    assert rec.items == texts[:5]
    assert out == [f"A:{t}" for t in texts[:5]] + ["A:how do i change my email"]
    assert lazy == 0  # (answered: let go)


async def test_a_pass_where_every_text_leads_files_each_leader_for_later_twins():
    """A pass of distinct texts (each leads: the common pass) files every leader under its
    exact key and its index row: while they wait, an exact twin and a near twin in a later
    pass merge into theirs."""
    rec = Rec()
    first = ["how do i reset my password", "cancel my subscription", "weather in paris tomorrow"]
    async with BatchProcessor(
        rec, window_ms=1, min_size=5, max_wait_ms=30_000, cold_start="wait"
    ) as batch:
        await batch.warm_up()
        dedup = batch._core._dedup
        index = dedup.leaders
        calls = asyncio.ensure_future(batch.process([{"query": t} for t in first]))
        for _ in range(3000):  # (until their pass has run)
            if len(dedup.exact) == 3:
                break
            await asyncio.sleep(0.001)
        groups = list(dedup.exact.values())
        assert [g.leader.text for g in groups] == first
        assert all(index.owners[g.row] is g for g in groups)
        assert index.live == 3
        twins = [{"query": "cancel my subscription"}, {"query": "how do i reset my pasword"}]
        later_call = asyncio.ensure_future(batch.process(twins))
        for _ in range(3000):  # (until they merged: still 3 groups, under min_size)
            st = batch.get_stats()
            if st.exact_merges + st.near_merges == 2:
                break
            await asyncio.sleep(0.001)
        batch.min_size = 1  # (releases them at once instead of after max_wait_ms)
        later = await later_call
        assert await calls == [f"A:{t}" for t in first]
        stats = batch.get_stats()
    assert later == ["A:cancel my subscription", "A:how do i reset my password"]
    assert rec.items == first
    assert (stats.exact_merges, stats.near_merges) == (1, 1)
