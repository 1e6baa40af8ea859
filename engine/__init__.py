"""stratabatch: batch and deduplicate requests bound for an expensive backend.

Importing this package is cheap: the processor, numpy and the numba kernels load on first
use (PEP 562), and numba, textual and uvloop never load at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from .client import connect
    from .config import BatchConfig, BatchOptions
    from .decorator import batch
    from .processor import BatchProcessor, Completed
    from .stats import Stats

__version__ = "0.1.0"

__all__ = [
    "BatchConfig",
    "BatchOptions",
    "BatchProcessor",
    "BatchTimeoutError",
    "Completed",
    "ConfigError",
    "EngineUnavailableError",
    "HandlerError",
    "InvalidRequestError",
    "QueueFullError",
    "RequestTooLargeError",
    "Stats",
    "StratabatchError",
    "batch",
    "connect",
]

_LAZY = {
    "BatchConfig": "config",
    "BatchOptions": "config",
    "BatchProcessor": "processor",
    "Completed": "processor",
    "batch": "decorator",
    "connect": "client",
    "Stats": "stats",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'stratabatch' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
