"""The engine's socket messages and the one exception <-> response mapping."""

from __future__ import annotations

import pytest

from stratabatch import (
    BatchTimeoutError,
    EngineUnavailableError,
    HandlerError,
    InvalidRequestError,
    QueueFullError,
    RequestTooLargeError,
    StratabatchError,
)
from stratabatch.ipc.frames import ErrorInfo, FrameDecoder, FrameEncoder
from stratabatch.wire import (
    STATUS_ERROR,
    STATUS_TIMEOUT,
    BrokenMessage,
    MessageBuffer,
    echo_seq,
    error_from_wire,
    error_to_wire,
    pack_message,
    socket_path,
)


@pytest.mark.parametrize(
    "exc",
    [
        QueueFullError("full"),
        InvalidRequestError("bad"),
        RequestTooLargeError("big"),
        EngineUnavailableError("gone"),
        StratabatchError("plain"),
    ],
)
def test_our_errors_cross_the_wire_by_type(exc):
    status, value = error_to_wire(exc)
    enc, dec = FrameEncoder(), FrameDecoder()
    r = dec.response(enc.response(7, status, value))
    back = error_from_wire(r.status, r.value)
    assert type(back) is type(exc) and str(back) == str(exc)


def test_handler_error_keeps_exc_type_and_message():
    err = HandlerError.from_exception(KeyError("boom"), "the handler raised")
    status, value = error_to_wire(err)
    assert status == STATUS_ERROR and value[0] == "HandlerError"
    r = FrameDecoder().response(FrameEncoder().response(1, status, value))
    assert isinstance(r.value, ErrorInfo)
    back = error_from_wire(r.status, r.value)
    assert isinstance(back, HandlerError)
    assert (back.exc_type, back.exc_message) == ("KeyError", "'boom'")
    assert str(back) == str(err)


def test_timeouts_travel_as_timeout_status_and_others_as_stratabatch_error():
    assert error_to_wire(BatchTimeoutError("late")) == (STATUS_TIMEOUT, "late")
    assert isinstance(error_from_wire(STATUS_TIMEOUT, "late"), BatchTimeoutError)
    status, value = error_to_wire(ZeroDivisionError("x"))
    back = error_from_wire(status, value)
    assert type(back) is StratabatchError and "ZeroDivisionError" in str(back)
    unknown = error_from_wire(STATUS_ERROR, ("SomethingNew", "msg", {}))
    assert type(unknown) is StratabatchError and "SomethingNew: msg" in str(unknown)


def test_message_buffer_splits_messages_and_refuses_garbage():
    buf = MessageBuffer()
    data = pack_message({"op": "a"}) + pack_message({"op": "b", "n": 1})
    assert buf.feed(data[:3]) == []
    assert buf.feed(data[3:]) == [{"op": "a"}, {"op": "b", "n": 1}]
    with pytest.raises(ValueError, match="over"):
        MessageBuffer().feed(b"\xff\xff\xff\x7f")
    with pytest.raises(ValueError, match="not msgpack"):
        MessageBuffer().feed(b"\x01\x00\x00\x00\xc1")
    with pytest.raises(ValueError, match="must be a map"):
        MessageBuffer().feed(pack_message([1, 2]))  # type: ignore[arg-type]


def test_message_buffer_feed_asks_keeps_the_stream_past_a_broken_message():
    """The engine's side: a message whose length is within the limit but whose body is not a
    msgpack map of str keys comes back as a BrokenMessage with the op and seq that read, and
    the messages after it still split; only a length over the limit raises."""
    import msgpack

    def framed(body: bytes) -> bytes:
        return len(body).to_bytes(4, "little") + body

    bodies = [
        msgpack.packb({"op": "forget", "seq": 3, "scope": {1: "a"}}),
        msgpack.packb({"scope": {"m": [[1], {2: 3}]}, "op": "x", "seq": "s"}),
        msgpack.packb({"op": "o" * 100, "seq": {"a": 1}, 5: 0}),
        msgpack.packb([1, 2]),
        b"",
        msgpack.packb({"op": "stats", "seq": 1}),
    ]
    got = MessageBuffer().feed_asks(b"".join(map(framed, bodies)))
    assert [(m.op, m.seq) for m in got[:5]] == [
        ("forget", 3),
        ("x", "s"),
        (None, None),
        (None, None),
        (None, None),
    ]
    assert all(type(m) is BrokenMessage and "socket message" in m.why for m in got[:5])
    assert got[5] == {"op": "stats", "seq": 1}
    with pytest.raises(ValueError, match="over"):
        MessageBuffer().feed_asks(b"\xff\xff\xff\x7f")
    assert [echo_seq(s) for s in (7, "s" * 64, "s" * 65, {"a": 1}, None, 1.5)] == [
        7,
        "s" * 64,
        None,
        None,
        None,
        None,
    ]


def test_socket_path_follows_xdg_runtime_dir(monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1234")
    assert socket_path("x") == "/run/user/1234/stratabatch/x.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    import os

    assert socket_path("x") == f"/tmp/stratabatch-{os.getuid()}/x.sock"
