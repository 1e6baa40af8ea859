"""Merge candidates: for each new row, every earlier row of its partition with cosine >= t.

The guarded dedup pass decides merges in Python (the guards read words, not vectors): for each
new request it walks its candidates in row order and joins the first one that still leads a
group and that no guard vetoes. This kernel finds those candidates in one call per pass. The
cosine that decides is the same as :func:`stratabatch.kernels.leader_cluster`'s (the float64-
accumulated dot rounded to float32, compared with ``>=`` against float32(threshold)); a fast
float32 dot screens pairs first and only pairs near or above the threshold are recomputed.

This module imports numba at import time; the package imports it on the first guarded pass.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .kernels import _dot_canonical, _dot_fast, _margin, _readonly

__all__ = ["block_candidates", "candidates", "candidates_reference", "more_candidates"]


@njit(cache=True)
def _candidates_kernel(X, part, thr, margin, lo_row, start, row, n, rows_out, cols, sims):
    """Fill (row, col, sim) triples for rows [row, n) against rows [lo_row, i) until the
    buffers are full; return (next row to do, triples written)."""
    cap = cols.shape[0]
    k = 0
    lo = thr - margin
    hi = thr + margin
    for i in range(row, n):
        pi = part[i]
        if pi < 0:
            continue
        if k + (i - lo_row) > cap:  # this row might not fit: stop before it
            return i, k
        for j in range(lo_row, i):
            if part[j] != pi:
                continue
            approx = _dot_fast(X, i, X, j)
            if approx < lo:
                continue
            c = _dot_canonical(X, i, X, j)
            if approx < hi and c < thr:
                continue
            rows_out[k] = i
            cols[k] = j
            sims[k] = c
            k += 1
    return n, k


@njit(cache=True)
def _block_kernel(X, part, thr, margin, lidx, nl, b0, b1, row, per_row, rows_out, cols, sims,
                  resume):
    """Candidates of rows [row, b1): for row i, the rows ``lidx[:nl]`` (leaders, all before
    b0, increasing) then the block's own earlier rows [b0, i), at most ``per_row`` of them (0:
    all); ``resume[i - b0]`` is where the scan stopped for a row that reached the cap, else
    -1. Stops before a row that might overflow the buffers; returns (next row, written)."""
    cap = cols.shape[0]
    k = 0
    lo = thr - margin
    hi = thr + margin
    for i in range(row, b1):
        resume[i - b0] = -1
        pi = part[i]
        if pi < 0:
            continue
        seq = nl + (i - b0)
        room = seq if per_row == 0 else min(seq, per_row)
        if k + room > cap:
            return i, k
        found = 0
        for t in range(seq):
            j = lidx[t] if t < nl else b0 + (t - nl)
            if part[j] != pi:
                continue
            approx = _dot_fast(X, i, X, j)
            if approx < lo:
                continue
            c = _dot_canonical(X, i, X, j)
            if approx < hi and c < thr:
                continue
            rows_out[k] = i
            cols[k] = j
            sims[k] = c
            k += 1
            found += 1
            if found == per_row:
                if t + 1 < seq:
                    resume[i - b0] = t + 1
                break
    return b1, k


def block_candidates(
    X: np.ndarray, part: np.ndarray, threshold: float, leaders: np.ndarray, b0: int, b1: int,
    per_row: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Candidates of the rows ``b0 .. b1-1`` among the given leader rows and the block's own
    earlier rows.

    The greedy pass decides a block, adds the block's new leaders to ``leaders`` and asks for
    the next block: each row is compared with the leaders known before its block (as the
    unguarded :func:`~stratabatch.kernels.leader_cluster` compares with leaders only) and with
    every earlier row of its block (whether those lead is decided after this call). With
    ``per_row``, a row's scan stops at that many candidates (the greedy pass usually takes the
    first), and :func:`more_candidates` continues it where it stopped.

    Args:
        X: float32 matrix ``[n, d]``, C-contiguous rows of unit norm.
        part: int64 ``[n]`` partition of each row (negative: dead, never compared).
        threshold: The cosine a pair needs.
        leaders: int64 leader row indices, increasing, all ``< b0``.
        b0: First row of the block.
        b1: One past its last row.
        per_row: Most candidates listed per row; 0 for all.

    Returns:
        ``(rows, cols, sims, resume)``: the candidates as :func:`candidates` gives them, and
        per block row the scan position to resume from (-1: the list is complete).
    """
    thr = np.float32(threshold)
    margin = _margin(X.shape[1])
    nl = len(leaders)
    width = nl + (b1 - b0) if per_row == 0 else per_row
    cap = max(256, 2 * (b1 - b0)) + width
    resume = np.empty(b1 - b0, np.int64)
    out_r, out_c, out_s = [], [], []
    row = b0
    while True:
        rows = np.empty(cap, np.int64)
        cols = np.empty(cap, np.int64)
        sims = np.empty(cap, np.float32)
        row, k = _block_kernel(X, part, thr, margin, leaders, nl, b0, b1, row, per_row, rows,
                               cols, sims, resume)
        out_r.append(rows[:k])
        out_c.append(cols[:k])
        out_s.append(sims[:k])
        if row >= b1:
            break
        cap *= 2
    if len(out_r) == 1:
        return out_r[0], out_c[0], out_s[0], resume
    return np.concatenate(out_r), np.concatenate(out_c), np.concatenate(out_s), resume


