"""Candidate leaders for near-duplicate dedup: exhaustive, and indexed by sign sketches.

The dedup pass is "candidates, then a greedy pass". For each new row of a pass this module
lists the leaders the row may join, in greedy order: live leader rows of the
:class:`~stratabatch.dedup.LeaderIndex` (pending and running groups, in row order), then the
new rows of the same pass that found no candidate themselves (the pass's *provisional
leaders*), restricted to the row's partition and to canonical cosine >= threshold (the float
rule of :mod:`stratabatch.cosine`). The lists come back in CSR form (``offsets``, ``rows``,
``sims``) with at most ``max_cand`` entries per row, the lowest rows, and a ``more`` flag per
row when the list was cut there. Without vetoes the greedy pass takes each row's first
candidate, which is exactly greedy leader clustering; with vetoes (guards) it walks the list.

Two producers give the same lists:

* **exhaustive**: every new row against every live leader of its partition (a jitted loop). It
  is the reference, and the method below :data:`INDEX_MIN_ROWS` rows, where it is cheaper.
* **indexed**: each row gets a 128-bit sign sketch (signs of its products with 128 fixed
  Gaussian directions: random-hyperplane LSH, one BLAS product per pass). The bits are cut into
  bands; each leader is filed under each band's value (and its partition) in one hash table;
  a new row probes each band's value and the value with its least certain bit flipped
  (multi-probe), drops rows whose whole sketches differ in more bits than a pair at the
  threshold plausibly would, and confirms the rest with the exact cosine. Its cost per row does
  not grow with the number of leaders (as long as leaders are not all near each other); it can
  miss a pair the exhaustive path would merge, with a probability bounded by the band design
  (measured in tests/test_index.py and perf/bench_dedup_depth.py). It never merges a pair the
  exhaustive path would not: every candidate passes the same exact cosine.

Kernels are pure functions of numpy arrays, ``cache=True``; the table lives in arrays owned by
:class:`SketchTable`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .cosine import dot_canonical, dot_fast, dot_margin
from .kernels import readonly
from .pairs import may_be_typos, popcount
from .wordkeys import EMPTY_KEY, SINGLE_KEY, WORD_KEYS

__all__ = [
    "INDEX_MIN_ROWS",
    "INDEX_MIN_THRESHOLD",
    "MAX_CANDIDATES",
    "SketchBasis",
    "SketchTable",
    "WORD_MAX_CANDIDATES",
    "WordTable",
    "word_rows",
    "exhaustive_candidates",
    "greedy_pass",
    "residue_precheck",
]

MAX_CANDIDATES = 8
"""Default bound on candidates listed per row (the greedy pass rarely needs a second)."""

# Measured with perf/bench_dedup_depth.py: below this many rows (live leaders plus new rows)
# the exhaustive loop costs less than sketching and probing.
INDEX_MIN_ROWS = 256

# Below this threshold a pair at the threshold differs in so many sketch bits that bands narrow
# enough for recall match unrelated rows by the thousand: the exhaustive path serves it.
INDEX_MIN_THRESHOLD = 0.9

# BLAS products win only with BLAS on one thread: two OpenBLAS threads on a busy 2-core
# machine made them 30x slower than the jitted loop (measured). The engine process pins BLAS
# before numpy loads; an embedded process gets the BLAS paths when it does too.
BLAS_ONE_THREAD = any(
    os.environ.get(v) == "1" for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
)

SKETCH_BITS = 128
# The sketch is a hint (the exact cosine decides), so its arithmetic may be reassociated.
_FOLD_FAST = {"reassoc", "contract", "nsz", "arcp"}
_WORDS = SKETCH_BITS // 64
_SKETCH_SEED = 0x5EED_1D3C


# --------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def _confirm(X, i, j, thr, lo, hi):
    """Canonical cosine of rows i and j if it is >= thr, else -2 (:mod:`stratabatch.cosine`)."""
    approx = dot_fast(X, i, X, j)
    if approx < lo:
        return np.float32(-2.0)
    c = dot_canonical(X, i, X, j)
    if approx < hi and c < thr:
        return np.float32(-2.0)
    return c


_UNPAIRED_MAX = 64  # unpaired words a side the pre-check pairs; with more it lets a pair pass


@njit(cache=True)
def _may_pass_residue(wr, wi, wc, oa, la, ob, lb, buf):
    """:func:`stratabatch.wordkeys.may_pass_residue` on two texts' key words: ranks ``wr``,
    shapes ``wi`` and counts ``wc`` at ``[oa, oa + la)`` and ``[ob, ob + lb)``, each sorted by
    rank (the callers have checked that the counts add up to the same total). ``buf``: scratch
    of 2 x :data:`_UNPAIRED_MAX`. With more distinct unpaired words a side it answers True (a
    pre-check may let through what the guards refuse, never the reverse)."""
    half = _UNPAIRED_MAX
    i = 0
    j = 0
    na = 0
    nb = 0
    while i < la or j < lb:
        if j >= lb or (i < la and wr[oa + i] < wr[ob + j]):
            r = wr[oa + i]
        else:
            r = wr[ob + j]
        ca = 0
        sa = 0
        while i < la and wr[oa + i] == r:  # (equal ranks of distinct words: a hash collision)
            ca += wc[oa + i]
            sa = wi[oa + i]
            i += 1
        cb = 0
        sb = 0
        while j < lb and wr[ob + j] == r:
            cb += wc[ob + j]
            sb = wi[ob + j]
            j += 1
        if ca > cb:  # unpaired copies of a word of a: each needs a typo partner in b
            if na == half:
                return True
            buf[na] = sa
            na += 1
        elif cb > ca:
            if nb == half:
                return True
            buf[half + nb] = sb
            nb += 1
    for x in range(na):
        ok = False
        for y in range(nb):
            if may_be_typos(buf[x], buf[half + y]):
                ok = True
                break
        if not ok:
            return False
    return True


def residue_precheck(
    a: tuple[np.ndarray, np.ndarray, np.ndarray, int],
    b: tuple[np.ndarray, np.ndarray, np.ndarray, int],
) -> bool:
    """The producers' residue pre-check (:func:`_may_pass_residue`) of two texts the index did
    not pre-check, from their :func:`stratabatch.wordkeys.residue_profile`: False only for a
    pair the residue guard refuses. One linear merge of the two rank-sorted lists in numba
    (~1 ns a word), in place of the guards' walk over every distinct word in Python (~0.4 us
    a word), for texts of thousands of words that share most of them."""
    ra, sa, ca, ta = a
    rb, sb, cb, tb = b
    if ta != tb:
        return False  # (as the producers: unequal key-word totals never pass)
    la = ra.shape[0]
    wr = np.concatenate((ra, rb))
    wi = np.concatenate((sa, sb))
    wc = np.concatenate((ca, cb))
    return bool(
        _may_pass_residue(wr, wi, wc, 0, la, la, rb.shape[0], np.empty(2 * _UNPAIRED_MAX, np.int64))
    )


@njit(cache=True)
def _precheck(wr, wi, wc, woff, wlen, wtot, refused, rsim, buf, i, j, c):
    """Whether rows i and j (cosine c, at the threshold) pass the residue pre-check; the
    first pair of row i it refuses is noted in ``refused[i]``/``rsim[i]`` (see
    :data:`WordData`)."""
    if wtot.shape[0] == 0 or wtot[i] < 0 or wtot[j] < 0:
        return True
    if wtot[i] == wtot[j] and _may_pass_residue(
        wr, wi, wc, woff[i], wlen[i], woff[j], wlen[j], buf
    ):
        return True
    if refused[i] < 0:
        refused[i] = j
        rsim[i] = c
    return False


@njit(cache=True)
def _admit(X, i, j, thr, lo, hi, wd, buf):
    """:func:`_confirm`, and -2 too where both rows have key words that the residue guard
    must refuse (the word data ``wd`` is empty where the guards do not apply)."""
    wr, wi, wc, woff, wlen, wtot, refused, rsim = wd
    if wtot.shape[0] != 0 and wtot[i] >= 0 and wtot[j] >= 0 and wtot[i] != wtot[j]:
        return np.float32(-2.0)  # (unequal counts: not worth noting, nor a cosine)
    c = _confirm(X, i, j, thr, lo, hi)
    if c < -1.0 or _precheck(wr, wi, wc, woff, wlen, wtot, refused, rsim, buf, i, j, c):
        return c
    return np.float32(-2.0)


@njit(cache=True)
def _keep_lowest(brow, bsim, cnt, k, r, s):
    """Insert (r, s) into brow/bsim[:cnt], ascending by row, keeping at most k; new count."""
    if cnt == k and r > brow[k - 1]:
        return cnt
    q = cnt if cnt < k else k - 1
    while q > 0 and brow[q - 1] > r:
        brow[q] = brow[q - 1]
        bsim[q] = bsim[q - 1]
        q -= 1
    brow[q] = r
    bsim[q] = s
    return cnt + 1 if cnt < k else k


WordData = tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray
]
"""The key words of the rows, for the residue pre-check (:func:`_may_pass_residue`):

