"""Candidate leaders of new rows, comparing each with every live leader: the exhaustive producer.

The dedup pass is "candidates, then a greedy pass" (:mod:`stratabatch.greedy`). For each new
row of a pass a producer lists the leaders the row may join, in greedy order: live leader rows
of the :class:`~stratabatch.index.LeaderIndex` (pending and running groups, in row order),
then the new rows of the same pass that found no candidate themselves (the pass's *provisional
leaders*), restricted to the row's partition and to canonical cosine >= threshold (the float
rule of :mod:`stratabatch.cosine`) and to pairs the residue pre-check lets through
(:mod:`stratabatch.pairs`). The lists come back in CSR form (``offsets``, ``rows``, ``sims``)
with at most ``max_cand`` entries per row, the lowest rows, and a ``more`` flag per row when
the list was cut there.

:func:`exhaustive_candidates` compares every new row with every live leader of its partition
(a jitted loop, or BLAS products in blocks). It is the reference, and the method below
:data:`~stratabatch.index.INDEX_MIN_ROWS` rows, where it is cheaper. The leader tables
(:class:`~stratabatch.sketches.SketchTable`, :class:`~stratabatch.wordtable.WordTable`) give
the same lists from fewer comparisons. Kernels are pure functions of numpy arrays,
``cache=True``.
"""

from __future__ import annotations

import math
import os

import numpy as np
from numba import njit

from .cosine import dot_canonical, dot_fast, dot_margin
from .kernels import readonly
from .pairs import UNPAIRED_MAX, WordData, admit, precheck, word_args

__all__ = ["BLAS_ONE_THREAD", "MAX_CANDIDATES", "exhaustive_candidates"]

MAX_CANDIDATES = 8
"""Default bound on candidates listed per row (the greedy pass rarely needs a second)."""

# BLAS products win only with BLAS on one thread: two OpenBLAS threads on a busy 2-core
# machine made them 30x slower than the jitted loop (measured). The engine process pins BLAS
# before numpy loads; an embedded process gets the BLAS paths when it does too.
BLAS_ONE_THREAD = any(
    os.environ.get(v) == "1" for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
)


@njit(cache=True)
def _exhaustive_pass(
    X, part, thr, margin, lidx, nl, start, n, k, off, out_rows, out_sims, more, wd
):
    """Candidates of rows [start, n) against lidx[:nl] (live leaders, ascending) and the
    provisional leaders found on the way (appended to lidx). Returns the leader count."""
    buf = np.empty(2 * UNPAIRED_MAX, np.int64)
    lo = thr - margin
    hi = thr + margin
    e = 0
    off[0] = 0
    for i in range(start, n):
        pi = part[i]
        cnt = 0
        cut = False
        for t in range(nl):
            j = lidx[t]
            if part[j] != pi:
                continue
            if dot_fast(X, i, X, j) < lo:
                continue  # (admit says the same: -2; its call passes eight arrays, ~40 ns)
            s = admit(X, i, j, thr, lo, hi, wd, buf)
            if s < -1.0:
                continue
            if cnt == k:
                cut = True
                break
            out_rows[e + cnt] = j
            out_sims[e + cnt] = s
            cnt += 1
        if cnt == 0:
            lidx[nl] = i
            nl += 1
        e += cnt
        off[i - start + 1] = e
        more[i - start] = cut
    return nl


@njit(cache=True)
def _exhaustive_block(
    X, part, thr, margin, is_lead, b0, b1, S, start, k, off, out_rows, out_sims, more, e, wd
):
    """Rows [b0, b1) from S = X[b0:b1] @ X[:b1].T (float32): a row compares with every
    earlier row that leads (is_lead), in row order; the canonical cosine decides near the
    threshold. Returns the next free position of out_rows."""
    wr, wi, wc, woff, wlen, wtot, refused, rsim = wd
    buf = np.empty(2 * UNPAIRED_MAX, np.int64)
    lo = thr - margin
    hi = thr + margin
    for i in range(b0, b1):
        pi = part[i]
        cnt = 0
        cut = False
        srow = i - b0
        for j in range(i):
            if not is_lead[j] or part[j] != pi:
                continue
            approx = S[srow, j]
            if approx < lo:
                continue
            c = dot_canonical(X, i, X, j)
            if approx < hi and c < thr:
                continue
            if not precheck(wr, wi, wc, woff, wlen, wtot, refused, rsim, buf, i, j, c):
                continue
            if cnt == k:
                cut = True
                break
            out_rows[e + cnt] = j
            out_sims[e + cnt] = c
            cnt += 1
        if cnt == 0:
            is_lead[i] = True
        e += cnt
        off[i - start + 1] = e
        more[i - start] = cut
    return e


