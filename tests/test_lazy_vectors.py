"""Rows without vectors (engine/index.py, LeaderIndex.append with texts): in the common pass the
default embedder's key words are computed without the vectors, and a row's vector only when a
pair needs its cosine. The decisions are those of the eager pass, request for request."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from stratabatch.config import BatchConfig
from stratabatch.embed import HashingEmbedder
from stratabatch.grouping import Deduper
from stratabatch.records import Request
from stratabatch.rehearsal import ScratchOps

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _vocab(rng: random.Random, n: int = 2000) -> list[str]:
    return sorted(
        {"".join(rng.choice(_LETTERS) for _ in range(rng.randrange(4, 9))) for _ in range(n)}
    )


def _distinct(rng: random.Random, vocab: list[str], n: int) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        t = " ".join(rng.choice(vocab) for _ in range(rng.randrange(4, 9)))
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def _typo(text: str, rng: random.Random) -> str:
    """One letter of a word of 5+ letters replaced: a near twin the guards let merge."""
    words = text.split()
    k = max(range(len(words)), key=lambda j: len(words[j]))
    w = words[k]
    p = rng.randrange(1, len(w) - 1)
    words[k] = w[:p] + ("x" if w[p] != "x" else "z") + w[p + 1 :]
    return " ".join(words)


class Embeds:
    """Counts the texts the default embedder computes vectors of (either call), on the test's
    own thread: a processor of an earlier test may still warm its kernels up on a thread of its
    own (its sample texts would be counted here otherwise)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.texts: list[str] = []
        real_profiled, real_embed = HashingEmbedder.embed_profiled, HashingEmbedder.embed
        mine = threading.get_ident()

        def profiled(emb: Any, texts: list[str]) -> Any:
            if threading.get_ident() == mine:
                self.texts.extend(texts)
            return real_profiled(emb, texts)

        def embed(emb: Any, texts: list[str]) -> Any:
            if threading.get_ident() == mine:
                self.texts.extend(texts)
            return real_embed(emb, texts)

        monkeypatch.setattr(HashingEmbedder, "embed_profiled", profiled)
        monkeypatch.setattr(HashingEmbedder, "embed", embed)


