"""The numba kernels against plain Python/numpy references: XXH64 hashing, leader clustering."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratabatch.greedy import LEADER_LOOP_MAX_LEADERS, leader_cluster
from stratabatch.kernels import hash_strings, xxh64_batch

# --------------------------------------------------------------------------------------------
# XXH64 reference: a literal transcription of the public spec, one byte string at a time
# --------------------------------------------------------------------------------------------

_M = (1 << 64) - 1
P1, P2, P3, P4, P5 = (
    0x9E3779B185EBCA87,
    0xC2B2AE3D27D4EB4F,
    0x165667B19E3779F9,
    0x85EBCA77C2B2AE63,
    0x27D4EB2F165667C5,
)


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M


def _round(acc: int, lane: int) -> int:
    return (_rotl((acc + lane * P2) & _M, 31) * P1) & _M


def _merge(acc: int, val: int) -> int:
    return (((acc ^ _round(0, val)) * P1) + P4) & _M


def xxh64_reference(b: bytes, seed: int = 0) -> int:
    """XXH64 of b, straight from the specification (slow, obviously correct)."""
    seed &= _M
    n = len(b)
    p = 0
    if n >= 32:
        v = [(seed + P1 + P2) & _M, (seed + P2) & _M, seed, (seed - P1) & _M]
        while p + 32 <= n:
            for k in range(4):
                v[k] = _round(v[k], int.from_bytes(b[p + 8 * k : p + 8 * k + 8], "little"))
            p += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M
        for lane in v:
            h = _merge(h, lane)
    else:
        h = (seed + P5) & _M
    h = (h + n) & _M
    while p + 8 <= n:
        h ^= _round(0, int.from_bytes(b[p : p + 8], "little"))
        h = (_rotl(h, 27) * P1 + P4) & _M
        p += 8
    if p + 4 <= n:
        h ^= (int.from_bytes(b[p : p + 4], "little") * P1) & _M
        h = (_rotl(h, 23) * P2 + P3) & _M
        p += 4
    while p < n:
        h ^= (b[p] * P5) & _M
        h = (_rotl(h, 11) * P1) & _M
        p += 1
    h ^= h >> 33
    h = (h * P2) & _M
    h ^= h >> 29
    h = (h * P3) & _M
    h ^= h >> 32
    return h


def _batch(chunks: list[bytes], pad: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Lay chunks out back to back after `pad` junk bytes (so word loads start unaligned)."""
    raw = b"\xa5" * pad + b"".join(chunks)
    offsets = np.cumsum([pad, *map(len, chunks)]).astype(np.int64)
    return np.frombuffer(raw, dtype=np.uint8).copy(), offsets


# Published XXH64 values (xxHash's and python-xxhash's documentation and sanity tests).
KNOWN = [
    (b"", 0, 0xEF46DB3751D8E999),
    (b"a", 0, 0xD24EC4F1A98C6E5B),
    (b"abc", 0, 0x44BC2CF5AD770999),
    (b"xxhash", 0, 0x32DD38952C4BC720),
    (b"xxhash", 20141025, 0xB559B98D844E0635),
    (b"Nobody inspects the spammish repetition", 0, 0xFBCEA83C8A378BF1),
]


@pytest.mark.parametrize(("data", "seed", "expected"), KNOWN)
def test_xxh64_known_vectors(data: bytes, seed: int, expected: int) -> None:
    assert xxh64_reference(data, seed) == expected
    buf, offsets = _batch([data])
    assert int(xxh64_batch(buf, offsets, seed)[0]) == expected
    assert int(hash_strings([data.decode()], seed)[0]) == expected


def test_xxh64_every_length_around_word_and_stripe_boundaries() -> None:
    rng = np.random.default_rng(20240601)
    print("seed 20240601")
    chunks = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in range(0, 101)]
    for pad in (0, 1, 3, 7):
        buf, offsets = _batch(chunks, pad)
        got = xxh64_batch(buf, offsets, seed=pad)
        assert [int(h) for h in got] == [xxh64_reference(c, pad) for c in chunks]


@settings(max_examples=200, deadline=None)
@given(
    chunks=st.lists(
        st.one_of(
            st.binary(max_size=100),
            st.integers(0, 4).flatmap(
                lambda k: st.binary(min_size=max(0, 8 * k - 1), max_size=8 * k + 1)
            ),
            st.sampled_from([3, 4, 5, 7, 8, 9, 31, 32, 33, 63, 64, 65]).flatmap(
                lambda n: st.binary(min_size=n, max_size=n)
            ),
        ),
        max_size=12,
    ),
    pad=st.integers(0, 7),
    seed=st.one_of(st.just(0), st.integers(0, 2**64 - 1)),
)
def test_xxh64_batch_matches_reference(chunks: list[bytes], pad: int, seed: int) -> None:
    buf, offsets = _batch(chunks, pad)
    got = xxh64_batch(buf, offsets, seed)
    assert got.dtype == np.uint64 and got.shape == (len(chunks),)
    assert [int(h) for h in got] == [xxh64_reference(c, seed) for c in chunks]


