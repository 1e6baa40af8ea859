"""The core's row lane (engine/lane.py): plain requests as rows of their handler item.

A sink here is what the engine's client is to the core: a table of its callers by id
(``pending``) and its answers. The lane must give every caller what the general path gives
it: the same handler calls, the same outcome, the same stats; the last test runs random
traffic through a core with the lane and one without and compares them whole.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from stratabatch.config import BatchConfig
from stratabatch.core import Core
from stratabatch.lane import LaneGroup, lane_fits
from stratabatch.records import Request


class Sink:
    """A client of the core: its callers by id, and what each was answered."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pending: dict[int, Any] = {}
        self.closed = False
        self.answers: dict[int, tuple[Any, ...]] = {}

    def answer(self, holder: Any, rid: int, outcome: tuple[Any, ...]) -> None:
        assert self.pending.get(rid) is holder, (self.name, rid, "answered twice or unknown")
        del self.pending[rid]
        assert rid not in self.answers
        self.answers[rid] = outcome


def _deliver(groups: list[LaneGroup], values: list[Any]) -> list[float]:
    arrivals = []
    for g, v in zip(groups, values, strict=True):
        for sink, rid, arrival, _, _, _ in g.rows():
            arrivals.append(arrival)
            sink.answer(g, rid, ("ok", v))
    return arrivals


def _fail(g: LaneGroup, sink: Sink, rid: int, arrival: float, error: BaseException) -> None:
    sink.answer(g, rid, ("error", type(error).__name__))


def _repoint(sink: Sink, rid: int, holder: Any) -> None:
    assert rid in sink.pending
    sink.pending[rid] = holder


def _on_complete(req: Request, value: Any, error: BaseException | None) -> None:
    sink = req.sink
    sink.answer(req, req.index, ("ok", value) if error is None else ("error", type(error).__name__))


def make_core(handler: Any, lane: bool = True, **options: Any) -> Core:
    options.setdefault("dedup_strategy", "exact")
    options.setdefault("window_ms", 10)
    core = Core(BatchConfig(**options), _on_complete, handler)
    core.deadline_tick_s = 0.01  # (as the engine)
    if lane:
        core.enable_lane(_deliver, _fail, _repoint)
    return core


def items(rids: list[int], texts: list[str]) -> list[list[Any]]:
    return [[rid, 0, 0, -1, {"query": t}] for rid, t in zip(rids, texts, strict=True)]


