"""The canonical text of ASCII texts, in numba: the rules of :mod:`stratabatch.canon` over
word ids.

:func:`canonical_ascii` reads a batch already lower-cased, contractions expanded and
punctuation turned to spaces (:func:`stratabatch.text.ascii_prenormalized`: bytes of
``[a-z0-9 ]`` with 0x1F between texts), splits digits from letters, looks each word up in one
table of every word a rule reads (:func:`rule_tables`), and runs the rewrite passes of
:mod:`stratabatch.canon` on the word ids: letters swapped back, courtesy and fillers out, frames
and spellings folded. The Python passes of :mod:`stratabatch.canon` are the reference; the
tests compare the two on every labelled text and on generated ones.

The tables are one int64 array (a header of offsets, then the parts) and one uint8 array of
the words' bytes (numba's dispatch costs per argument). The word table also says which words
either pass acts at, so that a text holding none skips that pass. The helpers are inlined
(``inline="always"``): a call of a compiled function takes and releases a reference to each
array it is passed. Numba kernels, ``cache=True``; this module imports numba.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["canonical_ascii", "fnv1a", "fnv_rows", "rule_tables"]

# Header slots of the int64 table (offsets of its parts, and the ids of the words the rules
# name one by one).
_NSLOTS, _SLOTS, _VSTART, _FLAGS, _TRANS, _SPOFF, _SPIDS = 0, 1, 2, 3, 4, 5, 6
_DROPOFF, _FOLDOFF, _PWOFF, _PWORDS, _RPOFF, _RPIDS, _KIND = 7, 8, 9, 10, 11, 12, 13
_ID_JUST, _ID_LIKE, _ID_I, _ID_IF, _ID_WANT, _ID_NEED, _ID_HAVE = 14, 15, 16, 17, 18, 19, 20
_ID_TO, _ID_WHAT, _ID_DO, _ID_HOW = 21, 22, 23, 24
_HEADER = 25

# Word flags
F_TRIGGER = 1  # the word sends its text through the passes (canon's _SPECIAL and SPELLING)
F_FILLER = 2
F_NUMBER = 4
F_JOINER = 8
F_KEEP_BEFORE = 16  # "just" is no filler before it
F_KEEP_AFTER = 32  # "just" is no filler after it
F_LIKE_KEEPER = 64
F_FIRST_PERSON = 128
F_DIGIT = 256  # starts with a digit
F_HEAD = 512  # first word of a phrase (or of "if i")
# (set by rule_tables: where neither is on any word of a text, the pass is the identity)
_F_DROPS = 1024  # the courtesy pass may act at the word: a filler, a number word, "just",
# "like", a courtesy phrase's first word
_F_FOLDS = 2048  # the frame pass may act at the word: a frame's first word, a spelling

_SWAP_MIN = 5  # (canon.SWAP_MIN_LETTERS: the shortest word whose swapped letters go back)
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3


def fnv1a(word: bytes) -> int:
    """FNV-1a, 64 bits, of ``word`` (as the kernel hashes a word to find it in the table)."""
    h = _FNV_OFFSET
    for c in word:
        h = ((h ^ c) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


def rule_tables(
    vocab: list[str],
    flags: dict[str, int],
    transposed: dict[str, str],
    spelling: dict[str, str],
    drops: list[tuple[str, str, int]],
    folds: list[tuple[str, str, int]],
) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's tables: ``(tab, vocab_bytes)``.

    Args:
        vocab: Every word a rule reads or writes (ASCII, lower case, no space).
        flags: The ``F_*`` flags of each word (missing: 0).
        transposed: Swapped letters -> the word (canon's TRANSPOSED_WORDS).
        spelling: A word -> its replacement (one or more words).
        drops: ``(phrase, replacement, kind)`` of the courtesy pass, in the reference's order
            (stable sort by decreasing length happens here); kind 1 marks a "you" frame.
        folds: The same for the frame pass.
    """
    ids = {w: i for i, w in enumerate(vocab)}
    nv = len(vocab)
    raw = [w.encode("ascii") for w in vocab]
    vstart = np.zeros(nv + 1, np.int64)
    vstart[1:] = np.cumsum([len(r) for r in raw])
    nslots = 1 << max(4, (4 * nv).bit_length())
    slots = np.full(nslots, -1, np.int64)
    for i, r in enumerate(raw):
        s = fnv1a(r) & (nslots - 1)
        while slots[s] >= 0:
            s = (s + 1) & (nslots - 1)
        slots[s] = i
    fl = np.array([flags.get(w, 0) for w in vocab], np.int64)
    for w in ("just", "like", *(phrase.split()[0] for phrase, _, _ in drops)):
        fl[ids[w]] |= _F_DROPS
    for w in (*spelling, *(phrase.split()[0] for phrase, _, _ in folds)):
        fl[ids[w]] |= _F_FOLDS
    fl[(fl & (F_FILLER | F_NUMBER)) != 0] |= _F_DROPS
    for phrase, repl, _ in drops:  # (a courtesy phrase that writes a word the frame pass reads)
        if any(fl[ids[x]] & _F_FOLDS for x in repl.split()):
            fl[ids[phrase.split()[0]]] |= _F_FOLDS
    trans = np.full(nv, -1, np.int64)
    for k, v in transposed.items():
        trans[ids[k]] = ids[v]
    spoff = np.zeros(nv + 1, np.int64)
    spids: list[int] = []
    for i, w in enumerate(vocab):
        spids += [ids[x] for x in spelling.get(w, "").split()]
        spoff[i + 1] = len(spids)
    pwoff: list[int] = [0]
    rpoff: list[int] = [0]
    pwords: list[int] = []
    rpids: list[int] = []
    kinds: list[int] = []
    group_offs = []
    for entries in (drops, folds):
        by_first: dict[int, list[tuple[list[int], list[int], int]]] = {}
        for phrase, repl, kind in entries:
            pw = [ids[x] for x in phrase.split()]
            by_first.setdefault(pw[0], []).append((pw, [ids[x] for x in repl.split()], kind))
        off = np.zeros(nv + 1, np.int64)
        off[0] = len(kinds)
        for f in range(nv):
            group = sorted(by_first.get(f, []), key=lambda e: -len(e[0]))
            for pw, rp, kind in group:
                pwords += pw
                pwoff.append(len(pwords))
                rpids += rp
                rpoff.append(len(rpids))
                kinds.append(kind)
            off[f + 1] = len(kinds)
        group_offs.append(off)
    parts = [
        slots,
        vstart,
        fl,
        trans,
        spoff,
        np.array(spids, np.int64),
        group_offs[0],
        group_offs[1],
        np.array(pwoff, np.int64),
        np.array(pwords, np.int64),
        np.array(rpoff, np.int64),
        np.array(rpids, np.int64),
        np.array(kinds, np.int64),
    ]
    named = ("just", "like", "i", "if", "want", "need", "have", "to", "what", "do", "how")
    header = np.zeros(_HEADER, np.int64)
    header[_NSLOTS] = nslots
    at = _HEADER
    for slot, part in enumerate(parts, start=_SLOTS):
        header[slot] = at
        at += len(part)
    for slot, w in enumerate(named, start=_ID_JUST):
        header[slot] = ids[w]
    tab = np.concatenate([header, *parts]).astype(np.int64)
    vocab_bytes = np.frombuffer(b"".join(raw) or b"\0", np.uint8).copy()
    return tab, vocab_bytes


