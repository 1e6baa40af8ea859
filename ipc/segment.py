"""Named POSIX shared-memory segments with a self-describing header.

A segment is ``/dev/shm/<name>``: a 64-byte header followed by the payload, so the payload
starts 64-byte aligned (the mapping itself is page aligned)::

    offset  size  field
         0     8  magic            chosen by the segment's kind; written last (marks "ready")
         8     4  layout version   u32, chosen by the segment's kind
        12     4  header bytes     u32, always 64
        16     8  owner pid        i64
        24     8  created ns       i64, time.time_ns() of the creator
        32     8  payload bytes    u64
        40    24  reserved         zero

Liveness of the owner is an exclusive ``flock`` the creator holds on the segment's file for its
whole life: the kernel drops it when the owner exits, however it dies (SIGKILL included), and
it cannot be fooled by pid reuse. A creator that finds the name taken tries that lock: if it
gets it the segment is stale and is reclaimed, otherwise :class:`SegmentExistsError` names the
owner pid.

These segments never touch :mod:`multiprocessing.resource_tracker`. The stdlib's
``SharedMemory`` registers every attach (before 3.13) and the tracker unlinks everything
registered when the registering process tree exits, so a reader's exit deleted the engine's
segment; unregistering after the fact is wrong too because a forked or spawned child shares
its parent's tracker and would remove the owner's entry. Opening the segment ourselves with
``shm_open`` + ``mmap`` means nothing is ever registered; the owner unlinks on :meth:`close`
and a crashed owner's segment is reclaimed by the next creator.
"""

from __future__ import annotations

import _posixshmem
import fcntl
import mmap
import os
import re
import struct
import time
from typing import Any

import numpy as np

from stratabatch.ipc.errors import (
    SegmentExistsError,
    SegmentLayoutError,
    SegmentNotFoundError,
)

HEADER_BYTES = 64
"""Size of the segment header; the payload starts at this offset (64-byte aligned)."""

NAME_PREFIX = "stratabatch-"
"""Every segment name starts with this, so leaks are easy to find in /dev/shm."""

MAX_PAYLOAD_BYTES = 1 << 40
"""Largest payload accepted by :meth:`Segment.create` (1 TiB; a sanity bound, not a budget)."""

_HEADER = struct.Struct("<8sIIqqQ")  # magic, version, header bytes, pid, created ns, payload
_AFTER_MAGIC = struct.Struct("<IIqqQ")
_NAME_RE = re.compile(r"stratabatch-[A-Za-z0-9_.-]{1,200}")
_PART_RE = re.compile(r"[A-Za-z0-9_.-]{1,48}")
_ENGINE_RE = re.compile(r"[A-Za-z0-9_.-]{1,48}")
_CREATE_PATIENCE_S = 3.0
# A creator takes its lock right after shm_open; a lockable, headerless file younger than this
# may belong to a creator between those two calls, so it is left alone for a moment.
_YOUNG_HEADERLESS_S = 2.0


def segment_name(engine_name: str, part: str) -> str:
    """Build the segment name ``stratabatch-UID-ENGINE-PART`` for one engine's segment.

    Args:
        engine_name: The engine's name (``--name``): 1-48 characters of ``[A-Za-z0-9_.-]``.
        part: Which segment of that engine (``control``, ``ring-3``...), same alphabet.

    Returns:
        The name to pass to :meth:`Segment.create` / :meth:`Segment.attach` (no leading slash).

    Raises:
        ValueError: If either component is empty, too long or holds another character.
    """
    if not isinstance(engine_name, str) or not _ENGINE_RE.fullmatch(engine_name):
        raise ValueError(
            f"engine name must be 1-48 characters of [A-Za-z0-9_.-], got {engine_name!r}"
        )
    if not isinstance(part, str) or not _PART_RE.fullmatch(part):
        raise ValueError(f"segment part must be 1-48 characters of [A-Za-z0-9_.-], got {part!r}")
    return f"{NAME_PREFIX}{os.getuid()}-{engine_name}-{part}"


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(
            "segment name must be 'stratabatch-' followed by 1-200 characters of "
            f"[A-Za-z0-9_.-] (see segment_name()), got {name!r}"
        )
    return name


def _check_magic_version(magic: bytes, version: int) -> None:
    if not isinstance(magic, bytes) or len(magic) != 8 or magic == bytes(8):
        raise ValueError(f"magic must be 8 bytes, not all zero, got {magic!r}")
    if not isinstance(version, int) or not 1 <= version < 2**32:
        raise ValueError(f"layout version must be an int in [1, 2**32), got {version!r}")


