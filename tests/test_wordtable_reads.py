"""The word pass reads a slot's rows as the pre-check defines it, whatever its chunks.

The word table's pass (:func:`stratabatch.hashtable._word_pass`, through
:meth:`stratabatch.wordtable.WordTable.candidates`) lists a slot's rows a chunk at a time and
fetches their key words ahead before it reads them, with the word data's arrays unpacked once a
pass. What it answers must be what reading the rows one by one gives: the newest overflow
entries first, then the three oldest (inline), at most the budget of them counted (dead rows
too), each pair through :func:`stratabatch.pairs.word_admit` (its cosine, pre-check and the
first refused pair noted), the lowest ``max_cand`` candidates kept, and a row without any
filed on the way.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from stratabatch import wordtable
from stratabatch.cosine import dot_margin
from stratabatch.pairs import UNPAIRED_MAX, word_admit
from stratabatch.wordkeys import COARSE_KEYS, WORD_KEYS, word_shape
from stratabatch.wordtable import WordTable

# (two pairs of typos, and words no other is a typo of)
VOCAB = ["order", "ordex", "refund", "refunx", "shipping", "status", "cancel", "coupon"]


def _workload(n: int, seed: int):
    """n rows that all share one pair key (one crowded slot) and each have a fine key of its
    own; three key words each out of VOCAB; most vectors close together (the cosine passes),
    some far."""
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    dim = 16
    base = np_rng.standard_normal(dim)
    X = np.empty((n, dim), np.float32)
    for i in range(n):
        v = base + 0.15 * np_rng.standard_normal(dim)
        if rng.random() < 0.2:
            v = np_rng.standard_normal(dim)
        X[i] = v / np.linalg.norm(v)
    part = np.zeros(n, np.int64)
    ranks = {w: 101 + 2 * k for k, w in enumerate(VOCAB)}
    wr, wi, wc = [], [], []
    woff = np.empty(n, np.int64)
    wlen = np.empty(n, np.int64)
    wtot = np.empty(n, np.int64)
    for i in range(n):
        words = sorted(rng.sample(VOCAB, 3), key=ranks.__getitem__)
        woff[i] = len(wr)
        wlen[i] = len(words)
        wtot[i] = len(words)
        for w in words:
            wr.append(ranks[w])
            wi.append(word_shape(w))
            wc.append(1)
    wd = (
        np.array(wr, np.int64),
        np.array(wi, np.int64),
        np.array(wc, np.int64),
        woff,
        wlen,
        wtot,
        np.full(n, -1, np.int64),
        np.zeros(n, np.float32),
    )
    wkeys = np.zeros((n, WORD_KEYS), np.uint64)
    wkeys[:, 0] = 12345  # one shared pair key
    wkeys[:, COARSE_KEYS] = np.arange(n, dtype=np.uint64) * 2 + 1001  # a fine key each
    return X, part, wkeys, wd


def _reference(X, part, wd, threshold, pair_budget, max_cand, start, filed):
    """Rows ``start ..`` row by row, each slot's rows read one at a time (the first three filed
    held inline, read after the overflow entries, newest first). ``filed``: the rows filed
    under the shared pair key, in filing order (grows)."""
    n = X.shape[0]
    thr = np.float32(threshold)
    margin = dot_margin(X.shape[1])
    buf = np.empty(2 * UNPAIRED_MAX, np.int64)
    out, reads = [], 0
    for i in range(start, n):
        # its fine key is its own: no row there; then the pair key, up to the budget
        order = filed[3:][::-1] + filed[:3]
        got = []
        for r in order[:pair_budget]:
            reads += 1
            if part[r] != part[i] or r >= i:
                continue  # (dead)
            c = word_admit(X, i, r, thr, thr - margin, thr + margin, wd, buf)
            if c >= -1.0:
                got.append((r, float(c)))
        got.sort()
        out.append(got[:max_cand])
        if not got:
            filed.append(i)
    return out, reads


def _run(table, X, part, wkeys, wd, threshold, max_cand, start):
    n = X.shape[0]
    read0 = int(table.state[3])
    off, rows, sims, more = table.candidates(
        X,
        part,
        np.zeros((n, 2), np.uint64),
        wkeys,
        start,
        np.zeros(n, np.int64),
        threshold,
        max_cand,
        wd,
    )
    assert not more.any()
    got = [
        list(zip(rows[off[j] : off[j + 1]].tolist(), sims[off[j] : off[j + 1]].tolist(), strict=1))
        for j in range(n - start)
    ]
    return got, int(table.state[3]) - read0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("pair_budget", [5, 16, 17, 40, 1 << 40])
def test_the_word_pass_reads_a_crowded_slot_as_one_row_at_a_time(seed, pair_budget, monkeypatch):
    n, half = 120, 50
    X, part, wkeys, wd = _workload(n, seed)
    threshold = 0.8
    max_cand = 64
    ref_wd = tuple(a.copy() for a in wd)
    monkeypatch.setattr(wordtable, "PAIR_BUDGET", pair_budget)
    table = WordTable()

    # a first pass files its leaders; the table is rebuilt from them (in row order), as after
    # a compaction, and some of them die (they stay filed: read, counted, skipped)
    got, read = _run(table, X[:half], part[:half], wkeys[:half], wd, threshold, max_cand, 0)
    want1, reads1 = _reference(
        X[:half],
        part[:half],
        tuple(a.copy() for a in wd),
        threshold,
        pair_budget,
        max_cand,
        0,
        [],
    )
    assert (got, read) == (want1, reads1)
    leaders = [i for i in range(half) if not got[i]]
    merged = [i for i in range(half) if got[i]]
    part[merged] = -1
    table.rebuild(wkeys, part[:half], np.array(leaders, np.int64), room=n)
    rng = random.Random(seed)
    dead = [r for r in leaders if rng.random() < 0.2]
    part[dead] = -1

    ref_wd = tuple(a.copy() for a in wd)
    want, reads = _reference(X, part, ref_wd, threshold, pair_budget, max_cand, half, leaders)
    got, read = _run(table, X, part, wkeys, wd, threshold, max_cand, half)
    assert got == want
    assert read == reads  # the rows read, dead ones counted
    # the first refused pair of each row, noted for the veto log, in the same reading order
    np.testing.assert_array_equal(wd[6], ref_wd[6])
    np.testing.assert_array_equal(wd[7], ref_wd[7])
    assert (wd[6][half:] >= 0).any() and any(want)  # (the test sees both)