class OrderedOps(ScratchOps):
    """ScratchOps that keeps its groups in the order they were made."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[Any] = []

    def new_group(self, req: Request, part: Any) -> Any:
        g = super().new_group(req, part)
        self.made.append(g)
        return g


def _pass(dedup: Deduper, texts: list[str]) -> list[Request]:
    reqs = [Request({"query": t}, text=t) for t in texts]
    dedup.run(reqs)
    return reqs


def test_distinct_texts_lead_without_being_embedded_until_a_twin_comes(monkeypatch):
    """A pass of distinct texts (no twin under any word key: the word table's pass) leads
    each one without computing its vector; a later near twin of one of them merges with it,
    and only the texts whose pair needed a cosine (the twin's pass and its leader) are
    embedded then."""
    rng = random.Random(1)
    vocab = _vocab(rng)
    first = _distinct(rng, vocab, 300)  # (>= INDEX_MIN_ROWS: the word table serves)
    ops = ScratchOps()
    dedup = Deduper(BatchConfig(), ops)
    embeds = Embeds(monkeypatch)
    led = _pass(dedup, first)
    assert all(r.group is not None and r.group.leader is r for r in led)
    assert embeds.texts == []
    index = dedup.leaders
    assert index.unvectored == 300 and not index.vec[:300].any()
    twin = _typo(first[17], rng)
    later = _distinct(rng, vocab, 40)
    second = _pass(dedup, [*later[:20], twin, *later[20:]])
    assert second[20].group is led[17].group  # the near twin joined the old leader
    assert not second[20].exact and second[20].similarity < 1.0
    assert all(r.group.leader is r for j, r in enumerate(second) if j != 20)
    assert led[17].canon in embeds.texts  # its leader's vector, now
    assert len(embeds.texts) <= 1 + len(second)  # (the leader met, and the twin's pass)
    assert index.vec[led[17].group.row]
    # the other old rows still have none
    assert sum(not index.vec[r.group.row] for j, r in enumerate(led) if j != 17) == 299


def test_groups_keep_the_order_of_arrival(monkeypatch):
    """Leaders without vectors are led in the order their requests came, twins or not."""
    rng = random.Random(2)
    vocab = _vocab(rng)
    texts = _distinct(rng, vocab, 280)
    src = next(j for j in range(40, 280) if texts[j].count(" ") >= 6)
    texts.insert(150, _typo(texts[src], rng))  # a near twin inside the pass
    ops = OrderedOps()
    dedup = Deduper(BatchConfig(), ops)
    reqs = _pass(dedup, texts)
    assert reqs[150].group is reqs[src].group
    assert [g.leader for g in ops.made] == [r for j, r in enumerate(reqs) if j != 150]


def _decisions(lazy: bool, monkeypatch: pytest.MonkeyPatch, sizes: list[int], texts: list[str]):
    """Each request's (leader's position, similarity, exact) over passes of ``sizes``, with
    old groups let go four passes later; ``lazy`` False: every pass embeds at once."""
    with monkeypatch.context() as m:
        if not lazy:
            m.delattr(HashingEmbedder, "profiles")
        ops = ScratchOps()
        dedup = Deduper(BatchConfig(), ops)
        pos: dict[int, int] = {}
        out = []
        passes: list[list[Any]] = []
        i = 0
        for size in sizes:
            reqs = _pass(dedup, texts[i : i + size])
            for k, r in enumerate(reqs):
                pos[id(r)] = i + k
            out += [(pos[id(r.group.leader)], r.similarity, r.exact) for r in reqs]
            passes.append([r.group for r in reqs if r.group.leader is r])
            if len(passes) > 4:
                for g in passes.pop(0):
                    dedup.drop_row(g)
                    dedup.drop_keys(g)
                    ops.pending.pop(g.seq, None)
            i += size
        vetoes = [repr(v) for v in dedup.vetoes]
        return out, vetoes, dedup.leaders.fetched


def test_the_decisions_are_those_of_the_eager_pass(monkeypatch):
    """Word texts with near twins (typos, case, a word dropped or repeated) of recent texts,
    in passes of many sizes (the exhaustive producer below 256 rows, the word table above):
    every request's group, similarity and the veto log as when every row is embedded at
    once, and some rows were given their vectors on the way."""
    rng = random.Random(3)
    vocab = _vocab(rng)
    base = _distinct(rng, vocab, 3000)
    texts: list[str] = []
    for t in base:
        if texts and rng.random() < 0.3:
            src = texts[rng.randrange(max(0, len(texts) - 300), len(texts))]
            x = rng.random()
            if x < 0.4:
                t = _typo(src, rng)
            elif x < 0.6:
                t = src.upper()
            elif x < 0.8:
                t = " ".join(src.split()[:-1])
            else:
                w = src.split()
                t = " ".join([*w, w[0]])
        texts.append(t)
    sizes = [rng.choice((5, 40, 128, 300)) for _ in range(40)]
    eager, eager_vetoes, _ = _decisions(False, monkeypatch, sizes, texts)
    lazy, lazy_vetoes, fetched = _decisions(True, monkeypatch, sizes, texts)
    assert lazy == eager
    assert lazy_vetoes == eager_vetoes
    merged = sum(1 for j, (lead, _, _) in enumerate(eager) if lead != j)
    assert merged > 300 and fetched > 0


def test_a_pass_that_embeds_most_of_its_rows_makes_the_next_ones_eager(monkeypatch):
    """One domain's traffic (most rows meet twins under their keys): a pass that had to
    compute the vectors of most of its rows embeds the next passes at once."""
    rng = random.Random(4)
    words = "order refund shipping cancel account payment invoice delivery".split()
    texts = [" ".join(rng.choice(words) for _ in range(6)) for _ in range(600)]
    dedup = Deduper(BatchConfig(), ScratchOps())
    _pass(dedup, texts[:300])
    assert dedup.leaders.fetched > 75
    assert dedup._eager > 0


def test_key_words_without_vectors_and_vectors_later_are_the_eager_ones():
    """HashingEmbedder.profiles gives the key words (and squash tags) embed_profiled gives,
    and embed the same vectors, byte for byte: on made-up words, labelled texts (fillers,
    typos, non-ASCII left to the reference), in one batch and one by one."""
    import json
    from pathlib import Path

    import numpy as np

    from stratabatch.canon import canonical_texts
    from stratabatch.embed import default_embedder

    rng = random.Random(5)
    texts = _distinct(rng, _vocab(rng), 400)
    for line in (Path(__file__).parent / "data" / "guard_pairs.jsonl").read_text().splitlines():
        if line:
            d = json.loads(line)
            texts += [d["a"], d["b"]]
    texts += ["Où est mon colis ?", "Really?", "the   cannot case", ""]
    emb = default_embedder()
    canon = canonical_texts(texts)
    for chunk in (canon, canon[:37], *([t] for t in canon[::97])):
        mat, full = emb.embed_profiled(chunk)
        keys = emb.profiles(chunk)
        assert np.array_equal(keys.off, full.off) and np.array_equal(keys.lens, full.lens)
        assert keys.tagged == full.tagged
        used = int((full.off + np.maximum(full.lens, 0)).max())
        for name in ("ranks", "shapes", "counts"):
            assert np.array_equal(getattr(keys, name)[:used], getattr(full, name)[:used])
        assert emb.embed(chunk).tobytes() == mat.tobytes()


def test_a_pass_the_word_table_does_not_serve_is_embedded_at_once(monkeypatch):
    """Below the word table's minimum the exhaustive producer reads every vector: such a
    pass embeds its rows in one call with their key words, and computes no key words apart;
    once the table serves (a pass of 300), a small pass is led without vectors."""
    rng = random.Random(6)
    vocab = _vocab(rng)
    texts = _distinct(rng, vocab, 360)
    apart: list[int] = []
    real = HashingEmbedder.profiles

    def profiles(emb: Any, batch: list[str]) -> Any:
        apart.append(len(batch))
        return real(emb, batch)

    monkeypatch.setattr(HashingEmbedder, "profiles", profiles)
    embeds = Embeds(monkeypatch)
    dedup = Deduper(BatchConfig(), ScratchOps())
    _pass(dedup, texts[:20])
    assert apart == [] and len(embeds.texts) == 20
    assert dedup.leaders.unvectored == 0
    _pass(dedup, texts[20:320])
    _pass(dedup, texts[320:])
    assert apart == [300, 40] and len(embeds.texts) == 20
    assert dedup.leaders.unvectored == 340


def test_a_subclass_of_the_default_embedder_is_embedded_at_once(monkeypatch):
    """A row gets its vector later from ``embed``, which must give what ``embed_profiled``
    gave: only the default embedder's own class promises it, so a subclass (here one whose
    ``embed`` differs) embeds every row at once, its vectors from ``embed_profiled`` as
    before."""

    class Mine(HashingEmbedder):
        def embed(self, texts: list[str]) -> Any:
            raise AssertionError("a row's vector from embed")

    apart: list[int] = []
    real = HashingEmbedder.profiles

    def profiles(emb: Any, batch: list[str]) -> Any:
        apart.append(len(batch))
        return real(emb, batch)

    monkeypatch.setattr(HashingEmbedder, "profiles", profiles)
    rng = random.Random(7)
    texts = _distinct(rng, _vocab(rng), 300)
    dedup = Deduper(BatchConfig(embedder=Mine()), ScratchOps())
    reqs = _pass(dedup, [*texts, _typo(max(texts, key=len), rng)])
    assert apart == []
    assert dedup.leaders.unvectored == 0
    assert reqs[-1].group.leader is not reqs[-1]  # (the near twin merged)


@pytest.mark.parametrize("strategy", ["embedding", "hybrid"])
async def test_a_pass_cut_into_slices_decides_as_a_whole_one(monkeypatch, strategy):
    """Every pass cut after its first decided rows (``SLICE_S`` 0: what a loaded machine does
    to a pass of a few hundred texts): the rows left for the next slice keep pointers into
    their pass's key words, and a text the kernel left to the Python reference there gets
    its own words again (a pointer once reached the batch's ``filled`` and failed the pass).
    The merges are those of uncut passes."""
    import asyncio
    import json
    from collections import Counter
    from pathlib import Path

    import stratabatch.grouping as grouping
    from stratabatch import BatchProcessor

    lines = (Path(__file__).parent / "data" / "dedup_pairs.jsonl").read_text().splitlines()
    pairs = [json.loads(line) for line in lines if line]

    async def merged() -> list[bool]:
        seen: Counter[int] = Counter()

        async def handler(reqs: list[dict[str, Any]]) -> list[None]:
            seen.update(r["pair"] for r in reqs)
            await asyncio.sleep(0)
            return [None] * len(reqs)

        async with BatchProcessor(
            handler, dedup_scope=("pair",), max_size=1024, window_ms=5, dedup_strategy=strategy
        ) as batch:
            await batch.process(
                [{"query": p[side], "pair": i} for i, p in enumerate(pairs) for side in "ab"]
            )
        return [seen[i] == 1 for i in range(len(pairs))]

    whole = await merged()
    monkeypatch.setattr(grouping, "SLICE_S", 0.0)
    assert await merged() == whole
    assert sum(whole) > len(pairs) // 3
