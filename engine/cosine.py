"""The float rule of near dedup: the cosine that decides a merge, the same on every path.

A merge is decided on the *canonical* cosine of two rows: their dot product accumulated in
float64 (every float32 product is exact in float64) and rounded to float32, compared with
``>=`` against float32(threshold). Fast paths (a reassociated float32 loop, or a float32 BLAS
product) are only trusted when they are farther from the threshold than their worst-case
rounding error (:func:`dot_margin`); pairs inside that margin are recomputed canonically
(:func:`dot_canonical`). So the small-n loop, the BLAS path and the numpy reference all take
the same decisions and report the same similarities, whatever BLAS or SIMD width the machine
has. Numba kernels, ``cache=True``; this module imports numba.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["dot_canonical", "dot_fast", "dot_margin"]

# Reassociation lets LLVM vectorize the float32 dot loop; it touches only the approximate
# cosines, whose error the margin covers. The canonical dot is compiled without it (strictly
# sequential), so its value is the same wherever it is called from.
_FAST = {"reassoc", "contract"}


@njit(cache=True, fastmath=_FAST)
def dot_fast(a, i, b, j):
    """float32 dot of a[i] and b[j], reassociated so that LLVM vectorizes it."""
    acc = np.float32(0.0)
    for k in range(a.shape[1]):
        acc += a[i, k] * b[j, k]
    return acc


@njit(cache=True)
def dot_canonical(a, i, b, j):
    """The canonical cosine: float64 accumulation in index order, rounded to float32."""
    acc = 0.0
    for k in range(a.shape[1]):
        acc += np.float64(a[i, k]) * np.float64(b[j, k])
    return np.float32(acc)


def dot_margin(dim: int) -> np.float32:
    """How far from the threshold a fast cosine of ``dim``-vectors must be to be trusted."""
    # Worst-case error of a float32 dot of two unit vectors in any summation order is about
    # dim * 2**-24; 4x that plus a few ulps keeps every possibly-misjudged pair in the margin.
    return np.float32(4.0 * (dim + 8) * 2.0**-24)
