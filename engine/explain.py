"""Why two texts would or would not merge: the dedup pass's decision for one pair, spelled out.

:func:`explain` runs what the dedup pass runs for two texts (exact key, canonical text,
embedder, guards, threshold) and returns an :class:`Explanation`, for debugging a merge or a
veto. It sits above everything it explains; nothing of the dedup path imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .canon import canonical_batch, explain_canonical
from .config import GUARDS
from .dedup import normalize_key
from .embed import resolve_embedder
from .guards import Features, Veto, veto

__all__ = ["Explanation", "explain"]


@dataclass(frozen=True)
class Explanation:
    """Why two texts would or would not merge (see :func:`explain`)."""

    merge: bool
    """The decision."""
    reason: str
    """``"exact"`` (equal normalized text, never vetoed), ``"similar"`` (a candidate no guard
    refused), ``"below threshold"``, or ``"veto"``."""
    similarity: float | None
    """Cosine of the two texts' vectors (None for an exact merge)."""
    threshold: float | None
    """The threshold the similarity was compared with."""
    veto: Veto | None
    """The guard that refused the merge, with the words that decided."""
    canonical: tuple[str, str]
    """The canonical texts the embedder saw."""
    rewrites: tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]
    """The canonical rewrites of each text (:func:`stratabatch.canon.explain_canonical`)."""


def explain(
    text_a: str,
    text_b: str,
    *,
    embedder: Any = None,
    threshold: float | None = None,
    guards: tuple[str, ...] | None = None,
    guard_numbers: bool = True,
    canonicalize: bool = True,
) -> Explanation:
    """Decide, as the dedup pass does, whether two texts merge, and say why.

    Args:
        text_a: The earlier request's text (the would-be leader).
        text_b: The later request's text.
        embedder: As ``BatchProcessor(embedder=...)``; None for the default.
        threshold: As ``dedup_threshold``; None for the embedder's recommended value.
        guards: As ``dedup_guards``; None for all of :data:`GUARDS`.
        guard_numbers: As ``guard_numbers``.
        canonicalize: As ``canonicalize``: embed the canonical text rather than the raw one.

    Returns:
        An :class:`Explanation`.
    """
    emb = resolve_embedder(embedder)
    toks = canonical_batch([text_a, text_b])
    canon = (" ".join(toks[0]), " ".join(toks[1]))
    rewrites = (explain_canonical(text_a), explain_canonical(text_b))
    if normalize_key(text_a) == normalize_key(text_b):
        return Explanation(True, "exact", None, None, None, canon, rewrites)
    if threshold is None:
        threshold = getattr(emb, "recommended_threshold", None) or 0.98
    vecs = emb.embed(list(canon) if canonicalize else [text_a, text_b])
    sim = float(vecs[0].astype("float64") @ vecs[1].astype("float64"))
    enabled = GUARDS if guards is None else guards
    v = veto(
        Features(text_a, toks[0]), Features(text_b, toks[1]), frozenset(enabled), guard_numbers
    )
    if v is not None:
        return Explanation(False, "veto", sim, threshold, v, canon, rewrites)
    if sim < threshold:
        return Explanation(False, "below threshold", sim, threshold, None, canon, rewrites)
    return Explanation(True, "similar", sim, threshold, None, canon, rewrites)
