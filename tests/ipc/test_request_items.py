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
