"""Frames: round trips, every rejection, memory bounds, and a fuzzed decoder."""

from __future__ import annotations

import datetime
import enum
import random
import struct
import time
import tracemalloc

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratabatch.ipc.errors import FrameError, FrameTooLargeError, IpcError
from stratabatch.ipc.framelimits import int_size
from stratabatch.ipc.frames import (
    MAX_DEADLINE_NS,
    MAX_ID,
    MAX_PRIORITY,
    MAX_ROW,
    MIN_PRIORITY,
    NO_ROW,
    STATUS_ERROR,
    STATUS_OK,
    STATUS_TIMEOUT,
    ErrorInfo,
    FrameDecoder,
    FrameEncoder,
    FrameLimits,
    Request,
    RequestWithOptions,
    Response,
    encode_options,
    peek_frame_id,
)

ENC = FrameEncoder()
DEC = FrameDecoder()


def packb(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def nested(depth: int, leaf: object = 1) -> object:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


# ---------------------------------------------------------------- round trips


PAYLOADS = [
    {"query": "hello"},
    {"query": "héllo wörld ✓ 日本", "model": "m", "temperature": 0.25, "n": 3, "stream": False},
    {"messages": [{"role": "user", "content": "hi"}], "params": {"top_p": None}},
    [1, "two", 3.0, None, True, b"\x00\xff"],
    "just a string",
    12345,
    None,
    {b"bytes-key": b"\xdc" * 40},
    {"big": 2**64 - 1, "small": -(2**63), "f": 1e308},
    {},
    [],
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_request_round_trip(payload):
    frame = ENC.request(7, 3, 123_456_789, 42, payload)
    req = DEC.request(frame)
    assert req == Request(7, 3, 123_456_789, 42, payload)
    assert isinstance(req, Request)
    assert req.payload == payload


@pytest.mark.parametrize(
    ("rid", "priority", "deadline", "row"),
    [
        (0, 0, 0, NO_ROW),
        (MAX_ID, MAX_PRIORITY, MAX_DEADLINE_NS, MAX_ROW),
        (1, MIN_PRIORITY, 1, 0),
    ],
)
def test_request_field_bounds_round_trip(rid, priority, deadline, row):
    req = DEC.request(ENC.request(rid, priority, deadline, row, {"q": "x"}))
    assert (req.id, req.priority, req.deadline_ns, req.arena_row) == (rid, priority, deadline, row)


def test_request_accepts_index_types_and_rejects_bool():
    frame = ENC.request(np.int64(5), np.int32(-2), np.uint64(9), np.int64(3), "p")
    assert DEC.request(frame) == Request(5, -2, 9, 3, "p")
    with pytest.raises(FrameError, match="request id must be an integer, got bool"):
        ENC.request(True, 0, 0, -1, "p")


def test_decoder_accepts_bytearray_and_memoryview():
    frame = ENC.request(1, 0, 0, -1, {"q": "x"})
    assert DEC.request(bytearray(frame)).payload == {"q": "x"}
    assert DEC.request(memoryview(bytearray(frame))).id == 1


def test_response_round_trips():
    ok = DEC.response(ENC.ok(9, {"answer": [1, 2]}))
    assert ok == Response(9, STATUS_OK, {"answer": [1, 2]}, None)

    with_meta = DEC.response(ENC.ok(9, "r", meta={"similarity": 0.97, "merged_into": 4}))
    assert with_meta.meta == {"similarity": 0.97, "merged_into": 4}

    err = DEC.response(ENC.error(3, "HandlerError", "boom", {"exc_type": "KeyError"}))
    assert err.status == STATUS_ERROR
    assert err.value == ErrorInfo("HandlerError", "boom", {"exc_type": "KeyError"})
    assert isinstance(err.value, ErrorInfo)

    timeout = DEC.response(ENC.timeout(4, "deadline passed"))
    assert timeout == Response(4, STATUS_TIMEOUT, "deadline passed", None)

    plain = DEC.response(ENC.response(5, STATUS_ERROR, ("QueueFullError", "full")))
    assert plain.value == ErrorInfo("QueueFullError", "full", {})


def test_error_info_from_exception():
    info = ErrorInfo.from_exception(KeyError("missing"), {"attempt": 2})
    assert info == ErrorInfo("KeyError", "'missing'", {"attempt": 2})
    assert DEC.response(ENC.response(1, STATUS_ERROR, info)).value == info


def test_empty_meta_is_not_sent():
    assert ENC.ok(1, "x", meta={}) == ENC.ok(1, "x")
    assert len(msgpack.unpackb(ENC.ok(1, "x", meta={"a": 1}))) == 4


def test_batch_encode_matches_single():
    items = [(i, i % 3, 0, -1, {"q": f"text {i}"}) for i in range(50)]
    assert ENC.requests(items) == [ENC.request(*item) for item in items]
    answers = [(1, STATUS_OK, "a"), (2, STATUS_TIMEOUT, "late"), (3, STATUS_OK, 1, {"m": 1})]
    decoded = [DEC.response(f) for f in ENC.responses(answers)]
    assert [(r.id, r.status, r.value, r.meta) for r in decoded] == [
        (1, STATUS_OK, "a", None),
        (2, STATUS_TIMEOUT, "late", None),
        (3, STATUS_OK, 1, {"m": 1}),
    ]


def test_request_options_round_trip_single_and_batch():
    req = DEC.request(ENC.request(7, 0, 0, -1, {"q": "x"}, {"reuse": False}))
    assert type(req) is RequestWithOptions
    assert req == RequestWithOptions(7, 0, 0, -1, {"q": "x"}, {"reuse": False})
    assert ENC.request(7, 0, 0, -1, "p", {}) == ENC.request(7, 0, 0, -1, "p")  # (absent)
    opts = encode_options({"reuse": False})
    items = [
        (1, 0, 0, -1, packb({"q": "a"})),
        (2, 5, 9, -1, packb({"q": "b"}), opts),
        (3, 0, 0, -1, packb({"q": "c"})),
    ]
    frame = ENC.request_batch(items)
    got = DEC.requests(frame)
    assert [type(r) for r in got] == [Request, RequestWithOptions, Request]
    assert got[1] == RequestWithOptions(2, 5, 9, -1, {"q": "b"}, {"reuse": False})
    assert got[0] == Request(1, 0, 0, -1, {"q": "a"})
    rows, plain = DEC.request_rows(frame)
    assert not plain and type(rows[1]) is RequestWithOptions
    one, plain = DEC.request_rows(packb([4, 0, 0, -1, {"q": "d"}, {"reuse": False}]))
    assert not plain and type(one[0]) is RequestWithOptions
    # without options, the same bytes as a batch of five-item requests always were
    assert DEC.requests(ENC.request_batch([items[0], items[2]])) == [got[0], got[2]]


def test_request_options_are_checked_on_both_sides():
    for bad, match in (
        ({"reuse": 1}, "option 'reuse' must be a bool, got 1"),
        ({"reuse": None}, "option 'reuse' must be a bool"),
        ({"nope": True}, "unknown option 'nope'; known: reuse"),
    ):
        with pytest.raises(FrameError, match=match):
            encode_options(bad)
        with pytest.raises(FrameError, match=match):
            ENC.request(1, 0, 0, -1, "p", bad)
        decoded = DEC.requests(packb([[5, 0, 0, -1, "p"], [6, 0, 0, -1, "p", bad]]))
        assert type(decoded[0]) is Request and isinstance(decoded[1], FrameError)
        assert decoded[1].id == 6 and match.split(",")[0] in str(decoded[1])
    with pytest.raises(FrameError, match="6 fields|got 7 fields"):
        ENC.request_batch([(1, 0, 0, -1, b"\xa1p", b"\x80", b"")])
    with pytest.raises(FrameError, match="priority"):
        ENC.request_batch([(1, True, 0, -1, b"\xa1p", encode_options({"reuse": False}))])


def test_batch_request_encode_is_all_or_nothing_and_names_the_index():
    items = [(1, 0, 0, -1, "ok"), (2, 0, 0, -1, {"bad": object()}), (3, 0, 0, -1, "ok")]
    with pytest.raises(FrameError, match=r"^request 1: payload\['bad'\] is a builtins.object"):
        ENC.requests(items)
    with pytest.raises(FrameError, match="request 0: expected"):
        ENC.requests([(1, 0, 0)])
    small = FrameEncoder(FrameLimits(max_frame_bytes=64))
    with pytest.raises(FrameTooLargeError, match="request 1: request frame is") as info:
        small.requests([(1, 0, 0, -1, "x"), (2, 0, 0, -1, "y" * 100)])
    assert info.value.limit == 64


def test_batch_responses_substitute_an_error_for_an_unencodable_result():
    small = FrameEncoder(FrameLimits(max_frame_bytes=200))
    frames = small.responses(
        [(1, STATUS_OK, "fine"), (2, STATUS_OK, {1, 2}), (3, STATUS_OK, "z" * 500)]
    )
    first, second, third = (FrameDecoder(small.limits).response(f) for f in frames)
    assert first == Response(1, STATUS_OK, "fine", None)
    assert second.status == STATUS_ERROR and second.id == 2
    assert second.value.type_name == "FrameError"
    assert "builtins.set" in second.value.message
    assert third.status == STATUS_ERROR and third.value.type_name == "FrameTooLargeError"
    with pytest.raises(FrameError, match=r"response 0 id must be in \[0, "):
        small.responses([(-1, STATUS_OK, {1})])


# ---------------------------------------------------------------- encoder rejections


class Color(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((-1, 0, 0, -1, "p"), r"request id must be in \[0, 9223372036854775807\], got -1"),
        ((MAX_ID + 1, 0, 0, -1, "p"), "request id must be in"),
        ((1.0, 0, 0, -1, "p"), "request id must be an integer, got float"),
        (("1", 0, 0, -1, "p"), "request id must be an integer, got str"),
        ((1, MAX_PRIORITY + 1, 0, -1, "p"), "priority must be in"),
        ((1, MIN_PRIORITY - 1, 0, -1, "p"), "priority must be in"),
        ((1, 0, -5, -1, "p"), r"deadline_ns must be in \[0, .*\], got -5"),
        ((1, 0, 0, -2, "p"), r"arena_row must be in \[-1, 2147483647\], got -2"),
        ((1, 0, 0, MAX_ROW + 1, "p"), "arena_row must be in"),
        ((1, 0, 0, -1, {"x": object()}), r"payload\['x'\] is a builtins.object"),
        ((1, 0, 0, -1, [1, {2, 3}]), r"payload\[1\] is a builtins.set"),
        ((1, 0, 0, -1, {1: "int key"}), "payload has a int key 1; map keys must be str or bytes"),
        ((1, 0, 0, -1, {"t": datetime.datetime(2024, 1, 1)}), "datetime.datetime"),
        ((1, 0, 0, -1, {"e": msgpack.ExtType(1, b"x")}), "ExtType"),
        ((1, 0, 0, -1, {"e": msgpack.Timestamp(1, 0)}), "Timestamp"),
        ((1, 0, 0, -1, {"v": np.float32(1.0)}), "numpy.float32"),
        ((1, 0, 0, -1, {"big": 2**64}), "not msgpack-serializable"),
        ((1, 0, 0, -1, nested(32)), "payload nests containers more than 31 levels deep"),
    ],
)
def test_encoder_rejects(args, match):
    with pytest.raises(FrameError, match=match):
        ENC.request(*args)


def test_encoder_accepts_subclasses_msgpack_packs():
    req = DEC.request(ENC.request(1, 0, 0, -1, {"c": Color.RED, "f": np.float64(0.5)}))
    assert req.payload == {"c": 1, "f": 0.5}


def test_encoder_and_decoder_agree_on_the_depth_limit():
    limits = FrameLimits(max_depth=8)
    enc, dec = FrameEncoder(limits), FrameDecoder(limits)
    deepest = nested(7)  # frame array (level 1) + 7 levels of payload = 8
    assert dec.request(enc.request(1, 0, 0, -1, deepest)).payload == deepest
    with pytest.raises(FrameError, match="max_depth=8"):
        enc.request(1, 0, 0, -1, nested(8))
    with pytest.raises(FrameError, match="max_depth=8"):
        dec.request(packb([1, 0, 0, -1, nested(8)]))


def test_encoder_too_large_and_length_limits():
    enc = FrameEncoder(FrameLimits(max_frame_bytes=100))
    with pytest.raises(
        FrameTooLargeError,
        match="request frame is 2\\d\\d bytes, over the frame limit of 100 bytes",
    ) as info:
        enc.request(1, 0, 0, -1, "x" * 200)
    assert (info.value.limit, isinstance(info.value, IpcError)) == (100, True)
    tight = FrameEncoder(
        FrameLimits(max_str_len=10, max_bin_len=10, max_array_len=10, max_map_len=10)
    )
    with pytest.raises(FrameError, match="payload is a str of 11 UTF-8 bytes"):
        tight.request(1, 0, 0, -1, "x" * 11)
    with pytest.raises(FrameError, match="is a str of 12 UTF-8 bytes"):
        tight.request(1, 0, 0, -1, {"k": "é" * 6})
    with pytest.raises(FrameError, match="11 bytes of binary"):
        tight.request(1, 0, 0, -1, [b"x" * 11])
    with pytest.raises(FrameError, match="array of 11 items"):
        tight.request(1, 0, 0, -1, list(range(11)))
    with pytest.raises(FrameError, match="map of 11 pairs"):
        tight.request(1, 0, 0, -1, {str(i): i for i in range(11)})
    assert tight.request(1, 0, 0, -1, ["x" * 10, b"y" * 10, list(range(10))])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: ENC.response(1, 3, "x"), r"status must be one of \[0, 1, 2\], got 3"),
        (lambda: ENC.response(1, True, "x"), "status must be one of"),
        (lambda: ENC.response(1, STATUS_ERROR, "just text"), "ErrorInfo"),
        (lambda: ENC.error(1, "", "m"), "type_name must be a str of 1-256"),
        (lambda: ENC.error(1, "X" * 257, "m"), "type_name must be a str of 1-256"),
        (lambda: ENC.error(1, "X", b"m"), "error message must be a str"),
        (lambda: ENC.error(1, "X", "m", {1: 2}), "error details keys must be str"),
        (lambda: ENC.response(1, STATUS_TIMEOUT, 5), "timeout response carries a str"),
        (lambda: ENC.ok(1, "x", meta={b"k": 1}), "response meta keys must be str"),
        (lambda: ENC.ok(1, "x", meta=[1]), "response meta must be a map"),
        (lambda: ENC.ok(-3, "x"), "response id must be in"),
    ],
)
def test_response_encoder_rejects(call, match):
    with pytest.raises(FrameError, match=match):
        call()


