"""The guards' pass over long texts (issue 17, item 5): the residue pre-check of texts too long
for the index's, against the Python references, and the decisions of a sliced pass against
the pairwise reference (each request joins the first earlier leader whose cosine clears the
threshold and that no guard vetoes, the guards asked about every pair)."""

from __future__ import annotations

import random
import string
from typing import Any

import numpy as np
import pytest

from stratabatch import grouping
from stratabatch.canon import canonical_texts
from stratabatch.config import GUARDS, BatchConfig
from stratabatch.dedup import normalize_key
from stratabatch.embed import resolve_embedder
from stratabatch.grouping import Deduper
from stratabatch.guards import Features, features, veto
from stratabatch.pairs import residue_precheck
from stratabatch.records import DONE, GROUPED, INFLIGHT, RAW, Group, Request
from stratabatch.rehearsal import ScratchOps
from stratabatch.wordkeys import (
    PRECHECK_MAX_WORDS,
    may_pass_residue,
    word_profile,
)

_ALL = frozenset(GUARDS)


def _vocab(rng: random.Random, n: int) -> list[str]:
    return ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 10))) for _ in range(n)]


def _profile(tokens: list[str]) -> Any:
    return Features(" ".join(tokens), tokens).key_profile()


# --------------------------------------------------------------------------------------------
# residue_profile / residue_precheck against the references
# --------------------------------------------------------------------------------------------


def test_residue_profile_is_word_profile_sorted_by_rank() -> None:
    rng = random.Random(1)
    vocab = _vocab(rng, 300) + ["the", "a", "plese", "of", "not", "and", "cafe"]
    for _ in range(200):
        toks = rng.choices(vocab, k=rng.randint(0, 120))
        ranks, shapes, counts, total = _profile(toks)
        want = sorted(zip(*(iter(word_profile(toks, squash=True)),) * 3, strict=True))
        assert list(zip(ranks.tolist(), shapes.tolist(), counts.tolist(), strict=True)) == want
        assert total == sum(c for _, _, c in want)


def _variant(rng: random.Random, base: list[str], vocab: list[str]) -> list[str]:
    """A copy of ``base`` with a few edits: typos, other words, articles, repeats, drops."""
    out = list(base)
    for _ in range(rng.randint(0, 4)):
        if not out:
            break
        k = rng.randrange(len(out))
        kind = rng.randrange(5)
        w = out[k]
        if kind == 0 and len(w) >= 5:  # a typo: two letters swapped
            out[k] = w[:2] + w[3] + w[2] + w[4:]
        elif kind == 1:
            out[k] = rng.choice(vocab)  # another word
        elif kind == 2:
            out.insert(k, "the")  # an article: ignorable
        elif kind == 3:
            out.insert(k, w)  # a repeat: the counts differ
        else:
            del out[k]
    return out


def test_residue_precheck_is_the_reference_on_short_texts() -> None:
    """Where the index pre-checks (at most PRECHECK_MAX_WORDS distinct key words), the linear
    merge of the two profiles answers as the Python reference does."""
    rng = random.Random(2)
    vocab = _vocab(rng, 400)
    seen = {True: 0, False: 0}
    for _ in range(400):
        a = rng.choices(vocab, k=rng.randint(1, 60))
        b = _variant(rng, a, vocab)
        want = may_pass_residue(a, b)
        assert residue_precheck(_profile(a), _profile(b)) is want
        seen[want] += 1
    assert min(seen.values()) > 40


@pytest.mark.parametrize("seed", range(3))
def test_residue_precheck_never_refuses_what_the_guards_accept_on_long_texts(seed) -> None:
    """Texts of thousands of distinct words (beyond what the index pre-checks): a pair the
    pre-check refuses is one the guards refuse; it refuses the pairs that differ by another
    word, and passes typos and articles (which the guards accept)."""
    rng = random.Random(seed)
    vocab = _vocab(rng, 20_000)
    base = rng.choices(vocab, k=2 * PRECHECK_MAX_WORDS)
    fb = features(" ".join(base))
    assert len(fb.tokens) > PRECHECK_MAX_WORDS
    refused = accepted = 0
    for _ in range(60):
        other = _variant(rng, base, vocab)
        fo = features(" ".join(other))
        ok = residue_precheck(fb.key_profile(), fo.key_profile())
        v = veto(fb, fo, _ALL, False)
        if not ok:
            refused += 1
            assert v is not None, other
        if v is None:
            accepted += 1
            assert ok
    assert refused > 10 and accepted > 3
    # one word of the question changed: refused; a typo of one: passed
    q = base + ["which", "blender", "should", "buy"]
    assert not residue_precheck(_profile(q), _profile(base + ["which", "toaster", "should", "buy"]))
    assert residue_precheck(_profile(q), _profile(base + ["which", "blnder", "should", "buy"]))


# --------------------------------------------------------------------------------------------
# A sliced pass decides as the pairwise reference
# --------------------------------------------------------------------------------------------


