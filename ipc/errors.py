"""The exceptions raised by :mod:`stratabatch.ipc`.

``stratabatch.ipc`` depends on nothing else of stratabatch, so it keeps its own small hierarchy;
each class also derives from the builtin it narrows, so callers that only know the builtin
(``except ValueError``, ``except FileExistsError``) keep working::

    IpcError (Exception)
    ├── FrameTooLargeError (ValueError)    a frame over the ring's size limit, refused unwritten
    ├── FrameError (ValueError)            a malformed frame (the frame decoder's one error type)
    ├── SegmentExistsError (FileExistsError)   a live owner already holds that segment name
    ├── SegmentNotFoundError (FileNotFoundError)  no segment of that name to attach to
    ├── SegmentLayoutError (ValueError)    wrong magic, layout version or size on attach
    └── ArenaError (ValueError)            a vector or row range refused by the embedding arena

The counters block's errors join this tree in :mod:`stratabatch.ipc.counters`.
"""

from __future__ import annotations


class IpcError(Exception):
    """Base class of every error raised by ``stratabatch.ipc``."""


class FrameTooLargeError(IpcError, ValueError):
    """A frame is larger than the ring's frame-size limit; nothing was written.

    Attributes:
        size: The refused payload size in bytes.
        limit: The largest payload the ring accepts.
    """

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class FrameError(IpcError, ValueError):
    """A frame could not be decoded (malformed, over a decoder limit, or of the wrong shape)."""


class SegmentExistsError(IpcError, FileExistsError):
    """A live process already owns a shared-memory segment of that name ("already running").

    Attributes:
        name: The segment name.
        pid: The owner pid recorded in the segment header (0 if the header was unreadable).
    """

    def __init__(self, message: str, *, name: str, pid: int) -> None:
        super().__init__(message)
        self.name = name
        self.pid = pid


class SegmentNotFoundError(IpcError, FileNotFoundError):
    """No shared-memory segment of that name exists (the owner is not running)."""


class SegmentLayoutError(IpcError, ValueError):
    """A segment's header does not match what the attaching code reads.

    Raised for a wrong magic, another layout version, an inconsistent size, or a header that
    was never completed.
    """


class ArenaError(IpcError, ValueError):
    """A vector or row range was refused: wrong shape, not finite, or not the writer's rows."""


__all__ = [
    "ArenaError",
    "FrameError",
    "FrameTooLargeError",
    "IpcError",
    "SegmentExistsError",
    "SegmentLayoutError",
    "SegmentNotFoundError",
]