# ---------------------------------------------------------------- decoder rejections


def _request_like(*items: object) -> bytes:
    return packb(list(items))


DECODER_REJECTS = [
    ("", "empty request frame"),
    (b"\xc1", "invalid msgpack type byte"),
    (packb([1, 0, 0, -1, "p"]) + b"\x00", "trailing bytes"),
    (packb([1, 0, 0, -1, "payload"])[:-2], "incomplete input"),
    (packb({"id": 1}), r"must be an array of 5 items .* got dict"),
    (packb([1, 0, 0, -1]), "got an array of 4 items"),
    (packb([1, 0, 0, -1, "p", "extra"]), "request 1: options must be a map"),
    (packb([1, 0, 0, -1, "p", {}, "extra"]), "got an array of 7 items"),
    (packb("text"), "got str 'text'"),
    (_request_like(-1, 0, 0, -1, "p"), "request id must be an integer in"),
    (_request_like(True, 0, 0, -1, "p"), "got True"),
    (_request_like(1.0, 0, 0, -1, "p"), "got 1.0"),
    (_request_like("1", 0, 0, -1, "p"), "got '1'"),
    (_request_like(2**63, 0, 0, -1, "p"), "request id must be an integer"),
    (_request_like(1, 2**31, 0, -1, "p"), "request 1: priority must be an integer"),
    (_request_like(1, None, 0, -1, "p"), "priority must be an integer"),
    (_request_like(1, 0, -1, -1, "p"), "deadline_ns must be an integer in"),
    (_request_like(1, 0, 0, -2, "p"), "arena_row must be an integer in"),
    (_request_like(1, 0, 0, 2**31, "p"), "arena_row must be an integer in"),
    (_request_like(1, 0, 0, -1, {1: "x"}), "not allowed for map key"),
    (_request_like(1, 0, 0, -1, msgpack.Timestamp(1, 0)), "exceeds max_ext_len"),
    (_request_like(1, 0, 0, -1, msgpack.ExtType(3, b"abc")), "exceeds max_ext_len"),
    (b"\x95\x01\x00\x00\xff\xc7\x00\x05", "ext type 5 is not allowed"),
    (b"\x95\x01\x00\x00\xff\xa2\xff\xfe", "not valid UTF-8"),
    (b"\x95\x01\x00\x00\xff\xdd\xff\xff\xff\xff", "exceeds max_array_len"),
    (b"\x95\x01\x00\x00\xff\xdf\xff\xff\xff\xff", "exceeds max_map_len"),
    # a huge declared str/bin length is refused for want of bytes, before any allocation
    (b"\x95\x01\x00\x00\xff\xdb\xff\xff\xff\xff", "incomplete input"),
    (b"\x95\x01\x00\x00\xff\xc6\xff\xff\xff\xff", "incomplete input"),
    (b"\x91" * 2000 + b"\x00", "nested deeper than msgpack can decode"),
    (_request_like(1, 0, 0, -1, nested(32)), "request 1: frame nests containers deeper"),
    (packb([1, STATUS_OK, "response, not request"]), "got an array of 3 items"),
]


