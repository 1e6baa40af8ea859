"""The default embedder and the embedder protocol: properties a user relies on, and quality.

Run as a script (``python tests/test_embed.py``) to print the quality table of
docs/embedders.md for the labelled pairs in tests/data/dedup_pairs.jsonl.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratabatch.embed import (
    HashingEmbedder,
    normalize_for_embedding,
    resolve_embedder,
    validate_vector,
)

PAIRS_FILE = Path(__file__).parent / "data" / "dedup_pairs.jsonl"
DUP_KINDS = {"surface": True, "typo": True, "paraphrase": True}
NON_DUP_KINDS = {"near_miss", "onoff", "numbers", "swapped", "unrelated"}


@pytest.fixture(scope="module")
def emb() -> HashingEmbedder:
    return HashingEmbedder()


def _cos(e: HashingEmbedder, a: str, b: str) -> float:
    v = e.embed([a, b])
    return float(v[0] @ v[1])


# --------------------------------------------------------------------------------------------
# Normalization
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Set an alarm for 6am!", "set an alarm for 6 am"),
        ("order#123abc", "order 123 abc"),
        ("  Hello,\tWORLD \n ", "hello world"),
        ("\uff37\uff49\uff44\uff45\u3000\uff54\uff45\uff58\uff54", "wide text"),  # full-width
        ("I can\u2019t log in", "i can not log in"),
        ("Don't, won't, it's, we're", "do not will not it is we are"),
        ("John's order", "johns order"),  # possessive: the apostrophe just joins
        ("Stra\u00dfe", "strasse"),  # casefold, not lower
        ("caf\u00e9 = cafe\u0301", "caf\u00e9 caf\u00e9"),  # NFKC composes
        ("snake_case-name", "snake case name"),
        ("\U0001f600 smile", "smile"),  # emoji are symbols
        ("", ""),
        (" ?!... ", ""),
    ],
)
def test_normalize_for_embedding(text: str, expected: str) -> None:
    assert normalize_for_embedding(text) == expected


# --------------------------------------------------------------------------------------------
# Embedder properties
# --------------------------------------------------------------------------------------------


def test_import_is_cheap() -> None:
    code = (
        "import sys, stratabatch.embed as e; "
        "assert 'numba' not in sys.modules, 'numba imported by stratabatch.embed'; "
        "e.normalize_for_embedding('x'); "
        "assert 'numba' not in sys.modules, 'numba imported by normalization'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_shape_dtype_unit_norm(emb: HashingEmbedder) -> None:
    texts = ["How do I reset my password?", "", "a", "\u4f60\u597d\u4e16\u754c", "x" * 5000, "42"]
    v = emb.embed(texts)
    assert v.shape == (len(texts), emb.dim) and v.dtype == np.float32 and v.flags.c_contiguous
    assert np.all(np.isfinite(v))
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert emb.embed([]).shape == (0, emb.dim)
    assert emb(texts[:1]).tolist() == v[:1].tolist()  # callable, same as embed


def test_surface_variants_are_identical(emb: HashingEmbedder) -> None:
    base = "How do I reset my password?"
    for variant in [
        "how do i reset my password",
        "HOW DO I RESET MY PASSWORD??",
        "  how   do I\treset my password ?",
        "Please, how do I reset my password?",
        "hey how do i reset my password, thanks",
        "\uff48\uff4f\uff57 do I reset my password\uff1f",
    ]:
        assert _cos(emb, base, variant) == pytest.approx(1.0, abs=1e-5), variant


def test_typo_is_close_unrelated_is_far(emb: HashingEmbedder) -> None:
    assert 0.75 < _cos(emb, "How do I reset my password?", "How do I reset my pasword?") < 0.99
    for a, b in [
        ("How do I reset my password?", "Write a haiku about autumn"),
        ("Cancel my order", "What is the capital of France?"),
        ("Give me a recipe for banana bread", "Why is my internet so slow?"),
    ]:
        assert abs(_cos(emb, a, b)) < 0.35, (a, b)


def test_empty_and_punctuation_only_texts(emb: HashingEmbedder) -> None:
    v = emb.embed(["", "   ", "?!...", "\n", "How do I reset my password?"])
    assert np.all(np.isfinite(v)) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    assert np.array_equal(v[0], v[1]) and np.array_equal(v[0], v[2]) and np.array_equal(v[0], v[3])
    assert abs(float(v[0] @ v[4])) < 0.2
    # a text made only of filler words keeps them: it is neither empty nor another filler
    fill = emb.embed(["please", "thanks", ""])
    assert abs(float(fill[0] @ fill[1])) < 0.5 and abs(float(fill[0] @ fill[2])) < 0.5


def test_filler_words_are_dropped_but_content_words_count(emb: HashingEmbedder) -> None:
    assert _cos(emb, "please cancel my order", "cancel my order") == pytest.approx(1.0, abs=1e-6)
    assert _cos(emb, "cancel my order", "track my order") < 0.8


def test_numbers_are_split_from_letters(emb: HashingEmbedder) -> None:
    assert _cos(emb, "alarm at 6am", "alarm at 6 am") == pytest.approx(1.0, abs=1e-6)


def test_rejects_non_str(emb: HashingEmbedder) -> None:
    with pytest.raises(TypeError, match="texts must be str, got int"):
        emb.embed(["ok", 5])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dim": 8}, "dim must be"),
        ({"dim": 384.0}, "dim must be"),
        ({"dim": True}, "dim must be"),
        ({"ngram_weights": (1.0, -1.0, 1.0)}, "ngram_weights"),
        ({"ngram_weights": (1.0, 1.0)}, "ngram_weights must be 3 values"),
        ({"word_weight": float("nan")}, "word_weight"),
        ({"anagram_weight": -1}, "anagram_weight"),
        ({"ngram_weights": (0, 0, 0), "word_weight": 0, "anagram_weight": 0}, "not all 0"),
        ({"stop_words": "please"}, "stop_words"),
        ({"stop_words": ["thank you"]}, "single words"),
    ],
)
def test_config_is_validated(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HashingEmbedder(**kwargs)


def test_custom_config_gets_its_own_name() -> None:
    assert HashingEmbedder().name == "hashing-v1"
    assert HashingEmbedder(dim=256).name != "hashing-v1"


_texts = st.lists(
    st.one_of(
        st.text(max_size=40),
        st.text(alphabet="abcdefgh 0123456789'?!.,-\u2019\uff41", max_size=40),
        st.sampled_from(["", " ", "please", "Don't 6AM", "o'neil's 3rd"]),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=120, deadline=None)
@given(texts=_texts)
def test_batch_equals_single_and_normalization_is_consistent(texts: list[str]) -> None:
    e = HashingEmbedder()
    batch = e.embed(texts)
    assert np.all(np.isfinite(batch))
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    for t, row in zip(texts, batch, strict=True):
        assert np.array_equal(e.embed([t])[0], row)
    # the kernel's tokenization (fast ASCII path included) agrees with normalize_for_embedding
    normalized = [normalize_for_embedding(t) for t in texts]
    assert np.array_equal(e.embed(normalized), batch)
    assert [normalize_for_embedding(t) for t in normalized] == normalized


_PROBE = ["How do I reset my password?", "Set an alarm for 6am", "", "caf\u00e9 \u00fcber alles"]


def _fingerprint(v: np.ndarray) -> str:
    # buckets and signs, not raw floats: stable under any rounding of the final division
    return hashlib.sha256(np.sign(v).astype(np.int8).tobytes()).hexdigest()[:16]


def test_deterministic_across_processes(emb: HashingEmbedder) -> None:
    code = (
        "import json, sys; from stratabatch.embed import HashingEmbedder; "
        "v = HashingEmbedder().embed(json.loads(sys.argv[1])); "
        "print(json.dumps(v.tolist()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(_PROBE)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONHASHSEED": "12345", **_env()},
    )
    other = np.array(json.loads(out.stdout), dtype=np.float32)
    assert np.array_equal(other, emb.embed(_PROBE))


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}


def test_vectors_of_hashing_v1_do_not_change(emb: HashingEmbedder) -> None:
    """Pinned fingerprint: a change here must come with a new ``name`` (and threshold check)."""
    assert emb.name == "hashing-v1"
    assert _fingerprint(emb.embed(_PROBE)) == PINNED_FINGERPRINT


PINNED_FINGERPRINT = "58fbea3053476c35"

_M64 = (1 << 64) - 1
_P1, _P2, _P3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9


def _anagram_reference(word: str) -> int:
    """The sorted-letters feature's hash of ``word``, in plain Python (XXH64's primes)."""

    def step(h: int, cp: int) -> int:
        x = ((h ^ cp) * _P1) & _M64
        return ((x << 31) | (x >> 33)) & _M64

    def fmix(h: int) -> int:
        h ^= h >> 33
        h = (h * _P2) & _M64
        h ^= h >> 29
        h = (h * _P3) & _M64
        return h ^ (h >> 32)

    h = 0x616E616772616D5F  # (the kernel's anagram seed)
    for c in sorted(word):
        h = step(h, ord(c))
    return fmix(h ^ len(word))


@pytest.mark.parametrize(
    "word",
    [
        "teh",
        "zyxwvutsrq",
        "qqqqzzzzqqqqzzz",
        "aaaaaaaaaaaaaaa",
        "aaaaaaaaaaaaaaaa",
        "abcdefghijklmnop",
        "mississippi",
        "bookkeeper",
        "12332100",
        "9999999999999999",
        "naïve",
        "ωβα",
        "zz",
        "x",
    ],
)
def test_sorted_letters_feature_matches_reference(word: str) -> None:
    """The sorted-letters feature is the hash of the word's sorted code points, whichever
    way the kernel sorts them: letters counted in lanes (repeats, the lanes of q-z, 15
    letters) or sorted (longer words, digits, letters beyond a-z)."""
    only = HashingEmbedder(ngram_weights=(0.0, 0.0, 0.0), word_weight=0.0, anagram_weight=1.0)
    v = only.embed([word])[0]
    h = _anagram_reference(word)
    bucket = ((h >> 32) * 384) >> 32
    assert np.flatnonzero(v).tolist() == [bucket]
    assert v[bucket] == (-1.0 if h & 1 else 1.0)


# --------------------------------------------------------------------------------------------
# resolve_embedder and validate_vector
# --------------------------------------------------------------------------------------------


def test_resolve_none_is_the_shared_default() -> None:
    a, b = resolve_embedder(None), resolve_embedder()
    assert a is b and isinstance(a, HashingEmbedder)
    assert a.recommended_threshold == HashingEmbedder.recommended_threshold
    own = HashingEmbedder(dim=256)
    assert resolve_embedder(own) is own


class _Model:
    name = "tiny-model"
    dim = 3
    recommended_threshold = 0.85

    def __init__(self, out: object = None) -> None:
        self.out = out

    def embed(self, texts: list[str]) -> object:
        if self.out is not None:
            return self.out
        return np.array([[len(t) + 1.0, 1.0, 0.0] for t in texts], dtype=np.float32)


def test_resolve_object_with_embed_and_dim() -> None:
    e = resolve_embedder(_Model())
    assert (e.name, e.dim, e.recommended_threshold) == ("tiny-model", 3, 0.85)
    v = e.embed(["ab", "c"])
    assert v.dtype == np.float32 and v.shape == (2, 3)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)  # normalized for us


def test_resolve_plain_callable_learns_dim() -> None:
    def fn(texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), 5), dtype=np.float64)

    e = resolve_embedder(fn)
    assert e.dim is None and e.recommended_threshold is None and "fn" in e.name
    v = e.embed(["a", "b"])
    assert e.dim == 5 and v.dtype == np.float32
    np.testing.assert_allclose(v, 1 / np.sqrt(5), rtol=1e-6)


@pytest.mark.parametrize(
    ("out", "match"),
    [
        (np.ones((2, 4), np.float32), "dim 4, expected its dim 3"),
        (np.ones((3, 3), np.float32), r"shape \(3, 3\) for 2 texts"),
        (np.ones(3, np.float32), r"shape \(3,\) for 2 texts"),
        (np.array([["a", "b", "c"]] * 2), "dtype <U1"),
        (np.array([[1.0, np.nan, 0], [1, 0, 0]], np.float32), "NaN or inf in row 0"),
        (np.array([[1.0, 0, 0], [np.inf, 0, 0]], np.float32), "NaN or inf in row 1"),
        (np.array([[1.0, 0, 0], [0, 0, 0]], np.float32), "zero .* row 1"),
        ("not an array", "dtype <U12"),
    ],
)
def test_bad_embedder_output_names_the_embedder(out: object, match: str) -> None:
    e = resolve_embedder(_Model(out))
    with pytest.raises(ValueError, match=f"tiny-model.*{match}|{match}.*tiny-model"):
        e.embed(["a", "b"])


def test_resolve_rejects_what_is_no_embedder() -> None:
    with pytest.raises(ValueError, match="embedder must be None"):
        resolve_embedder(42)
    bad_dim = _Model()
    bad_dim.dim = 0
    with pytest.raises(ValueError, match="dim must be a positive int, got 0"):
        resolve_embedder(bad_dim)
    bad_thr = _Model()
    bad_thr.recommended_threshold = 2.0
    with pytest.raises(ValueError, match="recommended_threshold"):
        resolve_embedder(bad_thr)


def test_validate_vector_accepts_lists_and_arrays() -> None:
    v = validate_vector([3, 4], 2)
    assert v.dtype == np.float32 and v.tolist() == pytest.approx([0.6, 0.8])
    src = np.array([0.0, 2.0, 0.0], np.float64)
    w = validate_vector(src, 3)
    assert w.tolist() == [0.0, 1.0, 0.0] and src[1] == 2.0  # a copy, input untouched
    assert validate_vector(np.ones(7, np.float32), None).shape == (7,)
    huge = validate_vector([1e308, -1e308], 2)  # no overflow: a direction is a direction
    assert huge.tolist() == pytest.approx([2**-0.5, -(2**-0.5)])


@pytest.mark.parametrize(
    ("vec", "dim", "match"),
    [
        ([1.0, 2.0], 3, "dimension 2, the embedder uses 3"),
        ([1.0, float("nan"), 0.0], 3, "NaN or inf"),
        (np.array([1.0, np.inf, 0.0]), 3, "NaN or inf"),
        ([0, 0, 0], 3, "zero vector"),
        ([[1.0, 2.0, 3.0]], 3, "1-D"),
        ([1.0, [2.0], 3.0], 3, "flat list"),
        (["a", "b", "c"], 3, "real numbers"),
        ([True, False, True], 3, "real numbers"),
        ("1,2,3", 3, "list of numbers or a 1-D ndarray, got str"),
        ([], None, "empty"),
    ],
)
def test_validate_vector_rejects(vec: object, dim: int | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        validate_vector(vec, dim)


# --------------------------------------------------------------------------------------------
# Quality on the labelled pairs
# --------------------------------------------------------------------------------------------


def load_pairs() -> list[dict]:
    with PAIRS_FILE.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _digit_runs(text: str) -> list[str]:
    return sorted(re.findall(r"[0-9]+", normalize_for_embedding(text)))


def quality_table(embedder: HashingEmbedder, thresholds: list[float]) -> list[dict]:
    """Pair-level precision (all kinds) and per-kind merge rate at each threshold.

    A pair merges when cosine >= threshold (float32) and both texts carry the same multiset of
    digit runs (the numbers guard). For duplicate kinds the rate is recall; for the others it
    is the false-merge rate.
    """
    pairs = load_pairs()
    a = embedder.embed([p["a"] for p in pairs])
    b = embedder.embed([p["b"] for p in pairs])
    cos = np.einsum("ij,ij->i", a, b)
    guard = np.array([_digit_runs(p["a"]) == _digit_runs(p["b"]) for p in pairs])
    dup = np.array([p["dup"] for p in pairs])
    kinds = np.array([p["kind"] for p in pairs])
    rows = []
    for t in thresholds:
        merged = (cos >= np.float32(t)) & guard
        tp, fp = int((merged & dup).sum()), int((merged & ~dup).sum())
        row = {"threshold": t, "precision": tp / max(1, tp + fp), "false_merges": fp}
        for k in dict.fromkeys(kinds):
            row[k] = float(merged[kinds == k].mean())
        rows.append(row)
    return rows


def test_pairs_file_is_well_formed() -> None:
    pairs = load_pairs()
    assert len(pairs) >= 200
    counts = Counter(p["kind"] for p in pairs)
    assert set(counts) == set(DUP_KINDS) | NON_DUP_KINDS, counts
    assert min(counts.values()) >= 15, counts
    for p in pairs:
        assert set(p) == {"a", "b", "dup", "kind"} and isinstance(p["a"], str)
        assert p["dup"] is (p["kind"] in DUP_KINDS), p
    assert len({(p["a"], p["b"]) for p in pairs}) == len(pairs), "duplicate pairs"


def test_quality_at_recommended_threshold(emb: HashingEmbedder) -> None:
    # the embedder alone (no word guards): its unguarded threshold
    (row,) = quality_table(emb, [emb.recommended_threshold_unguarded])
    print("\n" + _markdown([row]))
    assert row["precision"] >= 0.99, row
    assert row["surface"] >= 0.75, row
    # what the hashing embedder cannot do, stated as a fact the docs rely on
    assert row["paraphrase"] < 0.2 and row["unrelated"] == 0.0, row


def _markdown(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        cells = [
            (f"{r[k]:.3f}" if k == "precision" else f"{r[k]:.2f}")
            if isinstance(r[k], float)
            else str(r[k])
            for k in keys
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    e = HashingEmbedder()
    grid = [0.80, 0.82, 0.84, 0.86, 0.88, 0.90, 0.92, 0.94, 0.96, 0.98]
    print(f"{e.name}, dim {e.dim}, recommended_threshold {e.recommended_threshold}")
    print(f"{len(load_pairs())} pairs: {dict(Counter(p['kind'] for p in load_pairs()))}")
    print(_markdown(quality_table(e, grid)))


@pytest.mark.parametrize(
    "texts",
    [
        ["how do i reset my password", "set an alarm for 6 am", "a b"],  # canonical ASCII
        ["we cannot go", "how do i"],  # "cannot": normalized_batch rewrites it
        ["how do i\x1freset", "x"],  # a text holding the separator
        ["How do I reset", "x"],  # capitals
        ["it's 6am", "x y"],  # apostrophe, digits glued to letters
        ["caf\u00e9 ok", "x"],  # not ASCII
        [""],
        ["", ""],
    ],
)
def test_embed_profiled_reads_normalized_texts_as_embed_does(texts: list[str]) -> None:
    """embed_profiled skips normalization for texts it leaves unchanged ([a-z0-9 ] only, no
    "cannot", no separator inside a text): the vectors are embed()'s, byte for byte, and the
    batch is tagged exactly where normalization leaves the bytes as they are."""
    from stratabatch.text import SEP, normalized_batch

    e = HashingEmbedder()
    mat, batch = e.embed_profiled(texts)
    assert np.array_equal(mat, e.embed(texts))
    assert batch.tagged == (normalized_batch(texts) == SEP.join(texts).encode())
