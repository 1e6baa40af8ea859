"""How the engine process sleeps between passes (stratabatch.pacing.Pacer.sleep).

With a look of the core due soon (a window about to end), the engine sleeps deaf: the request
rings' asleep flags stay down, so clients push without ringing its doorbell, and the core's
look reads the rings first (``Core.on_look``). Otherwise it raises every flag and sleeps on the
doorbell. Asserted here on fake rings: the decision, and that a deaf look reads the rings.
The requests themselves: every engine test sends through these sleeps (tests/e2e/).
"""

from __future__ import annotations

import asyncio
from collections import deque

import pytest

from stratabatch.config import BatchConfig
from stratabatch.server import Engine
from tests.conftest import run_name


async def noop(reqs):
    return [None] * len(reqs)


class FakeRing:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def consumer_sleep_check(self) -> bool:
        self.calls.append("asleep")
        return True

    def consumer_awake(self) -> None:
        self.calls.append("awake")


class FakeClient:
    def __init__(self) -> None:
        self.closed = False
        self.requests = FakeRing()
        self.responses = None
        self.frames: list[bytes] = []
        self.inbox: deque = deque()


@pytest.fixture
def engine():
    loop = asyncio.new_event_loop()
    eng = Engine(noop, BatchConfig(window_ms=1, dedup_strategy="exact"), name=run_name("deaf"))
    eng.core.bind(loop)
    eng._pacer.start(loop, None)  # (no doorbell: these tests never ring it)
    clients = {0: FakeClient(), 1: FakeClient()}
    eng._clients.clear()  # the table every component of the engine reads
    eng._clients.update(clients)
    yield eng, loop, list(clients.values())
    loop.close()


@pytest.mark.parametrize(
    ("look_in_s", "deaf"),
    [(0.001, True), (0.002, True), (0.010, False), (None, False)],
)
def test_the_engine_sleeps_deaf_only_when_the_core_looks_again_soon(engine, look_in_s, deaf):
    eng, loop, clients = engine
    eng.core._timer_at = None if look_in_s is None else loop.time() + look_in_s
    eng._pacer.sleep()
    assert eng._pacer.deaf is deaf
    want = ["awake"] if deaf else ["asleep"]  # flags down (no rings) or up (ring me)
    assert [c.requests.calls for c in clients] == [want, want]


def test_a_stopping_engine_never_sleeps_deaf(engine):
    eng, loop, clients = engine
    eng.core._timer_at = loop.time() + 0.001
    eng._intake.close()  # what the shutdown does first
    eng._pacer.sleep()
    assert not eng._pacer.deaf and clients[0].requests.calls == ["asleep"]


def test_the_core_look_reads_the_rings_of_a_deaf_engine_then_it_decides_again(engine):
    eng, loop, _ = engine
    intakes: list[int] = []
    eng._intake.take = lambda: intakes.append(1) or 0  # type: ignore[method-assign]
    look = eng.core.on_look  # the engine's pacer, hooked into the core
    look()  # awake: the doorbell brings arrivals, nothing to read here
    assert intakes == [] and not eng._pacer.scheduled
    eng._pacer.deaf = True
    look()
    assert intakes == [1] and not eng._pacer.deaf and eng._pacer.scheduled


def test_a_bug_met_taking_one_clients_requests_in_drops_that_client_not_the_pass(engine, caplog):
    """A bug of ours met while one client's requests are taken in: that client is dropped
    (its callers hear the engine is gone) and logged as an internal error, and the pass goes
    on to the others and ends as any pass does: no exception left to the loop, which would
    leave the rings' flags down and the engine deaf to every client."""
    eng, loop, (bad, good) = engine
    for c, pid in ((bad, 101), (good, 202)):
        c.pid = pid
        c.outbox = c.ok_ids = None
        c.requests.empty = lambda: False  # type: ignore[attr-defined]
    taken: list[int] = []

    def take_rows(client, budget):
        if client is bad:
            raise KeyError("a bug")
        taken.append(client.pid)
        client.requests.empty = lambda: True
        return 3

    dropped: list[tuple[int, str]] = []
    eng._intake._take_rows = take_rows  # type: ignore[method-assign]
    eng._intake._drop = lambda c, why: dropped.append((c.pid, why))
    with caplog.at_level("ERROR", logger="stratabatch.engine"):
        assert eng._intake.take() == 3
    assert taken == [202]
    assert dropped == [(101, "internal error taking its requests in: KeyError('a bug')")]
    assert "internal error taking in the requests of client pid 101" in caplog.text


def test_a_bug_met_writing_one_clients_answers_drops_that_client_not_the_pass(engine, caplog):
    """The same for the way out: a bug of ours met while one client's answers are encoded
    drops that client (logged), and the other client's answers are still written."""
    eng, loop, (bad, good) = engine
    written: list[list[bytes]] = []

    class Ring:
        def push_many(self, frames):
            written.append(list(frames))
            return len(frames)

    for c, pid in ((bad, 101), (good, 202)):
        c.pid = pid
        c.responses = Ring()
        c.outbox, c.ok_ids, c.ok_values = [], [7], ["answer"]
    bad.ok_values = None  # what a bug of ours could leave: zip() over None raises TypeError
    dropped: list[tuple[int, str]] = []
    eng._outbox.start(loop, eng.core, lambda: None, lambda c, why: dropped.append((c.pid, why)))
    with caplog.at_level("ERROR", logger="stratabatch.engine"):
        eng._outbox.flush()  # no exception escapes the pass
    assert [pid for pid, _ in dropped] == [101]
    assert dropped[0][1].startswith("internal error writing its answers: TypeError")
    assert "internal error writing the answers of client pid 101" in caplog.text
    assert len(written) == 1 and good.ok_ids == [] and not good.frames
