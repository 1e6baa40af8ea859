"""The exceptions stratabatch raises.

Every error derives from :class:`StratabatchError`, and each subclass also
derives from the builtin exception it narrows, so ``except ValueError`` and
``except TimeoutError`` keep working in code that does not know stratabatch::

    StratabatchError (Exception)
    ├── ConfigError (ValueError)            an option is out of range
    ├── InvalidRequestError (ValueError)    a request the engine cannot accept
    │   └── RequestTooLargeError            it encodes past the frame-size limit
    ├── BatchTimeoutError (TimeoutError)    the caller's timeout or processing_timeout ran out
    ├── QueueFullError (queue.Full)         backpressure: the queue or ring is full
    ├── HandlerError (RuntimeError)         the user's handler (or dedup_function) failed
    ├── EngineUnavailableError (ConnectionError)  no engine, or it died
    │   └── EngineStartError                 stratabatch-engine cannot start (its exit status)
    ├── RemoteTraceback                     the text of a traceback from the engine process
    └── ModelIntegrityError (RuntimeError)  a shipped model file is missing or altered
"""

from __future__ import annotations

import queue


class StratabatchError(Exception):
    """Base class of every error raised by stratabatch."""


class ConfigError(StratabatchError, ValueError):
    """An option is missing, of the wrong type, or out of its allowed range.

    Attributes:
        field: The name of the offending option.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidRequestError(StratabatchError, ValueError):
    """A request was refused before it was queued (not a mapping, not msgpack-serializable,
    a malformed embedding, ...). Nothing was sent; the processor keeps serving."""


class RequestTooLargeError(InvalidRequestError):
    """A request encodes to more bytes than the frame-size limit allows."""


class BatchTimeoutError(StratabatchError, TimeoutError):
    """The caller's ``timeout`` ran out, or one handler call exceeded ``processing_timeout``."""


class QueueFullError(StratabatchError, queue.Full):
    """Backpressure: the queue (or the client's ring) is full and ``on_full`` refused the request,
    or the request was evicted by a higher-priority one under ``on_full="drop_lowest"``."""


class HandlerError(StratabatchError, RuntimeError):
    """The batch handler failed.

    Raised to every caller of a batch whose handler raised, returned the wrong number of
    results, or returned something other than a list; and to one caller when the handler
    returned an ``Exception`` instance at that caller's position. Also raised when a
    ``dedup_function`` raises or returns something that is not a similarity in [0, 1].

    Attributes:
        exc_type: Qualified name of the original exception type, or None.
        exc_message: ``str()`` of the original exception, or None.
    """

    def __init__(
        self, message: str, *, exc_type: str | None = None, exc_message: str | None = None
    ) -> None:
        super().__init__(message)
        self.exc_type = exc_type
        self.exc_message = exc_message

    @classmethod
    def from_exception(cls, exc: BaseException, context: str) -> HandlerError:
        """Wrap ``exc``, keeping its type name and message, with ``exc`` as the cause."""
        tname = f"{type(exc).__module__}.{type(exc).__qualname__}"
        if type(exc).__module__ == "builtins":
            tname = type(exc).__qualname__
        text = safe_str(exc)
        err = cls(f"{context}: {tname}: {text}", exc_type=tname, exc_message=text)
        err.__cause__ = exc
        return err


def safe_str(exc: BaseException) -> str:
    """``str(exc)``, or a placeholder when the exception's own ``__str__`` raises (a user's
    exception must never break the answering of a batch)."""
    try:
        text = str(exc)
    except BaseException:  # noqa: BLE001 - any failure of user code, even a BaseException
        return f"<{type(exc).__qualname__}: str() raised>"
    return text if type(text) is str else f"<{type(exc).__qualname__}: str() not a str>"


def copy_error(error: BaseException) -> BaseException:
    """A fresh exception equal to ``error`` for each caller (tracebacks and notes are per
    exception object, so callers must never share one)."""
    if isinstance(error, HandlerError):
        new: BaseException = HandlerError(
            str(error), exc_type=error.exc_type, exc_message=error.exc_message
        )
    else:
        try:
            new = type(error)(*error.args)
        except Exception:
            new = StratabatchError(safe_str(error))
    new.__cause__ = error.__cause__
    return new


class EngineUnavailableError(StratabatchError, ConnectionError):
    """No engine answers under that name, or the engine died while requests were waiting."""


class EngineStartError(EngineUnavailableError):
    """``stratabatch-engine`` cannot start; :attr:`status` is the exit status that says why
    (:mod:`stratabatch.exitcodes`)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class RemoteTraceback(StratabatchError):
    """The traceback of an exception raised in another process (the engine's handler), as text.

    A :class:`HandlerError` that crossed from the engine has one as its ``__cause__``, so a
    printed traceback shows where the handler failed (as ``concurrent.futures`` does for a
    worker process's exception).
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text.rstrip()}\n"""'


class ModelIntegrityError(StratabatchError, RuntimeError):
    """A model or vocabulary file of the ``semantic`` extra is missing, or its sha256 is not
    the pinned one."""


__all__ = [
    "BatchTimeoutError",
    "ConfigError",
    "EngineStartError",
    "EngineUnavailableError",
    "HandlerError",
    "InvalidRequestError",
    "ModelIntegrityError",
    "QueueFullError",
    "RemoteTraceback",
    "RequestTooLargeError",
    "StratabatchError",
]
