"""Numba kernels of the dedup path: XXH64 hashing, cosine leader clustering, feature hashing.

Every kernel is a pure function on numpy arrays (no I/O, no Python objects), compiled with
``cache=True`` so a process pays the JIT cost once per machine, not once per start. This module
imports numba at import time; the package imports it lazily, on the first dedup that needs it.
"""

from __future__ import annotations

import sys
from itertools import accumulate

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = [
    "LEADER_LOOP_MAX_LEADERS",
    "hash_strings",
    "leader_cluster",
    "xxh64_batch",
]

# --------------------------------------------------------------------------------------------
# XXH64 (the public algorithm by Yann Collet, spec: github.com/Cyan4973/xxHash/doc/xxhash_spec.md)
# --------------------------------------------------------------------------------------------

_P1 = np.uint64(0x9E3779B185EBCA87)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_P3 = np.uint64(0x165667B19E3779F9)
_P4 = np.uint64(0x85EBCA77C2B2AE63)
_P5 = np.uint64(0x27D4EB2F165667C5)
_MASK64 = (1 << 64) - 1
_SEED_ZERO = np.uint64(0)


def _readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view: numba compiles one specialization per writeability, so pass one kind."""
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


# The word loads below read memory in native order; XXH64 is defined little-endian.
_LITTLE_ENDIAN = sys.byteorder == "little"


def _unaligned_load(bits: int, name: str):  # noqa: ANN202 - builds a numba intrinsic
    """An intrinsic loading ``bits`` bits of a uint8 array at any (unaligned) byte index as one
    native unsigned integer."""
    result = types.uint64 if bits == 64 else types.uint32

    def typer(typingctx, arr, idx):  # noqa: ARG001 - numba intrinsic signature
        if not (isinstance(arr, types.Array) and arr.dtype == types.uint8):
            return None
        sig = result(arr, types.intp)

        def codegen(context, builder, signature, args):
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            ptr = builder.gep(ary.data, [args[1]])
            wide = builder.bitcast(ptr, ir.IntType(bits).as_pointer())
            # align=1: offsets of variable-length strings are arbitrary, x86/arm64 load them fine
            return builder.load(wide, align=1)

        return sig, codegen

    typer.__name__ = typer.__qualname__ = name
    return intrinsic(typer)


_load_u64 = _unaligned_load(64, "_load_u64")
_load_u32 = _unaligned_load(32, "_load_u32")


@njit(cache=True)
def _read64_bytes(data, i):
    """Assemble a little-endian uint64 byte by byte (portable path for big-endian hosts)."""
    v = np.uint64(0)
    for k in range(8):
        v |= np.uint64(data[i + k]) << np.uint64(8 * k)
    return v


@njit(cache=True)
def _read32_bytes(data, i):
    v = np.uint64(0)
    for k in range(4):
        v |= np.uint64(data[i + k]) << np.uint64(8 * k)
    return v


@njit(cache=True)
def _rotl(x, r):
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@njit(cache=True)
def _round(acc, lane):
    acc = acc + lane * _P2
    acc = _rotl(acc, 31)
    return acc * _P1


@njit(cache=True)
def _merge_round(acc, val):
    acc = acc ^ _round(np.uint64(0), val)
    return acc * _P1 + _P4


@njit(cache=True, nogil=True)  # large passes run in a worker thread
def _xxh64_batch_kernel(data, offsets, seed, little_endian, out):
    n = out.shape[0]
    for s in range(n):
        p = offsets[s]
        end = offsets[s + 1]
        length = end - p
        if length >= 32:
            v1 = seed + _P1 + _P2
            v2 = seed + _P2
            v3 = seed
            v4 = seed - _P1
            limit = end - 32
            while p <= limit:
                if little_endian:
                    v1 = _round(v1, _load_u64(data, p))
                    v2 = _round(v2, _load_u64(data, p + 8))
                    v3 = _round(v3, _load_u64(data, p + 16))
                    v4 = _round(v4, _load_u64(data, p + 24))
                else:
                    v1 = _round(v1, _read64_bytes(data, p))
                    v2 = _round(v2, _read64_bytes(data, p + 8))
                    v3 = _round(v3, _read64_bytes(data, p + 16))
                    v4 = _round(v4, _read64_bytes(data, p + 24))
                p += 32
            h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
            h = _merge_round(h, v1)
            h = _merge_round(h, v2)
            h = _merge_round(h, v3)
            h = _merge_round(h, v4)
        else:
            h = seed + _P5
        h = h + np.uint64(length)
        while p + 8 <= end:
            if little_endian:
                k1 = _round(np.uint64(0), _load_u64(data, p))
            else:
                k1 = _round(np.uint64(0), _read64_bytes(data, p))
            h = h ^ k1
            h = _rotl(h, 27) * _P1 + _P4
            p += 8
        if p + 4 <= end:
            if little_endian:
                w = np.uint64(_load_u32(data, p))
            else:
                w = _read32_bytes(data, p)
            h = h ^ (w * _P1)
            h = _rotl(h, 23) * _P2 + _P3
            p += 4
        while p < end:
            h = h ^ (np.uint64(data[p]) * _P5)
            h = _rotl(h, 11) * _P1
            p += 1
        h = h ^ (h >> np.uint64(33))
        h = h * _P2
        h = h ^ (h >> np.uint64(29))
        h = h * _P3
        h = h ^ (h >> np.uint64(32))
        out[s] = h


def _seed_u64(seed: int) -> np.uint64:
    return _SEED_ZERO if seed == 0 else np.uint64(int(seed) & _MASK64)


def xxh64_batch(data: np.ndarray, offsets: np.ndarray, seed: int = 0) -> np.ndarray:
    """Hash every slice ``data[offsets[i]:offsets[i + 1]]`` with XXH64.

    Args:
        data: Contiguous uint8 buffer holding all keys back to back.
        offsets: int64 array of n + 1 non-decreasing offsets into ``data``.
        seed: XXH64 seed, taken modulo 2**64.

    Returns:
        uint64 array of n hashes, bit-identical to the reference XXH64 of each slice.

    Raises:
        ValueError: If the dtypes are wrong or the offsets are out of range or decreasing.
    """
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 1:
        raise ValueError(
            f"data must be a 1-D uint8 array, got {type(data).__name__} "
            f"{getattr(data, 'dtype', None)} ndim={getattr(data, 'ndim', None)}"
        )
    offsets = np.asarray(offsets)
    if offsets.dtype != np.int64 or offsets.ndim != 1 or offsets.shape[0] < 1:
        raise ValueError(
            f"offsets must be a 1-D int64 array of n + 1 entries, got dtype={offsets.dtype} "
            f"shape={offsets.shape}"
        )
    if not (offsets.flags.c_contiguous and offsets.flags.writeable):
        offsets = np.array(offsets)  # one kernel specialization: C-contiguous, writable
    n = offsets.shape[0] - 1
    # The kernel reads raw memory without bounds checks: validate the layout once here.
    if offsets[0] < 0 or offsets[-1] > data.shape[0] or (n and np.any(np.diff(offsets) < 0)):
        raise ValueError(
            f"offsets must be non-decreasing within [0, {data.shape[0]}], "
            f"got first={offsets[0]} last={offsets[-1]}"
        )
    data = _readonly(np.ascontiguousarray(data))
    out = np.empty(n, dtype=np.uint64)
    _xxh64_batch_kernel(data, offsets, _seed_u64(seed), _LITTLE_ENDIAN, out)
    return out


_EMPTY_BYTES = _readonly(np.zeros(0, dtype=np.uint8))
# Below this many strings a Python running sum beats numpy's per-call overhead (measured).
_SMALL_BATCH = 48


def _offsets(lengths: object, n: int) -> np.ndarray:
    if n < _SMALL_BATCH:
        return np.array([0, *accumulate(lengths)], dtype=np.int64)  # type: ignore[call-overload]
    offsets = np.empty(n + 1, dtype=np.int64)
    offsets[0] = 0
    np.cumsum(np.fromiter(lengths, dtype=np.int64, count=n), out=offsets[1:])  # type: ignore[call-overload]
    return offsets


def hash_strings(texts: list[str], seed: int = 0) -> np.ndarray:
    """Return the XXH64 of the UTF-8 encoding of each text, in one kernel call.

    Args:
        texts: The strings to hash (already normalized by the caller if it wants that).
        seed: XXH64 seed, taken modulo 2**64.

    Returns:
        uint64 array with one hash per text.
    """
    n = len(texts)
    if n == 0:
        return np.empty(0, dtype=np.uint64)
    joined = "".join(texts)
    if joined.isascii():
        # ASCII: character counts are byte counts, so one encode of the joined text suffices.
        offsets = _offsets(map(len, texts), n)
        raw = joined.encode("ascii")
    else:
        # surrogatepass: a lone surrogate (possible in str from JSON) still hashes, never raises
        parts = [t.encode("utf-8", "surrogatepass") for t in texts]
        offsets = _offsets(map(len, parts), n)
        raw = b"".join(parts)
    data = np.frombuffer(raw, dtype=np.uint8) if raw else _EMPTY_BYTES
    out = np.empty(n, dtype=np.uint64)
    _xxh64_batch_kernel(data, offsets, _seed_u64(seed), _LITTLE_ENDIAN, out)
    return out


# --------------------------------------------------------------------------------------------
# Cosine leader clustering
# --------------------------------------------------------------------------------------------
#
# The float rule. A merge is decided on the *canonical* cosine of two rows: their dot product
# accumulated in float64 (every float32 product is exact in float64) and rounded to float32,
# compared with ``>=`` against float32(threshold). Fast paths (a reassociated float32 loop, or a
# float32 BLAS product) are only trusted when they are farther from the threshold than their
# worst-case rounding error; pairs inside that margin are recomputed canonically. So the small-n
# loop, the BLAS path and the numpy reference all take the same decisions and report the same
# similarities, whatever BLAS or SIMD width the machine has.

# The direct loop costs one dot product per (row, leader) read from memory; the BLAS path
# amortizes memory traffic over blocks but pays a fixed cost per block. So "auto" starts with the
# loop and moves to BLAS blocks once this many leaders exist (measured with
# perf/bench_kernels.py on a 2-core AMD EPYC: few leaders -> loop, many -> BLAS).
LEADER_LOOP_MAX_LEADERS = 64
_BLOCK = 128


# Reassociation lets LLVM vectorize the float32 dot loop; it touches only the approximate
# cosines, whose error the margin covers. The canonical dot is compiled without it (strictly
# sequential), so its value is the same wherever it is called from.
_FAST = {"reassoc", "contract"}


@njit(cache=True, fastmath=_FAST)
def _dot_fast(a, i, b, j):
    """float32 dot of a[i] and b[j], reassociated so that LLVM vectorizes it."""
    acc = np.float32(0.0)
    for k in range(a.shape[1]):
        acc += a[i, k] * b[j, k]
    return acc


@njit(cache=True)
def _dot_canonical(a, i, b, j):
    """The canonical cosine: float64 accumulation in index order, rounded to float32."""
    acc = 0.0
    for k in range(a.shape[1]):
        acc += np.float64(a[i, k]) * np.float64(b[j, k])
    return np.float32(acc)


@njit(cache=True)
def _leader_loop(X, part, thr, margin, n_fixed, max_leaders, leader, sim, lidx):
    """Greedy pass with direct dot products, from row 0 while there are few leaders.

    Stops before the first non-fixed row met with ``max_leaders`` leaders or more (the BLAS
    path then takes over). Leader row indices go to lidx; returns (next row, leader count).
    """
    n = X.shape[0]
    nl = 0
    lo = thr - margin
    hi = thr + margin
    for i in range(n):
        found = -1
        s = np.float32(1.0)
        if i >= n_fixed:
            if nl >= max_leaders:
                return i, nl
            pi = part[i]
            for t in range(nl):
                j = lidx[t]
                if part[j] != pi:
                    continue
                approx = _dot_fast(X, i, X, j)
                if approx < lo:
                    continue
                # near or above the threshold: the canonical cosine decides and is reported
                c = _dot_canonical(X, i, X, j)
                if approx < hi and c < thr:
                    continue
                found = j
                s = c
                break
        if found < 0:
            lidx[nl] = i
            nl += 1
            leader[i] = i
        else:
            leader[i] = found
        sim[i] = s
    return n, nl


@njit(cache=True)
def _leader_block(X, part, thr, margin, start, stop, S, T, lbuf, lidx, nl, leader, sim):
    """Greedy pass over rows [start, stop) from precomputed float32 products.

    S holds the block's products with the leaders known before it (``lbuf[:S.shape[1]]``), T the
    block's products with itself (for leaders born inside the block). New leaders are appended
    to lbuf/lidx; returns the new leader count.
    """
    nl0 = S.shape[1]
    lo = thr - margin
    hi = thr + margin
    for i in range(start, stop):
        pi = part[i]
        found = -1
        s = np.float32(1.0)
        for t in range(nl):
            j = lidx[t]
            if part[j] != pi:
                continue
            if t < nl0:
                approx = S[i - start, t]
            else:
                approx = T[i - start, j - start]
            if approx < lo:  # the common case: clearly below, no call
                continue
            c = _dot_canonical(X, i, lbuf, t)
            if approx < hi and c < thr:
                continue
            found = j
            s = c
            break
        if found < 0:
            lbuf[nl, :] = X[i, :]
            lidx[nl] = i
            nl += 1
            leader[i] = i
        else:
            leader[i] = found
        sim[i] = s
    return nl


def _margin(dim: int) -> np.float32:
    # Worst-case error of a float32 dot of two unit vectors in any summation order is about
    # dim * 2**-24; 4x that plus a few ulps keeps every possibly-misjudged pair in the margin.
    return np.float32(4.0 * (dim + 8) * 2.0**-24)


def leader_cluster(
    X: np.ndarray,
    part: np.ndarray,
    threshold: float,
    n_fixed: int = 0,
    method: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy cosine leader clustering of the rows of X, in row order.

    Row i joins the first earlier leader j (lowest index, same ``part``) whose cosine with it
    is >= threshold, else becomes a leader itself. Rows ``0 .. n_fixed - 1`` are leaders by fiat
    (groups already pending): they never merge, but later rows may join them. The cosine is
    the float32 rounding of a float64-accumulated dot product, compared with ``>=`` against
    float32(threshold), identically on the loop and the BLAS path.

    Args:
        X: float32 matrix ``[n, d]``, C-contiguous, rows L2-normalized by the caller.
        part: int64 array ``[n]``; rows merge only within equal values (scope, numbers guard).
        threshold: Cosine a row needs to join a leader.
        n_fixed: How many leading rows are fixed leaders, in ``[0, n]``.
        method: ``"loop"`` (direct jitted loop over leaders), ``"blas"`` (blocks of rows
            against the known leaders by BLAS product, then a jitted greedy pass) or ``"auto"``
            (the loop until ``LEADER_LOOP_MAX_LEADERS`` leaders exist, then BLAS blocks). All
            give identical results.

    Returns:
        ``(leader, sim)``: int64 index of each row's leader (itself for leaders) and the float32
        cosine to it (1.0 for leaders).

    Raises:
        ValueError: If shapes or dtypes are wrong or n_fixed is out of range.
    """
    if not isinstance(X, np.ndarray) or X.dtype != np.float32 or X.ndim != 2:
        raise ValueError(
            f"X must be a 2-D float32 array, got {type(X).__name__} "
            f"{getattr(X, 'dtype', None)} ndim={getattr(X, 'ndim', None)}"
        )
    n, d = X.shape
    part = np.asarray(part)
    if part.dtype != np.int64 or part.shape != (n,):
        raise ValueError(
            f"part must be an int64 array of shape ({n},), got {part.dtype} {part.shape}"
        )
    if not 0 <= n_fixed <= n:
        raise ValueError(f"n_fixed must be in [0, {n}], got {n_fixed}")
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold}")
    if method not in ("auto", "loop", "blas"):
        raise ValueError(f"method must be 'auto', 'loop' or 'blas', got {method!r}")
    X = _readonly(np.ascontiguousarray(X))
    part = _readonly(np.ascontiguousarray(part))
    thr = np.float32(threshold)
    margin = _margin(d)
    leader = np.empty(n, dtype=np.int64)
    sim = np.empty(n, dtype=np.float32)
    lidx = np.empty(n, dtype=np.int64)
    max_leaders = {"loop": n, "blas": 0, "auto": LEADER_LOOP_MAX_LEADERS}[method]
    resume, nl = _leader_loop(X, part, thr, margin, n_fixed, max_leaders, leader, sim, lidx)
    if resume == n:
        return leader, sim
    # Many distinct rows: continue in blocks, each compared with all leaders by one BLAS product.
    lbuf = np.empty((n, d), dtype=np.float32)
    lbuf[:nl] = X[lidx[:nl]]
    for start in range(resume, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        block = X[start:stop]
        S = block @ lbuf[:nl].T  # the block against every leader known before it
        T = block @ block.T  # and against itself, for leaders born inside the block
        nl = _leader_block(X, part, thr, margin, start, stop, S, T, lbuf, lidx, nl, leader, sim)
    return leader, sim


# --------------------------------------------------------------------------------------------
# Feature hashing for the default embedder (stratabatch.embed.HashingEmbedder)
# --------------------------------------------------------------------------------------------

_SEED_NGRAM = np.uint64(0x6E6772616D5F3335)  # domain seeds keep n-gram and word buckets apart
_SEED_WORD = np.uint64(0x776F72645F756E69)
_SEED_EMPTY = np.uint64(0x656D7074795F7478)
_SEED_ANAGRAM = np.uint64(0x616E616772616D5F)
_SPACE = 32


@njit(cache=True)
def _fmix(h):
    h = h ^ (h >> np.uint64(33))
    h = h * _P2
    h = h ^ (h >> np.uint64(29))
    h = h * _P3
    return h ^ (h >> np.uint64(32))


@njit(cache=True)
def _step(h, cp):
    return _rotl((h ^ np.uint64(cp)) * _P1, 31)


@njit(cache=True)
def _add_feature(out, row, h, weight, dim):
    # high 32 bits pick the bucket (multiply-shift, no modulo bias worth noting), bit 0 the sign
    bucket = ((h >> np.uint64(32)) * np.uint64(dim)) >> np.uint64(32)
    if h & np.uint64(1):
        out[row, bucket] -= weight
    else:
        out[row, bucket] += weight


@njit(cache=True)
def _decode_utf8(data, start, end, cps):
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
    if cp == _SPACE:
        return 0
    if 48 <= cp <= 57:
        return 1
    return 2


@njit(cache=True)
def _is_stop(h, stop_hashes):
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
def _tokenize(cps, m, tok_start, tok_end):
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
def _word_hash(cps, a, b):
    h = _SEED_WORD
    for q in range(a, b):
        h = _step(h, cps[q])
    return _fmix(h ^ np.uint64(b - a))


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
        m = _decode_utf8(data, starts[i], ends[i], cps)
        out[i] = _word_hash(cps, 0, m)
    return out


@njit(cache=True)
def _anagram_hash(cps, a, b, scratch):
    """Hash of the sorted letters of cps[a:b]: equal for words that differ by a transposition."""
    m = b - a
    for q in range(m):
        v = cps[a + q]
        r = q
        while r > 0 and scratch[r - 1] > v:  # insertion sort: words are short
            scratch[r] = scratch[r - 1]
            r -= 1
        scratch[r] = v
    h = _SEED_ANAGRAM
    for q in range(m):
        h = _step(h, scratch[q])
    return _fmix(h ^ np.uint64(m))


@njit(cache=True)
def _sum_squares(out, i):
    """Sum of squares of out[i] in float64, as 8 interleaved partial sums added in a fixed
    order: the chains are independent, so the loop vectorizes, and the result is the same on
    every machine (no reassociation left to the compiler). One long sequential chain cost
    ~0.4 us a 384-d row (measured), a quarter of the whole embedding."""
    dim = out.shape[1]
    acc = np.zeros(8, np.float64)
    full = dim - dim % 8
    for b in range(0, full, 8):
        for t in range(8):
            v = np.float64(out[i, b + t])
            acc[t] += v * v
    for b in range(full, dim):
        v = np.float64(out[i, b])
        acc[b - full] += v * v
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))