@pytest.mark.parametrize(("data", "match"), DECODER_REJECTS)
def test_decoder_rejects(data, match):
    data = data.encode() if isinstance(data, str) else data
    with pytest.raises(FrameError, match=match):
        DEC.request(data)


@pytest.mark.parametrize("data", ["text", 10, None, [1, 0, 0, -1, "p"]])
def test_decoder_rejects_non_bytes_without_allocating(data):
    with pytest.raises(FrameError, match="request frame must be bytes"):
        DEC.request(data)


RESPONSE_REJECTS = [
    (packb([1, 7, "x"]), "unknown status 7; known: 0 \\(ok\\), 1 \\(error\\), 2 \\(timeout\\)"),
    (packb([1, "ok", "x"]), "unknown status 'ok'"),
    (packb([1, False, "x"]), "unknown status False"),
    (packb([1, 0]), "got an array of 2 items"),
    (packb([1, 0, "x", {}, 5]), "got an array of 5 items"),
    (packb([-1, 0, "x"]), "response id must be an integer"),
    (packb([1, 0, "x", [1]]), "meta must be a map"),
    (packb([1, 0, "x", {b"k": 1}]), "meta keys must be str"),
    (packb([1, STATUS_ERROR, "text"]), "an error carries \\[type_name, message, details\\]"),
    (packb([1, STATUS_ERROR, ["T", "m"]]), "an error carries"),
    (packb([1, STATUS_ERROR, ["", "m", {}]]), "type_name must be a str of 1-256"),
    (packb([1, STATUS_ERROR, [b"T", "m", {}]]), "type_name must be a str"),
    (packb([1, STATUS_ERROR, ["T", None, {}]]), "error message must be a str"),
    (packb([1, STATUS_ERROR, ["T", "m", []]]), "error details must be a map"),
    (packb([1, STATUS_ERROR, ["T", "m", {b"k": 1}]]), "error details keys must be str"),
    (packb([1, STATUS_TIMEOUT, None]), "timeout carries a str message"),
    (packb([1, STATUS_OK, nested(32)]), "response 1: frame nests containers deeper"),
    (packb([1, 0, 0, -1, "request"]), "got an array of 5 items"),
]


