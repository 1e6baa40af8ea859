"""The engine's door: its name, its socket, the handshake and the client slot table.

:class:`Slots` claims the engine's name (the control segment, whose owner lock makes a name
exclusive), listens on the Unix socket, runs the handshake (SO_PEERCRED, versions, a free
slot), creates each admitted client's ring segment and doorbell and passes the doorbells with
SCM_RIGHTS, keeps the slot table in the control segment, and frees a slot's resources when its
client leaves. What happens on the rings is :mod:`stratabatch.server`'s business: it is told of
each admitted :class:`Client` through ``on_join``.

Control segment (int64 words): [0] state (1 running, 2 stopping), [1] max_clients, [2] engine
pid, [3] start time ns; from word 8, four words per slot: pid, connected, connected_at_ns,
generation (a counter of admissions, so a reader can tell a reused slot from the same client).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from stratabatch.ipc.doorbell import Doorbell
from stratabatch.ipc.errors import SegmentExistsError
from stratabatch.ipc.frames import FRAME_VERSION, OLDEST_FRAME_VERSION
from stratabatch.ipc.ring import Ring
from stratabatch.ipc.segment import Segment, segment_name

from .errors import EngineStartError
from .exitcodes import EXIT_NAME_IN_USE, EXIT_SHARED_MEMORY, EXIT_SOCKET
from .records import Request
from .wire import (
    CONTROL_MAGIC,
    CONTROL_VERSION,
    PROTOCOL_VERSION,
    RINGS_MAGIC,
    RINGS_VERSION,
    MessageBuffer,
    pack_message,
    socket_path,
)

log = logging.getLogger("stratabatch.engine")

STATE_RUNNING, STATE_STOPPING = 1, 2
"""Values of the control segment's state word."""
_STATE, _MAX_CLIENTS, _PID, _STARTED = 0, 1, 2, 3
_SLOT_BASE, _SLOT_WORDS = 8, 4
_MAX_SOCKET_PATH = 107  # sun_path is 108 bytes on Linux, one for the terminating NUL
HELLO_TIMEOUT_S = 5.0
"""A peer that has not said hello by then is dropped."""


class Client:
    """One connected client process: its slot, socket, rings and pending requests."""

    __slots__ = (
        "slot",
        "pid",
        "sock",
        "pidfd",
        "seg",
        "requests",
        "responses",
        "bell",
        "pending",
        "inbox",
        "outbox",
        "ok_ids",
        "ok_values",
        "frames",
        "rbuf",
        "closed",
        "connected_at_ns",
        "counts",
        "dirty",
    )

    def __init__(self, slot: int, pid: int, sock: socket.socket) -> None:
        self.slot = slot
        self.pid = pid
        self.sock = sock
        self.pidfd = -1
        self.seg: Segment | None = None
        self.requests: Ring | None = None
        self.responses: Ring | None = None
        self.bell: Doorbell | None = None
        self.pending: dict[int, Request] = {}
        # requests decoded from its ring but not admitted yet (the queue was full): a batch
        # frame is drained whole, its requests admitted as the queue has room
        self.inbox: deque[Any] = deque()
        self.outbox: list[tuple[Any, ...]] = []
        # ok answers without meta (the usual ones), as two columns: one answers frame
        self.ok_ids: list[int] = []
        self.ok_values: list[Any] = []
        self.frames: list[bytes] = []  # encoded responses waiting for ring space
        self.rbuf = MessageBuffer()
        self.closed = False
        self.connected_at_ns = time.time_ns()
        self.counts = [0, 0, 0]  # requests, errors, timeouts
        self.dirty = False


def _bind_socket(path: str) -> socket.socket:
    """Make the socket directory (0700, ours) and a listening socket at ``path``.

    Raises:
        EngineStartError: The path is too long for a Unix socket, the directory is not a
            directory of this user's, or the file system refused (status ``EXIT_SOCKET``).
    """
    d = os.path.dirname(path)
    size = len(os.fsencode(path))
    if size > _MAX_SOCKET_PATH:
        raise EngineStartError(
            f"the socket path {path} is {size} bytes; a Unix socket path holds at most "
            f"{_MAX_SOCKET_PATH}: set XDG_RUNTIME_DIR to a shorter directory or use a shorter "
            "--name",
            status=EXIT_SOCKET,
        )
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
        st = os.lstat(d)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            owner = (
                "not a directory" if not stat.S_ISDIR(st.st_mode) else f"owned by uid {st.st_uid}"
            )
            raise EngineStartError(
                f"the socket directory {d} is {owner}; it must be a directory of uid "
                f"{os.getuid()} (remove it, or set XDG_RUNTIME_DIR elsewhere)",
                status=EXIT_SOCKET,
            )
        os.chmod(d, 0o700)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # stale: we hold this name's control segment
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            sock.listen(256)
        except BaseException:
            sock.close()
            raise
    except OSError as exc:
        raise EngineStartError(
            f"cannot open the socket {path}: {exc}", status=EXIT_SOCKET
        ) from None
    sock.setblocking(False)
    return sock