def more_candidates(
    X: np.ndarray, part: np.ndarray, threshold: float, leaders: np.ndarray, b0: int, i: int,
    start: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The rest of row ``i``'s candidates, from scan position ``start`` on (what
    :func:`block_candidates` returned as its ``resume``): ``(cols, sims)``."""
    resume = np.empty(1, np.int64)
    n_seq = len(leaders) + (i - b0)
    seq = np.concatenate([leaders, np.arange(b0, i, dtype=np.int64)])[start:]
    rows = np.empty(n_seq, np.int64)
    cols = np.empty(n_seq, np.int64)
    sims = np.empty(n_seq, np.float32)
    # the remaining sequence as a leader list, and an empty block: one row, no cap
    _, k = _block_kernel(X, part, np.float32(threshold), _margin(X.shape[1]), seq, len(seq),
                         i, i + 1, i, 0, rows, cols, sims, resume)
    return cols[:k], sims[:k]


def candidates(
    X: np.ndarray, part: np.ndarray, threshold: float, start: int, lo_row: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate pairs of the rows ``start .. n-1`` of ``X``.

    For each row i >= start (with ``part[i] >= 0``), every row j in ``[lo_row, i)`` with
    ``part[j] == part[i]`` and cosine >= ``threshold``, in increasing j. Rows with a negative
    partition are dead: they are neither candidates nor given any.

    Args:
        X: float32 matrix ``[n, d]``, C-contiguous rows of unit norm.
        part: int64 ``[n]`` partition of each row.
        threshold: The cosine a pair needs.
        start: First row to find candidates for.
        lo_row: First row that may be a candidate (rows before it are never compared).

    Returns:
        ``(rows, cols, sims)``: int64, int64, float32 arrays of equal length, sorted by row
        then col.

    Raises:
        ValueError: On wrong shapes or dtypes, or start/lo_row out of range.
    """
    if not isinstance(X, np.ndarray) or X.dtype != np.float32 or X.ndim != 2:
        raise ValueError("X must be a 2-D float32 array")
    n, d = X.shape
    part = np.asarray(part)
    if part.dtype != np.int64 or part.shape != (n,):
        raise ValueError(f"part must be an int64 array of shape ({n},)")
    if not 0 <= lo_row <= start <= n:
        raise ValueError(f"need 0 <= lo_row <= start <= {n}, got {lo_row}, {start}")
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold}")
    X = _readonly(np.ascontiguousarray(X))
    part = _readonly(np.ascontiguousarray(part))
    thr = np.float32(threshold)
    margin = _margin(d)
    cap = max(1024, 4 * (n - start)) + n
    out_r, out_c, out_s = [], [], []
    row = start
    while True:
        rows = np.empty(cap, np.int64)
        cols = np.empty(cap, np.int64)
        sims = np.empty(cap, np.float32)
        row, k = _candidates_kernel(X, part, thr, margin, lo_row, start, row, n, rows, cols,
                                    sims)
        out_r.append(rows[:k])
        out_c.append(cols[:k])
        out_s.append(sims[:k])
        if row >= n:
            break
        cap *= 2
    if len(out_r) == 1:
        return out_r[0], out_c[0], out_s[0]
    return np.concatenate(out_r), np.concatenate(out_c), np.concatenate(out_s)


def candidates_reference(
    X: np.ndarray, part: np.ndarray, threshold: float, start: int, lo_row: int = 0
) -> list[tuple[int, int, float]]:
    """Plain numpy reference of :func:`candidates` (for tests): ``[(row, col, sim)]``."""
    out = []
    thr = np.float32(threshold)
    for i in range(start, X.shape[0]):
        if part[i] < 0:
            continue
        for j in range(lo_row, i):
            if part[j] != part[i]:
                continue
            acc = 0.0
            for a, b in zip(X[i].tolist(), X[j].tolist(), strict=True):
                acc += a * b  # float64, in index order, as the kernel's canonical dot
            c = np.float32(acc)
            if c >= thr:
                out.append((i, j, float(c)))
    return out
