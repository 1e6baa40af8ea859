"""The word table: leaders filed under their word keys (:mod:`stratabatch.wordkeys`), and the
pools of key words the residue pre-check reads.

:func:`word_rows` stores the key words of new rows in the pools (sorted by rank) and writes
their word keys; :class:`WordTable` files leaders under those keys in a hash table
(:mod:`stratabatch.hashtable`) and offers a new row the leaders sharing a key with it.
:func:`compact_pools` and :func:`move_rows` compact the pools and row arrays when a
:class:`~stratabatch.index.LeaderIndex` drops its dead rows. Kernels are pure functions of
numpy arrays, ``cache=True``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from .hashtable import LeaderTable, band_key, insert
from .pairs import WordData
from .wordkeys import (
    COARSE_KEYS,
    EMPTY_KEY,
    FINE_MAX_WORDS,
    FINE_SALT,
    SINGLE_KEY,
    WORD_KEYS,
    BatchProfiles,
    tag_profiles,
)

_MIX = np.uint64(0x9E37_79B9_7F4A_7C15)  # (stratabatch.wordkeys.fine_mix)

__all__ = [
    "FINE_BUDGET",
    "PAIR_BUDGET",
    "WORD_MAX_CANDIDATES",
    "WordTable",
    "compact_pools",
    "move_rows",
    "profile_entries",
    "warm_up",
    "word_rows",
]


@njit(cache=True)
def move_rows(a, live):
    """a[t] = a[live[t]] for each t, in place (``live`` ascending: a row moves only down)."""
    for t in range(live.shape[0]):
        r = live[t]
        if r != t:
            a[t] = a[r]


@njit(cache=True)
def _fine_mix(rank):
    h = np.uint64(rank) * _MIX
    return h ^ (h >> np.uint64(29))


@njit(cache=True)
def _word_rows(
    wr,
    wi,
    wc,
    woff,
    wlen,
    wtot,
    out,
    start,
    m,
    empty,
    single,
    coarse,
    fine_max,
    salt,
    br,
    bs,
    bc,
    boff,
    blen,
    used,
):
    """For rows [start, start + m): sort each row's key words by rank in the pools (in place),
    total its counts, and write its word keys to ``out[row]``, zero-padded (the keys of
    :func:`stratabatch.wordkeys.word_keys`, from the lowest distinct ranks: the pair and
    single keys from column 0, the fine keys from column ``coarse``). Returns the pools' fill.

    With the arrays of a BatchProfiles of ``m`` texts (``blen`` not empty), text j's key words
    are first stored for row start + j from ``used`` on, in text order (one call files a
    whole batch); else the rows' words are in the pools already and ``used`` is returned."""
    if blen.shape[0]:
        for j in range(m):
            woff[start + j] = used
            wlen[start + j] = blen[j]
            used += blen[j]
        js = np.arange(m)
        _copy_profiles(br, bs, bc, boff, blen, js, js + start, wr, wi, wc, woff)
    r = np.empty(max(5, fine_max), np.int64)
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
        c = 0  # distinct ranks seen (the lowest kept in r)
        for u in range(a, a + n):
            if u == a or wr[u] != wr[u - 1]:
                if c < r.shape[0]:
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
        if 2 <= c <= fine_max and n <= fine_max and wtot[row] >= 0:
            whole = np.uint64(0)
            for u in range(a, a + n):
                for k in range(wc[u]):
                    whole ^= _fine_mix(wr[u] + k)
            for u in range(a, a + n):
                fk = whole ^ _fine_mix(wr[u] + wc[u] - 1) ^ salt
                out[row, coarse + u - a] = fk | np.uint64(1)
    return used


def _sources(
    profiles: Any,
) -> tuple[np.ndarray, list[tuple[Any, np.ndarray, np.ndarray]], list[tuple[int, list[int]]]]:
    """Where the key words of each of ``profiles``' rows (a list, see :func:`word_rows`; a
    whole BatchProfiles is read without it) come from: the rows' entry counts; per
    BatchProfiles, its text indexes and the rows (counted from 0) that take them; and the
    rows given as word_profile lists."""
    m = len(profiles)
    if m and type(profiles[0]) is tuple:  # the common case: all from one embedding pass
        b = profiles[0][0]
        js = [p[1] if type(p) is tuple and p[0] is b else -1 for p in profiles]
        if -1 not in js:
            idx = np.array(js, np.int64)
            return b.lens[idx], [(b, idx, np.arange(m, dtype=np.int64))], []
    groups: dict[int, tuple[Any, list[int], list[int]]] = {}
    plain: list[tuple[int, list[int]]] = []
    for i, p in enumerate(profiles):
        if type(p) is tuple:
            b, j = p
            g = groups.get(id(b))
            if g is None:
                g = groups[id(b)] = (b, [], [])
            g[1].append(j)
            g[2].append(i)
        else:
            plain.append((i, p))
    # (the counts of a batch's texts by one fancy index, not a numpy scalar a row)
    lens = np.empty(m, np.int64)
    out = []
    for b, js, rs in groups.values():
        ja = np.array(js, np.int64)
        ra = np.array(rs, np.int64)
        lens[ra] = b.lens[ja]
        out.append((b, ja, ra))
    for i, p in plain:
        lens[i] = len(p) // 3
    return lens, out, plain


def profile_entries(profiles: Any) -> int:
    """How many pool entries the key words of ``profiles`` take (see :func:`word_rows`)."""
    if not isinstance(profiles, list):  # a BatchProfiles
        return int(profiles.lens.sum())
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