class Handler:
    """Answers each item with its text upper-cased, after ``delay`` (virtual) seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[list[str]] = []
        self.cancelled = 0

    async def __call__(self, batch: list[dict[str, Any]]) -> list[Any]:
        self.calls.append([p["query"] for p in batch])
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return [p["query"].upper() for p in batch]


def test_lane_fits_only_the_options_it_serves():
    assert lane_fits(BatchConfig(dedup_strategy="exact"))
    assert lane_fits(BatchConfig(enable_dedup=False))
    assert not lane_fits(BatchConfig())  # near dedup
    # the embedded processor's lane takes the default strategy too (lanework.py LaneWork._lead)
    assert lane_fits(BatchConfig(), near=True)
    assert lane_fits(BatchConfig(reuse="exact"), near=True)
    assert not lane_fits(BatchConfig(guard_numbers=False), near=True)
    assert not lane_fits(BatchConfig(dedup_strategy="hybrid"), near=True)
    assert not lane_fits(BatchConfig(dedup_scope="tenant"), near=True)
    assert not lane_fits(BatchConfig(enable_priorities=True), near=True)
    assert not lane_fits(BatchConfig(dedup_strategy="exact", dedup_scope="tenant"))
    assert not lane_fits(BatchConfig(dedup_strategy="exact", enable_priorities=True))
    assert not lane_fits(BatchConfig(dedup_strategy="exact", on_full="drop_lowest"))


def test_twins_from_two_clients_share_one_item(run_virtual):
    async def main():
        h = Handler()
        core = make_core(h)
        core.bind(asyncio.get_running_loop())
        await core.warm_up()
        a, b = Sink("a"), Sink("b")
        assert core.lane_open
        assert core.submit_rows(a, a.pending, items([1, 2], ["Hello", "other"])) == []
        assert core.submit_rows(b, b.pending, items([1], ["  hello "])) == []
        assert type(a.pending[1]) is LaneGroup and type(b.pending[1]) is LaneGroup
        await core.close()
        assert h.calls == [["Hello", "other"]]
        assert a.answers == {1: ("ok", "HELLO"), 2: ("ok", "OTHER")}
        assert b.answers == {1: ("ok", "HELLO")}
        st = core.stats
        assert (st.total_requests, st.unique_requests, st.duplicates) == (3, 2, 1)
        assert st.completed == 3 and core.waiting == 0

    run_virtual(main)


def test_a_repeated_id_is_returned_not_queued(run_virtual):
    async def main():
        core = make_core(Handler())
        core.bind(asyncio.get_running_loop())
        await core.warm_up()
        a = Sink("a")
        assert core.submit_rows(a, a.pending, items([7, 7], ["x", "y"])) == [7]
        await core.close()
        assert a.answers == {7: ("ok", "X")}
        assert core.stats.total_requests == 1

    run_virtual(main)


def test_a_twin_of_running_work_waits_for_its_result(run_virtual):
    async def main():
        h = Handler(delay=0.05)
        core = make_core(h, window_ms=1)
        loop = asyncio.get_running_loop()
        core.bind(loop)
        await core.warm_up()
        a = Sink("a")
        core.submit_rows(a, a.pending, items([1], ["q"]))
        await asyncio.sleep(0.01)  # taken and running
        assert h.calls == [["q"]] and not a.answers
        core.submit_rows(a, a.pending, items([2], ["Q"]))
        await core.close()
        assert h.calls == [["q"]]
        assert a.answers == {1: ("ok", "Q"), 2: ("ok", "Q")}
        st = core.stats
        assert st.inflight_coalesced == 1 and st.duplicates == 1 and st.unique_requests == 1

    run_virtual(main)


def test_callers_who_leave_get_nothing_and_free_their_room(run_virtual):
    async def main():
        h = Handler()
        core = make_core(h)
        core.bind(asyncio.get_running_loop())
        await core.warm_up()
        a = Sink("a")
        core.submit_rows(a, a.pending, items([1, 2, 3], ["x", "x", "y"]))
        assert core.waiting == 3
        for rid in (1, 3):  # x keeps one caller; y loses its only one
            core.abandon_row(a.pending.pop(rid), a, rid)
        assert core.waiting == 1
        await core.close()
        assert h.calls == [["x"]]
        assert a.answers == {2: ("ok", "X")}
        assert core.stats.dropped == 2 and core.stats.completed == 1

    run_virtual(main)


def test_running_work_is_cancelled_when_its_last_caller_leaves(run_virtual):
    async def main():
        h = Handler(delay=10.0)
        core = make_core(h, window_ms=1)
        core.bind(asyncio.get_running_loop())
        await core.warm_up()
        a = Sink("a")
        core.submit_rows(a, a.pending, items([1, 2], ["x", "x"]))
        await asyncio.sleep(0.01)
        assert h.calls == [["x"]]
        for rid in (1, 2):
            core.abandon_row(a.pending.pop(rid), a, rid)
        await asyncio.sleep(0.01)
        assert h.cancelled == 1
        await core.close()
        assert a.answers == {}

    run_virtual(main)


def test_handler_failures_reach_every_caller_of_the_item(run_virtual):
    async def main():
        async def handler(batch):
            if any(p["query"] == "crash" for p in batch):
                raise RuntimeError("backend down")
            return [ValueError("bad item") if p["query"] == "bad" else "ok" for p in batch]

        core = make_core(handler, window_ms=1, max_size=2)
        core.bind(asyncio.get_running_loop())
        await core.warm_up()
        a = Sink("a")
        core.submit_rows(a, a.pending, items([1, 2, 3], ["bad", "fine", "bad"]))
        core.submit_rows(a, a.pending, items([4, 5], ["crash", "other"]))
        await core.close()
        assert a.answers == {
            1: ("error", "HandlerError"),
            2: ("ok", "ok"),
            3: ("error", "HandlerError"),
            4: ("error", "HandlerError"),
            5: ("error", "HandlerError"),
        }
        assert core.stats.errors == 4 and core.stats.completed == 5

    run_virtual(main)


def test_a_request_of_the_general_path_takes_the_waiting_rows_over_first(run_virtual):
    async def main():
        h = Handler()
        core = make_core(h)
        loop = asyncio.get_running_loop()
        core.bind(loop)
        await core.warm_up()
        a = Sink("a")
        core.submit_rows(a, a.pending, items([1, 2, 3], ["x", "y", "X"]))
        # a request with a deadline takes the general path: the rows become records first
        rec = Request({"query": "z"}, 0, loop.time() + 5.0, a, 4, "z")
        a.pending[4] = rec
        core.submit(rec)
        assert all(type(v) is Request for v in a.pending.values())
        assert not core.lane_open  # until the general path has nothing waiting
        await core.close()
        assert h.calls == [["x", "y", "z"]]
        assert a.answers == {1: ("ok", "X"), 2: ("ok", "Y"), 3: ("ok", "X"), 4: ("ok", "Z")}
        st = core.stats
        assert (st.total_requests, st.unique_requests, st.duplicates) == (4, 3, 1)

    run_virtual(main)


def test_changing_the_strategy_hands_the_rows_over(run_virtual):
    async def main():
        h = Handler()
        core = make_core(h)
        core.bind(asyncio.get_running_loop())
        await core.warm_up()
        a = Sink("a")
        core.submit_rows(a, a.pending, items([1, 2], ["x", "x"]))
        core.config.dedup_scope = "tenant"  # the lane does not serve scopes
        assert not core.lane_open
        assert all(type(v) is Request for v in a.pending.values())
        await core.close()
        assert h.calls == [["x"]]
        assert a.answers == {1: ("ok", "X"), 2: ("ok", "X")}

    run_virtual(main)


# ------------------------------------------------------------- random traffic, both ways

TEXTS = ["alpha", "Alpha ", "beta", "gamma", "delta", "BETA", "eps"]


def _traffic(seed: int) -> list[tuple[float, str, Any]]:
    """Events at virtual instants: frames of plain items, a request with a deadline (the
    general path), callers leaving."""
    rng = random.Random(seed)
    t = 0.0
    out: list[tuple[float, str, Any]] = []
    rid = 0
    for _ in range(rng.randrange(5, 30)):
        # (gaps that never add up to a window or a handler's time: no event of the test
        # meets a timer of the core at the same instant, where the loop's order would decide)
        t += rng.choice([0.0, 0.00037, 0.0023, 0.0071, 0.0213])
        kind = rng.random()
        sink = rng.randrange(3)
        if kind < 0.6:
            n = rng.randrange(1, 6)
            frame = [(rid + k, rng.choice(TEXTS)) for k in range(n)]
            rid += n
            out.append((t, "rows", (sink, frame)))
        elif kind < 0.75:  # with a deadline, some of which come before the answer
            n = rng.randrange(1, 4)
            frame = [(rid + k, rng.choice(TEXTS)) for k in range(n)]
            rid += n
            out.append((t, "timed", (sink, frame, rng.choice([0.0043, 0.0171, 1.0]))))
        elif kind < 0.85:
            out.append((t, "general", (sink, rid, rng.choice(TEXTS))))
            rid += 1
        else:
            out.append((t, "leave", (sink, rng.randrange(max(rid, 1)))))
    return out


async def _run(seed: int, lane: bool, options: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    h = Handler(delay=random.Random(seed).choice([0.0, 0.003, 0.01]))
    core = make_core(h, lane=lane, **options)
    core.bind(loop)
    await core.warm_up()
    sinks = [Sink(str(i)) for i in range(3)]
    start = loop.time()
    for t, kind, what in _traffic(seed):
        await asyncio.sleep(max(0.0, start + t - loop.time()))
        if kind == "rows":
            sink, frame = sinks[what[0]], what[1]
            rows = items([r for r, _ in frame], [q for _, q in frame])
            if lane and core.lane_open:
                assert core.submit_rows(sink, sink.pending, rows) == []
            else:  # (the engine's intake: records on the general path)
                recs = [Request(r[4], 0, None, sink, r[0], r[4]["query"]) for r in rows]
                for r in recs:
                    sink.pending[r.index] = r
                core.submit_many(recs)
        elif kind == "timed":
            sink, frame, timeout = sinks[what[0]], what[1], what[2]
            if lane and core.lane_open:  # (the engine's intake: rows carry deadlines too)
                dl = time.monotonic_ns() + int(timeout * 1e9)
                rows = [[r, 0, dl, -1, {"query": q}] for r, q in frame]
                assert core.submit_rows(sink, sink.pending, rows) == []
            else:
                recs = [
                    Request({"query": q}, 0, loop.time() + timeout, sink, r, q) for r, q in frame
                ]
                for r in recs:
                    sink.pending[r.index] = r
                core.submit_many(recs)
        elif kind == "general":
            sink, rid, q = sinks[what[0]], what[1], what[2]
            rec = Request({"query": q}, 0, loop.time() + 1.0, sink, rid, q)
            sink.pending[rid] = rec
            core.submit(rec)
        else:
            sink, rid = sinks[what[0]], what[1]
            holder = sink.pending.pop(rid, None)
            if type(holder) is LaneGroup:
                core.abandon_row(holder, sink, rid)
            elif holder is not None:
                core.abandon(holder)
    await core.close()
    st = core.stats
    return {
        "calls": h.calls,
        "answers": [s.answers for s in sinks],
        "left": [s.pending for s in sinks],
        "stats": (
            st.total_requests,
            st.unique_requests,
            st.duplicates,
            st.inflight_coalesced,
            st.completed,
            st.dropped,
            st.total_batches,
            st.timeouts,
            st.errors,
        ),
    }


@pytest.mark.parametrize(
    "options",
    [
        {"window_ms": 1, "max_size": 4},
        {"window_ms": 5, "max_size": 32, "normalize": False},
        {"enable_dedup": False, "window_ms": 2, "max_size": 3},
    ],
    ids=["exact", "exact-raw", "no-dedup"],
)
def test_random_traffic_gets_what_the_general_path_gives(run_virtual, options):
    for seed in range(150):
        want = run_virtual(_run, seed, False, options)
        got = run_virtual(_run, seed, True, options)
        assert got == want, f"seed {seed}"
        assert not any(got["left"]), f"seed {seed}: callers left without an answer"


async def test_embedded_callers_moved_off_the_lane_can_still_leave():
    # a single call takes the row lane; a change of options hands its row over to the general
    # path (a record), and the caller who then gives up must leave from there
    from stratabatch import BatchProcessor

    h = Handler()
    b = BatchProcessor(h, dedup_strategy="exact", window_ms=50)
    await b.warm_up()
    calls = [asyncio.create_task(b.process({"query": q})) for q in ("x", "y", "x")]
    await asyncio.sleep(0.005)
    core = b._core
    assert len(core._lanes.lane.raw) + len(core._lanes.lane.waiting) >= 2
    b.dedup_scope = "tenant"  # the lane does not serve scopes: its rows become records
    assert core._lanes.lane is None and core._raw
    calls[1].cancel()  # "y" leaves from the general path
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert results[0] == results[2] == "X"
    assert isinstance(results[1], asyncio.CancelledError)
    await b.close()
    assert h.calls == [["x"]]
    st = b.get_stats()
    assert (st.total_requests, st.unique_requests, st.duplicates) == (3, 1, 1)
    assert not b._moved and core.waiting == 0


def test_submit_one_queues_nothing_when_the_lane_is_closed_or_the_queue_is_full(run_virtual):
    # the embedded single call asks the core once: it queues the request when it can go now,
    # and else leaves everything as it was (the caller then waits for room, or takes the
    # general path)
    async def main():
        h = Handler()
        core = make_core(h, max_queue=2, on_full="wait")
        loop = asyncio.get_running_loop()
        core.bind(loop)
        await core.warm_up()
        sinks = [Sink(n) for n in "abc"]  # (a sink of one caller each, id 0)
        for s in sinks[:2]:
            s.pending[0] = core.submit_one(s, {"query": s.name})
            assert type(s.pending[0]) is LaneGroup
        assert core.submit_one(sinks[2], {"query": "c"}) is None  # full: max_queue=2
        assert core.waiting == 2 and core.stats.total_requests == 2
        # the general path has work: the lane is closed, nothing is queued either
        core.config.max_queue = 10
        z = Sink("z")
        rec = Request({"query": "z"}, 0, loop.time() + 5.0, z, 1, "z")
        z.pending[1] = rec
        core.submit(rec)
        assert core.submit_one(sinks[2], {"query": "c"}) is None
        assert core.waiting == 3 and core.stats.total_requests == 3
        await core.close()
        assert [s.answers for s in sinks] == [{0: ("ok", "A")}, {0: ("ok", "B")}, {}]
        assert h.calls == [["a", "b", "z"]]

    run_virtual(main)


async def test_a_single_call_without_dedup_waits_at_once_and_can_leave():
    # without dedup a single call's row waits at once (no grouping pass to wait for); a caller
    # who leaves before its batch frees its room and is never sent
    from stratabatch import BatchProcessor

    h = Handler()
    b = BatchProcessor(h, enable_dedup=False, window_ms=50)
    calls = [asyncio.create_task(b.process({"query": q})) for q in ("x", "y", "x")]
    await asyncio.sleep(0.005)
    core = b._core
    assert len(core._lanes.lane.waiting) == 3 and not core._lanes.lane.raw
    calls[1].cancel()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert results[0] == results[2] == "X"
    assert isinstance(results[1], asyncio.CancelledError)
    await b.close()
    assert h.calls == [["x", "x"]]
    st = b.get_stats()
    assert (st.total_requests, st.dropped, core.waiting) == (3, 1, 0)


async def test_a_caller_cancelled_as_its_batch_is_answered_leaves_the_others_their_results():
    # the caller's future is cancelled in the very step the batch is answered (its caller has
    # not left yet): it gets its cancellation, the others their results, nothing is logged
    from stratabatch import BatchProcessor

    calls: list[asyncio.Task[Any]] = []
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))

    async def handler(batch: list[dict[str, Any]]) -> list[Any]:
        calls[0].cancel()  # (its future is cancelled now; the task resumes later)
        return [p["query"].upper() for p in batch]

    for dedup in (False, True):
        b = BatchProcessor(handler, enable_dedup=dedup, window_ms=5)
        calls[:] = [asyncio.create_task(b.process({"query": q})) for q in ("a", "b", "c")]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(results[0], asyncio.CancelledError)
        assert results[1:] == ["B", "C"]
        await b.close()
        st = b.get_stats()
        assert st.total_requests == 3 and b._core.waiting == 0
    assert not errors


async def test_a_single_call_of_the_general_path_that_joined_lane_work_can_still_leave():
    # "x" runs in the row lane; a list call closes the lane (its records take the general
    # path), so the next single "x" is a record, which joins the lane's running "x" as a row.
    # When both callers of "x" give up, that running call is cancelled: the record's caller
    # left from where the core moved it (the lane's row), not from the record it had
    from stratabatch import BatchProcessor

    gate = asyncio.Event()
    seen: list[str] = []

    async def handler(reqs):
        try:
            await gate.wait()
        except asyncio.CancelledError:
            seen.append("cancelled " + ",".join(r["query"] for r in reqs))
            raise
        return [r["query"].upper() for r in reqs]

    b = BatchProcessor(
        handler, dedup_strategy="exact", window_ms=1, max_size=1, max_inflight_batches=1
    )
    await b.warm_up()
    first = asyncio.create_task(b.process({"query": "x"}))
    await asyncio.sleep(0.02)  # "x" runs, in the lane, in the only handler slot
    core = b._core
    assert core.inflight_batches == 1 and core.lane_open
    listed = asyncio.create_task(b.process([{"query": "y"}, {"query": "z"}]))
    await asyncio.sleep(0.01)
    assert not core.lane_open  # (the list's records wait on the general path)
    second = asyncio.create_task(b.process({"query": "x"}))
    await asyncio.sleep(0.02)  # a pass: the record of "x" joined the running "x"
    assert not core.lane_open and b._moved  # its caller is held by the lane's group now
    second.cancel()
    first.cancel()
    await asyncio.sleep(0.02)
    assert "cancelled x" in seen  # nobody waits for "x" any more: its call was cancelled
    gate.set()
    assert await listed == ["Y", "Z"]
    for t in (first, second):
        with pytest.raises(asyncio.CancelledError):
            await t
    await b.close()
    assert not b._moved and core.waiting == 0


def test_an_arrival_filed_by_add_is_the_group_the_constructor_makes():
    """Lane.add builds its groups inline (no call to __init__ per request): each must hold
    what ``LaneGroup(...)`` would, a deadline's loop time included."""
    from stratabatch.lane import UNGROUPED, Lane

    lane = Lane(BatchConfig(dedup_strategy="exact"), None, None, None)  # type: ignore[arg-type]
    lane.tick_s = 0.5
    lane.arm = lambda tick: None
    sink = object()
    items: list[list[Any]] = [[1, 0, 0, -1, {"query": "a"}], [2, 3, 2_000_000_000, -1, {"q": 1}]]
    assert lane.add(sink, {}, items, 7.0, 10.0) == (2, [])
    want = [
        LaneGroup({"query": "a"}, UNGROUPED, sink, 1, 7.0, 0, None),
        LaneGroup({"q": 1}, UNGROUPED, sink, 2, 7.0, 3, 12.0),
    ]
    for got, w in zip(lane.raw, want, strict=True):
        assert type(got) is LaneGroup
        assert {k: getattr(got, k) for k in LaneGroup.__slots__} == {
            k: getattr(w, k) for k in LaneGroup.__slots__
        }


