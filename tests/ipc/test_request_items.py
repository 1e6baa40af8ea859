"""FrameDecoder.request_items: the engine's intake reads a batch's plain item as decoded."""

from __future__ import annotations

import msgpack

from stratabatch.ipc.errors import FrameError
from stratabatch.ipc.frames import NO_ROW, FrameDecoder, FrameEncoder, Request

ENC = FrameEncoder()
DEC = FrameDecoder()


def _batch(items: list[list[object]]) -> bytes:
    return msgpack.packb(items)


def test_a_plain_item_stays_its_decoded_list_and_any_other_is_what_requests_gives():
    items = [
        [1, 0, 0, NO_ROW, {"query": "plain"}],
        [2, 5, 0, NO_ROW, {"query": "plain, with a priority"}],
        [3, 0, 99, NO_ROW, {"query": "a deadline"}],  # plain too: a deadline is a number
        [4, 0, 0, 7, {"query": "an arena row"}],
        [5, 0, 0, -1.0, {"query": "a float row"}],  # equal to NO_ROW, not an int: refused
        [6, 0, False, NO_ROW, {"query": "a bool deadline"}],  # equal to 0, not an int
        [7, 0, 0, NO_ROW, {"query": "nested", "n": [1]}],  # a container value: the long way
        [8, 0, 0, NO_ROW, "not a map"],
    ]
    data = _batch(items)
    got = DEC.request_items(data)
    assert got[:3] == items[:3] and all(type(g) is list for g in got[:3])
    assert [type(g).__name__ for g in got[3:]] == [
        "Request",
        "FrameError",
        "FrameError",
        "Request",
        "Request",
    ]
    assert [getattr(g, "id", None) for g in got[4:6]] == [5, 6]
    # requests() is the same decode with every item a Request (or a FrameError)
    want = DEC.requests(data)
    assert [Request(*g) if type(g) is list else g for g in got][:4] == want[:4]
    assert all(type(w) in (Request, FrameError) for w in want)


def test_a_single_frame_follows_the_same_rule():
    got = DEC.request_items(ENC.request(1, 0, 5, NO_ROW, {"query": "one"}))
    assert got == [[1, 0, 5, NO_ROW, {"query": "one"}]] and type(got[0]) is list
    row = DEC.request_items(ENC.request(2, 0, 0, 3, {"query": "a row"}))
    assert row == [Request(2, 0, 0, 3, {"query": "a row"})] and type(row[0]) is Request
    assert DEC.requests(ENC.request(1, 0, 5, NO_ROW, {"query": "one"})) == [
        Request(1, 0, 5, NO_ROW, {"query": "one"})
    ]


def test_request_rows_says_whether_the_intake_may_take_the_frame_whole():
    plain = [[1, 0, 0, NO_ROW, {"query": "a"}], [2, 3, 99, NO_ROW, {"query": "b", "k": 1}]]
    items, whole = DEC.request_rows(_batch(plain))
    assert whole and items == plain
    for odd in (
        [3, 0, 0, 7, {"query": "an arena row"}],
        [3, 0, 0, NO_ROW, {"query": "nested", "n": [1]}],
        [3, 0, 0, NO_ROW, "not a map"],
        ["x", 0, 0, NO_ROW, {"query": "a bad id"}],
    ):
        items, whole = DEC.request_rows(_batch([*plain, odd]))
        assert not whole, odd
        assert items[:2] == plain and type(items[2]) is not list
    assert DEC.request_rows(ENC.request(1, 0, 0, NO_ROW, {"query": "one"}))[1]
    assert not DEC.request_rows(ENC.request(1, 0, 0, 3, {"query": "a row"}))[1]


