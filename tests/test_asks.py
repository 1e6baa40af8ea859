"""Asks alone: a client's socket asks answered in order, a turn at a time, with stand-in callbacks
(the engine's conversation end to end is tests/e2e/test_hostile_control.py)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from stratabatch.asks import ASKS_PER_TURN, MAX_ERROR_CHARS, MAX_WAITING_ASKS, Asks
from stratabatch.wire import MessageBuffer, pack_message


class FakeClient:
    """What Asks reads of a client: its socket, its message buffer, whether it was dropped."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rbuf = MessageBuffer()
        self.closed = False


class Host:
    """The engine's side: callbacks that count their calls, a client on a socket pair."""

    def __init__(self) -> None:
        self.snapshots = 0
        self.scopes: list[Any] = []
        self.dropped: list[str] = []
        self.asks = Asks(self.stats, self.forget, self.drop)
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        self.peer = theirs
        self.client: Any = FakeClient(ours)

    def stats(self) -> dict[str, Any]:
        self.snapshots += 1
        return {"stats": {"n": self.snapshots}, "clients": 1}

    def forget(self, scope: Any) -> int:
        self.scopes.append(scope)
        if scope == "bad":
            raise TypeError("x" * (2 * MAX_ERROR_CHARS))
        return 3

    def drop(self, client: Any, reason: str) -> None:
        client.closed = True
        self.dropped.append(reason)
        self.asks.drop(client)

    def answers(self) -> list[dict[str, Any]]:
        """Every answer the peer can read now."""
        self.peer.setblocking(False)
        data = b""
        while True:
            try:
                chunk = self.peer.recv(1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
        return MessageBuffer().feed(data)


@pytest.fixture
def host() -> Iterator[Host]:
    h = Host()
    yield h
    h.client.sock.close()
    h.peer.close()


async def test_a_turn_answers_asks_per_turn_in_order_with_one_snapshot(host: Host) -> None:
    host.asks.start(asyncio.get_running_loop())
    n = ASKS_PER_TURN + 8
    host.asks.feed(host.client, b"".join(pack_message({"op": "stats", "seq": i}) for i in range(n)))
    first = host.answers()
    assert [a["seq"] for a in first] == list(range(ASKS_PER_TURN))
    assert host.snapshots == 1 and all(a["stats"] == {"n": 1} for a in first)
    await asyncio.sleep(0)  # the next turn
    rest = host.answers()
    assert [a["seq"] for a in rest] == list(range(ASKS_PER_TURN, n))
    assert host.snapshots == 2
    assert rest[0] == {"op": "stats", "seq": ASKS_PER_TURN, "stats": {"n": 2}, "clients": 1}
    assert host.dropped == []


async def test_forget_and_refusals_keep_the_connection(host: Host) -> None:
    host.asks.start(asyncio.get_running_loop())
    body = msgpack.packb({"op": "forget", "seq": 9, "scope": {1: "a"}}, use_bin_type=True)
    asks = [
        pack_message({"op": "forget", "seq": 1, "scope": None}),
        pack_message({"op": "forget", "seq": 2, "scope": "bad"}),
        pack_message({"op": "forget", "seq": 3}),
        pack_message({"op": "hello", "seq": 4}),
        len(body).to_bytes(4, "little") + body,  # an int key: does not decode as a message
    ]
    host.asks.feed(host.client, b"".join(asks))
    a = host.answers()
    assert a[0] == {"op": "forget", "seq": 1, "dropped": 3}
    assert a[1]["seq"] == 2 and a[1]["error"][0] == "TypeError"
    assert len(a[1]["error"][1]) == MAX_ERROR_CHARS and a[1]["error"][1].endswith("...")
    assert a[2]["seq"] == 3 and a[2]["error"][0] == "TypeError"
    assert a[3]["op"] == "hello" and a[3]["error"][0] == "InvalidRequestError"
    assert a[4]["op"] == "forget" and a[4]["seq"] == 9 and "error" in a[4]
    assert host.scopes == [None, "bad"] and host.dropped == []


async def test_too_many_asks_waiting_drops_the_client(host: Host) -> None:
    host.asks.start(asyncio.get_running_loop())
    flood = pack_message({"op": "stats", "seq": 0}) * (MAX_WAITING_ASKS + 1)
    host.asks.feed(host.client, flood)
    assert host.dropped == [f"over {MAX_WAITING_ASKS} socket asks waiting"]
    assert host.snapshots == 0 and host.answers() == []
