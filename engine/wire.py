"""What the engine and its clients agree on: socket paths, the handshake, and error mapping.

The rings carry request and response frames (:mod:`stratabatch.ipc.frames`); this module holds
the rest of the conversation between ``stratabatch-engine`` and ``stratabatch.connect()``:

* **Where.** One Unix socket per engine name, ``$XDG_RUNTIME_DIR/stratabatch/NAME.sock``, or
  ``/tmp/stratabatch-UID/NAME.sock`` when ``XDG_RUNTIME_DIR`` is unset; the directory is 0700.
* **Socket messages.** ``u32 length (little-endian) | msgpack map`` (str keys), at most
  :data:`MAX_MESSAGE_BYTES`. The client's ``hello`` is answered with ``welcome`` (and the two
  eventfd doorbells as SCM_RIGHTS) or ``refused``. After that the socket is the liveness
  channel: EOF on either side is the death notice. The other messages are a client's asks,
  ``stats`` and ``forget``, each answered with a message of the same ``op`` and ``seq``, and
  ``bye`` (engine, just before it closes the socket). A client's message that is not a valid
  ask but whose length is within the limit (:class:`BrokenMessage`) is answered with an
  ``error``; only a length over the limit ends the connection.
* **Errors.** :func:`error_to_wire` and :func:`error_from_wire` are the one mapping between
  exceptions and response frames, so a :class:`~stratabatch.HandlerError` keeps its
  ``exc_type`` and ``exc_message`` across the process boundary.
"""

from __future__ import annotations

import os
import struct
from typing import Any, NamedTuple

import msgpack

from .errors import (
    BatchTimeoutError,
    ConfigError,
    EngineUnavailableError,
    HandlerError,
    InvalidRequestError,
    QueueFullError,
    RemoteTraceback,
    RequestTooLargeError,
    StratabatchError,
)

PROTOCOL_VERSION = 1
"""Version of the socket conversation (hello, welcome, stats, bye); checked at the handshake."""

CONTROL_MAGIC = b"SBCTRL01"
"""Magic of the control segment (engine state and the client slot table)."""
CONTROL_VERSION = 1
"""Layout version of the control segment."""
RINGS_MAGIC = b"SBRINGS1"
"""Magic of a client's ring segment (request ring, then response ring)."""
RINGS_VERSION = 1
"""Layout version of a client's ring segment."""
ARENA_MAGIC = b"SBARENA1"
"""Magic of the embedding arena segment."""

MAX_MESSAGE_BYTES = 1 << 20
"""Largest socket message either side accepts."""

_LEN = struct.Struct("<I")

# status codes of response frames (the same values as stratabatch.ipc.frames; repeated here so
# that importing this module does not load the ipc package)
STATUS_OK, STATUS_ERROR, STATUS_TIMEOUT = 0, 1, 2

_ERROR_TYPES: dict[str, type[StratabatchError]] = {
    cls.__name__: cls
    for cls in (
        StratabatchError,
        ConfigError,
        InvalidRequestError,
        RequestTooLargeError,
        BatchTimeoutError,
        QueueFullError,
        HandlerError,
        EngineUnavailableError,
    )
}


