"""The numbers guard's partition key of a batch of texts, in numba.

Near dedup compares only requests with equal numbers (:func:`stratabatch.dedup.number_signature`:
sign and value, "-5" != "5", "1,000" == "1000" != "1.000", "007" == "7", "2.50" == "2.5"). The
dedup pass needs no more than a key per text that is equal exactly when the signatures are, so
this module computes it without making the signature: one kernel call reads a batch's ASCII
texts, finds their numbers as the signature's regular expression does, normalizes each the same
way, and sums a keyed 64-bit hash of each normalized number (a multiset hash: order and sorting
do not matter, repeats do). Texts that are not ASCII take the Python signature, whose numbers
are hashed by the same function, so "order 5" and "commande 5" (with an accent) meet.

The key is 0 for a text without numbers, and otherwise a non-negative int64 (63 bits), unequal
for unequal signatures except by a 2^-63 accident. The hash is keyed per process
(:data:`SEED`, random), so texts cannot be crafted offline to share a partition. Numba
kernels, ``cache=True``; this module imports numba.
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit

from .kernels import PRIME64_1, PRIME64_2, PRIME64_5, rotl
from .textkernels import fmix

__all__ = ["SEED", "number_keys", "signature_key"]

SEED = np.uint64(int.from_bytes(os.urandom(8), "little"))
"""This process's key of the number hash (the partition keys never leave the process)."""

_MASK = np.uint64(0x7FFF_FFFF_FFFF_FFFF)
_DIGITS = "0123456789"


@njit(cache=True)
def _digit(b):
    return 48 <= b <= 57


@njit(cache=True)
def _word(b):
    """ASCII ``\\w``: a letter, a digit or "_"."""
    return (48 <= b <= 57) or (65 <= b <= 90) or (97 <= b <= 122) or b == 95


@njit(cache=True)
def _token_hash(buf, n, seed):
    """A keyed 64-bit hash of buf[:n] (an XXH64-style byte loop and its final avalanche)."""
    h = seed + PRIME64_5 + np.uint64(n)
    for i in range(n):
        h = rotl((h ^ np.uint64(buf[i])) * PRIME64_1, 31) * PRIME64_2
    return fmix(h)


@njit(cache=True)
def _separated(data, q, r, sep, min_groups):
    """Whether data[q:r] is 1-3 digits then at least ``min_groups`` groups of ``sep`` and
    exactly 3 digits, and nothing else (the signature's thousands patterns)."""
    first = 0
    p = q
    while p < r and _digit(data[p]):
        p += 1
        first += 1
    if first < 1 or first > 3:
        return False
    groups = 0
    while p < r:
        if data[p] != sep:
            return False
        p += 1
        k = 0
        while p < r and _digit(data[p]):
            p += 1
            k += 1
        if k != 3:
            return False
        groups += 1
    return groups >= min_groups


@njit(cache=True)
def _normalize(data, q, r, negative, tmp, buf):
    """Write the signature's form of the number data[q:r] (digits with "." and "," between
    them) into buf; return its length (tmp: scratch as long). As
    :func:`stratabatch.dedup.number_signature`."""
    commas = 0
    dots = 0
    for p in range(q, r):
        if data[p] == 44:
            commas += 1
        elif data[p] == 46:
            dots += 1
    # the separators that stay: none (thousands), a decimal comma as a point, or the dots
    n = 0
    if (commas and not dots and _separated(data, q, r, 44, 1)) or (
        dots and not commas and _separated(data, q, r, 46, 2)
    ):
        for p in range(q, r):
            if _digit(data[p]):
                tmp[n] = data[p]
                n += 1
    elif commas == 1 and dots == 0:
        for p in range(q, r):
            tmp[n] = 46 if data[p] == 44 else data[p]
            n += 1
    else:
        for p in range(q, r):
            if data[p] != 44:
                tmp[n] = data[p]
                n += 1
    point = n
    for i in range(n):
        if tmp[i] == 46:
            point = i
            break
    out = 1  # buf[0]: room for a sign
    z = 0
    while z < point and tmp[z] == 48:  # the whole part without leading zeros, or "0"
        z += 1
    if z == point:
        buf[out] = 48
        out += 1
    else:
        for i in range(z, point):
            buf[out] = tmp[i]
            out += 1
    # the fraction: the digits after the first point (later points dropped), trailing zeros
    # dropped; none left: no point either
    last = -1
    for i in range(point + 1, n):
        if tmp[i] != 46 and tmp[i] != 48:
            last = i
    if last >= 0:
        buf[out] = 46
        out += 1
        for i in range(point + 1, last + 1):
            if tmp[i] != 46:
                buf[out] = tmp[i]
                out += 1
    if negative and not (out == 2 and buf[1] == 48):  # "-0" is "0"
        buf[0] = 45
        return 0, out
    return 1, out


