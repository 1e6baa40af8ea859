"""Whether two rows may merge, in numba: the word-shape typo rule and the residue pre-check.

A word's shape (:func:`stratabatch.wordkeys.word_shape`) packs its letters, length and
whether it is alphabetic in one int; :func:`may_be_typos` is the kernel twin of
:func:`stratabatch.wordkeys.may_be_typos`, a necessary condition of the typo rule
(:func:`stratabatch.lexicon.is_typo_of`). Numba kernels, ``cache=True``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["may_be_typos", "popcount"]


@njit(cache=True)
def popcount(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@njit(cache=True)
def may_be_typos(a, b):
    """:func:`stratabatch.wordkeys.may_be_typos` on two word shapes."""
    la = (a >> 32) & 0xFFFF
    lb = (b >> 32) & 0xFFFF
    if ((a >> 48) & (b >> 48) & 1) == 0 or min(la, lb) < 4:
        return False
    limit = 2 if min(la, lb) >= 8 else 1
    return abs(la - lb) <= limit and popcount(np.uint64((a ^ b) & 0xFFFFFFFF)) <= 2 * limit