@njit(cache=True)
def fnv_rows(data, ends):
    """:func:`fnv1a` of each word ``data[ends[i - 1]:ends[i]]`` (``ends``: their ends, the
    first word from 0), as uint64."""
    out = np.empty(ends.shape[0], np.uint64)
    a = 0
    for i in range(ends.shape[0]):
        h = np.uint64(_FNV_OFFSET)
        for q in range(a, ends[i]):
            h = (h ^ np.uint64(data[q])) * np.uint64(_FNV_PRIME)
        out[i] = h
        a = ends[i]
    return out


SWAP_BITS_WORDS = 1 << 15
"""The swaps' table (:func:`canonical_ascii`'s ``swaps``) starts with a bitset of this many
uint64 words (2**21 bits, indexed by a hash's top 21 bits); the sorted hashes follow."""


@njit(cache=True, inline="always")
def _may_swap(h, swaps):
    """Whether the word of FNV-1a hash ``h`` may be one whose swapped letters the canonical
    text puts back: ``h`` is in the sorted hashes of ``swaps``, asked of its bitset first."""
    top = np.int64(h >> np.uint64(43))
    if (swaps[top >> 6] >> np.uint64(top & 63)) & np.uint64(1) == 0:
        return False
    keys = swaps[SWAP_BITS_WORDS:]
    k = np.searchsorted(keys, h)
    return k < keys.shape[0] and keys[k] == h


