"""The sign-sketch table: leaders filed under bands of their 128-bit sign sketches.

Each row gets a 128-bit sign sketch (signs of its products with 128 fixed Gaussian directions:
random-hyperplane LSH, one BLAS product per pass). The bits are cut into bands; each leader is
filed under each band's value (and its partition) in one hash table
(:mod:`stratabatch.hashtable`); a new row probes each band's value and the value with its least
certain bit flipped (multi-probe), drops rows whose whole sketches differ in more bits than a
pair at the threshold plausibly would, and confirms the rest with the exact cosine. Its cost
per row does not grow with the number of leaders (as long as leaders are not all near each
other); it can miss a pair the exhaustive path would merge, with a probability bounded by the
band design (measured in tests/test_index.py and perf/bench_dedup_depth.py). It never merges a
pair the exhaustive path would not: every candidate passes the same exact cosine.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .candidates import MAX_CANDIDATES
from .hashtable import LeaderTable, band_key, insert
from .pairs import WordData

__all__ = ["SKETCH_BITS", "SKETCH_FOLD", "SketchBasis", "SketchTable", "band_design", "sketch"]

SKETCH_BITS = 128

# The sketch is a hint (the exact cosine decides), so its arithmetic may be reassociated.
_FOLD_FAST = {"reassoc", "contract", "nsz", "arcp"}

_WORDS = SKETCH_BITS // 64

_SKETCH_SEED = 0x5EED_1D3C


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
def _file_row(words, part, band_pos, row, slots, ents, state):
    """File ``row`` under each of its band values (capacity is the caller's job)."""
    pid = part[row]
    for band in range(band_pos.shape[0]):
        h = band_key(_band_value(words, row, band_pos, band), band, pid)
        insert(slots, ents, state, h, row, words[row, 0])


@njit(cache=True)
def _file_rows(words, part, band_pos, rows, slots, ents, state):
    for t in range(rows.shape[0]):
        _file_row(words, part, band_pos, rows[t], slots, ents, state)


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
                keys[i - start, band * probes + p] = band_key(pv, band, pi)


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


class SketchTable(LeaderTable):
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
