"""Shared-memory segments: header checks, ownership, stale reclaim, mode, tracker-free attach."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from stratabatch.ipc.errors import (
    IpcError,
    SegmentExistsError,
    SegmentLayoutError,
    SegmentNotFoundError,
)
from stratabatch.ipc.segment import HEADER_BYTES, Segment, segment_name
from tests.conftest import run_name

MAGIC = b"SBTEST01"


@pytest.fixture
def name():
    n = segment_name(run_name("t"), "seg")
    yield n
    try:
        os.unlink(f"/dev/shm/{n}")
    except FileNotFoundError:
        pass


def _child(code: str, *args: str) -> subprocess.Popen:
    """Start an unrelated Python process (own resource tracker) running ``code``."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


OWNER_CODE = """
    import sys
    from stratabatch.ipc.segment import Segment
    seg = Segment.create(sys.argv[1], 4096, magic=b"SBTEST01", version=1)
    seg.buf[:5] = b"hello"
    print("ready", flush=True)
    sys.stdin.readline()
    seg.close()
"""


def test_segment_name_format_and_validation():
    n = segment_name("default", "ring-3")
    assert n == f"stratabatch-{os.getuid()}-default-ring-3"
    for bad in ["", "a/b", "x" * 49, "sp ace", "ü"]:
        with pytest.raises(ValueError, match="engine name"):
            segment_name(bad, "x")
    with pytest.raises(ValueError, match="part"):
        segment_name("ok", "a/b")


def test_create_attach_share_payload(name):
    with Segment.create(name, 1000, magic=MAGIC, version=7) as own:
        assert own.is_owner and own.size == 1000 and own.owner_pid == os.getpid()
        assert abs(own.created_ns - time.time_ns()) < 60e9
        assert np.frombuffer(own.buf, np.uint8).ctypes.data % 64 == 0
        assert len(own.buf) == 1000
        a = own.array(np.int64, 64, 4)
        a[:] = [1, 2, 3, 4]
        with Segment.attach(name, magic=MAGIC, version=7) as rd:
            assert not rd.is_owner
            assert (rd.name, rd.size, rd.owner_pid, rd.created_ns) == (
                name,
                1000,
                own.owner_pid,
                own.created_ns,
            )
            assert rd.array(np.int64, 64, 4).tolist() == [1, 2, 3, 4]
            rd.buf[999] = 42
        assert own.buf[999] == 42
        assert os.path.exists(f"/dev/shm/{name}")  # the reader's close never unlinks
    assert not os.path.exists(f"/dev/shm/{name}")


def test_mode_is_0600_under_permissive_umask(name):
    old = os.umask(0)
    try:
        seg = Segment.create(name, 64, magic=MAGIC, version=1)
    finally:
        os.umask(old)
    try:
        assert os.stat(f"/dev/shm/{name}").st_mode & 0o777 == 0o600
    finally:
        seg.close()


def test_attach_rejects_wrong_magic_version_and_size(name):
    with Segment.create(name, 128, magic=MAGIC, version=2):
        with pytest.raises(SegmentLayoutError, match="magic"):
            Segment.attach(name, magic=b"OTHERMAG", version=2)
        with pytest.raises(SegmentLayoutError, match="layout version 2.*version 3"):
            Segment.attach(name, magic=MAGIC, version=3)
        # grow the file behind the header's back: the recorded size no longer matches
        fd = os.open(f"/dev/shm/{name}", os.O_RDWR)
        try:
            os.ftruncate(fd, HEADER_BYTES + 256)
        finally:
            os.close(fd)
        with pytest.raises(SegmentLayoutError, match="header says 64\\+128"):
            Segment.attach(name, magic=MAGIC, version=2)