@pytest.mark.parametrize(("data", "match"), RESPONSE_REJECTS)
def test_response_decoder_rejects(data, match):
    with pytest.raises(FrameError, match=match):
        DEC.response(data)


def test_frame_limit_and_tight_limits():
    dec = FrameDecoder(
        FrameLimits(
            max_frame_bytes=32, max_str_len=4, max_bin_len=4, max_array_len=5, max_map_len=2
        )
    )
    with pytest.raises(FrameError, match="request frame is 33 bytes, over the frame limit of 32"):
        dec.request(b"\x00" * 33)
    for payload, match in [
        ("abcde", "5 exceeds max_str_len\\(4\\)"),
        (b"abcde", "5 exceeds max_bin_len\\(4\\)"),
        ([1, 2, 3, 4, 5, 6], "6 exceeds max_array_len\\(5\\)"),
        ({"a": 1, "b": 2, "c": 3}, "3 exceeds max_map_len\\(2\\)"),
    ]:
        with pytest.raises(FrameError, match=match):
            dec.request(packb([1, 0, 0, -1, payload]))
    assert dec.request(packb([1, 0, 0, -1, ["abcd", b"abcd", {"a": 1, "b": 2}]]))


def test_decoder_recovers_after_every_kind_of_failure():
    good = ENC.request(5, 0, 0, -1, {"q": "x"})
    for bad in (good[:-1], good + b"\x01", b"\xc1", b"\x91" * 1500, good[:3]):
        with pytest.raises(FrameError):
            DEC.request(bad)
        assert DEC.request(good).id == 5


