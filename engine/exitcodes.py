"""The exit statuses of ``stratabatch-engine``, one per way it can end (docs/engine.md).

A supervisor (systemd, Kubernetes, a shell script) tells them apart without reading the log:

====  =====================================================================================
 0    graceful shutdown after SIGINT/SIGTERM: every accepted request was answered
 1    an unexpected error, a bug of ours (a traceback is in the log)
 2    a bad option, config file or handler
 3    another live engine already serves this name
 4    the socket cannot be made: the path is too long, or its directory is not a directory
      owned by this user, or the file system refused
 5    shared memory cannot be made (``/dev/shm`` full or not writable)
 6    stopped at once by a second SIGINT/SIGTERM: unfinished requests failed with
      ``EngineUnavailableError``
====  =====================================================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_USAGE = 2
EXIT_NAME_IN_USE = 3
EXIT_SOCKET = 4
EXIT_SHARED_MEMORY = 5
EXIT_FORCED = 6

MEANINGS = {
    EXIT_OK: "graceful shutdown after SIGINT/SIGTERM (every accepted request was answered); "
    "--compile-only: the kernels are cached; --print-config: printed",
    EXIT_CRASH: "an unexpected error, a bug of ours (a traceback is in the log); "
    "--compile-only: compiling failed or numba cannot cache here",
    EXIT_USAGE: "a bad option, environment variable, config file or handler",
    EXIT_NAME_IN_USE: "another live engine already serves this name",
    EXIT_SOCKET: "the socket cannot be made (path too long, directory not owned by this "
    "user, or refused), or the --metrics-port cannot be bound",
    EXIT_SHARED_MEMORY: "shared memory cannot be made (/dev/shm full or not writable)",
    EXIT_FORCED: "stopped at once by a second SIGINT/SIGTERM: unfinished requests failed",
}
"""Each exit status and what it means, as ``stratabatch-engine --help`` ends."""

__all__ = [
    "EXIT_CRASH",
    "EXIT_FORCED",
    "EXIT_NAME_IN_USE",
    "EXIT_OK",
    "EXIT_SHARED_MEMORY",
    "EXIT_SOCKET",
    "EXIT_USAGE",
    "MEANINGS",
]