def test_request_rows_agrees_with_requests_on_random_frames():
    """The usual frame's short scan (constants known by identity) and the full checks give
    the same items: random frames of valid and odd fields, in every position."""
    import random

    rng = random.Random(7)
    fields = {
        "id": [0, 1, 2**63 - 1, 2**63, -1, True, 1.0, "1"],
        "priority": [0, 0, 0, 5, -(2**31), 2**31, False, 0.0],
        "deadline": [0, 0, 0, 99, -1, False, 0.0, 2**63],
        "row": [NO_ROW, NO_ROW, NO_ROW, 3, -2, -1.0, True],
        "payload": [{"q": "a"}, {"q": "b", "n": 1}, {}, {"q": [1]}, {"q": {"x": 1}}, "text", [1]],
    }
    for _ in range(400):
        items = []
        for i in range(rng.randint(1, 6)):
            if rng.random() < 0.7:
                items.append([i, 0, 0, NO_ROW, {"q": f"t{i}"}])
            else:
                items.append([rng.choice(v) for v in fields.values()])
        if rng.random() < 0.1:
            items.append([1, 2, 3])  # a short item
        data = _batch(items)
        got, whole = DEC.request_rows(data)
        want = DEC.requests(data)
        assert len(got) == len(want) == len(items)
        for g, w in zip(got, want, strict=True):
            if type(g) is list:  # a plain item: what requests() checked, as decoded
                assert type(w) is Request and Request(*g) == w and w.arena_row == NO_ROW
            else:
                assert type(g) is type(w) and str(g) == str(w)
        assert whole == all(type(g) is list for g in got)


def test_a_text_frame_decodes_to_the_plain_items_it_stands_for():
    """``[key, ids, texts]`` is the batch frame of ``[id, 0, 0, NO_ROW, {key: text}]``: the
    same items, taken whole, in fewer bytes."""
    texts = ["what is a ring?", "ünïcode ✓", "", "x" * 300]
    data = ENC.request_texts("query", [1, 2, 2**63 - 1, 0], texts)
    want = [
        [rid, 0, 0, NO_ROW, {"query": t}]
        for rid, t in zip([1, 2, 2**63 - 1, 0], texts, strict=True)
    ]
    assert DEC.request_rows(data) == (want, True)
    assert DEC.requests(data) == [Request(*w) for w in want]
    batch = ENC.request_batch([(w[0], 0, 0, NO_ROW, msgpack.packb(w[4])) for w in want])
    assert DEC.request_rows(batch) == (want, True) and len(data) < len(batch)


def test_a_text_frame_item_that_is_not_valid_gets_its_own_error():
    """A bad id or a text that is not a str fails that item alone, with the error the same
    item would get in a batch frame; the others are still taken."""
    frame = ["query", [1, -5, 3, 4, True], ["ok", "bad id", 7, ["a list"], "bool id"]]
    got, whole = DEC.request_rows(msgpack.packb(frame))
    assert not whole and len(got) == 5
    assert got[0] == [1, 0, 0, NO_ROW, {"query": "ok"}]
    assert type(got[1]) is FrameError and got[1].id is None  # (an id out of range is none)
    assert type(got[2]) is list and got[2][4] == {"query": 7}  # a flat value is plain still
    assert type(got[3]) is Request and got[3].payload == {"query": ["a list"]}
    assert type(got[4]) is FrameError
    items = [[i, 0, 0, NO_ROW, {"query": t}] for i, t in zip(frame[1], frame[2], strict=True)]
    want = DEC.requests(_batch(items))
    assert [str(g) for g in got if type(g) is FrameError] == [
        str(w) for w in want if type(w) is FrameError
    ]


def test_a_text_frame_over_the_request_limit_checks_each_payload():
    from stratabatch.ipc.frames import FrameLimits

    dec = FrameDecoder(FrameLimits(max_request_bytes=64))
    data = ENC.request_texts("query", [1, 2], ["short", "y" * 100])
    got, whole = dec.request_rows(data)
    assert not whole and got[0] == Request(1, 0, 0, NO_ROW, {"query": "short"})
    assert type(got[1]) is FrameError and got[1].id == 2 and "max_request_bytes" in str(got[1])


def test_a_text_frame_of_the_wrong_shape_is_refused_whole():
    import pytest

    for frame, match in (
        (["query", [1, 2], ["a"]], "same length"),
        (["query", [], []], "at least 1"),
        (["query", [1], ["a"], "extra"], "deadlines are an array as long as its ids"),
        (["query", [1, 2], ["a", "b"], [0]], "deadlines are an array as long as its ids"),
        (["query", [1], ["a"], [0], "extra"], "got an array of 5 items"),
        (["query", 1, "a"], "ids and texts arrays"),
    ):
        with pytest.raises(FrameError, match=match):
            DEC.request_rows(msgpack.packb(frame))