* pools of ranks, word shapes and counts (int64, :func:`stratabatch.wordkeys.word_profile`);
* per row its offset into the pools, its number of distinct key words there, sorted by rank
  (-1: a row without key words), and the total of their counts (int64; negative: the row
  is never pre-checked: it has no key words, or more than
  :data:`stratabatch.wordkeys.PRECHECK_MAX_WORDS` distinct ones, see
  :func:`stratabatch.wordkeys.word_profile`);
* per row, written by the pass: the first row whose pair with it cleared the cosine and was
  refused by the pre-check (int64, -1: none; the caller resets it for the new rows), and
  their cosine (float32), so that the caller can have the guards say why (their veto log).

:class:`~stratabatch.dedup.LeaderIndex` keeps them where the residue guard decides merges."""

_NO_WORDS: WordData = (np.empty(0, np.int64),) * 7 + (np.empty(0, np.float32),)


def _word_args(words: WordData | None) -> WordData:
    return _NO_WORDS if words is None else words


# --------------------------------------------------------------------------------------------
# Exhaustive candidates
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def _exhaustive_pass(
    X, part, thr, margin, lidx, nl, start, n, k, off, out_rows, out_sims, more, wd
):
    """Candidates of rows [start, n) against lidx[:nl] (live leaders, ascending) and the
    provisional leaders found on the way (appended to lidx). Returns the leader count."""
    buf = np.empty(2 * _UNPAIRED_MAX, np.int64)
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
            s = _admit(X, i, j, thr, lo, hi, wd, buf)
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
    buf = np.empty(2 * _UNPAIRED_MAX, np.int64)
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
            if not _precheck(wr, wi, wc, woff, wlen, wtot, refused, rsim, buf, i, j, c):
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
            _word_args(words),
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
                _word_args(words),
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


@intrinsic
def _prefetch(typingctx, arr, idx):  # noqa: ARG001 - numba intrinsic signature
    """Hint the CPU to fetch element ``idx`` of the flat data of ``arr`` (no effect on values)."""
    if not isinstance(arr, types.Array):
        return None
    sig = types.void(arr, types.intp)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])  # read, keep in all levels, data
        return context.get_dummy_value()

    return sig, codegen


# --------------------------------------------------------------------------------------------
# Sign sketches and the banded hash table
# --------------------------------------------------------------------------------------------

_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_NIL32 = np.uint64(0xFFFFFFFF)  # end of a chain; also the low-half mask


@njit(cache=True)
def _mix(h):
    h = h ^ (h >> np.uint64(33))
    h = h * _M1
    h = h ^ (h >> np.uint64(33))
    h = h * _M2
    return h ^ (h >> np.uint64(33))


@njit(cache=True)
def _pack_signs(proj, words, start):
    """words[start + i] = the sign bits of proj[i] (bit b set when proj[i, b] >= 0)."""
    nb = proj.shape[1]
    for i in range(proj.shape[0]):
        for w in range(words.shape[1]):
            v = np.uint64(0)
            for b in range(64):
                c = w * 64 + b
                if c < nb and proj[i, c] >= 0:
                    v |= np.uint64(1) << np.uint64(b)
            words[start + i, w] = v


@njit(cache=True)
def _band_value(words, i, band_pos, band):
    v = np.uint64(0)
    for t in range(band_pos.shape[1]):
        pos = band_pos[band, t]
        bit = (words[i, pos >> 6] >> np.uint64(pos & 63)) & np.uint64(1)
        v |= bit << np.uint64(t)
    return v


@njit(cache=True)
def _band_key(value, band, pid):
    h = _mix(value ^ (np.uint64(band + 1) * _GOLD) ^ _mix(np.uint64(pid) + _GOLD))
    return h | np.uint64(1)  # 0 marks an empty slot


_INLINE = 3  # entries held in the slot itself
_COUNT = np.uint64(3)  # the bits of a slot's first word that count its inline entries
_LOW30 = np.uint64((1 << 30) - 1)  # a key's low bits kept in its slot (its probe start)


@njit(cache=True)
def _find_slot(slots, h):
    """Slot of key h (open addressing, linear probing), or -1 - the free slot it would take.

    A slot is one 64-byte row of 8 uint64: the key's high 32 bits (never 0: 0 marks a free
    slot) above its low 30 bits (where its probe starts, for :func:`_free_empty_slots`) and
    the count of inline entries (2 bits), the first overflow entry, then up to three inline
    entries (row, first sketch word). Two keys sharing their high bits share a slot: that
    costs a few extra sketch comparisons, never a wrong candidate (the cosine decides).
    """
    mask = slots.shape[0] - 1
    tag = (h >> np.uint64(32)) | np.uint64(1)
    s = np.int64(h & np.uint64(mask))
    while True:
        v = slots[s, 0]
        if v == 0:
            return -1 - s
        if (v >> np.uint64(32)) == tag:
            return s
        s = (s + 1) & mask


@njit(cache=True)
def _insert(slots, ents, state, h, row, w0):
    """File ``row`` (first sketch word ``w0``) under table key ``h`` (capacity is the caller's).

    The first three rows of a key live in its slot, so a probe usually reads one cache line
    (a miss in a table of many MB) and nothing else; more spill to 16-byte overflow entries
    (row | next << 32, first sketch word).
    """
    s = _find_slot(slots, h)
    if s < 0:
        s = -1 - s
        slots[s, 0] = (((h >> np.uint64(32)) | np.uint64(1)) << np.uint64(32)) | (
            (h & _LOW30) << np.uint64(2)
        )
        slots[s, 1] = _NIL32
        state[1] += 1
    c = np.int64(slots[s, 0] & _COUNT)
    if c < _INLINE:
        slots[s, 2 + 2 * c] = np.uint64(row)
        slots[s, 3 + 2 * c] = w0
        slots[s, 0] += np.uint64(1)
    else:
        e = state[0]
        ents[e, 0] = np.uint64(row) | (slots[s, 1] << np.uint64(32))
        ents[e, 1] = w0
        slots[s, 1] = np.uint64(e)
        state[0] = e + 1


@njit(cache=True)
def _remap_table(slots, ents, newpos):
    """Renumber the rows filed in a table after the leader matrix was compacted: row r
    becomes newpos[r], and rows with newpos -1 (dead) leave. One pass over the table in
    memory order, instead of filing every live row again (random probes of a table of tens
    of MB). Each key keeps its rows in their order; overflow entries freed on the way stay
    unused until the next rebuild."""
    for s in range(slots.shape[0]):
        head = slots[s, 0]
        if head == 0:
            continue
        c = np.int64(head & _COUNT)
        w = 0  # live rows written back so far, in order: the inline places, then the chain
        wentry = slots[s, 1]  # the chain entry the next overflow row goes to
        last = _NIL32
        e = slots[s, 1]
        k = 0
        while True:
            if k < c:
                row = np.int64(slots[s, 2 + 2 * k])
                w0 = slots[s, 3 + 2 * k]
                k += 1
            elif e != _NIL32:
                row = np.int64(ents[e, 0] & _NIL32)
                w0 = ents[e, 1]
                e = ents[e, 0] >> np.uint64(32)
            else:
                break
            nr = newpos[row]
            if nr < 0:
                continue
            if w < _INLINE:
                slots[s, 2 + 2 * w] = np.uint64(nr)
                slots[s, 3 + 2 * w] = w0
            else:  # (wentry trails the entry just read: nothing unread is overwritten)
                ents[wentry, 0] = np.uint64(nr) | (ents[wentry, 0] & ~_NIL32)
                ents[wentry, 1] = w0
                last = wentry
                wentry = ents[wentry, 0] >> np.uint64(32)
            w += 1
        slots[s, 0] = (head & ~_COUNT) | np.uint64(min(w, _INLINE))
        if w <= _INLINE:
            slots[s, 1] = _NIL32
        else:
            ents[last, 0] = (ents[last, 0] & _NIL32) | (_NIL32 << np.uint64(32))


@njit(cache=True)
def _free_empty_slots(slots, state):
    """Free the slots :func:`_remap_table` left without rows (their keys' leaders all gone),
    by backward-shift deletion (linear probing needs no tombstones: each key after a freed
    slot in its run moves back into it unless its probe starts after the slot). Without this
    the table fills with empty slots and must be rebuilt (~100 ms at 32,768 leaders). Returns
    how many were freed. (A key sharing another's slot through equal high bits, rare, may no
    longer reach it after a move: at worst a candidate missed, never a wrong one.)"""
    size = slots.shape[0]
    mask = size - 1
    freed = 0
    s = 0
    while s < size:
        v = slots[s, 0]
        if v == 0 or (v & _COUNT) != 0 or slots[s, 1] != _NIL32:
            s += 1
            continue
        hole = s
        j = hole
        while True:
            j = (j + 1) & mask
            v = slots[j, 0]
            if v == 0:
                break
            home = np.int64((v >> np.uint64(2)) & _LOW30) & mask
            if ((j - home) & mask) >= ((j - hole) & mask):  # its probe starts at or before
                for t in range(8):
                    slots[hole, t] = slots[j, t]
                hole = j
        for t in range(8):
            slots[hole, t] = 0
        freed += 1
        # (slot s now holds what moved in, if anything: look at it again)
    state[1] -= freed
    return freed


@njit(cache=True)
def _file_row(words, part, band_pos, row, slots, ents, state):
    """File ``row`` under each of its band values (capacity is the caller's job)."""
    pid = part[row]
    for band in range(band_pos.shape[0]):
        h = _band_key(_band_value(words, row, band_pos, band), band, pid)
        _insert(slots, ents, state, h, row, words[row, 0])


@njit(cache=True)
def _file_rows(words, part, band_pos, rows, slots, ents, state):
    for t in range(rows.shape[0]):
        _file_row(words, part, band_pos, rows[t], slots, ents, state)


@njit(cache=True)
def _consider(X, part, stamp, tag, i, pi, r, w, w0, hmax, thr, lo, hi, brow, bsim, cnt, k, wd, buf):
    """Row r (sketch word w) as a candidate of row i: returns (count, whether one was cut)."""
    if popcount(w ^ w0) > hmax:
        return cnt, False
    if stamp[r] == tag:
        return cnt, False
    stamp[r] = tag
    if part[r] != pi or r >= i:
        return cnt, False  # dead (-1), or a stale entry
    c = _admit(X, i, r, thr, lo, hi, wd, buf)
    if c < -1.0:
        return cnt, False
    return _keep_lowest(brow, bsim, cnt, k, r, c), cnt == k


@njit(cache=True)
def _probe_keys(words, proj, part, band_pos, start, n, probes, keys):
    """keys[i - start, band * probes + p]: the table key of row i's p-th probe in ``band``.

    Probe 0 is the band's value; probe p > 0 flips the p-th least certain bit of the band (the
    bit whose projection is nearest 0, most likely to differ in a near twin).
    """
    nbits = band_pos.shape[1]
    weak = np.empty(nbits, np.float32)
    for i in range(start, n):
        pi = part[i]
        for band in range(band_pos.shape[0]):
            value = _band_value(words, i, band_pos, band)
            for t in range(nbits):
                weak[t] = abs(proj[i - start, band_pos[band, t]])
            for p in range(probes):
                pv = value
                if p > 0:
                    best = 0
                    for t in range(1, nbits):
                        if weak[t] < weak[best]:
                            best = t
                    weak[best] = np.inf
                    pv = value ^ (np.uint64(1) << np.uint64(best))
                keys[i - start, band * probes + p] = _band_key(pv, band, pi)


# How many rows ahead the pass prefetches the table slots, then the first chain entries, of
# the rows it will probe. A probe is a cache miss in a table of many MB; fetched ahead, the
# misses of several rows overlap instead of stalling the pass one after another (measured:
# ~3x fewer ns per row at 32k leaders).
_AHEAD_SLOTS = 8
_AHEAD_ENTS = 4


@njit(cache=True)
def _index_pass(
    X,
    part,
    words,
    keys,
    fstride,
    thr,
    margin,
    hmax,
    start,
    n,
    k,
    slots,
    ents,
    state,
    stamp,
    off,
    out_rows,
    out_sims,
    more,
    wd,
):
    """Candidates of rows [start, n) from the table; rows with none are filed as leaders.

    ``keys[j]`` are the table keys row ``start + j`` probes (0: none); it is filed under
    every ``fstride``-th of them (the sketch table probes each band's value first, then its
    flipped-bit variants; a word table probes exactly the keys it files under)."""
    lo = thr - margin
    hi = thr + margin
    m = n - start
    nk = keys.shape[1]
    mask = np.uint64(slots.shape[0] - 1)
    brow = np.empty(k, np.int64)
    bsim = np.empty(k, np.float32)
    buf = np.empty(2 * _UNPAIRED_MAX, np.int64)
    for j in range(min(m, _AHEAD_SLOTS)):
        for t in range(nk):
            _prefetch(slots, np.int64(keys[j, t] & mask) * 8)
    e = 0
    off[0] = 0
    for i in range(start, n):
        j = i - start
        if j + _AHEAD_SLOTS < m:
            for t in range(nk):  # (a key of 0 fetches a slot for nothing: harmless)
                _prefetch(slots, np.int64(keys[j + _AHEAD_SLOTS, t] & mask) * 8)
        if j + _AHEAD_ENTS < m:
            for t in range(nk):
                if keys[j + _AHEAD_ENTS, t] == 0:
                    continue
                s = _find_slot(slots, keys[j + _AHEAD_ENTS, t])
                if s >= 0 and slots[s, 1] != _NIL32:
                    _prefetch(ents, np.int64(slots[s, 1]) * 2)
        pi = part[i]
        w0 = words[i, 0]
        state[2] += 1
        tag = state[2]
        cnt = 0
        cut = False
        for t in range(nk):
            if keys[j, t] == 0:
                continue
            s = _find_slot(slots, keys[j, t])
            if s < 0:
                continue
            for u in range(np.int64(slots[s, 0] & _COUNT)):
                cnt, c = _consider(
                    X,
                    part,
                    stamp,
                    tag,
                    i,
                    pi,
                    np.int64(slots[s, 2 + 2 * u]),
                    slots[s, 3 + 2 * u],
                    w0,
                    hmax,
                    thr,
                    lo,
                    hi,
                    brow,
                    bsim,
                    cnt,
                    k,
                    wd,
                    buf,
                )
                cut |= c
            q = slots[s, 1]
            while q != _NIL32:
                head = ents[q, 0]
                nxt = head >> np.uint64(32)
                if nxt != _NIL32:
                    _prefetch(ents, np.int64(nxt) * 2)
                cnt, c = _consider(
                    X,
                    part,
                    stamp,
                    tag,
                    i,
                    pi,
                    np.int64(head & _NIL32),
                    ents[q, 1],
                    w0,
                    hmax,
                    thr,
                    lo,
                    hi,
                    brow,
                    bsim,
                    cnt,
                    k,
                    wd,
                    buf,
                )
                cut |= c
                q = nxt
        if cnt == 0:
            for t in range(0, nk, fstride):
                if keys[j, t] != 0:
                    _insert(slots, ents, state, keys[j, t], i, w0)
        for t in range(cnt):
            out_rows[e + t] = brow[t]
            out_sims[e + t] = bsim[t]
        e += cnt
        off[j + 1] = e
        more[j] = cut


def band_design(threshold: float) -> tuple[int, int, int]:
    """(bits per band, bands, Hamming bound) of the index for ``threshold``.

    A pair at cosine c disagrees on each sketch bit with probability p = acos(c) / pi, bits
    independent. Bands of ``b`` disjoint bits: a pair meets in a band with probability
    (1 - p)^b, more with the flipped-bit probes. Unrelated rows (p near 1/2) meet in a band
    about once per 2**b leaders, so ``b`` sets the cost at depth and the bands the recall.
    Simulated on pairs exactly at the threshold 0.96 (p = 0.090): 16-bit bands, 8 of them,
    3 probes miss 1.1% of such pairs, 0.3% at cosine 0.97, 0.04% at 0.98 (14-bit bands, 9,
    2 probes: 0.8% / 0.2% / 0.04%, but 4x the unrelated rows per probe, which doubled the
    cost per row at 32k leaders, measured). The Hamming bound on the first 64 bits keeps a
    pair at the threshold with probability 1 - 3e-7 (five standard deviations).
    """
    p = math.acos(min(1.0, max(-1.0, threshold))) / math.pi
    bits = 16 if threshold >= 0.95 else 14 if threshold >= 0.93 else 12
    bands = SKETCH_BITS // bits
    sd = math.sqrt(64 * p * (1.0 - p))  # the bound applies to the first sketch word
    hmax = int(math.ceil(64 * p + 5.0 * sd)) + 1
    return bits, bands, hmax


class _Table:
    """Storage of a leader table: 64-byte slots (see :func:`_find_slot`) and overflow entries.

    Subclasses set ``keys_per_row`` (the most keys a row is filed under) before ``_alloc``,
    and say in :meth:`_file` how a row is filed from its row of the owner's key array (sign
    sketches, or word keys). Rows are filed when they lead; dead rows stay filed until
    :meth:`rebuild` (the kernels skip rows whose partition is -1), which the owner calls after
    renumbering rows.
    """

    keys_per_row = 1

    def _alloc(self, slots: int, entries: int) -> None:
        self.slots = np.zeros((slots, 8), np.uint64)  # see _find_slot
        self.ents = np.empty((entries, 2), np.uint64)  # row | next << 32, sketch word 0
        self.state = np.zeros(3, np.int64)  # entries used, slots used, query tag

    def _fits(self, new_rows: int) -> bool:
        add = new_rows * self.keys_per_row
        return (
            self.state[0] + add <= self.ents.shape[0]
            and 2 * (self.state[1] + add) <= self.slots.shape[0]
        )

    def _realloc(self, rows: int) -> None:
        """Empty storage for ``rows`` rows (query tags keep growing: stamps of old queries
        never match). The arrays in place are cleared and kept when they are big enough and
        not more than 4x too big: fresh ones of many MB cost a page fault per 4 KB on first
        touch, and a table is rebuilt after every compaction of the leader matrix."""
        need = rows * self.keys_per_row
        slots = 1024
        while slots < 2 * need:
            slots *= 2
        entries = max(4096, 2 * need)
        have = self.slots.shape[0]
        if slots <= have <= 4 * slots and entries <= self.ents.shape[0]:
            self.slots.fill(0)
            self.state[0] = 0
            self.state[1] = 0
            return
        tag = int(self.state[2])
        self._alloc(slots, entries)
        self.state[2] = tag

    def _file(self, keys: np.ndarray, part: np.ndarray, rows: np.ndarray) -> None:
        """File ``rows`` (int64, contiguous) from ``keys`` (capacity is the caller's job)."""
        raise NotImplementedError

    def rebuild(self, keys: np.ndarray, part: np.ndarray, rows: np.ndarray, room: int = 0) -> None:
        """Forget everything and file ``rows`` (live leaders), with room for ``room`` more."""
        self._realloc(len(rows) + room)
        if len(rows):
            self._file(keys, part, np.ascontiguousarray(rows, np.int64))

    def remap(self, newpos: np.ndarray) -> None:
        """Rows were renumbered (row r is now ``newpos[r]``; -1: gone): see
        :func:`_remap_table`. Their keys must not have changed."""
        _remap_table(self.slots, self.ents, newpos)
        _free_empty_slots(self.slots, self.state)

    def file(self, keys: np.ndarray, part: np.ndarray, rows: list[int] | np.ndarray) -> None:
        """File ``rows`` (new leaders). A full table is rebuilt instead, from every live
        leader (``part >= 0``, ``rows`` among them)."""
        rows = np.asarray(rows, np.int64)
        if not self._fits(len(rows)):
            self.rebuild(keys, part, np.flatnonzero(part >= 0), room=len(rows))
            return
        self._file(keys, part, rows)

    def _make_room(self, keys: np.ndarray, part: np.ndarray, start: int) -> None:
        """Before a pass over rows ``start ..`` of ``part``: rebuild a table that could not
        take them all as leaders, from the live leaders before ``start``."""
        m = part.shape[0] - start
        if not self._fits(m):
            self.rebuild(keys, part[:start], np.flatnonzero(part[:start] >= 0), room=m)

    def _pass(
        self,
        X: np.ndarray,
        part: np.ndarray,
        words: np.ndarray,
        keys: np.ndarray,
        fstride: int,
        threshold: float,
        hmax: int,
        start: int,
        stamp: np.ndarray,
        max_cand: int,
        wd: WordData | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Run :func:`_index_pass` for rows ``start ..`` of X with probe ``keys``; the CSR
        candidate lists of :func:`exhaustive_candidates`."""
        n = X.shape[0]
        m = n - start
        off = np.empty(m + 1, np.int64)
        rows = np.empty(m * max_cand, np.int64)
        sims = np.empty(m * max_cand, np.float32)
        more = np.zeros(m, np.bool_)
        _index_pass(
            X,
            part,
            words,
            keys,
            fstride,
            np.float32(threshold),
            dot_margin(X.shape[1]),
            hmax,
            start,
            n,
            max_cand,
            self.slots,
            self.ents,
            self.state,
            stamp,
            off,
            rows,
            sims,
            more,
            _word_args(wd),
        )
        e = off[m]
        return off, rows[:e], sims[:e], more


class SketchTable(_Table):
    """The banded hash table of the index over the rows of a :class:`LeaderIndex` matrix
    (filed from the rows' sign sketches).

    Args:
        threshold: The cosine the table is designed for (see :func:`band_design`).
        probes: Probes per band: 1 (the band's value) or more (each extra one flips the next
            least certain bit of the band, alone).
    """

    def __init__(self, threshold: float, probes: int = 3) -> None:
        self.threshold = float(threshold)
        self.bits, self.bands, self.hmax = band_design(threshold)
        rng = np.random.default_rng(_SKETCH_SEED)
        pos = rng.permutation(SKETCH_BITS)[: self.bits * self.bands]
        self.band_pos = np.ascontiguousarray(pos.reshape(self.bands, self.bits).astype(np.int64))
        self.probes = probes
        self.keys_per_row = self.bands
        self._alloc(1024, 4096)

    def _file(self, keys: np.ndarray, part: np.ndarray, rows: np.ndarray) -> None:
        _file_rows(keys, part, self.band_pos, rows, self.slots, self.ents, self.state)

    def candidates(
        self,
        X: np.ndarray,
        part: np.ndarray,
        words: np.ndarray,
        proj: np.ndarray,
        start: int,
        stamp: np.ndarray,
        max_cand: int = MAX_CANDIDATES,
        wd: WordData | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Indexed candidates of rows ``start ..`` of X (see :func:`exhaustive_candidates`,
        also for ``wd``); new rows without candidates are filed as leaders on the way."""
        n = X.shape[0]
        m = n - start
        self._make_room(words, part, start)
        keys = np.empty((m, self.bands * self.probes), np.uint64)
        _probe_keys(words, proj, part, self.band_pos, start, n, self.probes, keys)
        return self._pass(
            X, part, words, keys, self.probes, self.threshold, self.hmax, start, stamp, max_cand, wd
        )


@njit(cache=True)
def move_rows(a, live):
    """a[t] = a[live[t]] for each t, in place (``live`` ascending: a row moves only down)."""
    for t in range(live.shape[0]):
        r = live[t]
        if r != t:
            a[t] = a[r]


@njit(cache=True)
def _word_rows(wr, wi, wc, woff, wlen, wtot, out, start, m, empty, single):
    """For rows [start, start + m): sort each row's key words by rank in the pools (in place),
    total its counts, and write its word keys to ``out[row]``, zero-padded (the keys of
    :func:`stratabatch.wordkeys.word_keys`, from the lowest distinct ranks)."""
    r = np.empty(5, np.int64)
    for row in range(start, start + m):
        a = woff[row]
        n = wlen[row]
        if n <= 32:  # a text's few words: sorted in place (no allocation)
            for u in range(a + 1, a + n):
                kr, ki, kc = wr[u], wi[u], wc[u]
                v = u
                while v > a and wr[v - 1] > kr:
                    wr[v] = wr[v - 1]
                    wi[v] = wi[v - 1]
                    wc[v] = wc[v - 1]
                    v -= 1
                wr[v], wi[v], wc[v] = kr, ki, kc
        else:
            order = np.argsort(wr[a : a + n], kind="mergesort")
            wr[a : a + n] = wr[a : a + n][order]
            wi[a : a + n] = wi[a : a + n][order]
            wc[a : a + n] = wc[a : a + n][order]
        wtot[row] = wc[a : a + n].sum()
        for t in range(out.shape[1]):
            out[row, t] = 0
        c = 0  # distinct ranks seen (the lowest five kept in r)
        for u in range(a, a + n):
            if u == a or wr[u] != wr[u - 1]:
                if c < 5:
                    r[c] = wr[u]
                c += 1
        if c == 0:
            out[row, 0] = np.uint64(empty)
            continue
        keep = min(c, 5 if c > 8 else 4)
        t = 0
        for x in range(keep):
            for y in range(x + 1, keep):
                out[row, t] = np.uint64(((r[x] << 1) ^ r[y]) | 1)
                t += 1
        if c <= 3:
            for x in range(keep):
                out[row, t] = np.uint64((r[x] ^ single) | 1)
                t += 1


def _sources(
    profiles: Any,
) -> tuple[np.ndarray, list[tuple[Any, np.ndarray, np.ndarray]], list[tuple[int, list[int]]]]:
    """Where the key words of each of ``profiles``' rows come from (see :func:`word_rows`):
    the rows' entry counts; per BatchProfiles, its text indexes and the rows (counted from
    0) that take them; and the rows given as word_profile lists."""
    if not isinstance(profiles, list):  # a BatchProfiles: all of its texts, in order
        idx = np.arange(len(profiles.lens), dtype=np.int64)
        return profiles.lens, [(profiles, idx, idx)], []
    m = len(profiles)
    if m and type(profiles[0]) is tuple:  # the common case: all from one embedding pass
        b = profiles[0][0]
        js = [p[1] if type(p) is tuple and p[0] is b else -1 for p in profiles]
        if -1 not in js:
            idx = np.array(js, np.int64)
            return b.lens[idx], [(b, idx, np.arange(m, dtype=np.int64))], []
    groups: dict[int, tuple[Any, list[int], list[int]]] = {}
    lens: list[int] = []
    plain: list[tuple[int, list[int]]] = []
    for i, p in enumerate(profiles):
        if type(p) is tuple:
            b, j = p
            g = groups.get(id(b))
            if g is None:
                g = groups[id(b)] = (b, [], [])
            g[1].append(j)
            g[2].append(i)
            lens.append(int(b.lens[j]))
        else:
            plain.append((i, p))
            lens.append(len(p) // 3)
    return (
        np.array(lens, np.int64),
        [(b, np.array(js, np.int64), np.array(rs, np.int64)) for b, js, rs in groups.values()],
        plain,
    )


def profile_entries(profiles: Any) -> int:
    """How many pool entries the key words of ``profiles`` take (see :func:`word_rows`)."""
    return int(_sources(profiles)[0].sum())


@njit(cache=True)
def _copy_profiles(br, bs, bc, boff, blen, js, dest, wr, wi, wc, woff):
    """Rows dest[t] get the key words of text js[t] of a BatchProfiles, at woff[dest[t]]."""
    for t in range(js.shape[0]):
        j = js[t]
        a = boff[j]
        o = woff[dest[t]]
        for u in range(blen[j]):
            wr[o + u] = br[a + u]
            wi[o + u] = bs[a + u]
            wc[o + u] = bc[a + u]


def word_rows(
    profiles: Any,
    pools: tuple[np.ndarray, ...],
    used: int,
    rows: tuple[np.ndarray, ...],
    out: np.ndarray,
    start: int,
) -> int:
    """Store the key words of new rows ``start ..`` in ``pools`` (ranks, shapes, counts)
    from ``used`` on, in row order (the caller makes room: :func:`profile_entries`), sorted
    by rank; set their ``rows`` entries (offset, distinct words, total count); write their
    word keys to ``out``. Returns the pools' new fill.

    A row's key words are a :func:`~stratabatch.wordkeys.word_profile` list, or ``(batch,
    j)``: text ``j`` of a :class:`~stratabatch.wordkeys.BatchProfiles` (copied by one kernel
    call per batch). ``profiles`` may also be one BatchProfiles: its texts, in order, are the
    rows."""
    wr, wi, wc = pools
    woff, wlen, wtot = rows
    lens, groups, plain = _sources(profiles)
    m = len(lens)
    if m:
        ends = np.cumsum(lens)
        woff[start : start + m] = used + ends - lens
        wlen[start : start + m] = lens
        for b, js, rel in groups:
            _copy_profiles(
                b.ranks, b.shapes, b.counts, b.off, b.lens, js, start + rel, wr, wi, wc, woff
            )
        for i, p in plain:
            o = int(woff[start + i])
            k = len(p) // 3
            wr[o : o + k] = p[0::3]
            wi[o : o + k] = p[1::3]
            wc[o : o + k] = p[2::3]
        used += int(ends[-1])
    _word_rows(wr, wi, wc, woff, wlen, wtot, out, start, m, EMPTY_KEY, SINGLE_KEY)
    return used


@njit(cache=True)
def compact_pools(wr, wi, wc, woff, wlen, n):
    """Move the key words of rows [0, n) (already renumbered, in their old order) to the
    front of the pools, in place; returns the pools' new fill."""
    used = 0
    for row in range(n):
        k = wlen[row]
        if k <= 0:
            woff[row] = used
            continue
        a = woff[row]
        if a != used:
            for t in range(k):
                wr[used + t] = wr[a + t]
                wi[used + t] = wi[a + t]
                wc[used + t] = wc[a + t]
        woff[row] = used
        used += k
    return used


@njit(cache=True)
def _word_table_keys(wkeys, part, start, n, keys):
    """keys[i - start, t]: the table key of row i's word key t (0 stays 0: no key)."""
    for i in range(start, n):
        pid = part[i]
        for t in range(wkeys.shape[1]):
            v = wkeys[i, t]
            keys[i - start, t] = _band_key(v, 0, pid) if v != 0 else np.uint64(0)


@njit(cache=True)
def _file_keyed(wkeys, part, rows, slots, ents, state):
    for t in range(rows.shape[0]):
        row = rows[t]
        pid = part[row]
        for u in range(wkeys.shape[1]):
            v = wkeys[row, u]
            if v != 0:
                _insert(slots, ents, state, _band_key(v, 0, pid), row, np.uint64(0))


WORD_MAX_CANDIDATES = 64
"""Candidates listed per row by the word table. Its keys already narrow the leaders to texts
of nearly the same words, so a list is short unless many leaders are near copies of each
other (a shared preamble); a longer list spares the greedy pass a rescan of every leader
when the guards refuse the first few."""


class WordTable(_Table):
    """The word index: leaders filed under their word keys (:mod:`stratabatch.wordkeys`).

    It serves guarded dedup with an embedder that compares wording, at any threshold: two
    texts the guards would let merge share a key (see :mod:`stratabatch.wordkeys` for what is
    guaranteed), and every candidate passes the exact cosine as on the exhaustive path.
    """

    keys_per_row = WORD_KEYS

    def __init__(self) -> None:
        self._alloc(1024, 4096)

    def _file(self, keys: np.ndarray, part: np.ndarray, rows: np.ndarray) -> None:
        _file_keyed(keys, part, rows, self.slots, self.ents, self.state)

    def candidates(
        self,
        X: np.ndarray,
        part: np.ndarray,
        words: np.ndarray,
        wkeys: np.ndarray,
        start: int,
        stamp: np.ndarray,
        threshold: float,
        max_cand: int = WORD_MAX_CANDIDATES,
        wd: WordData | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Candidates of rows ``start ..`` of X (see :func:`exhaustive_candidates`, also for
        ``wd``) among the leaders sharing a word key; new rows without candidates are filed
        on the way. ``words`` is any uint64 ``[n, 2]`` array (the sketch filter is off:
        Hamming bound 64)."""
        n = X.shape[0]
        m = n - start
        self._make_room(wkeys, part, start)
        keys = np.empty((m, wkeys.shape[1]), np.uint64)
        _word_table_keys(wkeys, part, start, n, keys)
        return self._pass(X, part, words, keys, 1, threshold, 64, start, stamp, max_cand, wd)


# Rows are folded to at most this many coordinates before the product with the directions
# (signed sums of coordinates: a fixed sparse random projection), which makes the product
# 4x cheaper on 384-d rows: it was half the cost of an indexed row (~1 us, measured). The
# fold blurs angles a little (a pair keeps its angle within ~10%); the recall figures in
# tests/test_index.py and perf/bench_dedup_depth.py are measured with it.
SKETCH_FOLD = 96


class SketchBasis:
    """The fixed random basis of the sign sketch for one vector length.

    Attributes:
        signs: float32 ``[dim]``: coordinate j enters folded coordinate ``j % folded`` with
            this sign.
        folded: Length of a folded row.
        directions: float32 ``[folded, SKETCH_BITS]`` Gaussian directions.
    """

    def __init__(self, dim: int) -> None:
        rng = np.random.default_rng(_SKETCH_SEED + dim)
        self.signs = np.where(rng.random(dim) < 0.5, -1.0, 1.0).astype(np.float32)
        self.folded = min(dim, SKETCH_FOLD)
        self.directions = np.ascontiguousarray(
            rng.standard_normal((self.folded, SKETCH_BITS)).astype(np.float32)
        )
        self.dim = dim


@njit(cache=True, fastmath=_FOLD_FAST)
def _fold(X, signs, folded, out):
    d = X.shape[1]
    acc = np.empty(folded, np.float32)
    for i in range(X.shape[0]):
        row = X[i]
        acc[:] = 0.0
        for b0 in range(0, d - folded + 1, folded):
            seg = row[b0 : b0 + folded]
            sg = signs[b0 : b0 + folded]
            for j in range(folded):
                acc[j] += sg[j] * seg[j]
        tail = d - d % folded
        for j in range(tail, d):
            acc[j - tail] += signs[j] * row[j]
        out[i] = acc


def sketch(X: np.ndarray, basis: SketchBasis, words: np.ndarray, start: int) -> np.ndarray:
    """Write the sign sketches of X's rows to ``words[start:]``; return the projections."""
    folded = np.empty((X.shape[0], basis.folded), np.float32)
    _fold(X, basis.signs, basis.folded, folded)
    proj = np.ascontiguousarray(folded @ basis.directions, dtype=np.float32)
    _pack_signs(proj, words, start)
    return proj


# --------------------------------------------------------------------------------------------
# The greedy pass over candidate lists
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def _cosines(X, i, rows, thr, margin, wd):
    """Canonical cosines of row i with each of ``rows`` (-2 where below thr, or where the
    residue pre-check refuses the pair)."""
    buf = np.empty(2 * _UNPAIRED_MAX, np.int64)
    out = np.empty(rows.shape[0], np.float32)
    for t in range(rows.shape[0]):
        out[t] = _admit(X, i, rows[t], thr, thr - margin, thr + margin, wd, buf)
    return out


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

    Returns:
        ``(leader, sim, late)``: per new row its leader row (itself for a leader, -1 when left
        undecided at ``deadline``) and cosine to it (1.0 for a leader), and the late leaders
        (rows the producers did not file).
    """
    off, rows, sims, more = cands
    m = X.shape[0] - start
    thr = np.float32(threshold)
    margin = dot_margin(X.shape[1])
    wd = _word_args(words)
    leader = [0] * m
    sim = [1.0] * m
    late: list[int] = []
    off_l = off.tolist()
    rows_l = rows.tolist()
    sims_l = sims.tolist()
    clock = time.perf_counter
    for j in range(m):
        i = start + j
        if deadline is not None and j and clock() > deadline:
            for t in range(j, m):
                leader[t] = -1  # left for a later pass
            break
        a, b = off_l[j], off_l[j + 1]
        if a == b and not late:
            leader[j] = i  # a provisional leader: nothing to decide
            continue
        lst = list(zip(rows_l[a:b], sims_l[a:b], strict=True))
        if late:
            lst = _with_late(X, part, i, late, lst, thr, margin, wd)
        took = _take(i, start, lst, leader, joinable, veto)
        if took is None and bool(more[j]):
            lst = _rescan(X, part, i, start, leader, thr, margin, wd)
            took = _take(i, start, lst, leader, joinable, veto)
        if took is None:
            leader[j] = i
            if lst:
                late.append(i)
        else:
            leader[j], sim[j] = took
    return leader, sim, late


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


def _with_late(
    X: np.ndarray,
    part: np.ndarray,
    i: int,
    late: list[int],
    lst: list[tuple[int, float]],
    thr: np.float32,
    margin: np.float32,
    wd: WordData,
) -> list[tuple[int, float]]:
    pi = part[i]
    same = np.array([r for r in late if part[r] == pi], np.int64)
    if not same.size:
        return lst
    cos = _cosines(X, i, same, thr, margin, wd).tolist()
    extra = [(int(r), c) for r, c in zip(same.tolist(), cos, strict=True) if c >= -1.0]
    return sorted(lst + extra) if extra else lst


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


def warm_up(dim: int = 16) -> None:
    """Load (or compile) every kernel of this module once, on tiny inputs (for a thread that
    prepares a process before its first dedup pass)."""
    from .dedup import LeaderIndex

    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, dim)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    part = np.zeros(6, np.int64)
    for method in ("loop", "blas"):
        exhaustive_candidates(X, part, 0.9, 2, method=method)
    idx = LeaderIndex(method="index")
    idx.dim = dim
    start, _ = idx.append(X, [0] * 6)
    greedy_pass(
        idx.mat[:6],
        idx.part[:6],
        0.9,
        start,
        idx.candidates(start, 0.95),
        veto=lambda i, j, s: True,
    )
    idx.file_leaders([0])