@njit(cache=True, inline="always")
def _find(h, data, a, b, tab, vocab):
    """The id of the word data[a:b] of hash ``h``, or -1."""
    mask = tab[_NSLOTS] - 1
    s = np.int64(h & np.uint64(mask))
    slots = tab[_SLOTS]
    vstart = tab[_VSTART]
    while True:
        wid = tab[slots + s]
        if wid < 0:
            return -1
        va = tab[vstart + wid]
        vb = tab[vstart + wid + 1]
        if vb - va == b - a:
            same = True
            for j in range(b - a):
                if vocab[va + j] != data[a + j]:
                    same = False
                    break
            if same:
                return wid
        s = (s + 1) & mask


@njit(cache=True, inline="always")
def _flags(code, tab):
    return tab[tab[_FLAGS] + code] if code >= 0 else 0


@njit(cache=True, inline="always")
def _starts_with_digit(code, tab, data, tok_s):
    if code >= 0:
        return (tab[tab[_FLAGS] + code] & F_DIGIT) != 0
    c = data[tok_s[-code - 1]]
    return 48 <= c <= 57


@njit(cache=True, inline="always")
def _is_head(first, second, tab):
    """Whether (first, second) (word ids) begin a phrase of either pass, or are "if i"."""
    if first == tab[_ID_IF] and second == tab[_ID_I]:
        return True
    pwoff = tab[_PWOFF]
    pwords = tab[_PWORDS]
    for which in (_DROPOFF, _FOLDOFF):
        off = tab[which]
        for e in range(tab[off + first], tab[off + first + 1]):
            if tab[pwords + tab[pwoff + e] + 1] == second:
                return True
    return False


@njit(cache=True, inline="always")
def _pass(src, n, dst, drop, tab, data, tok_s):
    """canon._pass over word codes (>= 0: a word id; < 0: -(token index + 1), a word no rule
    reads): the courtesy pass (``drop``) or the frame pass; returns the count put in dst."""
    off = tab[_DROPOFF] if drop else tab[_FOLDOFF]
    pwoff = tab[_PWOFF]
    pwords = tab[_PWORDS]
    rpoff = tab[_RPOFF]
    rpids = tab[_RPIDS]
    kinds = tab[_KIND]
    id_i = tab[_ID_I]
    m = 0
    i = 0
    while i < n:
        w = src[i]
        matched = False
        if i + 1 < n and w >= 0 and src[i + 1] >= 0:
            for e in range(tab[off + w], tab[off + w + 1]):
                ws = tab[pwoff + e]
                k = tab[pwoff + e + 1] - ws
                if tab[pwords + ws + 1] != src[i + 1]:
                    continue
                if w == id_i and m > 0 and not drop:
                    continue  # "i need to ..." is a frame at the start only ("do i need")
                if i + k > n:
                    continue
                same = True
                for j in range(2, k):
                    if src[i + j] != tab[pwords + ws + j]:
                        same = False
                        break
                if not same:
                    continue
                if tab[kinds + e] == 1:  # "how do you X": not when X speaks of the asker
                    mine = False
                    for j in range(i + k, n):
                        if _flags(src[j], tab) & F_FIRST_PERSON:
                            mine = True
                            break
                    if mine:
                        continue
                for r in range(tab[rpoff + e], tab[rpoff + e + 1]):
                    dst[m] = tab[rpids + r]
                    m += 1
                i += k
                if drop and i < n and _flags(src[i], tab) & F_JOINER:
                    i += 1
                matched = True
                break
        if matched:
            continue
        fl = _flags(w, tab)
        if drop:
            if fl & F_NUMBER and i + 1 < n and _starts_with_digit(src[i + 1], tab, data, tok_s):
                i += 1
                continue
            if fl & F_FILLER:
                i += 1
                continue
            if w == tab[_ID_JUST] and w >= 0:
                filler = True
                if i + 1 >= n or (m > 0 and _flags(dst[m - 1], tab) & F_KEEP_AFTER):
                    filler = False
                else:
                    nxt = src[i + 1]
                    if _flags(nxt, tab) & F_KEEP_BEFORE or _starts_with_digit(
                        nxt, tab, data, tok_s
                    ):
                        filler = False
                if filler:
                    i += 1
                    continue
            if w == tab[_ID_LIKE] and w >= 0:
                if not (m > 0 and _flags(dst[m - 1], tab) & F_LIKE_KEEPER):
                    i += 1
                    continue
            dst[m] = w
            m += 1
        else:
            a = tab[tab[_SPOFF] + w] if w >= 0 else 0
            b = tab[tab[_SPOFF] + w + 1] if w >= 0 else 0
            if b > a:
                for r in range(a, b):
                    dst[m] = tab[tab[_SPIDS] + r]
                    m += 1
            else:
                dst[m] = w
                m += 1
        i += 1
    return m