def test_a_text_frames_arrivals_are_the_groups_its_plain_items_make():
    """Lane.add_texts (a text frame's columns) files the groups Lane.add files for the plain
    items the frame stands for, and returns a pending id the same way."""
    from stratabatch.lane import Lane

    sink = object()
    pending: dict[int, Any] = {3: "taken"}
    by_rows = Lane(BatchConfig(dedup_strategy="exact"), None, None, None)  # type: ignore[arg-type]
    by_cols = Lane(BatchConfig(dedup_strategy="exact"), None, None, None)  # type: ignore[arg-type]
    ids, texts = [1, 3, 2], ["a", "b", "c"]
    rows: list[list[Any]] = [[i, 0, 0, -1, {"query": t}] for i, t in zip(ids, texts, strict=True)]
    assert by_rows.add(sink, dict(pending), rows, 7.0, 10.0) == (2, [3])
    assert by_cols.add_texts(sink, dict(pending), "query", ids, texts, 7.0) == (2, [3])
    assert len(by_rows.raw) == len(by_cols.raw) == 2
    for a, b in zip(by_rows.raw, by_cols.raw, strict=True):
        assert {k: getattr(a, k) for k in LaneGroup.__slots__} == {
            k: getattr(b, k) for k in LaneGroup.__slots__
        }