def test_frame_limits_are_validated():
    with pytest.raises(ValueError, match="max_frame_bytes must be an integer in"):
        FrameLimits(max_frame_bytes=0)
    with pytest.raises(ValueError, match="max_array_len must be at least 5"):
        FrameLimits(max_array_len=4)
    with pytest.raises(ValueError, match="max_depth must be an integer in \\[2, 512\\]"):
        FrameLimits(max_depth=1)
    with pytest.raises(ValueError, match="max_request_bytes must be an integer in"):
        FrameLimits(max_request_bytes=0)
    with pytest.raises(ValueError, match="max_result_bytes must be an integer in"):
        FrameLimits(max_result_bytes=2**31)
    assert FrameLimits(max_request_bytes=None, max_result_bytes=None) == FrameLimits()


# ---------------------------------------------------------------- payload and result bounds

BOUNDED = FrameLimits(
    max_frame_bytes=4096,
    max_str_len=4096,
    max_bin_len=4096,
    max_array_len=4096,
    max_map_len=4096,
    max_request_bytes=500,
    max_result_bytes=300,
)
HEADERS = [
    (0, 0, 0, NO_ROW),
    (MAX_ID, MIN_PRIORITY, MAX_DEADLINE_NS, MAX_ROW),
    (200, -100, 70_000, 128),
    (2**32, -40_000, 2**31, 65_536),
]


def _value_of(size: int) -> object:
    """A value of exactly ``size`` encoded bytes (a str, or a list where no str fits)."""
    for header in (1, 2, 3, 5):
        for value in ("v" * (size - header), [None] * (size - header)):
            if len(packb(value)) == size:
                return value
    raise AssertionError(size)


