"""Whether two rows may merge, in numba: the word-shape typo rule and the residue pre-check.

A word's shape (:func:`stratabatch.wordkeys.word_shape`) packs its letters, length and
whether it is alphabetic in one int; :func:`may_be_typos` is the kernel twin of
:func:`stratabatch.wordkeys.may_be_typos`, a necessary condition of the typo rule
(:func:`stratabatch.lexicon.is_typo_of`). A stored shape also carries its text's squash tag
in its high bits (:func:`stratabatch.wordkeys.squash_tag`): rows of equal tags may be the
same letters with spaces moved, which the pre-check lets pass (:func:`same_squash`). Numba
kernels, ``cache=True``.

Numba's cache keys a kernel on its own file only: a kernel of another module that calls one
of these (candidates, hashtable, greedy) keeps the old code from its cache after an edit
here until its own cache entries go (delete them, or the ``__pycache__`` directory).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .cosine import dot_canonical, dot_fast

__all__ = [
    "NOTED_GAP_MAX",
    "UNPAIRED_MAX",
    "WordData",
    "CRC_TABLE",
    "admit",
    "keep_lowest",
    "late_hits",
    "may_be_typos",
    "may_pass",
    "needs_cosine",
    "popcount",
    "precheck",
    "residue_gap",
    "residue_precheck",
    "same_squash",
    "squash_tags",
    "tag_shapes",
    "word_admit",
    "word_admit_in",
    "word_args",
]


@njit(cache=True, inline="always")
def popcount(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@njit(cache=True, inline="always")
def may_be_typos(a, b):
    """:func:`stratabatch.wordkeys.may_be_typos` on two word shapes."""
    la = (a >> 32) & 0xFFFF
    lb = (b >> 32) & 0xFFFF
    if ((a >> 48) & (b >> 48) & 1) == 0 or min(la, lb) < 4:
        return False
    limit = 2 if min(la, lb) >= 8 else 1
    return abs(la - lb) <= limit and popcount(np.uint64((a ^ b) & 0xFFFFFFFF)) <= 2 * limit


@njit(cache=True, inline="always")
def _confirm(X, i, j, thr, lo, hi):
    """Canonical cosine of rows i and j if it is >= thr, else -2 (:mod:`stratabatch.cosine`)."""
    approx = dot_fast(X, i, X, j)
    if approx < lo:
        return np.float32(-2.0)
    c = dot_canonical(X, i, X, j)
    if approx < hi and c < thr:
        return np.float32(-2.0)
    return c


UNPAIRED_MAX = 64  # unpaired words a side the pre-check pairs; with more it lets a pair pass
_SQUASH_SHIFT = 49  # (stratabatch.wordkeys.SQUASH_SHIFT)


@njit(cache=True, inline="always")
def same_squash(wi, oa, la, ob, lb):
    """Whether two rows may be the same letters with spaces moved: their squash tags (the
    high bits of their stored shapes, :func:`stratabatch.wordkeys.squash_tag`) are equal, or
    a row has no key words to keep one. The pre-check lets such a pair pass whatever its
    words (the guards compare its texts with the spaces moved)."""
    if la <= 0 or lb <= 0:
        return True
    t = wi[oa] >> _SQUASH_SHIFT
    return t != 0 and t == (wi[ob] >> _SQUASH_SHIFT)  # (0: shapes stored without tags)


def _crc_table() -> np.ndarray:
    t = np.zeros(256, np.uint32)
    for n in range(256):
        c = n
        for _ in range(8):
            c = (0xEDB88320 ^ (c >> 1)) if c & 1 else (c >> 1)
        t[n] = c
    return t


CRC_TABLE = _crc_table()
"""The CRC-32 table of zlib's polynomial (:func:`squash_tags` computes ``zlib.crc32``)."""


@njit(cache=True)
def squash_tags(data, ends, table, mod, out):
    """``zlib.crc32`` of each text's bytes without its spaces, ``% mod + 1``
    (:func:`stratabatch.wordkeys.squash_tag`): text j is ``data[ends[j - 1] : ends[j]]``."""
    a = 0
    for j in range(ends.shape[0]):
        b = ends[j]
        c = np.uint32(0xFFFFFFFF)
        for u in range(a, b):
            x = data[u]
            if x != 32:
                c = table[(c ^ np.uint32(x)) & np.uint32(0xFF)] ^ (c >> np.uint32(8))
        out[j] = np.int64(c ^ np.uint32(0xFFFFFFFF)) % mod + 1
        a = b


@njit(cache=True)
def tag_shapes(shapes, off, lens, tags, shift):
    """shapes[off[j] : off[j] + lens[j]] |= tags[j] << shift for each text j (lens[j] < 0:
    none)."""
    for j in range(lens.shape[0]):
        t = tags[j] << shift
        for u in range(off[j], off[j] + lens[j]):
            shapes[u] |= t


