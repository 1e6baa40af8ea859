"""Near reuse: a stored answer serves a later near twin (``reuse="near"``).

A near twin of a stored answer is a request that in-window dedup would have merged with the
request that produced it: same partition (the numbers signature with ``guard_numbers``, and
the ``dedup_scope`` fields), cosine >= the threshold under the same embedder, and no guard
veto. :class:`NearReuse` finds them in two steps, both never looser than a window's pass:

1. **Same canonical text** (``canonicalize=True``, the default): the embedder sees the
   canonical text (:mod:`stratabatch.canon`), so two requests of equal canonical text and
   partition have equal vectors (cosine 1.0), and the guards let the same canonical words
   merge without reading them (:meth:`stratabatch.grouping.Deduper.veto`'s first rule): one
   dict lookup, ``(partition, canonical text) -> entry``. Surface variants (case,
   punctuation, spacing, fillers, polite openers) are found here.
2. **Similar text**: the entries' vectors are rows of a :class:`~stratabatch.index.LeaderIndex`
   of their own (the same class as the window's, fed the same embedder, threshold, partitions
   and key words), whose owners are the entries; the requests that missed step 1 are queried
   at once (:meth:`LeaderIndex.query`: no row filed), its candidate producer offers the
   entries of their partition at cosine >= threshold, and the first that the Deduper's guards
   (:meth:`~stratabatch.grouping.Deduper.veto`, the guard kernel first) let through answers
   each. A call of :data:`LAZY_MIN` requests or more computes their key words first and
   their vectors only if a pair needs a cosine (a request whose key words meet no entry's is
   never embedded). Typos and dropped or reordered words are found here. The guards'
   refusals go into the Deduper's veto log, marked :attr:`VetoRecord.reuse
   <stratabatch.grouping.VetoRecord.reuse>`.

Why an index of its own rather than rows in the window's: the window's index is the hot path
of every pass (issue 20 optimizes it), its rows come and go with pending groups, lazily
without vectors (:meth:`LeaderIndex.lead_lazy`, rows appended with texts), and its greedy pass
treats every owner as a group that takes members. A second instance of the same class keeps
the same candidate producers and the same decisions (the guards are the Deduper's own),
holds every entry with its vector (computed when the answer is stored, next to a backend
call), and leaves the window's pass untouched. What a lookup computed is not computed
again: the window's pass takes a missed request's canonical text (and, for its rows without
vectors, the key words of exactly its requests), and the answer's filing takes the request's
canonical text, vector and key words (:meth:`NearReuse.store` with the request). The window
still embeds a missed request of its own where its rows need a vector.

Entries leave through :attr:`stratabatch.reuse.ReuseCache.on_drop` (evicted, expired,
replaced, forgotten, cleared): their canonical key and their index row go at once, so no stale
row can serve (and :meth:`ReuseCache.hit` refuses an entry that left anyway). A change of the
threshold, the guards or the embedder clears the cache (:data:`stratabatch.reuse.CLEARS_ON`),
so every row was made under the rules in force; the embedder's change also resets the index.
"""

from __future__ import annotations

import logging
import sys
from collections import OrderedDict
from typing import Any

from .config import GUARDS
from .grouping import partition_of
from .index import INDEX_MIN_THRESHOLD, LeaderIndex
from .logs import DEDUP
from .reuse import Entry, ReuseCache

__all__ = ["NearHit", "NearReuse", "near_applies"]

_SIM_SLACK = 1e-6
#: Entries above which near lookups skip the similar-text step when no table serves it (no
#: word keys, threshold below the sketch table's): it would compare with every entry.
EXHAUSTIVE_MAX_ENTRIES = 2048
#: Stored entries that wait for a lookup to be filed at most (see :meth:`NearReuse.store`).
FILE_AT = 1024
#: Requests a similar-text step takes at least to compute their key words before their
#: vectors (which only a pair that needs a cosine then computes): fewer are embedded with
#: their key words in one call, since a hit's second kernel call and the word pass's restart
#: cost more than a small call's embedding (at one request a call: a typo hit ~25 us more,
#: a miss ~7 us less).
LAZY_MIN = 16
#: Requests that missed whose vector and key words are kept for their answer's filing, at
#: most (the last ones: one pass's, or a few single calls').
KEPT_MAX = 256

