"""The dedup pass: merge what arrived into pending groups, or into work already running.

:class:`Deduper` is a component the core holds. It owns the two indexes dedup needs (the exact
keys of pending and running groups, and the leader vectors of pending groups) and decides, for
each request that arrived, whether it leads a new group, joins a pending one, or coalesces
into a running one. It carries out each decision through the narrow :class:`GroupOps`
interface the core implements, and never touches the core's queues itself.

A pass has two halves so that a large one can leave the event loop:

1. :meth:`Deduper.prepare` is pure work on the requests alone (normalized keys, xxh64 of each
   by one kernel call, and, when asked, the embeddings of the texts that are new within the
   pass). It reads no shared state, so the core may run it in a worker thread; the kernels it
   calls release the GIL.
2. :meth:`Deduper.apply` runs on the loop: the exact stage (equal scope and normalized key; a
   twin of work in the handler coalesces into it, a twin of a pending group joins it), then
   for what is left either the user's ``dedup_function`` or (strategies ``embedding`` and
   ``hybrid``) greedy cosine leader clustering against the leaders of pending and running
   groups, within partitions of equal scope and, with ``guard_numbers``, equal numbers: the
   candidate leaders of each request come from :mod:`stratabatch.index` (exhaustive, or a
   sign-sketch index when many rows take part), then :func:`~stratabatch.index.greedy_pass`
   decides; a request whose leader is running coalesces into it. Requests that left while
   ``prepare`` ran (timed out, cancelled) are skipped.

With word guards on (``dedup_guards``, all of them by default), similarity only finds
candidates: for each request, every earlier leader of its partition with cosine >= threshold,
in order (:mod:`stratabatch.index`), and the request joins the first
one that still leads a group and that no guard vetoes (:func:`stratabatch.guards.veto`); a
``dedup_function`` merge is vetoed the same way. Exact merges are never vetoed. The numbers
guard works through the partitions (:func:`stratabatch.dedup.number_signature`, keyed in
numba by :mod:`stratabatch.numberkeys`). With
``canonicalize``, embedders see the canonical text (:mod:`stratabatch.canon`).
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from .config import GUARDS
from .dedup import (
    canonical_bytes,
    exact_hashes,
    normalize_key,
    scope_of,
)
from .errors import HandlerError, InvalidRequestError
from .index import LeaderIndex
from .records import GROUPED, INFLIGHT, RAW, Group, Request

if TYPE_CHECKING:
    from .config import BatchConfig

__all__ = ["Deduper", "GroupOps", "Prepared", "VetoRecord", "partition_of"]

_CUSTOM_DEFAULT_THRESHOLD = 0.98  # dedup_function with dedup_threshold=None (the seed's value)
_FALLBACK_THRESHOLD = 0.98  # a callable embedder that recommends nothing
_SIM_SLACK = 1e-6  # float rounding: a similarity of 1.0000001 is 1.0
# every veto at DEBUG (stratabatch.logs); the check costs one cached lookup when off
_veto_log = logging.getLogger("stratabatch.dedup")
_NO_TEXT = 2
"""The partition of requests without text when numbers guard merges (a text's numbers key is
0, none, or odd: :func:`stratabatch.numberkeys.number_keys`)."""
_MASK63 = (1 << 63) - 1  # partitions are non-negative int64 (-1 marks a dead index row)
# What Deduper.veto returns for a pair the residue pre-check refused (its log entry holds the
# guards' own answer, computed when read): truthy, like every veto.
_PRECHECK_REFUSED = "residue (pre-check)"
# ... and a pair the guard kernel refused (stratabatch.guardkernels; the same lazy log entry)
_KERNEL_REFUSED = "guards (kernel)"


def partition_of(scope: bytes, key: int) -> int:
    """A request's partition from its numbers' ``key`` (0 without ``guard_numbers``) and its
    scope's encoding (:func:`stratabatch.dedup.scope_of`; b"" without a ``dedup_scope``):
    only requests of equal partitions are compared. A non-negative int."""
    return hash((scope, key)) & _MASK63 if scope else key


def _profiles_of(reqs: list[Request]) -> Any:
    """The key words of ``reqs`` that one batch holds, the ``j``-th for ``reqs[j]`` (a
    near-reuse lookup computed them with their canonical texts, as
    :meth:`Deduper._profile_batch` would: ``r.wprof`` is ``(batch, j)``), or None."""
    p = reqs[0].wprof
    if type(p) is not tuple:
        return None
    batch = p[0]
    if len(batch.lens) != len(reqs):
        return None
    for j, r in enumerate(reqs):
        q = r.wprof
        if type(q) is not tuple or q[0] is not batch or q[1] != j:
            return None
    return batch


def _judge(leader: Request, r: Request, guards: Any) -> Any:
    """The guards' veto on ``r`` joining ``leader`` with the residue guard in full, read by a
    lazy veto-log entry (:meth:`Deduper.log_refused`); the features are kept on the
    requests, as :meth:`Deduper.features_of` keeps them."""
    from .canon import canonical_texts
    from .guards import Features, veto

    for q in (leader, r):
        if q.features is None:
            if q.canon is None:
                q.canon = canonical_texts([q.text])[0]  # type: ignore[list-item]
            q.features = Features(q.text, q.canon.split())  # type: ignore[arg-type]
    return veto(leader.features, r.features, guards, False, paraphrases=False)


_hot: Any = None


def _hot_path() -> Any:
    """The modules a pass of near dedup calls into (numpy, canon, embed, greedy, numberkeys,
    wordkeys), imported by the first such pass (they load numpy and numba), then kept: an
    import statement in a method costs ~0.7 us a call even when the module is loaded, and a
    pass made seven."""
    global _hot
    if _hot is None:
        from types import SimpleNamespace

        import numpy as np

        from . import canon, embed, greedy, numberkeys, wordkeys

        _hot = SimpleNamespace(
            np=np, canon=canon, embed=embed, greedy=greedy, numberkeys=numberkeys,
            wordkeys=wordkeys,
        )  # fmt: skip
    return _hot


# A sliced pass (Core) decides arrivals for at most this long in one loop callback; the rest of
# the pass is handed back (:meth:`Deduper.apply`) and continues in a later callback.
SLICE_S = 0.010
_MIN_SLICE_ROWS = 16
_MAX_SLICE_ROWS = 1 << 16

# Passes that embed every row at once after a pass of rows without vectors (see
# Deduper._profile_batch) computed the vectors of more than a quarter of its rows anyway.
_EAGER_PASSES = 16


# str.split()'s ASCII whitespace other than the space (a text holding one is normalized alone)
_ASCII_SPACES = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f"


def _normalized_ascii(texts: list[str]) -> list[str] | None:
    """:func:`~stratabatch.dedup.normalize_key` of each text by a few scans of the joined
    batch, where every text is ASCII and already collapsed (single spaces, none at either
    end: what clients send); else None (then each text is normalized alone). ~0.07-0.1 us
    a text, against ~0.3 for a call each."""
    joined = "\0".join(texts)
    if not joined.isascii() or any(w in joined for w in _ASCII_SPACES):
        return None
    spaced = joined.replace("\0", " ")  # (one scan finds two spaces, at a text's ends too)
    if "  " in spaced or spaced[:1] == " " or spaced[-1:] == " ":
        return None  # (an empty text among others lands here too: normalized alone)
    lower = joined.lower()
    if lower == joined:  # (lower case already: the texts are their own keys)
        return texts
    norms = lower.split("\0")
    return norms if len(norms) == len(texts) else None


class GroupOps(Protocol):
    """What the dedup pass asks of the core holding it."""

    def new_group(self, req: Request, part: Any) -> Group:
        """Make ``req`` the leader of a new pending group."""

    def join(self, req: Request, g: Group, similarity: float, exact: bool) -> None:
        """``req`` becomes a duplicate in pending group ``g``."""

    def coalesce(self, req: Request, g: Group, similarity: float, exact: bool) -> None:
        """``req`` waits for the result of ``g``, which is in the handler now."""

    def reject(self, req: Request, error: BaseException) -> None:
        """``req`` fails its dedup step: it leaves the queue with ``error``."""

    def pending_groups(self) -> Iterable[Group]:
        """The pending groups, in arrival order."""

    def reused(self) -> Callable[[Request], bool] | None:
        """None, or a function that answers a request from the reuse cache (True) before
        it is grouped."""
        ...

    def near_reused(
        self,
    ) -> Callable[[list[Request], list[Any] | None, dict[Any, list[Request]]], list[bool]] | None:
        """None, or a function that answers near twins of stored answers among a pass's
        fresh requests (and their exact twins of the pass, taken out of the followers) at
        once, and says which of them are left (``reuse="near"``)."""
        ...

    def lane_twins(self) -> Callable[[Request, Any], bool] | None:
        """None, or what asks whether a request is a twin of work the core's row lane runs
        (``(request, normalized key) -> True`` when it joined that work as a row)."""


class Prepared:
    """The pure half of a pass: per request its normalized key and exact key, and the
    embeddings computed ahead (``vectors[i]`` for ``raw[i]``, or None)."""

    __slots__ = ("raw", "keys", "vectors", "error")

    def __init__(
        self,
        raw: list[Request],
        keys: list[Any],
        vectors: list[Any] | None,
        error: BaseException | None = None,
    ) -> None:
        self.raw = raw
        self.keys = keys
        self.vectors = vectors
        self.error = error


def similarity_value(sim: Any) -> float:
    """A user's similarity as a float in [0, 1], or ValueError.

    Any real number type is accepted (numpy's too), and values past the ends by float rounding
    only (1.0000001) are clamped.
    """
    if isinstance(sim, bool) or not isinstance(sim, numbers.Real):
        raise ValueError(f"dedup_function must return a similarity in [0, 1], got {sim!r}")
    v = float(sim)
    if not math.isfinite(v) or v < -_SIM_SLACK or v > 1.0 + _SIM_SLACK:
        raise ValueError(f"dedup_function must return a similarity in [0, 1], got {sim!r}")
    return min(max(v, 0.0), 1.0)


def _clip(text: str | None, n: int = 80) -> str | None:
    return text if text is None or len(text) <= n else text[: n - 3] + "..."


class VetoRecord:
    """A near merge a guard refused (kept in :attr:`Deduper.vetoes` for debugging)."""

    __slots__ = ("leader", "request", "similarity", "reuse", "_veto", "_judge")

    def __init__(
        self,
        leader: Request,
        request: Request,
        similarity: float,
        veto: Any,
        judge: Any = None,
        reuse: bool = False,
    ) -> None:
        self.leader = leader
        """The request that leads the group ``request`` would have joined (with ``reuse``:
        the stored answer's text, a stand-in with ``text`` and ``canon``)."""
        self.request = request
        """The request that was kept apart."""
        self.similarity = similarity
        """Their similarity (at or above the threshold: a candidate)."""
        self.reuse = reuse
        """Whether a near-reuse lookup was refused (``leader`` is a stored answer's request,
        :mod:`stratabatch.nearreuse`), not a merge in the window."""
        self._veto = veto
        self._judge = judge  # asks the guards when ``veto`` is first read (see below)

    @property
    def veto(self) -> Any:
        """The :class:`~stratabatch.guards.Veto`: guard name and the words that decided. For
        a pair the residue pre-check refused (:meth:`Deduper.veto`), the guards are asked
        when this is first read, not on the event loop of the pass."""
        v = self._veto
        if v is None and self._judge is not None:
            v = self._veto = self._judge()
            self._judge = None
        return v

    def __repr__(self) -> str:
        return (
            f"VetoRecord({self.leader.text!r:.60} / {self.request.text!r:.60}, "
            f"similarity={self.similarity:.3f}, {self.veto}{', reuse' if self.reuse else ''})"
        )


class Deduper:
    """Decides what each arriving request merges with.

    Args:
        config: The live options.
        ops: The core's side: where decisions are carried out.

    Attributes:
        exact: Exact key -> the group it belongs to, pending or running: the group itself for
            its leader's key, ``(group, norm, similarity, exact)`` for a member's own key.
        leaders: The vectors of the leaders of pending and running groups.
        vetoes: The last 256 near merges a guard refused, oldest first (:class:`VetoRecord`).
    """

    def __init__(self, config: BatchConfig, ops: GroupOps) -> None:
        self.config = config
        self._ops = ops
        self.exact: dict[Any, Any] = {}
        self.leaders = LeaderIndex()
        self._embedder: Any = None
        self.vetoes: deque[VetoRecord] = deque(maxlen=256)
        self._canon_index: bool | None = None  # canonicalize setting the index was built with
        self._features_cls: Any = None  # stratabatch.guards.Features, once loaded
        self._veto_fn: Any = None  # stratabatch.guards.veto, once loaded
        self._decide_fn: Any = None  # stratabatch.guardkernels.decide, once loaded
        self._decide_pairs_fn: Any = None  # ... and guardkernels.decide_pairs
        # texts of at most this many words were pre-checked by the index (if at all): no more
        # distinct key words than it keeps (stratabatch.wordkeys.PRECHECK_MAX_WORDS); set by
        # the first veto (no numpy import before dedup needs it)
        self._precheck_min_tokens: int | None = None
        self._slice_rows = _MAX_SLICE_ROWS  # rows a sliced pass puts in the index at once
        self._rest: Prepared | None = None  # what the last sliced pass left (take_rest)
        # passes left that embed every row at once: set when a pass of rows without vectors
        # had to compute many of them anyway (most rows meet twins: a narrow vocabulary)
        self._eager = 0
        #: exact dedup only, while a first start's near-dedup kernels compile in a child
        #: process (the core's cold_start="serve"; docs/coldstart.md)
        self.interim_exact = False
        #: None, or (the core's row lane) the stand-in group of a running lane group that
        #: leads its partition without a row, made when a pass must compare with it
        self.shadow: Callable[[Any], Group] | None = None

    # ------------------------------------------------------------- indexes

    def reset_embedder(self) -> None:
        """The embedder option changed: old vectors are not comparable with new ones."""
        self._embedder = None
        self.leaders.reset()

    def register_leader(self, g: Group) -> None:
        """Index the key of ``g``'s leader (called for every new group)."""
        key = g.leader.key
        if key is not None:
            g.keys = key  # (one key, not a list: see Group.keys)
            self.exact[key] = g

    def register_member(self, req: Request, g: Group, similarity: float, exact: bool) -> None:
        """Index the key of a member that joined ``g`` (a twin of it joins ``g`` too)."""
        key = req.key
        if key is not None and key not in self.exact:
            ks = g.keys
            if ks is None:
                g.keys = key
            elif type(ks) is list:
                ks.append(key)
            else:
                g.keys = [ks, key]
            self.exact[key] = (g, req.norm, similarity, exact)

    def drop_row(self, g: Group) -> None:
        """``g`` is no longer pending: its leader vector no longer attracts new requests."""
        if g.row is not None:
            self.leaders.drop(g.row)
            g.row = None

    def drop_keys(self, g: Group) -> None:
        """``g`` is finished (or gone): its exact keys no longer attract twins."""
        exact = self.exact
        ks = g.keys
        if ks is None:
            return
        for k in ks if type(ks) is list else (ks,):
            entry = exact.get(k)
            if entry is g or (type(entry) is tuple and entry[0] is g):
                del exact[k]

    # ------------------------------------------------------------- embedder

    def embedder(self) -> Any:
        """The resolved embedder (built on first use)."""
        if self._embedder is None:
            from .embed import resolve_embedder

            self._embedder = resolve_embedder(self.config.embedder)
        return self._embedder

    def vector_dim(self) -> int | None:
        """The dimension a request's own ``"embedding"`` must have, if known yet."""
        if self.leaders.dim is not None:
            return self.leaders.dim
        if self.config.embedder is None and self.config.dedup_function is None:
            return getattr(self.embedder(), "dim", None)
        if self._embedder is not None:
            return getattr(self._embedder, "dim", None)
        return None

    def threshold(self) -> float:
        """The similarity threshold in force for embedding merges."""
        c = self.config
        if c.dedup_threshold is not None:
            return c.dedup_threshold
        if c.dedup_function is not None:
            return _CUSTOM_DEFAULT_THRESHOLD
        emb = self.embedder()
        rec = getattr(emb, "recommended_threshold", None)
        if not c.dedup_guards:  # the embedder's value without the word guards, if it has one
            rec = getattr(emb, "recommended_threshold_unguarded", None) or rec
        return float(rec) if rec is not None else _FALLBACK_THRESHOLD

    def guarded(self) -> bool:
        """Whether near merges go through the word guards (the numbers guard works through
        the partitions: requests with different numbers are never compared)."""
        return bool(self.config.dedup_guards)

    def embed_requests(self, reqs: list[Request]) -> Any:
        """Embed the texts of ``reqs`` (canonical texts with ``canonicalize``). Where the word
        index serves and the embedder can (the default one), their key words come out of the
        same kernel pass (``r.wprof``: see :meth:`profile_of`)."""
        mat, batch = self._embed_batch(reqs)
        self._keep_profiles(reqs, batch)
        return mat

    @staticmethod
    def _keep_profiles(reqs: list[Request], batch: Any) -> None:
        """Point each request at its key words in ``batch`` (``r.wprof``, see
        :meth:`profile_of`); those the kernel left to the Python reference stay unset."""
        if batch is not None:
            for j, k in enumerate(batch.lens.tolist()):
                if k >= 0:
                    reqs[j].wprof = (batch, j)

    def features_of(self, r: Request) -> Any:
        """The guard features of ``r``'s text (computed once), or None without text."""
        f = r.features
        if f is None and r.text is not None:
            Features = self._features_cls
            if Features is None:
                from .guards import Features

                self._features_cls = Features
            if r.canon is None:
                from .canon import canonical_texts

                r.canon = canonical_texts([r.text])[0]
            f = r.features = Features(r.text, r.canon.split())
        return f

    def veto(self, r: Request, leader: Request, similarity: float, reuse: bool = False) -> Any:
        """The guard veto on ``r`` joining the group ``leader`` leads, or None (and logged;
        ``reuse``: ``leader`` is a stored answer's, see :attr:`VetoRecord.reuse`).

        A pair of long texts (more words than the index pre-checks, see
        :data:`~stratabatch.wordkeys.PRECHECK_MAX_WORDS`) first goes through the same residue
        pre-check as the index's pairs (:func:`stratabatch.index.residue_precheck`, one merge
        in numba); a pair it refuses is refused without walking the texts in Python (the guards
        would refuse it too), and its log entry asks the guards why only when read. Without
        it, near-identical long texts (logs, code, ids) cost ~3 ms a pair on the loop.

        Two texts of the same canonical text (punctuation, a filler, case apart) pass without
        their guard features: the guards let the same canonical words in the same order merge
        (:func:`stratabatch.guards.veto`), and building the features of both cost ~20-100 us
        a near twin on the loop."""
        canon, other = r.canon, leader.canon
        if (
            canon is not None
            and other is not None
            and (canon == other or canon.split() == other.split())
        ):
            return None
        c = self.config
        # a judge of meaning (the user's function, vectors or embedder, a sentence model):
        # the residue guard applies where the texts are mostly the same words only
        paraphrases = (
            c.dedup_function is not None
            or r.vector is not None
            or leader.vector is not None
            or getattr(self.embedder(), "merges_paraphrases", True) is not False
        )
        guards = c.dedup_guards
        if (
            not paraphrases
            and canon is not None
            and other is not None
            and r.text is not None
            and leader.text is not None
            and guards == GUARDS  # every guard on (the config keeps them in GUARDS' order)
        ):
            # the common decisions (typos, words one side lacks, reordered words) of the
            # default guards in one kernel call; the rest goes to the Python guards below
            decide = self._decide_fn or self._load_decide()
            k = decide(other, canon, leader.text, r.text)
            if k == 0:
                return None
            if k > 0:
                self.log_refused(r, leader, similarity, reuse)
                return _KERNEL_REFUSED
        fa = self.features_of(leader)
        fb = self.features_of(r)
        if fa is None or fb is None:
            return None  # no text on one side: nothing for the guards to read
        veto = self._veto_fn
        if veto is None:
            from . import guards as guard_words

            veto = self._veto_fn = guard_words.veto

        big = self._precheck_min_tokens
        if big is None:
            from .wordkeys import PRECHECK_MAX_WORDS

            big = self._precheck_min_tokens = PRECHECK_MAX_WORDS
        if (
            not paraphrases
            and "residue" in guards
            and max(len(fa.tokens), len(fb.tokens)) > big
            and not self._residue_may_pass(fa, fb)
        ):
            self.log_refused(r, leader, similarity, reuse)
            return _PRECHECK_REFUSED
        v = veto(fa, fb, guards, False, paraphrases=paraphrases)
        if v is not None:
            self._record_veto(VetoRecord(leader, r, similarity, v, reuse=reuse))
        return v

    def _record_veto(self, rec: VetoRecord) -> None:
        """Keep ``rec`` in :attr:`vetoes`; log it on ``stratabatch.dedup`` at DEBUG."""
        self.vetoes.append(rec)
        if _veto_log.isEnabledFor(logging.DEBUG):
            _veto_log.debug(
                "veto: %r kept apart from %s%r at similarity %.3f (%s)",
                _clip(rec.request.text),
                "the stored answer of " if rec.reuse else "",
                _clip(rec.leader.text),
                rec.similarity,
                rec.veto,
            )

    def log_refused(
        self, r: Request, leader: Request, similarity: float, reuse: bool = False
    ) -> None:
        """Log a near merge a residue pre-check or the guard kernel refused (with ``reuse``:
        a near-reuse lookup of ``r`` that the stored answer of ``leader`` did not serve); the
        guards say why when the entry's ``veto`` is read (both hold only where the residue
        guard applies in full: no paraphrases, numbers settled by the partition), and only
        then build the two texts' guard features."""
        if r.text is None or leader.text is None:
            return
        judge = partial(_judge, leader, r, self.config.dedup_guards)
        self._record_veto(VetoRecord(leader, r, similarity, None, judge, reuse))

    def _kernel_answers(self, ok: list[Request], start: int, found: Any, joinable: Any) -> Any:
        """The guard kernel's answers (:func:`stratabatch.guardkernels.decide_pairs`, one
        call) on the candidate pairs ``found`` offers the rows of ``ok`` (row ``start + j``
        is ``ok[j]``) where :meth:`veto` would ask it, as the greedy pass's ``codes``
        (:func:`stratabatch.greedy.greedy_pass`: SKIP for an old row not ``joinable``, ASK
        where the kernel defers or is not asked): the same answers as :meth:`veto`'s call per
        pair, without its Python around each pair (a pair of the same canonical words passes,
        as in :meth:`veto`). Every other setting than the kernel's is left to :meth:`veto`
        (None).

        The pairs go to the kernel as arrays built from one list of the texts they read (the
        rows' own requests and their candidates' leaders, each once), not by a loop over the
        pairs."""
        c = self.config
        if (
            c.dedup_guards != GUARDS
            or c.dedup_function is not None
            or getattr(self.embedder(), "merges_paraphrases", True) is not False
        ):
            return None
        hot = _hot_path()
        np = hot.np
        ASK, SKIP = hot.greedy.ASK, hot.greedy.SKIP

        off, rows = found[0], found[1]
        codes = np.full(len(rows), ASK, np.int8)
        if not len(rows):
            return codes  # (the walk still runs: a warm-up's rehearsal compiles it)
        counts = np.diff(off)
        new = rows >= start
        # each text a pair reads, once: tix[j] is ok[j]'s in canons/texts, -1 where veto()
        # asks no kernel (its own vector, no text or no canonical text)
        tix = np.full(len(ok), -1, np.int64)
        read = counts > 0
        read[rows[new] - start] = True
        js = np.flatnonzero(read)
        reqs = [ok[j] for j in js.tolist()]
        canons: list[Any] = [q.canon for q in reqs]
        texts: list[Any] = [q.text for q in reqs]
        if None in canons or None in texts or [q.vector for q in reqs].count(None) < len(reqs):
            keep = [q.vector is None and q.text is not None and q.canon is not None for q in reqs]
            canons = [x for x, k in zip(canons, keep, strict=True) if k]
            texts = [x for x, k in zip(texts, keep, strict=True) if k]
            js = js[np.array(keep, bool)]
        tix[js] = np.arange(len(js))
        pa = np.repeat(tix, counts)
        pb = np.empty(len(rows), np.int64)
        pb[new] = tix[rows[new] - start]
        skip = None
        if not new.all():
            # old rows: their groups' leaders, -2 where the group is not joinable
            old = ~new
            held, inv = np.unique(rows[old], return_inverse=True)
            lix = np.full(len(held), -1, np.int64)
            owners = self.leaders.owners
            for k, row in enumerate(held.tolist()):
                if not joinable(row):
                    lix[k] = -2
                    continue
                q = owners[row].leader
                if q.vector is None and q.text is not None and q.canon is not None:
                    lix[k] = len(canons)
                    canons.append(q.canon)
                    texts.append(q.text)
            pb[old] = lix[inv]
            skip = (pb == -2) & (pa >= 0)
        if self._decide_pairs_fn is None:
            self._load_decide()
        got = self._decide_pairs_fn(canons, texts, pa, pb)
        # the kernel's answers as codes (greedy.PASS and REFUSE are its values); DEFER asks veto()
        codes = np.where(got < 0, ASK, got).astype(np.int8)
        if skip is not None:
            codes[skip] = SKIP
        return codes

    def _load_decide(self) -> Any:
        """:func:`stratabatch.guardkernels.decide` (and ``decide_pairs``, kept for
        :meth:`_kernel_answers`), their kernels loaded (or compiled)."""
        from . import guardkernels

        guardkernels.warm_up()
        if self._decide_pairs_fn is None:
            self._decide_pairs_fn = guardkernels.decide_pairs
        if self._decide_fn is None:
            self._decide_fn = guardkernels.decide
        return self._decide_fn

    @staticmethod
    def _residue_may_pass(fa: Any, fb: Any) -> bool:
        """The residue pre-check of two texts' guard features (their key words kept on the
        features, computed once per text)."""
        from .pairs import residue_precheck

        return residue_precheck(fa.key_profile(), fb.key_profile())

    def profile_of(self, r: Request) -> Any:
        """The key words of ``r``'s text for the word index: a
        :func:`~stratabatch.wordkeys.word_profile` list, or ``(batch, j)`` into the
        :class:`~stratabatch.wordkeys.BatchProfiles` its embedding pass wrote (computed once;
        by :meth:`prepare` off the loop for large passes)."""
        p = r.wprof
        if p is None:
            from .wordkeys import word_profile

            canon = r.canon  # (the canonical text the embedder saw; else the guards' words)
            p = r.wprof = word_profile(
                self.features_of(r).tokens if canon is None else canon.split(), squash=True
            )
        return p

    def word_keyed(self) -> bool:
        """Whether a merge needs the texts' key words to match up to typos (the residue guard,
        in full: an embedder that compares wording), so the word index may find candidates
        (:mod:`stratabatch.wordkeys`)."""
        c = self.config
        return (
            c.dedup_function is None
            and "residue" in c.dedup_guards
            and getattr(self.embedder(), "merges_paraphrases", True) is False
        )

    def _embeds(self) -> bool:
        c = self.config
        return (
            c.dedup_function is None
            and c.dedup_strategy in ("embedding", "hybrid")
            and not self.interim_exact
        )

    # ------------------------------------------------------------- the pass

    def run(self, raw: list[Request], *, sliced: bool = False) -> Prepared | None:
        """One pass on the loop (small passes); ``sliced``: as :meth:`apply`."""
        if raw:
            c = self.config
            if (
                c.enable_dedup
                and c.dedup_function is None
                and not c.dedup_scope
                and not self._embeds()
            ):
                self._run_exact(raw)
                return None
            return self.apply(self.prepare(raw, embed_ahead=False), sliced=sliced)
        return None

    def _run_exact(self, raw: list[Request]) -> None:
        """:meth:`apply` of :meth:`prepare` for exact dedup without a scope (the common pass),
        fused into one loop over the arrivals: the same keys, and the same groups, joins and
        coalescences in the same order (a twin of this pass finds its leader already filed
        under its key, where :meth:`apply` files the pass's leaders first and joins their
        twins after; the members and the groups' order come out the same)."""
        ops = self._ops
        exact_index = self.exact
        try:
            if self.config.normalize:
                norms: list[Any] = [
                    (
                        canonical_bytes(r.payload)
                        if (t := r.text) is None
                        else " ".join(t.lower().split())
                        if t.isascii()
                        else normalize_key(t)
                    )
                    for r in raw
                ]
            else:
                norms = [canonical_bytes(r.payload) if r.text is None else r.text for r in raw]
        except Exception as e:  # as apply() reports prepare()'s failure: each request gets it
            for r in raw:
                if r.state == RAW:
                    ops.reject(r, HandlerError.from_exception(e, "dedup failed"))
            return
        new_group = ops.new_group
        join = ops.join
        lane_twin = ops.lane_twins()  # (None unless the row lane runs work with keys)
        reused = ops.reused()
        for r, n in zip(raw, norms, strict=True):
            if r.state != RAW:  # left meanwhile
                continue
            key: Any = hash(n) if r.text is not None else (b"", hash(n), True)
            r.norm = n
            r.key = key
            entry = exact_index.get(key)
            if entry is not None:
                if type(entry) is tuple:
                    g, norm, sim, ex = entry
                else:
                    g, norm, sim, ex = entry, entry.leader.norm, 1.0, True
                if norm == n:  # not a 64-bit hash collision
                    batch = g.batch
                    if batch is None:
                        join(r, g, sim, ex)
                        self.register_member(r, g, sim, ex)
                        continue
                    if batch.live > 0:  # running, and somebody still waits for it
                        ops.coalesce(r, g, sim, ex)
                        continue
            if reused is not None and reused(r):
                continue  # answered from the reuse cache
            if lane_twin is not None and lane_twin(r, n):
                continue  # it waits for the result of the lane's running work
            g = new_group(r, None)
            g.keys = key
            exact_index[key] = g

    def prepare(self, raw: list[Request], *, embed_ahead: bool) -> Prepared:
        """The pure half of a pass; safe to run off the loop (reads only ``raw``).

        With ``embed_ahead``, the texts that are new within ``raw`` are embedded here too, so
        that :meth:`apply` has only cheap work left.
        """
        c = self.config
        if not c.enable_dedup:
            return Prepared(raw, [], None)
        try:
            scope = c.dedup_scope
            texts: list[Any] = [r.text for r in raw]
            norms: list[Any] | None = None
            if c.normalize and not scope and None not in texts:
                norms = _normalized_ascii(texts)
            if norms is not None:  # the common pass: plain int keys, cheapest to hash
                keys: list[Any] = [hash(n) for n in norms]
                for r, n in zip(raw, norms, strict=True):
                    r.norm = n
            else:
                norms = []
                for r in raw:
                    if r.text is not None:
                        norms.append(normalize_key(r.text) if c.normalize else r.text)
                    else:
                        norms.append(canonical_bytes(r.payload))
                hashes = exact_hashes(norms)
                keys = []
                for r, n, h in zip(raw, norms, hashes, strict=True):
                    r.norm = n
                    # a plain int key in the common case (text, no scope): cheapest to hash
                    keys.append(
                        h
                        if not scope and r.text is not None
                        else (scope_of(r.payload, scope) if scope else b"", h, r.text is None)
                    )
            vectors: list[Any] | None = None
            if embed_ahead and c.guard_numbers and self._embeds():  # off the loop too
                texted = [r for r in raw if r.text is not None]
                if len(texted) < len(raw):
                    texts = [r.text for r in texted]
                from .numberkeys import number_keys  # (numba: imported once near dedup runs)

                for r, k in zip(texted, number_keys(texts), strict=True):
                    r.numkey = k
            if embed_ahead and self._embeds():
                seen: set[Any] = set()
                idx: list[int] = []
                for i, r in enumerate(raw):
                    if r.vector is None and r.text is not None and keys[i] not in seen:
                        seen.add(keys[i])
                        idx.append(i)
                vectors = [None] * len(raw)
                if idx:
                    mat = self.embed_requests([raw[i] for i in idx])
                    for j, i in enumerate(idx):
                        vectors[i] = mat[j]
                    if self.word_keyed():  # counting the words of long texts: off the loop
                        for i in idx:
                            self.profile_of(raw[i])
                        if self.guarded():
                            self._precheck_ahead([raw[i] for i in idx], mat)
            return Prepared(raw, keys, vectors)
        except Exception as e:  # reported by apply(): every request of the pass gets it
            return Prepared(raw, [], None, e)

    def _precheck_ahead(self, reqs: list[Request], mat: Any) -> None:
        """Off the loop: the guard features and key words (:meth:`Features.key_profile`) of
        the texts too long for the index's pre-check, which :meth:`veto` pre-checks itself
        (counting and ranking thousands of words a text is milliseconds of Python); only for
        those with a near vector in the pass or among the leaders (a snapshot: a hint only),
        since the others never reach the guards."""
        import numpy as np

        from .wordkeys import PRECHECK_MAX_WORDS

        long = [
            j
            for j, r in enumerate(reqs)
            if r.canon is None or r.canon.count(" ") >= PRECHECK_MAX_WORDS
        ]
        if not long:
            return
        X = np.asarray(mat, np.float32)
        part = np.array(self._part_keys(reqs), np.int64)  # only equal partitions compare
        thr = float(self.threshold()) - 0.05
        sims = X[long] @ X.T
        sims[part[long][:, None] != part[None, :]] = -1.0
        sims[np.arange(len(long)), long] = -1.0  # (not itself)
        near = sims.max(axis=1) >= thr
        index = self.leaders  # a snapshot of what the loop may change meanwhile: a hint
        n = min(len(index.owners), index.mat.shape[0], index.part.shape[0])
        if n and index.mat.shape[1] == X.shape[1]:
            lpart = index.part[:n].copy()  # (dead rows: -1, no partition)
            lsims = X[long] @ index.mat[:n].T
            lsims[(part[long][:, None] != lpart[None, :]) | (lpart < 0)] = -1.0
            near |= lsims.max(axis=1) >= thr
        for j in np.flatnonzero(near).tolist():
            f = self.features_of(reqs[long[j]])
            if f is not None and len(f.tokens) > PRECHECK_MAX_WORDS:
                f.key_profile()

    def apply(self, prep: Prepared, *, sliced: bool = False) -> Prepared | None:
        """The decisions of a pass, on the loop.

        With ``sliced``, the embedding stage stops deciding after :data:`SLICE_S` (at least one
        request decided) and the rest of the pass comes back as a :class:`Prepared` of its own,
        in arrival order (the undecided requests, their vectors, and their exact twins of the
        pass), also kept for :meth:`take_rest`: the caller applies it in a later loop
        callback, before any newer arrivals, so the decisions are those of one whole pass.
        None when the pass is done.
        """
        deadline = time.perf_counter() + SLICE_S if sliced else None
        ops = self._ops
        raw = prep.raw
        if prep.error is not None:
            e = prep.error
            for r in raw:
                if r.state == RAW:
                    ops.reject(r, HandlerError.from_exception(e, "dedup failed"))
            return None
        c = self.config
        if not c.enable_dedup or not prep.keys:
            for r in raw:
                if r.state == RAW:
                    ops.new_group(r, None)
            return None
        exact_index = self.exact
        fresh: list[Request] = []
        fresh_vec: list[Any] = []
        first_of: dict[Any, Request] = {}
        followers: dict[Any, list[Request]] = {}
        vectors = prep.vectors
        reused = ops.reused()
        lane_twin = ops.lane_twins()  # (None unless the row lane runs work with keys)
        for i, (r, key) in enumerate(zip(raw, prep.keys, strict=True)):
            if r.state != RAW:  # left while prepare() ran
                continue
            r.key = key
            entry = exact_index.get(key)
            if entry is not None:
                if type(entry) is tuple:
                    g, norm, sim, ex = entry
                else:
                    g, norm, sim, ex = entry, entry.leader.norm, 1.0, True
                if norm == r.norm:  # not a 64-bit hash collision
                    if g.batch is None:
                        ops.join(r, g, sim, ex)
                        self.register_member(r, g, sim, ex)
                        continue
                    if g.batch.live > 0:  # running, and somebody still waits for it
                        ops.coalesce(r, g, sim, ex)
                        continue
            if reused is not None and reused(r):
                continue  # answered from the reuse cache
            if lane_twin is not None and lane_twin(r, r.norm):
                continue  # it waits for the result of the lane's running work
            lead = first_of.get(key)
            if lead is not None and lead.norm == r.norm:
                followers.setdefault(key, []).append(r)
                continue
            if lead is None:
                first_of[key] = r
            fresh.append(r)
            if vectors is not None:
                fresh_vec.append(vectors[i])
        near = ops.near_reused() if fresh else None
        if near is not None:  # near twins of stored answers (reuse="near"), all at once
            keep = near(fresh, fresh_vec if vectors is not None else None, followers)
            fresh = [r for r, k in zip(fresh, keep, strict=True) if k]
            if vectors is not None:
                fresh_vec = [v for v, k in zip(fresh_vec, keep, strict=True) if k]
        left: dict[int, Any] = {}  # id of an undecided request -> its vector
        if fresh:
            if c.dedup_function is not None:
                self._custom_stage(fresh)
            elif self._embeds():
                ahead = None if vectors is None else fresh_vec
                left = {id(r): v for r, v in self._embedding_stage(fresh, ahead, deadline)}
            else:  # exact only: each fresh request leads a group under its key
                new_group = ops.new_group
                for r in fresh:
                    g = new_group(r, None)
                    key = r.key
                    if key is not None:
                        g.keys = key
                        exact_index[key] = g
        for key, rs in followers.items():
            lead = first_of[key]
            if id(lead) in left:  # undecided: its twins wait for it, in the rest of the pass
                for r in rs:
                    left.setdefault(id(r), None)
                continue
            g = lead.group
            if (
                lead.state == INFLIGHT
                and g is not None
                and g.batch is not None
                and g.batch.live > 0
            ):  # its lead coalesced into running work: so do they
                sim = 1.0 if lead.similarity is None else lead.similarity
                for r in rs:
                    if r.state == RAW:
                        ops.coalesce(r, g, sim, lead.exact)
                continue
            if lead.state != GROUPED:
                # its lead failed its own dedup step (or left): the first live one leads
                rs = [r for r in rs if r.state == RAW]
                if not rs:
                    continue
                lead, rs = rs[0], rs[1:]
                self._lead(lead, None)
            g = lead.group
            assert g is not None
            sim = 1.0 if lead.similarity is None else lead.similarity
            ex = lead.similarity is None or lead.exact
            for r in rs:
                if r.state != RAW:
                    continue
                ops.join(r, g, sim, ex)
                self.register_member(r, g, sim, ex)
        if not left:
            return None
        rest = [r for r in raw if id(r) in left and r.state == RAW]
        if not rest:
            return None
        self._rest = Prepared(rest, [r.key for r in rest], [left[id(r)] for r in rest])
        return self._rest

    def take_rest(self) -> Prepared | None:
        """The rest of the last sliced pass (see :meth:`apply`), once; None if it finished."""
        rest, self._rest = self._rest, None
        return rest

    def _lead(self, r: Request, part: Any) -> Group:
        g = self._ops.new_group(r, part)
        self.register_leader(g)
        return g

    def _join(self, r: Request, g: Group, sim: float, exact: bool) -> None:
        self._ops.join(r, g, sim, exact)
        self.register_member(r, g, sim, exact)

    def _part_key(self, req: Request) -> int:
        """The request's partition: only requests of equal partitions are compared. A
        non-negative int: the key of the text's numbers with ``guard_numbers`` (sign and
        separators count: "-5" and "5", "1,000" and "1.000" differ; 0 for none,
        :data:`_NO_TEXT` for a request without text, see :mod:`stratabatch.numberkeys`), mixed
        with the scope's encoding when there is a ``dedup_scope``."""
        c = self.config
        key = 0
        if c.guard_numbers:
            if req.text is None:
                key = _NO_TEXT
            else:
                known = req.numkey
                if known is None:
                    from .numberkeys import number_keys

                    known = req.numkey = number_keys([req.text])[0]
                key = known
        if c.dedup_scope:
            return partition_of(scope_of(req.payload, c.dedup_scope), key)
        return key

    def _part_keys(self, reqs: list[Request], texts: list[Any] | None = None) -> list[int]:
        """:meth:`_part_key` of each request, the numbers' keys of a batch in one kernel call
        (``texts``: their texts, where the caller has them)."""
        c = self.config
        if c.guard_numbers:
            if not c.dedup_scope:
                # the common pass: texts whose keys nobody computed yet, one kernel call and
                # no write-back (a request decided in a later slice is keyed again: one
                # kernel call a pass, ~0.2 us a request less than a loop over the records)
                every: list[Any] = [r.text for r in reqs] if texts is None else texts
                if None not in every and [r.numkey for r in reqs].count(None) == len(reqs):
                    return _hot_path().numberkeys.number_keys(every)
            todo = [r for r in reqs if r.numkey is None and r.text is not None]
            if todo:
                from .numberkeys import number_keys

                todo_texts: list[str] = [r.text for r in todo]  # type: ignore[misc]
                for r, k in zip(todo, number_keys(todo_texts), strict=True):
                    r.numkey = k
            if not c.dedup_scope:  # (numkey None: a request without text)
                return [_NO_TEXT if (nk := r.numkey) is None else nk for r in reqs]
        elif not c.dedup_scope:
            return [0] * len(reqs)
        return [self._part_key(r) for r in reqs]

    def _custom_stage(self, fresh: list[Request]) -> None:
        c = self.config
        fn = c.dedup_function
        threshold = (
            c.dedup_threshold if c.dedup_threshold is not None else _CUSTOM_DEFAULT_THRESHOLD
        )
        leaders = list(self._ops.pending_groups())
        guarded = self.guarded()
        for r in fresh:
            part = self._part_key(r)
            best: Group | None = None
            best_sim = 0.0
            try:
                for g in leaders:
                    if g.part != part or g.batch is not None or g.live == 0:
                        continue
                    try:
                        sim = similarity_value(fn(r.payload, g.leader.payload))  # type: ignore[misc]
                    except ValueError as e:
                        raise HandlerError(str(e)) from None
                    if sim >= threshold:
                        if guarded and self.veto(r, g.leader, sim) is not None:
                            continue
                        best, best_sim = g, sim
                        break
            except HandlerError as e:
                self._ops.reject(r, e)
                continue
            except Exception as e:  # the user's function: fail this request only
                self._ops.reject(r, HandlerError.from_exception(e, "dedup_function raised"))
                continue
            if best is not None:
                self._join(r, best, best_sim, False)
            else:
                leaders.append(self._lead(r, part))

    def _embedding_stage(
        self, fresh: list[Request], ahead: list[Any] | None, deadline: float | None = None
    ) -> list[tuple[Request, Any]]:
        """Cluster ``fresh`` (``ahead``: vectors computed ahead, each or all None); the requests
        left undecided at ``deadline`` come back with their vectors (see :meth:`_cluster`)."""
        validate_vector = _hot_path().embed.validate_vector
        emb = self.embedder()
        if self._canon_index is not self.config.canonicalize:
            if self._canon_index is not None:  # vectors of raw and canonical text differ
                self.leaders.reset()
            self._canon_index = self.config.canonicalize
        index = self.leaders
        texts: list[Any] = [r.text for r in fresh]
        if (
            (ahead is None or all(v is None for v in ahead))
            and None not in texts
            and all(r.vector is None for r in fresh)
        ):
            # the common case (a small pass, texts only): one embedding call for all, its
            # matrix and key words go to the index as they are
            keys: list[int] | None = None
            lone: list[tuple[int, Request, int]] = []
            if (
                self.config.canonicalize
                and len(fresh) <= self._slice_rows  # (no cut: see _cluster)
                and hasattr(emb, "embed_profiled")
                and self.word_keyed()
            ):
                # requests alone in their partition lead without being embedded (texts of
                # numbers of their own: their vectors are computed when a request of their
                # partition comes, see LeaderIndex.lead_lazy); the same decisions, in order
                keys = self._part_keys(fresh, texts)
                at = index.lone(keys)
                if at:
                    if len(at) == len(fresh):
                        self._lead_lazy(fresh, keys)
                        return []
                    mark = set(at)
                    kept: list[Request] = []
                    kept_keys: list[int] = []
                    for j, (r, k) in enumerate(zip(fresh, keys, strict=True)):
                        if j in mark:
                            lone.append((len(kept), r, k))  # (led before kept[len(kept)])
                        else:
                            kept.append(r)
                            kept_keys.append(k)
                    fresh, keys = kept, kept_keys
                    texts = [r.text for r in fresh]
            # rows without vectors (keys known: texts, the default embedder, no cut): their
            # key words now, a vector only when a pair needs its cosine (LeaderIndex.append);
            # distinct texts meet no twin under their word keys, and are never embedded
            # (the default embedder's own class: a subclass may embed otherwise than
            # embed_profiled, whose vectors a row without one must get from embed)
            lazy = (
                keys is not None
                and not self._eager
                and type(emb) is _hot_path().embed.HashingEmbedder
                and hasattr(emb, "profiles")
                and index.words_serve(len(fresh))
            )
            if keys is not None and self._eager:
                self._eager -= 1
            canons: list[str] = []
            try:
                if lazy:
                    vectors = None
                    canons, batch = self._profile_batch(fresh, texts)
                else:
                    vectors, batch = self._embed_batch(fresh)
            except Exception as e:
                err = HandlerError.from_exception(e, "the embedder failed")
                for r in fresh:
                    self._ops.reject(r, err)
                self._lead_lazy([r for _, r, _ in lone], [k for _, _, k in lone])
                return []
            profiles = self._batch_profiles(fresh, batch)
            if vectors is None:
                fetched = index.fetched
                left_at = self._cluster(fresh, canons, profiles, deadline, keys, lone, True)
                if 4 * (index.fetched - fetched) > len(fresh):
                    self._eager = _EAGER_PASSES
                return [(fresh[j], None) for j in left_at]
            return [
                (fresh[j], vectors[j])
                for j in self._cluster(fresh, vectors, profiles, deadline, keys, lone)
            ]
        cands: list[Request] = []
        cand_vec: list[Any] = []
        need: list[int] = []
        if ahead is None:
            ahead = [None] * len(fresh)
        for r, v in zip(fresh, ahead, strict=True):
            if r.vector is not None:
                cands.append(r)
                cand_vec.append(None)
            elif r.text is not None:
                if v is None:
                    need.append(len(cands))
                cands.append(r)
                cand_vec.append(v)
            else:
                self._lead(r, None)  # no text: only an identical request merges with it
        if need:
            try:
                mat = self.embed_requests([cands[j] for j in need])
                for k, j in enumerate(need):
                    cand_vec[j] = mat[k]
            except Exception as e:
                err = HandlerError.from_exception(e, "the embedder failed")
                for j in need:
                    self._ops.reject(cands[j], err)
        dim = getattr(emb, "dim", None) or index.dim
        ok: list[Request] = []
        rows: list[Any] = []
        for r, v in zip(cands, cand_vec, strict=True):
            if r.state != RAW:
                continue
            if r.vector is not None:
                try:
                    v = r.vector = validate_vector(r.vector, dim)
                except ValueError as e:
                    self._ops.reject(r, InvalidRequestError(f"bad 'embedding' field: {e}"))
                    continue
            ok.append(r)
            rows.append(v)
        if not ok:
            return []
        plist: list[Any] | None = None
        if self.word_keyed():
            plist = []
            for r in ok:
                if r.vector is not None:  # its own vector: judged as meaning, no word keys
                    plist = None
                    break
                plist.append(self.profile_of(r))
        return [(ok[j], rows[j]) for j in self._cluster(ok, rows, plist, deadline)]

    def _batch_profiles(self, reqs: list[Request], batch: Any) -> Any:
        """The key words of ``reqs`` for the index, from :meth:`_embed_batch`'s ``batch``."""
        if batch is not None and min(batch.lens.tolist()) < 0:  # (np.min: ~3 us)
            # the key words of the few texts the kernel left to the reference
            # (profile_of) join the batch: the index files one batch, not a list of
            # rows (~1 us a request for a pass of 1,024 with one such text)
            import numpy as np

            fill: dict[int, Any] = {}
            for j in np.flatnonzero(batch.lens < 0).tolist():
                r = reqs[j]
                p = self.profile_of(r)
                if type(p) is tuple:  # a cut slice's pointer into its batch: the words
                    p = p[0].as_list(p[1])
                    if p is None:  # (that batch had left it to the reference too)
                        r.wprof = None
                        p = self.profile_of(r)
                fill[j] = p
                r.wprof = None  # (kept by the index from here, as the batch's texts)
            return batch.filled(fill)
        if batch is None:  # None where the word index does not serve
            return [self.profile_of(r) for r in reqs] if self.word_keyed() else None
        return batch

    def lone_parts(self, texts: list[Any]) -> list[int] | None:
        """The partitions of new requests of texts ``texts`` (none an exact twin of another
        or of waiting work) if a pass would lead each of them without a row in the leader
        index, alone in its partition (what :meth:`_embedding_stage` does with such a pass:
        :meth:`_lead_lazy`); None otherwise (a text that is not a string, an option or an
        embedder that takes another course, or a partition that is not theirs alone). The
        core's row lane asks it for the default strategy's requests."""
        c = self.config
        if (
            not c.enable_dedup
            or not c.guard_numbers
            or c.dedup_scope
            or not c.canonicalize
            or not self._embeds()
            or len(texts) > self._slice_rows
            or (self._canon_index is not None and self._canon_index is not c.canonicalize)
        ):
            return None
        for t in texts:
            if type(t) is not str and not isinstance(t, str):
                return None
        if not hasattr(self.embedder(), "embed_profiled") or not self.word_keyed():
            return None
        pids: list[int] = _hot_path().numberkeys.number_keys(texts)
        if len(self.leaders.lone(pids)) != len(pids):
            return None
        return pids

    def _lead_lazy(self, reqs: list[Request], pids: list[int]) -> None:
        """Each of ``reqs`` leads a group, in partition ``pids[k]``, without a row in the
        leader index (:meth:`LeaderIndex.lead_lazy`, one call for all): what :meth:`_lead`
        does, with :meth:`register_leader`'s lines inline (a call a request fewer: in a pass
        of texts with their own numbers, every request)."""
        new_group = self._ops.new_group
        exact = self.exact
        groups: list[Group] = []
        parts: list[int] = []
        for r, pid in zip(reqs, pids, strict=True):
            if r.state != RAW:
                continue
            g = new_group(r, pid)
            key = r.key
            if key is not None:  # (register_leader)
                g.keys = key
                exact[key] = g
            groups.append(g)
            parts.append(pid)
        if groups:
            self.leaders.lead_lazy(groups, parts)

    def _lead_all(self, reqs: list[Request], start: int, pids: list[int], keyed: bool) -> None:
        """Each of ``reqs`` leads a group from its row ``start + k`` of the leader index, in
        partition ``pids[k]``: what :meth:`_cluster`'s loop does for a pass where every row
        leads, inline (:meth:`register_leader`'s lines among them)."""
        new_group = self._ops.new_group
        exact = self.exact
        groups: list[Group] = []
        row = start
        try:
            for r, pid in zip(reqs, pids, strict=True):
                g = new_group(r, pid)
                key = r.key
                if key is not None:
                    g.keys = key
                    exact[key] = g
                g.row = row
                row += 1
                groups.append(g)
        finally:
            self.leaders.lead_range(start, groups, pids[: row - start], keyed)

    def _materialize(self, pids: list[int]) -> None:
        """Rows for the leaders without one (:meth:`LeaderIndex.lead_lazy`) in partitions
        ``pids``, before a pass's rows of those partitions are compared: their texts embedded
        now, as they would have been when they came (the embedding is a function of the
        text)."""
        index = self.leaders
        groups = index.take_lazy(pids)
        if not groups:
            return
        shadow = self.shadow
        if shadow is not None:  # (a lane group's stand-in: see LaneWork.shadow)
            groups = [g if type(g) is Group else shadow(g) for g in groups]
        leads = [g.leader for g in groups]
        vectors, batch = self._embed_batch(leads)
        profiles = self._batch_profiles(leads, batch)
        index.add_leaders(vectors, [g.part for g in groups], profiles, groups)
        if type(profiles) is list:
            for r in leads:
                r.wprof = None  # stored in the index now

    def _profile_batch(self, reqs: list[Request], texts: list[str]) -> tuple[list[str], Any]:
        """:meth:`_embed_batch` of ``reqs`` (``texts``: their texts) without their vectors (the
        default embedder's :meth:`~stratabatch.embed.HashingEmbedder.profiles`): their
        canonical texts (also kept in ``r.canon``), which the index embeds when a vector is
        wanted, and their key words."""
        hot = _hot_path()
        canons = [r.canon for r in reqs]  # (kept by a near-reuse lookup of the same pass)
        if None in canons:
            canons = hot.canon.canonical_texts(texts)
            for r, t in zip(reqs, canons, strict=True):
                r.canon = t
        batch = _profiles_of(reqs)  # (a near-reuse lookup's of exactly these requests)
        if batch is None:
            batch = self.embedder().profiles(canons)
            hot.wordkeys.tag_profiles(batch, canons)
        return canons, batch  # type: ignore[return-value]

    def _embed_canonical(self, texts: list[str]) -> Any:
        """The vectors of canonical ``texts`` (the index's rows without one, see
        :meth:`_profile_batch`): as :meth:`_embed_batch` computes them."""
        return self.embedder().embed(texts)

    def _embed_batch(self, reqs: list[Request]) -> tuple[Any, Any]:
        """Embed the texts of ``reqs`` in one call: the matrix, and their key words for the
        word index (a :class:`~stratabatch.wordkeys.BatchProfiles`) where it serves and the
        embedder computes them; else None."""
        texts: list[str] = [r.text for r in reqs]  # type: ignore[misc]
        if self.config.canonicalize:
            canons = [r.canon for r in reqs]  # (kept by a near-reuse lookup of the same pass)
            if None in canons:
                canons = _hot_path().canon.canonical_texts(texts)
                for r, t in zip(reqs, canons, strict=True):
                    r.canon = t
            texts = canons  # type: ignore[assignment]
        emb = self.embedder()
        if self.config.canonicalize and hasattr(emb, "embed_profiled") and self.word_keyed():
            mat, batch = emb.embed_profiled(texts)
            # (spaces moved: see stratabatch.wordkeys.squash_tag)
            _hot_path().wordkeys.tag_profiles(batch, texts)
            return mat, batch
        return emb.embed(texts), None

    def _walk(
        self, ok: list[Request], start: int, found: Any, threshold: float, deadline: float | None
    ) -> tuple[Any, Any, list[int]]:
        """The greedy pass of :meth:`_cluster` over the candidate lists ``found`` of the rows
        of ``ok`` (row ``start + j`` is ``ok[j]``), the guards asked on the way:
        :func:`~stratabatch.greedy.greedy_pass`'s ``(leader, sim, late)``."""
        greedy = _hot_path().greedy
        ASK, PASS, REFUSE, greedy_pass = greedy.ASK, greedy.PASS, greedy.REFUSE, greedy.greedy_pass
        index = self.leaders
        owners = index.owners
        n = start + len(ok)

        def joinable(row: int) -> bool:
            g = owners[row]
            # a running group whose waiters all left is being cancelled: not a leader to join
            return g is not None and (g.batch is None or g.batch.live > 0)

        veto = None
        codes = None
        if self.guarded():
            if self._decide_fn is None and self.word_keyed():
                self._load_decide()  # (so a warm-up's rehearsal loads the kernel too)
            asked: dict[tuple[int, int], bool] = {}  # a cut list is walked again after a rescan
            # the guard kernel's answers on the producers' candidate pairs, in one call
            codes = self._kernel_answers(ok, start, found, joinable)

            def told(i: int, row: int) -> int:
                """The kernel's answer on the pair (codes), ASK where it gave none."""
                if codes is None:
                    return ASK
                a, b = found[0][i - start : i - start + 2].tolist()
                for t, x in enumerate(found[1][a:b].tolist()):
                    if x == row:
                        return int(codes[a + t])
                return ASK  # (a late leader's pair: not a producer's candidate)

            def veto(i: int, row: int, sim: float) -> bool:
                v = asked.get((i, row))
                if v is None:
                    k = told(i, row)
                    if k == PASS:
                        v = False
                    else:
                        lead = owners[row].leader if row < start else ok[row - start]
                        if k == REFUSE:  # (as veto() logs a refusal of the kernel)
                            self.log_refused(ok[i - start], lead, sim)
                            v = True
                        else:
                            v = self.veto(ok[i - start], lead, sim) is not None
                    asked[i, row] = v
                return v

        if deadline is not None:  # the candidates are paid for: the guards get their slice
            deadline = max(deadline, time.perf_counter() + SLICE_S)
        leads, sims, late = greedy_pass(
            index.mat[:n],
            index.part[:n],
            threshold,
            start,
            found,
            joinable,
            veto,
            index.word_data(),
            deadline,
            codes,
        )
        return leads, sims, late

    def _cluster(
        self,
        ok: list[Request],
        vectors: Any,
        profiles: Any,
        deadline: float | None = None,
        keys: list[int] | None = None,
        lone: list[tuple[int, Request, int]] | None = None,
        unvectored: bool = False,
    ) -> list[int]:
        """Put the embedded requests ``ok`` in the leader index and decide each one's group
        (``profiles``: their key words, see :meth:`LeaderIndex.append`). With a ``deadline``
        (:func:`time.perf_counter`), the requests not decided by then are taken out of the
        index again (their rows retired) and their positions in ``ok`` returned, in order.
        ``keys``: their partitions, if known; ``lone``: ``(j, request, partition)`` of requests
        that lead without a row (:meth:`_lead_lazy`), each before ``ok[j]``, never cut.
        ``unvectored``: ``vectors`` are their canonical texts, not embedded yet (see
        :meth:`_profile_batch`)."""
        index = self.leaders
        if index.dim is None:
            index.dim = self.embedder().dim if unvectored else len(vectors[0])
        later: list[int] = []
        cut = self._slice_rows
        if deadline is not None and len(ok) > cut:
            # the last slices decided fewer: only as many join the index now (the candidates
            # of rows left undecided are computed again in the next slice)
            later = list(range(cut, len(ok)))
            if type(profiles) is list:
                for j in later:
                    ok[j].wprof = profiles[j]
                profiles = profiles[:cut]
            elif profiles is not None:
                for j in later:
                    ok[j].wprof = (profiles, j)
                profiles = [(profiles, j) for j in range(cut)]
            ok = ok[:cut]
            vectors = vectors[:cut]
            keys = None if keys is None else keys[:cut]
        if keys is None:
            keys = self._part_keys(ok)
        if index.lazy:
            self._materialize(keys)
        threshold = float(self.threshold())
        if unvectored:  # (``vectors``: their canonical texts, see LeaderIndex.append)
            index.embed_texts = self._embed_canonical
            start = index.append(None, keys, profiles, vectors)
        else:
            start = index.append(vectors, keys, profiles)
        if type(profiles) is list:
            for r in ok:
                r.wprof = None  # stored in the index now
        n = start + len(ok)
        found = index.candidates(start, threshold)
        owners = index.owners
        if len(found[1]):
            leads, sims, late = self._walk(ok, start, found, threshold, deadline)
        else:
            # no row has a candidate (distinct texts: the common pass): each leads, with no
            # guard answers to gather and no greedy walk (~0.3 us a request)
            leads, sims, late = range(start, n), None, []
        ops = self._ops
        keyed = profiles is not None
        refused = index.refused[start:n].tolist() if keyed else None
        if not late and not lone and type(leads) is range and max(refused or (-1,)) < 0:
            # every row leads and none was refused (distinct texts: the common pass): the
            # loop below without its other cases, as _lead_lazy does
            self._lead_all(ok, start, keys, keyed)
            index.file_leaders(late)
            if deadline is not None and self._slice_rows < _MAX_SLICE_ROWS:
                self._slice_rows *= 2
            return later
        left: list[int] = []
        # (what _lead does, inline, and the index told of the pass's leaders in one call
        # after the walk: two Python calls a request fewer)
        new_group = ops.new_group
        register_leader = self.register_leader
        led_rows: list[int] = []
        led_groups: list[Group] = []
        led_pids: list[int] = []
        lone_at = iter(lone or ())
        nxt = next(lone_at, None)
        try:
            for j, r in enumerate(ok):
                while nxt is not None and nxt[0] <= j:  # (lone requests in arrival order)
                    self._lead_lazy([nxt[1]], [nxt[2]])
                    nxt = next(lone_at, None)
                i = start + j
                li = leads[j]
                if li < 0:  # left for a later slice: it is appended again then
                    index.retire(i)
                    left.append(j)
                    if type(profiles) is list:
                        r.wprof = profiles[j]
                    elif keyed and int(profiles.lens[j]) >= 0:
                        r.wprof = (profiles, j)
                    continue
                if li == i:
                    if keyed and refused[j] >= 0:  # type: ignore[index]
                        # the producers' residue pre-check refused a near merge without
                        # asking the guards: the veto log asks them about that one pair when
                        # read
                        rr = refused[j]  # type: ignore[index]
                        lead = (
                            ok[rr - start] if rr >= start else getattr(owners[rr], "leader", None)
                        )
                        if lead is not None:
                            self.log_refused(r, lead, float(index.rsim[i]))
                    pid = keys[j]
                    g = new_group(r, pid)
                    register_leader(g)
                    g.row = i
                    led_rows.append(i)
                    led_groups.append(g)
                    led_pids.append(pid)
                    continue
                # (a leader of this pass is not in the index's owners yet: its request's group)
                g = owners[li] if li < start else ok[li - start].group
                sim = min(sims[j], 1.0)
                if g.batch is None:
                    self._join(r, g, sim, False)
                else:  # a near twin of work in the handler waits for its result
                    ops.coalesce(r, g, sim, False)
                    self.register_member(r, g, sim, False)
                index.retire(i)
        finally:
            index.lead_many(led_rows, led_groups, led_pids, keyed)
        if nxt is not None:
            rest = [nxt, *lone_at]
            self._lead_lazy([r for _, r, _ in rest], [k for _, _, k in rest])
        index.file_leaders(late)
        if deadline is not None:
            if left:  # decided what the slice allowed: about twice that many next time
                self._slice_rows = max(_MIN_SLICE_ROWS, 2 * (len(ok) - len(left)))
            elif self._slice_rows < _MAX_SLICE_ROWS:
                self._slice_rows *= 2
        return left + later
