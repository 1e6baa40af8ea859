"""Greedy leader clustering: each row joins the first earlier leader close enough, else leads.

:func:`leader_cluster` clusters one matrix by the float rule (:mod:`stratabatch.cosine`),
comparing each row with every leader: the reference the dedup pass is tested against.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .cosine import dot_canonical, dot_fast, dot_margin
from .kernels import readonly

__all__ = ["LEADER_LOOP_MAX_LEADERS", "leader_cluster"]

# The direct loop costs one dot product per (row, leader) read from memory; the BLAS path
# amortizes memory traffic over blocks but pays a fixed cost per block. So "auto" starts with the
# loop and moves to BLAS blocks once this many leaders exist (measured with
# perf/bench_kernels.py on a 2-core AMD EPYC: few leaders -> loop, many -> BLAS).
LEADER_LOOP_MAX_LEADERS = 64

_BLOCK = 128


@njit(cache=True)
def _leader_loop(X, part, thr, margin, n_fixed, max_leaders, leader, sim, lidx):
    """Greedy pass with direct dot products, from row 0 while there are few leaders.

    Stops before the first non-fixed row met with ``max_leaders`` leaders or more (the BLAS
    path then takes over). Leader row indices go to lidx; returns (next row, leader count).
    """
    n = X.shape[0]
    nl = 0
    lo = thr - margin
    hi = thr + margin
    for i in range(n):
        found = -1
        s = np.float32(1.0)
        if i >= n_fixed:
            if nl >= max_leaders:
                return i, nl
            pi = part[i]
            for t in range(nl):
                j = lidx[t]
                if part[j] != pi:
                    continue
                approx = dot_fast(X, i, X, j)
                if approx < lo:
                    continue
                # near or above the threshold: the canonical cosine decides and is reported
                c = dot_canonical(X, i, X, j)
                if approx < hi and c < thr:
                    continue
                found = j
                s = c
                break
        if found < 0:
            lidx[nl] = i
            nl += 1
            leader[i] = i
        else:
            leader[i] = found
        sim[i] = s
    return n, nl


@njit(cache=True)
def _leader_block(X, part, thr, margin, start, stop, S, T, lbuf, lidx, nl, leader, sim):
    """Greedy pass over rows [start, stop) from precomputed float32 products.

    S holds the block's products with the leaders known before it (``lbuf[:S.shape[1]]``), T the
    block's products with itself (for leaders born inside the block). New leaders are appended
    to lbuf/lidx; returns the new leader count.
    """
    nl0 = S.shape[1]
    lo = thr - margin
    hi = thr + margin
    for i in range(start, stop):
        pi = part[i]
        found = -1
        s = np.float32(1.0)
        for t in range(nl):
            j = lidx[t]
            if part[j] != pi:
                continue
            if t < nl0:
                approx = S[i - start, t]
            else:
                approx = T[i - start, j - start]
            if approx < lo:  # the common case: clearly below, no call
                continue
            c = dot_canonical(X, i, lbuf, t)
            if approx < hi and c < thr:
                continue
            found = j
            s = c
            break
        if found < 0:
            lbuf[nl, :] = X[i, :]
            lidx[nl] = i
            nl += 1
            leader[i] = i
        else:
            leader[i] = found
        sim[i] = s
    return nl


def leader_cluster(
    X: np.ndarray,
    part: np.ndarray,
    threshold: float,
    n_fixed: int = 0,
    method: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy cosine leader clustering of the rows of X, in row order.

    Row i joins the first earlier leader j (lowest index, same ``part``) whose cosine with it
    is >= threshold, else becomes a leader itself. Rows ``0 .. n_fixed - 1`` are leaders by fiat
    (groups already pending): they never merge, but later rows may join them. The cosine is
    the float32 rounding of a float64-accumulated dot product, compared with ``>=`` against
    float32(threshold), identically on the loop and the BLAS path.

    Args:
        X: float32 matrix ``[n, d]``, C-contiguous, rows L2-normalized by the caller.
        part: int64 array ``[n]``; rows merge only within equal values (scope, numbers guard).
        threshold: Cosine a row needs to join a leader.
        n_fixed: How many leading rows are fixed leaders, in ``[0, n]``.
        method: ``"loop"`` (direct jitted loop over leaders), ``"blas"`` (blocks of rows
            against the known leaders by BLAS product, then a jitted greedy pass) or ``"auto"``
            (the loop until ``LEADER_LOOP_MAX_LEADERS`` leaders exist, then BLAS blocks). All
            give identical results.

    Returns:
        ``(leader, sim)``: int64 index of each row's leader (itself for leaders) and the float32
        cosine to it (1.0 for leaders).

    Raises:
        ValueError: If shapes or dtypes are wrong or n_fixed is out of range.
    """
    if not isinstance(X, np.ndarray) or X.dtype != np.float32 or X.ndim != 2:
        raise ValueError(
            f"X must be a 2-D float32 array, got {type(X).__name__} "
            f"{getattr(X, 'dtype', None)} ndim={getattr(X, 'ndim', None)}"
        )
    n, d = X.shape
    part = np.asarray(part)
    if part.dtype != np.int64 or part.shape != (n,):
        raise ValueError(
            f"part must be an int64 array of shape ({n},), got {part.dtype} {part.shape}"
        )
    if not 0 <= n_fixed <= n:
        raise ValueError(f"n_fixed must be in [0, {n}], got {n_fixed}")
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold}")
    if method not in ("auto", "loop", "blas"):
        raise ValueError(f"method must be 'auto', 'loop' or 'blas', got {method!r}")
    X = readonly(np.ascontiguousarray(X))
    part = readonly(np.ascontiguousarray(part))
    thr = np.float32(threshold)
    margin = dot_margin(d)
    leader = np.empty(n, dtype=np.int64)
    sim = np.empty(n, dtype=np.float32)
    lidx = np.empty(n, dtype=np.int64)
    max_leaders = {"loop": n, "blas": 0, "auto": LEADER_LOOP_MAX_LEADERS}[method]
    resume, nl = _leader_loop(X, part, thr, margin, n_fixed, max_leaders, leader, sim, lidx)
    if resume == n:
        return leader, sim
    # Many distinct rows: continue in blocks, each compared with all leaders by one BLAS product.
    lbuf = np.empty((n, d), dtype=np.float32)
    lbuf[:nl] = X[lidx[:nl]]
    for start in range(resume, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        block = X[start:stop]
        S = block @ lbuf[:nl].T  # the block against every leader known before it
        T = block @ block.T  # and against itself, for leaders born inside the block
        nl = _leader_block(X, part, thr, margin, start, stop, S, T, lbuf, lidx, nl, leader, sim)
    return leader, sim