@settings(max_examples=150, deadline=None)
@given(texts=st.lists(st.text(max_size=60), max_size=70), seed=st.integers(0, 2**64 - 1))
def test_hash_strings_is_xxh64_of_utf8(texts: list[str], seed: int) -> None:
    # max_size 70 crosses the small-batch/numpy switch of the offset computation
    got = hash_strings(texts, seed)
    want = [xxh64_reference(t.encode("utf-8", "surrogatepass"), seed) for t in texts]
    assert [int(h) for h in got] == want


def test_hash_strings_edge_cases() -> None:
    assert hash_strings([]).shape == (0,)
    assert int(hash_strings([""])[0]) == 0xEF46DB3751D8E999
    # equal texts collide, a one-character change does not; non-ASCII widths are in bytes
    h = hash_strings(["order 123", "order 123", "order 124", "café", "cafe\u0301", "\ud800"])
    assert h[0] == h[1] and h[1] != h[2] and h[3] != h[4]
    assert int(h[5]) == xxh64_reference("\ud800".encode("utf-8", "surrogatepass"))
    # a negative seed is taken modulo 2**64, as the docstring says
    assert hash_strings(["x"], seed=-1)[0] == hash_strings(["x"], seed=2**64 - 1)[0]


def test_xxhash_package_agrees_if_installed() -> None:
    xxhash = pytest.importorskip("xxhash")
    rng = np.random.default_rng(7)
    print("seed 7")
    lengths = rng.integers(0, 300, 50)
    chunks = [rng.integers(0, 256, int(n), dtype=np.uint8).tobytes() for n in lengths]
    buf, offsets = _batch(chunks, 5)
    got = xxh64_batch(buf, offsets, seed=99)
    assert [int(h) for h in got] == [xxhash.xxh64_intdigest(c, 99) for c in chunks]


@pytest.mark.parametrize(
    ("data", "offsets", "match"),
    [
        (np.zeros(4, np.int8), np.array([0, 4], np.int64), "uint8"),
        (np.zeros((2, 2), np.uint8), np.array([0, 4], np.int64), "1-D"),
        (np.zeros(4, np.uint8), np.array([0, 4], np.int32), "int64"),
        (np.zeros(4, np.uint8), np.array([0, 5], np.int64), "within"),
        (np.zeros(4, np.uint8), np.array([-1, 2], np.int64), "within"),
        (np.zeros(4, np.uint8), np.array([0, 3, 2], np.int64), "non-decreasing"),
        (np.zeros(4, np.uint8), np.array([], np.int64), "n \\+ 1"),
    ],
)
def test_xxh64_batch_rejects_bad_layout(data, offsets, match) -> None:
    with pytest.raises(ValueError, match=match):
        xxh64_batch(data, offsets)


# --------------------------------------------------------------------------------------------
# Leader clustering against a plain numpy reference
# --------------------------------------------------------------------------------------------