@pytest.mark.parametrize("header", HEADERS)
def test_a_payload_over_max_request_bytes_is_refused_on_both_sides(header):
    enc, dec = FrameEncoder(BOUNDED), FrameDecoder(BOUNDED)
    for size in (1, 33, 499, 500):
        payload = _value_of(size)
        assert dec.request(enc.request(*header, payload)).payload == payload
        assert dec.request(packb([*header, payload])).payload == payload
    over = _value_of(501)
    with pytest.raises(
        FrameTooLargeError, match="payload is 501 bytes encoded, over max_request_bytes=500"
    ) as exc:
        enc.request(*header, over)
    assert (exc.value.size, exc.value.limit) == (501, 500)
    with pytest.raises(
        FrameError, match=f"request {header[0]}: payload is 501 bytes, over max_request_bytes=500"
    ):
        dec.request(packb([*header, over]))


@pytest.mark.parametrize("meta", [None, {"leader": MAX_ID, "similarity": 0.25}])
@pytest.mark.parametrize("rid", [0, 200, MAX_ID])
def test_a_result_over_max_result_bytes_is_refused_naming_it(rid, meta):
    enc, dec = FrameEncoder(BOUNDED), FrameDecoder(BOUNDED)
    for size in (1, 299, 300):
        value = _value_of(size)
        assert dec.response(enc.ok(rid, value, meta)).value == value
    with pytest.raises(
        FrameTooLargeError, match="result is 301 bytes encoded, over max_result_bytes=300"
    ):
        enc.ok(rid, _value_of(301), meta)
    with pytest.raises(FrameTooLargeError, match="over max_result_bytes=300"):
        enc.ok(rid, "v" * 10_000, meta)  # over the frame limit too: the result's limit is named
    # errors and timeouts are not results: only the frame bounds them
    assert dec.response(enc.error(rid, "HandlerError", "m" * 2000)).value.message == "m" * 2000
    assert dec.response(enc.timeout(rid, "t" * 2000)).value == "t" * 2000
    (frame,) = enc.responses([(rid, STATUS_OK, _value_of(301), meta)])
    answer = dec.response(frame)
    assert answer.status == STATUS_ERROR and answer.value.type_name == "FrameTooLargeError"
    assert "max_result_bytes=300" in answer.value.message


def test_containers_as_long_as_the_frame_allows_decode():
    limits = FrameLimits(
        max_frame_bytes=1 << 20,
        max_str_len=1 << 20,
        max_bin_len=1 << 20,
        max_array_len=1 << 20,
        max_map_len=1 << 20,
        max_depth=65,
    )
    enc, dec = FrameEncoder(limits), FrameDecoder(limits)
    for payload in (
        {"items": list(range(70_000))},
        {"m": {f"k{i}": i for i in range(70_000)}},
        {"v": nested(63)},
    ):
        assert dec.request(enc.request(1, 0, 0, -1, payload)).payload == payload
        assert dec.response(enc.ok(1, payload)).value == payload
    with pytest.raises(FrameError, match="70000 exceeds max_array_len"):
        DEC.request(packb([1, 0, 0, -1, list(range(70_000))]))  # the default limits: 64 Ki


@settings(deadline=None, max_examples=500, database=None)
@given(value=st.integers(-(2**63), 2**64 - 1))
def test_int_size_is_the_length_of_msgpacks_encoding(value):
    assert int_size(value) == len(packb(value))


def test_peek_frame_id():
    assert peek_frame_id(ENC.request(77, 0, 0, -1, "p")) == 77
    assert peek_frame_id(ENC.request(MAX_ID, 0, 0, -1, "p")) == MAX_ID
    assert peek_frame_id(ENC.request(300, 0, 0, -1, "p")[:-1]) == 300
    assert peek_frame_id(packb([70000] + [0] * 20)) == 70000  # array 16 header
    assert peek_frame_id(memoryview(ENC.ok(12, "x"))) == 12
    for junk in (b"", b"\xc1", packb([-1, 0]), packb(["id"]), b"\x95\xcf\xff", packb({"a": 1})):
        assert peek_frame_id(junk) is None
    assert peek_frame_id(b"\x95\xcf" + (2**63).to_bytes(8, "big")) is None


# ---------------------------------------------------------------- memory bounds


# what the engine derives for the largest max_request_bytes (64 MiB): lengths bounded by the
# frame size only
WIDE = FrameDecoder(
    FrameLimits(
        max_frame_bytes=(64 << 20) + 64,
        max_str_len=(64 << 20) + 64,
        max_bin_len=(64 << 20) + 64,
        max_array_len=(64 << 20) + 64,
        max_map_len=(64 << 20) + 64,
        max_depth=65,
    )
)