@njit(cache=True)
def _text_bounds(data, size, n):
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


@njit(cache=True, inline="always")  # (a call would pass ~15 arrays, refcounted)
def _embed_row(
    out, i, cps, nt, tok_start, tok_end, tok_hash, tok_keep, seq, scratch, stop_hashes, weights
):
    """Row i of out from the nt tokens of one text (hashed already): see hashed_embed."""
    dim = out.shape[1]
    w_word = weights[3]
    w_anagram = weights[4]
    out[i, :] = 0.0
    n_keep = 0
    for t in range(nt):
        tok_keep[t] = not _is_stop(tok_hash[t], stop_hashes)
        if tok_keep[t]:
            n_keep += 1
    if n_keep == 0:
        for t in range(nt):
            tok_keep[t] = True
    # " tok1 tok2 ... " as code points: the spaces mark word starts and ends for the n-grams
    L = 0
    seq[L] = _SPACE
    L += 1
    text_h = _SEED_EMPTY
    for t in range(nt):
        if not tok_keep[t]:
            continue
        for q in range(tok_start[t], tok_end[t]):
            seq[L] = cps[q]
            L += 1
        seq[L] = _SPACE
        L += 1
        if w_word != 0:
            _add_feature(out, i, tok_hash[t], w_word, dim)
        if w_anagram != 0:
            ah = _anagram_hash(cps, tok_start[t], tok_end[t], scratch)
            _add_feature(out, i, ah, w_anagram, dim)
        text_h = _step(text_h, tok_hash[t])
    for p in range(L - 2):
        h = _SEED_NGRAM
        for k in range(5):
            if p + k >= L:
                break
            h = _step(h, seq[p + k])
            if k >= 2:
                _add_feature(out, i, _fmix(h ^ np.uint64(k)), weights[k - 2], dim)
    if nt == 0:
        _add_feature(out, i, _fmix(_SEED_EMPTY), np.float32(1.0), dim)
    norm = _sum_squares(out, i)
    if norm == 0.0:
        # every feature cancelled against another of opposite sign (rare on tiny texts)
        _add_feature(out, i, _fmix(text_h), np.float32(1.0), dim)
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
    )


