"""stratabatch: batch and deduplicate requests bound for an expensive backend.

Importing this package is cheap: numba, textual and uvloop load on first use.
"""

from __future__ import annotations

from .errors import (
    BatchTimeoutError,
    ConfigError,
    EngineUnavailableError,
    HandlerError,
    InvalidRequestError,
    QueueFullError,
    RequestTooLargeError,
    StratabatchError,
)

__version__ = "0.1.0"

__all__ = [
    "BatchTimeoutError",
    "ConfigError",
    "EngineUnavailableError",
    "HandlerError",
    "InvalidRequestError",
    "QueueFullError",
    "RequestTooLargeError",
    "StratabatchError",
]
