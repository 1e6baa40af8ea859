"""The hashing embedder's kernels: feature hashing of a batch of texts and, in the same pass,
the key words of each text for the word index.

:func:`hashed_embed` serves :meth:`stratabatch.embed.HashingEmbedder.embed`;
:func:`hashed_embed_profiled` serves its ``embed_profiled`` (the key words of
:mod:`stratabatch.wordkeys`). Pure functions of numpy arrays, ``cache=True``; this module
imports numba.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros

from .pairs import may_be_typos
from .textkernels import SPACE, decode_utf8, fmix, in_sorted, step, text_bounds, tokenize, word_hash

__all__ = ["hashed_embed", "hashed_embed_profiled"]

_SEED_NGRAM = np.uint64(0x6E6772616D5F3335)  # domain seeds keep n-gram and word buckets apart
_SEED_EMPTY = np.uint64(0x656D7074795F7478)
_SEED_ANAGRAM = np.uint64(0x616E616772616D5F)


@njit(cache=True)
def _add_feature(out, row, h, weight, dim):
    # high 32 bits pick the bucket (multiply-shift, no modulo bias worth noting), bit 0 the sign
    bucket = ((h >> np.uint64(32)) * np.uint64(dim)) >> np.uint64(32)
    if h & np.uint64(1):
        out[row, bucket] -= weight
    else:
        out[row, bucket] += weight


@njit(cache=True, inline="always")
def _counted_letters_hash(cps, a, b):
    """(True, the step chain of _anagram_hash over the sorted cps[a:b]) without sorting, for
    a word of at most 15 ASCII lowercase letters or digits; (False, 0) for another word.

    Each symbol is counted in a 4-bit lane of two 64-bit words (26 lanes, a count of at
    most 15), then the lanes are read in order (trailing zeros), each symbol stepped as
    many times as counted: the same sequence of steps as over the sorted symbols. The
    insertion sort's data-dependent branches mispredict on most words."""
    if b - a > 15:
        return False, np.uint64(0)
    base = 97 if cps[a] >= 97 else 48
    lo = np.uint64(0)
    hi = np.uint64(0)
    for q in range(a, b):
        d = cps[q] - base
        if d < 0 or d >= 26:
            return False, np.uint64(0)
        v = np.uint64(1) << np.uint64((4 * d) & 63)
        if d < 16:
            lo += v
        else:
            hi += v
    h = _SEED_ANAGRAM
    x = lo
    while x:
        nib = trailing_zeros(x) >> 2
        sh = np.uint64(4 * nib)
        for _ in range((x >> sh) & np.uint64(15)):
            h = step(h, base + nib)
        x &= ~(np.uint64(15) << sh)
    x = hi  # (a second loop, not a loop over the two words: measured faster)
    while x:
        nib = trailing_zeros(x) >> 2
        sh = np.uint64(4 * nib)
        for _ in range((x >> sh) & np.uint64(15)):
            h = step(h, base + 16 + nib)
        x &= ~(np.uint64(15) << sh)
    return True, h


@njit(cache=True)
def _anagram_hash(cps, a, b, scratch):
    """Hash of the sorted letters of cps[a:b]: equal for words that differ by a transposition."""
    m = b - a
    counted, h = _counted_letters_hash(cps, a, b)
    if counted:
        return fmix(h ^ np.uint64(m))
    for q in range(m):
        v = cps[a + q]
        r = q
        while r > 0 and scratch[r - 1] > v:  # insertion sort: words are short
            scratch[r] = scratch[r - 1]
            r -= 1
        scratch[r] = v
    h = _SEED_ANAGRAM
    for q in range(m):
        h = step(h, scratch[q])
    return fmix(h ^ np.uint64(m))