@njit(cache=True)
def _may_pass_residue(wr, wi, wc, oa, la, ob, lb, buf):
    """:func:`stratabatch.wordkeys.may_pass_residue` on two texts' key words: ranks ``wr``,
    shapes ``wi`` and counts ``wc`` at ``[oa, oa + la)`` and ``[ob, ob + lb)``, each sorted by
    rank (the callers have checked that the counts add up to the same total). ``buf``: scratch
    of 2 x :data:`UNPAIRED_MAX`. With more distinct unpaired words a side it answers True (a
    pre-check may let through what the guards refuse, never the reverse)."""
    return residue_gap(wr, wi, wc, oa, la, ob, lb, buf) < 0


@njit(cache=True)
def residue_gap(wr, wi, wc, oa, la, ob, lb, buf):
    """As :func:`_may_pass_residue`: -1 where the pair may pass, else how many distinct words
    the two sides do not share (both sides together): how far apart in wording a refused pair
    is (a pair one word apart is worth a line in the veto log, see :func:`word_admit`)."""
    half = UNPAIRED_MAX
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
                return -1
            buf[na] = sa
            na += 1
        elif cb > ca:
            if nb == half:
                return -1
            buf[half + nb] = sb
            nb += 1
    for x in range(na):
        ok = False
        for y in range(nb):
            if may_be_typos(buf[x], buf[half + y]):
                ok = True
                break
        if not ok:
            return na + nb
    return -1


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
    if not ra.shape[0] or not rb.shape[0]:
        return True  # (as the producers, see same_squash)
    tag = int(sa[0]) >> _SQUASH_SHIFT
    if tag and tag == int(sb[0]) >> _SQUASH_SHIFT:
        return True  # (as the producers: spaces may have moved, see same_squash)
    if ta != tb:
        return False  # (as the producers: unequal key-word totals never pass)
    la = ra.shape[0]
    wr = np.concatenate((ra, rb))
    wi = np.concatenate((sa, sb))
    wc = np.concatenate((ca, cb))
    return bool(
        _may_pass_residue(wr, wi, wc, 0, la, la, rb.shape[0], np.empty(2 * UNPAIRED_MAX, np.int64))
    )


@njit(cache=True)
def may_pass(wr, wi, wc, woff, wlen, wtot, buf, i, j):
    """The residue pre-check of rows i and j (see :data:`WordData`): False only for a pair
    the residue guard refuses (:func:`stratabatch.wordkeys.may_pass_residue`, the reference):
    unequal key-word totals, or a word without a typo partner, unless the rows may be the
    same letters with spaces moved (:func:`same_squash`)."""
    if wtot.shape[0] == 0 or wtot[i] < 0 or wtot[j] < 0:
        return True
    if same_squash(wi, woff[i], wlen[i], woff[j], wlen[j]):
        return True
    return wtot[i] == wtot[j] and _may_pass_residue(
        wr, wi, wc, woff[i], wlen[i], woff[j], wlen[j], buf
    )


@njit(cache=True)
def precheck(wr, wi, wc, woff, wlen, wtot, refused, rsim, buf, i, j, c):
    """Whether rows i and j (cosine c, at the threshold) pass the residue pre-check
    (:func:`may_pass`); the first pair of row i it refuses is noted in
    ``refused[i]``/``rsim[i]`` (see :data:`WordData`)."""
    if may_pass(wr, wi, wc, woff, wlen, wtot, buf, i, j):
        return True
    if refused[i] < 0:
        refused[i] = j
        rsim[i] = c
    return False


@njit(cache=True)
def admit(X, i, j, thr, lo, hi, wd, buf):
    """:func:`_confirm`, and -2 too where both rows have key words that the residue guard
    must refuse (the word data ``wd`` is empty where the guards do not apply)."""
    wr, wi, wc, woff, wlen, wtot, refused, rsim = wd
    if (
        wtot.shape[0] != 0
        and wtot[i] >= 0
        and wtot[j] >= 0
        and wtot[i] != wtot[j]
        and not same_squash(wi, woff[i], wlen[i], woff[j], wlen[j])
    ):
        return np.float32(-2.0)  # (unequal counts: not worth noting, nor a cosine)
    c = _confirm(X, i, j, thr, lo, hi)
    if c < -1.0 or precheck(wr, wi, wc, woff, wlen, wtot, refused, rsim, buf, i, j, c):
        return c
    return np.float32(-2.0)


NOTED_GAP_MAX = 2
"""A pair :func:`word_admit` refuses is noted for the veto log (``refused``/``rsim``) only
when its sides differ in at most this many distinct words together (one word swapped for
another): the pairs a user asks about ("cancel my order" / "cancel my refund"). Pairs further
apart are refused without a cosine."""