def leader_reference(
    X: np.ndarray, part: np.ndarray, threshold: float, n_fixed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy leader clustering, the obvious way, with the documented float rule.

    The cosine is the float64 product of the float32 rows rounded to float32, compared with
    >= against float32(threshold).
    """
    X64 = X.astype(np.float64)
    C = (X64 @ X64.T).astype(np.float32)
    thr = np.float32(threshold)
    n = X.shape[0]
    leader = np.arange(n, dtype=np.int64)
    sim = np.ones(n, dtype=np.float32)
    leaders: list[int] = list(range(n_fixed))
    for i in range(n_fixed, n):
        for j in leaders:
            if part[j] == part[i] and C[i, j] >= thr:
                leader[i], sim[i] = j, C[i, j]
                break
        else:
            leaders.append(i)
    return leader, sim


def _unit_rows(M: np.ndarray) -> np.ndarray:
    M = np.asarray(M, dtype=np.float64)
    zero = ~M.any(axis=1)
    M[zero, 0] = 1.0  # the kernel's contract is unit rows; a zero row becomes e0
    M /= np.linalg.norm(M, axis=1, keepdims=True)
    return np.ascontiguousarray(M, dtype=np.float32)


def _check_all_methods(X: np.ndarray, part: np.ndarray, thr: float, n_fixed: int) -> None:
    want_leader, want_sim = leader_reference(X, part, thr, n_fixed)
    for method in ("loop", "blas", "auto"):
        leader, sim = leader_cluster(X, part, thr, n_fixed, method=method)
        assert leader.dtype == np.int64 and sim.dtype == np.float32
        np.testing.assert_array_equal(leader, want_leader, err_msg=method)
        np.testing.assert_array_equal(sim, want_sim, err_msg=method)


@st.composite
def cluster_case(draw, max_n: int = 40):
    n = draw(st.integers(1, max_n))
    d = draw(st.integers(1, 12))
    # small integer entries: many equal, opposite and orthogonal rows, cosines that tie
    ints = draw(st.lists(st.integers(-2, 2), min_size=n * d, max_size=n * d))
    X = _unit_rows(np.array(ints, dtype=np.float64).reshape(n, d))
    n_parts = draw(st.integers(1, 3))
    part = np.array(draw(st.lists(st.integers(0, n_parts - 1), min_size=n, max_size=n)), np.int64)
    n_fixed = draw(st.integers(0, n))
    X64 = X.astype(np.float64)
    C = (X64 @ X64.T).astype(np.float32)
    kind = draw(st.sampled_from(["tie", "tie_up", "random"]))
    if kind == "random":
        thr = draw(st.floats(-1.0, 1.0))
    else:
        # the threshold equal to an actual cosine, or to the next float32 above it
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        thr = float(C[i, j])
        if kind == "tie_up":
            thr = float(np.nextafter(np.float32(thr), np.float32(2.0)))
    return X, part, thr, n_fixed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cluster_case())
def test_leader_cluster_matches_reference(case) -> None:
    X, part, thr, n_fixed = case
    _check_all_methods(X, part, thr, n_fixed)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.sampled_from([1, 32, 127, 300]))
def test_leader_cluster_float_vectors_with_thresholds_on_a_cosine(seed: int, n: int) -> None:
    """384-d float rows with near-duplicates; threshold on a cosine and one ulp either side."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((max(1, n // 3), 384))
    X = _unit_rows(base[rng.integers(0, len(base), n)] + 0.3 * rng.standard_normal((n, 384)))
    part = rng.integers(0, 2, n).astype(np.int64)
    X64 = X.astype(np.float64)
    C = (X64 @ X64.T).astype(np.float32)
    off = C[~np.eye(n, dtype=bool)]
    tie = np.float32(np.quantile(off, 0.9) if off.size else 0.5)
    tie = off[np.argmin(np.abs(off - tie))] if off.size else tie
    for thr in (np.nextafter(tie, np.float32(-2)), tie, np.nextafter(tie, np.float32(2))):
        _check_all_methods(X, part, float(thr), int(rng.integers(0, n + 1)))


def test_leader_cluster_adversarial_shapes() -> None:
    one = np.ones((1, 384), np.float32) / np.sqrt(np.float32(384))
    leader, sim = leader_cluster(one, np.zeros(1, np.int64), 0.9)
    assert leader.tolist() == [0] and sim.tolist() == [1.0]

    # equal vectors: everyone joins row 0, sim 1 (up to rounding of the norm)
    same = np.repeat(_unit_rows(np.arange(1.0, 385.0)[None, :]), 32, axis=0)
    leader, sim = leader_cluster(same, np.zeros(32, np.int64), 0.99)
    assert (leader == 0).all() and np.allclose(sim, 1.0, atol=1e-6)
    # ... but never across partitions, and fixed rows never merge
    part = np.arange(32, dtype=np.int64) % 2
    leader, _ = leader_cluster(same, part, 0.99, n_fixed=3)
    assert leader.tolist()[:3] == [0, 1, 2] and (leader[3:] == part[3:]).all()

    # orthogonal vectors: nobody merges, even at threshold 0 (cosine 0 >= 0 merges; -tiny not)
    eye = np.eye(LEADER_LOOP_MAX_LEADERS + 10, 384, dtype=np.float32)
    n = eye.shape[0]
    for method in ("loop", "blas"):
        leader, _ = leader_cluster(eye, np.zeros(n, np.int64), 1e-6, method=method)
        assert (leader == np.arange(n)).all()
        leader, sim = leader_cluster(eye, np.zeros(n, np.int64), 0.0, method=method)
        assert (leader == 0).all() and sim[1:].max() == 0.0


def test_leader_cluster_rejects_bad_input() -> None:
    X = np.eye(3, dtype=np.float32)
    part = np.zeros(3, np.int64)
    with pytest.raises(ValueError, match="float32"):
        leader_cluster(X.astype(np.float64), part, 0.9)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        leader_cluster(X, part[:2], 0.9)
    with pytest.raises(ValueError, match="n_fixed"):
        leader_cluster(X, part, 0.9, n_fixed=4)
    with pytest.raises(ValueError, match="finite"):
        leader_cluster(X, part, float("nan"))
    with pytest.raises(ValueError, match="method"):
        leader_cluster(X, part, 0.9, method="gpu")
    leader, sim = leader_cluster(np.zeros((0, 8), np.float32), np.zeros(0, np.int64), 0.9)
    assert leader.shape == (0,) and sim.shape == (0,)
