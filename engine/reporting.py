"""When the engine publishes its counters: totals after passes, a full snapshot at 10 Hz.

A component of :class:`~stratabatch.server.Engine`, over its
:class:`~stratabatch.publish.Publisher` (which writes the counters block the monitor reads).
After each pass the totals that changed are published (:meth:`Reporter.totals`), at most
every :data:`PUBLISH_S`: a pass may take one request, and publishing each would cost more than
serving it; what changed meanwhile is published :data:`PUBLISH_S` later at the latest. The
engine's 10 Hz tick (:meth:`Reporter.tick`) writes a full snapshot while it is busy and once
a second when idle, and otherwise only moves the heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .core import Core
    from .publish import Publisher
    from .slots import Client

log = logging.getLogger("stratabatch.engine")

PUBLISH_S = 0.1
"""The counters block's totals are published at most this often (seconds): as often as the
monitor refreshes (10 times a second). At 0.02 s the publishing cost 5-9% of a busy engine's
CPU (py-spy, 4 clients at full load)."""


class Reporter:
    """Publishes the core's totals and each client's counts into the counters block.

    Args:
        core: The batching core whose stats are published.
        clients: The connected clients by slot (the engine's table, shared, never copied).
    """

    def __init__(self, core: Core, clients: Mapping[int, Client]) -> None:
        self._core = core
        self._clients = clients
        self._loop: asyncio.AbstractEventLoop | None = None
        self._publisher: Publisher | None = None
        self._later: asyncio.TimerHandle | None = None
        self._published_total = -1
        self._published_done = -1
        self._published_batches = -1
        self._published_at = 0.0
        self._tick_done = -1
        self._tick_sec = 0

    def start(self, loop: asyncio.AbstractEventLoop, publisher: Publisher) -> None:
        """Publish into ``publisher``'s block; a deferred publication is timed on ``loop``."""
        self._loop = loop
        self._publisher = publisher

    def stop(self) -> None:
        """Publish nothing more (the engine closes the block)."""
        if self._later is not None:
            self._later.cancel()
            self._later = None
        self._publisher = None

    def totals(self) -> None:
        """Publish the totals and the clients' counts if they changed (rate-limited)."""
        pub = self._publisher
        if pub is None:
            return
        core = self._core
        st = core.stats
        if (
            st.total_batches == self._published_batches
            and st.total_requests == self._published_total
            and core.completed == self._published_done
        ):
            return
        now = time.monotonic()
        if now - self._published_at < PUBLISH_S:
            if self._later is None and self._loop is not None:
                self._later = self._loop.call_later(PUBLISH_S, self._deferred)
            return
        self._published_at = now
        self._published_batches = st.total_batches
        self._published_total = st.total_requests
        self._published_done = core.completed
        pub.totals(st, core.waiting, core.inflight_batches, len(self._clients))
        self._publish_clients(pub)

    def _deferred(self) -> None:
        self._later = None
        self.totals()

    def _publish_clients(self, pub: Publisher) -> None:
        for client in self._clients.values():
            if client.dirty:
                client.dirty = False
                pub.client(
                    client.slot,
                    requests=client.counts[0],
                    errors=client.counts[1],
                    timeouts=client.counts[2],
                )

    def tick(self) -> None:
        """The engine's 10 Hz tick: a full snapshot into the counters block while busy (and
        once a second), else only the heartbeat. A failure is logged, never raised: the
        monitor's view must never stop the engine."""
        pub = self._publisher
        if pub is None:
            return
        core = self._core
        try:
            busy = core.waiting or core.inflight_batches or core.completed != self._tick_done
            if busy or int(time.time()) != self._tick_sec:
                self._tick_done = core.completed
                self._tick_sec = int(time.time())
                self.totals()
                pub.tick(core.snapshot(), core.inflight_batches, len(self._clients))
            else:
                pub.heartbeat()
        except Exception as exc:
            log.error("publishing counters failed: %s", exc)