@njit(cache=True)
def _sum_squares(out, i):
    """Sum of squares of out[i] in float64, as 8 interleaved partial sums added in a fixed
    order: the chains are independent, so the loop vectorizes, and the result is the same on
    every machine (no reassociation left to the compiler). One long sequential chain cost
    ~0.4 us a 384-d row (measured), a quarter of the whole embedding."""
    dim = out.shape[1]
    # (eight scalars, not an array: an array here was a heap allocation a row)
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    full = dim - dim % 8
    for b in range(0, full, 8):
        v0 = np.float64(out[i, b])
        v1 = np.float64(out[i, b + 1])
        v2 = np.float64(out[i, b + 2])
        v3 = np.float64(out[i, b + 3])
        v4 = np.float64(out[i, b + 4])
        v5 = np.float64(out[i, b + 5])
        v6 = np.float64(out[i, b + 6])
        v7 = np.float64(out[i, b + 7])
        a0 += v0 * v0
        a1 += v1 * v1
        a2 += v2 * v2
        a3 += v3 * v3
        a4 += v4 * v4
        a5 += v5 * v5
        a6 += v6 * v6
        a7 += v7 * v7
    for b in range(full, dim):
        v = np.float64(out[i, b])
        t = b - full
        if t == 0:
            a0 += v * v
        elif t == 1:
            a1 += v * v
        elif t == 2:
            a2 += v * v
        elif t == 3:
            a3 += v * v
        elif t == 4:
            a4 += v * v
        elif t == 5:
            a5 += v * v
        else:
            a6 += v * v
    return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))


@njit(cache=True, inline="always")  # (a call would pass ~15 arrays, refcounted)
def _embed_row(
    out,
    i,
    cps,
    nt,
    tok_start,
    tok_end,
    tok_hash,
    tok_keep,
    seq,
    scratch,
    stop_hashes,
    weights,
    stop_bits,
):
    """Row i of out from the nt tokens of one text (hashed already): see hashed_embed."""
    dim = out.shape[1]
    w_word = weights[3]
    w_anagram = weights[4]
    out[i, :] = 0.0
    n_keep = 0
    for t in range(nt):
        tok_keep[t] = not _in_set(tok_hash[t], stop_hashes, stop_bits)
        if tok_keep[t]:
            n_keep += 1
    if n_keep == 0:
        for t in range(nt):
            tok_keep[t] = True
    # " tok1 tok2 ... " as code points: the spaces mark word starts and ends for the n-grams
    L = 0
    seq[L] = SPACE
    L += 1
    text_h = _SEED_EMPTY
    for t in range(nt):
        if not tok_keep[t]:
            continue
        for q in range(tok_start[t], tok_end[t]):
            seq[L] = cps[q]
            L += 1
        seq[L] = SPACE
        L += 1
        if w_word != 0:
            _add_feature(out, i, tok_hash[t], w_word, dim)
        if w_anagram != 0:
            ah = _anagram_hash(cps, tok_start[t], tok_end[t], scratch)
            _add_feature(out, i, ah, w_anagram, dim)
        text_h = step(text_h, tok_hash[t])
    for p in range(L - 2):
        h = _SEED_NGRAM
        for k in range(5):
            if p + k >= L:
                break
            h = step(h, seq[p + k])
            if k >= 2:
                _add_feature(out, i, fmix(h ^ np.uint64(k)), weights[k - 2], dim)
    if nt == 0:
        _add_feature(out, i, fmix(_SEED_EMPTY), np.float32(1.0), dim)
    norm = _sum_squares(out, i)
    if norm == 0.0:
        # every feature cancelled against another of opposite sign (rare on tiny texts)
        _add_feature(out, i, fmix(text_h), np.float32(1.0), dim)
        norm = 1.0
    inv = 1.0 / np.sqrt(norm)
    for b in range(dim):
        out[i, b] = np.float32(out[i, b] * inv)


@njit(cache=True, nogil=True)  # large passes run in a worker thread
def hashed_embed(data, size, stop_hashes, weights, out):
    """Fill out[i] with the L2-normalized hashed features of the i-th text of data[:size].

    data holds out.shape[0] texts as UTF-8 separated by 0x1F bytes, already normalized
    (casefolded, punctuation as spaces). Tokens are split at spaces and digit/letter changes;
    tokens whose word hash is in the sorted stop_hashes are dropped unless every token is one.
    Features, each added with a hash-chosen bucket and sign: character n-grams (n = 3, 4, 5;
    weights[0..2]) over " tok1 tok2 ... tokK ", words (weights[3]) and sorted-letter word keys
    (weights[4], so a transposition typo keeps one). An empty text gets one fixed marker
    feature; a row whose features all cancel falls back to a marker derived from its words, so
    no row is ever zero.
    """
    none = np.empty(0, dtype=np.int64)
    _embed_texts(
        data,
        size,
        stop_hashes,
        weights,
        out,
        True,
        False,
        np.empty(0, dtype=np.uint64),
        np.empty(0, dtype=np.uint64),
        np.empty((0, 4), dtype=np.int64),
        none,
        np.empty(0, dtype=np.uint64),
        0,
        none,
        none,
        none,
        none,
        none,
        np.empty(0, dtype=np.uint32),
        0,
        0,
    )