def _shm_open(name: str, flags: int, mode: int = 0o600) -> int:
    return _posixshmem.shm_open("/" + name, flags, mode=mode)


def _read_pid(fd: int) -> int:
    """Owner pid from a segment's header, or 0 if no complete header is there."""
    try:
        raw = os.pread(fd, HEADER_BYTES, 0)
    except OSError:
        return 0
    if len(raw) < HEADER_BYTES or raw[:8] == bytes(8):
        return 0
    return _HEADER.unpack_from(raw)[3]


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (ours or another user's)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Segment:
    """A named shared-memory segment: a 64-byte header and a payload.

    Create one with :meth:`create` (the owner: unlinks the name on :meth:`close`) or
    :meth:`attach` (a reader or client: only unmaps). Usable as a context manager.

    Views handed out by :attr:`buf` and :meth:`array` keep the mapping alive after
    :meth:`close` until they are garbage-collected; the name is unlinked at once regardless.
    """

    def __init__(self, name: str, fd: int, mm: mmap.mmap, *, owner: bool) -> None:
        """Wrap an open, mapped, validated segment; use :meth:`create` or :meth:`attach`."""
        self._name = name
        self._fd = fd
        self._mmap: mmap.mmap | None = mm
        self._is_owner = owner
        self._opened_by = os.getpid()
        _, self._version, _, self._pid, self._created_ns, self._size = _HEADER.unpack_from(mm)
        self._magic = bytes(mm[:8])
        st = os.fstat(fd)
        self._ident = (st.st_dev, st.st_ino)
        self._buf: memoryview | None = memoryview(mm)[HEADER_BYTES : HEADER_BYTES + self._size]
        if not owner:
            # Readers need no descriptor once mapped; only the owner's holds the liveness lock.
            os.close(fd)
            self._fd = -1

    # ----------------------------------------------------------------- construction

    @classmethod
    def create(cls, name: str, size: int, *, magic: bytes, version: int) -> Segment:
        """Create and own a new segment, reclaiming a stale one left by a dead owner.

        The file is created with mode 0600 whatever the umask, zero-filled, and its header is
        written with the magic last so an attacher never sees a half-written header as valid.

        Args:
            name: Segment name, ``stratabatch-...`` (see :func:`segment_name`).
            size: Payload size in bytes, >= 1.
            magic: 8 bytes identifying the kind of segment.
            version: Layout version of the payload, in [1, 2**32).

        Returns:
            The owning :class:`Segment`.

        Raises:
            SegmentExistsError: A live process owns a segment of that name ("already running").
            ValueError: A malformed name, size, magic or version.
        """
        _check_name(name)
        _check_magic_version(magic, version)
        if not isinstance(size, int) or not 1 <= size <= MAX_PAYLOAD_BYTES:
            raise ValueError(f"segment size must be an int in [1, 2**40] bytes, got {size!r}")
        deadline = time.monotonic() + _CREATE_PATIENCE_S
        while time.monotonic() < deadline:
            try:
                fd = _shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR)
            except FileExistsError:
                _reclaim_or_raise(name)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.fchmod(fd, 0o600)  # shm_open applies the umask; make the mode exact
                os.ftruncate(fd, HEADER_BYTES + size)
                mm = mmap.mmap(fd, HEADER_BYTES + size)
            except BaseException:
                _unlink_if_same(name, fd)
                os.close(fd)
                raise
            _AFTER_MAGIC.pack_into(mm, 8, version, HEADER_BYTES, os.getpid(), time.time_ns(), size)
            mm[:8] = magic
            return cls(name, fd, mm, owner=True)
        raise SegmentExistsError(
            f"could not create segment {name!r} within {_CREATE_PATIENCE_S} s: another "
            "process keeps recreating it",
            name=name,
            pid=0,
        )

    @classmethod
    def attach(cls, name: str, *, magic: bytes, version: int) -> Segment:
        """Map an existing segment after checking its magic, layout version and size.

        Nothing is registered with multiprocessing's resource tracker, so the attaching
        process's exit never unlinks the segment nor warns about it.

        Args:
            name: Segment name, ``stratabatch-...``.
            magic: The 8-byte magic the caller expects.
            version: The layout version the caller reads.

        Returns:
            A non-owning :class:`Segment`.

        Raises:
            SegmentNotFoundError: No segment of that name exists.
            SegmentLayoutError: Wrong magic or version, inconsistent size, incomplete header.
        """
        _check_name(name)
        _check_magic_version(magic, version)
        try:
            fd = _shm_open(name, os.O_RDWR)
        except FileNotFoundError:
            raise SegmentNotFoundError(
                f"no shared-memory segment named {name!r} (is its owner running?)"
            ) from None
        try:
            total = os.fstat(fd).st_size
            if total < HEADER_BYTES:
                raise SegmentLayoutError(
                    f"segment {name!r} is {total} bytes, smaller than its {HEADER_BYTES}-byte "
                    "header (not initialised yet, or not a stratabatch segment)"
                )
            mm = mmap.mmap(fd, total)
        except BaseException:
            os.close(fd)
            raise
        try:
            seen_magic, seen_version, hdr, pid, _, size = _HEADER.unpack_from(mm)
            if seen_magic == bytes(8):
                raise SegmentLayoutError(
                    f"segment {name!r} has no magic: its header was never completed "
                    "(the creator is still starting, or died while creating it)"
                )
            if seen_magic != magic:
                raise SegmentLayoutError(
                    f"segment {name!r} has magic {seen_magic!r}, expected {magic!r}"
                )
            if seen_version != version:
                raise SegmentLayoutError(
                    f"segment {name!r} has layout version {seen_version}, this code reads "
                    f"version {version} (engine and client from different releases?)"
                )
            if hdr != HEADER_BYTES or HEADER_BYTES + size != total:
                raise SegmentLayoutError(
                    f"segment {name!r} header says {hdr}+{size} bytes but the file is {total} "
                    f"bytes (expected {HEADER_BYTES}-byte header + payload)"
                )
        except BaseException:
            mm.close()
            os.close(fd)
            raise
        return cls(name, fd, mm, owner=False)

    # ----------------------------------------------------------------- properties

    @property
    def name(self) -> str:
        """The segment name (without the leading slash POSIX uses)."""
        return self._name

    @property
    def size(self) -> int:
        """Payload size in bytes."""
        return self._size

    @property
    def owner_pid(self) -> int:
        """Pid of the process that created the segment."""
        return self._pid

    @property
    def created_ns(self) -> int:
        """Creation time, ``time.time_ns()`` of the creator."""
        return self._created_ns

    @property
    def magic(self) -> bytes:
        """The 8-byte magic in the header."""
        return self._magic

    @property
    def version(self) -> int:
        """The layout version in the header."""
        return self._version

    @property
    def is_owner(self) -> bool:
        """True for the creator, which unlinks the name on :meth:`close`."""
        return self._is_owner

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._mmap is None

    @property
    def buf(self) -> memoryview:
        """Writable memoryview of the payload; its first byte is 64-byte aligned."""
        if self._buf is None:
            raise ValueError(f"segment {self._name!r} is closed")
        return self._buf

    def array(self, dtype: Any, offset: int, count: int) -> np.ndarray:
        """Return a 1-D numpy view of ``count`` items of ``dtype`` at ``offset`` in the payload.

        Args:
            dtype: Any numpy dtype.
            offset: Byte offset into the payload, a multiple of the dtype's item size.
            count: Number of items, >= 0.

        Raises:
            ValueError: Misaligned offset, or the view would run past the payload.
        """
        if self._mmap is None:
            raise ValueError(f"segment {self._name!r} is closed")
        dt = np.dtype(dtype)
        if not isinstance(offset, int) or offset < 0 or offset % max(dt.alignment, 1):
            raise ValueError(
                f"offset must be a non-negative multiple of {dt.alignment} for {dt}, got {offset!r}"
            )
        if not isinstance(count, int) or count < 0 or offset + count * dt.itemsize > self._size:
            raise ValueError(
                f"{count!r} items of {dt} at offset {offset} do not fit the "
                f"{self._size}-byte payload of {self._name!r}"
            )
        return np.frombuffer(self._mmap, dtype=dt, count=count, offset=HEADER_BYTES + offset)

    # ----------------------------------------------------------------- teardown

    def unlink(self) -> None:
        """Remove the name from /dev/shm (mappings stay valid). Idempotent.

        Only removes the name if it still refers to this segment, so a late call never deletes
        a newer segment that reused the name.
        """
        try:
            fd = _shm_open(self._name, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == self._ident:
                try:
                    _posixshmem.shm_unlink("/" + self._name)
                except FileNotFoundError:
                    pass
        finally:
            os.close(fd)

    def close(self) -> None:
        """Unmap the segment; the owner also unlinks the name and drops its lock. Idempotent.

        In a forked child, closing an inherited owner object only unmaps it there.

        Views still alive (from :attr:`buf` or :meth:`array`) keep the memory mapped until they
        are released; closing never invalidates them under a running kernel.
        """
        if self._mmap is None:
            return
        # A forked child holds a copy of its parent's owner object: only the creating process
        # unlinks, or a worker's exit would delete the engine's segment.
        if self._is_owner and os.getpid() == self._opened_by:
            self.unlink()
        buf, mm, self._buf, self._mmap = self._buf, self._mmap, None, None
        try:
            if buf is not None:
                buf.release()
            mm.close()
        except BufferError:
            pass  # exported views remain; the mapping goes away with the last of them
        if self._fd >= 0:
            os.close(self._fd)  # drops the owner's liveness lock
            self._fd = -1

    def __enter__(self) -> Segment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._mmap is None else ("owner" if self._is_owner else "attached")
        return (
            f"<Segment {self._name!r} {self._size} bytes v{self._version} pid={self._pid} {state}>"
        )


def _unlink_if_same(name: str, fd: int) -> bool:
    """Unlink ``name`` if it still refers to the file open as ``fd``; True if it did."""
    mine = os.fstat(fd)
    try:
        other = _shm_open(name, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        st = os.fstat(other)
        if (st.st_dev, st.st_ino) != (mine.st_dev, mine.st_ino):
            return False
        try:
            _posixshmem.shm_unlink("/" + name)
        except FileNotFoundError:
            return False
        return True
    finally:
        os.close(other)


def _reclaim_or_raise(name: str) -> None:
    """Remove a stale segment ``name``, or raise if a live owner holds it.

    Returns normally when the caller should retry creating the name (reclaimed, vanished, or
    a creator is mid-way and should be given a moment).
    """
    try:
        fd = _shm_open(name, os.O_RDWR)
    except FileNotFoundError:
        return  # the holder unlinked it meanwhile
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = 0
            deadline = time.monotonic() + 1.0
            while pid == 0 and time.monotonic() < deadline:
                pid = _read_pid(fd)  # a creator may still be writing its header
                if pid == 0:
                    time.sleep(0.005)
            if pid and not pid_alive(pid):
                who = f"pid {pid} is dead, but a process it forked still holds the segment"
            else:
                who = f"owner pid {pid}" if pid else "owner pid unknown"
            raise SegmentExistsError(
                f"segment {name!r} is in use by a live process ({who}): already running; "
                "stop it first or choose another engine name",
                name=name,
                pid=pid,
            ) from None
        # We hold the lock, so no creator does: the segment is stale unless it is a creator's
        # brand-new file between its shm_open and its flock.
        st = os.fstat(fd)
        if _read_pid(fd) == 0 and time.time() - st.st_mtime < _YOUNG_HEADERLESS_S:
            time.sleep(0.005)
            return
        _unlink_if_same(name, fd)
    finally:
        os.close(fd)  # also releases our lock


def reclaim_stale(engine_name: str) -> list[str]:
    """Unlink every segment of ``engine_name`` whose owner is dead; return the names removed.

    An engine calls this once it holds its control segment (which proves no other live engine
    of that name exists), so that segments a crashed predecessor created under names the new
    engine may never reuse (a ring of a slot it will not hand out) do not stay behind. A
    segment whose owner lock is still held (a live process, perhaps an engine whose name
    merely shares this prefix) is left alone.
    """
    prefix = segment_name(engine_name, "x")[:-1]
    try:
        entries = os.listdir("/dev/shm")
    except FileNotFoundError:
        return []
    removed = []
    for entry in entries:
        if not entry.startswith(prefix) or not _NAME_RE.fullmatch(entry):
            continue
        try:
            fd = _shm_open(entry, os.O_RDWR)
        except (FileNotFoundError, PermissionError):
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its owner is alive
            if _read_pid(fd) == 0 and time.time() - os.fstat(fd).st_mtime < _YOUNG_HEADERLESS_S:
                continue  # a creator between shm_open and flock
            if _unlink_if_same(entry, fd):
                removed.append(entry)
        finally:
            os.close(fd)
    return removed


__all__ = ["HEADER_BYTES", "NAME_PREFIX", "Segment", "pid_alive", "reclaim_stale", "segment_name"]