@njit(cache=True)
def _number_keys(data, lens, seed, out):
    """out[t] = the partition key of ASCII text t of data (the texts one after another, each
    ``lens[t]`` bytes and one separator byte): the sum of
    the keyed hashes of its normalized numbers, masked to 63 bits (0: no number). The numbers
    are what ``(?<![\\w.,])([-+]?)(\\d+(?:[.,]\\d+)*)`` matches, left to right."""
    widest = 0
    for t in range(len(lens)):
        if lens[t] > widest:
            widest = lens[t]
    tmp = np.empty(widest + 2, np.uint8)
    buf = np.empty(widest + 2, np.uint8)
    s = 0
    for t in range(len(lens)):
        if t:
            s += lens[t - 1] + 1  # (the separator)
        e = s + lens[t]
        acc = np.uint64(0)
        found = False
        p = s
        while p < e:
            b = data[p]
            q = p
            if b == 45 or b == 43:  # a sign belongs to the number when a digit follows
                if p + 1 < e and _digit(data[p + 1]):
                    q = p + 1
                else:
                    p += 1
                    continue
            elif not _digit(b):
                p += 1
                continue
            if p > s:  # the look-behind: not after a word character, "." or ","
                c = data[p - 1]
                if _word(c) or c == 46 or c == 44:
                    p += 1
                    continue
            r = q
            while r < e and _digit(data[r]):
                r += 1
            while r + 1 < e and (data[r] == 46 or data[r] == 44) and _digit(data[r + 1]):
                r += 1
                while r < e and _digit(data[r]):
                    r += 1
            a, z = _normalize(data, q, r, b == 45, tmp, buf)
            acc += _token_hash(buf[a:z], z - a, seed)
            found = True
            p = r
        out[t] = (acc & _MASK) | np.uint64(1) if found else np.uint64(0)


@njit(cache=True)
def _token_keys(data, lens, seed, out):
    """out[t] = the keyed hash of token t of data (normalized numbers the Python signature
    made, laid out as :func:`_number_keys` reads its texts)."""
    s = 0
    for t in range(len(lens)):
        if t:
            s += lens[t - 1] + 1
        out[t] = _token_hash(data[s : s + lens[t]], lens[t], seed)


def _joined(items: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The layout both kernels read: the UTF-8 of ``items`` joined by one separator byte, and
    each one's length in bytes."""
    raw = [t.encode() for t in items]
    lens = np.fromiter(map(len, raw), np.int64, len(raw))
    joined = b"\x1f".join(raw)
    return (np.frombuffer(joined, np.uint8) if joined else np.zeros(1, np.uint8)), lens


def signature_key(signature: tuple[str, ...]) -> int:
    """The partition key of a number signature (what :func:`number_keys` gives its text)."""
    if not signature:
        return 0
    data, lens = _joined(list(signature))
    hashes = np.empty(len(signature), np.uint64)
    _token_keys(data, lens, SEED, hashes)
    return int((hashes.sum(dtype=np.uint64) & _MASK) | np.uint64(1))


def number_keys(texts: list[str]) -> list[int]:
    """The partition key of each text's numbers: equal exactly when their
    :func:`~stratabatch.dedup.number_signature` are (0: no number). One kernel call for the
    ASCII texts; the others take the Python signature (Unicode digits and minus, NFKC)."""
    if not texts:
        return []
    joined = "\x1f".join(texts)
    if joined.isascii():  # :func:`_joined`'s layout, one encode: a byte a character
        if not any(d in joined for d in _DIGITS):  # most batches: no number at all (ten
            return [0] * len(texts)  # substring scans: ~1 us for 256 texts, a regex ~47)
        data = np.frombuffer(joined.encode(), np.uint8)  # (not empty: it holds a digit)
        lens = np.fromiter(map(len, texts), np.int64, len(texts))
        out = np.empty(len(texts), np.uint64)
        _number_keys(data, lens, SEED, out)
        return out.view(np.int64).tolist()
    from .dedup import number_signature  # (here: an import statement costs ~1-3 us a call)

    keys = [0] * len(texts)
    ascii_at = []
    for i, t in enumerate(texts):
        if t.isascii():
            ascii_at.append(i)
        else:
            keys[i] = signature_key(number_signature(t))
    if ascii_at:
        for i, k in zip(ascii_at, number_keys([texts[i] for i in ascii_at]), strict=True):
            keys[i] = k
    return keys