@njit(cache=True, inline="always")
def _rewrite(codes, nt, words, kept, res, tab, data, tok_s):
    """canon._rewrite over word codes; returns (the array holding the result, its count)."""
    trans = tab[_TRANS]
    acts = 0
    for t in range(nt):
        c = codes[t]
        if c >= 0:
            if tab[trans + c] >= 0:
                c = tab[trans + c]
            acts |= tab[tab[_FLAGS] + c]
        words[t] = c
    if acts & _F_DROPS:
        m1 = _pass(words, nt, kept, True, tab, data, tok_s)
    else:  # (no word the courtesy pass acts at: it would copy them)
        kept[:nt] = words[:nt]
        m1 = nt
    start = 0
    while start < m1 and _flags(kept[start], tab) & F_JOINER:
        start += 1
    if start == m1:
        return words, nt  # nothing but courtesy: keep it as it came
    if acts & _F_FOLDS:  # (the courtesy pass only removes words: none is new here)
        m2 = _pass(kept[start:], m1 - start, res, False, tab, data, tok_s)
    else:
        m2 = m1 - start
        res[:m2] = kept[start:m1]
    if (
        m2 > 8
        and res[0] == tab[_ID_IF]
        and res[1] == tab[_ID_I]
        and (res[2] == tab[_ID_WANT] or res[2] == tab[_ID_NEED] or res[2] == tab[_ID_HAVE])
        and res[3] == tab[_ID_TO]
        and res[m2 - 4] == tab[_ID_WHAT]
        and res[m2 - 3] == tab[_ID_DO]
        and res[m2 - 2] == tab[_ID_I]
        and res[m2 - 1] == tab[_ID_DO]
    ):
        # "if i want to X, what should i do" asks "how do i X"
        res[0] = tab[_ID_HOW]
        res[1] = tab[_ID_DO]
        res[2] = tab[_ID_I]
        for j in range(4, m2 - 4):
            res[j - 1] = res[j]
        m2 -= 5
    if m2 == 0:
        return words, nt
    return res, m2


@njit(cache=True, inline="always")
def _is_digit(c):
    return 48 <= c <= 57