def _peak_decode_bytes(data: bytes, dec: FrameDecoder = DEC) -> int:
    tracemalloc.start()
    try:
        with pytest.raises(FrameError):
            dec.request(data)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "bomb",
    [
        b"\x95\x01\x00\x00\xff" + (b"\xdd" + struct.pack(">I", 65_536)) * 1_000,
        b"\x95\x01\x00\x00\xff" + (b"\xdc\xff\xff") * 1_500,
        b"\x95\x01\x00\x00\xff" + (b"\xdd" + struct.pack(">I", 65_536)) * 15 + b"\x9f" * 1_000,
        b"\x95\x01\x00\x00\xff" + (b"\xdf" + struct.pack(">I", 65_536) + b"\xa1k") * 1_000,
        b"\x95\x01\x00\x00\xff" + (b"\xde\xff\xff\xa1k") * 1_000,
    ],
    ids=["array32-chain", "array16-chain", "few-big-then-fixarrays", "map32-chain", "map16-chain"],
)
@pytest.mark.parametrize("dec", [DEC, WIDE], ids=["default-limits", "engine-64MiB-limits"])
def test_allocation_bombs_stay_small(bomb, dec):
    # msgpack's C decoder reserves list slots per array header before items arrive; the
    # decoder routes such frames to the non-reserving path, so a few KiB cannot claim MBs.
    assert _peak_decode_bytes(bomb, dec) < 4 * 1024 * 1024


def test_with_a_msgpack_that_reserves_full_lengths_fewer_big_headers_take_the_fast_path(
    monkeypatch,
):
    # msgpack before 1.1 reserves an array header's whole declared length: the more items
    # max_array_len allows, the fewer such headers a frame may hold on the C path
    from stratabatch.ipc import framelimits

    monkeypatch.setattr(framelimits, "_RESERVE_CAP", None)
    slow: list[bytes] = []
    real = framelimits._msgpack_fallback.unpackb

    def spy(data: bytes, **kw: object) -> object:
        slow.append(data)
        return real(data, **kw)

    monkeypatch.setattr(framelimits._msgpack_fallback, "unpackb", spy)
    two_headers = packb([1, 0, 0, -1, {"a": [0] * 20, "b": [0] * 20}])
    assert two_headers.count(0xDC) == 2
    FrameDecoder(FrameLimits(max_array_len=65_536)).request(two_headers)
    assert slow == []  # 16 headers of 65,536 slots: within the 8 MiB reserve
    FrameDecoder(FrameLimits(max_array_len=1 << 20)).request(two_headers)
    assert slow == [two_headers]  # one header of 1 Mi slots is the whole reserve


def test_binary_heavy_frames_decode_the_same_on_both_paths():
    rng = np.random.default_rng(1234)
    print("seed 1234")
    blob = rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    payload = {"blob": blob, "floats": rng.random(300).tolist(), "hdr": b"\xdc\xdd" * 50}
    frame = ENC.request(1, 0, 0, -1, payload)
    assert frame.count(0xDC) + frame.count(0xDD) > 16  # takes the non-reserving path
    assert DEC.request(frame).payload == payload


# ---------------------------------------------------------------- fuzzing

FUZZ = settings(
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=24)
    | st.binary(max_size=24)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(st.text(max_size=8) | st.binary(max_size=4), inner, max_size=6)
    ),
    max_leaves=24,
)
_requests = st.builds(
    lambda rid, prio, dl, row, payload: ENC.request(rid, prio, dl, row, payload),
    st.integers(0, MAX_ID),
    st.integers(MIN_PRIORITY, MAX_PRIORITY),
    st.integers(0, MAX_DEADLINE_NS),
    st.integers(NO_ROW, MAX_ROW),
    _values,
)
_responses = st.one_of(
    st.builds(ENC.ok, st.integers(0, MAX_ID), _values),
    st.builds(
        ENC.error,
        st.integers(0, MAX_ID),
        st.text(min_size=1, max_size=30),
        st.text(max_size=40),
        st.dictionaries(st.text(max_size=8), _values, max_size=3),
    ),
    st.builds(ENC.timeout, st.integers(0, MAX_ID), st.text(max_size=40)),
)
_HEADERS = [b"\xdc", b"\xdd", b"\xde", b"\xdf", b"\xda", b"\xdb", b"\xc5", b"\xc6", b"\xc9"]
MUTANTS_PER_FRAME = 16


