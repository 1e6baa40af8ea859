"""Batch frames: many requests (or responses) in one ring message, each item checked as its own
frame would be, a bad item failing alone."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratabatch.ipc.errors import FrameError, FrameTooLargeError
from stratabatch.ipc.frames import (
    MAX_DEADLINE_NS,
    MAX_ID,
    MAX_PRIORITY,
    MAX_ROW,
    MIN_PRIORITY,
    NO_ROW,
    STATUS_OK,
    FrameDecoder,
    FrameEncoder,
    FrameLimits,
    Request,
    Response,
)

ENC = FrameEncoder()
DEC = FrameDecoder()


def _blob(payload: object) -> bytes:
    return msgpack.packb(payload, use_bin_type=True)


def test_a_batch_of_requests_decodes_to_the_same_requests_as_single_frames():
    items = [
        (0, 0, 0, NO_ROW, {"query": "a"}),
        (MAX_ID, MAX_PRIORITY, MAX_DEADLINE_NS, MAX_ROW, {"query": "b", "n": [1, 2, {"x": 1}]}),
        (7, MIN_PRIORITY, 123, 5, {"query": "ü" * 300}),
    ]
    frame = ENC.request_batch([(i, p, d, r, _blob(pl)) for i, p, d, r, pl in items])
    got = DEC.requests(frame)
    assert got == [DEC.request(ENC.request(*item)) for item in items]
    assert all(type(r) is Request for r in got)
    # a single frame decodes through the same method, as a batch of one
    assert DEC.requests(ENC.request(*items[0])) == [Request(*items[0])]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, MAX_ID),
            st.integers(MIN_PRIORITY, MAX_PRIORITY),
            st.integers(0, MAX_DEADLINE_NS),
            st.integers(NO_ROW, MAX_ROW),
            st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=20), max_size=4),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_request_batches_round_trip(items):
    try:
        blobs = [(i, p, d, r, _blob(pl)) for i, p, d, r, pl in items]
    except (OverflowError, ValueError):
        return  # (an int msgpack cannot carry: the client refuses it before any frame)
    assert DEC.requests(ENC.request_batch(blobs)) == [Request(*item) for item in items]


def test_a_bad_item_fails_alone_with_its_id():
    frame = msgpack.packb(
        [
            [1, 0, 0, -1, {"query": "fine"}],
            [2, "high", 0, -1, {"query": "bad priority"}],
            [3, 0, 0],  # wrong shape, but an id to answer
            ["x"],  # no id: nothing to answer
            [4, 0, 0, -1, {"query": "fine too"}],
        ]
    )
    got = DEC.requests(frame)
    assert [type(g) for g in got] == [Request, FrameError, FrameError, FrameError, Request]
    assert [getattr(g, "id", None) for g in got[1:4]] == [2, 3, None]
    assert "priority" in str(got[1])


def test_a_batch_item_nests_as_deep_as_a_single_frame():
    limits = FrameLimits(max_depth=6)
    enc, dec = FrameEncoder(limits), FrameDecoder(limits)
    ok = {"a": [[[{"b": 1}]]]}  # frame array 1, map 2, lists 3-5, map 6
    deep = {"a": [[[[{"b": 1}]]]]}
    assert dec.request(enc.request(1, 0, 0, -1, ok)).payload == ok
    with pytest.raises(FrameError):
        enc.request(1, 0, 0, -1, deep)
    got = dec.requests(enc.request_batch([(1, 0, 0, -1, _blob(ok)), (2, 0, 0, -1, _blob(deep))]))
    assert got[0].payload == ok
    assert isinstance(got[1], FrameError) and got[1].id == 2 and "deeper" in str(got[1])


def test_a_payload_over_max_request_bytes_fails_alone_in_a_batch():
    limits = FrameLimits(max_request_bytes=64)
    enc, dec = FrameEncoder(limits), FrameDecoder(limits)
    small, big = {"query": "s"}, {"query": "x" * 100}
    got = dec.requests(
        enc.request_batch(
            [(i, 0, 0, -1, _blob(small)) for i in range(10)] + [(10, 0, 0, -1, _blob(big))]
        )
    )
    assert [type(g) for g in got] == [Request] * 10 + [FrameError]
    assert got[10].id == 10 and "max_request_bytes=64" in str(got[10])


def test_a_batch_over_the_frame_limit_is_refused_whole():
    enc = FrameEncoder(FrameLimits(max_frame_bytes=256))
    with pytest.raises(FrameTooLargeError):
        enc.request_batch([(i, 0, 0, -1, _blob({"query": "x" * 20})) for i in range(20)])
    with pytest.raises(FrameError):
        enc.request_batch([])


def test_plain_responses_pack_in_one_call_others_fall_back():
    items = [(1, STATUS_OK, "a"), (2, STATUS_OK, {"k": 1.5}), (3, STATUS_OK, [1, 2], {"leader": 1})]
    frame = ENC.response_batch(items)
    assert frame is not None
    assert DEC.responses(frame) == [
        Response(1, STATUS_OK, "a", None),
        Response(2, STATUS_OK, {"k": 1.5}, None),
        Response(3, STATUS_OK, [1, 2], {"leader": 1}),
    ]
    # a value that is not plain data, an error, a nested value, a result over its limit:
    # the caller encodes those one by one (where each gets its own message) and joins them
    assert ENC.response_batch([(1, STATUS_OK, object())]) is None
    assert ENC.response_batch([(1, STATUS_OK, {"a": {"b": 1}})]) is None
    assert FrameEncoder(FrameLimits(max_result_bytes=16)).response_batch([(1, 0, "x" * 40)]) is None
    singles = [ENC.response(*item) for item in items] + [ENC.error(4, "HandlerError", "boom")]
    joined = ENC.join(singles)
    assert len(joined) == 1
    got = DEC.responses(joined[0])
    assert [r.id for r in got] == [1, 2, 3, 4] and got[3].value.type_name == "HandlerError"


def test_join_splits_at_the_frame_limit():
    enc = FrameEncoder(FrameLimits(max_frame_bytes=200))
    singles = [enc.response(i, STATUS_OK, "y" * 50) for i in range(10)]
    frames = enc.join(singles)
    assert len(frames) > 1 and all(len(f) <= 200 for f in frames)
    assert [r.id for f in frames for r in DEC.responses(f)] == list(range(10))


def test_a_bad_response_item_fails_alone():
    frame = msgpack.packb([[1, 0, "ok"], [2, 9, "unknown status"], "garbage", [3, 0, "ok"]])
    got = DEC.responses(frame)
    assert [type(g) for g in got] == [Response, FrameError, FrameError, Response]
    assert got[1].id == 2 and got[2].id is None


_FIELD_EDGES = [
    (MAX_ID + 1, 0, 0, NO_ROW),
    (-1, 0, 0, NO_ROW),
    (True, 0, 0, NO_ROW),
    (1, MAX_PRIORITY + 1, 0, NO_ROW),
    (1, MIN_PRIORITY - 1, 0, NO_ROW),
    (1, 1.0, 0, NO_ROW),
    (1, 0, MAX_DEADLINE_NS + 1, NO_ROW),
    (1, 0, -1, NO_ROW),
    (1, 0, 0, MAX_ROW + 1),
    (1, 0, 0, NO_ROW - 1),
    (1, 0, 0, None),
]


@pytest.mark.parametrize("fields", _FIELD_EDGES)
@pytest.mark.parametrize("payload", [{"query": "q"}, {"q": [1]}, ["not", "a map"], "text"])
def test_a_batch_item_gets_the_verdict_of_the_same_request_as_a_single_frame(fields, payload):
    # the common item is checked inline in a batch: every field one step out of range must
    # still fail exactly as the single frame does, and the same item in range decode alike
    for item in ([*fields, payload], [1, 0, 0, NO_ROW, payload]):
        single = msgpack.packb(item)
        try:
            want: object = DEC.request(single)
        except FrameError as exc:
            want = str(exc)
        got = DEC.requests(msgpack.packb([[2, 0, 0, NO_ROW, {"query": "ok"}], item]))[1]
        assert (str(got) if isinstance(got, FrameError) else got) == want


@pytest.mark.parametrize(
    "item",
    [
        [1, STATUS_OK, "answer"],
        [1, STATUS_OK, None],
        [1, STATUS_OK, 3.5],
        [1, STATUS_OK, b"raw"],
        [1, STATUS_OK, {"a": [1, 2]}],
        [1, STATUS_OK, [1, {"b": 2}]],
        [1, STATUS_OK, "x", {"leader": 0, "similarity": 1.0}],
        [1, False, "a bool is no status"],
        [1, 1.0, "a float is no status"],
        [1, 9, "unknown status"],
        [1, 2, "a timeout's message"],
        [1, 2, 5],
        [1, 1, ["ValueError", "boom", {}]],
        [1, 1, "an error must be a triple"],
        [MAX_ID + 1, STATUS_OK, "id out of range"],
        [-1, STATUS_OK, "negative id"],
        [True, STATUS_OK, "a bool is no id"],
        [1, STATUS_OK],
    ],
)
def test_a_batch_response_item_gets_the_verdict_of_the_same_single_frame(item):
    # the plain ok answer is checked inline in a batch: every variant decodes (or fails) as
    # the same response does in a frame of its own
    single = msgpack.packb(item)
    try:
        want: object = DEC.response(single)
    except FrameError as exc:
        want = str(exc)
    got = DEC.responses(msgpack.packb([[2, STATUS_OK, "ok"], item]))[1]
    assert (str(got) if isinstance(got, FrameError) else got) == want
    # what the clients read: the plain ok answer as its checked list, the rest the same
    raw = DEC.response_items(msgpack.packb([[2, STATUS_OK, "ok"], item]))[1]
    if type(raw) is list:
        assert isinstance(want, Response) and want.meta is None and raw == list(want[:3])
        assert want.status == STATUS_OK and type(want.value) not in (dict, list)
    else:
        assert (str(raw) if isinstance(raw, FrameError) else raw) == want
    # response_rows: the same items, and whether all are plain (the item first, then last)
    for frame in ([item, [2, STATUS_OK, "ok"]], [[2, STATUS_OK, "ok"], item]):
        items, plain = DEC.response_rows(msgpack.packb(frame))
        assert plain == (type(raw) is list)
        again = DEC.response_items(msgpack.packb(frame))
        assert [str(i) if isinstance(i, FrameError) else i for i in items] == [
            str(i) if isinstance(i, FrameError) else i for i in again
        ]


def test_a_frame_of_plain_answers_decodes_to_its_lists_and_says_so():
    answers = [[i, STATUS_OK, v] for i, v in enumerate([1, "a", None, 2.5, b"x", True])]
    assert DEC.response_rows(msgpack.packb(answers)) == (answers, True)
    single = DEC.response_rows(msgpack.packb([7, STATUS_OK, 1]))
    assert single == ([Response(7, STATUS_OK, 1, None)], False)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ((MAX_ID + 1, 0, 0, NO_ROW), "request id"),
        ((1, MAX_PRIORITY + 1, 0, NO_ROW), "priority"),
        ((1, 0, -1, NO_ROW), "deadline_ns"),
        ((1, 0, 0, MAX_ROW + 1), "arena_row"),
        ((1, "0", 0, NO_ROW), "priority"),
        ((MAX_ID + 1, 0, 0, NO_ROW), "request id"),  # a plain item's id is checked too
        ((-1, 0, 0, NO_ROW), "request id"),
        ((1, False, 0, NO_ROW), "priority"),  # equal to 0, but no int
        ((1, 0, 0.0, NO_ROW), "deadline_ns"),
        ((1, 0, 0, -1.0), "arena_row"),
    ],
)
def test_a_batch_encode_refuses_a_field_out_of_range_naming_it(fields, named):
    with pytest.raises(FrameError, match=named):
        ENC.request_batch([(2, 0, 0, NO_ROW, _blob({"q": "ok"})), (*fields, _blob({"q": "x"}))])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, MAX_ID),
            st.sampled_from([0, 0, 0, 1, MIN_PRIORITY, MAX_PRIORITY]),
            st.sampled_from([0, 0, 0, 1, MAX_DEADLINE_NS]),
            st.sampled_from([NO_ROW, NO_ROW, NO_ROW, 0, MAX_ROW]),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_a_batch_frame_writes_every_item_with_the_same_fixed_width_header(fields):
    """A plain item (priority 0, no deadline, no row) takes a shortcut to the same bytes."""
    blob = _blob({"q": "x"})
    head = struct.Struct(">BBQBiBQBi")
    expected = b"".join(
        head.pack(0x95, 0xCF, rid, 0xD2, p, 0xCF, d, 0xD2, row) + blob for rid, p, d, row in fields
    )
    frame = ENC.request_batch([(*f, blob) for f in fields])
    assert frame.endswith(expected) and len(frame) - len(expected) in (1, 3)
    assert [tuple(r)[:4] for r in DEC.requests(frame)] == fields  # type: ignore[arg-type]


def test_an_answers_frame_decodes_to_the_ok_responses_it_stands_for():
    """``["ok", ids, values]`` is the batch frame of ``[id, STATUS_OK, value]`` items."""
    values = [1, "a", None, 2.5, b"x", True, {"k": 1.5}, [1, 2]]
    ids = list(range(len(values) - 1)) + [MAX_ID]
    data = ENC.response_oks(ids, values)
    assert data is not None
    want = [Response(i, STATUS_OK, v, None) for i, v in zip(ids, values, strict=True)]
    assert DEC.responses(data) == want
    batch = ENC.response_batch([(i, STATUS_OK, v) for i, v in zip(ids, values, strict=True)])
    assert batch is not None and len(data) < len(batch)
    # scalars only: the plain answers, as lists, taken whole (a container is looked at)
    rows, plain = DEC.response_rows(ENC.response_oks(ids[:6], values[:6]))  # type: ignore[arg-type]
    assert plain and rows == [[i, STATUS_OK, v] for i, v in zip(ids, values[:6], strict=False)]
    rows, plain = DEC.response_rows(data)
    assert not plain and [type(r) for r in rows[-2:]] == [Response, Response]


def test_the_answers_encoder_declines_what_response_batch_would_also_decline():
    assert ENC.response_oks([1], [object()]) is None
    assert ENC.response_oks([1], [{"a": {"b": 1}}]) is None  # nested: checked one by one
    assert ENC.response_oks([1], [[[1]]]) is None
    assert ENC.response_oks([], []) is None
    assert ENC.response_oks([1, 2], [1]) is None
    assert FrameEncoder(FrameLimits(max_result_bytes=16)).response_oks([1], ["x" * 40]) is None


def test_an_answers_frame_item_that_is_not_valid_fails_alone():
    frame = msgpack.packb(["ok", [1, -2, 3, "x"], ["fine", "bad id", {"a": {"b": {}}}, 4]])
    got = DEC.responses(frame)
    assert [type(g) for g in got] == [Response, FrameError, Response, FrameError]
    assert got[0] == Response(1, STATUS_OK, "fine", None) and got[2].value == {"a": {"b": {}}}
    for bad, match in (
        (["ok", [1], ["a"], 3], "an answers frame is"),
        (["no", [1], ["a"]], "an answers frame is"),
        (["ok", [1, 2], ["a"]], "same length"),
        (["ok", [], []], "at least"),
    ):
        with pytest.raises(FrameError, match=match):
            DEC.responses(msgpack.packb(bad))
