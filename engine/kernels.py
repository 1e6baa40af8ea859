"""XXH64 in numba: the hash of the exact-dedup warm-up and of whole strings, and its primitives.

Every kernel of stratabatch is a pure function on numpy arrays (no I/O, no Python objects),
compiled with ``cache=True`` so a process pays the JIT cost once per machine, not once per
start. They live by what they serve: here XXH64 (whose primes and rotation the word hashes of
:mod:`stratabatch.textkernels` build on) and :func:`readonly`, how kernels take an array; the
float rule in :mod:`stratabatch.cosine`; greedy clustering in :mod:`stratabatch.greedy`; the
embedder's in :mod:`stratabatch.embedkernels`; the words of a text in
:mod:`stratabatch.textkernels`; the residue pre-check in :mod:`stratabatch.pairs`; the leader
index's in :mod:`stratabatch.candidates`, :mod:`stratabatch.hashtable`,
:mod:`stratabatch.sketches` and :mod:`stratabatch.wordtable`.
:data:`stratabatch.warm.KERNEL_MODULES` lists them all. This module imports numba at import
time; the package imports it lazily, on the first dedup that needs it.
"""

from __future__ import annotations

import sys
from itertools import accumulate

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = [
    "PRIME64_1",
    "PRIME64_2",
    "PRIME64_3",
    "PRIME64_4",
    "PRIME64_5",
    "hash_strings",
    "readonly",
    "rotl",
    "xxh64_batch",
]

# --------------------------------------------------------------------------------------------
# XXH64 (the public algorithm by Yann Collet, spec: github.com/Cyan4973/xxHash/doc/xxhash_spec.md)
# --------------------------------------------------------------------------------------------

PRIME64_1 = np.uint64(0x9E3779B185EBCA87)
PRIME64_2 = np.uint64(0xC2B2AE3D27D4EB4F)
PRIME64_3 = np.uint64(0x165667B19E3779F9)
PRIME64_4 = np.uint64(0x85EBCA77C2B2AE63)
PRIME64_5 = np.uint64(0x27D4EB2F165667C5)
_MASK64 = (1 << 64) - 1
_SEED_ZERO = np.uint64(0)


def readonly(a: np.ndarray) -> np.ndarray:
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
def rotl(x, r):
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@njit(cache=True)
def _round(acc, lane):
    acc = acc + lane * PRIME64_2
    acc = rotl(acc, 31)
    return acc * PRIME64_1


@njit(cache=True)
def _merge_round(acc, val):
    acc = acc ^ _round(np.uint64(0), val)
    return acc * PRIME64_1 + PRIME64_4


@njit(cache=True, nogil=True)  # large passes run in a worker thread
def _xxh64_batch_kernel(data, offsets, seed, little_endian, out):
    n = out.shape[0]
    for s in range(n):
        p = offsets[s]
        end = offsets[s + 1]
        length = end - p
        if length >= 32:
            v1 = seed + PRIME64_1 + PRIME64_2
            v2 = seed + PRIME64_2
            v3 = seed
            v4 = seed - PRIME64_1
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
            h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)
            h = _merge_round(h, v1)
            h = _merge_round(h, v2)
            h = _merge_round(h, v3)
            h = _merge_round(h, v4)
        else:
            h = seed + PRIME64_5
        h = h + np.uint64(length)
        while p + 8 <= end:
            if little_endian:
                k1 = _round(np.uint64(0), _load_u64(data, p))
            else:
                k1 = _round(np.uint64(0), _read64_bytes(data, p))
            h = h ^ k1
            h = rotl(h, 27) * PRIME64_1 + PRIME64_4
            p += 8
        if p + 4 <= end:
            if little_endian:
                w = np.uint64(_load_u32(data, p))
            else:
                w = _read32_bytes(data, p)
            h = h ^ (w * PRIME64_1)
            h = rotl(h, 23) * PRIME64_2 + PRIME64_3
            p += 4
        while p < end:
            h = h ^ (np.uint64(data[p]) * PRIME64_5)
            h = rotl(h, 11) * PRIME64_1
            p += 1
        h = h ^ (h >> np.uint64(33))
        h = h * PRIME64_2
        h = h ^ (h >> np.uint64(29))
        h = h * PRIME64_3
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
    data = readonly(np.ascontiguousarray(data))
    out = np.empty(n, dtype=np.uint64)
    _xxh64_batch_kernel(data, offsets, _seed_u64(seed), _LITTLE_ENDIAN, out)
    return out


_EMPTY_BYTES = readonly(np.zeros(0, dtype=np.uint8))
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