# --------------------------------------------------------------------------------------------
# Key words of a text for the word index (stratabatch.wordkeys), alongside its embedding
# --------------------------------------------------------------------------------------------

_COMMON_BIT = np.int64(1 << 62)

_RANK_LOW = np.uint64((1 << 62) - 1)

_UNPROFILED = -1  # a text the kernel leaves to the Python reference (wordkeys.word_profile)


_FILTER_BITS = 4096  # bits of a word set's filter (see _filter)


@njit(cache=True)
def _filter(hashes, bits):
    """Set bit (h mod 4096) of ``bits`` for each hash of a sorted word set."""
    for t in range(hashes.shape[0]):
        h = hashes[t] & np.uint64(_FILTER_BITS - 1)
        bits[h >> np.uint64(6)] |= np.uint64(1) << (h & np.uint64(63))


@njit(cache=True, inline="always")
def _in_set(h, hashes, bits):
    """in_sorted(h, hashes), with the set's filter first: most words are in none of the
    small sets (stop words, common and ignorable words), and one bit test answers for them
    instead of a binary search whose branches mispredict."""
    b = h & np.uint64(_FILTER_BITS - 1)
    if not (bits[b >> np.uint64(6)] >> (b & np.uint64(63))) & np.uint64(1):
        return False
    return in_sorted(h, hashes)


@njit(cache=True)
def _osa_within(cps, a, la, w, lw, limit, prev2, prev, cur):
    """Whether the edit distance with adjacent transpositions (optimal string alignment)
    between cps[a:a+la] and w[:lw] is at most limit (the guards' _osa_distance)."""
    for j in range(lw + 1):
        prev[j] = j
    for i in range(1, la + 1):
        cur[0] = i
        best = i
        ai = cps[a + i - 1]
        for j in range(1, lw + 1):
            cost = 0 if ai == w[j - 1] else 1
            v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ai == w[j - 2] and cps[a + i - 2] == w[j - 1]:
                v = min(v, prev2[j - 2] + 1)
            cur[j] = v
            best = min(best, v)
        if best > limit:
            return False
        for j in range(lw + 1):
            prev2[j] = prev[j]
            prev[j] = cur[j]
    return prev[lw] <= limit


@njit(cache=True)
def _same_word(cps, a, la, w, lw):
    if la != lw:
        return False
    for q in range(la):
        if cps[a + q] != w[q]:
            return False
    return True


