"""The engine's outbox: a client's answers become as few frames as the limits allow."""

from __future__ import annotations

from typing import Any

from stratabatch.ipc.frames import STATUS_OK, FrameDecoder, FrameEncoder, FrameLimits, Response
from stratabatch.outbox import Outbox
from stratabatch.slots import Client


class _Ring:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def push_many(self, frames: list[bytes]) -> int:
        self.frames += frames
        return len(frames)


def _client() -> tuple[Client, _Ring]:
    client = Client(0, 1, None)  # type: ignore[arg-type]  # (no socket: nothing is sent)
    ring = _Ring()
    client.responses = ring  # type: ignore[assignment]
    return client, ring


def _answers(ring: _Ring) -> dict[int, Any]:
    dec = FrameDecoder()
    return {r.id: r for frame in ring.frames for r in dec.responses(frame)}


def test_ok_answers_leave_in_one_answers_frame_and_an_error_beside_them() -> None:
    client, ring = _client()
    box = Outbox({0: client}, FrameEncoder())
    client.ok_ids += [1, 2, 3]
    client.ok_values += ["a", {"k": 1}, [1, 2]]
    client.outbox.append((4, 1, ("HandlerError", "boom", {})))
    box.flush_client(client)
    assert ring.frames[0][:3] == b"\x93\xa2o"  # ["ok", ids, values]: one frame for the three
    got = _answers(ring)
    assert [got[i] for i in (1, 2, 3)] == [
        Response(1, STATUS_OK, "a", None),
        Response(2, STATUS_OK, {"k": 1}, None),
        Response(3, STATUS_OK, [1, 2], None),
    ]
    assert got[4].value.type_name == "HandlerError"
    assert not client.ok_ids and not client.ok_values and not client.outbox


def test_an_ok_answer_the_frame_cannot_carry_gets_its_own_error_and_the_rest_arrive() -> None:
    """A value that is not plain data, or over max_result_bytes: that caller gets an error
    naming why, every other caller its value (nothing is lost, nothing answered twice)."""
    client, ring = _client()
    box = Outbox({0: client}, FrameEncoder(FrameLimits(max_result_bytes=64)))
    client.ok_ids += [1, 2, 3]
    client.ok_values += ["fine", object(), "x" * 100]
    box.flush_client(client)
    got = _answers(ring)
    assert sorted(got) == [1, 2, 3]
    assert got[1] == Response(1, STATUS_OK, "fine", None)
    assert got[2].value.type_name == "HandlerError" and "cannot be sent" in got[2].value.message
    assert got[3].value.type_name == "HandlerError" and "max_result_bytes" in got[3].value.message
    assert client.counts[1] == 2 and not client.ok_ids and not client.outbox


def test_a_lane_twin_carries_its_merge_similarity_as_a_record_would() -> None:
    """The row lane's fan-out (``lane_deliver``): the group's own caller a plain answer, a
    near twin its similarity from ``LaneGroup.sims``, an exact twin 1.0; the leader named for
    the client that sent it, -1 for another client."""
    from stratabatch.lane import LaneGroup

    class _Loop:
        def call_soon(self, fn: Any) -> None:
            pass

    a, ring_a = _client()
    b, ring_b = _client()
    box = Outbox({0: a, 1: b}, FrameEncoder())
    box.start(_Loop(), None, lambda: None)  # type: ignore[arg-type]
    g = LaneGroup({"query": "q"}, "q", a, 10, 0.0, 0, None)
    g.more = [a, 11, 0.0, {"query": "q!"}, 0, None, b, 12, 0.0, {"query": "Q"}, 0, None]
    g.sims = {(a, 11): 0.93}
    for client, rid in ((a, 10), (a, 11), (b, 12)):
        client.pending[rid] = g
    assert box.lane_deliver([g], ["v"]) == [0.0, 0.0, 0.0]
    box.flush()
    got = {**_answers(ring_a), **_answers(ring_b)}
    assert got[10] == Response(10, STATUS_OK, "v", None)
    assert got[11] == Response(11, STATUS_OK, "v", {"leader": 10, "similarity": 0.93})
    assert got[12] == Response(12, STATUS_OK, "v", {"leader": -1, "similarity": 1.0})
    assert not a.pending and not b.pending