def test_attach_rejects_incomplete_header_and_missing_segment(name):
    fd = os.open(f"/dev/shm/{name}", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        with pytest.raises(SegmentLayoutError, match="smaller than"):
            Segment.attach(name, magic=MAGIC, version=1)
        os.ftruncate(fd, 4096)
        with pytest.raises(SegmentLayoutError, match="never completed"):
            Segment.attach(name, magic=MAGIC, version=1)
    finally:
        os.close(fd)
    os.unlink(f"/dev/shm/{name}")
    with pytest.raises(SegmentNotFoundError, match="no shared-memory segment"):
        Segment.attach(name, magic=MAGIC, version=1)


def test_argument_validation(name):
    with pytest.raises(ValueError, match="segment name"):
        Segment.create("/nope", 10, magic=MAGIC, version=1)
    with pytest.raises(ValueError, match="segment name"):
        Segment.create("other-prefix", 10, magic=MAGIC, version=1)
    with pytest.raises(ValueError, match="size"):
        Segment.create(name, 0, magic=MAGIC, version=1)
    with pytest.raises(ValueError, match="magic"):
        Segment.create(name, 10, magic=b"short", version=1)
    with pytest.raises(ValueError, match="version"):
        Segment.create(name, 10, magic=MAGIC, version=0)
    assert not os.path.exists(f"/dev/shm/{name}")


def test_array_bounds_and_alignment(name):
    with Segment.create(name, 100, magic=MAGIC, version=1) as seg:
        assert seg.array(np.float32, 96, 1).shape == (1,)
        with pytest.raises(ValueError, match="do not fit"):
            seg.array(np.float32, 96, 2)
        with pytest.raises(ValueError, match="multiple of 8"):
            seg.array(np.int64, 4, 1)


def test_close_is_idempotent_and_views_survive(name):
    seg = Segment.create(name, 64, magic=MAGIC, version=1)
    view = seg.array(np.int64, 0, 8)
    view[:] = 5
    seg.close()
    seg.close()
    assert seg.closed and not os.path.exists(f"/dev/shm/{name}")
    assert view.sum() == 40  # still mapped until the view goes away
    with pytest.raises(ValueError, match="closed"):
        _ = seg.buf
    seg.unlink()  # already gone: no error


def test_late_close_does_not_unlink_a_newer_segment(name):
    old = Segment.create(name, 64, magic=MAGIC, version=1)
    os.unlink(f"/dev/shm/{name}")  # someone removed it by hand...
    new = Segment.create(name, 64, magic=MAGIC, version=1)  # ...and a new owner took the name
    old.close()
    assert os.path.exists(f"/dev/shm/{name}")
    new.close()
    assert not os.path.exists(f"/dev/shm/{name}")


def test_live_owner_in_same_process_means_already_running(name):
    with Segment.create(name, 64, magic=MAGIC, version=1):
        with pytest.raises(SegmentExistsError, match=f"owner pid {os.getpid()}") as info:
            Segment.create(name, 64, magic=MAGIC, version=1)
        assert info.value.pid == os.getpid()
        assert isinstance(info.value, FileExistsError) and isinstance(info.value, IpcError)


def test_live_owner_in_other_process_means_already_running(name):
    proc = _child(OWNER_CODE, name)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        with pytest.raises(SegmentExistsError, match="already running") as info:
            Segment.create(name, 64, magic=MAGIC, version=1)
        assert info.value.pid == proc.pid
        assert str(proc.pid) in str(info.value)
        out, err = proc.communicate("\n", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert not os.path.exists(f"/dev/shm/{name}")


def test_stale_segment_of_sigkilled_owner_is_reclaimed(name):
    proc = _child(OWNER_CODE, name)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert os.path.exists(f"/dev/shm/{name}")  # the dead owner could not clean up
    stale = Segment.attach(name, magic=MAGIC, version=1)
    assert stale.owner_pid == proc.pid and bytes(stale.buf[:5]) == b"hello"
    stale.close()
    with Segment.create(name, 64, magic=MAGIC, version=1) as seg:
        assert seg.owner_pid == os.getpid() and seg.is_owner
        assert bytes(seg.buf[:5]) == bytes(5)  # a fresh, zeroed segment
    assert not os.path.exists(f"/dev/shm/{name}")


def test_old_headerless_leftover_is_reclaimed(name):
    # A creator that died between shm_open and writing its header leaves this behind.
    fd = os.open(f"/dev/shm/{name}", os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    past = time.time() - 60
    os.utime(f"/dev/shm/{name}", (past, past))
    with Segment.create(name, 64, magic=MAGIC, version=1) as seg:
        assert seg.is_owner


def test_unrelated_reader_exit_neither_unlinks_nor_warns(name):
    reader = """
        import sys
        from stratabatch.ipc.segment import Segment
        seg = Segment.attach(sys.argv[1], magic=b"SBTEST01", version=1)
        print(bytes(seg.buf[:5]).decode(), flush=True)
        seg.close()
    """
    with Segment.create(name, 4096, magic=MAGIC, version=1) as seg:
        seg.buf[:5] = b"hello"
        for _ in range(2):
            proc = _child(reader, name)
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            assert out.strip() == "hello"
            assert "resource_tracker" not in err and "leaked" not in err, err
            assert os.path.exists(f"/dev/shm/{name}")


def test_forked_child_closing_inherited_owner_does_not_unlink(name):
    with Segment.create(name, 64, magic=MAGIC, version=1) as seg:
        pid = os.fork()
        if pid == 0:  # child: close the inherited owner object, then leave at once
            try:
                seg.close()
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert os.path.exists(f"/dev/shm/{name}")
        with pytest.raises(SegmentExistsError):  # and the parent still holds the lock
            Segment.create(name, 64, magic=MAGIC, version=1)
    assert not os.path.exists(f"/dev/shm/{name}")


def test_reclaim_stale_removes_dead_owners_segments_only():
    import subprocess
    import sys

    from stratabatch.ipc.segment import reclaim_stale

    engine = run_name("t")
    dead = segment_name(engine, "ring-7")
    code = (
        "from stratabatch.ipc.segment import Segment; import os; "
        f"s = Segment.create({dead!r}, 64, magic=b'SBTESTXX', version=1); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert os.path.exists(f"/dev/shm/{dead}")
    with Segment.create(segment_name(engine, "control"), 64, magic=b"SBTESTXX", version=1):
        assert reclaim_stale(engine) == [dead]  # the live one (ours) stays
        assert os.path.exists(f"/dev/shm/{segment_name(engine, 'control')}")
    assert not os.path.exists(f"/dev/shm/{dead}")
