"""When the engine looks at its rings: a pass on the doorbell, a short spin, then sleep.

A component of :class:`~stratabatch.server.Engine`. The engine's doorbell (one for all
clients) wakes :meth:`Pacer.on_bell`, which schedules one pass (:meth:`Pacer.schedule`):
the intake over every request ring, then the outbox's flush. While arrivals are dense the
pacer looks again on each loop iteration for ``spin_us`` (never spinning inside a
callback); otherwise it sleeps at once (:meth:`Pacer.sleep`): it raises every request ring's
asleep flag, so clients ring the doorbell, unless the core looks again within
:data:`DEAF_S` anyway. Then it sleeps deaf: the flags stay down, clients push without
ringing, and the core's look (:meth:`Pacer.on_look`, its ``on_look`` hook) reads the rings
first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from .config import BatchConfig
from .intake import Intake
from .outbox import Outbox

if TYPE_CHECKING:
    from stratabatch.ipc.doorbell import Doorbell

    from .core import Core
    from .slots import Client

DEAF_S = 0.002
"""Sleep deaf to arrivals when the core looks again within this many seconds (see
:meth:`Pacer.sleep`)."""
DENSE_SPINS = 4
"""Arrivals this many spin windows apart or closer count as dense (the pacer spins)."""


class Pacer:
    """Schedules the engine's passes over its rings, and decides how it sleeps between them.

    Args:
        core: The batching core (when it looks next, how full its queue is).
        config: The batching options (``on_full``, ``max_queue``).
        clients: The connected clients by slot (the engine's table, shared, never copied).
        intake: Takes the requests of a pass in.
        outbox: Writes the answers after a pass.
        spin_s: Seconds the pacer keeps looking after activity before it sleeps.
        after_pass: Called at the end of every pass (the counters' totals).
    """

    def __init__(
        self,
        core: Core,
        config: BatchConfig,
        clients: Mapping[int, Client],
        intake: Intake,
        outbox: Outbox,
        spin_s: float,
        after_pass: Callable[[], None],
    ) -> None:
        self._core = core
        self._config = config
        self._clients = clients
        self._intake = intake
        self._outbox = outbox
        self._spin_s = spin_s
        self._after_pass = after_pass
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bell: Doorbell | None = None
        self.scheduled = False
        """Whether a pass is scheduled on the loop."""
        self.deaf = False
        """Whether the engine sleeps with the request rings' flags down (see :meth:`sleep`)."""
        self._active_until = 0.0
        self._last_work = 0.0  # perf_counter() of the last pass that took requests

    def start(self, loop: asyncio.AbstractEventLoop, bell: Doorbell | None) -> None:
        """Schedule passes on ``loop``; ``bell`` is the doorbell :meth:`on_bell` clears."""
        self._loop = loop
        self._bell = bell

    def on_bell(self) -> None:
        """The doorbell rang (its reader callback): clear it and schedule a pass."""
        assert self._bell is not None
        self._bell.clear()
        self.schedule()

    def schedule(self) -> None:
        """Make one pass on the loop's next iteration (once, however often it is asked)."""
        if not self.scheduled and self._loop is not None:
            self.scheduled = True
            self._loop.call_soon(self._pass)

    def _pass(self) -> None:
        """One pass: drain every request ring, submit, write responses, then spin or sleep."""
        self.scheduled = False
        if self._loop is None:
            return
        self.deaf = False
        got = self._intake.take()
        self._outbox.flush()
        # An adaptive spin, on a fine clock (uvloop's loop.time() moves in whole
        # milliseconds): while arrivals are dense (the previous pass with work was within a
        # few spin windows), look again on each loop iteration for spin_us; else sleep on
        # the doorbell at once, even right after a pass that took work. A trickle of
        # requests then costs one wake-up each, not a spin or an extra loop iteration each.
        now = time.perf_counter()
        if got:
            dense = now - self._last_work < DENSE_SPINS * self._spin_s
            self._last_work = now
            if dense:
                self._active_until = now + self._spin_s
                self.schedule()
            else:  # a lone arrival: sleep now (what came meanwhile is seen by sleep)
                self.sleep()
        elif now < self._active_until:
            self.schedule()  # spin: look again on the next loop iteration
        else:
            self.sleep()
        self._after_pass()

    def sleep(self) -> None:
        """Raise every ring's asleep flag; if one got a frame meanwhile, pass again instead.

        Deaf sleep: when the core looks again soon anyway (a window ends within
        :data:`DEAF_S`), the request rings' flags stay down, so clients push without ringing,
        and that look reads the rings first (:meth:`on_look`). At a moderate rate the engine
        then wakes once per window, not once per arrival, and clients save the doorbell."""
        c = self._config
        core = self._core
        full = c.on_full == "wait" and core.waiting >= c.max_queue
        at = core.next_look_at
        loop = self._loop
        assert loop is not None
        deaf = (
            at is not None and not self._intake.closed and not full and at - loop.time() <= DEAF_S
        )
        for client in self._clients.values():
            if client.closed or client.requests is None:
                continue
            if (
                client.frames
                and client.responses is not None
                and not client.responses.producer_sleep_check(len(client.frames[0]))
            ):
                self.schedule()
                return
            if not full and client.inbox:
                self.schedule()  # decoded requests wait for admission
                return
            if deaf:
                client.requests.consumer_awake()  # (a flag left up from an earlier sleep)
            elif not full and not client.requests.consumer_sleep_check():
                self.schedule()
                return
        self.deaf = deaf

    def on_look(self) -> None:
        """The core is about to look at its queue (its ``on_look`` hook): if the engine sleeps
        deaf, read the rings now (what arrived joins this look), then decide again how to
        sleep."""
        if self.deaf:
            self.deaf = False
            self._intake.take()
            self.schedule()