@njit(cache=True, nogil=True)
def canonical_ascii(data, size, n, tab, vocab, out, swaps, swapped):
    """The canonical texts of the ``n`` texts of data[:size] (prenormalized ASCII, 0x1F between
    texts), into ``out`` (0x1F between texts; room for 2 * growth * (size + n) bytes, growth
    the most a rewrite multiplies a word's bytes by, at least 2); returns the count of bytes
    written. A word no rule reads that may have letters swapped (:func:`_may_swap` on the
    table ``swaps``) is left as it is, for Python to put back where the raw text allows
    (:func:`stratabatch.canon._swaps_put_back`): ``swapped`` (int64, ``2 * n + 1``) says
    where: ``swapped[n + i]`` is 0 where text ``i`` has none, its length where it has one
    (written at ``swapped[i]``, from the text's first byte in ``out``), -1 where it has more;
    ``swapped[2 * n]`` counts the texts that have one.

    A text no rule reads (no word of a rule, no phrase's first two words side by side) comes
    out as it went in, digits apart from letters; the others as their canonical words apart by
    single spaces (as :func:`stratabatch.canon.canonical_texts` gives them).
    """
    starts = np.empty(n, np.int64)
    ends = np.empty(n, np.int64)
    k = 0
    starts[0] = 0
    for q in range(size):
        if data[q] == 31:
            ends[k] = q
            k += 1
            starts[k] = q + 1
    ends[n - 1] = size
    longest = 1
    for i in range(n):
        longest = max(longest, ends[i] - starts[i])
    cap = 2 * longest + 8
    tok_s = np.empty(cap, np.int64)
    tok_e = np.empty(cap, np.int64)
    codes = np.empty(cap, np.int64)
    words = np.empty(cap, np.int64)
    kept = np.empty(cap, np.int64)
    res = np.empty(2 * cap, np.int64)
    vstart = tab[_VSTART]
    flags = tab[_FLAGS]
    swapped[2 * n] = 0
    o = 0
    for i in range(n):
        if i:
            out[o] = 31
            o += 1
        a = starts[i]
        b = ends[i]
        # words, with digits split from letters ("6am" -> "6", "am"), each hashed and
        # looked up as it ends (a word at a time: one unpredictable branch a word, where a
        # byte-class test at every byte and a second loop for the hash took three)
        flagged = False
        cand = -1  # the token that may have letters swapped, -2 for more than one
        nt = 0
        q = a
        while q < b:
            c = data[q]
            if c == 32:
                q += 1
                continue
            s0 = q
            digit = _is_digit(c)
            h = np.uint64(_FNV_OFFSET)
            while True:
                h = (h ^ np.uint64(c)) * np.uint64(_FNV_PRIME)
                q += 1
                if q >= b:
                    break
                c = data[q]
                if c == 32 or _is_digit(c) != digit:
                    break
            tok_s[nt] = s0
            tok_e[nt] = q
            wid = _find(h, data, s0, q, tab, vocab)
            if wid >= 0:
                codes[nt] = wid
                if tab[flags + wid] & F_TRIGGER:
                    flagged = True
            else:
                codes[nt] = -(nt + 1)
                if (
                    cand != -2
                    and q - s0 >= _SWAP_MIN
                    and not digit
                    and data[s0] >= 97
                    and _may_swap(h, swaps)
                ):
                    cand = nt if cand == -1 else -2
            nt += 1
        swapped[n + i] = 0 if cand == -1 else (-1 if cand == -2 else tok_e[cand] - tok_s[cand])
        if cand != -1:
            swapped[2 * n] += 1
        o0 = o
        if not flagged:
            for t in range(nt - 1):
                c = codes[t]
                if c >= 0 and tab[flags + c] & F_HEAD and codes[t + 1] >= 0:
                    if _is_head(c, codes[t + 1], tab):
                        flagged = True
                        break
        if not flagged:
            # as normalized: the spacing kept, a space where digits touch letters (where
            # one token ends as the next starts); copied a run at a time
            run = a
            for t in range(nt - 1):
                e = tok_e[t]
                if e == tok_s[t + 1]:
                    w = e - run
                    out[o : o + w] = data[run:e]
                    o += w
                    out[o] = 32
                    o += 1
                    run = e
                if t + 1 == cand:
                    swapped[i] = o - o0 + tok_s[cand] - run
            if cand == 0:
                swapped[i] = tok_s[0] - a
            w = b - run
            out[o : o + w] = data[run:b]
            o += w
            continue
        arr, m = _rewrite(codes, nt, words, kept, res, tab, data, tok_s)
        for j in range(m):
            if j:
                out[o] = 32
                o += 1
            c = arr[j]
            if c >= 0:
                va = tab[vstart + c]
                w = tab[vstart + c + 1] - va
                out[o : o + w] = vocab[va : va + w]
            else:
                t = -c - 1
                if t == cand:
                    swapped[i] = o - o0
                w = tok_e[t] - tok_s[t]
                out[o : o + w] = data[tok_s[t] : tok_e[t]]
            o += w
    return o
