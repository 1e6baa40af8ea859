"""Embedding arena: partition, checked writes, reads, header, and sharing across processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from stratabatch.ipc.arena import (
    ARENA_MAGIC,
    ENGINE,
    HEADER_BYTES,
    Arena,
    ArenaError,
)
from stratabatch.ipc.errors import IpcError, SegmentLayoutError
from stratabatch.ipc.segment import Segment, segment_name
from tests.conftest import run_name

GEOMETRY = dict(dim=8, slots=3, rows_per_slot=4, engine_rows=5)


def make(geometry: dict = GEOMETRY) -> tuple[bytearray, Arena]:
    buf = bytearray(Arena.nbytes(**geometry))
    return buf, Arena.create(buf, **geometry)


def test_partition_covers_every_row_once():
    buf, eng = make()
    assert eng.rows == 3 * 4 + 5 == eng.matrix.shape[0]
    assert Arena.nbytes(**GEOMETRY) == HEADER_BYTES + 17 * 8 * 4
    ranges = [eng.slot_range(s) for s in range(3)] + [eng.engine_range()]
    assert [(r.start, r.stop) for r in ranges] == [(0, 4), (4, 8), (8, 12), (12, 17)]
    assert eng.own_range == eng.engine_range() and eng.owner == ENGINE
    assert Arena.attach(buf, owner=2).own_range == range(8, 12)
    with pytest.raises(ValueError, match=r"slot must be in \[0, 3\), got 3"):
        eng.slot_range(3)


def test_write_read_round_trip_and_zero_copy_matrix():
    buf, eng = make()
    client = Arena.attach(buf, owner=1)
    vec = np.arange(8, dtype=np.float64) / 3  # float64 in, float32 stored
    client.write_row(5, vec)
    assert client.read_row(5).dtype == np.float32
    np.testing.assert_array_equal(eng.read_row(5), vec.astype(np.float32))
    assert np.shares_memory(eng.matrix, np.frombuffer(buf, np.uint8))
    np.testing.assert_array_equal(eng.matrix[5], vec.astype(np.float32))
    assert not eng.matrix.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        eng.matrix[0, 0] = 1.0

    mat = np.arange(3 * 8, dtype=np.int32).reshape(3, 8)  # integers are fine
    assert eng.write_rows(13, mat) == range(13, 16)
    expected = np.vstack([mat[2], mat[0], vec]).astype(np.float32)
    np.testing.assert_array_equal(eng.read_rows([15, 13, 5]), expected)
    np.testing.assert_array_equal(eng.view(13, 16), mat)
    assert eng.read_rows(np.array([], dtype=np.int64)).shape == (0, 8)
    returned = eng.read_rows([13])
    returned[0, 0] = 99.0  # a copy: the arena does not change
    assert eng.read_row(13)[0] == 0.0


@pytest.mark.parametrize(
    ("vec", "match"),
    [
        (np.ones(7), r"vector must have shape \(8,\), got \(7,\)"),
        (np.ones((1, 8)), r"vector must have shape \(8,\), got \(1, 8\)"),
        (
            [1.0] * 3 + [float("nan")] + [1.0] * 4,
            "vector must be finite in float32, got nan at index 3",
        ),
        (np.r_[np.ones(7), np.inf], "finite in float32, got inf at index 7"),
        (np.r_[np.ones(7), 1e39], "finite in float32, got 1e\\+39 at index 7"),
        (np.ones(8, dtype=complex), "must hold real numbers, got dtype complex128"),
        (np.ones(8, dtype=bool), "must hold real numbers, got dtype bool"),
        (["a"] * 8, "must hold real numbers"),
    ],
)
def test_write_row_rejects_bad_vectors(vec, match):
    buf, eng = make()
    with pytest.raises(ArenaError, match=match):
        eng.write_row(12, vec)
    assert not eng.matrix.any()  # nothing was written


def test_write_rows_rejects_bad_matrices_without_writing():
    buf, eng = make()
    with pytest.raises(ArenaError, match=r"matrix must have shape \(n, 8\), got \(8,\)"):
        eng.write_rows(12, np.ones(8))
    with pytest.raises(ArenaError, match=r"matrix must have shape \(n, 8\), got \(2, 9\)"):
        eng.write_rows(12, np.ones((2, 9)))
    bad = np.ones((3, 8))
    bad[2, 6] = np.nan
    with pytest.raises(ArenaError, match=r"finite in float32, got nan at index \(2, 6\)"):
        eng.write_rows(12, bad)
    assert not eng.matrix.any()
    assert isinstance(ArenaError("x"), (IpcError, ValueError))


def test_writes_outside_the_owners_rows_are_refused():
    buf, eng = make()
    client = Arena.attach(buf, owner=1)  # rows [4, 8)
    for row in (3, 8, 12, 16):
        with pytest.raises(
            ArenaError,
            match=rf"rows \[{row}, {row + 1}\) are outside the rows "
            r"of slot 1, \[4, 8\)",
        ):
            client.write_row(row, np.ones(8))
    with pytest.raises(ArenaError, match=r"rows \[6, 9\) are outside the rows of slot 1"):
        client.write_rows(6, np.ones((3, 8)))  # straddles into slot 2: nothing written
    with pytest.raises(ArenaError, match="outside the rows of the engine, \\[12, 17\\)"):
        eng.write_row(0, np.ones(8))
    with pytest.raises(ArenaError, match="outside the rows"):
        eng.write_rows(15, np.ones((3, 8)))  # runs past the end
    with pytest.raises(ArenaError, match="outside the rows"):
        client.write_row(-1, np.ones(8))  # no wrap-around
    assert not eng.matrix.any()
    client.write_row(np.int64(7), np.ones(8))  # numpy integers are rows too
    with pytest.raises(ArenaError, match="row must be an integer, got bool"):
        client.write_row(True, np.ones(8))
    with pytest.raises(ArenaError, match="row must be an integer, got float"):
        client.write_row(4.0, np.ones(8))


def test_read_index_checks():
    buf, eng = make()
    with pytest.raises(ArenaError, match=r"row must be in \[0, 17\), got 17"):
        eng.read_row(17)
    with pytest.raises(ArenaError, match=r"row indices must be in \[0, 17\), got -1"):
        eng.read_rows([0, -1])
    with pytest.raises(ArenaError, match="got 99"):
        eng.read_rows(np.array([[1, 99]]))
    with pytest.raises(ArenaError, match="row indices must be integers, got dtype float64"):
        eng.read_rows([1.0])
    with pytest.raises(ArenaError, match="need 0 <= start <= stop <= 17"):
        eng.view(5, 18)


def test_header_is_checked_on_attach():
    buf, _ = make()
    with pytest.raises(ValueError, match=r"owner must be a slot in \[0, 3\) or ENGINE"):
        Arena.attach(buf, owner=3)
    bad = bytearray(buf)
    bad[:8] = b"SBARENA9"
    with pytest.raises(SegmentLayoutError, match="not an arena: magic b'SBARENA9'"):
        Arena.attach(bad, owner=0)
    bad = bytearray(buf)
    bad[8] = 2
    with pytest.raises(SegmentLayoutError, match="arena layout version 2 .* supported version 1"):
        Arena.attach(bad, owner=0)
    with pytest.raises(SegmentLayoutError, match="inconsistent arena header"):
        Arena.attach(buf[:-4], owner=0)
    bad = bytearray(buf)
    bad[32] += 1  # total rows no longer matches the partition
    with pytest.raises(SegmentLayoutError, match="inconsistent arena header: 18 rows"):
        Arena.attach(bad, owner=0)
    with pytest.raises(SegmentLayoutError, match="at least 64 bytes"):
        Arena.attach(bytearray(10), owner=0)
    assert bytes(buf[:8]) == ARENA_MAGIC


def test_create_checks_geometry_and_buffer():
    with pytest.raises(ValueError, match=r"dim must be an integer in \[1, 65536\], got 0"):
        Arena.nbytes(dim=0, slots=1, rows_per_slot=1, engine_rows=1)
    with pytest.raises(ValueError, match="at least one row"):
        Arena.nbytes(dim=4, slots=0, rows_per_slot=0, engine_rows=0)
    with pytest.raises(ValueError, match="needs a writable buffer of 192 bytes, got 100"):
        Arena.create(bytearray(100), dim=4, slots=1, rows_per_slot=4, engine_rows=4)
    with pytest.raises(ValueError, match="read-only"):
        Arena.create(bytes(192), dim=4, slots=1, rows_per_slot=4, engine_rows=4)


CLIENT_CODE = """
    import sys
    import numpy as np
    from stratabatch.ipc.arena import Arena, ArenaError
    from stratabatch.ipc.segment import Segment

    seg = Segment.attach(sys.argv[1], magic=b"SBARENA0", version=1)
    arena = Arena.attach(seg.buf, owner=1)
    # read what the engine wrote before starting us
    engine_rows = arena.read_rows(list(arena.engine_range()))
    print("engine-sum", repr(float(engine_rows.astype(np.float64).sum())), flush=True)
    rng = np.random.default_rng(int(sys.argv[2]))
    mine = arena.own_range
    arena.write_rows(mine.start, rng.standard_normal((len(mine), arena.dim)))
    try:
        arena.write_row(0, np.ones(arena.dim))
    except ArenaError as exc:
        print("refused", exc, flush=True)
    arena.close()
    seg.close()
    print("done", flush=True)
"""


def test_second_process_shares_rows_both_ways():
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"seed {seed}")
    geometry = dict(dim=384, slots=4, rows_per_slot=64, engine_rows=128)
    name = segment_name(run_name("t"), "arena")
    with Segment.create(name, Arena.nbytes(**geometry), magic=b"SBARENA0", version=1) as seg:
        eng = Arena.create(seg.buf, **geometry)
        engine_vectors = np.random.default_rng(seed + 1).random((128, 384), dtype=np.float32)
        eng.write_rows(eng.engine_range().start, engine_vectors)
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(CLIENT_CODE), name, str(seed)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0] == f"engine-sum {float(engine_vectors.astype(np.float64).sum())!r}"
        assert lines[1].startswith("refused rows [0, 1) are outside the rows of slot 1")
        assert lines[2] == "done"
        expected = np.random.default_rng(seed).standard_normal((64, 384)).astype(np.float32)
        np.testing.assert_array_equal(eng.read_rows(np.arange(64, 128)), expected)
        assert not eng.view(0, 64).any() and not eng.view(128, 256).any()
        eng.close()