@njit(cache=True, inline="always")  # (a call would pass ~15 arrays, refcounted)
def _profile_row(
    cps,
    nt,
    tok_start,
    tok_end,
    tok_hash,
    common,
    ignorable,
    fillers,
    fill_at,
    dictionary,
    max_words,
    kh,
    ks,
    kign,
    order_scratch,
    order_small,
    osa,
    pr,
    ps,
    pc,
    used,
    common_bits,
    ign_bits,
):
    """The key words of one text (see stratabatch.wordkeys.word_profile): (rank, shape,
    count) of each distinct key word written to pr/ps/pc from ``used``; returns how many, or
    _UNPROFILED for a text the reference must do: a non-ASCII word (its shape needs
    str.isalpha), or a word that may be a mistyped filler (needs the guards' typo rule)."""
    k = 0
    for t in range(nt):
        a = tok_start[t]
        b = tok_end[t]
        mask = np.uint64(0)
        alpha = True
        for q in range(a, b):
            cp = cps[q]
            if cp >= 128:
                return _UNPROFILED
            mask |= np.uint64(1) << np.uint64(cp & 31)
            if not (97 <= cp <= 122 or 65 <= cp <= 90):
                alpha = False
        L = b - a
        shape = np.int64(mask) | (np.int64(min(L, 0xFFFF)) << 32) | (np.int64(alpha) << 48)
        h = tok_hash[t]
        ign = _in_set(h, ignorable, ign_bits)
        if not ign and alpha and L >= 4:
            # a typo of a filler of 5+ letters is ignorable (stratabatch.guards.ignorable)
            # when the guards' typo rule accepts it: the reference decides those texts
            c0 = cps[a]
            for f in range(fill_at[c0], fill_at[c0 + 1]):  # the fillers starting like it
                fl = fillers[f, 1]
                if (
                    abs(fl - L) <= 1
                    and may_be_typos(shape, fillers[f, 2])
                    and _osa_within(
                        cps,
                        a,
                        L,
                        fillers[f, 4:],
                        fl,
                        2 if min(fl, L) >= 8 else 1,
                        osa[0],
                        osa[1],
                        osa[2],
                    )
                    and (
                        not (fillers[f, 3] and in_sorted(h, dictionary))
                        or _same_word(cps, a, L, fillers[f, 4:], fl)
                    )
                ):
                    return _UNPROFILED  # (two different dictionary words: never typos)
        kh[k] = h
        ks[k] = shape
        kign[k] = ign
        if L < 3 or _in_set(h, common, common_bits):
            kign[k] = kign[k] | 2  # (bit 1: a common word, ranked after the others)
        k += 1
    if k == 0:
        return 0
    if k <= 32:  # (a text's few words: an insertion sort, no allocation)
        order = order_small
        for j in range(k):
            v = kh[j]
            r = j
            while r > 0 and kh[order[r - 1]] > v:
                order[r] = order[r - 1]
                r -= 1
            order[r] = j
    else:
        order = np.argsort(kh[:k])
    distinct = 0
    for j in range(k):
        if j == 0 or kh[order[j]] != kh[order[j - 1]]:
            distinct += 1
    if distinct > max_words:
        # a long document: its five lowest ranks only, count -1 (not pre-checked)
        n_r = 0
        for j in range(k):
            t = order[j]
            if (j == 0 or kh[t] != kh[order[j - 1]]) and not kign[t] & 1:
                r = np.int64(kh[t] & _RANK_LOW) | 1
                if kign[t] & 2:
                    r |= _COMMON_BIT
                order_scratch[n_r] = r
                n_r += 1
        low = np.sort(order_scratch[:n_r])
        w = min(5, n_r)
        for j in range(w):
            pr[used + j] = low[j]
            ps[used + j] = 0
            pc[used + j] = -1
        return w
    w = 0
    j = 0
    while j < k:
        t = order[j]
        c = 1
        while j + c < k and kh[order[j + c]] == kh[t]:
            c += 1
        if not kign[t] & 1:
            r = np.int64(kh[t] & _RANK_LOW) | 1
            if kign[t] & 2:
                r |= _COMMON_BIT
            pr[used + w] = r
            ps[used + w] = ks[t]
            pc[used + w] = c
            w += 1
        j += c
    return w


@njit(cache=True, nogil=True)  # large passes run in a worker thread
def hashed_embed_profiled(
    data,
    size,
    stop_hashes,
    weights,
    out,
    common,
    ignorable,
    fillers,
    fill_at,
    dictionary,
    max_words,
    pr,
    ps,
    pc,
    poff,
    plen,
    crc_table,
    tag_mod,
    tag_shift,
):
    """hashed_embed, and the key words of each text for the word index in the same pass over
    its tokens (the texts are canonical: stratabatch.canon): text i's (rank, shape, count)
    triples are pr/ps/pc[poff[i] : poff[i] + plen[i]], plen[i] = -1 for a text the Python
    reference must do (_profile_row). The caller sizes pr/ps/pc for
    sum(min(tokens, max_words + 1)). Returns their fill.

    With ``tag_mod`` > 0 the shapes of each profiled text also carry its squash tag
    (stratabatch.pairs.squash_tags of the text's bytes in data, ``<< tag_shift``), as
    stratabatch.wordkeys.tag_profiles puts it there: for a caller whose data holds each
    text's bytes as the tag reads them (checked by the caller)."""
    return _embed_texts(
        data,
        size,
        stop_hashes,
        weights,
        out,
        True,
        True,
        common,
        ignorable,
        fillers,
        fill_at,
        dictionary,
        max_words,
        pr,
        ps,
        pc,
        poff,
        plen,
        crc_table,
        tag_mod,
        tag_shift,
    )


