"""The words of a text, in numba: UTF-8 decoding, tokens, the embedder's word hash, and which
texts a canonical rewrite may touch.

Every kernel here reads texts as the hashing embedder does (normalized, :mod:`stratabatch.text`)
and hashes a word as it does (:func:`word_hash`, built on XXH64's primes), so the word tables
of the canonical text (:mod:`stratabatch.canon`), of the word index
(:mod:`stratabatch.wordkeys`) and of the embedder (:mod:`stratabatch.embedkernels`) all meet
the same hashes. Numba kernels, ``cache=True``; this module imports numba.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .kernels import PRIME64_1, PRIME64_2, PRIME64_3, rotl

__all__ = [
    "SPACE",
    "decode_utf8",
    "fmix",
    "hash_words",
    "in_sorted",
    "pair_hashes",
    "rule_flags",
    "step",
    "text_bounds",
    "tokenize",
    "word_hash",
    "word_hashes",
]

_SEED_WORD = np.uint64(0x776F72645F756E69)
SPACE = 32


@njit(cache=True)
def fmix(h):
    """XXH64's final avalanche of a 64-bit hash."""
    h = h ^ (h >> np.uint64(33))
    h = h * PRIME64_2
    h = h ^ (h >> np.uint64(29))
    h = h * PRIME64_3
    return h ^ (h >> np.uint64(32))


@njit(cache=True)
def step(h, cp):
    """One code point (or any int) mixed into a running 64-bit hash."""
    return rotl((h ^ np.uint64(cp)) * PRIME64_1, 31)


@njit(cache=True)
def decode_utf8(data, start, end, cps):
    """Decode data[start:end] (valid UTF-8, surrogates allowed) into cps; return the count."""
    m = 0
    p = start
    while p < end:
        b = np.int32(data[p])
        if b < 0x80:
            cp = b
            p += 1
        elif b < 0xE0:
            cp = ((b & 0x1F) << 6) | (np.int32(data[p + 1]) & 0x3F)
            p += 2
        elif b < 0xF0:
            cp = ((b & 0x0F) << 12) | ((np.int32(data[p + 1]) & 0x3F) << 6)
            cp |= np.int32(data[p + 2]) & 0x3F
            p += 3
        else:
            cp = ((b & 0x07) << 18) | ((np.int32(data[p + 1]) & 0x3F) << 12)
            cp |= ((np.int32(data[p + 2]) & 0x3F) << 6) | (np.int32(data[p + 3]) & 0x3F)
            p += 4
        cps[m] = cp
        m += 1
    return m


@njit(cache=True)
def _char_class(cp):
    if cp == SPACE:
        return 0
    if 48 <= cp <= 57:
        return 1
    return 2


@njit(cache=True)
def in_sorted(h, stop_hashes):
    """Whether ``h`` is in the sorted uint64 array ``stop_hashes`` (binary search)."""
    lo = 0
    hi = stop_hashes.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if stop_hashes[mid] < h:
            lo = mid + 1
        else:
            hi = mid
    return lo < stop_hashes.shape[0] and stop_hashes[lo] == h


@njit(cache=True)
def tokenize(cps, m, tok_start, tok_end):
    """Split cps[:m] into tokens at spaces and at digit/non-digit changes; return the count."""
    nt = 0
    prev = 0
    for q in range(m):
        cls = _char_class(cps[q])
        if cls != prev:
            if prev != 0:
                tok_end[nt] = q
                nt += 1
            if cls != 0:
                tok_start[nt] = q
        prev = cls
    if prev != 0:
        tok_end[nt] = m
        nt += 1
    return nt


@njit(cache=True)
def word_hash(cps, a, b):
    h = _SEED_WORD
    for q in range(a, b):
        h = step(h, cps[q])
    return fmix(h ^ np.uint64(b - a))


def hash_words(words: list[str]) -> np.ndarray:
    """The embedder's 64-bit hash of each (normalized) word, uint64, in order (word_hashes over
    their UTF-8, lone surrogates allowed)."""
    raw = [w.encode("utf-8", "surrogatepass") for w in words]
    lengths = np.array([len(r) for r in raw], dtype=np.int64)
    ends = np.cumsum(lengths)
    data = np.frombuffer(b"".join(raw) or b"\0", dtype=np.uint8)
    return word_hashes(data, ends - lengths, ends)


@njit(cache=True)
def word_hashes(data, starts, ends):
    """Hash each (already normalized) word data[starts[i]:ends[i]] as the embedder does."""
    n = starts.shape[0]
    out = np.empty(n, dtype=np.uint64)
    cps = np.empty(max(1, int((ends - starts).max()) if n else 1), dtype=np.int32)
    for i in range(n):
        m = decode_utf8(data, starts[i], ends[i], cps)
        out[i] = word_hash(cps, 0, m)
    return out


@njit(cache=True)
def text_bounds(data, size, n):
    """Start and end of each of the n texts of data[:size] (separated by 0x1F bytes)."""
    starts = np.empty(n, dtype=np.int64)
    ends = np.empty(n, dtype=np.int64)
    i = 0
    starts[0] = 0
    for p in range(size):
        if data[p] == 0x1F and i + 1 < n:
            ends[i] = p
            i += 1
            starts[i] = p + 1
    ends[n - 1] = size
    return starts, ends


# --------------------------------------------------------------------------------------------
# Which texts a canonical rewrite may touch (stratabatch.canon), for a whole batch at once
# --------------------------------------------------------------------------------------------

_SEED_PAIR = np.uint64(0x706169725F6B6579)


@njit(cache=True)
def _pair_hash(h1, h2):
    return fmix(h1 ^ rotl(h2, 23) ^ _SEED_PAIR)


@njit(cache=True)
def pair_hashes(h1, h2):
    """The hash rule_flags gives the word pair (h1[i], h2[i]) (word hashes: word_hashes)."""
    out = np.empty(h1.shape[0], dtype=np.uint64)
    for i in range(h1.shape[0]):
        out[i] = _pair_hash(h1[i], h2[i])
    return out


@njit(cache=True, nogil=True)
def rule_flags(data, size, words, pairs, flags):
    """flags[i] = whether text i of data[:size] (UTF-8, 0x1F between texts, normalized: words
    apart by spaces) has a word whose hash is in the sorted ``words`` or two words side by side
    whose pair hash is in the sorted ``pairs``."""
    n = flags.shape[0]
    if n == 0:
        return
    starts, ends = text_bounds(data, size, n)
    longest = 1
    for i in range(n):
        longest = max(longest, ends[i] - starts[i])
    cps = np.empty(longest + 1, dtype=np.int32)
    for i in range(n):
        flags[i] = False
        m = decode_utf8(data, starts[i], ends[i], cps)
        prev = np.uint64(0)
        have_prev = False
        q = 0
        while q < m:
            if cps[q] <= 32:
                q += 1
                continue
            a = q
            while q < m and cps[q] > 32:
                q += 1
            h = word_hash(cps, a, q)
            if in_sorted(h, words) or (have_prev and in_sorted(_pair_hash(prev, h), pairs)):
                flags[i] = True
                break
            prev = h
            have_prev = True
