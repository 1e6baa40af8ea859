"""Greedy leader clustering: each row joins the first earlier leader close enough, else leads.

:func:`greedy_pass` is the dedup pass's decision: it walks each new row's candidate list (from
:mod:`stratabatch.candidates` or a leader table) in row order, and takes the first candidate
that still leads and that the guards allow. Without vetoes it is exactly greedy leader
clustering, which :func:`leader_cluster` computes directly for one matrix by the float rule
(:mod:`stratabatch.cosine`): the reference the pass is tested against.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

from .cosine import dot_canonical, dot_fast, dot_margin
from .kernels import readonly
from .pairs import UNPAIRED_MAX, WordData, admit, late_hits, word_args

__all__ = [
    "ASK",
    "LEADER_LOOP_MAX_LEADERS",
    "PASS",
    "REFUSE",
    "SKIP",
    "greedy_pass",
    "leader_cluster",
]

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


# --------------------------------------------------------------------------------------------
# The greedy pass over candidate lists
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def _cosines(X, i, rows, thr, margin, wd):
    """Canonical cosines of row i with each of ``rows`` (-2 where below thr, or where the
    residue pre-check refuses the pair)."""
    buf = np.empty(2 * UNPAIRED_MAX, np.int64)
    out = np.empty(rows.shape[0], np.float32)
    for t in range(rows.shape[0]):
        out[t] = admit(X, i, rows[t], thr, thr - margin, thr + margin, wd, buf)
    return out


ASK, PASS, REFUSE, SKIP = 2, 0, 1, 3
"""The answers :func:`greedy_pass` may be told for its candidate pairs (``codes``): ask
``veto``; ``veto`` allows the merge; ``veto`` refuses it; an old row ``joinable`` refuses."""

# With a deadline, the kernel walk decides at most this many rows between two reads of the clock
_WALK_ROWS = 64


@njit(cache=True)
def _walk(j, stop, start, off, rows, sims, codes, pend, leader, sim, events):
    """The rows ``start + j`` .. ``start + stop - 1`` of :func:`greedy_pass` that its
    candidate answers ``codes`` decide, in row order: a row without candidates leads, a row
    takes its first candidate that leads (a new row) or is not SKIP (an old row) and that
    the veto allows. Stops at the first row that needs Python: one with late leaders to try
    (``pend``), one whose walk meets an ASK, or one that takes no candidate (it leads late,
    or its list was cut). The refusals met before a row's taken candidate go to ``events``
    as (j, candidate index) pairs, for the caller to ask ``veto`` again (its side effects).
    Returns (the row to decide next, the number of events)."""
    ne = 0
    while j < stop:
        if pend[j]:
            break
        a = off[j]
        b = off[j + 1]
        if a == b:
            leader[j] = start + j
            j += 1
            continue
        found = -1
        ask = False
        for t in range(a, b):
            r = rows[t]
            if r >= start:
                if leader[r - start] != r:
                    continue
            elif codes[t] == SKIP:
                continue
            c = codes[t]
            if c == PASS:
                found = t
                break
            if c != REFUSE:
                ask = True
                break
        if found < 0 or ask:
            break
        for t in range(a, found):
            r = rows[t]
            if r >= start:
                if leader[r - start] != r:
                    continue
            elif codes[t] == SKIP:
                continue
            events[2 * ne] = j
            events[2 * ne + 1] = t
            ne += 1
        leader[j] = rows[found]
        sim[j] = sims[found]
        j += 1
    return j, ne


def greedy_pass(
    X: np.ndarray,
    part: np.ndarray,
    threshold: float,
    start: int,
    cands: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    joinable: Callable[[int], bool] | None = None,
    veto: Callable[[int, int, float], bool] | None = None,
    words: WordData | None = None,
    deadline: float | None = None,
    codes: np.ndarray | None = None,
) -> tuple[list[int], list[float], list[int]]:
    """Decide each new row's leader from its candidate list, in row order.

    Row ``start + j`` takes the first candidate that is still a leader (an earlier new row that
    became one, or an older row ``joinable`` accepts) and that ``veto`` allows; with no such
    candidate it becomes a leader. A row that had candidates but took none is a *late
    leader*: the candidate producers did not offer it to the rows after it, so those rows are
    checked against it here (exact cosine), and a list cut at ``max_cand`` whose candidates
    were all refused is completed by a scan of every leader. Without vetoes and with every old
    row joinable this is exactly greedy leader clustering.

    Args:
        X: The matrix the candidates were computed on.
        part: Its partitions (-1 for dead rows).
        threshold: The threshold the candidates were computed with.
        start: First new row.
        cands: ``(offsets, rows, sims, more)`` from a candidate producer.
        joinable: Whether an old row (< start) may be joined now; None: all may.
        veto: ``veto(new_row, candidate_row, cosine)`` True refuses that merge (the guards);
            None: none refused.
        words: The word data the candidates were computed with (see
            :func:`exhaustive_candidates`), for the rows this pass checks itself.
        deadline: A :func:`time.perf_counter` value: once it has passed, the rows not yet
            decided are left undecided (leader -1), at least one row decided. The caller
            retires their rows and decides them in a later pass (a sliced pass, see
            :meth:`stratabatch.grouping.Deduper.apply`). None: every row is decided.
        codes: What ``joinable`` and ``veto`` answer on each candidate pair of ``cands``
            (int8, aligned with its rows: :data:`ASK`, :data:`PASS`, :data:`REFUSE`,
            :data:`SKIP`), where the caller knows it ahead: the rows these answers decide
            are walked in one kernel, and ``veto`` is asked again only on the refusals met
            before a row's taken candidate (in row order, as without ``codes``). None: the
            walk asks ``joinable`` and ``veto`` pair by pair.

    Returns:
        ``(leader, sim, late)``: per new row its leader row (itself for a leader, -1 when left
        undecided at ``deadline``) and cosine to it (1.0 for a leader), and the late leaders
        (rows the producers did not file).
    """
    off, rows, sims, more = cands
    m = X.shape[0] - start
    if not len(rows) and (deadline is None or m <= _WALK_ROWS or time.perf_counter() <= deadline):
        # no candidate anywhere (distinct texts: the common pass): every row leads, as the
        # walk below decides them, without its set-up (~15-30 us a pass); the walk reads a
        # deadline only between segments of _WALK_ROWS rows, and one not passed yet leaves
        # no row undecided
        return list(range(start, start + m)), [1.0] * m, []
    thr = np.float32(threshold)
    margin = dot_margin(X.shape[1])
    wd = word_args(words)
    fast = codes is not None and veto is not None and m > 0
    leader: Any
    sim: Any
    if fast:
        leader = np.empty(m, np.int64)
        sim = np.ones(m, np.float64)
        pend = np.zeros(m, np.bool_)  # rows with late leaders to try (in ``extra``)
        events = np.empty(2 * max(len(rows), 1), np.int64)
        # (writable C arrays, whatever the producer gave: one compiled version of the walk)
        off_k = np.require(off, np.int64, ("C", "W"))
        rows_k = np.require(rows, np.int64, ("C", "W"))
        sims_k = np.require(sims, np.float32, ("C", "W"))
        codes_k = np.require(codes, np.int8, ("C", "W"))
    else:
        leader = [0] * m
        sim = [1.0] * m
        pend = None
    late: list[int] = []
    # the late leaders each row after them may join, found when each turned late (one kernel
    # call a late leader over the rows after it, in place of one a row over the late leaders)
    extra: dict[int, list[tuple[int, float]]] = {}
    off_l = off.tolist()
    rows_l = rows.tolist()
    sims_l = sims.tolist()
    clock = time.perf_counter
    j = 0
    while j < m:
        i = start + j
        if deadline is not None and j and clock() > deadline:
            for t in range(j, m):
                leader[t] = -1  # left for a later pass
            break
        if fast:
            stop = m if deadline is None else min(m, j + _WALK_ROWS)
            nxt, ne = _walk(
                j, stop, start, off_k, rows_k, sims_k, codes_k, pend, leader, sim, events
            )
            if ne:  # the veto's refusals the kernel walked past: asked in order, as without it
                ev = events[: 2 * ne].tolist()
                for e in range(0, 2 * ne, 2):
                    t = ev[e + 1]
                    veto(start + ev[e], rows_l[t], sims_l[t])  # type: ignore[misc]
            j = nxt
            if j == stop:  # (the segment's end: the clock is read again)
                continue
            i = start + j  # a row the walk left to Python
        a, b = off_l[j], off_l[j + 1]
        j += 1
        ex = extra.pop(i, None) if extra else None
        if a == b and ex is None:
            leader[j - 1] = i  # a provisional leader: nothing to decide
            continue
        lst = list(zip(rows_l[a:b], sims_l[a:b], strict=True))
        if ex is not None:
            lst = sorted(lst + ex)
        took = _take(i, start, lst, leader, joinable, veto)
        if took is None and bool(more[j - 1]):
            lst = _rescan(X, part, i, start, leader, thr, margin, wd)
            took = _take(i, start, lst, leader, joinable, veto)
        if took is None:
            leader[j - 1] = i
            if lst:
                late.append(i)
                if i + 1 < start + m:
                    _file_late(X, part, i, start + m, thr, margin, wd, extra, pend, start)
        else:
            leader[j - 1], sim[j - 1] = took
    if fast:
        return leader.tolist(), sim.tolist(), late
    return leader, sim, late


def _file_late(
    X: np.ndarray,
    part: np.ndarray,
    lead: int,
    stop: int,
    thr: np.float32,
    margin: np.float32,
    wd: WordData,
    extra: dict[int, list[tuple[int, float]]],
    pend: np.ndarray | None = None,
    start: int = 0,
) -> None:
    """File late leader ``lead`` with each later row (up to ``stop``) that may join it: its
    partition, the cosine and the residue pre-check (:func:`stratabatch.pairs.late_hits`);
    those rows are marked in ``pend`` (indexed from ``start``), where given."""
    k = stop - lead - 1
    rows_out = np.empty(k, np.int64)
    sims_out = np.empty(k, np.float32)
    n = late_hits(X, part, lead, lead + 1, stop, thr, margin, wd, rows_out, sims_out)
    if pend is not None:
        pend[rows_out[:n] - start] = True
    for r, c in zip(rows_out[:n].tolist(), sims_out[:n].tolist(), strict=True):
        got = extra.get(r)
        if got is None:
            extra[r] = [(lead, c)]
        else:
            got.append((lead, c))


def _take(
    i: int,
    start: int,
    lst: list[tuple[int, float]],
    leader: list[int],
    joinable: Callable[[int], bool] | None,
    veto: Callable[[int, int, float], bool] | None,
) -> tuple[int, float] | None:
    for r, s in lst:
        if r >= start:
            if leader[r - start] != r:
                continue  # it joined someone: not a leader
        elif joinable is not None and not joinable(r):
            continue
        if veto is not None and veto(i, r, s):
            continue
        return r, s
    return None


def _rescan(
    X: np.ndarray,
    part: np.ndarray,
    i: int,
    start: int,
    leader: list[int],
    thr: np.float32,
    margin: np.float32,
    wd: WordData,
) -> list[tuple[int, float]]:
    """Every leader before row i in its partition with cosine >= thr, in row order."""
    pi = part[i]
    old = np.flatnonzero(part[:start] == pi)
    new = [start + t for t in range(i - start) if leader[t] == start + t and part[start + t] == pi]
    rows = np.concatenate([old, np.array(new, np.int64)]).astype(np.int64)
    cos = _cosines(X, i, rows, thr, margin, wd).tolist()
    return [(int(r), c) for r, c in zip(rows.tolist(), cos, strict=True) if c >= -1.0]