@njit(cache=True)
def word_admit(X, i, j, thr, lo, hi, wd, buf):
    """:func:`admit` with the residue pre-check first: a pair of rows with key words is read
    from the pools (a few ints a row) and only a pair the pre-check lets through reads the
    two vectors for its cosine. A refused pair is noted (see :data:`WordData`) when it is
    the row's first and at most :data:`NOTED_GAP_MAX` words apart, if it clears the cosine."""
    wr, wi, wc, woff, wlen, wtot, refused, rsim = wd
    return word_admit_in(X, i, j, thr, lo, hi, wr, wi, wc, woff, wlen, wtot, refused, rsim, buf)


@njit(cache=True, inline="always")
def word_admit_in(X, i, j, thr, lo, hi, wr, wi, wc, woff, wlen, wtot, refused, rsim, buf):
    """:func:`word_admit` on the arrays of the word data, inlined where it is called: a word
    pass unpacks the tuple once, not for every row it reads (inlined, each array of a tuple
    unpacked, or passed to a kernel not inlined, is a reference count taken and released:
    ~1/3 of a refused pair's cost)."""
    if wtot.shape[0] == 0 or wtot[i] < 0 or wtot[j] < 0:
        return _confirm(X, i, j, thr, lo, hi)
    if same_squash(wi, woff[i], wlen[i], woff[j], wlen[j]):
        return _confirm(X, i, j, thr, lo, hi)  # (spaces may have moved)
    if wtot[i] != wtot[j]:
        return np.float32(-2.0)
    gap = residue_gap(wr, wi, wc, woff[i], wlen[i], woff[j], wlen[j], buf)
    if gap < 0:
        return _confirm(X, i, j, thr, lo, hi)
    if refused[i] < 0 and gap <= NOTED_GAP_MAX:
        c = _confirm(X, i, j, thr, lo, hi)
        if c >= -1.0:
            refused[i] = j
            rsim[i] = c
    return np.float32(-2.0)


@njit(cache=True, inline="always")
def needs_cosine(i, j, wr, wi, wc, woff, wlen, wtot, refused, buf):
    """Whether :func:`word_admit_in` of rows i and j would read their vectors (a cosine):
    its branches without the cosine. Where it says False, word_admit_in returns -2 and
    writes nothing, so a pair of rows without vectors (:class:`stratabatch.index.LeaderIndex`:
    rows whose vector nothing read yet) is decided without them."""
    if wtot.shape[0] == 0 or wtot[i] < 0 or wtot[j] < 0:
        return True
    if same_squash(wi, woff[i], wlen[i], woff[j], wlen[j]):
        return True
    if wtot[i] != wtot[j]:
        return False
    gap = residue_gap(wr, wi, wc, woff[i], wlen[i], woff[j], wlen[j], buf)
    return gap < 0 or (refused[i] < 0 and gap <= NOTED_GAP_MAX)


@njit(cache=True)
def late_hits(X, part, lead, lo, hi, thr, margin, wd, rows_out, sims_out):
    """The rows ``i`` in ``[lo, hi)`` of ``lead``'s partition whose pair with it :func:`admit`
    lets through (``admit(X, i, lead, ...)``, in row order), into ``rows_out``/``sims_out``;
    returns how many. A late leader (:func:`stratabatch.greedy.greedy_pass`) is checked against
    every row after it in one call, not each row against every late leader in Python."""
    wr, wi, wc, woff, wlen, wtot, refused, rsim = wd
    buf = np.empty(2 * UNPAIRED_MAX, np.int64)
    lo_c = thr - margin
    hi_c = thr + margin
    pl = part[lead]
    words = wtot.shape[0] != 0 and wtot[lead] >= 0
    k = 0
    for i in range(lo, hi):
        if part[i] != pl:
            continue
        # admit(X, i, lead, ...), with the word totals before the cosine and the cosine
        # before the residue merge: a pair below the threshold is neither a hit nor noted, and
        # one cosine costs less than the merge (~3x less a call on the labelled texts)
        if not words or wtot[i] < 0:
            c = _confirm(X, i, lead, thr, lo_c, hi_c)
        elif wtot[i] != wtot[lead] and not same_squash(
            wi, woff[i], wlen[i], woff[lead], wlen[lead]
        ):
            continue
        else:
            c = _confirm(X, i, lead, thr, lo_c, hi_c)
            if c < -1.0:
                continue
            if not may_pass(wr, wi, wc, woff, wlen, wtot, buf, i, lead):
                if refused[i] < 0:
                    refused[i] = lead
                    rsim[i] = c
                continue
        if c >= -1.0:
            rows_out[k] = i
            sims_out[k] = c
            k += 1
    return k


@njit(cache=True)
def keep_lowest(brow, bsim, cnt, k, r, s):
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

:class:`~stratabatch.index.LeaderIndex` keeps them where the residue guard decides merges."""

_NO_WORDS: WordData = (np.empty(0, np.int64),) * 7 + (np.empty(0, np.float32),)


def word_args(words: WordData | None) -> WordData:
    return _NO_WORDS if words is None else words