# Below this many (new rows x rows before them) the direct loop beats BLAS blocks, whose
# fixed cost per block dominates small products (measured with perf/bench_dedup_depth.py).
_LOOP_MAX_PAIRS = 16_384

_EX_BLOCK = 128


def exhaustive_candidates(
    X: np.ndarray,
    part: np.ndarray,
    threshold: float,
    start: int,
    max_cand: int = MAX_CANDIDATES,
    method: str = "auto",
    words: WordData | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Candidate leaders of rows ``start ..`` of X, comparing each with every leader.

    Rows ``0 .. start - 1`` with ``part >= 0`` are the live leaders (``part == -1`` marks dead
    rows). Each new row's candidates are the live leaders and the earlier new rows that had no
    candidate, of equal ``part``, whose canonical cosine with it is >= threshold, lowest rows
    first.

    Args:
        X: float32 ``[n, d]``, rows L2-normalized.
        part: int64 ``[n]`` partition of each row; -1 for dead rows.
        threshold: Cosine a candidate needs.
        start: First new row.
        max_cand: At most this many candidates per row (>= 1).
        method: ``"loop"`` (jitted direct loop), ``"blas"`` (products from BLAS, a block of
            new rows against every row before them, then a jitted scan) or ``"auto"`` (BLAS
            for large inputs when BLAS runs on one thread, see :data:`BLAS_ONE_THREAD`; else
            the loop). All give the same lists.
        words: The rows' key words (see :data:`WordData`) where the residue guard decides
            their merges: a pair it must refuse is no candidate. None: no such check.

    Returns:
        ``(offsets, rows, sims, more)``: the candidates of new row ``start + j`` are
        ``rows[offsets[j]:offsets[j + 1]]`` (int64, ascending) with their cosines ``sims``
        (float32); ``more[j]`` is True when the list was cut at ``max_cand``.

    Raises:
        ValueError: If shapes, dtypes or bounds are wrong.
    """
    X, part = _check(X, part, threshold, start, max_cand)
    n = X.shape[0]
    m = n - start
    lidx = np.empty(n, np.int64)
    live = np.flatnonzero(part[:start] >= 0)
    lidx[: live.shape[0]] = live
    off = np.empty(m + 1, np.int64)
    rows = np.empty(m * max_cand, np.int64)
    sims = np.empty(m * max_cand, np.float32)
    more = np.zeros(m, np.bool_)
    thr = np.float32(threshold)
    margin = dot_margin(X.shape[1])
    if method not in ("auto", "loop", "blas"):
        raise ValueError(f"method must be 'auto', 'loop' or 'blas', got {method!r}")
    if method == "loop" or (method == "auto" and (not BLAS_ONE_THREAD or m * n <= _LOOP_MAX_PAIRS)):
        _exhaustive_pass(
            X,
            part,
            thr,
            margin,
            lidx,
            live.shape[0],
            start,
            n,
            max_cand,
            off,
            rows,
            sims,
            more,
            word_args(words),
        )
    else:  # many pairs: their products by BLAS, a block of new rows at a time
        is_lead = np.zeros(n, np.bool_)
        is_lead[live] = True
        off[0] = 0
        e = 0
        for b0 in range(start, n, _EX_BLOCK):
            b1 = min(b0 + _EX_BLOCK, n)
            S = X[b0:b1] @ X[:b1].T
            e = _exhaustive_block(
                X,
                part,
                thr,
                margin,
                is_lead,
                b0,
                b1,
                S,
                start,
                max_cand,
                off,
                rows,
                sims,
                more,
                e,
                word_args(words),
            )
    e = off[m]
    return off, rows[:e], sims[:e], more


def _check(
    X: np.ndarray, part: np.ndarray, threshold: float, start: int, max_cand: int
) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(X, np.ndarray) or X.dtype != np.float32 or X.ndim != 2:
        raise ValueError(
            f"X must be a 2-D float32 array, got {type(X).__name__} "
            f"{getattr(X, 'dtype', None)} ndim={getattr(X, 'ndim', None)}"
        )
    n = X.shape[0]
    part = np.asarray(part)
    if part.dtype != np.int64 or part.shape != (n,):
        raise ValueError(
            f"part must be an int64 array of shape ({n},), got {part.dtype} {part.shape}"
        )
    if not 0 <= start <= n:
        raise ValueError(f"start must be in [0, {n}], got {start}")
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold}")
    if max_cand < 1:
        raise ValueError(f"max_cand must be >= 1, got {max_cand}")
    return readonly(np.ascontiguousarray(X)), readonly(np.ascontiguousarray(part))