def test_a_text_frames_deadline_column_ticks_its_callers_as_plain_items_do():
    """Lane.add_texts, then Lane.add_deadlines with the frame's deadline column (0: none),
    files the groups and the ticks Lane.add files for the plain items with those deadlines; a
    repeated id's caller (already pending) is left as it was."""
    from stratabatch.lane import UNGROUPED, Lane

    sink = object()
    lanes = []
    for _ in range(2):
        lane = Lane(BatchConfig(dedup_strategy="exact"), None, None, None)  # type: ignore[arg-type]
        lane.tick_s = 0.5
        lane.arm = lambda tick: None
        lanes.append(lane)
    by_rows, by_cols = lanes
    ids, texts, dls = [1, 3, 2, 4], ["a", "b", "c", "d"], [2_000_000_000, 5, 0, 3_100_000_000]
    rows: list[list[Any]] = [
        [i, 0, d, -1, {"query": t}] for i, t, d in zip(ids, texts, dls, strict=True)
    ]
    old = LaneGroup({"query": "x"}, UNGROUPED, sink, 3, 1.0, 0, None)
    rows_pending: dict[int, Any] = {3: old}
    cols_pending: dict[int, Any] = {3: old}
    assert by_rows.add(sink, rows_pending, rows, 7.0, 10.0) == (3, [3])
    assert by_cols.add_texts(sink, cols_pending, "query", ids, texts, 7.0) == (3, [3])
    by_cols.add_deadlines(sink, cols_pending, ids, dls, 10.0, [3])
    assert old.deadline is None and cols_pending[3] is old
    for a, b in zip(by_rows.raw, by_cols.raw, strict=True):
        assert {k: getattr(a, k) for k in LaneGroup.__slots__} == {
            k: getattr(b, k) for k in LaneGroup.__slots__
        }
    assert [g.deadline for g in by_cols.raw] == [12.0, None, 13.1]
    assert {k: [(key, d) for key, (_, d) in v.items()] for k, v in by_cols.ticks.items()} == {
        k: [(key, d) for key, (_, d) in v.items()] for k, v in by_rows.ticks.items()
    }
    assert sorted(by_cols.ticks) == [24, 27]