def socket_dir() -> str:
    """The directory holding the engines' sockets for this user (not created here)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "stratabatch")
    return f"/tmp/stratabatch-{os.getuid()}"


def socket_path(name: str) -> str:
    """The socket path of the engine called ``name``."""
    return os.path.join(socket_dir(), f"{name}.sock")


def check_name(name: Any) -> str:
    """Validate an engine name: 1-48 characters of ``[A-Za-z0-9_.-]``.

    Raises:
        ConfigError: The name is not valid.
    """
    import re

    if (
        not isinstance(name, str)
        or not re.fullmatch(r"[A-Za-z0-9_.-]{1,48}", name)
        or name in (".", "..")
    ):
        raise ConfigError(
            f"engine name must be 1-48 characters of [A-Za-z0-9_.-], got {name!r}", field="name"
        )
    return name


# ---------------------------------------------------------------------- socket messages


def pack_message(msg: dict[str, Any]) -> bytes:
    """Encode one socket message (length prefix included)."""
    body = msgpack.packb(msg, use_bin_type=True)
    return _LEN.pack(len(body)) + body


class BrokenMessage(NamedTuple):
    """A socket message whose framing was intact (its length within the limit) but whose body
    is not a msgpack map of str keys (:meth:`MessageBuffer.feed_asks`): what could be read of
    it, so that the engine answers it with an error and keeps the connection."""

    op: str | None
    """Its ``op`` when the body is a map whose ``op`` reads as a short str, else None."""
    seq: Any
    """Its ``seq`` when it reads as :func:`echo_seq` allows, else None."""
    why: str
    """What is wrong with it."""


MAX_ECHO_CHARS = 64
"""A str ``op`` or ``seq`` longer than this is not echoed in an answer (:func:`echo_seq`)."""


def echo_seq(seq: Any) -> Any:
    """A message's ``seq`` as its answer carries it: an int, or a str of at most
    :data:`MAX_ECHO_CHARS`; anything else (a map, a long str) is answered with None, so that
    an answer never grows with what a client put in its ``seq``."""
    t = type(seq)
    if t is int or (t is str and len(seq) <= MAX_ECHO_CHARS):
        return seq
    return None


def _unpack_body(body: bytes) -> Any:
    n = len(body)
    return msgpack.unpackb(
        body,
        raw=False,
        strict_map_key=True,
        max_bin_len=n,
        max_str_len=n,
        max_array_len=n,
        max_map_len=n,
        max_ext_len=0,
    )


def _salvage(body: bytes, why: str) -> BrokenMessage:
    """What can be read of a broken message ``body``: its ``op`` and ``seq`` when it is a map
    whose keys up to them are str. Other keys and values are skipped unread (no object is
    built from them), so a broken body costs no more than its size."""
    op = seq = None
    unpacker = msgpack.Unpacker(
        raw=False,
        strict_map_key=True,
        max_buffer_size=max(len(body), 1),
        max_bin_len=MAX_ECHO_CHARS,
        max_str_len=MAX_ECHO_CHARS,
        max_array_len=0,
        max_map_len=0,
        max_ext_len=0,
    )
    unpacker.feed(body)
    try:
        for _ in range(unpacker.read_map_header()):
            key = unpacker.unpack()  # (only a short str or a number reads: no container)
            if key == "op" or key == "seq":
                try:
                    value = unpacker.unpack()
                except Exception:
                    value = None
                    if key == "op":
                        break
                if key == "op":
                    op = value if type(value) is str else None
                else:
                    seq = echo_seq(value)
            else:
                unpacker.skip()
    except Exception:  # as far as it reads
        pass
    return BrokenMessage(op, seq, why)


class MessageBuffer:
    """Accumulates bytes read from a socket and splits them into messages.

    :meth:`feed` raises :class:`ValueError` when the peer sends something that is not a
    message (over the size limit, not msgpack, not a map): the caller drops that peer (the
    client's side: the engine is trusted to speak the protocol). The engine reads its
    clients' asks with :meth:`feed_asks`, which raises only when the framing itself is broken.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Add ``data``; return the complete messages it finished (possibly none).

        Raises:
            ValueError: A message is not a msgpack map of str keys, or its length is over
                :data:`MAX_MESSAGE_BYTES`.
        """
        out = self.feed_asks(data)
        for msg in out:
            if type(msg) is BrokenMessage:
                raise ValueError(msg.why)
        return out  # type: ignore[return-value]

    def feed_asks(self, data: bytes) -> list[dict[str, Any] | BrokenMessage]:
        """:meth:`feed`, but a message whose framing is intact and whose body is not a msgpack
        map of str keys comes back as a :class:`BrokenMessage` (to be answered with an error)
        and the messages after it still split.

        Raises:
            ValueError: A message's length is over :data:`MAX_MESSAGE_BYTES` (the stream
                cannot be followed past it).
        """
        self._buf += data
        out: list[dict[str, Any] | BrokenMessage] = []
        while len(self._buf) >= 4:
            (n,) = _LEN.unpack_from(self._buf)
            if n > MAX_MESSAGE_BYTES:
                raise ValueError(f"socket message of {n} bytes, over {MAX_MESSAGE_BYTES}")
            if len(self._buf) < 4 + n:
                break
            body = bytes(self._buf[4 : 4 + n])
            del self._buf[: 4 + n]
            try:
                msg = _unpack_body(body)
            except Exception as exc:  # any decoding failure: a broken message
                why = (
                    "socket message is not msgpack with str map keys "
                    f"({str(exc) or type(exc).__name__})"
                )
                out.append(_salvage(body, why[:300]))
                continue
            if type(msg) is not dict:
                why = f"socket message must be a map, got {type(msg).__name__}"
                out.append(BrokenMessage(None, None, why))
                continue
            out.append(msg)
        return out


# ---------------------------------------------------------------------- errors


MAX_TRACEBACK_CHARS = 8192
"""A traceback sent to a client keeps at most this many characters (its end: the failing line)."""

_last_traceback: tuple[BaseException | None, str] = (None, "")


def traceback_text(exc: BaseException) -> str:
    """``exc``'s formatted traceback (as ``traceback.format_exception``), cut to its last
    :data:`MAX_TRACEBACK_CHARS` characters.

    The members of a failed batch share one original exception, so the last one formatted is
    kept: a batch of 50 formats it once.
    """
    global _last_traceback
    seen, text = _last_traceback
    if seen is exc:
        return text
    import traceback

    try:
        text = "".join(traceback.format_exception(exc))
    except Exception:  # noqa: BLE001 - a str() that raises must not lose the error itself
        text = f"{type(exc).__qualname__} (its traceback could not be formatted)\n"
    if len(text) > MAX_TRACEBACK_CHARS:
        text = "...\n" + text[-MAX_TRACEBACK_CHARS:]
    _last_traceback = (exc, text)
    return text


def error_to_wire(exc: BaseException) -> tuple[int, Any]:
    """Describe an exception as a response frame's ``(status, value)``.

    A :class:`BatchTimeoutError` becomes a timeout response carrying its message; anything else
    an error response ``(type_name, message, details)``. Our own error types travel by name;
    a :class:`HandlerError` keeps ``exc_type`` and ``exc_message`` in ``details``; any other
    exception is described as a :class:`StratabatchError` naming its type.
    """
    if isinstance(exc, BatchTimeoutError):
        return STATUS_TIMEOUT, str(exc)
    details: dict[str, Any] = {}
    if isinstance(exc, HandlerError):
        if exc.exc_type is not None:
            details["exc_type"] = exc.exc_type
        if exc.exc_message is not None:
            details["exc_message"] = exc.exc_message
        if exc.__cause__ is not None:
            details["traceback"] = traceback_text(exc.__cause__)
        return STATUS_ERROR, ("HandlerError", str(exc), details)
    for cls in type(exc).__mro__:
        if cls.__name__ in _ERROR_TYPES and _ERROR_TYPES[cls.__name__] is cls:
            return STATUS_ERROR, (cls.__name__, str(exc), details)
    return STATUS_ERROR, ("StratabatchError", f"{type(exc).__name__}: {exc}", details)


def error_from_wire(status: int, value: Any) -> StratabatchError:
    """Rebuild the exception a response frame describes (the inverse of :func:`error_to_wire`).

    Args:
        status: The frame's status, :data:`STATUS_ERROR` or :data:`STATUS_TIMEOUT`.
        value: The frame's value: an ``ErrorInfo``-like ``(type_name, message, details)`` or a
            timeout message.

    Returns:
        The exception to raise; an unknown type name gives a :class:`StratabatchError` whose
        message names it. A :class:`HandlerError` that carried a traceback has a
        :class:`~stratabatch.errors.RemoteTraceback` holding it as its ``__cause__``.
    """
    if status == STATUS_TIMEOUT:
        return BatchTimeoutError(
            value if isinstance(value, str) and value else "the request timed out in the engine"
        )
    type_name, message, details = value[0], value[1], value[2] if len(value) > 2 else {}
    if type_name == "HandlerError":
        exc_type = details.get("exc_type")
        exc_message = details.get("exc_message")
        err = HandlerError(
            message,
            exc_type=exc_type if isinstance(exc_type, str) else None,
            exc_message=exc_message if isinstance(exc_message, str) else None,
        )
        tb = details.get("traceback")
        if isinstance(tb, str) and tb:
            err.__cause__ = RemoteTraceback(tb)
        return err
    cls = _ERROR_TYPES.get(type_name)
    if cls is None:
        return StratabatchError(f"{type_name}: {message}")
    if cls is ConfigError:
        return ConfigError(message)
    return cls(message)


__all__ = [
    "ARENA_MAGIC",
    "CONTROL_MAGIC",
    "CONTROL_VERSION",
    "MAX_ECHO_CHARS",
    "MAX_MESSAGE_BYTES",
    "RINGS_MAGIC",
    "RINGS_VERSION",
    "PROTOCOL_VERSION",
    "BrokenMessage",
    "MessageBuffer",
    "check_name",
    "echo_seq",
    "error_from_wire",
    "error_to_wire",
    "pack_message",
    "socket_dir",
    "socket_path",
    "traceback_text",
]
