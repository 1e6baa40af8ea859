"""The candidate kernel against its plain reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratabatch.candidates import candidates, candidates_reference


def unit_rows(rng, n, d, groups):
    base = rng.standard_normal((groups, d))
    X = base[rng.integers(0, groups, n)] + 0.3 * rng.standard_normal((n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60), start_frac=st.floats(0, 1),
       thr=st.floats(0.3, 0.99), parts=st.integers(1, 3))
def test_candidates_match_the_reference(seed, n, start_frac, thr, parts):
    rng = np.random.default_rng(seed)
    X = unit_rows(rng, n, 16, 4)
    part = rng.integers(-1, parts, n).astype(np.int64)
    start = int(start_frac * n)
    for lo_row in (0, start):
        r, c, s = candidates(X, part, thr, start, lo_row)
        got = list(zip(r.tolist(), c.tolist(), s.tolist(), strict=True))
        want = candidates_reference(X, part, thr, start, lo_row)
        assert [(i, j) for i, j, _ in got] == [(i, j) for i, j, _ in want], seed
        assert np.allclose([x[2] for x in got], [x[2] for x in want], atol=1e-6)


def test_many_candidates_grow_the_buffers():
    X = np.full((300, 8), 1 / np.sqrt(8), np.float32)
    r, c, _ = candidates(X, np.zeros(300, np.int64), 0.9, 0)
    assert len(r) == 300 * 299 // 2 and r.tolist() == sorted(r.tolist())


def test_bad_input():
    with pytest.raises(ValueError):
        candidates(np.zeros((2, 2)), np.zeros(2, np.int64), 0.5, 0)
    with pytest.raises(ValueError):
        candidates(np.zeros((2, 2), np.float32), np.zeros(2, np.int64), 0.5, 3)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 50), thr=st.floats(0.3, 0.95),
       per_row=st.integers(0, 3))
def test_block_candidates_and_their_continuation_match_the_reference(seed, n, thr, per_row):
    from stratabatch.candidates import block_candidates, more_candidates

    rng = np.random.default_rng(seed)
    X = unit_rows(rng, n, 16, 3)
    part = rng.integers(0, 2, n).astype(np.int64)
    b0 = int(rng.integers(1, n))
    leaders = np.sort(rng.choice(b0, size=int(rng.integers(0, b0 + 1)), replace=False))
    rows, cols, _, resume = block_candidates(X, part, thr, leaders.astype(np.int64), b0, n,
                                             per_row)
    for i in range(b0, n):
        seq = [*leaders.tolist(), *range(b0, i)]
        want = [j for j in seq if part[j] == part[i] and
                np.float32(sum(float(a) * float(b) for a, b in zip(X[i], X[j], strict=True)))
                >= np.float32(thr)]
        got = cols[rows == i].tolist()
        if resume[i - b0] >= 0:
            more, _ = more_candidates(X, part, thr, leaders.astype(np.int64), b0, i,
                                      int(resume[i - b0]))
            got += more.tolist()
        assert got == want, (seed, i)
        if per_row:
            assert len(cols[rows == i]) <= per_row
