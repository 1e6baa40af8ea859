"""Candidate leaders (exhaustive and indexed), the greedy pass, and near twins of running work.

The exhaustive producer is checked against a plain reference; the indexed one against the
exhaustive one (exactly on small inputs at thresholds far from every cosine, and by counted
misses at scale); the greedy pass against greedy leader clustering with vetoes.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratabatch import BatchProcessor
from stratabatch.candidates import exhaustive_candidates
from stratabatch.greedy import greedy_pass, leader_cluster
from stratabatch.index import INDEX_MIN_THRESHOLD, LeaderIndex

PAIRS = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "dedup_pairs.jsonl").read_text().splitlines()
    if line
]


def _unit(M: np.ndarray) -> np.ndarray:
    M = np.asarray(M, np.float64)
    M[~M.any(axis=1), 0] = 1.0
    M /= np.linalg.norm(M, axis=1, keepdims=True)
    return np.ascontiguousarray(M, np.float32)


def _canonical(X: np.ndarray) -> np.ndarray:
    X64 = X.astype(np.float64)
    return (X64 @ X64.T).astype(np.float32)


def candidates_reference(X, part, thr, start, k):
    """Candidates the obvious way: live old rows, then new rows that had none, in order."""
    C = _canonical(X)
    thr = np.float32(thr)
    leaders = [r for r in range(start) if part[r] >= 0]
    out = []
    for i in range(start, X.shape[0]):
        found = [(j, C[i, j]) for j in leaders if part[j] == part[i] and C[i, j] >= thr]
        out.append((found[:k], len(found) > k))
        if not found:
            leaders.append(i)
    return out


def _as_lists(cands):
    off, rows, sims, more = cands
    return [
        (
            list(
                zip(
                    rows[off[j] : off[j + 1]].tolist(),
                    sims[off[j] : off[j + 1]].tolist(),
                    strict=True,
                )
            ),
            bool(more[j]),
        )
        for j in range(len(off) - 1)
    ]


@st.composite
def small_case(draw):
    n = draw(st.integers(1, 30))
    d = draw(st.integers(1, 8))
    ints = draw(st.lists(st.integers(-2, 2), min_size=n * d, max_size=n * d))
    X = _unit(np.array(ints, np.float64).reshape(n, d))
    part = np.array(draw(st.lists(st.integers(-1, 2), min_size=n, max_size=n)), np.int64)
    start = draw(st.integers(0, n))
    part[start:] = np.maximum(part[start:], 0)  # new rows are never dead
    C = _canonical(X)
    thr = float(C[draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))])
    if draw(st.booleans()):
        thr = float(np.nextafter(np.float32(thr), np.float32(2)))
    return X, part, thr, start, draw(st.integers(1, 4))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=small_case())
def test_exhaustive_candidates_match_the_reference(case) -> None:
    X, part, thr, start, k = case
    want = candidates_reference(X, part, thr, start, k)
    for method in ("loop", "blas"):
        _check_candidates(_as_lists(exhaustive_candidates(X, part, thr, start, k, method)), want)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.sampled_from([40, 200, 400]))
def test_exhaustive_blas_blocks_match_the_loop_on_float_vectors(seed, n) -> None:
    """384-d rows, several blocks of new rows, threshold on an actual cosine."""
    rng = np.random.default_rng(seed)
    X = _near_dups(rng, max(2, n // 4), n, 0.3, d=384)
    part = rng.integers(0, 2, n).astype(np.int64)
    start = int(rng.integers(0, n))
    part[:start][rng.random(start) < 0.3] = -1
    C = _canonical(X)
    thr = float(np.quantile(C[~np.eye(n, dtype=bool)], 0.97))
    want = candidates_reference(X, part, thr, start, 3)
    for method in ("loop", "blas"):
        _check_candidates(_as_lists(exhaustive_candidates(X, part, thr, start, 3, method)), want)


def _check_candidates(got, want) -> None:
    assert [[r for r, _ in c] for c, _ in got] == [[r for r, _ in c] for c, _ in want]
    assert [[s for _, s in c] for c, _ in got] == [[float(s) for _, s in c] for c, _ in want]
    assert [m for _, m in got] == [m for _, m in want]


def _near_dups(rng: np.random.Generator, n_base: int, n: int, noise: float, d: int = 96):
    base = rng.standard_normal((n_base, d))
    X = base[rng.integers(0, n_base, n)] + noise * rng.standard_normal((n, d))
    return _unit(X)


@pytest.mark.parametrize("seed", [1, 2])
def test_greedy_pass_without_vetoes_is_greedy_leader_clustering(seed) -> None:
    rng = np.random.default_rng(seed)
    print("seed", seed)
    X = _near_dups(rng, 40, 300, 0.15)
    part = rng.integers(0, 3, 300).astype(np.int64)
    start = 120
    part[:start][rng.random(start) < 0.2] = -1  # dead rows among the old ones
    thr = 0.97
    leader, sim, late = greedy_pass(
        X, part, thr, start, exhaustive_candidates(X, part, thr, start, 2)
    )
    # the reference: old live rows are fixed leaders, dead ones a partition of their own
    ref_part = part.copy()
    ref_part[part < 0] = 10_000 + np.arange((part < 0).sum())
    want, want_sim = leader_cluster(X, ref_part, thr, start)
    assert leader == want[start:].tolist()
    assert np.array_equal(np.float32(sim), want_sim[start:])
    assert late == []


def greedy_with_vetoes_reference(X, part, thr, start, joinable, veto):
    C = _canonical(X)
    leaders = [r for r in range(start) if part[r] >= 0 and joinable(r)]
    out = []
    for i in range(start, X.shape[0]):
        for j in leaders:
            if part[j] == part[i] and C[i, j] >= np.float32(thr) and not veto(i, j, C[i, j]):
                out.append(j)
                break
        else:
            out.append(i)
            leaders.append(i)
    return out


@pytest.mark.parametrize("seed", [3, 4, 5])
@pytest.mark.parametrize("k", [1, 3])
def test_greedy_pass_with_vetoes_and_unjoinable_rows_matches_the_reference(seed, k) -> None:
    """Vetoed rows become leaders the producers never offered (late leaders), and lists cut
    at k whose candidates are all refused are completed by a rescan."""
    rng = np.random.default_rng(seed)
    print("seed", seed, "k", k)
    X = _near_dups(rng, 15, 200, 0.05)
    part = rng.integers(0, 2, 200).astype(np.int64)
    start = 60
    thr = 0.97
    refused = {(int(a), int(b)) for a, b in rng.integers(0, 200, (4000, 2))}
    blocked = set(rng.integers(0, start, 10).tolist())

    def veto(i, j, sim):
        return (i, j) in refused

    def joinable(r):
        return r not in blocked

    for method in ("exhaustive", "index"):
        if method == "exhaustive":
            cands = exhaustive_candidates(X, part, thr, start, k)
        else:
            idx = LeaderIndex(method="index")
            idx.dim = X.shape[1]
            idx.append(X[:start], list(part[:start]))
            for r in range(start):
                idx.lead(r, _Owner())
            s = idx.append(X[start:], list(part[start:]))
            cands = idx.candidates(s, thr, k)
        leader, _, late = greedy_pass(X, part, thr, start, cands, joinable, veto)
        want = greedy_with_vetoes_reference(X, part, thr, start, joinable, veto)
        assert leader == want, method
        assert late  # the case exercises late leaders


def _index_vs_exhaustive(X, part, thr, chunk):
    """Feed X in passes of ``chunk`` rows through two leader indexes; merged-or-not per row."""
    merged = {}
    for method in ("exhaustive", "index"):
        idx = LeaderIndex(method=method)
        idx.dim = X.shape[1]
        idx.compact_min_dead = 64  # compactions (rows renumbered, table refiled) on the way
        out = np.zeros(X.shape[0], bool)
        for a in range(0, X.shape[0], chunk):
            rows = X[a : a + chunk]
            start = idx.append(rows, list(part[a : a + chunk]))
            n = start + len(rows)
            leader, _, late = greedy_pass(
                idx.mat[:n], idx.part[:n], thr, start, idx.candidates(start, thr)
            )
            for j, li in enumerate(leader):
                if li == start + j:
                    idx.lead(li, _Owner())
                else:
                    out[a + j] = True
                    idx.retire(start + j)
            idx.file_leaders(late)
        merged[method] = out
    return merged["exhaustive"], merged["index"]


class _Owner:
    row: int | None = None


def test_index_groups_exactly_as_exhaustive_when_cosines_are_far_from_the_threshold() -> None:
    """Twins at cosine >= 0.995, others below 0.5: the index finds every merge."""
    rng = np.random.default_rng(7)
    X = _near_dups(rng, 400, 1500, 0.04, d=128)
    part = rng.integers(0, 4, 1500).astype(np.int64)
    ex, ix = _index_vs_exhaustive(X, part, 0.97, 250)
    assert ex.sum() > 500
    assert np.array_equal(ex, ix)


def test_index_misses_few_merges_at_the_threshold() -> None:
    """Near duplicates spread around the threshold (the hard case): misses counted, bounded."""
    rng = np.random.default_rng(8)
    print("seed 8")
    X = _near_dups(rng, 1500, 6000, 0.19, d=384)
    part = np.zeros(6000, np.int64)
    ex, ix = _index_vs_exhaustive(X, part, 0.96, 256)
    missed = int((ex & ~ix).sum())
    print(f"merges {ex.sum()}, missed by the index {missed}, extra {(ix & ~ex).sum()}")
    assert ex.sum() > 1500
    assert missed <= 0.01 * ex.sum()


def test_index_is_not_used_below_its_minimum_threshold() -> None:
    idx = LeaderIndex()
    idx.dim = 8
    X = _unit(np.random.default_rng(0).standard_normal((3000, 8)))
    start = idx.append(X, [0] * 3000)
    idx.candidates(start, INDEX_MIN_THRESHOLD - 0.05)
    assert not idx.last_indexed and idx.table is None
    idx.candidates(start, 0.97)
    assert idx.last_indexed and idx.table is not None


def _merged_pairs(method: str, threshold: float | None) -> list[bool]:
    async def go():
        seen: dict[int, int] = {}

        async def handler(reqs):
            for r in reqs:
                seen[r["pair"]] = seen.get(r["pair"], 0) + 1
            return [None] * len(reqs)

        batch = BatchProcessor(
            handler, dedup_scope=("pair",), max_size=1024, window_ms=5, dedup_threshold=threshold
        )
        batch._core._dedup.leaders.method = method
        await batch.process(
            [{"query": p[side], "pair": i} for i, p in enumerate(PAIRS) for side in "ab"]
        )
        await batch.close()
        return [seen[i] == 1 for i in range(len(PAIRS))]

    return asyncio.run(go())


@pytest.mark.parametrize("threshold", [None, 0.96])  # the default (0.80 with guards), 0.96
def test_labelled_pairs_merge_the_same_through_the_index(threshold) -> None:
    ex = _merged_pairs("exhaustive", threshold)
    ix = _merged_pairs("index", threshold)
    missed = [p for p, a, b in zip(PAIRS, ex, ix, strict=True) if a and not b]
    new = [p for p, a, b in zip(PAIRS, ex, ix, strict=True) if b and not a]
    print(f"merged {sum(ex)} pairs exhaustively; the index missed {len(missed)}, added {len(new)}")
    assert len(missed) <= 0.01 * sum(ex)
    assert new == []  # precision unchanged: no new merge


# --------------------------------------------------------------------------------------------
# Near twins of running work
# --------------------------------------------------------------------------------------------


class Gate:
    """A handler that records its items and answers only when released."""

    def __init__(self):
        self.items: list[str] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, reqs):
        self.items.extend(r["query"] for r in reqs)
        self.started.set()
        await self.release.wait()
        return [f"A:{r['query']}" for r in reqs]


async def test_a_near_twin_of_running_work_coalesces_into_it():
    gate = Gate()
    async with BatchProcessor(gate, window_ms=2) as batch:
        first = asyncio.ensure_future(batch.process({"query": "Where is my parcel?"}))
        await gate.started.wait()
        stream = batch.process_streaming([{"query": "where is my parcel"}])
        second = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.05)  # its dedup pass has run; the handler is still busy
        assert not second.done()
        gate.release.set()
        done = await second
        assert await first == done.result == "A:Where is my parcel?"
        stats = batch.get_stats()
    assert gate.items == ["Where is my parcel?"]
    assert done.merged_into == -1  # answered by another caller's request
    assert batch.dedup_threshold_in_force <= done.similarity <= 1.0
    assert stats.inflight_coalesced == 1 and stats.near_merges == 1


@pytest.mark.parametrize("cancel", ["leader", "twin"])
async def test_cancelling_either_side_of_a_near_coalesce_never_fails_the_other(cancel):
    gate = Gate()
    async with BatchProcessor(gate, window_ms=2) as batch:
        lead = asyncio.ensure_future(batch.process({"query": "Cancel my subscription"}))
        await gate.started.wait()
        twin = asyncio.ensure_future(batch.process({"query": "cancel my subscription."}))
        await asyncio.sleep(0.05)
        gone, kept = (lead, twin) if cancel == "leader" else (twin, lead)
        gone.cancel()
        await asyncio.sleep(0.01)
        gate.release.set()
        assert await kept == "A:Cancel my subscription"
        with pytest.raises(asyncio.CancelledError):
            await gone
    assert gate.items == ["Cancel my subscription"]


async def test_running_leaders_leave_the_index_when_their_batch_finishes():
    gate = Gate()
    async with BatchProcessor(gate, window_ms=2) as batch:
        index = batch._core._dedup.leaders
        first = asyncio.ensure_future(batch.process({"query": "Opening hours today?"}))
        await gate.started.wait()
        assert index.live + len(index.lazy) == 1  # running, still a leader (with a row or not)
        gate.release.set()
        await first
        assert index.live + len(index.lazy) == 0
        gate.release.clear()
        gate.started.clear()
        later = asyncio.ensure_future(batch.process({"query": "opening hours today"}))
        await gate.started.wait()
        gate.release.set()
        assert await later == "A:opening hours today"  # new work, not the old answer
    assert gate.items == ["Opening hours today?", "opening hours today"]


def _slot_rows(t, s: int) -> list[int]:
    from stratabatch.hashtable import _NIL32

    head = int(t.slots[s, 0])
    rows = [int(t.slots[s, 2 + 2 * u]) for u in range(head & 3)]
    e = int(t.slots[s, 1])
    while e != int(_NIL32):
        rows.append(int(t.ents[e, 0]) & 0xFFFFFFFF)
        e = int(t.ents[e, 0]) >> 32
    return rows


def _table_contents(t) -> dict[int, list[int]]:
    """Key tag -> its rows in chain order (inline first, then the overflow chain)."""
    from stratabatch.hashtable import _NIL32

    out = {}
    for s in range(t.slots.shape[0]):
        head = int(t.slots[s, 0])
        if head == 0:
            continue
        rows = [int(t.slots[s, 2 + 2 * u]) for u in range(head & 3)]
        e = int(t.slots[s, 1])
        while e != int(_NIL32):
            rows.append(int(t.ents[e, 0]) & 0xFFFFFFFF)
            e = int(t.ents[e, 0]) >> 32
        out[head >> 32] = rows
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_table_renumbered_after_compaction_holds_what_a_rebuild_would(seed) -> None:
    """Compaction renumbers the leader rows; the table renumbers its entries in one pass
    instead of filing every live row again. Per key it must hold exactly the live rows, under
    their new numbers, in the order they had (keys shared by many rows: long chains)."""
    from stratabatch.hashtable import _find_slot, band_key
    from stratabatch.wordkeys import WORD_KEYS
    from stratabatch.wordtable import WordTable

    rng = np.random.default_rng(seed)
    n = 3000
    wk = np.zeros((n, WORD_KEYS), np.uint64)
    wk[:, :6] = rng.integers(1, 40, (n, 6)).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    part = rng.integers(0, 3, n).astype(np.int64)
    t = WordTable()
    t.rebuild(wk, part, np.arange(n), room=0)
    before = _table_contents(t)
    assert max(len(v) for v in before.values()) > 100  # chains far past the inline places
    live = np.flatnonzero(rng.random(n) < 0.4)
    newpos = np.full(n, -1, np.int64)
    newpos[live] = np.arange(len(live))
    t.remap(newpos)
    after = _table_contents(t)
    want = {k: [int(newpos[r]) for r in rows if newpos[r] >= 0] for k, rows in before.items()}
    assert after == {k: v for k, v in want.items() if v}  # keys left without rows: freed
    assert int(t.state[1]) == len(after)
    fresh = WordTable()
    fresh.rebuild(wk[live], part[live], np.arange(len(live)), room=0)
    rebuilt = _table_contents(fresh)
    assert {k: sorted(v) for k, v in rebuilt.items()} == {k: sorted(v) for k, v in after.items()}
    # every live row is still found under each of its keys (the probes after the freed slots)
    for new_row, old_row in enumerate(live):
        for u in range(6):
            h = band_key(wk[old_row, u], 0, part[old_row])
            s = _find_slot(t.slots, np.uint64(h))
            assert s >= 0
            assert new_row in _slot_rows(t, s)
    # and it keeps filing: new rows after the renumbered ones land in the same keys
    t.file(
        np.concatenate([wk[live], wk[:5]]),
        np.concatenate([part[live], part[:5]]),
        np.arange(len(live), len(live) + 5),
    )
    grown = _table_contents(t)
    for j in range(5):
        filed = sum(rows.count(len(live) + j) for rows in grown.values())
        assert filed == 6  # (a key it has twice files it twice)


@pytest.mark.parametrize("seed", [3, 4])
def test_freeing_the_slots_of_dead_keys_keeps_every_live_key_reachable(seed) -> None:
    """Distinct keys at the table's full load: most lose their rows at a compaction and
    their slots are freed by moving later keys of the same probe run back. Every live key
    must still be found from where its probe starts, before and after filing more rows."""
    from stratabatch.hashtable import _find_slot, band_key
    from stratabatch.wordkeys import WORD_KEYS
    from stratabatch.wordtable import WordTable

    rng = np.random.default_rng(seed)
    n = 6000
    k = 2 * WORD_KEYS // 3  # keys per row: the table (sized for WORD_KEYS a row) near full
    wk = np.zeros((n, WORD_KEYS), np.uint64)
    wk[:, :k] = rng.integers(1, 2**62, (n, k), dtype=np.int64).astype(np.uint64)
    part = np.zeros(n, np.int64)
    t = WordTable()
    t.rebuild(wk, part, np.arange(n), room=0)
    used = int(t.state[1])
    assert 2 * used > t.slots.shape[0] // 3  # probe runs, not isolated slots
    live = np.flatnonzero(rng.random(n) < 0.25)
    newpos = np.full(n, -1, np.int64)
    newpos[live] = np.arange(len(live))
    t.remap(newpos)
    assert int(t.state[1]) == k * len(live) == int(np.count_nonzero(t.slots[:, 0]))

    def reachable(rows_keys):
        for row, keys in rows_keys:
            for h in keys:
                s = _find_slot(t.slots, np.uint64(band_key(h, 0, 0)))
                assert s >= 0 and row in _slot_rows(t, s)

    reachable((j, wk[r, :k]) for j, r in enumerate(live))
    more = rng.integers(1, 2**62, (500, WORD_KEYS), dtype=np.int64).astype(np.uint64)
    more[:, k:] = 0
    keys = np.concatenate([wk[live], more])
    t.file(keys, np.zeros(len(keys), np.int64), np.arange(len(live), len(keys)))
    reachable((j, keys[j, :k]) for j in range(len(keys)))


def test_dropped_leaders_leave_their_partition_when_the_index_is_next_read() -> None:
    """drop() keeps the counts at once and marks the row's partition dead when the index is
    next read (settle): a dropped leader is never a candidate, and the partition counts
    and keyless rows follow every drop, through a compaction too."""

    class G:
        row = None

    idx = LeaderIndex()
    idx.dim = 4
    idx.compact_min_dead = 8
    X = np.eye(4, dtype=np.float32)[np.arange(12) % 4]
    pids = [5 + i % 2 for i in range(12)]
    start = idx.append(X, pids)
    groups = [G() for _ in range(12)]
    for i, g in enumerate(groups):
        g.row = start + i
        idx.lead(g.row, g, pids[i], False)
    assert idx.has_leaders_in([5]) and idx.live == 12
    for g in groups[::2]:  # every leader of partition 5
        idx.drop(g.row)
    assert not idx.has_leaders_in([5]) and idx.has_leaders_in([6]) and idx.live == 6
    idx.settle()
    assert [int(idx.part[g.row]) for g in groups[::2]] == [-1] * 6
    assert [int(idx.part[g.row]) for g in groups[1::2]] == [6] * 6
    # a row equal to a dropped leader (partition 5) finds no candidate; one of 6 finds its own
    start = idx.append(np.eye(4, dtype=np.float32)[[0, 1]], [5, 6])
    off, rows, _, _ = idx.candidates(start, 0.9)
    assert off.tolist() == [0, 0, 3] and rows.tolist() == [groups[k].row for k in (1, 5, 9)]
    assert idx._keyless == 6  # (lead(..., keyed=False) each; the dropped ones left)


def test_greedy_pass_without_candidates_makes_every_row_a_leader() -> None:
    X = np.eye(4, dtype=np.float32)
    empty = np.zeros(0, np.int64)
    cands = (np.zeros(4, np.int64), empty, np.zeros(0, np.float32), np.zeros(3, np.bool_))
    for codes in (None, np.zeros(0, np.int8)):
        leads, sims, late = greedy_pass(
            X, np.zeros(4, np.int64), 0.9, 1, cands, veto=lambda i, r, s: False, codes=codes
        )
        assert leads == [1, 2, 3] and sims == [1.0, 1.0, 1.0] and late == []
    # a deadline not passed yet decides every row too, however many (segments of 64 rows)
    import time

    n = 200
    Y = np.zeros((n, 4), np.float32)
    Y[:, 0] = 1.0
    off = np.zeros(n, np.int64)
    cands = (off, empty, np.zeros(0, np.float32), np.zeros(n - 1, np.bool_))
    leads, sims, late = greedy_pass(
        Y, np.zeros(n, np.int64), 0.9, 1, cands, deadline=time.perf_counter() + 60
    )
    assert leads == list(range(1, n)) and sims == [1.0] * (n - 1) and late == []


def test_drop_many_is_drop_of_each_row() -> None:
    """drop_many (a finished batch's rows at once) leaves the index as a drop() of each row
    would: counts per partition, keyless rows, live and dead rows, owners, and the rows'
    partitions once settled."""

    class G:
        row = None

    def built() -> tuple[LeaderIndex, list[G]]:
        idx = LeaderIndex()
        idx.dim = 4
        X = np.eye(4, dtype=np.float32)[np.arange(12) % 4]
        pids = [3 + i % 3 for i in range(12)]
        start = idx.append(X, pids)
        groups = [G() for _ in range(12)]
        for i, g in enumerate(groups):
            g.row = start + i
            idx.lead(g.row, g, pids[i], i % 2 == 0)
        return idx, groups

    a, ga = built()
    b, gb = built()
    rows = [ga[k].row for k in (0, 3, 6, 9, 1)]  # every leader of partition 3, and one more
    for r in rows:
        a.drop(r)
    b.drop_many(rows)
    a.settle()
    b.settle()
    assert a._leaders_in == b._leaders_in == {4: 3, 5: 4}
    assert (a._keyless, a.live, a.dead) == (b._keyless, b.live, b.dead)
    assert [g is None for g in a.owners] == [g is None for g in b.owners]
    assert np.array_equal(a.part[: len(a)], b.part[: len(b)])
    assert not b.has_leaders_in([3]) and b.has_leaders_in([4, 5])
    # and what that state is (drop() is drop_many() of one row)
    gone = {g.row for k, g in enumerate(gb) if k in (0, 3, 6, 9, 1)}
    assert (b._keyless, b.live, b.dead) == (3, 7, 5)  # odd rows were keyless: 1, 3, 9 left
    assert [i for i, g in enumerate(b.owners) if g is None] == sorted(gone)
    assert [i for i in range(len(b)) if b.part[i] < 0] == sorted(gone)


def test_lead_many_is_lead_of_each_row() -> None:
    """lead_many (a pass's leaders at once) leaves the index as lead() of each row would."""

    class G:
        row = None

    def built() -> tuple[LeaderIndex, list[int], list[int]]:
        idx = LeaderIndex()
        idx.dim = 4
        pids = [7, 8, 7, 9, 7, 8]
        start = idx.append(np.eye(4, dtype=np.float32)[np.arange(6) % 4], pids)
        return idx, [start + i for i in range(6)], pids

    for keyed in (True, False):
        a, rows, pids = built()
        b, _, _ = built()
        groups = [G() for _ in rows]
        for r, g, p in zip(rows, groups, pids, strict=True):
            a.lead(r, g, p, keyed)
        b.lead_many(rows, groups, pids, keyed)
        assert a._leaders_in == b._leaders_in == {7: 3, 8: 2, 9: 1}
        assert a._lead_pid == b._lead_pid
        assert (a._keyless, a.live) == (b._keyless, b.live) == (0 if keyed else 6, 6)
        assert a.owners == b.owners == groups
        assert b._lead_pid[rows[0] : rows[-1] + 1] == [p if keyed else ~p for p in pids]
    # without the hints, lead() reads the partition and the word keys from the arrays (rows
    # appended without profiles have none: keyless)
    c, rows, pids = built()
    for r in rows:
        c.lead(r, G())
    assert c._leaders_in == {7: 3, 8: 2, 9: 1} and c._keyless == 6
    assert c._lead_pid[rows[0] : rows[-1] + 1] == [~p for p in pids]


def test_rows_alone_in_their_partitions_have_no_candidates() -> None:
    """A pass whose rows each have a partition of their own (texts with numbers of their own),
    none shared with a live leader, gets empty lists: what comparing them would find."""
    from stratabatch.candidates import exhaustive_candidates

    class G:
        row = None

    idx = LeaderIndex()
    idx.dim = 4
    X = np.eye(4, dtype=np.float32)[[0, 0, 1, 1]]  # equal vectors, other partitions
    start = idx.append(X[:2], [1, 2])
    for r in (start, start + 1):
        idx.lead(r, G(), int(idx.part[r]), False)
    start = idx.append(X, [3, 4, 5, 6])
    off, rows, sims, more = idx.candidates(start, 0.5)
    want = exhaustive_candidates(idx.mat[: len(idx)], idx.part[: len(idx)], 0.5, start)
    assert off.tolist() == want[0].tolist() == [0] * 5
    assert len(rows) == len(sims) == 0 and not more.any() and len(more) == 4
    # one row sharing a partition with a leader: compared, and found
    start = idx.append(X[:1], [1])
    off, rows, _, _ = idx.candidates(start, 0.5)
    assert rows.tolist() == [0]


def _in_a_fresh_process(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` run in a fresh interpreter (nothing loaded before it); its output."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )


def test_warm_up_loads_what_a_compaction_runs():
    """A process's first compaction found its kernels unloaded and stalled the loop ~8 ms:
    warm_up loads each row array's move and the pools' compaction (a fresh process)."""

    code = (
        "from stratabatch.index import warm_up, LeaderIndex, _ROW_ARRAYS\n"
        "from stratabatch.wordtable import move_rows, compact_pools\n"
        "import numpy as np\n"
        "warm_up()\n"
        "idx = LeaderIndex(method='index'); idx.dim = 384\n"
        "idx.append(np.zeros((2, 384), np.float32), [0, 0])\n"
        "kinds = {(str(a.dtype), a.ndim) for a in (getattr(idx, n) for n in _ROW_ARRAYS)}\n"
        "have = {(str(s[0].dtype), s[0].ndim) for s in move_rows.signatures}\n"
        "print(sorted(map(str, kinds - have)), len(compact_pools.signatures))\n"
    )
    out = _in_a_fresh_process(code)
    assert out.stdout.split() == ["[]", "1"], out.stdout + out.stderr


def test_warm_up_loads_a_table_remap_and_the_slots_freeing():
    """A compaction that keeps most of a table's rows renumbers them in place; one that keeps
    few empties the table, and so does the warm-up rehearsal's: warm_up itself loads the
    remap's two kernels, or the first large compaction on a live loop would (a fresh
    process)."""

    code = (
        "from stratabatch.index import warm_up\n"
        "from stratabatch.hashtable import _remap_table, _free_empty_slots\n"
        "warm_up()\n"
        "print(len(_remap_table.signatures), len(_free_empty_slots.signatures))\n"
    )
    out = _in_a_fresh_process(code)
    assert out.stdout.split() == ["1", "1"], out.stdout + out.stderr


def _word_rows(texts: list[str]) -> tuple[np.ndarray, list[list[int]]]:
    """The default embedder's vectors of ``texts`` and their key words (the word index's)."""
    from stratabatch.canon import canonical_batch
    from stratabatch.embed import default_embedder
    from stratabatch.wordkeys import word_profile

    toks = canonical_batch(texts)
    X = np.ascontiguousarray(default_embedder().embed([" ".join(t) for t in toks]))
    return X, [word_profile(t, squash=True) for t in toks]


def test_rows_alone_are_filed_in_the_word_table_only_when_a_pass_probes_it() -> None:
    """With the word table in use, a pass whose rows are each alone in their partition (texts
    of their own numbers) gets empty lists and leaves its rows out of the table (filing 18
    keys a row was most of such a pass's cost, for rows no later pass may ever look for);
    the next pass that probes the table files those still leading first, and finds them."""

    class G:
        row = None

    texts = [f"where is my parcel number {k} today" for k in range(6)]
    X, prof = _word_rows(texts)
    idx = LeaderIndex(method="words")
    idx.dim = X.shape[1]
    start = idx.append(X, [10 + k for k in range(6)], prof)
    off, rows, _, more = idx.candidates(start, 0.8)
    assert off.tolist() == [0] * 7 and len(rows) == 0 and not more.any()
    assert int(idx.table.state[1]) == 0  # nothing filed (before: 6 rows' keys)
    for k in range(6):
        idx.lead(start + k, G(), 10 + k, True)
    idx.drop(start + 1)
    # a twin of rows 1 and 3 in their partitions: the table is probed, row 3 found (row 1 is
    # dropped, and not filed)
    start = idx.append(X[[1, 3]], [11, 13], [prof[1], prof[3]])
    off, rows, _, _ = idx.candidates(start, 0.8)
    assert rows.tolist() == [3]
    assert int(idx.table.state[1]) > 0


def test_compacting_a_few_live_rows_empties_the_table_and_files_them_on_the_next_probe() -> None:
    """A compaction that leaves few live rows in a large word table empties the table instead
    of renumbering every slot (~65 against ~190 us at 128 live rows in 16,384 slots); the
    live rows are filed again, under their new numbers, when a pass next probes the table,
    and the candidates are what the exhaustive producer finds."""

    class G:
        row = None

    import random

    rng = random.Random(5)
    m = 40
    texts = [
        " ".join("".join(rng.choice("bcdfghklmnprstvz") for _ in range(6)) for _ in range(5))
        for _ in range(m)
    ]
    X, prof = _word_rows(texts)
    idx = LeaderIndex(method="words")
    idx.dim = X.shape[1]
    start = idx.append(X, [0] * m, prof)
    idx.candidates(start, 0.8)
    groups = [G() for _ in range(m)]
    idx.lead_many(list(range(m)), groups, [0] * m, True)
    idx.file_leaders(list(range(m)))
    keep = [5, m - 3]
    idx.drop_many([r for r in range(m) if r not in keep])
    idx.settle()
    slots = idx.table.slots.shape[0]
    assert 2 * len(keep) * idx.table.keys_per_row <= slots
    idx._compact()
    assert [groups[r].row for r in keep] == [0, 1]
    assert int(idx.table.state[1]) == 0  # (before: the live rows' keys, renumbered)
    start = idx.append(X[keep], [0, 0], [prof[r] for r in keep])
    off, rows, _, _ = idx.candidates(start, 0.8)
    want = exhaustive_candidates(idx.mat[: len(idx)], idx.part[: len(idx)], 0.8, start)
    assert rows.tolist() == want[1].tolist() == [0, 1]
    assert off.tolist() == want[0].tolist()


def test_leaders_without_a_row_are_lone_led_dropped_and_given_rows() -> None:
    """``lone`` names the new rows no other row, live leader or leader without a row shares a
    partition with; such a leader holds ``~pid`` as its row until ``take_lazy`` and
    ``add_leaders`` give it one; ``drop_many`` lets either kind go."""
    idx = LeaderIndex()
    idx.dim = 4
    X = _unit(np.eye(4, dtype=np.float32)[:3] + 0.1)
    start = idx.append(X[:1], [7])
    lead7 = _Owner()
    idx.lead_many([start], [lead7], [7], False)
    assert idx.lone([1, 2, 3]) == [0, 1, 2]
    assert idx.lone([1, 7, 2, 2, 3]) == [0, 4]  # 7 has a leader, 2 comes twice
    assert idx.lone([5, 5]) == []
    g1, g3 = _Owner(), _Owner()
    idx.lead_lazy([g1, g3], [1, 3])
    assert (g1.row, g3.row) == (~1, ~3)
    assert idx.lone([1, 2, 3]) == [1]  # 1 and 3 have leaders without rows
    assert (idx.live, sorted(idx.lazy)) == (1, [1, 3])
    idx.drop_many([g3.row])  # (as a finished batch lets its groups' rows go)
    assert sorted(idx.lazy) == [1] and idx.live == 1 and idx.dead == 0
    taken = idx.take_lazy([1, 2, 7])
    assert taken == [g1] and g1.row is None and not idx.lazy
    idx.add_leaders(X[1:2], [1], None, taken)
    assert g1.row == start + 1 and idx.owners[g1.row] is g1 and idx.live == 2
    assert idx.lone([1, 4]) == [1]
    idx.file_leaders([~5])  # (no-op for a leader without a row)
    idx.lead_lazy([g3], [3])
    idx.reset()
    assert g1.row is None and g3.row is None and not idx.lazy and idx.live == 0


async def test_a_near_twin_of_running_work_led_without_a_row_coalesces_into_it():
    """A text alone in its partition leads without a row; while its batch runs, a near twin
    with its numbers gives it its row and waits for its result (one handler item)."""
    gate = Gate()
    async with BatchProcessor(gate, window_ms=2, cold_start="wait") as batch:
        index = batch._core._dedup.leaders
        first = asyncio.ensure_future(batch.process({"query": "Where is my parcel 4417?"}))
        await gate.started.wait()
        assert len(index.lazy) == 1 and index.live == 0  # running, led without a row
        second = asyncio.ensure_future(batch.process({"query": "where is my parcel 4417"}))
        for _ in range(3000):  # (until its pass has run: the leader has its row)
            if index.live:
                break
            await asyncio.sleep(0.001)
        assert index.live == 1 and not index.lazy and not second.done()
        gate.release.set()
        assert await first == await second == "A:Where is my parcel 4417?"
    assert gate.items == ["Where is my parcel 4417?"]
    assert index.live == 0


async def test_a_leader_without_a_row_whose_caller_left_takes_no_twin():
    """The caller of a request led without a row leaves before its batch: its group is let go,
    and a near twin with its numbers leads a group of its own.

    ``min_size=2`` keeps the lone request grouped after its window's end (the look groups it;
    the batch is not due until a second request or ``max_wait_ms``), so it is led without a
    row for as long as the test needs, whatever the machine's speed. (Grouping happens at the
    look, not at arrival: with a batch due at the window's end, the look and the dispatch
    come together.)"""
    gate = Gate()
    gate.release.set()
    async with BatchProcessor(
        gate, window_ms=20, min_size=2, max_wait_ms=60_000, cold_start="wait"
    ) as batch:
        await batch.warm_up()
        index = batch._core._dedup.leaders
        first = asyncio.ensure_future(batch.process({"query": "Where is my parcel 4417?"}))
        for _ in range(3000):
            if index.lazy:
                break
            await asyncio.sleep(0.001)
        assert len(index.lazy) == 1
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        for _ in range(1000):  # (the core hears of the cancel from the future's callback)
            if not index.lazy:
                break
            await asyncio.sleep(0.001)
        assert not index.lazy
        twin = asyncio.ensure_future(batch.process({"query": "where is my parcel 4417"}))
        other = asyncio.ensure_future(batch.process({"query": "and my refund 88"}))
        assert await twin == "A:where is my parcel 4417"
        assert await other == "A:and my refund 88"
    assert gate.items == ["where is my parcel 4417", "and my refund 88"]


def test_lead_range_leads_as_lead_many() -> None:
    """A pass whose rows all lead files them by slices (LeaderIndex.lead_range): the same
    owners, partitions' counts and live count as lead_many of each row, in one partition or
    several, with or without word keys."""
    rng = np.random.default_rng(3)
    X = _unit(rng.standard_normal((9, 8)))
    for pids, keyed in (([0] * 9, True), ([4, 4, 7, 1, 4, 7, 9, 9, 2], False)):
        a, b = LeaderIndex(), LeaderIndex()
        for idx in (a, b):
            idx.dim = 8
            idx.append(X[:3], [5, 5, 6])
            idx.lead_many([0, 2], ["g0", "g2"], [5, 6], True)
            idx.append(X[3:], pids[3:])
        groups = [f"h{k}" for k in range(3, 9)]
        a.lead_many(list(range(3, 9)), groups, pids[3:], keyed)
        b.lead_range(3, groups, pids[3:], keyed)
        assert a.owners == b.owners
        assert a._leaders_in == b._leaders_in
        assert a._lead_pid == b._lead_pid
        assert (a.live, a._keyless) == (b.live, b._keyless)
        a.drop_many([3, 0])
        b.drop_many([3, 0])
        assert a._leaders_in == b._leaders_in and a.live == b.live