# --------------------------------------------------------------------------------------------
# Key words of a text for the word index (stratabatch.wordkeys), alongside its embedding
# --------------------------------------------------------------------------------------------

_COMMON_BIT = np.int64(1 << 62)
_RANK_LOW = np.uint64((1 << 62) - 1)
_UNPROFILED = -1  # a text the kernel leaves to the Python reference (wordkeys.word_profile)


@njit(cache=True)
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@njit(cache=True)
def _may_be_typos(a, b):
    """:func:`stratabatch.wordkeys.may_be_typos` on two word shapes."""
    la = (a >> 32) & 0xFFFF
    lb = (b >> 32) & 0xFFFF
    if ((a >> 48) & (b >> 48) & 1) == 0 or min(la, lb) < 4:
        return False
    limit = 2 if min(la, lb) >= 8 else 1
    return abs(la - lb) <= limit and _popcount(np.uint64((a ^ b) & 0xFFFFFFFF)) <= 2 * limit


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
        ign = _is_stop(h, ignorable)
        if not ign and alpha and L >= 4:
            # a typo of a filler of 5+ letters is ignorable (stratabatch.guards.ignorable)
            # when the guards' typo rule accepts it: the reference decides those texts
            c0 = cps[a]
            for f in range(fill_at[c0], fill_at[c0 + 1]):  # the fillers starting like it
                fl = fillers[f, 1]
                if (
                    abs(fl - L) <= 1
                    and _may_be_typos(shape, fillers[f, 2])
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
                        not (fillers[f, 3] and _is_stop(h, dictionary))
                        or _same_word(cps, a, L, fillers[f, 4:], fl)
                    )
                ):
                    return _UNPROFILED  # (two different dictionary words: never typos)
        kh[k] = h
        ks[k] = shape
        kign[k] = ign
        if L < 3 or _is_stop(h, common):
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
):
    """hashed_embed, and the key words of each text for the word index in the same pass over
    its tokens (the texts are canonical: stratabatch.canon): text i's (rank, shape, count)
    triples are pr/ps/pc[poff[i] : poff[i] + plen[i]], plen[i] = -1 for a text the Python
    reference must do (_profile_row). The caller sizes pr/ps/pc for
    sum(min(tokens, max_words + 1)). Returns their fill."""
    return _embed_texts(
        data,
        size,
        stop_hashes,
        weights,
        out,
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
    )