class Slots:
    """The socket, the handshake and the client slot table of one engine.

    Args:
        name: The engine's name.
        max_clients: Client slots.
    """

    def __init__(self, name: str, max_clients: int) -> None:
        self.name = name
        self.max_clients = max_clients
        self.socket_path = socket_path(name)
        self.clients: dict[int, Client] = {}
        """The admitted clients by slot."""
        self.stopping = False
        """Set when the engine shuts down: new peers are refused."""
        self._free = list(range(max_clients - 1, -1, -1))
        self._generation = 0
        self._control: Segment | None = None
        self._words: np.ndarray | None = None
        self._listener: socket.socket | None = None
        self._handshaking: set[socket.socket] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bell_fd = -1
        self._capacity = 0
        self._max_frame = 0
        self._welcome: dict[str, Any] = {}
        self._on_join: Callable[[Client], None] = lambda client: None

    # ----------------------------------------------------------------- the name

    def claim(self) -> None:
        """Create the control segment: from here on, no other live engine has this name.

        Raises:
            EngineStartError: A live engine already serves the name, or shared memory cannot
                be created.
        """
        nwords = _SLOT_BASE + _SLOT_WORDS * self.max_clients
        try:
            self._control = Segment.create(
                segment_name(self.name, "control"),
                nwords * 8,
                magic=CONTROL_MAGIC,
                version=CONTROL_VERSION,
            )
        except SegmentExistsError as exc:
            raise EngineStartError(
                f"an engine named {self.name!r} is already running (pid {exc.pid or 'unknown'});"
                " stop it first or choose another --name",
                status=EXIT_NAME_IN_USE,
            ) from None
        except OSError as exc:
            raise EngineStartError(
                f"cannot create shared memory in /dev/shm: {exc}", status=EXIT_SHARED_MEMORY
            ) from None
        words = self._control.array(np.int64, 0, nwords)
        words[_MAX_CLIENTS] = self.max_clients
        words[_PID] = os.getpid()
        words[_STARTED] = time.time_ns()
        self._words = words

    def set_state(self, state: int) -> None:
        """Write the engine's state word (:data:`STATE_RUNNING`, :data:`STATE_STOPPING`)."""
        if self._words is not None:
            self._words[_STATE] = state

    # ----------------------------------------------------------------- the socket

    def listen(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        bell_fd: int,
        capacity: int,
        max_frame: int,
        welcome: dict[str, Any],
        on_join: Callable[[Client], None],
    ) -> None:
        """Open the socket (directory 0700) and admit clients from now on.

        Args:
            loop: The engine's event loop.
            bell_fd: The engine's doorbell, passed to every client.
            capacity: Data bytes of each ring.
            max_frame: Largest frame of each ring.
            welcome: The fields of the welcome message that are the same for every client.
            on_join: Called with each admitted client.
        """
        self._loop = loop
        self._bell_fd = bell_fd
        self._capacity = capacity
        self._max_frame = max_frame
        self._welcome = welcome
        self._on_join = on_join
        self._listener = sock = _bind_socket(self.socket_path)
        loop.add_reader(sock.fileno(), self._on_accept)

    def stop_listening(self) -> None:
        """Close and remove the socket: no new clients."""
        if self._listener is not None:
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)

    def close(self) -> None:
        """Stop listening, drop peers mid-handshake, remove the control segment."""
        for sock in list(self._handshaking):
            self._drop_socket(sock)
        self._handshaking.clear()
        self.stop_listening()
        self._words = None
        if self._control is not None:
            self._control.close()
            self._control = None

    # ----------------------------------------------------------------- handshake

    def _on_accept(self) -> None:
        assert self._listener is not None and self._loop is not None
        for _ in range(64):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                return
            sock.setblocking(False)
            # the refusals (another uid, shutting down) are sent after the hello is read: a
            # socket closed with unread input resets, and the peer would lose the reason
            self._handshaking.add(sock)
            self._loop.add_reader(sock.fileno(), self._on_hello, sock, MessageBuffer())
            self._loop.call_later(HELLO_TIMEOUT_S, self._hello_timeout, sock)

    def _hello_timeout(self, sock: socket.socket) -> None:
        if sock in self._handshaking:
            log.warning("client refused: no hello within %g s", HELLO_TIMEOUT_S)
            self._handshaking.discard(sock)
            self._drop_socket(sock)

    def _drop_socket(self, sock: socket.socket) -> None:
        if sock.fileno() >= 0 and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(sock.fileno())
        sock.close()

    def _refuse(self, sock: socket.socket, reason: str) -> None:
        with contextlib.suppress(OSError):
            sock.send(pack_message({"op": "refused", "reason": reason}))
        self._handshaking.discard(sock)
        self._drop_socket(sock)

    def _on_hello(self, sock: socket.socket, buf: MessageBuffer) -> None:
        try:
            data = sock.recv(65536)
            msgs = buf.feed(data) if data else None
        except (OSError, ValueError):
            msgs = None
        if msgs is None:
            self._handshaking.discard(sock)
            self._drop_socket(sock)
            return
        if not msgs:
            return
        self._handshaking.discard(sock)
        assert self._loop is not None
        self._loop.remove_reader(sock.fileno())
        hello = msgs[0]
        pid, uid, _gid = struct.unpack(
            "3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        )
        if uid != os.getuid():
            log.warning(
                "client refused: pid %d runs as uid %d, this engine serves uid %d only",
                pid,
                uid,
                os.getuid(),
            )
            self._refuse(sock, f"this engine serves uid {os.getuid()} only, you are uid {uid}")
            return
        if self.stopping:
            self._refuse(sock, "the engine is shutting down")
            return
        if (
            hello.get("op") != "hello"
            or hello.get("protocol") != PROTOCOL_VERSION
            or hello.get("frame_version") not in range(OLDEST_FRAME_VERSION, FRAME_VERSION + 1)
        ):
            log.warning(
                "client refused: pid %d speaks protocol %r / frame version %r, this engine %d / %d",
                pid,
                hello.get("protocol"),
                hello.get("frame_version"),
                PROTOCOL_VERSION,
                FRAME_VERSION,
            )
            self._refuse(
                sock,
                f"protocol mismatch: engine speaks protocol {PROTOCOL_VERSION}, "
                f"frame version {FRAME_VERSION}",
            )
            return
        if not self._free:
            log.warning(
                "client refused: pid %d, all %d client slots are taken", pid, self.max_clients
            )
            self._refuse(
                sock,
                f"the engine is full: all {self.max_clients} client slots are "
                "taken (start it with a larger --max-clients)",
            )
            return
        try:
            client = self._admit(sock, pid)
        except Exception as exc:  # a client must never take the engine down
            log.error("client refused: pid %d, setting up its slot failed: %s", pid, exc)
            self._refuse(sock, f"the engine could not set up a slot: {exc}")
            return
        self._on_join(client)

    def _admit(self, sock: socket.socket, pid: int) -> Client:
        slot = self._free.pop()
        client = Client(slot, pid, sock)
        try:
            self._generation += 1
            cap = self._capacity
            client.seg = Segment.create(
                segment_name(self.name, f"ring-{slot}"),
                2 * Ring.nbytes(cap),
                magic=RINGS_MAGIC,
                version=RINGS_VERSION,
            )
            client.bell = Doorbell.create()
            buf = client.seg.buf
            client.requests = Ring.create(
                buf[: Ring.nbytes(cap)],
                capacity=cap,
                max_frame=self._max_frame,
                wake_producer=client.bell,
            )
            client.responses = Ring.create(
                buf[Ring.nbytes(cap) :],
                capacity=cap,
                max_frame=self._max_frame,
                wake_consumer=client.bell,
            )
            welcome = {
                **self._welcome,
                "op": "welcome",
                "protocol": PROTOCOL_VERSION,
                "frame_version": FRAME_VERSION,
                "slot": slot,
                "engine_pid": os.getpid(),
                "name": self.name,
                "rings": client.seg.name,
                "rings_version": RINGS_VERSION,
                "capacity": cap,
                "max_frame": self._max_frame,
            }
            sock.setblocking(True)
            sock.settimeout(2.0)  # the welcome is small: a socket buffer always takes it
            socket.send_fds(sock, [pack_message(welcome)], [self._bell_fd, client.bell.fileno()])
            sock.setblocking(False)
            try:
                client.pidfd = os.pidfd_open(pid)
            except (OSError, AttributeError):
                client.pidfd = -1
        except BaseException:
            self.release(client)
            raise
        self.clients[slot] = client
        if self._words is not None:
            base = _SLOT_BASE + _SLOT_WORDS * slot
            self._words[base : base + 4] = (pid, 1, client.connected_at_ns, self._generation)
        return client

    # ----------------------------------------------------------------- leaving

    def release(self, client: Client) -> None:
        """Close a client's socket, pidfd, rings, segment and doorbell; free its slot."""
        loop = self._loop
        client.closed = True
        self.clients.pop(client.slot, None)
        if loop is not None:
            with contextlib.suppress(Exception):
                loop.remove_reader(client.sock.fileno())
            if client.pidfd >= 0:
                with contextlib.suppress(Exception):
                    loop.remove_reader(client.pidfd)
        with contextlib.suppress(OSError):
            client.sock.close()
        if client.pidfd >= 0:
            os.close(client.pidfd)
            client.pidfd = -1
        for ring in (client.requests, client.responses):
            if ring is not None:
                ring.close()
        client.requests = client.responses = None
        if client.seg is not None:
            client.seg.close()
            client.seg = None
        if client.bell is not None:
            client.bell.close()
            client.bell = None
        if self._words is not None:
            base = _SLOT_BASE + _SLOT_WORDS * client.slot
            self._words[base : base + 3] = 0
        if client.slot not in self._free:
            self._free.append(client.slot)


__all__ = ["HELLO_TIMEOUT_S", "STATE_RUNNING", "STATE_STOPPING", "Client", "Slots"]
