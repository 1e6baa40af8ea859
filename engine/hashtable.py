"""The storage of a leader table: an open-addressing hash table of 64-byte slots, and the pass
that draws candidates from it.

Both leader tables file each leader row under keys (:mod:`stratabatch.sketches`: the values
of its sign-sketch bands; :mod:`stratabatch.wordtable`: its word keys) and probe a new row's
keys for the leaders filed under them: :class:`LeaderTable` keeps the slots and overflow
entries, and :func:`_index_pass` lists each new row's candidates (the lists of
:func:`stratabatch.candidates.exhaustive_candidates`, every candidate confirmed by the exact
cosine), filing the rows without any as leaders on the way. Kernels are pure functions of
numpy arrays, ``cache=True``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .cosine import dot_margin
from .pairs import (
    UNPAIRED_MAX,
    WordData,
    admit,
    keep_lowest,
    needs_cosine,
    popcount,
    word_admit_in,
    word_args,
)

__all__ = ["LeaderTable", "band_key", "insert"]

_ALL_VECTORS = np.zeros(0, np.uint8)  # (_word_pass's ``vec`` where every row has its vector)


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
def band_key(value, band, pid):
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
def insert(slots, ents, state, h, row, w0):
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
def _consider(X, part, stamp, tag, i, pi, r, w, w0, hmax, thr, lo, hi, brow, bsim, cnt, k, wd, buf):
    """Row r (sketch word w) as a candidate of row i: returns (count, whether one was cut)."""
    if popcount(w ^ w0) > hmax:
        return cnt, False
    if stamp[r] == tag:
        return cnt, False
    stamp[r] = tag
    if part[r] != pi or r >= i:
        return cnt, False  # dead (-1), or a stale entry
    c = admit(X, i, r, thr, lo, hi, wd, buf)
    if c < -1.0:
        return cnt, False
    return keep_lowest(brow, bsim, cnt, k, r, c), cnt == k


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
    buf = np.empty(2 * UNPAIRED_MAX, np.int64)
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
                    insert(slots, ents, state, keys[j, t], i, w0)
        for t in range(cnt):
            out_rows[e + t] = brow[t]
            out_sims[e + t] = bsim[t]
        e += cnt
        off[j + 1] = e
        more[j] = cut


_CHUNK = 16  # rows a probe lists from a slot before reading them (see _probe_words)


@njit(cache=True, inline="always")
def _probe_words(
    X,
    part,
    stamp,
    tag,
    i,
    pi,
    s,
    slots,
    ents,
    thr,
    lo,
    hi,
    brow,
    bsim,
    cnt,
    k,
    wr,
    wi,
    wc,
    woff,
    wlen,
    wtot,
    refused,
    rsim,
    buf,
    budget,
    rows,
    vec,
):
    """The rows filed in slot ``s`` as candidates of row i (:func:`word_admit_in`: the residue
    pre-check before the cosine), at most ``budget`` of them read (the newest overflow entries
    first, then the three oldest, inline); returns (count, whether one was cut, rows read, a
    row whose vector is wanted or -1). ``wr`` .. ``rsim``: the arrays of the word data;
    ``rows``: scratch; ``vec``: per row, whether it has its vector (empty: all have): a pair
    of which a side has none and that needs a cosine (:func:`needs_cosine`) stops the probe
    at once, returning that row (the pair not read), for the caller to start row i again
    with the vectors.

    The rows are listed (stamped, dead and stale ones skipped) a chunk at a time and their
    key words fetched ahead, then read in the same order: the loads of a chunk's rows overlap
    instead of each waiting for the last."""
    words = wtot.shape[0] != 0
    cut = False
    seen = 0
    q = slots[s, 1]
    inline = np.int64(slots[s, 0] & _COUNT)
    u = 0
    while seen < budget and (q != _NIL32 or u < inline):
        nc = 0
        while nc < _CHUNK and seen < budget:
            if q != _NIL32:
                head = ents[q, 0]
                nxt = head >> np.uint64(32)
                if nxt != _NIL32:
                    _prefetch(ents, np.int64(nxt) * 2)
                r = np.int64(head & _NIL32)
                q = nxt
            elif u < inline:
                r = np.int64(slots[s, 2 + 2 * u])
                u += 1
            else:
                break
            seen += 1
            if stamp[r] == tag:
                continue
            stamp[r] = tag
            if part[r] != pi or r >= i:
                continue  # dead (-1), or a stale entry
            rows[nc] = r
            nc += 1
            if words:
                _prefetch(wtot, r)
                _prefetch(woff, r)
                _prefetch(wlen, r)
        if words:
            for t in range(nc):
                o = woff[rows[t]]
                _prefetch(wr, o)
                _prefetch(wi, o)
                _prefetch(wc, o)
        for t in range(nc):
            r = rows[t]
            if vec.shape[0] and (vec[i] == 0 or vec[r] == 0):
                if needs_cosine(i, r, wr, wi, wc, woff, wlen, wtot, refused, buf):
                    return cnt, cut, seen, r
                continue  # (word_admit_in: -2, nothing written)
            c = word_admit_in(
                X, i, r, thr, lo, hi, wr, wi, wc, woff, wlen, wtot, refused, rsim, buf
            )
            if c >= -1.0:
                cut |= cnt == k
                cnt = keep_lowest(brow, bsim, cnt, k, r, c)
    return cnt, cut, seen, np.int64(-1)


@njit(cache=True)
def _word_pass(
    X,
    part,
    keys,
    nfine,
    fine_budget,
    coarse_budget,
    thr,
    margin,
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
    vec,
    first,
    want,
    file_new,
):
    """Candidates of rows [first, n) from a word table; rows with none are filed as leaders
    (under every key they have) when ``file_new``. Rows [start, first) were passed already
    (``off[:first - start + 1]`` and their lists written).

    ``vec``: per row, whether it has its vector (empty: every row has): where a pair needs a
    cosine and a side has none, the pass stops before that row's lists, filing or stats
    (its reads are taken back from ``state[3]``): returns the row, and ``want[0]`` is the
    row without a vector it met; the caller computes vectors and calls again from that row.
    Returns -1 when every row is passed.

    ``keys[j]``: the table keys of row ``start + j`` (0: none), its ``nfine`` fine keys first
    (:mod:`stratabatch.wordkeys`), then its pair and single keys. A row with fine keys reads at
    most ``fine_budget`` filed rows under them and ``coarse_budget`` under the others: the
    pair keys whose slots hold at most three rows (rare pairs) first, then the crowded ones.
    A row without fine keys (more key words than fine keys serve) reads every row filed under
    its keys, as the sketch pass does; one that found a candidate under its fine keys reads
    none under the others. Budgets never set ``more``: a list cut by a budget is not completed
    by a rescan."""
    lo = thr - margin
    hi = thr + margin
    m = n - start
    nk = keys.shape[1]
    mask = np.uint64(slots.shape[0] - 1)
    brow = np.empty(k, np.int64)
    bsim = np.empty(k, np.float32)
    buf = np.empty(2 * UNPAIRED_MAX, np.int64)
    found = np.empty(nk, np.int64)
    wr, wi, wc, woff, wlen, wtot, refused, rsim = wd
    rows = np.empty(_CHUNK, np.int64)
    unlimited = np.int64(1) << np.int64(62)
    j0 = first - start
    for j in range(j0, min(m, j0 + _AHEAD_SLOTS)):
        for t in range(nk):
            _prefetch(slots, np.int64(keys[j, t] & mask) * 8)
    if j0 == 0:
        off[0] = 0
    e = off[j0]
    for i in range(first, n):
        j = i - start
        if j + _AHEAD_SLOTS < m:
            for t in range(nk):
                _prefetch(slots, np.int64(keys[j + _AHEAD_SLOTS, t] & mask) * 8)
        pi = part[i]
        state[2] += 1
        tag = state[2]
        cnt = 0
        cut = False
        read = 0
        fine = keys[j, 0] != 0
        for t in range(nk):
            found[t] = -1 if keys[j, t] == 0 else _find_slot(slots, keys[j, t])
        left = fine_budget if fine else unlimited
        for t in range(nfine):
            if found[t] >= 0 and left > 0:
                cnt, c, seen, w = _probe_words(
                    X,
                    part,
                    stamp,
                    tag,
                    i,
                    pi,
                    found[t],
                    slots,
                    ents,
                    thr,
                    lo,
                    hi,
                    brow,
                    bsim,
                    cnt,
                    k,
                    wr,
                    wi,
                    wc,
                    woff,
                    wlen,
                    wtot,
                    refused,
                    rsim,
                    buf,
                    left,
                    rows,
                    vec,
                )
                state[3] += seen
                read += seen
                if w >= 0:
                    state[3] -= read
                    want[0] = w
                    return i
                cut |= c
                left -= seen
        # a row that found a leader under its fine keys (a near twin) looks no further
        left = unlimited if not fine else (coarse_budget if cnt == 0 else 0)
        for sweep in range(2):  # the rare pairs (no overflow chain) first
            for t in range(nfine, nk):
                s = found[t]
                if s < 0 or left <= 0 or (slots[s, 1] != _NIL32) != (sweep == 1):
                    continue
                cnt, c, seen, w = _probe_words(
                    X,
                    part,
                    stamp,
                    tag,
                    i,
                    pi,
                    s,
                    slots,
                    ents,
                    thr,
                    lo,
                    hi,
                    brow,
                    bsim,
                    cnt,
                    k,
                    wr,
                    wi,
                    wc,
                    woff,
                    wlen,
                    wtot,
                    refused,
                    rsim,
                    buf,
                    left,
                    rows,
                    vec,
                )
                state[3] += seen
                read += seen
                if w >= 0:
                    state[3] -= read
                    want[0] = w
                    return i
                cut |= c
                left -= seen
        if cnt == 0 and file_new:
            for t in range(nk):
                if keys[j, t] != 0:
                    insert(slots, ents, state, keys[j, t], i, np.uint64(0))
        for t in range(cnt):
            out_rows[e + t] = brow[t]
            out_sims[e + t] = bsim[t]
        e += cnt
        off[j + 1] = e
        more[j] = cut
    return -1


class LeaderTable:
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
        # entries used, slots used, query tag, filed rows read by word passes (a statistic)
        self.state = np.zeros(4, np.int64)

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
            word_args(wd),
        )
        e = off[m]
        return off, rows[:e], sims[:e], more

    def _pass_words(
        self,
        X: np.ndarray,
        part: np.ndarray,
        keys: np.ndarray,
        nfine: int,
        budgets: tuple[int, int],
        threshold: float,
        start: int,
        stamp: np.ndarray,
        max_cand: int,
        wd: WordData | None,
        vec: np.ndarray | None = None,
        fetch: Any = None,
        file_new: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Run :func:`_word_pass` for rows ``start ..`` of X with probe ``keys`` (the fine
        keys in the first ``nfine`` columns) and ``budgets`` (fine, pair keys); the CSR
        candidate lists of :func:`exhaustive_candidates`. ``file_new`` False: rows without
        candidates are not filed (queries that never lead).

        ``vec``: per row of X, whether it has its vector (None: every row has); where the
        pass meets a pair that needs the vector of a row without one, ``fetch(i, r)`` (row
        ``i`` of the pass met row ``r``) writes the vectors wanted into X (and ``vec``) and
        the pass goes on from row ``i``: the same lists as with every vector there."""
        n = X.shape[0]
        m = n - start
        off = np.empty(m + 1, np.int64)
        rows = np.empty(m * max_cand, np.int64)
        sims = np.empty(m * max_cand, np.float32)
        more = np.zeros(m, np.bool_)
        want = np.zeros(1, np.int64)
        first = start
        while True:
            first = _word_pass(
                X,
                part,
                keys,
                nfine,
                budgets[0],
                budgets[1],
                np.float32(threshold),
                dot_margin(X.shape[1]),
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
                word_args(wd),
                _ALL_VECTORS if vec is None else vec,
                first,
                want,
                file_new,
            )
            if first < 0:
                break
            fetch(first, int(want[0]))
        e = off[m]
        return off, rows[:e], sims[:e], more