class _Ops(ScratchOps):
    """Groups in a dict (the rehearsal's stand-in for the core); nothing may run or fail."""

    def coalesce(self, req: Request, g: Group, similarity: float, exact: bool) -> None:
        raise AssertionError("nothing runs in this test")

    def reject(self, req: Request, error: BaseException) -> None:
        req.state = DONE
        raise AssertionError(f"rejected: {error!r}")


def _long_texts(seed: int, n: int) -> list[str]:
    """Near-identical long texts: one body of ~1,800 random words, then a question. Some
    requests repeat an earlier text, some mistype one of its words (both merge); the rest
    ask another question (the guards refuse every such pair)."""
    rng = random.Random(seed)
    vocab = _vocab(rng, 20_000)
    body = " ".join(rng.choices(vocab, k=1800))
    out: list[str] = []
    for i in range(n):
        if i >= 10 and i % 7 == 0:
            out.append(out[rng.randrange(i)])  # an exact twin
        elif i >= 10 and i % 5 == 0:
            words = out[rng.randrange(i)].split()
            k = len(words) - rng.randint(1, 4)
            w = words[k]
            words[k] = w[:1] + w[2] + w[1] + w[3:]  # a typo in its question
            out.append(" ".join(words))
        else:
            out.append(f"{body} question: {' '.join(rng.choices(vocab, k=5))}")
    return out


def _reference(texts: list[str]) -> list[int]:
    """Each text's leader (its own index for a leader): exact twins join the first equal
    text; others the first earlier leader with cosine >= the threshold and no veto, every
    guard asked about every candidate pair (no pre-check)."""
    emb = resolve_embedder(None)
    canon = canonical_texts(texts)
    vecs = emb.embed(canon).astype(np.float64)
    feats = [Features(t, c.split()) for t, c in zip(texts, canon, strict=True)]
    thr = emb.recommended_threshold
    norm = [normalize_key(t) for t in texts]
    first: dict[str, int] = {}
    leaders: list[int] = []
    out = []
    for i in range(len(texts)):
        if norm[i] in first:
            out.append(out[first[norm[i]]])
            continue
        first[norm[i]] = i
        lead = i
        for j in leaders:
            s = float(vecs[i] @ vecs[j])
            assert abs(s - thr) > 1e-3  # (no pair on the float edge of the threshold)
            if s >= thr and veto(feats[j], feats[i], _ALL, False) is None:
                lead = j
                break
        if lead == i:
            leaders.append(i)
        out.append(lead)
    return out


def test_a_sliced_pass_of_long_texts_decides_as_the_pairwise_reference(monkeypatch) -> None:
    texts = _long_texts(3, 90)
    want = _reference(texts)
    assert len(set(want)) < len(texts) - 10 and len(set(want)) > 40  # merges and vetoes

    monkeypatch.setattr(grouping, "SLICE_S", 0.002)  # many slices, whatever the machine
    ops = _Ops()
    dedup = Deduper(BatchConfig(), ops)
    reqs = [Request({"query": t}, text=t) for t in texts]
    prep = dedup.prepare(reqs, embed_ahead=True)  # the off-loop half of a large pass
    slices = 0
    while prep is not None:
        prep = dedup.apply(prep, sliced=True)
        slices += 1
        assert slices < 1000
    assert slices > 3
    assert all(r.state == GROUPED for r in reqs)
    index_of = {id(r): i for i, r in enumerate(reqs)}
    got = [index_of[id(r.group.leader)] for r in reqs]
    assert got == want
    # the refused pairs are logged; their guard is asked when the log is read
    assert dedup.vetoes and all(v.veto is not None for v in dedup.vetoes)
    assert {v.veto.guard for v in dedup.vetoes} == {"residue"}


def test_the_whole_pass_unsliced_decides_the_same() -> None:
    texts = _long_texts(4, 60)
    want = _reference(texts)
    dedup = Deduper(BatchConfig(), _Ops())
    reqs = [Request({"query": t}, text=t) for t in texts]
    assert dedup.run(reqs) is None
    index_of = {id(r): i for i, r in enumerate(reqs)}
    assert [index_of[id(r.group.leader)] for r in reqs] == want


def test_requests_that_leave_between_slices_are_skipped(monkeypatch) -> None:
    monkeypatch.setattr(grouping, "SLICE_S", 0.0)  # one request decided per slice
    texts = _long_texts(5, 30)
    dedup = Deduper(BatchConfig(), _Ops())
    reqs = [Request({"query": t}, text=t) for t in texts]
    prep = dedup.apply(dedup.prepare(reqs, embed_ahead=True), sliced=True)
    assert prep is not None and 0 < len(prep.raw) < len(reqs)
    gone = prep.raw[len(prep.raw) // 2]
    gone.state = DONE  # its caller left
    while prep is not None:
        prep = dedup.apply(prep, sliced=True)
    assert gone.group is None
    assert all(r.state in (GROUPED, INFLIGHT) for r in reqs if r is not gone)
    assert RAW not in {r.state for r in reqs}
