"""Embedders for near-duplicate dedup: the built-in hashing embedder and the embedder protocol.

An embedder turns a batch of texts into an L2-normalized float32 matrix ``[n, dim]``; dedup
compares rows by cosine. The built-in :class:`HashingEmbedder` needs no model: it hashes
character n-grams and words of the normalized text (a numba kernel, loaded on the first
``embed``; importing this module does not import numba). It finds near-duplicate *wording*
(case, punctuation, spacing, filler words, contractions, typos), not meaning: see
docs/embedders.md for what it catches and the measured threshold.

Any callable ``list[str] -> float32[n, dim]``, or an object with ``.embed()`` and ``.dim``, can
replace it; :func:`resolve_embedder` wraps it so its outputs are checked and normalized.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from .lexicon import DEFAULT_STOP_WORDS
from .text import SEP, normalize_for_embedding, normalized_batch

__all__ = [
    "DEFAULT_STOP_WORDS",
    "Embedder",
    "HashingEmbedder",
    "normalize_for_embedding",
    "resolve_embedder",
    "validate_vector",
]

# --------------------------------------------------------------------------------------------
# Protocol and the hashing embedder
# --------------------------------------------------------------------------------------------


class Embedder(Protocol):
    """What dedup needs from an embedder (the built-in one and every wrapped one)."""

    name: str

    @property
    def dim(self) -> int | None:
        """The vector length, or None until the first call tells."""

    @property
    def recommended_threshold(self) -> float | None:
        """The threshold that suits this embedder with the guards on, or None."""

    def embed(self, texts: list[str]) -> np.ndarray:
        """Return L2-normalized float32 rows, one per text."""
        ...


def _normalize_stop_words(words: Sequence[str]) -> list[str]:
    if isinstance(words, str):
        raise ValueError(f"stop_words must be a sequence of words, got the str {words!r:.40}")
    normalized = [w for w in (normalize_for_embedding(x) for x in words) if w]
    for w in normalized:
        if " " in w:
            raise ValueError(f"stop words must be single words after normalization, got {w!r}")
    return normalized


def _stop_hashes(normalized: list[str]) -> np.ndarray:
    """Sorted word hashes of the (normalized) stop words, as the kernel computes them."""
    from .textkernels import hash_words

    return np.unique(hash_words(normalized))


_ONE_BYTE = np.zeros(1, dtype=np.uint8)  # stands in for an empty buffer (length passed apart)
_ONE_BYTE.flags.writeable = False  # like np.frombuffer's arrays: one kernel specialization
# the bytes normalized_batch leaves as they are in an ASCII batch (its separator included)
_NORMALIZED_BYTES = b"abcdefghijklmnopqrstuvwxyz0123456789 " + SEP.encode("ascii")


class HashingEmbedder:
    """Deterministic hashed character n-gram + word embedder (no model, no download).

    Each text is normalized (:func:`normalize_for_embedding`), split into words (digits apart
    from letters), filler words dropped (``stop_words``), and hashed: character 3-, 4- and
    5-grams over ``" word1 word2 ... "`` (so the grams see word starts, ends and neighbours),
    one feature per word and one per word's sorted letters (a transposition typo keeps it),
    each into a signed bucket of a ``dim``-vector, then L2-normalized.
    The same text gives the same vector in every process and on every run (no salted hashes).

    Attributes:
        name: ``"hashing-v1"``; changes whenever the vectors would change.
        dim: Vector length.
        recommended_threshold: Cosine from which two texts are candidates for a merge with the
            default guards on (:mod:`stratabatch.guards` veto what differs in meaning),
            measured on tests/data/guard_pairs.jsonl (see docs/embedders.md).
        recommended_threshold_unguarded: The cosine that suits the embedder alone (no word
            guards, ``dedup_guards=()``), measured on tests/data/dedup_pairs.jsonl.
    """

    name = "hashing-v1"
    merges_paraphrases = False  # it compares wording: every differing word must be explained
    recommended_threshold = 0.80
    recommended_threshold_unguarded = 0.96

    def __init__(
        self,
        dim: int = 384,
        *,
        ngram_weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
        word_weight: float = 0.5,
        anagram_weight: float = 1.0,
        stop_words: Sequence[str] = DEFAULT_STOP_WORDS,
    ) -> None:
        """Configure the embedder; the defaults are the measured ones.

        Args:
            dim: Vector length, in [16, 4096].
            ngram_weights: Weights of character 3-, 4- and 5-grams, each >= 0.
            word_weight: Weight of a whole-word feature, >= 0.
            anagram_weight: Weight of a word's sorted-letters feature, >= 0.
            stop_words: Words dropped before hashing (unless a text has nothing else).

        Raises:
            ValueError: If a value is out of range.
        """
        if isinstance(dim, bool) or not isinstance(dim, int) or not 16 <= dim <= 4096:
            raise ValueError(f"dim must be an int in [16, 4096], got {dim!r}")
        if len(ngram_weights) != 3:
            raise ValueError(f"ngram_weights must be 3 values (n = 3, 4, 5), got {ngram_weights!r}")
        weights = [float(w) for w in (*ngram_weights, word_weight, anagram_weight)]
        if not all(np.isfinite(w) and w >= 0 for w in weights) or sum(weights) == 0:
            raise ValueError(
                "ngram_weights, word_weight and anagram_weight must be finite, >= 0 and not "
                f"all 0, got {ngram_weights!r}, {word_weight!r}, {anagram_weight!r}"
            )
        self.dim = dim
        self._weights = np.array(weights, dtype=np.float32)
        self._stop_words = _normalize_stop_words(stop_words)
        self._stop: np.ndarray | None = None  # hashed on the first embed (needs the kernels)
        if (
            weights != [1.0, 1.0, 1.0, 0.5, 1.0]
            or dim != 384
            or self._stop_words != list(DEFAULT_STOP_WORDS)
        ):
            # the measured threshold holds for the defaults only; others name their own config
            self.name = f"hashing-v1-d{dim}-custom"

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed a batch of texts in one kernel call.

        Args:
            texts: The texts (str). Empty or whitespace/punctuation-only texts all get one
                fixed unit vector (so they are duplicates of each other and of nothing else).

        Returns:
            float32 array ``[len(texts), dim]``, C-contiguous, every row of unit L2 norm.

        Raises:
            TypeError: If an item is not a str.
        """
        from .embedkernels import hashed_embed

        n = len(texts)
        out = np.empty((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        if self._stop is None:
            self._stop = _stop_hashes(self._stop_words)
        try:
            raw = normalized_batch(texts)
        except TypeError:
            bad = next(t for t in texts if not isinstance(t, str))
            raise TypeError(f"texts must be str, got {type(bad).__name__}: {bad!r:.80}") from None
        data = np.frombuffer(raw, dtype=np.uint8) if raw else _ONE_BYTE
        hashed_embed(data, len(raw), self._stop, self._weights, out)
        return out

    __call__ = embed

    def embed_profiled(self, texts: list[str]) -> tuple[np.ndarray, Any]:
        """:meth:`embed`, and the key words of each text for the word index in the same
        kernel pass (:class:`stratabatch.wordkeys.BatchProfiles`). ``texts`` are canonical
        texts (:mod:`stratabatch.canon`): the key words are those of their words.

        Where normalization leaves the texts' bytes as they are (the common case: a canonical
        text is normalized already), the same pass also puts each text's squash tag in its
        key words' shapes (the batch comes back ``tagged``: what
        :func:`stratabatch.wordkeys.tag_profiles` does, from the same bytes)."""
        return self._key_words_pass(texts, True)

    def profiles(self, texts: list[str]) -> Any:
        """The key words of each text as :meth:`embed_profiled` gives them (tagged the same
        way), without the vectors: for rows whose vector nothing reads yet
        (:class:`stratabatch.index.LeaderIndex`'s rows without a vector), ~1 us a short text
        less. :meth:`embed` gives their vectors later, the same as :meth:`embed_profiled`'s."""
        return self._key_words_pass(texts, False)[1]

    def _key_words_pass(self, texts: list[str], vectors: bool) -> tuple[np.ndarray, Any]:
        hashed_embed_profiled, hashed_profiles, CRC_TABLE, wk = _profiled or _load_profiled()
        n = len(texts)
        out = np.empty((n, self.dim if vectors else 0), dtype=np.float32)
        off = np.zeros(n, dtype=np.int64)
        lens = np.zeros(n, dtype=np.int64)
        if n == 0:
            empty = np.zeros(0, dtype=np.int64)
            return out, wk.BatchProfiles(empty, empty, empty, off, lens)
        if self._stop is None:
            self._stop = _stop_hashes(self._stop_words)
        # the squash tags read each text's own bytes: the kernel reads them in ``raw`` when
        # they are there unchanged (one comparison of the joined batch, ~1 us)
        joined = texts[0] if n == 1 else SEP.join(texts)
        own = joined.encode("utf-8", "surrogatepass")
        if (
            joined.isascii()
            and not own.translate(None, _NORMALIZED_BYTES)
            and "cannot" not in joined
            and joined.count(SEP) == n - 1
        ):
            # only [a-z0-9 ] and the separators (canonical ASCII texts): normalized_batch
            # leaves these bytes as they are (no case, apostrophe, punctuation or "cannot"
            # to rewrite), ~0.2-0.3 us a text less than its scans
            raw = own
            tagged = True
        else:
            raw = normalized_batch(texts)
            tagged = raw == own
        data = np.frombuffer(raw, dtype=np.uint8) if raw else _ONE_BYTE
        # a text has at most one word per byte, and keeps at most PRECHECK_MAX_WORDS of them
        cap = max(1, min(len(raw) + n, n * (wk.PRECHECK_MAX_WORDS + 1)))
        ranks = np.empty(cap, dtype=np.int64)
        shapes = np.empty(cap, dtype=np.int64)
        counts = np.empty(cap, dtype=np.int64)
        common, ignorable, fillers, fill_at, vocab = wk.kernel_tables()
        (hashed_embed_profiled if vectors else hashed_profiles)(
            data,
            len(raw),
            self._stop,
            self._weights,
            out,
            common,
            ignorable,
            fillers,
            fill_at,
            vocab,
            wk.PRECHECK_MAX_WORDS,
            ranks,
            shapes,
            counts,
            off,
            lens,
            CRC_TABLE,
            wk.SQUASH_MOD if tagged else 0,
            wk.SQUASH_SHIFT,
        )
        return out, wk.BatchProfiles(ranks, shapes, counts, off, lens, tagged)

    def __repr__(self) -> str:
        return f"HashingEmbedder(name={self.name!r}, dim={self.dim})"


_profiled: tuple[Any, Any, Any, Any] | None = None


def _load_profiled() -> tuple[Any, Any, Any, Any]:
    """What :meth:`HashingEmbedder.embed_profiled` calls (its kernel, the CRC table and
    :mod:`stratabatch.wordkeys`), imported by its first call (numba) and kept: three import
    statements cost ~2 us a call even when loaded."""
    global _profiled
    if _profiled is None:
        from . import wordkeys
        from .embedkernels import hashed_embed_profiled, hashed_profiles
        from .pairs import CRC_TABLE

        _profiled = (hashed_embed_profiled, hashed_profiles, CRC_TABLE, wordkeys)
    return _profiled


_default_lock = threading.Lock()
_default: HashingEmbedder | None = None


def default_embedder() -> HashingEmbedder:
    """Return the process-wide shared default :class:`HashingEmbedder`."""
    global _default
    with _default_lock:
        if _default is None:
            _default = HashingEmbedder()
        return _default


# --------------------------------------------------------------------------------------------
# Validation of user embedders and user vectors
# --------------------------------------------------------------------------------------------


def _check_rows(out: Any, n: int, dim: int | None, who: str) -> np.ndarray:
    """Check an embedder's output and return it as L2-normalized C-contiguous float32."""
    if not isinstance(out, np.ndarray):
        try:
            out = np.asarray(out)
        except Exception as exc:  # any array-like failure is the embedder's output problem
            raise ValueError(f"embedder {who} returned {type(out).__name__}, not an array") from exc
    if out.dtype.kind not in "fiu":
        raise ValueError(
            f"embedder {who} returned dtype {out.dtype}; expected a real float array "
            "(float32 preferred)"
        )
    if out.ndim != 2 or out.shape[0] != n:
        raise ValueError(
            f"embedder {who} returned shape {out.shape} for {n} texts; expected ({n}, dim)"
        )
    if dim is not None and out.shape[1] != dim:
        raise ValueError(f"embedder {who} returned dim {out.shape[1]}, expected its dim {dim}")
    if out.shape[1] == 0:
        raise ValueError(f"embedder {who} returned vectors of dimension 0")
    rows = np.asarray(out, dtype=np.float64)
    finite = np.isfinite(rows).all(axis=1)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"embedder {who} returned NaN or inf in row {bad} (of {n})")
    # scale each row by its largest entry first, so huge but finite values keep a direction
    scale = np.abs(rows).max(axis=1)
    if (scale == 0).any():
        bad = int(np.flatnonzero(scale == 0)[0])
        raise ValueError(f"embedder {who} returned a zero vector in row {bad} (of {n})")
    rows = rows / scale[:, None]
    rows /= np.sqrt(np.einsum("ij,ij->i", rows, rows))[:, None]
    return np.ascontiguousarray(rows, dtype=np.float32)


class _WrappedEmbedder:
    """A user embedder behind the checked protocol: outputs validated and normalized."""

    def __init__(
        self,
        fn: Callable[[list[str]], Any],
        name: str,
        dim: int | None,
        recommended_threshold: float | None,
    ) -> None:
        self._fn = fn
        self.name = name
        self.dim = dim
        self.recommended_threshold = recommended_threshold
        self.merges_paraphrases = True  # a user's embedder may judge meaning

    def embed(self, texts: list[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:  # no call for nothing: user code need not handle an empty batch
            return np.empty((0, self.dim or 0), dtype=np.float32)
        out = self._fn(texts)
        rows = _check_rows(out, len(texts), self.dim, self.name)
        if self.dim is None and len(texts):
            self.dim = rows.shape[1]  # a plain callable's dim is learned on its first call
        return rows

    __call__ = embed

    def __repr__(self) -> str:
        return f"<embedder {self.name} dim={self.dim}>"


def _describe(obj: object) -> str:
    name = getattr(obj, "name", None)
    if isinstance(name, str) and name:
        return name
    qual = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    module = getattr(obj, "__module__", None) or type(obj).__module__
    return f"{module}.{qual}"


def resolve_embedder(embedder: object = None) -> Embedder:
    """Turn the ``embedder=`` option into a checked embedder object.

    Args:
        embedder: None (the shared default :class:`HashingEmbedder`), a :class:`HashingEmbedder`
            (used as is), an object with ``.embed(texts)`` and an int ``.dim`` (optionally
            ``.recommended_threshold``), or a callable ``list[str] -> float32[n, dim]`` (its dim
            is learned on the first call; its recommended threshold is None).

    Returns:
        An embedder whose ``embed`` returns L2-normalized float32 rows and raises ValueError
        naming the embedder and the problem when the user code returns a wrong shape, dtype or
        row count, NaN/inf or a zero vector.

    Raises:
        ValueError: If ``embedder`` is none of the above, or declares an invalid dim/threshold.
    """
    if embedder is None:
        return default_embedder()
    if isinstance(embedder, (HashingEmbedder, _WrappedEmbedder)):
        return embedder
    who = _describe(embedder)
    method = getattr(embedder, "embed", None)
    if callable(method):
        dim = getattr(embedder, "dim", None)
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0:
            raise ValueError(
                f"embedder {who} has .embed() but its .dim must be a positive int, got {dim!r}"
            )
        thr = getattr(embedder, "recommended_threshold", None)
        if thr is not None and not (isinstance(thr, (int, float)) and -1.0 <= thr <= 1.0):
            raise ValueError(
                f"embedder {who}: recommended_threshold must be None or in [-1, 1], got {thr!r}"
            )
        wrapped = _WrappedEmbedder(method, who, int(dim), None if thr is None else float(thr))
        wrapped.merges_paraphrases = getattr(embedder, "merges_paraphrases", True) is not False
        return wrapped
    if callable(embedder):
        return _WrappedEmbedder(embedder, who, None, None)
    raise ValueError(
        f"embedder must be None, an object with .embed() and .dim, or a callable "
        f"list[str] -> float32[n, dim]; got {type(embedder).__name__}"
    )


def validate_vector(vec: object, dim: int | None) -> np.ndarray:
    """Check a request's own ``"embedding"`` and return it as a unit float32 vector.

    Args:
        vec: A list of numbers or a 1-D numeric ndarray.
        dim: The dimension the active embedder uses (None: any dimension >= 1).

    Returns:
        A new float32 array of shape ``(dim,)``, L2-normalized.

    Raises:
        ValueError: If it is not a flat list/array of real numbers, has the wrong dimension,
            contains NaN/inf, or is the zero vector.
    """
    if not isinstance(vec, (np.ndarray, list, tuple)):
        raise ValueError(
            f"embedding must be a list of numbers or a 1-D ndarray, got {type(vec).__name__}"
        )
    try:
        arr = np.asarray(vec)
    except (ValueError, TypeError) as exc:  # ragged or nested lists
        raise ValueError(f"embedding must be a flat list of numbers: {exc}") from None
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"embedding must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"embedding must be 1-D, got shape {arr.shape}")
    if dim is not None and arr.shape[0] != dim:
        raise ValueError(f"embedding has dimension {arr.shape[0]}, the embedder uses {dim}")
    if arr.shape[0] == 0:
        raise ValueError("embedding is empty (dimension 0)")
    arr64 = arr.astype(np.float64)
    finite = np.isfinite(arr64)
    if not finite.all():
        where = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"embedding contains NaN or inf (index {where}: {arr64[where]})")
    scale = float(np.abs(arr64).max())
    if scale == 0.0:
        raise ValueError("embedding is the zero vector; it has no direction")
    arr64 /= scale  # huge entries (1e300) still have a direction: avoid overflow in the norm
    return (arr64 / np.sqrt(np.dot(arr64, arr64))).astype(np.float32)