@njit(cache=True, nogil=True)
def _embed_texts(
    data,
    size,
    stop_hashes,
    weights,
    out,
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
):
    """hashed_embed, and with ``profile`` the key words too (hashed_embed_profiled)."""
    n = out.shape[0]
    if n == 0:
        return 0
    starts, ends = _text_bounds(data, size, n)
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
    used = 0
    for i in range(n):
        m = _decode_utf8(data, starts[i], ends[i], cps)
        nt = _tokenize(cps, m, tok_start, tok_end)
        for t in range(nt):
            tok_hash[t] = _word_hash(cps, tok_start[t], tok_end[t])
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
        )
        poff[i] = used
        plen[i] = w
        if w > 0:
            used += w
    return used


# --------------------------------------------------------------------------------------------
# Which texts a canonical rewrite may touch (stratabatch.canon), for a whole batch at once
# --------------------------------------------------------------------------------------------

_SEED_PAIR = np.uint64(0x706169725F6B6579)


@njit(cache=True)
def _pair_hash(h1, h2):
    return _fmix(h1 ^ _rotl(h2, 23) ^ _SEED_PAIR)


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
    starts, ends = _text_bounds(data, size, n)
    longest = 1
    for i in range(n):
        longest = max(longest, ends[i] - starts[i])
    cps = np.empty(longest + 1, dtype=np.int32)
    for i in range(n):
        flags[i] = False
        m = _decode_utf8(data, starts[i], ends[i], cps)
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
            h = _word_hash(cps, a, q)
            if _is_stop(h, words) or (have_prev and _is_stop(_pair_hash(prev, h), pairs)):
                flags[i] = True
                break
            prev = h
            have_prev = True
