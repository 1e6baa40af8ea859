"""The transport under the engine client: one live connection that moves frames.

:class:`Transport` holds what a client process shares with one engine: the Unix socket and
its handshake (blocking, or through the event loop), the slot's two rings, its doorbells and
its rows of the embedding arena, and the engine's pid. It moves frames and nothing else: the
clients' books (:class:`stratabatch.asyncbooks.LoopBooks` of the asyncio client,
:class:`stratabatch.syncbooks.Books` of the blocking one) build and parse them with
:mod:`stratabatch.ipc.frames` and keep the calls; the transport knows no call, no request id
and no future.

Its surface, used from the asyncio client's event-loop thread, or by the blocking client's
threads under that client's locks:

* :meth:`open` (through the loop) or the constructor (blocking): connect and attach;
* :meth:`watch` / :meth:`unwatch`: call ``on_bell`` when the client's doorbell rings and
  ``on_lost(why)`` once when the engine goes away (EOF, ``bye``, its pid exits);
* :meth:`push`, :meth:`sleep_for_room`, :meth:`room_found`: the request ring;
* :meth:`frames`: every response frame published so far (the ring then sleeps on the
  doorbell);
* :meth:`lease_row`, :meth:`free_row`: the slot's arena rows for requests' own vectors;
* :meth:`stats`, :meth:`forget`: the engine's stats, and a ``forget`` of its reuse cache, over
  the socket (blocking round trips, :meth:`ask`); :meth:`send_op` and :meth:`read_socket` for
  a client whose own thread reads the socket;
* :meth:`close`, :meth:`let_go_after_fork`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import EngineUnavailableError
from .wire import (
    ARENA_MAGIC,
    PROTOCOL_VERSION,
    RINGS_MAGIC,
    RINGS_VERSION,
    MessageBuffer,
    pack_message,
    socket_path,
)

if TYPE_CHECKING:
    from stratabatch.ipc.frames import FrameLimits
    from stratabatch.ipc.segment import Segment


class Transport:
    """One live connection to an engine: its socket, rings, doorbells and arena rows.

    Attributes:
        name: The engine's name.
        path: Its socket's path.
        dead: None while the connection lives; else why it ended (a phrase: "died",
            "was closed", ...).
        welcome: The engine's handshake answer.
        limits: The frame limits the engine announced (for the client's encoder, decoder).
        max_request_bytes: The engine's request size limit.
        on_full: The engine's ``on_full`` policy.
        uses_vectors: Whether the engine's dedup reads requests' own ``"embedding"``.
        dim: The embedding dimension the engine uses (0: unknown).
        requests: The request ring (client -> engine).
        responses: The response ring (engine -> client).
    """

    def __init__(self, name: str, timeout: float) -> None:
        """Connect and run the handshake, blocking the calling thread for ``timeout`` s at most.

        :meth:`open` is the same without blocking an event loop.

        Raises:
            EngineUnavailableError: No engine serves ``name``, it refused this client, or it
                did not answer within ``timeout``.
        """
        self._start(name)
        try:
            self._connect_blocking(timeout)
            self._attach(self._read_welcome(timeout))
        except BaseException:
            self.close()
            raise

    @classmethod
    async def open(cls, name: str, timeout: float) -> Transport:
        """Connect from the running event loop without blocking it.

        The connect, the hello and the welcome (with its doorbells) go through the loop as
        non-blocking socket operations; the handshake takes ``timeout`` seconds at most.
        Cancelling the awaiting task closes the half-open connection.

        Raises:
            EngineUnavailableError: As for the blocking constructor.
        """
        self = cls.__new__(cls)
        self._start(name)
        try:
            await self._handshake_async(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def _start(self, name: str) -> None:
        """The state of a transport before its handshake, and its (unconnected) socket."""
        self.name = name
        self.path = socket_path(name)
        self.pid = os.getpid()  # the process whose close() ends the connection for all holders
        self.dead: str | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._on_lost: Callable[[str], None] | None = None
        self._free_rows: list[int] = []
        self.rbuf = MessageBuffer()
        self.stats_seq = 0
        self.seg: Segment | None = None
        self.arena_seg: Segment | None = None
        self.arena: Any = None
        self.bell: Any = None
        self.engine_bell: Any = None
        self.pidfd = -1
        self.fds: list[int] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        _live.add(self)

    def _hello(self) -> bytes:
        from stratabatch.ipc.frames import FRAME_VERSION

        return pack_message(
            {
                "op": "hello",
                "protocol": PROTOCOL_VERSION,
                "frame_version": FRAME_VERSION,
                "pid": os.getpid(),
            }
        )

    def _nobody_listens(self) -> EngineUnavailableError:
        return EngineUnavailableError(
            f"no stratabatch engine named {self.name!r} is running: nothing listens at "
            f"{self.path} (start one with `stratabatch-engine --handler MODULE:ATTR "
            f"--name {self.name}`)"
        )

    def _no_answer(self, timeout: float) -> EngineUnavailableError:
        return EngineUnavailableError(
            f"the engine {self.name!r} at {self.path} did not answer within {timeout:g} s"
        )

    def _connect_blocking(self, timeout: float) -> None:
        sock = self.sock
        sock.settimeout(timeout)
        try:
            sock.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise self._nobody_listens() from None
        except TimeoutError:
            raise self._no_answer(timeout) from None
        except OSError as exc:
            raise EngineUnavailableError(
                f"cannot connect to the engine {self.name!r} at {self.path}: {exc}"
            ) from None
        sock.sendall(self._hello())

    async def _handshake_async(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        end = time.monotonic() + timeout
        sock = self.sock
        sock.setblocking(False)
        while True:
            try:
                sock.connect(self.path)
                break
            except (BlockingIOError, InterruptedError):
                # a Unix socket says EAGAIN (no EINPROGRESS) while the engine's accept backlog
                # is full; the socket stays unconnected, so the connect is tried again
                if time.monotonic() >= end:
                    raise self._no_answer(timeout) from None
                await asyncio.sleep(0.01)
            except (FileNotFoundError, ConnectionRefusedError):
                raise self._nobody_listens() from None
            except OSError as exc:
                raise EngineUnavailableError(
                    f"cannot connect to the engine {self.name!r} at {self.path}: {exc}"
                ) from None
        view = memoryview(self._hello())
        while view:
            try:
                view = view[sock.send(view) :]
            except (BlockingIOError, InterruptedError):
                await self._until_ready(loop, end, timeout, write=True)
            except OSError as exc:
                raise EngineUnavailableError(
                    f"the engine {self.name!r} at {self.path} dropped the connection: {exc}"
                ) from None
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(sock, 65536, 4)
            except (BlockingIOError, InterruptedError):
                await self._until_ready(loop, end, timeout)
                continue
            except OSError as exc:
                raise EngineUnavailableError(
                    f"the engine {self.name!r} at {self.path} dropped the connection: {exc}"
                ) from None
            welcome = self._handshake_data(data, fds)
            if welcome is not None:
                self._attach(welcome)
                return

    async def _until_ready(
        self, loop: asyncio.AbstractEventLoop, end: float, timeout: float, write: bool = False
    ) -> None:
        """Wait until the socket is readable (writable), at most until ``end``."""
        fd = self.sock.fileno()
        fut = loop.create_future()

        def ready(ok: bool) -> None:
            if not fut.done():
                fut.set_result(ok)

        if write:
            loop.add_writer(fd, ready, True)
        else:
            loop.add_reader(fd, ready, True)
        timer = loop.call_later(max(end - time.monotonic(), 0.0), ready, False)
        try:
            ok = await fut
        finally:
            timer.cancel()
            if write:
                loop.remove_writer(fd)
            else:
                loop.remove_reader(fd)
        if not ok:
            raise self._no_answer(timeout)

    def _read_welcome(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, 65536, 4)
            except TimeoutError:
                raise self._no_answer(timeout) from None
            except OSError as exc:
                raise EngineUnavailableError(
                    f"the engine {self.name!r} at {self.path} dropped the connection: {exc}"
                ) from None
            welcome = self._handshake_data(data, fds)
            if welcome is not None:
                return welcome

    def _handshake_data(self, data: bytes, fds: list[int]) -> dict[str, Any] | None:
        """Take what the engine sent during the handshake; the welcome once it is complete.

        Raises:
            EngineUnavailableError: The engine refused this client, closed the connection or
                does not speak the protocol.
        """
        self.fds.extend(fds)
        if not data:
            raise EngineUnavailableError(
                f"the engine {self.name!r} at {self.path} closed the connection during "
                "the handshake"
            )
        try:
            msgs = self.rbuf.feed(data)
        except ValueError as exc:
            raise EngineUnavailableError(
                f"the engine at {self.path} is not speaking the stratabatch protocol: {exc}"
            ) from None
        if not msgs:
            return None
        msg = msgs[0]
        if msg.get("op") == "refused":
            raise EngineUnavailableError(
                f"the engine {self.name!r} at {self.path} refused this client: {msg.get('reason')}"
            )
        if msg.get("op") != "welcome":
            raise EngineUnavailableError(
                f"the engine at {self.path} answered {msg.get('op')!r}, not welcome"
            )
        return msg

    def _attach(self, welcome: dict[str, Any]) -> None:
        """Attach what the welcome names: doorbells, rings, arena; watch the engine's pid."""
        from stratabatch.ipc.arena import Arena
        from stratabatch.ipc.doorbell import Doorbell
        from stratabatch.ipc.frames import FrameLimits
        from stratabatch.ipc.ring import Ring
        from stratabatch.ipc.segment import Segment

        name = self.name
        self.welcome = welcome
        if len(self.fds) != 2:
            raise EngineUnavailableError(
                f"the engine {name!r} at {self.path} sent {len(self.fds)} doorbells, not 2"
            )
        self.engine_bell = Doorbell.attach(self.fds[0])
        self.bell = Doorbell.attach(self.fds[1])
        self.fds = []
        self.engine_pid = int(welcome["engine_pid"])
        self.slot = int(welcome["slot"])
        cap, max_frame = int(welcome["capacity"]), int(welcome["max_frame"])
        self.seg = Segment.attach(welcome["rings"], magic=RINGS_MAGIC, version=RINGS_VERSION)
        buf = self.seg.buf
        n = Ring.nbytes(cap)
        self.requests = Ring.attach(
            buf[:n], capacity=cap, max_frame=max_frame, wake_consumer=self.engine_bell
        )
        self.responses = Ring.attach(
            buf[n : 2 * n], capacity=cap, max_frame=max_frame, wake_producer=self.engine_bell
        )
        if welcome.get("arena"):
            self.arena_seg = Segment.attach(welcome["arena"], magic=ARENA_MAGIC, version=1)
            self.arena = Arena.attach(self.arena_seg.buf, owner=self.slot)
            self._free_rows = list(reversed(self.arena.own_range))
        self.limits: FrameLimits = FrameLimits(**welcome["limits"])
        self.max_request_bytes = int(welcome["max_request_bytes"])
        self.on_full: str = welcome["on_full"]
        self.uses_vectors = bool(welcome["uses_vectors"])
        self.dim = int(welcome.get("dim") or 0)
        try:
            self.pidfd = os.pidfd_open(self.engine_pid)
        except (OSError, AttributeError):
            self.pidfd = -1
        self.sock.setblocking(False)

    # ------------------------------------------------------------- event loop

    def watch(
        self,
        loop: asyncio.AbstractEventLoop,
        on_bell: Callable[[], None],
        on_lost: Callable[[str], None],
    ) -> None:
        """From ``loop``, call ``on_bell()`` whenever the client's doorbell rings (after
        clearing it) and ``on_lost(why)`` once when the engine goes away: EOF or a ``bye`` on
        the socket, or its pid exiting. Watching from another loop first stops the old one's."""
        if self.loop is not None:
            self.unwatch()
        self.loop = loop
        self._on_lost = on_lost
        bell = self.bell

        def rung() -> None:
            bell.clear()
            on_bell()

        loop.add_reader(bell.fileno(), rung)
        loop.add_reader(self.sock.fileno(), self._on_socket)
        if self.pidfd >= 0:
            loop.add_reader(self.pidfd, self._lost, "died")

    def unwatch(self) -> None:
        """Stop watching from the loop :meth:`watch` was given."""
        loop, self.loop = self.loop, None
        if loop is None or loop.is_closed():
            return
        for fd in (
            self.bell.fileno() if self.bell is not None and not self.bell.closed else -1,
            self.sock.fileno(),
            self.pidfd,
        ):
            if fd >= 0:
                with contextlib.suppress(Exception):
                    loop.remove_reader(fd)

    def _lost(self, why: str) -> None:
        on_lost, self._on_lost = self._on_lost, None
        if on_lost is not None and self.dead is None:
            on_lost(why)

    def _on_socket(self) -> None:
        why = self.read_socket()[1]
        if why is not None:
            self._lost(why)

    def read_socket(self) -> tuple[list[dict[str, Any]], str | None]:
        """Read what the engine sent on the socket (without blocking): its messages, and why
        the connection ended (EOF, an error, a ``bye``, a broken message), None while it
        lives. Messages after a ``bye`` are not returned."""
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return [], None
        except OSError as exc:
            return [], f"dropped the connection ({exc})"
        if not data:
            return [], "closed the connection (it stopped or died)"
        try:
            msgs = self.rbuf.feed(data)
        except ValueError as exc:
            return [], f"sent a broken message ({exc})"
        for i, msg in enumerate(msgs):
            if msg.get("op") == "bye":
                return msgs[:i], f"shut down ({msg.get('reason')})"
        return msgs, None

    def send_op(self, op: str, **fields: Any) -> int:
        """Send the engine a socket request ``op`` (``"stats"``, ``"forget"``) without
        waiting: its ``seq``, which the answer (a ``{"op": op, "seq": seq, ...}`` message that
        :meth:`read_socket` returns) carries.

        Raises:
            OSError: The socket is gone.
        """
        self.stats_seq += 1
        self.sock.sendall(pack_message({"op": op, "seq": self.stats_seq, **fields}))
        return self.stats_seq

    def ask_stats(self) -> int:
        """:meth:`send_op` of ``"stats"``."""
        return self.send_op("stats")

    # ------------------------------------------------------------- rings

    def push(self, frame: bytes) -> bool:
        """Publish one request frame; False when the ring has no room for it now."""
        return self.requests.try_push(frame)

    def sleep_for_room(self, frame_bytes: int) -> bool:
        """Declare the client waiting for room for a frame of ``frame_bytes``; True if there
        is still none (the engine rings the doorbell when it frees some: then call
        :meth:`room_found`), False if room appeared meanwhile."""
        return self.requests.producer_sleep_check(frame_bytes)

    def room_found(self) -> None:
        """Withdraw the waiting-for-room flag of :meth:`sleep_for_room`."""
        self.requests.producer_awake()

    def frames(self) -> list[bytes]:
        """Every response frame published so far, in order; the response ring is then
        declared asleep (the engine rings the doorbell with its next frame).

        Raises:
            FrameError: The engine wrote a corrupt ring.
        """
        ring = self.responses
        out = ring.drain()
        while True:
            if ring.consumer_sleep_check():
                return out
            out += ring.drain()

    # ------------------------------------------------------------- arena

    def lease_row(self, vector: Any) -> int:
        """Write ``vector`` (checked float32) into a free row of this slot's arena range; the
        row, or -1 when the engine has no arena or every row is in use."""
        if self.arena is None:
            return -1
        try:  # (one atomic pop: the blocking client's caller threads lease rows at once)
            row = self._free_rows.pop()
        except IndexError:
            return -1
        self.arena.write_row(row, vector)
        return row

    def free_row(self, row: int) -> None:
        """Give back a row of :meth:`lease_row` (its request has its answer, or never left)."""
        if row >= 0 and self.arena is not None:
            self._free_rows.append(row)

    # ------------------------------------------------------------- socket requests

    def stats(self, timeout: float) -> dict[str, Any]:
        """Ask the engine for its stats over the socket (a blocking round trip).

        Raises:
            EngineUnavailableError: The engine did not answer in time, or went away (then the
                transport is lost: ``on_lost`` is called).
        """
        return self.ask("stats", timeout)["stats"]

    def forget(self, scope: dict[str, Any] | None, timeout: float) -> int:
        """Ask the engine to drop entries of its reuse cache (a blocking round trip): every
        one (``scope`` None) or those of a scope (:func:`stratabatch.reusecontrol.forget`);
        how many it dropped.

        Raises:
            TypeError, InvalidRequestError: The engine refused ``scope`` (nothing dropped).
            EngineUnavailableError: As :meth:`stats`.
        """
        return forget_answer(self.ask("forget", timeout, scope=scope))

    def ask(self, op: str, timeout: float, **fields: Any) -> dict[str, Any]:
        """Send the socket request ``op`` and wait for its answer (a blocking round trip).

        Raises:
            EngineUnavailableError: As :meth:`stats`.
        """
        self.stats_seq += 1
        seq = self.stats_seq
        sock = self.sock
        try:
            sock.setblocking(True)
            sock.settimeout(timeout)
            sock.sendall(pack_message({"op": op, "seq": seq, **fields}))
            deadline = time.monotonic() + timeout
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not poller.poll(left * 1000):
                    raise EngineUnavailableError(
                        f"the engine {self.name!r} did not answer a {op} request within "
                        f"{timeout:g} s"
                    )
                data = sock.recv(1 << 20)
                if not data:
                    raise self._gone("closed the connection (it stopped or died)")
                for msg in self.rbuf.feed(data):
                    if msg.get("op") == "bye":
                        raise self._gone(f"shut down ({msg.get('reason')})")
                    if msg.get("op") == op and msg.get("seq") == seq:
                        return msg
        except (OSError, ValueError) as exc:
            raise self._gone(f"dropped the connection ({exc})") from None
        finally:
            if self.dead is None:
                with contextlib.suppress(OSError):
                    sock.setblocking(False)

    def _gone(self, why: str) -> EngineUnavailableError:
        """The engine went away during a blocking round trip: tell the watcher, or close."""
        if self._on_lost is not None:
            self._lost(why)
        self.close(why)
        return EngineUnavailableError(f"the stratabatch engine {self.name!r} ({self.path}) {why}")

    # ------------------------------------------------------------- lifecycle

    def close(self, why: str = "was closed") -> None:
        """Release everything this transport holds (the engine sees EOF and frees the slot);
        ``dead`` becomes ``why`` unless it was set already. Idempotent.

        The socket is shut down before it is closed: a process forked after the handshake
        holds a duplicate of it, and a mere close would leave the connection (and the
        engine's slot for it) open for as long as that child lives. The shutdown ends it for
        every holder. Only the process that connected shuts it down; a forked child that
        inherited the transport only closes its own copies (:meth:`let_go_after_fork`).
        """
        self.unwatch()
        self._on_lost = None
        if self.dead is None:
            self.dead = why
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []
        if self.pid == os.getpid():
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()
        if self.pidfd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.pidfd)
            self.pidfd = -1
        # the rings' views are left to the garbage collector, not released here: a frame
        # being read or written when the engine went away still touches its ring
        if self.arena is not None:
            self.arena.close()
            self.arena = None
        for seg in (self.seg, self.arena_seg):
            if seg is not None:
                seg.close()
        self.seg = self.arena_seg = None
        for bell in (self.bell, self.engine_bell):
            if bell is not None:
                bell.close()

    def let_go_after_fork(self) -> None:
        """In a forked child: drop this (the parent's) transport without ending it.

        The child's copies of the descriptors (socket, doorbells, pidfd) are closed and the
        segments unmapped; nothing is shut down and nothing is sent, so the parent's connection
        goes on and the engine sees it end when the parent closes it or exits. The parent's
        event loop is not touched (a forked child shares its epoll instance).
        """
        self.loop = None  # never remove the parent's readers from the shared epoll instance
        self._on_lost = None
        if self.dead is None:
            self.dead = f"belongs to process {self.pid} (this process was forked from it)"
        # nothing in this process pushes or drains the rings: their views go, so the
        # segments are unmapped here (a view still held elsewhere keeps its mapping valid)
        self.__dict__.pop("requests", None)
        self.__dict__.pop("responses", None)
        self.close()