def test_the_text_frame_encoder_refuses_what_the_decoder_would_not_take_whole():
    import pytest

    from stratabatch.ipc.frames import FrameLimits, FrameTooLargeError

    with pytest.raises(FrameError, match="columns of the same length"):
        ENC.request_texts("query", [1, 2], ["a"])
    with pytest.raises(FrameError, match="2 texts and 1 deadlines"):
        ENC.request_texts("query", [1, 2], ["a", "b"], [0])
    for bad in (-1, 2**63, True, 1.5):
        with pytest.raises(FrameError, match="deadline_ns must be an int"):
            ENC.request_texts("query", [1, 2], ["a", "b"], [5, bad])  # type: ignore[list-item]
    with pytest.raises(FrameError, match="holds 1 to"):
        ENC.request_texts("query", [], [])
    with pytest.raises(FrameError, match="key must be a str"):
        ENC.request_texts(b"query", [1], ["a"])  # type: ignore[arg-type]
    with pytest.raises(FrameError, match="request id must be an int"):
        ENC.request_texts("query", [1, -1], ["a", "b"])
    with pytest.raises(FrameError, match="request id must be an int"):
        ENC.request_texts("query", [True], ["a"])
    with pytest.raises(FrameError, match="str texts, got 5"):
        ENC.request_texts("query", [1, 2], ["a", 5])  # type: ignore[list-item]
    small = FrameEncoder(FrameLimits(max_frame_bytes=256))
    with pytest.raises(FrameTooLargeError, match="over the frame limit of 256"):
        small.request_texts("query", list(range(10)), ["z" * 40] * 10)


def test_request_columns_gives_a_valid_text_frame_as_its_columns():
    from stratabatch.ipc.frames import TextColumns

    data = ENC.request_texts("query", [4, 5], ["a", "b"])
    cols, plain = DEC.request_columns(data)
    assert plain and type(cols) is TextColumns and len(cols) == 2
    assert (cols.key, cols.ids, cols.texts) == ("query", [4, 5], ["a", "b"])
    assert cols.rows() == DEC.request_rows(data)[0]
    # a frame with a bad item, or of another kind: what request_rows gives
    bad = msgpack.packb(["query", [4, -5], ["a", "b"]])
    got, want = DEC.request_columns(bad), DEC.request_rows(bad)
    assert got[1] is want[1] is False and got[0][0] == want[0][0]
    assert str(got[0][1]) == str(want[0][1]) and type(got[0][1]) is FrameError
    batch = _batch([[1, 0, 0, NO_ROW, {"query": "a"}]])
    assert DEC.request_columns(batch) == DEC.request_rows(batch)


def test_a_text_frame_with_deadlines_stands_for_the_items_with_them():
    """``[key, ids, texts, deadlines]`` is the batch frame of ``[id, 0, deadline_ns, NO_ROW,
    {key: text}]`` (0: no deadline); its columns keep the deadlines for the engine's lane."""
    from stratabatch.ipc.frames import TextColumns

    ids, texts, dls = [1, 2, 3], ["a", "b", "c"], [10**18, 0, 2**63 - 1]
    data = ENC.request_texts("query", ids, texts, dls)
    want = [[i, 0, d, NO_ROW, {"query": t}] for i, t, d in zip(ids, texts, dls, strict=True)]
    assert DEC.request_rows(data) == (want, True)
    assert DEC.requests(data) == [Request(*w) for w in want]
    cols, plain = DEC.request_columns(data)
    assert plain and type(cols) is TextColumns and cols.deadlines == dls
    assert cols.rows() == want
    # without deadlines, none: the three-column frame, the smaller one
    plain3 = ENC.request_texts("query", ids, texts)
    assert DEC.request_columns(plain3)[0].deadlines is None and len(plain3) < len(data)


def test_a_text_frames_bad_deadline_fails_that_item_alone():
    """A deadline that is not an int in range fails its item with the error the same item of
    a batch frame gets; the others are still taken, with their deadlines."""
    frame = ["query", [1, 2, 3, 4], ["a", "b", "c", "d"], [5, -1, True, 2**64 - 1]]
    got, whole = DEC.request_rows(msgpack.packb(frame))
    assert not whole and len(got) == 4
    assert got[0] == [1, 0, 5, NO_ROW, {"query": "a"}]
    items = [[i, 0, d, NO_ROW, {"query": t}] for i, t, d in zip(*frame[1:], strict=True)]
    want = DEC.requests(_batch(items))
    assert [type(g) for g in got[1:]] == [FrameError] * 3
    assert [(g.id, str(g)) for g in got[1:]] == [(w.id, str(w)) for w in want[1:]]