_mods: Any = None
_log = logging.getLogger(DEDUP)


def _load() -> Any:
    """The modules a lookup calls into (numpy, canon, numberkeys, guardkernels), imported by
    the first lookup (they load numpy and numba), then kept: an import statement in a method
    costs ~0.7 us a call even when the module is loaded, and a lookup of one request made
    four."""
    global _mods
    if _mods is None:
        from types import SimpleNamespace

        import numpy as np

        from . import canon, guardkernels, numberkeys, wordkeys
        from .embed import HashingEmbedder

        _mods = SimpleNamespace(
            np=np,
            canon=canon,
            numberkeys=numberkeys,
            guards=guardkernels,
            wordkeys=wordkeys,
            hashing=HashingEmbedder,
        )
    return _mods


def near_applies(config: Any) -> bool:
    """Whether in-window dedup merges near twins under ``config`` (so near reuse may): the
    embedding or hybrid strategy, without a ``dedup_function`` (whose similarity needs both
    payloads). Otherwise ``reuse="near"`` serves exact twins only."""
    return (
        config.enable_dedup
        and config.dedup_strategy in ("embedding", "hybrid")
        and config.dedup_function is None
    )


def _one_batch(profiles: list[Any]) -> Any:
    """``profiles`` (key words of rows, see :func:`stratabatch.wordtable.word_rows`), or the
    :class:`~stratabatch.wordkeys.BatchProfiles` they all point into when it holds exactly
    them, in order (embedded together): the batch itself is filed by one kernel call."""
    p = profiles[0]
    batch = p[0] if type(p) is tuple else None
    if batch is None or len(batch.lens) != len(profiles):
        return profiles
    for t, p in enumerate(profiles):
        if type(p) is not tuple or p[0] is not batch or p[1] != t:
            return profiles
    return batch


class _Text:
    """What the guards and the embedding read of a text (a stand-in for a
    :class:`~stratabatch.records.Request`: :meth:`Deduper.embed_requests`,
    :meth:`Deduper.profile_of` and :meth:`Deduper.veto` read these)."""

    __slots__ = ("text", "canon", "wprof", "features", "vector", "numkey")

    def __init__(self, text: str) -> None:
        self.text = text
        self.canon: str | None = None
        self.wprof: Any = None
        self.features: Any = None
        self.vector: Any = None
        self.numkey: Any = None


class _Held:
    """An entry's row in the near index (the index numbers ``row``; :meth:`LeaderIndex.reset`
    sets it None)."""

    __slots__ = ("row", "entry", "text", "canon_key")

    def __init__(self, entry: Entry, text: _Text, canon_key: Any) -> None:
        self.row: int | None = None
        self.entry = entry
        self.text = text
        self.canon_key = canon_key


class NearHit:
    """A near lookup's answer: the stored ``result``, its ``age`` and the ``similarity``."""

    __slots__ = ("result", "age", "similarity")

    def __init__(self, result: Any, age: float, similarity: float) -> None:
        self.result = result
        self.age = age
        self.similarity = similarity