def forget_answer(reply: dict[str, Any]) -> int:
    """The engine's answer to a ``forget`` request: the count it dropped, or its refusal
    raised (``TypeError`` as such, our own errors by name).

    Raises:
        TypeError, InvalidRequestError, StratabatchError: The engine refused the request.
    """
    error = reply.get("error")
    if error is None:
        dropped = reply.get("dropped")
        if type(dropped) is int and dropped >= 0:
            return dropped
        error = ["StratabatchError", f"the engine answered forget with {reply!r:.200}"]
    name, message = (
        (error[0], error[1])
        if isinstance(error, list) and len(error) == 2
        else (
            "StratabatchError",
            repr(error),
        )
    )
    if name == "TypeError":
        raise TypeError(message)
    from stratabatch.ipc.frames import STATUS_ERROR

    from .wire import error_from_wire

    raise error_from_wire(STATUS_ERROR, (str(name), str(message), {}))


_live: weakref.WeakSet[Transport] = weakref.WeakSet()
"""Every transport this process opened (and has not dropped)."""


def _after_fork_in_child() -> None:
    """In a forked child, let go of the parent's transports without ending them."""
    for transport in list(_live):
        with contextlib.suppress(Exception):
            transport.let_go_after_fork()
    _live.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


__all__ = ["Transport", "forget_answer"]
