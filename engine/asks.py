"""The engine's side of the clients' socket asks: ``stats`` and ``forget``, answered in order.

A component of :class:`~stratabatch.server.Engine`, which reads each client's socket and hands
the bytes to :meth:`Asks.feed`. A message whose framing is intact is always answered, the
connection kept: a body that does not decode (a :class:`~stratabatch.wire.BrokenMessage`), an
unknown ``op`` or a refused ``forget`` get an ``error``; only a length over the limit drops
the client. A client's asks are answered :data:`ASKS_PER_TURN` a loop turn (the ``stats``
asks of a turn share one snapshot), so a flood of them delays its sender, not the others;
answers its socket has no room for wait in order (:data:`MAX_UNSENT_BYTES` at most). What an
answer holds comes from the engine's callbacks (``stats``, ``forget``); what leaves a client
behind is the engine's ``drop``, which then calls :meth:`Asks.drop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import StratabatchError
from .wire import MAX_ECHO_CHARS, BrokenMessage, echo_seq, error_to_wire, pack_message

if TYPE_CHECKING:
    from .slots import Client

log = logging.getLogger("stratabatch.engine")

MAX_UNSENT_BYTES = 4 << 20
"""Socket answers the engine queues for a client that does not read them; past this the
client is dropped (an ask waits for its answer, so only a client that never reads gets here)."""
ASKS_PER_TURN = 32
"""Socket asks of one client answered per loop turn (a stats snapshot is ~0.3 ms)."""
MAX_WAITING_ASKS = 10_000
"""Socket asks of one client read and not answered yet; past this the client is dropped."""
MAX_ERROR_CHARS = 1000
"""An error answer on the socket carries at most this many characters of its message."""


class Asks:
    """Every client's socket asks: those waiting, the answers its socket had no room for.

    Args:
        stats: The fields of a ``stats`` answer beside ``op`` and ``seq`` (the engine's
            ``Stats`` as a map, and its client count); called once a turn of asks.
        forget: Drops the reuse cache's entries of a ``forget`` scope and returns how many;
            raises ``TypeError`` or a :class:`~stratabatch.errors.StratabatchError` to refuse
            the scope.
        drop: Disconnects a client with a reason (it then calls :meth:`drop`).
    """

    def __init__(
        self,
        stats: Callable[[], dict[str, Any]],
        forget: Callable[[Any], int],
        drop: Callable[[Client, str], None],
    ) -> None:
        self._stats = stats
        self._forget_scope = forget
        self._drop_client = drop
        self._loop: asyncio.AbstractEventLoop | None = None
        # socket answers a client's socket had no room for yet, in order (_send)
        self._unsent: dict[Client, bytearray] = {}
        # socket asks read but not answered yet, in order (_serve)
        self._asks: dict[Client, deque[Any]] = {}

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind the loop the turns of asks and the queued sends run on."""
        self._loop = loop

    def feed(self, client: Client, data: bytes) -> None:
        """Take bytes read from ``client``'s socket: queue the asks they complete and answer
        a turn of them now, unless a turn is already scheduled. A length over the limit, or
        over :data:`MAX_WAITING_ASKS` asks waiting, drops the client."""
        try:
            msgs = client.rbuf.feed_asks(data)
        except ValueError as exc:  # a length over the limit: the stream cannot be followed
            self._drop_client(client, f"broken socket message: {exc}")
            return
        asks = self._asks.get(client)
        if asks is None:
            asks = self._asks[client] = deque()
        busy = bool(asks)  # (a turn is scheduled already)
        asks.extend(msgs)
        if len(asks) > MAX_WAITING_ASKS:
            self._drop_client(client, f"over {MAX_WAITING_ASKS} socket asks waiting")
        elif not busy:
            self._serve(client)

    def has_unsent(self, client: Client) -> bool:
        """Whether answers wait for room on ``client``'s socket (it does not read them)."""
        return client in self._unsent

    def drop(self, client: Client) -> None:
        """Let go of ``client``: its waiting asks and unsent answers (the engine dropped it)."""
        self._asks.pop(client, None)
        if self._unsent.pop(client, None) is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_writer(client.sock.fileno())

    def _serve(self, client: Client) -> None:
        """Answer up to :data:`ASKS_PER_TURN` of ``client``'s waiting socket asks, then let
        the loop run (the rings, other clients) before the next turn: a flood of asks delays
        its sender, not everyone."""
        asks = self._asks.get(client)
        if not asks or client.closed:
            return
        stats: list[dict[str, Any]] = []  # (the stats asks of one turn share one snapshot)
        for _ in range(min(len(asks), ASKS_PER_TURN)):
            if not self._send(client, pack_message(self._answer(asks.popleft(), stats))):
                return
        if asks:
            assert self._loop is not None
            self._loop.call_soon(self._serve, client)

    def _answer(
        self, msg: dict[str, Any] | BrokenMessage, stats: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """The answer to a client's socket message: ``stats``, ``forget``, or an error (a
        message that does not decode, of an unknown ``op``, or a refused ``forget``). The
        answer carries the message's ``op`` and ``seq`` as far as they read
        (:func:`~stratabatch.wire.echo_seq`); the connection stays. ``stats``: the snapshot
        already taken for this turn's asks, if any (one snapshot is ~0.3 ms: a turn of asks
        costs one)."""
        if isinstance(msg, BrokenMessage):
            return _refusal(msg.op, msg.seq, msg.why)
        op = msg.get("op")
        if op == "stats":
            if not stats:
                stats.append(self._stats())
            return {"op": "stats", "seq": echo_seq(msg.get("seq")), **stats[0]}
        if op == "forget":
            return self._forget(msg)
        return _refusal(
            op if type(op) is str else None,
            echo_seq(msg.get("seq")),
            f"unknown socket message {op!r:.{MAX_ECHO_CHARS}}: a client may ask "
            "'stats' or 'forget'",
        )

    def _send(self, client: Client, data: bytes) -> bool:
        """Send ``data`` on ``client``'s socket, or queue what the socket has no room for
        (sent as it drains, in order); False when the client was dropped (a broken socket,
        or more than :data:`MAX_UNSENT_BYTES` it does not read)."""
        unsent = self._unsent.get(client)
        if unsent is not None:
            unsent += data
            if len(unsent) > MAX_UNSENT_BYTES:
                self._drop_client(
                    client,
                    f"it does not read its socket: over {MAX_UNSENT_BYTES >> 20} MiB of "
                    "answers unsent",
                )
                return False
            return True
        try:
            n = client.sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            self._drop_client(client, f"socket error: {exc}")
            return False
        if n < len(data):
            self._unsent[client] = bytearray(data[n:])
            assert self._loop is not None
            self._loop.add_writer(client.sock.fileno(), self._on_client_writable, client)
        return True

    def _on_client_writable(self, client: Client) -> None:
        """Send what :meth:`_send` queued for ``client``, as far as its socket takes it."""
        unsent = self._unsent.get(client)
        if unsent is None or client.closed:
            return
        try:
            n = client.sock.send(unsent)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._drop_client(client, f"socket error: {exc}")
            return
        del unsent[:n]
        if not unsent:
            del self._unsent[client]
            assert self._loop is not None
            self._loop.remove_writer(client.sock.fileno())

    def _forget(self, msg: dict[str, Any]) -> dict[str, Any]:
        """A client's ``forget`` message ``{"op": "forget", "seq": seq, "scope": None | map}``:
        drop entries of the reuse cache (the engine's ``forget``); the answer carries how many
        (``dropped``), or why not (``error``: ``[type name, message]``, for a scope of the
        wrong type or field). Whatever the message holds, the engine goes on."""
        seq = echo_seq(msg.get("seq"))
        try:
            if "scope" not in msg:
                raise TypeError("a forget message carries a scope (None for every entry)")
            dropped = self._forget_scope(msg["scope"])
        except (TypeError, StratabatchError) as exc:
            name = "TypeError" if isinstance(exc, TypeError) else error_to_wire(exc)[1][0]
            return _refusal("forget", seq, str(exc), name)
        except Exception as exc:  # a bug of ours: that request fails, not the engine
            log.exception("forget failed")
            return _refusal(
                "forget", seq, f"the engine failed to forget: {exc!r}", "StratabatchError"
            )
        if dropped:
            log.info("forget: %d stored answers dropped", dropped)
        return {"op": "forget", "seq": seq, "dropped": dropped}


def _refusal(
    op: str | None, seq: Any, message: str, kind: str = "InvalidRequestError"
) -> dict[str, Any]:
    """A socket message's error answer: ``{"op", "seq", "error": [kind, message]}``, the
    message cut to :data:`MAX_ERROR_CHARS`."""
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 3] + "..."
    return {"op": op, "seq": seq, "error": [kind, message]}


__all__ = ["ASKS_PER_TURN", "MAX_ERROR_CHARS", "MAX_UNSENT_BYTES", "MAX_WAITING_ASKS", "Asks"]
