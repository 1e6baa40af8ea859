"""The leader index: the vectors of live leaders, and which candidate producer serves a pass.

The dedup pass is "candidates, then a greedy pass". :class:`LeaderIndex` keeps the vectors of
the live leaders (pending and running groups) in one growing matrix, with what the producers
need of each row (partition, sign sketch, word keys and key words), and asks the producer that
suits the pass for each new row's candidates: the exhaustive one
(:mod:`stratabatch.candidates`) below :data:`INDEX_MIN_ROWS` rows, else a leader table, the
word table (:mod:`stratabatch.wordtable`) when the word guards make word keys sound, else the
sign-sketch table (:mod:`stratabatch.sketches`) when the threshold suits it. The greedy pass
over the lists is :func:`stratabatch.greedy.greedy_pass`.

Importing this module loads neither numpy's kernels nor numba: the producers load on the first
pass that needs them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .wordkeys import WORD_KEYS

__all__ = ["INDEX_MIN_ROWS", "INDEX_MIN_THRESHOLD", "LeaderIndex", "warm_up"]

# Measured with perf/bench_dedup_depth.py: below this many rows (live leaders plus new rows)
# the exhaustive loop costs less than sketching and probing.
INDEX_MIN_ROWS = 256

# Below this threshold a pair at the threshold differs in so many sketch bits that bands narrow
# enough for recall match unrelated rows by the thousand: the exhaustive path serves it.
INDEX_MIN_THRESHOLD = 0.9

# The per-row arrays of a LeaderIndex, kept through growth and moved by compaction.
_ROW_ARRAYS = ("mat", "part", "words", "wkeys", "woff", "wlen", "wtot", "stamp", "vec")

_producers: Any = None


def _load() -> Any:
    """The producer modules (candidates, sketches, wordtable), imported by the first pass
    that needs them (they load numba), then kept: an import statement in a method costs ~1
    us a call even when the module is loaded, and a pass made four."""
    global _producers
    if _producers is None:
        from types import SimpleNamespace

        from . import candidates, sketches, wordtable

        _producers = SimpleNamespace(candidates=candidates, sketches=sketches, words=wordtable)
    return _producers


class LeaderIndex:
    """The vectors of live leaders (pending and running groups), in one growing float32 matrix.

    New requests are clustered against it in place: their rows are written after the leaders,
    and the candidate producers (:mod:`stratabatch.candidates`) run on a view of the matrix, so no
    pass copies or re-stacks what was already waiting. Rows of groups that left (finished, or
    all members gone) and rows that joined a leader get partition -1, which matches nothing
    (a partition is a non-negative 63-bit key, used as it is: no table of partitions to keep);
    the matrix is compacted when such dead rows outnumber the live ones (and are more than
    4,096).

    Once enough rows take part in a pass (:data:`INDEX_MIN_ROWS`),
    candidates come from a table instead of a comparison with every leader; below half that
    many the table is dropped again. The table is the word index
    (:class:`~stratabatch.wordtable.WordTable`) when every live leader and new row has word keys
    (the caller gives them where the word guards make them sound, see
    :mod:`stratabatch.wordkeys`), else the sign-sketch table when the threshold suits it
    (>= :data:`INDEX_MIN_THRESHOLD`), else none.

    Args:
        method: ``"auto"`` (as above), ``"exhaustive"``, ``"index"`` (the sketch table) or
            ``"words"`` (the word table; every pass must bring word keys): the last three
            always, for tests and benchmarks.

    Attributes:
        dim: Vector length of every row (set by the first rows written), or None.
        method: As given; may be changed between passes.
        compact_min_dead: No compaction while fewer dead rows than this exist.
    """

    def __init__(self, method: str = "auto") -> None:
        import numpy as np

        if method not in ("auto", "exhaustive", "index", "words"):
            raise ValueError(
                f"method must be 'auto', 'exhaustive', 'index' or 'words', got {method!r}"
            )
        self._np = np
        self.method = method
        self.compact_min_dead = 4096
        self.dim: int | None = None
        self.mat = np.empty((0, 0), np.float32)
        self.part = np.empty(0, np.int64)
        self.words = np.empty((0, 2), np.uint64)  # sign sketches, while a table is in use
        self.wkeys = np.zeros((0, WORD_KEYS), np.uint64)  # word keys (row 0 all 0: none)
        # each row's key words (stratabatch.pairs.WordData): offset, distinct words (-1:
        # none) and total count; the pools of ranks, shapes and counts, filled to _pool_used
        self.woff = np.zeros(0, np.int64)
        self.wlen = np.zeros(0, np.int64)
        self.wtot = np.zeros(0, np.int64)
        self.pools = tuple(np.zeros(1024, np.int64) for _ in range(3))
        self._pool_used = 0
        # per row, set by the last pass: a pair the pre-check refused, and its cosine
        self.refused = np.zeros(0, np.int64)
        self.rsim = np.zeros(0, np.float32)
        self._keyless = 0  # live leader rows without word keys
        self._pass_keyed = False  # whether every row of the last append has word keys
        self.stamp = np.zeros(0, np.int64)
        self.owners: list[Any] = []  # the group led by each row, None for dead rows
        self._leaders_in: dict[int, int] = {}  # live leader rows per partition id
        # per row, once it leads: its partition id, or ~id when it has no word keys (what
        # drop needs, without reading numpy scalars); rows dropped since the last settle()
        self._lead_pid: list[int] = []
        self._dropped: list[int] = []
        self.live = 0
        self.dead = 0
        self.table: Any = None  # a SketchTable while one is in use
        # leader rows the table does not hold yet: a pass whose rows are each alone in their
        # partition leaves them unfiled, and the next pass that probes the table files those
        # still live (_file_unfiled); where every pass is such a pass (texts of their own
        # numbers), rows come and go without ever being filed
        self._unfiled: list[int] = []
        self._dirs: Any = None
        self.last_indexed = False  # whether the last pass used the table
        # leaders without a row: partition id -> the group of a leader that was alone in its
        # partition when it came (no live leader there, no other row of its pass), whose
        # vector nothing compares with until a request of its partition arrives; its
        # group's ``row`` is ~pid (negative) meanwhile (see lead_lazy)
        self.lazy: dict[int, Any] = {}
        # rows without their vector (appended with texts, see append): ``vec[row]`` 0, the
        # text in ``texts[row]``, the vector computed by ``embed_texts`` (set by the caller)
        # when a kernel is about to read it (materialize); ``unvectored`` counts them (dead
        # ones too, until a compaction), ``fetched`` the rows given a vector so far
        self.vec = np.zeros(0, np.uint8)
        self.texts: list[Any] = []
        self.unvectored = 0
        self.fetched = 0
        self.embed_texts: Any = None
        # the last query's matrix, where it computed one (see query)
        self.queried: Any = None

    def __len__(self) -> int:
        return len(self.owners)

    def reset(self) -> None:
        """Forget every row (the embedder changed: old vectors are not comparable)."""
        for g in self.owners:
            if g is not None:
                g.row = None
        for g in self.lazy.values():
            g.row = None
        keep = self.compact_min_dead
        embed_texts = self.embed_texts
        self.__init__(self.method)  # type: ignore[misc]
        self.compact_min_dead = keep
        self.embed_texts = embed_texts

    def lead(self, row: int, group: Any, pid: int | None = None, keyed: bool | None = None) -> None:
        """Row ``row`` leads ``group``: later requests of its partition compare with it.
        ``pid`` (its partition id) and ``keyed`` (whether it has word keys), when the caller
        knows them, spare reading them back from the arrays."""
        if pid is None:
            pid = int(self.part[row])
        if keyed is None:
            keyed = bool(self.wkeys[row, 0] != 0)
        self.lead_many([row], [group], [pid], keyed)

    def lead_many(self, rows: list[int], groups: list[Any], pids: list[int], keyed: bool) -> None:
        """:meth:`lead` of each of ``rows`` (``groups[k]`` leads ``rows[k]``, in partition
        ``pids[k]``; ``keyed``: whether they have word keys), in one call: a pass's leaders."""
        owners = self.owners
        counts = self._leaders_in
        lead_pid = self._lead_pid
        for row, g, pid in zip(rows, groups, pids, strict=True):
            owners[row] = g
            counts[pid] = counts.get(pid, 0) + 1
            lead_pid[row] = pid if keyed else ~pid
        if not keyed:
            self._keyless += len(rows)
        self.live += len(rows)

    def lead_range(self, start: int, groups: list[Any], pids: list[int], keyed: bool) -> None:
        """:meth:`lead_many` of rows ``start, start + 1, ...`` (``groups[k]`` leads row
        ``start + k``): a pass whose rows all lead, by slices (and one count where they share
        a partition: texts without digits)."""
        n = len(groups)
        if not n:
            return
        stop = start + n
        self.owners[start:stop] = groups
        self._lead_pid[start:stop] = pids if keyed else [~p for p in pids]
        counts = self._leaders_in
        p0 = pids[0]
        if pids.count(p0) == n:
            counts[p0] = counts.get(p0, 0) + n
        else:
            for pid in pids:
                counts[pid] = counts.get(pid, 0) + 1
        if not keyed:
            self._keyless += n
        self.live += n

    def words_serve(self, m: int) -> bool:
        """Whether the word table would draw the candidates of ``m`` new rows with word keys
        appended now (:meth:`candidates`' rule): the only producer that reads a vector only
        where a pair needs it; the others read every row's (rows without vectors are then
        embedded first, see :meth:`materialize_live`)."""
        if self.method != "auto":
            return self.method == "words"
        need = INDEX_MIN_ROWS // 2 if self.table is not None else INDEX_MIN_ROWS
        return self._keyless == 0 and self.live + m >= need

    def lone(self, pids: list[int]) -> list[int]:
        """The positions of ``pids`` (a pass's new rows' partitions) whose partition no other
        of them, no live leader and no leader without a row shares: requests that can only
        lead, and whose vectors nothing compares with yet (:meth:`lead_lazy`)."""
        distinct = set(pids)
        counts = self._leaders_in
        lazy = self.lazy
        if len(distinct) == len(pids):
            if counts.keys().isdisjoint(distinct) and lazy.keys().isdisjoint(distinct):
                return list(range(len(pids)))
            return [j for j, p in enumerate(pids) if p not in counts and p not in lazy]
        if len(distinct) == 1:
            return []
        seen: dict[int, int] = {}
        for p in pids:
            seen[p] = seen.get(p, 0) + 1
        return [j for j, p in enumerate(pids) if seen[p] == 1 and p not in counts and p not in lazy]

    def lead_lazy(self, groups: list[Any], pids: list[int]) -> None:
        """Each of ``groups`` leads partition ``pids[k]`` without a row (see :meth:`lone`):
        its vector is computed and filed when a request of its partition arrives
        (:meth:`take_lazy`, then :meth:`add_leaders`). Its ``row`` is ``~pid`` meanwhile,
        which :meth:`drop_many` lets go as it lets a row go."""
        lazy = self.lazy
        for group, pid in zip(groups, pids, strict=True):
            lazy[pid] = group
            group.row = ~pid

    def take_lazy(self, pids: list[int]) -> list[Any]:
        """The groups leading without a row in any of ``pids``, taken out (their ``row`` None
        until :meth:`add_leaders` gives them one)."""
        lazy = self.lazy
        out = []
        for p in set(pids) & lazy.keys():
            g = lazy.pop(p)
            g.row = None
            out.append(g)
        return out

    def add_leaders(self, vectors: Any, pids: list[int], profiles: Any, groups: list[Any]) -> None:
        """Rows for the leaders ``groups`` (taken by :meth:`take_lazy`) in partitions ``pids``,
        with their ``vectors`` and key words (as :meth:`append`): live leaders from now on,
        filed in the table when a pass next probes it."""
        start = self.append(vectors, pids, profiles)
        n = len(self.owners)
        rows = list(range(start, n))
        self.lead_many(rows, groups, pids, profiles is not None)
        for row, g in zip(rows, groups, strict=True):
            g.row = row
        if self.table is not None:
            sk = _load().sketches
            if isinstance(self.table, sk.SketchTable):  # (the table files rows' sketches)
                sk.sketch(self.mat[start:n], self._dirs, self.words, start)
            self._unfiled.extend(rows)

    def retire(self, row: int) -> None:
        """Row ``row`` joined another leader: it never leads, and is dead from now on."""
        self.part[row] = -1
        self.dead += 1

    def drop(self, row: int) -> None:
        """Mark leader row ``row`` dead: its group no longer takes new members.

        Its partition becomes -1 when the index is next read (:meth:`settle`): a group
        leaves once per request of a distinct text, and reading and writing numpy elements
        here cost ~0.3 us a request; a pass's drops settle in one array operation."""
        self.drop_many([row])

    def drop_many(self, rows: list[int]) -> None:
        """:meth:`drop` of each of ``rows`` (leader rows, each once), in one call: a finished
        batch lets its groups' rows go together."""
        lead_pid = self._lead_pid
        counts = self._leaders_in
        owners = self.owners
        if rows and min(rows) < 0:  # leaders without a row among them (lead_lazy)
            lazy = self.lazy
            for row in rows:
                if row < 0:
                    lazy.pop(~row, None)
            rows = [row for row in rows if row >= 0]
        for row in rows:
            pid = lead_pid[row]
            if pid < 0:
                pid = ~pid
                self._keyless -= 1
            left = counts[pid] - 1
            if left:
                counts[pid] = left
            else:
                del counts[pid]
            owners[row] = None
        self._dropped.extend(rows)
        self.dead += len(rows)
        self.live -= len(rows)

    def settle(self) -> None:
        """Write -1 to the partitions of the rows dropped since the last call; every method
        that reads ``part`` calls it first, and so must a caller that reads ``part`` itself
        between a drop and the next :meth:`append`."""
        if self._dropped:
            self.part[self._dropped] = -1
            self._dropped = []

    def has_leaders_in(self, pids: Iterable[int]) -> bool:
        """Whether any live leader row shares a partition with ``pids``."""
        counts = self._leaders_in
        return bool(counts) and not counts.keys().isdisjoint(pids)

    def _grow_rows(self, start: int, need: int) -> None:
        """Room for rows up to ``need`` in every row array (rows before ``start`` kept; the
        per-pass ``refused`` and ``rsim`` start empty), and a matrix of the index's dim."""
        if need > self.mat.shape[0] or self.mat.shape[1] != self.dim:
            np = self._np
            cap = max(64, need * 2)
            if self.mat.shape[1] != self.dim:
                self.mat = np.empty((0, self.dim), np.float32)
            for name in _ROW_ARRAYS:  # each keeps its rows, in arrays of ``cap``
                old = getattr(self, name)
                grown = np.zeros((cap, *old.shape[1:]), old.dtype)
                grown[:start] = old[:start]
                setattr(self, name, grown)
            self.refused = np.zeros(cap, np.int64)  # (per pass: nothing to keep)
            self.rsim = np.zeros(cap, np.float32)

    def _grow_pools(self, used: int, total: int) -> None:
        """Room for ``total`` key-word entries in the word pools (``used`` of them kept)."""
        if total > self.pools[0].shape[0]:
            np = self._np
            cap = max(1024, 2 * total)
            grown = tuple(np.zeros(cap, np.int64) for _ in self.pools)
            for new, old in zip(grown, self.pools, strict=True):
                new[:used] = old[:used]
            self.pools = grown

    def append(
        self,
        vectors: Any,
        pids: Any,
        profiles: list[Any] | None = None,
        texts: list[str] | None = None,
    ) -> int:
        """Write new rows after the existing ones, in partitions ``pids`` (non-negative ints:
        scope and numbers, see :meth:`stratabatch.grouping.Deduper._part_keys`); return the
        index of the first. ``profiles``: the rows' key words, given where the
        residue guard decides their merges (see :func:`stratabatch.wordtable.word_rows`: a list
        with one per row, or the :class:`~stratabatch.wordkeys.BatchProfiles` of exactly
        these rows); None when the rows have none.

        ``vectors`` None: the rows come without their vectors, and ``texts`` (with
        ``profiles``) gives what :attr:`embed_texts` computes each one from, when a kernel is
        about to read it (:meth:`materialize`): the word pass asks for the vectors of the
        pairs it must take a cosine of, and every other reader of the matrix (the exhaustive
        and sketch producers, the greedy pass's rescans and late leaders) gets them first.
        For an embedding that is a function of the text alone (the default hashing
        embedder): the lists and decisions are those with every vector there."""
        n_new = len(pids)
        self.settle()
        # compact when dead rows outnumber live ones, and not below 4,096 of them: each
        # compaction walks every live row (and refiles it in the sketch table), so a small
        # index whose rows turn over every pass would pay it on every pass (~1 us a request
        # at 256 waiting, measured); 4,096 dead rows of 384 floats are 6 MB
        if self.dead > max(self.live, self.compact_min_dead):
            self._compact()
        start = len(self.owners)
        need = start + n_new
        if (
            need > self.mat.shape[0]
            and self.dead * 4 >= start
            and self.dead >= max(1, self.compact_min_dead // 4)
        ):
            # full, and a quarter of it dead: reuse the rows rather than grow (fresh memory
            # costs a page fault per 4 KB on first touch: ~1 s for a 100 MB matrix here).
            # Not for fewer than a quarter of compact_min_dead (1,024) dead rows: a
            # compaction renumbers the table too (a walk of all its slots, ~200 us at a few
            # hundred leaders), and one every few passes of a small index cost ~0.5 us a
            # request (bench_core's no-digit row); 1,024 dead rows of 384 floats are 1.5 MB
            self._compact()
            start = len(self.owners)
            need = start + n_new
        self._grow_rows(start, need)
        if vectors is None:
            self.vec[start:need] = 0
            self.texts.extend(texts)  # type: ignore[arg-type]
            self.unvectored += n_new
        else:
            self.mat[start:need] = vectors
            self.vec[start:need] = 1
            self.texts.extend([None] * n_new)
        self.refused[start:need] = -1
        if profiles is None:
            self.wkeys[start:need] = 0
            self.wlen[start:need] = -1
            self.wtot[start:need] = -1
            self._pass_keyed = False
        else:
            wt = _load().words
            used = self._pool_used
            self._grow_pools(used, used + wt.profile_entries(profiles))
            self._pool_used = wt.word_rows(
                profiles, self.pools, used, (self.woff, self.wlen, self.wtot), self.wkeys, start
            )
            self._pass_keyed = True
        self.part[start:need] = pids
        self.owners.extend([None] * n_new)
        self._lead_pid.extend([0] * n_new)
        return start

    def materialize(self, rows: Any) -> None:
        """Compute the vectors of those of ``rows`` that have none yet (one
        :attr:`embed_texts` call), into their rows of the matrix."""
        vec = self.vec
        todo = [r for r in rows if not vec[r]]
        if not todo:
            return
        texts = self.texts
        got = self.embed_texts([texts[r] for r in todo])
        self.mat[todo] = got
        vec[todo] = 1
        for r in todo:
            texts[r] = None
        self.unvectored -= len(todo)
        self.fetched += len(todo)

    def materialize_live(self, start: int) -> None:
        """The vectors of every live leader row and of the rows from ``start`` on (the new
        rows of a pass) that have none: before a reader that may compare any of them."""
        if self.unvectored:
            n = len(self.owners)
            np = self._np
            want = (self.vec[:n] == 0) & (self.part[:n] >= 0)
            want[start:n] = self.vec[start:n] == 0
            self.materialize(np.flatnonzero(want).tolist())

    def candidates(self, start: int, threshold: float, max_cand: int | None = None) -> Any:
        """Candidate leaders of the rows appended at ``start`` (see :mod:`stratabatch.candidates`).

        Returns:
            ``(offsets, rows, sims, more)``, rows numbered in this index. When the table is in
            use, new rows without candidates are filed in it already; the caller files the
            other rows that end up leading with :meth:`file_leaders`.
        """
        p = _load()
        exhaustive_candidates = p.candidates.exhaustive_candidates
        sk = p.sketches
        SketchBasis, SketchTable, sketch = sk.SketchBasis, sk.SketchTable, sk.sketch
        WordTable = p.words.WordTable

        np = self._np
        self.settle()
        k = p.candidates.MAX_CANDIDATES if max_cand is None else max_cand
        n = len(self.owners)
        m = n - start
        rows_in = self.live + m
        keyed = self._pass_keyed and self._keyless == 0
        if self.method == "words":
            if not keyed:
                raise ValueError("method 'words' needs word keys for every row")
            use = "words"
        elif self.method == "index":
            use = "sketch"
        elif self.method == "exhaustive":
            use = None
        elif rows_in < (INDEX_MIN_ROWS // 2 if self.table is not None else INDEX_MIN_ROWS):
            use = None
        elif keyed:
            use = "words"
        else:
            use = "sketch" if threshold >= INDEX_MIN_THRESHOLD else None
        if use != "words" and self.unvectored:  # (these producers read every vector)
            self.materialize_live(start)
        if use == "words":
            if not isinstance(self.table, WordTable):
                self._use_table(WordTable(), start)
        elif use == "sketch":
            if not isinstance(self.table, SketchTable) or self.table.threshold != float(threshold):
                self._start_table(threshold, start)
        else:
            self.table = None
            self._unfiled = []
        self.last_indexed = use is not None
        pids: list[int] | None = None
        if use != "sketch":
            pids = self.part[start:n].tolist()
            if len(set(pids)) == m and not self.has_leaders_in(pids):
                # each new row alone in its partition (texts of their own numbers): no pair
                # to compare, the lists are empty (~10 us a pass of set-up spared, and the
                # word table's pass, ~0.5 us a row, mostly filing 18 keys a row); the rows
                # all lead, and are filed in the table only if a later pass probes it
                if use == "words":
                    self._unfiled.extend(range(start, n))
                return (
                    np.zeros(m + 1, np.int64),
                    np.zeros(0, np.int64),
                    np.zeros(0, np.float32),
                    np.zeros(m, np.bool_),
                )
        if use is not None:
            self._file_unfiled(start)
        X = self.mat[:n]
        wd = self.word_data()
        if use == "words":
            lazy = self.unvectored
            # rows without vectors: a pair that needs a cosine fetches its rows' vectors
            # (with the pass's rows: its late leaders and rescans compare them)
            out = self.table.candidates(
                X,
                self.part[:n],
                self.words,
                self.wkeys,
                start,
                self.stamp,
                threshold,
                p.words.WORD_MAX_CANDIDATES if max_cand is None else k,
                wd,
                self.vec[:n] if lazy else None,
                (lambda i, r: self.materialize([r, *range(start, n)])) if lazy else None,
            )
            if not lazy:
                return out
            if len(out[1]):  # (the greedy pass reads the pass's rows, and rescans all)
                if out[3].any():
                    self.materialize_live(start)
                else:
                    self.materialize(range(start, n))
            return out
        if use:
            if self._dirs is None or self._dirs.dim != self.dim:
                self._dirs = SketchBasis(self.dim)
            proj = sketch(self.mat[start:n], self._dirs, self.words, start)
            return self.table.candidates(
                X, self.part[:n], self.words, proj, start, self.stamp, k, wd
            )
        assert pids is not None
        if self.has_leaders_in(pids):
            return exhaustive_candidates(X, self.part[:n], threshold, start, k, words=wd)
        # no live leader shares a partition with them: the new rows among themselves
        if wd is not None:
            wd = (*wd[:3], *(a[start:] for a in wd[3:]))
        off, rows, sims, more = exhaustive_candidates(
            self.mat[start:n], self.part[start:n], threshold, 0, k, words=wd
        )
        if wd is not None:  # refused rows were numbered from ``start``
            ref = self.refused[start:n]
            ref[ref >= 0] += start
        return off, rows + start, sims, more

    def _file_unfiled(self, stop: int, rows: list[int] | None = None) -> None:
        """File ``rows`` and the leader rows the table was spared (``_unfiled``) that still
        lead, all before row ``stop`` (a table that must grow is rebuilt from every live row
        before it instead, once: no row is filed twice)."""
        if self._unfiled:
            rows = [*self._unfiled, *(rows or ())]
            self._unfiled = []
        if rows:
            np = self._np
            at = np.array(rows, np.int64)
            at = at[self.part[at] >= 0]
            if len(at):
                self.table.file(self._table_keys(), self.part[:stop], at)

    def file_leaders(self, rows: list[int]) -> None:
        """File leader rows the table does not hold yet (no-op without a table)."""
        if self.table is not None and rows:
            rows = [row for row in rows if row >= 0]  # (not a leader without a row)
            self.settle()
            self._file_unfiled(len(self.owners), rows)

    def word_data(self) -> Any:
        """The rows' key words for the residue pre-check of the candidate producers (see
        :data:`stratabatch.pairs.WordData`), or None when the last rows appended brought
        none (the guards that make the pre-check sound are not in force)."""
        if not self._pass_keyed:
            return None
        return self._word_data(len(self.owners))

    def _word_data(self, stop: int) -> Any:
        """:meth:`word_data` of rows ``[0, stop)`` (with query rows past the last row)."""
        return (
            *self.pools,
            self.woff[:stop],
            self.wlen[:stop],
            self.wtot[:stop],
            self.refused[:stop],
            self.rsim[:stop],
        )

    def _table_keys(self) -> Any:
        """The per-row array the table in use files rows from: word keys or sign sketches."""
        return self.wkeys if isinstance(self.table, _load().words.WordTable) else self.words

    def _use_table(self, table: Any, start: int) -> None:
        """Put a new, empty table in use and file the live leaders before ``start``."""
        self.table = table
        self._unfiled = []  # (every live leader is filed below)
        self.stamp[:] = 0  # the new table's query tags start again at 1
        live = self._np.flatnonzero(self.part[:start] >= 0)
        table.rebuild(self._table_keys(), self.part[:start], live, room=len(self.owners) - start)

    def _start_table(self, threshold: float, start: int) -> None:
        from .sketches import SketchBasis, SketchTable, sketch

        if self._dirs is None or self._dirs.dim != self.dim:
            self._dirs = SketchBasis(self.dim)  # type: ignore[arg-type]
        if not isinstance(self.table, SketchTable) and start:  # rows not sketched yet
            sketch(self.mat[:start], self._dirs, self.words, 0)
        self._use_table(SketchTable(threshold), start)

    def _compact(self) -> None:
        np = self._np
        live = np.flatnonzero(self.part[: len(self.owners)] >= 0)  # leaders; the rest is dead
        n = len(live)
        from .wordtable import compact_pools, move_rows

        # in place: ``self.mat[live]`` would first copy every live row to fresh memory
        for name in _ROW_ARRAYS:
            if name != "stamp":  # (tags of past probes: they match no later one anywhere)
                move_rows(getattr(self, name), live)
        self._pool_used = compact_pools(*self.pools, self.woff, self.wlen, n)  # type: ignore[call-arg]
        owners = self.owners
        at = live.tolist()
        self.owners = [owners[i] for i in at]
        lead_pid = self._lead_pid
        self._lead_pid = [lead_pid[i] for i in at]
        texts = self.texts
        self.texts = [texts[i] for i in at]
        if self.unvectored:
            self.unvectored = n - int(np.count_nonzero(self.vec[:n]))
        for row, g in enumerate(self.owners):
            g.row = row
        self.dead = 0
        table = self.table
        if table is None:
            return
        if 2 * n * table.keys_per_row <= table.slots.shape[0]:
            # few live rows in a large table (a small index whose rows turn over): emptied,
            # and its rows filed again when a pass next probes it (~20 ns a key) costs less
            # than renumbering every slot (~11 ns a slot, walked twice): ~65 against ~190 us
            # for 128 live word rows in 16,384 slots
            table.rebuild(self._table_keys(), self.part[:0], np.zeros(0, np.int64), n)
            self._unfiled = list(range(n))
            return
        # rows moved: renumber them in the table (and those it does not hold yet)
        newpos = np.full(len(owners), -1, np.int64)
        newpos[live] = np.arange(n, dtype=np.int64)
        table.remap(newpos)
        if self._unfiled:
            moved = newpos[self._unfiled]
            self._unfiled = moved[moved >= 0].tolist()

    def query(
        self,
        vectors: Any,
        pids: list[int],
        profiles: list[Any] | None,
        threshold: float,
        max_cand: int | None = None,
        embed: Any = None,
    ) -> Any:
        """Candidate leaders of query rows that never lead: what :meth:`append` then
        :meth:`candidates` would list for each among the rows before it (``vectors``,
        ``pids`` and ``profiles`` as :meth:`append`'s), with no row kept.

        ``vectors`` None: ``embed()`` gives the queries' matrix, called only if a reader
        needs it: where the word table serves, only when a pair needs a cosine (a query
        whose candidates the key words settle is never embedded, as the window's rows
        without vectors). Every leader row has its vector. The matrix, when computed, is
        kept in :attr:`queried` (None otherwise) for the caller.

        Where the word table serves (:meth:`candidates`' rule), the queries are written past
        the last row, read against the table and not filed (a lookup of stored answers, whose
        asks never lead): no row to retire, no dead row to compact, no table slot taken, and
        each query's list as when it is appended alone. Elsewhere the queries are appended,
        listed and retired (a small index, or one without word keys).

        Returns:
            ``(offsets, rows, sims)`` as :meth:`candidates`' first three, rows numbered in
            this index (leader rows only, never another query).
        """
        np = self._np
        m = len(pids)
        n = len(self.owners)
        self.queried = vectors
        if not m or not self.has_leaders_in(pids):
            return np.zeros(m + 1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        keyed = profiles is not None and self._keyless == 0
        if self.method == "auto":
            need = INDEX_MIN_ROWS // 2 if self.table is not None else INDEX_MIN_ROWS
            words = keyed and self.live + m >= need
        else:
            words = self.method == "words" and keyed
        if not words or self.unvectored:
            if vectors is None:
                vectors = self.queried = embed()
            start = self.append(vectors, pids, profiles)
            try:
                off, rows, sims = self.candidates(start, threshold, max_cand)[:3]
            finally:
                for row in range(start, start + m):
                    self.retire(row)
            keep = rows < start
            if keep.all():
                return off, rows, sims
            kept = np.concatenate(([0], np.cumsum(keep)))
            return kept[off], rows[keep], sims[keep]
        p = _load()
        self.settle()
        if not isinstance(self.table, p.words.WordTable):
            self._use_table(p.words.WordTable(), n)
        elif self._unfiled:
            self._file_unfiled(n)
        self._query_rows(vectors, pids, profiles, n)
        stop = n + m
        wd = self._word_data(stop)
        fetch = None
        if vectors is None:

            def fetch(i: int, r: int) -> None:
                # (a query row met a pair that needs its cosine: every query is embedded)
                got = self.queried = embed()
                self.mat[n:stop] = got
                self.vec[n:stop] = 1

        try:
            off, rows, sims = self.table.candidates(
                self.mat[:stop],
                self.part[:stop],
                self.words,
                self.wkeys,
                n,
                self.stamp,
                threshold,
                p.words.WORD_MAX_CANDIDATES if max_cand is None else max_cand,
                wd,
                self.vec[:stop] if vectors is None else None,
                fetch,
                False,
            )[:3]
        finally:
            self.part[n:stop] = -1
        return off, rows, sims

    def _query_rows(self, vectors: Any, pids: list[int], profiles: Any, n: int) -> None:
        """Write query rows at ``n ..`` (past the last row: room made as :meth:`append`
        makes it, but no row counted) and their key words past the pools' fill (not
        counted either: the next append writes over both)."""
        need = n + len(pids)
        self._grow_rows(n, need)
        wt = _load().words
        used = self._pool_used
        self._grow_pools(used, used + wt.profile_entries(profiles))
        if vectors is None:
            self.vec[n:need] = 0  # (see query: embedded when a pair needs a cosine)
        else:
            self.mat[n:need] = vectors
            self.vec[n:need] = 1
        # marked as noted: a query's refused pairs are not noted for a veto log (none reads
        # them), so the pre-check refuses them without their cosine (pairs.word_admit_in)
        self.refused[n:need] = 0
        wt.word_rows(profiles, self.pools, used, (self.woff, self.wlen, self.wtot), self.wkeys, n)
        self.part[n:need] = pids


def warm_up(dim: int = 16) -> None:
    """Load (or compile) the kernels of the candidate producers, the sketch table and the
    greedy pass once, on tiny inputs (for a thread that prepares a process before its first
    dedup pass)."""
    import numpy as np

    from .candidates import exhaustive_candidates
    from .greedy import greedy_pass
    from .wordtable import warm_up as warm_word_rows

    warm_word_rows()

    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, dim)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    part = np.zeros(6, np.int64)
    for method in ("loop", "blas"):
        exhaustive_candidates(X, part, 0.9, 2, method=method)
    idx = LeaderIndex(method="index")
    idx.dim = dim
    start = idx.append(X, [0] * 6)
    greedy_pass(
        idx.mat[:6],
        idx.part[:6],
        0.9,
        start,
        idx.candidates(start, 0.95),
        veto=lambda i, j, s: True,
    )
    idx.file_leaders([0])
    # a compaction that keeps most of a table's rows renumbers them in place (the remap and
    # the freeing of empty slots); one that keeps few empties the table instead, and so does
    # the rehearsal's, which then loads neither
    idx.table.remap(np.arange(len(idx), dtype=np.int64))
    # a compaction's kernels (each row array's move, the pools'): loading them at the first
    # compaction of a process stalled the loop ~8 ms
    idx = LeaderIndex(method="index")
    idx.dim = dim
    idx.append(X, [0] * 6)
    for row in range(6):
        idx.lead(row, _WarmGroup(), 0, False)
    idx.drop_many([1, 2])
    idx.settle()
    idx._compact()


class _WarmGroup:
    """A leader's group for :func:`warm_up` (the index numbers its ``row``)."""

    __slots__ = ("row",)

    def __init__(self) -> None:
        self.row: int | None = None
