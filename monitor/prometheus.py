"""``stratabatch-monitor NAME --prometheus PORT``: an engine's counters as Prometheus metrics.

A headless exporter beside the engine: it attaches to the engine's counters block read-only at
each scrape (:class:`stratabatch.metrics.EngineCollector`), so it never touches the engine, and
it outlives engine restarts (``stratabatch_engine_up`` is 0 while no engine of that name runs).
It serves until SIGINT or SIGTERM. Textual is never imported.

Exit statuses of this mode: 0 stopped by SIGINT/SIGTERM, 2 bad arguments or
``prometheus_client`` missing (the ``metrics`` extra), 4 the port cannot be bound (the status
``stratabatch-engine`` gives a socket it cannot make).
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any, TextIO

from stratabatch.monitor.snapshot import engine_alive

EXIT_STOPPED = 0
"""Stopped by SIGINT or SIGTERM."""
EXIT_USAGE = 2
"""Bad arguments, or the ``metrics`` extra is not installed."""
EXIT_SOCKET = 4
"""The address cannot be bound (the port is in use, the host is not this machine's)."""


def serve(
    name: str,
    port: int,
    host: str = "127.0.0.1",
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Serve engine ``name``'s counters block at ``http://HOST:PORT/metrics`` until stopped.

    Prints one ready line on ``out`` (``stratabatch-monitor serving name=NAME url=URL``) once
    the port is bound.

    Args:
        name: The engine's name.
        port: The port, 1-65535.
        host: The address to bind (loopback by default).
        out: Where the ready line goes (stdout by default).
        err: Where errors go (stderr by default).
        stop: Serve until this is set (tests); by default until SIGINT/SIGTERM.

    Returns:
        The exit status (module docstring).
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        from stratabatch.metrics import MetricsServer, engine_registry
    except ImportError as exc:
        print(f"stratabatch-monitor: --prometheus: {exc}", file=err, flush=True)
        return EXIT_USAGE
    try:
        registry = engine_registry(name, alive=engine_alive)
        server = MetricsServer.start(registry, port, host)
    except ValueError as exc:
        print(f"stratabatch-monitor: --prometheus: {exc}", file=err, flush=True)
        return EXIT_USAGE
    except OSError as exc:
        print(f"stratabatch-monitor: --prometheus: {exc.strerror}", file=err, flush=True)
        return EXIT_SOCKET
    try:
        print(f"stratabatch-monitor serving name={name} url={server.url}", file=out, flush=True)
        if stop is None:
            _wait_for_signal()
        else:
            stop.wait()
    finally:
        server.close()
    return EXIT_STOPPED


def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM, then put the previous handlers back."""
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):  # a timed wait lets the handler run promptly
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


__all__ = ["EXIT_SOCKET", "EXIT_STOPPED", "EXIT_USAGE", "serve"]
