"""Dedup keys and the leader matrix: normalization, canonical encodings, guards, compaction."""

from __future__ import annotations

import numpy as np

from stratabatch.dedup import (
    canonical_bytes,
    encode_request,
    normalize_key,
    number_guard,
    scope_of,
)
from stratabatch.index import LeaderIndex


def test_normalize_key_is_nfkc_casefold_and_whitespace_collapse():
    assert normalize_key("  Hello\tWORLD \n") == "hello world"
    assert normalize_key("ＨＥＬＬＯ Straße") == "hello strasse"  # full-width and ß
    assert normalize_key("a  b") == normalize_key("A B")


def test_number_guard_is_the_multiset_of_digit_runs():
    assert number_guard("order 123 on 5") == number_guard("5th: order #123")
    assert number_guard("order 123") != number_guard("order 124")
    assert number_guard("agent 007") == number_guard("agent 7")
    assert number_guard("no numbers") == ()
    assert number_guard("room ４２") == number_guard("room 42")  # full-width digits


def test_canonical_bytes_ignores_map_order_but_not_values():
    a = {"q": "x", "params": {"t": 0.5, "k": [1, 2]}}
    b = {"params": {"k": [1, 2], "t": 0.5}, "q": "x"}
    assert canonical_bytes(a) == canonical_bytes(b)
    assert canonical_bytes(a) != canonical_bytes({**a, "q": "y"})
    assert scope_of(a, ("params",)) == scope_of(b, ("params",))
    assert scope_of({"model": None}, ("model",)) != scope_of({}, ("model",))


def test_encode_request_carries_numpy_vectors_as_lists():
    vec = np.arange(3, dtype=np.float32)
    assert encode_request({"embedding": vec}) == encode_request({"embedding": [0.0, 1.0, 2.0]})


def test_leader_index_compacts_dead_rows_and_keeps_live_ones_in_place():
    class G:
        row = None

    idx = LeaderIndex()
    idx.dim = 4
    idx.compact_min_dead = 64  # the default waits for 4,096 dead rows
    groups = [G() for _ in range(100)]
    pids = [7 + i % 3 for i in range(100)]
    start = idx.append(np.eye(4, dtype=np.float32)[np.arange(100) % 4], pids)
    assert start == 0 and len(idx) == 100 and idx.part[:100].tolist() == pids
    for i, g in enumerate(groups):
        g.row = i
        idx.lead(i, g)
    assert idx.has_leaders_in([pids[0]]) and not idx.has_leaders_in([99])
    for g in groups[:80]:
        idx.drop(g.row)
        g.row = None
    before = {id(g): idx.mat[g.row].copy() for g in groups[80:]}
    start = idx.append(np.ones((1, 4), np.float32), [7])  # triggers compaction
    assert start == 20 and idx.dead == 0
    for g in groups[80:]:
        assert idx.owners[g.row] is g
        assert np.array_equal(idx.mat[g.row], before[id(g)])
        assert idx.part[g.row] == 7 + (groups.index(g) % 3)  # its partition moved with it
    for g in groups[80:]:
        idx.drop(g.row)
    assert not idx.has_leaders_in(pids)  # every leader of those partitions has left


def test_a_pass_normalizes_a_batch_of_texts_as_normalize_key_does() -> None:
    """The pass's batch normalization (grouping._normalized_ascii) gives each text its
    normalize_key, or declines (None) and leaves the texts to it: never another key."""
    import random

    from stratabatch.grouping import _normalized_ascii

    rng = random.Random(20)
    print("seed 20")
    pieces = ["a", "B", "x1", " ", "  ", "\t", "\n", "\x1f", "\0", "\u00e9", "\u00a0", "Q-3", ""]
    declined = 0
    for _ in range(3000):
        texts = [
            "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 6)))
            for _ in range(rng.randrange(1, 5))
        ]
        got = _normalized_ascii(texts)
        if got is None:
            declined += 1
            continue
        assert got == [normalize_key(t) for t in texts], texts
    assert 0 < declined < 3000
    assert _normalized_ascii(["Hello World", "q 3-12"]) == ["hello world", "q 3-12"]
    assert _normalized_ascii(["hello  world"]) is None