class NearReuse:
    """The near path of a :class:`~stratabatch.reuse.ReuseCache` (see the module docstring).

    Args:
        cache: The cache whose entries it indexes; its ``on_drop`` is taken.
        dedup: The core's :class:`~stratabatch.grouping.Deduper` (its embedder, threshold and
            guards: public methods only).
        config: The live options.

    Attributes:
        index: The entries' :class:`LeaderIndex`.
        canon_hits, similar_hits, misses: Lookups answered by each step, and not at all.
    """

    def __init__(self, cache: ReuseCache, dedup: Any, config: Any) -> None:
        self.cache = cache
        self.dedup = dedup
        self.config = config
        self.index = LeaderIndex()
        self._canon: dict[Any, _Held] = {}
        self._unfiled: list[tuple[Entry, str, Any]] = []  # stored, not filed yet (see store)
        # id of a request that missed -> (it, the embedder, its vector, its key words), for
        # its answer's filing (see store); the last KEPT_MAX, with canonicalize
        self._kept: OrderedDict[int, tuple[Any, Any, Any, Any]] = OrderedDict()
        self.canon_hits = 0
        self.similar_hits = 0
        self.misses = 0
        self.failures = 0  # filings and lookups that raised (logged once a kind)
        # lookups whose similar-text step was skipped (too many entries to compare each with,
        # see EXHAUSTIVE_MAX_ENTRIES); the first skip is logged
        self.skipped = 0
        self._skip_said = False
        self._failed_kinds: set[type] = set()
        cache.on_drop = self._dropped

    def _failed(self, what: str) -> None:
        """A filing or a lookup raised (an embedder that fails, or a bug): count it, and log
        the first of each kind with its traceback (ERROR on ``stratabatch.dedup``), so that it
        is never silent; the requests go on as if the store held no near twin."""
        self.failures += 1
        kind = type(sys.exc_info()[1])
        if kind not in self._failed_kinds:
            self._failed_kinds.add(kind)
            _log.error(
                "near reuse: %s failed (%s); those requests and entries serve exact twins only "
                "(later failures of this kind are counted, not logged)",
                what,
                kind.__name__,
                exc_info=True,
            )

    # ------------------------------------------------------------------ store

    def store(self, entry: Entry, text: Any, vector: Any = None, req: Any = None) -> None:
        """File ``entry`` (just stored, made from a request of text ``text``) for near twins.
        A request without text, or with its own vector, is kept for exact twins only.
        ``req``: the request itself, whose canonical text (and the vector and key words its
        own near lookup computed, kept for the last :data:`KEPT_MAX` requests that missed)
        are filed as they are instead of computed again.

        Filing waits for the next lookup (or :data:`FILE_AT` stored entries): a batch's
        answers are stored one by one in its fan-out, and their canonical texts, partitions,
        vectors and index rows cost ~10 us an entry computed together, ~70 us one by one. An
        entry that leaves the cache meanwhile is never filed."""
        if not isinstance(text, str) or vector is not None or not near_applies(self.config):
            return
        if entry.live:
            self._unfiled.append((entry, text, req))
            if len(self._unfiled) >= FILE_AT:
                self.flush()

    def flush(self) -> None:
        """File the entries stored since the last lookup (see :meth:`store`)."""
        todo = [u for u in self._unfiled if u[0].live]
        self._unfiled = []
        if not todo:
            return
        try:
            self._file(todo)
        except Exception:  # (an embedder that fails: the entries serve exact twins only; the
            self._failed("filing stored answers")  # core stores inside a batch's fan-out,
            for e, _, _ in todo:  # where nothing may raise)
                if type(e.handle) is _Held:
                    self._dropped(e)
                e.handle = None

    def _file(self, todo: list[tuple[Entry, str, Any]]) -> None:
        texts = [t for _, t, _ in todo]
        pids = self._partitions(texts, [e.scope for e, _, _ in todo])
        stubs = [_Text(t) for t in texts]
        dedup = self.dedup
        vec = None
        if self.config.canonicalize:
            kept = self._kept
            emb = dedup.embedder()
            vecs = []
            for (_, t, req), stub in zip(todo, stubs, strict=True):
                if req is None or req.text != t:
                    continue
                got = kept.pop(id(req), None)
                if got is not None and got[0] is req and got[1] is emb:
                    stub.canon, stub.wprof = req.canon, got[3]
                    vecs.append(got[2])
                elif type(req.canon) is str:
                    stub.canon = req.canon  # (the canonical text the pass computed)
            if len(vecs) == len(stubs):  # (else embedded below; canonical texts kept)
                vec = vecs[0][None, :] if len(vecs) == 1 else _load().np.stack(vecs)
            else:
                for stub in stubs:
                    stub.wprof = None
        if vec is None:
            vec = dedup.embed_requests(stubs)  # (sets each stub's canon with canonicalize)
        index = self.index
        if index.dim is None:
            index.dim = int(vec.shape[1])
        keyed = bool(dedup.word_keyed())
        profiles: Any = [dedup.profile_of(t) for t in stubs] if keyed else None
        if profiles is not None:
            profiles = _one_batch(profiles)
        start = index.append(vec, pids, profiles)
        rows = list(range(start, start + len(todo)))
        helds = []
        table = self._canon
        for (e, _, _), stub, pid, row in zip(todo, stubs, pids, rows, strict=True):
            stub.wprof = None  # (kept by the index)
            canon_key = None if stub.canon is None else (pid, stub.canon)
            held = _Held(e, stub, canon_key)
            held.row = row
            e.handle = held
            helds.append(held)
            if canon_key is not None:
                old = table.get(canon_key)
                if old is None or not old.entry.live:
                    table[canon_key] = held
        index.lead_many(rows, helds, pids, keyed)
        index.file_leaders(rows)

    def _dropped(self, entry: Entry) -> None:
        """:attr:`ReuseCache.on_drop`: the entry's canonical key and index row go."""
        held = entry.handle
        if type(held) is not _Held:
            return
        entry.handle = None
        ck = held.canon_key
        if ck is not None and self._canon.get(ck) is held:
            del self._canon[ck]
        if held.row is not None:
            self.index.drop(held.row)
            held.row = None

    def reset(self) -> None:
        """Forget every row (the embedder changed; the cache is cleared too)."""
        self.index.reset()
        self._canon.clear()
        self._unfiled = []
        self._kept.clear()

    # ------------------------------------------------------------------ lookup

    def lookup(self, text: Any, scope: bytes, now: float | None = None) -> NearHit | None:
        """The stored answer of a near twin of ``text`` in scope ``scope``, or None."""
        return self.lookup_many([_Text(text)], [scope], None, now)[0]

    def lookup_many(
        self, reqs: list[Any], scopes: list[bytes], vectors: list[Any] | None, now: float | None
    ) -> list[NearHit | None]:
        """:meth:`lookup` of each of ``reqs`` (requests of a dedup pass, or stand-ins with
        ``text``, ``canon``, ``wprof``, ``features`` and ``vector``), in one embedding call and
        one index query for all: ``scopes[j]`` is ``reqs[j]``'s, ``vectors[j]`` the vector the
        pass computed for it ahead (of its canonical text, by the same embedder), or None.
        A request with a vector of its own, or without text, gets None (exact twins only)."""
        if self._unfiled:
            self.flush()
        m = len(reqs)
        out: list[NearHit | None] = [None] * m
        if not m or not near_applies(self.config) or not len(self.cache):
            self.misses += m
            return out
        todo = [j for j, r in enumerate(reqs) if type(r.text) is str and r.vector is None]
        if not todo:
            self.misses += m
            return out
        cache = self.cache
        texts = [reqs[j].text for j in todo]
        pids = self._partitions(texts, [scopes[j] for j in todo])
        if self.config.canonicalize:
            need = [k for k, j in enumerate(todo) if reqs[j].canon is None]
            if need:
                got = _load().canon.canonical_texts([texts[k] for k in need])
                for k, c in zip(need, got, strict=True):
                    reqs[todo[k]].canon = c
            table = self._canon
            for k, j in enumerate(todo):
                held = table.get((pids[k], reqs[j].canon))
                if held is not None and held.entry.scope == scopes[j]:
                    hit = cache.hit(held.entry, now)
                    if hit is not None:
                        out[j] = NearHit(hit[0], hit[1], 1.0)
                        self.canon_hits += 1
        index = self.index
        served = {p for p in set(pids) if index.has_leaders_in((p,))}  # (few: asked once each)
        rest = [(k, j) for k, j in enumerate(todo) if out[j] is None and pids[k] in served]
        if rest:
            try:
                self._similar(reqs, scopes, vectors, pids, rest, out, now)
            except Exception:  # (an embedder that fails: the pass reports it for the request)
                self._failed("a lookup")
        self.misses += out.count(None)
        return out

    def _partitions(self, texts: list[str], scopes: list[bytes]) -> list[int]:
        """Each text's partition, as the window's pass makes it: its numbers' key with
        ``guard_numbers``, mixed with its scope's bytes."""
        if self.config.guard_numbers:
            keys = _load().numberkeys.number_keys(texts)
        else:
            keys = [0] * len(texts)
        if any(scopes):
            return [partition_of(s, k) for s, k in zip(scopes, keys, strict=True)]
        return keys

    def _similar(
        self,
        reqs: list[Any],
        scopes: list[bytes],
        vectors: list[Any] | None,
        pids: list[int],
        rest: list[tuple[int, int]],
        out: list[NearHit | None],
        now: float | None,
    ) -> None:
        """The similar-text step for ``rest`` (``(k, j)``: position in ``pids``, in ``reqs``):
        the entries' index queried for all at once (:meth:`LeaderIndex.query`: no row
        filed), the candidates' guards."""
        index = self.index
        dedup = self.dedup
        threshold = float(dedup.threshold())
        keyed = bool(dedup.word_keyed())
        if not keyed and threshold < INDEX_MIN_THRESHOLD and index.live > EXHAUSTIVE_MAX_ENTRIES:
            # (every entry would be compared: exact and canonical twins only)
            self.skipped += len(rest)
            if not self._skip_said:
                self._skip_said = True
                _log.warning(
                    "near reuse: %d stored answers, over the %d that an embedder judging "
                    "meaning (%s) at a threshold below %.2f may compare each lookup with; "
                    "from now on lookups find exact and same-canonical-text twins only while "
                    "the store holds more (set reuse_max_entries <= %d, or a threshold of "
                    "%.2f or more, to keep near lookups; said once)",
                    index.live,
                    EXHAUSTIVE_MAX_ENTRIES,
                    getattr(dedup.embedder(), "name", type(dedup.embedder()).__name__),
                    INDEX_MIN_THRESHOLD,
                    EXHAUSTIVE_MAX_ENTRIES,
                    INDEX_MIN_THRESHOLD,
                )
            return
        qs = [reqs[j] for _, j in rest]
        mods = _load()
        embed: Any = None
        mat: Any = None
        if vectors is not None and all(vectors[j] is not None for _, j in rest):
            np = mods.np
            mat = np.stack([np.asarray(vectors[j], np.float32) for _, j in rest])
        elif (
            keyed
            and len(qs) >= LAZY_MIN
            and self.config.canonicalize
            and type(dedup.embedder()) is mods.hashing
        ):
            # key words first, the vectors only if a pair needs a cosine (LeaderIndex.query):
            # a request whose key words meet no stored answer's is never embedded. The
            # default embedder's own class, as the window's rows without vectors: its
            # embed() gives embed_profiled()'s vectors (the canonical texts are set above)
            canons = [q.canon for q in qs]
            emb = dedup.embedder()
            batch = emb.profiles(canons)
            mods.wordkeys.tag_profiles(batch, canons)
            for t, k in enumerate(batch.lens.tolist()):
                if k >= 0:
                    qs[t].wprof = (batch, t)

            def embed() -> Any:
                return emb.embed(canons)

        else:
            mat = dedup.embed_requests(qs)
        profiles: Any = None
        if keyed:
            profiles = _one_batch([dedup.profile_of(q) for q in qs])
        off, rows, sims = index.query(
            mat, [pids[k] for k, _ in rest], profiles, threshold, embed=embed
        )
        try:
            self._pairs_of(qs, scopes, rest, off, rows, sims, threshold, out, now)
        finally:
            mat = index.queried
            if mat is not None and self.config.canonicalize:
                # the misses' vectors and key words, for their answers' filing (see store)
                kept = self._kept
                emb = dedup.embedder()
                one = len(rest) == 1  # (a row of a matrix of one: no copy to let the rest go)
                for t, (_, j) in enumerate(rest):
                    if out[j] is None:
                        q = qs[t]
                        kept[id(q)] = (q, emb, mat[t] if one else mat[t].copy(), q.wprof)
                while len(kept) > KEPT_MAX:  # (a dict's first key skips every deleted one)
                    kept.popitem(last=False)

    def _pairs_of(
        self,
        qs: list[Any],
        scopes: list[bytes],
        rest: list[tuple[int, int]],
        off: Any,
        rows: Any,
        sims: Any,
        threshold: float,
        out: list[NearHit | None],
        now: float | None,
    ) -> None:
        """The guards' decisions on the candidates ``index.query`` listed for ``qs``: the
        first each query's guards let through answers it."""
        index = self.index
        dedup = self.dedup
        if not len(rows):
            return
        owners = index.owners
        floor = threshold - _SIM_SLACK
        # the candidate pairs, per query in the producer's order: (query, entry row, sim)
        pairs: list[tuple[int, _Held, float]] = []
        offs = off.tolist()
        of = [t for t in range(len(rest)) for _ in range(offs[t + 1] - offs[t])]  # (query of each)
        for t, row, sim in zip(of, rows.tolist(), sims.tolist(), strict=True):
            held = owners[row]
            if held is None or sim < floor:
                continue
            e = held.entry
            if e.live and e.scope == scopes[rest[t][1]]:
                pairs.append((t, held, sim))
        if not pairs:
            return
        codes = self._kernel_codes(qs, pairs) if dedup.guarded() else [0] * len(pairs)
        cache = self.cache
        done = -1  # the query answered last (its other pairs are skipped)
        for (t, held, sim), code in zip(pairs, codes, strict=True):
            if t == done:
                continue
            if code > 0:  # (the kernel's refusal, logged as Deduper.veto logs it)
                dedup.log_refused(qs[t], held.text, sim, True)
                continue
            if code < 0 and dedup.veto(qs[t], held.text, sim, True) is not None:
                continue
            hit = cache.hit(held.entry, now)
            if hit is not None:
                out[rest[t][1]] = NearHit(hit[0], hit[1], min(float(sim), 1.0))
                self.similar_hits += 1
                done = t

    def _kernel_codes(self, qs: list[Any], pairs: list[tuple[int, _Held, float]]) -> list[int]:
        """The guards' answer on each pair: 0 passes, > 0 refused, < 0 asks
        :meth:`Deduper.veto`. Pairs of the same canonical words pass (the guards' first rule);
        with every guard on and an embedder that compares wording, the guard kernel answers
        the others in one call (:func:`stratabatch.guardkernels.decide_pairs`, as the pass
        asks it), deferring to :meth:`Deduper.veto` where it cannot decide."""
        codes = [-1] * len(pairs)
        dedup = self.dedup
        c = self.config
        if (
            c.dedup_guards != GUARDS
            or getattr(dedup.embedder(), "merges_paraphrases", True) is not False
        ):
            for k, (t, held, _) in enumerate(pairs):
                a, b = qs[t].canon, held.text.canon
                if a is not None and b is not None and (a == b or a.split() == b.split()):
                    codes[k] = 0
            return codes
        # the kernel passes pairs of the same canonical words itself (its first test)
        mods = _load()
        if len(pairs) == 1:  # (decide_pairs of one pair, without its batch's set-up: ~5 vs 12 us)
            t, held, _ = pairs[0]
            q, h = qs[t], held.text
            if q.canon is None or h.canon is None:
                return codes
            g = mods.guards.decide(h.canon, q.canon, h.text, q.text)
            return [0 if g == 0 else (1 if g > 0 else -1)]
        # its texts: every query's, then each pair's stored one (a stored text in two pairs
        # is read twice: rarer than a dict of the texts seen would cost)
        m = len(qs)
        canons: list[Any] = [q.canon for q in qs]
        texts: list[Any] = [q.text for q in qs]
        for _, held, _ in pairs:
            h = held.text
            canons.append(h.canon)
            texts.append(h.text)
        np = mods.np
        pb = np.fromiter([t for t, _, _ in pairs], np.int64, len(pairs))
        pa = np.arange(m, m + len(pairs), dtype=np.int64)
        if None in canons:  # (no canonical text: Deduper.veto decides, as DEFER)
            none = np.array([c is None for c in canons], bool)
            pa[none[m:]] = -1
            pb[none[pb]] = -1
            texts = ["" if c is None else x for c, x in zip(canons, texts, strict=True)]
            canons = ["" if c is None else c for c in canons]
        got = mods.guards.decide_pairs(canons, texts, pa, pb).tolist()
        return [0 if g == 0 else (1 if g > 0 else -1) for g in got]