def test_the_lane_keys_a_text_as_normalize_key_does_whatever_its_whitespace_and_case():
    """The lane's pass keys ASCII texts without calling normalize_key (a text with nothing
    to collapse keeps its lowercased self): each key must still be normalize_key's, for
    spaces, tabs, the other ASCII whitespace, control characters, empty and non-ASCII texts."""
    from stratabatch.dedup import normalize_key
    from stratabatch.lane import Lane

    texts = [
        "reset my password",
        "Reset  My Password",
        " reset my password",
        "reset my password ",
        "reset\tmy\npassword",
        "reset\x1cmy\x1fpassword",
        "reset\x0bmy\x0cpassword\r",
        "a\x7fb",
        "a\x00b",
        "",
        " ",
        "123 456",
        "Straße  ÉTÉ",
        "x\u00a0y",
    ]
    rng = random.Random(7)
    chars = "aZ 1-\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x7f\x00"
    texts += ["".join(rng.choice(chars) for _ in range(rng.randrange(8))) for _ in range(400)]
    lane = Lane(BatchConfig(dedup_strategy="exact"), None, None, None)  # type: ignore[arg-type]
    lane.repoint = lambda sink, rid, holder: None
    ids = list(range(len(texts)))
    assert lane.add_texts(object(), {}, "query", ids, texts, 1.0) == (len(texts), [])
    lane.group()
    assert set(lane.index) == {normalize_key(t) for t in texts}
    for g in lane.waiting:
        assert g.norm == normalize_key(g.payload["query"])
        for i in range(0, len(g.more or ()), 6):
            assert normalize_key(g.more[i + 3]["query"]) == g.norm
