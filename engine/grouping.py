"""The dedup pass: merge what arrived into pending groups, or into work already running.

A mixin of :class:`~stratabatch.core.Core`: the stages below read and change the core's
pending structures, and the core calls :meth:`Grouping._dedup_pass` once per loop tick that
saw arrivals, before any batch is taken. Order of the stages:

1. exact: equal scope and normalized key (xxh64 by one kernel call per pass); a twin of
   work in the handler coalesces into it, a twin of a pending group joins it;
2. then, for what is left, either the user's ``dedup_function`` or (strategies ``embedding``
   and ``hybrid``) the embedder and greedy cosine leader clustering against the pending
   leaders, within partitions of equal scope and, with ``guard_numbers``, equal numbers.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .dedup import LeaderIndex, canonical_bytes, exact_hashes, normalize_key, number_guard, scope_of
from .errors import HandlerError, InvalidRequestError
from .records import GROUPED, INFLIGHT, RAW, Group, Request

if TYPE_CHECKING:
    from .config import BatchConfig
    from .stats import StatsRecorder

_CUSTOM_DEFAULT_THRESHOLD = 0.98  # dedup_function with dedup_threshold=None (the seed's value)
_FALLBACK_THRESHOLD = 0.98  # a callable embedder that recommends nothing
# The BLAS path of the clustering kernel wins only with BLAS on one thread: two OpenBLAS
# threads on a busy 2-core machine made it 30x slower than the jitted loop (measured). The
# engine process pins BLAS before numpy loads; an embedded process gets it when it does too.
_CLUSTER_METHOD = "auto" if any(
    os.environ.get(v) == "1" for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                       "MKL_NUM_THREADS")) else "loop"


class Grouping:
    """The dedup stages of the core (a mixin: the state lives in :class:`Core`)."""

    config: BatchConfig
    stats: StatsRecorder
    _pending: dict[int, Group]
    _exact: dict[Any, Any]
    _leaders: LeaderIndex
    _embedder: Any
    _waiting: int

    if TYPE_CHECKING:  # provided by Core

        def _leave(self, req: Request) -> None: ...

        def _finish(self, req: Request, value: Any, error: BaseException | None,
                    now: float | None = None) -> None: ...


    def _new_group(self, req: Request, part: Any = None) -> Group:
        g = Group(req)
        g.part = part
        req.group = g
        req.state = GROUPED
        req.similarity = None
        self._pending[g.seq] = g
        if req.key is not None:
            g.keys.append(req.key)
            # the leader's own key maps to the group itself (no tuple to build: the common case)
            self._exact[req.key] = g
        return g

    @staticmethod
    def _add_member(req: Request, g: Group, state: int, similarity: float, exact: bool) -> None:
        req.group = g
        req.state = state
        req.similarity = similarity
        req.exact = exact
        g.members.append(req)
        g.live += 1

    def _join(self, req: Request, g: Group, similarity: float, exact: bool) -> None:
        """``req`` becomes a duplicate in pending group ``g``."""
        self._add_member(req, g, GROUPED, similarity, exact)
        if req.priority > g.priority:
            g.priority = req.priority
        if req.key is not None and req.key not in self._exact:
            g.keys.append(req.key)
            self._exact[req.key] = (g, req.norm, similarity, exact)

    def _coalesce(self, req: Request, g: Group, similarity: float, exact: bool) -> None:
        """``req`` waits for the result of ``g``, which is running in the handler now."""
        assert g.batch is not None
        self._add_member(req, g, INFLIGHT, similarity, exact)
        g.batch.live += 1
        self._waiting -= 1
        st = self.stats
        st.record_merge(similarity, exact)
        st.inflight_coalesced += 1

    def _fail_raw(self, req: Request, err: BaseException) -> None:
        if req.state != RAW:
            return
        self._leave(req)
        self._finish(req, None, err)

    def _dedup_pass(self, raw: list[Request]) -> None:
        """Merge everything that arrived since the last pass into groups."""
        if not raw:
            return
        c = self.config
        if not c.enable_dedup:
            for r in raw:
                self._new_group(r)
            return
        for r in raw:
            if r.text is not None:
                r.norm = normalize_key(r.text) if c.normalize else r.text
            else:
                r.norm = canonical_bytes(r.payload)
        hashes = exact_hashes([r.norm for r in raw])  # type: ignore[misc]
        scope = c.dedup_scope
        exact_index = self._exact
        fresh: list[Request] = []
        first_of: dict[Any, Request] = {}
        followers: dict[Any, list[Request]] = {}
        for r, h in zip(raw, hashes, strict=True):
            # a plain int key in the common case (text, no scope): cheapest to hash and compare
            key: Any = h if not scope and r.text is not None else (
                scope_of(r.payload, scope) if scope else b"", h, r.text is None)
            r.key = key
            entry = exact_index.get(key)
            if entry is not None:
                if type(entry) is tuple:
                    g, norm, sim, ex = entry
                else:
                    g, norm, sim, ex = entry, entry.leader.norm, 1.0, True
                if norm == r.norm:  # not a 64-bit hash collision
                    if g.batch is None:
                        self._join(r, g, sim, ex)
                        continue
                    if g.batch.live > 0:  # running, and somebody still waits for it
                        self._coalesce(r, g, sim, ex)
                        continue
            lead = first_of.get(key)
            if lead is not None and lead.norm == r.norm:
                followers.setdefault(key, []).append(r)
                continue
            if lead is None:
                first_of[key] = r
            fresh.append(r)
        if fresh:
            if c.dedup_function is not None:
                self._custom_stage(fresh)
            elif c.dedup_strategy in ("embedding", "hybrid"):
                self._embedding_stage(fresh)
            else:
                for r in fresh:
                    self._new_group(r)
        for key, rs in followers.items():
            lead = first_of[key]
            if lead.state != GROUPED:  # its lead failed its own dedup step: the next one leads
                lead, rs = rs[0], rs[1:]
                self._new_group(lead)
            g = lead.group
            assert g is not None
            sim = 1.0 if lead.similarity is None else lead.similarity
            for r in rs:
                self._join(r, g, sim, lead.similarity is None or lead.exact)

    def _part_key(self, req: Request, scope: tuple[str, ...]) -> Any:
        s = scope_of(req.payload, scope) if scope else b""
        if self.config.guard_numbers and req.text is not None:
            return (s, number_guard(req.text))
        return (s, None)

    def _custom_stage(self, fresh: list[Request]) -> None:
        c = self.config
        fn = c.dedup_function
        threshold = c.dedup_threshold if c.dedup_threshold is not None else \
            _CUSTOM_DEFAULT_THRESHOLD
        leaders = [g for g in self._pending.values()]
        for r in fresh:
            part = self._part_key(r, c.dedup_scope)
            best: Group | None = None
            best_sim = 0.0
            try:
                for g in leaders:
                    if g.part != part:
                        continue
                    sim = fn(r.payload, g.leader.payload)  # type: ignore[misc]
                    if isinstance(sim, bool) or not isinstance(sim, (int, float)) or \
                            not 0.0 <= sim <= 1.0:
                        raise HandlerError(
                            f"dedup_function must return a similarity in [0, 1], got {sim!r}"
                        )
                    if sim >= threshold:
                        best, best_sim = g, float(sim)
                        break
            except HandlerError as e:
                self._fail_raw(r, e)
                continue
            except Exception as e:  # the user's function: fail this request only
                self._fail_raw(r, HandlerError.from_exception(e, "dedup_function raised"))
                continue
            if best is not None:
                self._join(r, best, best_sim, False)
            else:
                leaders.append(self._new_group(r, part=part))

    def embedder(self) -> Any:
        """The resolved embedder (built on first use)."""
        if self._embedder is None:
            from .embed import resolve_embedder

            self._embedder = resolve_embedder(self.config.embedder)
        return self._embedder

    def threshold(self) -> float:
        """The similarity threshold in force for embedding merges."""
        c = self.config
        if c.dedup_threshold is not None:
            return c.dedup_threshold
        if c.dedup_function is not None:
            return _CUSTOM_DEFAULT_THRESHOLD
        rec = getattr(self.embedder(), "recommended_threshold", None)
        return float(rec) if rec is not None else _FALLBACK_THRESHOLD

    def _embedding_stage(self, fresh: list[Request]) -> None:
        from .embed import validate_vector
        from .kernels import leader_cluster

        c = self.config
        emb = self.embedder()
        cands: list[Request] = []
        texts: list[str] = []
        for r in fresh:
            if r.vector is not None:
                cands.append(r)
            elif r.text is not None:
                cands.append(r)
                texts.append(r.text)
            else:
                self._new_group(r)  # no text: only an identical request merges with it
        mat = None
        if texts:
            try:
                mat = emb.embed(texts)
            except Exception as e:
                for r in cands:
                    if r.vector is None:
                        self._fail_raw(r, HandlerError.from_exception(e, "the embedder failed"))
        index = self._leaders
        dim = getattr(emb, "dim", None) or index.dim
        ok: list[Request] = []
        vectors: list[Any] = []
        k = 0
        for r in cands:
            if r.vector is None:
                k += 1
                if r.state == RAW:
                    ok.append(r)
                    vectors.append(mat[k - 1])  # type: ignore[index]
                continue
            try:
                r.vector = validate_vector(r.vector, dim)
            except ValueError as e:
                self._fail_raw(r, InvalidRequestError(f"bad 'embedding' field: {e}"))
                continue
            ok.append(r)
            vectors.append(r.vector)
        if not ok:
            return
        if index.dim is None:
            index.dim = len(vectors[0])
        keys = [self._part_key(r, c.dedup_scope) for r in ok]
        threshold = float(self.threshold())
        start, pids = index.append(vectors, keys)
        n = start + len(ok)
        if index.has_leaders_in(pids):
            lead, sim = leader_cluster(index.mat[:n], index.part[:n], threshold, start,
                                       method=_CLUSTER_METHOD)
            leads, sims = lead[start:].tolist(), sim[start:].tolist()
        else:  # no pending leader shares a partition with them: cluster the new rows alone
            lead, sim = leader_cluster(index.mat[start:n], index.part[start:n], threshold, 0,
                                       method=_CLUSTER_METHOD)
            leads, sims = (lead + start).tolist(), sim.tolist()
        owners = index.owners
        for j, r in enumerate(ok):
            i = start + j
            li = leads[j]
            if li == i:
                g = self._new_group(r, part=keys[j])
                g.row = i
                index.lead(i, g)
            else:
                self._join(r, owners[li], sims[j], False)
                index.retire(i)