def _mutate(frame: bytes, rng: random.Random) -> bytes:
    """Apply 1-4 random edits: bit flips, byte sets, inserts, deletes, truncation, headers
    declaring huge lengths, and repeated chunks."""
    data = bytearray(frame)
    for _ in range(rng.randint(1, 4)):
        op = rng.choice(["flip", "set", "insert", "delete", "truncate", "header", "repeat"])
        pos = rng.randint(0, len(data))
        if op == "flip" and pos < len(data):
            data[pos] ^= 1 << rng.randrange(8)
        elif op == "set" and pos < len(data):
            data[pos] = rng.randrange(256)
        elif op == "insert":
            data[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op == "delete":
            del data[pos : pos + rng.randint(1, 8)]
        elif op == "truncate":
            del data[pos:]
        elif op == "header":
            width = rng.choice([2, 4])
            length = rng.choice([2**16 - 1, 2**32 - 1, 2**31, 65_537, 10**6, rng.randrange(2**32)])
            header = rng.choice(_HEADERS) + (length % (1 << (8 * width))).to_bytes(width, "big")
            data[pos:pos] = header * rng.randint(1, 40)
        elif op == "repeat":
            data[pos:pos] = data[pos : pos + rng.randint(1, 16)] * rng.randint(2, 50)
    return bytes(data)


@st.composite
def _deep(draw):
    """Deeply nested payloads, valid msgpack, some far past every limit."""
    depth = draw(st.integers(1, 1500))
    opener = draw(
        st.sampled_from([b"\x91", b"\x81\xa1k", b"\xdc\x00\x01", b"\xdd\x00\x00\x00\x01"])
    )
    return b"\x95\x01\x00\x00\xff" + opener * depth + b"\xc0"


class _Budget:
    """Per-frame checks: only FrameError, bounded time and bounded allocation."""

    def __init__(self) -> None:
        self.count = 0

    def check(self, decode, data: bytes, enc: FrameEncoder = ENC, dec: FrameDecoder = DEC) -> None:
        self.count += 1
        tracemalloc.start()
        started = time.perf_counter()
        try:
            result = decode(data)
        except FrameError:
            result = None
        finally:
            elapsed = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert elapsed < 1.0, f"decoding {len(data)} bytes took {elapsed:.2f} s"
        assert peak < 4 * 1024 * 1024 + 64 * len(data), f"decode allocated {peak} bytes"
        # anything accepted is well formed: it re-encodes, and that decodes back to the same
        # bytes (compared as bytes because a NaN never equals itself)
        if isinstance(result, Request):
            again = enc.request(*result)
            assert enc.request(*dec.request(again)) == again
        elif isinstance(result, Response):
            assert result.status in (STATUS_OK, STATUS_ERROR, STATUS_TIMEOUT)
            again = enc.response(*result)
            assert enc.response(*dec.response(again)) == again


@pytest.fixture(scope="module")
def budget():
    checker = _Budget()
    yield checker
    # 1,000 x 2 + 400 x 16 + 200 x 16 + 300 x 3 + 120 + 150 x 16 + 60 = 15,080 frames when
    # all tests run
    print(f"fuzzed {checker.count} frames")


@settings(FUZZ, max_examples=1_000)
@given(data=st.binary(max_size=600))
def test_fuzz_random_bytes(budget, data):
    budget.check(DEC.request, data)
    budget.check(DEC.response, data)


@settings(FUZZ, max_examples=400)
@given(frame=_requests, seed=st.integers(0, 2**32 - 1))
def test_fuzz_mutated_requests(budget, frame, seed):
    rng = random.Random(seed)
    for _ in range(MUTANTS_PER_FRAME):
        budget.check(DEC.request, _mutate(frame, rng))


@settings(FUZZ, max_examples=200)
@given(frame=_responses, seed=st.integers(0, 2**32 - 1))
def test_fuzz_mutated_responses(budget, frame, seed):
    rng = random.Random(seed)
    for _ in range(MUTANTS_PER_FRAME):
        budget.check(DEC.response, _mutate(frame, rng))


@settings(FUZZ, max_examples=300)
@given(obj=_values)
def test_fuzz_well_formed_msgpack_of_any_shape(budget, obj):
    data = packb(obj)
    budget.check(DEC.request, data)
    budget.check(DEC.response, data)
    budget.check(DEC.request, packb([1, 0, 0, -1, obj]))


@settings(FUZZ, max_examples=120)
@given(data=_deep())
def test_fuzz_deep_nesting(budget, data):
    budget.check(DEC.request, data)


WIDE_ENC = FrameEncoder(WIDE.limits)


@settings(FUZZ, max_examples=150)
@given(frame=_requests, seed=st.integers(0, 2**32 - 1))
def test_fuzz_mutated_requests_under_engine_limits(budget, frame, seed):
    rng = random.Random(seed)
    for _ in range(MUTANTS_PER_FRAME):
        budget.check(WIDE.request, _mutate(frame, rng), WIDE_ENC, WIDE)


@settings(FUZZ, max_examples=60)
@given(data=_deep())
def test_fuzz_deep_nesting_under_engine_limits(budget, data):
    budget.check(WIDE.request, data, WIDE_ENC, WIDE)