_NO_BATCH = np.zeros(0, np.int64)  # (_word_rows without a batch to copy)


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
    if not isinstance(profiles, list):  # one BatchProfiles, its texts in order: one call
        b = profiles
        batch = (b.ranks, b.shapes, b.counts, b.off, b.lens)
        return _file_rows(pools, rows, out, start, len(b.lens), batch, used)
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
    _file_rows(pools, rows, out, start, m, (_NO_BATCH,) * 5, used)
    return used


def _file_rows(
    pools: tuple[np.ndarray, ...],
    rows: tuple[np.ndarray, ...],
    out: np.ndarray,
    start: int,
    m: int,
    batch: tuple[np.ndarray, ...],
    used: int,
) -> int:
    """One :func:`_word_rows` call for rows [start, start + m), with a BatchProfiles' five
    arrays as ``batch`` (its texts stored first) or five empty ones; the pools' fill."""
    wr, wi, wc = pools
    woff, wlen, wtot = rows
    br, bs, bc, boff, blen = batch
    salt = np.uint64(FINE_SALT)
    return int(
        _word_rows(
            wr, wi, wc, woff, wlen, wtot, out, start, m,
            EMPTY_KEY, SINGLE_KEY, COARSE_KEYS, FINE_MAX_WORDS, salt,
            br, bs, bc, boff, blen, used,
        )
    )  # fmt: skip


def warm_up() -> None:
    """Load (or compile) the kernels that file key words, for each form a pass hands them:
    one whole BatchProfiles, rows of batches ``(batch, j)``, and word_profile lists; and
    those that tag a batch the embedding pass left untagged (:func:`tag_profiles`)."""
    o = [np.ones(2, np.int64) for _ in range(5)]
    tag_profiles(BatchProfiles(o[0], o[1], o[2], o[3], o[4]), ["a b", "c"])
    one = np.ones(2, np.int64)
    batch = BatchProfiles(one, one, one, np.array([0, 1], np.int64), one)
    for profiles in (batch, [(batch, 0), [3, 5, 1]]):
        pools = tuple(np.zeros(8, np.int64) for _ in range(3))
        rows = tuple(np.zeros(2, np.int64) for _ in range(3))
        word_rows(profiles, pools, 0, rows, np.zeros((2, WORD_KEYS), np.uint64), 0)


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
def _word_table_keys(wkeys, part, start, n, keys, first):
    """keys[i - start]: the table keys of row i's word keys (0 stays 0: no key), its word
    key ``first`` first and the others in their order after it, wrapping around (so the fine
    keys, from column COARSE_KEYS, may come first without a copy of the array)."""
    w = wkeys.shape[1]
    for i in range(start, n):
        pid = part[i]
        for t in range(w):
            v = wkeys[i, t]
            u = t - first if t >= first else t - first + w
            keys[i - start, u] = band_key(v, 0, pid) if v != 0 else np.uint64(0)


@njit(cache=True)
def _file_keyed(wkeys, part, rows, slots, ents, state):
    for t in range(rows.shape[0]):
        row = rows[t]
        pid = part[row]
        for u in range(wkeys.shape[1]):
            v = wkeys[row, u]
            if v != 0:
                insert(slots, ents, state, band_key(v, 0, pid), row, np.uint64(0))


FINE_BUDGET = 1024
"""Filed rows a new row reads under its fine keys, at most (:func:`_word_pass`). They hold the
texts of the same key words but one: few, unless many waiting texts are the same words in
another order (which the roles guard keeps apart)."""

PAIR_BUDGET = 16
"""Filed rows a new row with fine keys reads under its pair and single keys, at most: what
finds it a leader two typos away. Where requests share most of their words (a support bot's
"order", "refund", "shipping") a pair key holds a share of the whole queue; reading it all
made the cost per request grow with the queue (85 -> 537 us from 1k to 16k waiting, with 7
words of a 26-word vocabulary). Keys of at most three filed rows (rare pairs) are read
first."""

WORD_MAX_CANDIDATES = 64
"""Candidates listed per row by the word table. Its keys already narrow the leaders to texts
of nearly the same words, so a list is short unless many leaders are near copies of each
other (a shared preamble); a longer list spares the greedy pass a rescan of every leader
when the guards refuse the first few."""


class WordTable(LeaderTable):
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
        vec: np.ndarray | None = None,
        fetch: Any = None,
        file_new: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Candidates of rows ``start ..`` of X (see :func:`exhaustive_candidates`, also for
        ``wd``) among the leaders sharing a word key; new rows without candidates are filed
        on the way (with ``wd``, unless ``file_new`` is False). ``words`` is any uint64
        ``[n, 2]`` array (the sketch filter is off: Hamming bound 64). ``vec`` and
        ``fetch``: rows without their vector, and how to get the ones a pair needs
        (:meth:`LeaderTable._pass_words`; with ``wd`` only)."""
        n = X.shape[0]
        m = n - start
        self._make_room(wkeys, part, start)
        keys = np.empty((m, wkeys.shape[1]), np.uint64)
        if wd is None:  # (no pre-check: every row filed under a key is read)
            _word_table_keys(wkeys, part, start, n, keys, 0)
            return self._pass(X, part, words, keys, 1, threshold, 64, start, stamp, max_cand, wd)
        # the fine keys first: a near twin differing by a typo at most shares one with its
        # leader, and few other rows do
        _word_table_keys(wkeys, part, start, n, keys, COARSE_KEYS)
        return self._pass_words(
            X,
            part,
            keys,
            FINE_MAX_WORDS,
            (FINE_BUDGET, PAIR_BUDGET),
            threshold,
            start,
            stamp,
            max_cand,
            wd,
            vec,
            fetch,
            file_new,
        )