@njit(cache=True, nogil=True)
def hashed_profiles(
    data,
    size,
    stop_hashes,
    weights,
    out,
    common,
    ignorable,
    fillers,
    fill_at,
    dictionary,
    max_words,
    pr,
    ps,
    pc,
    poff,
    plen,
    crc_table,
    tag_mod,
    tag_shift,
):
    """hashed_embed_profiled's key words (and squash tags) without the vectors: ``out`` is
    ``[n, 0]`` (its rows give the texts' count; nothing is written). The key words of a text
    are the same as hashed_embed_profiled gives it: its tokens are read the same way, and the
    vector's features never feed them (stratabatch.index: rows whose vector nothing reads
    yet)."""
    return _embed_texts(
        data,
        size,
        stop_hashes,
        weights,
        out,
        False,
        True,
        common,
        ignorable,
        fillers,
        fill_at,
        dictionary,
        max_words,
        pr,
        ps,
        pc,
        poff,
        plen,
        crc_table,
        tag_mod,
        tag_shift,
    )


@njit(cache=True, nogil=True)
def _embed_texts(
    data,
    size,
    stop_hashes,
    weights,
    out,
    vectors,
    profile,
    common,
    ignorable,
    fillers,
    fill_at,
    dictionary,
    max_words,
    pr,
    ps,
    pc,
    poff,
    plen,
    crc_table,
    tag_mod,
    tag_shift,
):
    """hashed_embed (without ``vectors``: no row of ``out`` is written), and with
    ``profile`` the key words too (hashed_embed_profiled, hashed_profiles)."""
    n = out.shape[0]
    if n == 0:
        return 0
    starts, ends = text_bounds(data, size, n)
    longest = 1
    for i in range(n):
        longest = max(longest, ends[i] - starts[i])
    cps = np.empty(longest + 2, dtype=np.int32)
    seq = np.empty(longest * 2 + 2, dtype=np.int32)
    tok_start = np.empty(longest + 1, dtype=np.int64)
    tok_end = np.empty(longest + 1, dtype=np.int64)
    tok_hash = np.empty(longest + 1, dtype=np.uint64)
    tok_keep = np.empty(longest + 1, dtype=np.bool_)
    scratch = np.empty(longest + 1, dtype=np.int32)
    kh = np.empty(longest + 1, dtype=np.uint64)
    ks = np.empty(longest + 1, dtype=np.int64)
    kign = np.empty(longest + 1, dtype=np.int64)
    rscratch = np.empty(longest + 1, dtype=np.int64)
    osa = np.empty((3, fillers.shape[1]), dtype=np.int64)  # (filler rows: 4 + their letters)
    order_small = np.empty(32, dtype=np.int64)
    nb = _FILTER_BITS // 64
    bits = np.zeros(3 * nb, dtype=np.uint64)  # filters of the stop, common, ignorable words
    _filter(stop_hashes, bits[:nb])
    if profile:
        _filter(common, bits[nb : 2 * nb])
        _filter(ignorable, bits[2 * nb :])
    used = 0
    for i in range(n):
        m = decode_utf8(data, starts[i], ends[i], cps)
        nt = tokenize(cps, m, tok_start, tok_end)
        for t in range(nt):
            tok_hash[t] = word_hash(cps, tok_start[t], tok_end[t])
        if vectors:
            _embed_row(
                out,
                i,
                cps,
                nt,
                tok_start,
                tok_end,
                tok_hash,
                tok_keep,
                seq,
                scratch,
                stop_hashes,
                weights,
                bits[:nb],
            )
        if not profile:
            continue
        w = _profile_row(
            cps,
            nt,
            tok_start,
            tok_end,
            tok_hash,
            common,
            ignorable,
            fillers,
            fill_at,
            dictionary,
            max_words,
            kh,
            ks,
            kign,
            rscratch,
            order_small,
            osa,
            pr,
            ps,
            pc,
            used,
            bits[nb : 2 * nb],
            bits[2 * nb :],
        )
        poff[i] = used
        plen[i] = w
        if w > 0:
            if tag_mod > 0:  # (pairs.squash_tags and tag_shapes, for this text)
                c = np.uint32(0xFFFFFFFF)
                for u in range(starts[i], ends[i]):
                    x = data[u]
                    if x != 32:
                        c = crc_table[(c ^ np.uint32(x)) & np.uint32(0xFF)] ^ (c >> np.uint32(8))
                tag = (np.int64(c ^ np.uint32(0xFFFFFFFF)) % tag_mod + 1) << tag_shift
                for u in range(used, used + w):
                    ps[u] |= tag
            used += w
    return used
