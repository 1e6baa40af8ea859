"""The dedup kernels' warm-up, a component of the core (:class:`~stratabatch.core.Core`).

The numba kernels the options need load in a background thread, never on the event loop, and
the core holds new requests until they have (:attr:`Warmup.ready`). A first start on a machine
with ``cold_start="serve"`` loads only the hash kernel and serves with exact dedup while a
child process compiles the near-dedup kernels, then loads them and switches
(docs/coldstart.md).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core import Core


class Warmup:
    """Loads the kernels ``core``'s options need, off its loop (see the module docstring).

    Attributes:
        fut: Done once the kernels the passes need are loaded (or failed to), None before
            the core binds.
        error: Why they failed to load; every dedup pass fails with it.
        have: (hashing, embedding) kernels loaded.
        background: A first start's :class:`~stratabatch.warm.BackgroundCompile` while it runs.
        upgrading: Exact dedup in force while the near kernels compile in the background.
        log: Where the background compile's lines go (the engine sends them to its own log).
    """

    def __init__(self, core: Core) -> None:
        self.core = core
        self.fut: asyncio.Future | None = None
        self.error: BaseException | None = None
        self.have: tuple[bool, bool] = (False, False)
        self.background: Any = None
        self.upgrading = False
        self.log: tuple[logging.Logger, int] = (
            logging.getLogger("stratabatch.warm"),
            logging.WARNING,
        )

    def _needs(self) -> tuple[bool, bool]:
        c = self.core.config
        embeds = (
            c.enable_dedup
            and c.dedup_function is None
            and c.embedder is None
            and c.dedup_strategy in ("embedding", "hybrid")
        )
        return (c.enable_dedup, embeds)

    def ensure(self) -> None:
        """Load the kernels the options need in a background thread, if not loaded yet; the
        pump holds new requests until they are (the loop never stalls on JIT loading)."""
        loop = self.core.loop
        if loop is None:
            return
        need = self._needs()
        have = self.have
        if (not need[0] or have[0]) and (not need[1] or have[1]):
            if self.fut is None:
                self.fut = loop.create_future()
                self.fut.set_result(None)
            return
        if self.upgrading or (self.fut is not None and not self.fut.done()):
            return  # a warm-up runs; _warmed() checks again
        self.fut = loop.create_future()
        threading.Thread(
            target=self._thread, args=(need,), name="stratabatch-warmup", daemon=True
        ).start()

    def _thread(self, need: tuple[bool, bool]) -> None:
        """Load (or compile) the numba kernels off the event loop."""
        error: BaseException | None = None
        try:
            _retrying_imports(_load_hash)
            if need[1] and self._serve_while_compiling():
                return
            if need[1]:
                _retrying_imports(self._load_near)
        except BaseException as e:  # reported on the loop: the next dedup pass fails with it
            error = e
        loop = self.core.loop
        assert loop is not None
        try:
            loop.call_soon_threadsafe(self._warmed, need, error)
        except RuntimeError:
            pass  # the loop closed first

    def _serve_while_compiling(self) -> bool:
        """In the warm-up thread, with the hash kernel loaded: on a first start with
        ``cold_start="serve"``, compile the near-dedup kernels in a child process while the
        core serves with exact dedup, then load them from the cache and switch. True when it
        did so (the warm-up is then over, or failed and reported)."""
        from . import warm

        unit = warm.background_unit(self.core.config)
        if unit is None:
            return False
        loop = self.core.loop
        assert loop is not None
        logger, level = self.log
        try:
            bg = warm.BackgroundCompile(self.core.config, unit, logger, level)
        except Exception as exc:  # no child process here: compile in this one
            logger.warning("cannot compile in a separate process (%r); compiling here", exc)
            return False
        self.background = bg
        try:
            loop.call_soon_threadsafe(self._serving_exact)
        except RuntimeError:  # the loop closed first
            bg.cancel()
            bg.wait()
            return True
        bg.wait()  # on failure it said so: the load below compiles in this process
        error: BaseException | None = None
        if not self.core._closing:
            try:
                _retrying_imports(self._load_near)
            except BaseException as e:  # reported on the loop: the next dedup pass fails
                error = e
        try:
            loop.call_soon_threadsafe(self._upgraded, bg, error)
        except RuntimeError:
            pass  # the loop closed first
        return True

    def _load_near(self) -> None:
        """Load (or compile) the near-dedup kernels and rehearse a pass (the warm-up thread)."""
        from . import index

        emb = self.core._dedup.embedder()
        emb.embed(["warm up", "warm-up"])
        if hasattr(emb, "embed_profiled"):  # (its word tables load the dictionary)
            emb.embed_profiled(["warm up", "warm-up"])
        from .canon import canonical_texts

        canonical_texts(["warm up", "hi there"])
        from .numberkeys import number_keys

        number_keys(["order 1,000", "-2.50", "n\u00b0 5"])  # (and the non-ASCII path)
        index.warm_up()
        from .rehearsal import rehearse

        rehearse(self.core.config, self.core._dedup.vector_dim())

    def _serving_exact(self) -> None:
        """On the loop: the hash kernel is loaded, the near kernels compile elsewhere; serve
        with exact dedup (a warm_up() returns now)."""
        self.upgrading = True
        self.core._dedup.interim_exact = True
        self.have = (True, self.have[1])
        if self.fut is not None and not self.fut.done():
            self.fut.set_result(None)
        self.core._schedule_pump()

    def _upgraded(self, bg: Any, error: BaseException | None) -> None:
        """On the loop: the background compile is over; near dedup from the next pass on."""
        self.upgrading = False
        self.background = None
        self.core._dedup.interim_exact = False
        if self.core._closing:
            return
        if error is None:
            self.have = (True, True)
            bg.log_done()
        else:
            self.error = error
            logger, _ = self.log
            logger.warning("kernels for strategy=%s did not load: %r", bg.unit, error)
        self.ensure()  # the options may have changed meanwhile
        self.core._schedule_pump()

    def _warmed(self, need: tuple[bool, bool], error: BaseException | None) -> None:
        if error is None:
            have = self.have
            self.have = (have[0] or need[0], have[1] or need[1])
        self.error = error
        if self.fut is not None and not self.fut.done():
            self.fut.set_result(None)
        if error is None:
            self.ensure()  # the options may have changed meanwhile
        self.core._schedule_pump()

    async def wait(self) -> None:
        """Wait until the dedup kernels are loaded (the core bound first)."""
        if self.fut is not None:
            await asyncio.shield(self.fut)

    @property
    def ready(self) -> bool:
        """Whether dedup passes may run (the kernels they need are loaded, or failed to)."""
        return self.fut is None or self.fut.done()

    def cancel(self) -> None:
        """The core closes: stop a background compile's child process."""
        if self.background is not None:
            self.background.cancel()


#: Times the warm-up thread tries an import that CPython's import lock refused as a deadlock.
IMPORT_TRIES = 5


def _load_hash() -> None:
    """Load (or compile) the hash kernel (the warm-up thread)."""
    import numpy as np

    from .kernels import xxh64_batch

    xxh64_batch(np.zeros(8, np.uint8), np.array([0, 8], np.int64))


def _retrying_imports(load: Callable[[], None]) -> None:
    """Run ``load`` (imports and kernel loads, safe to run again), again after a pause when
    CPython's per-module import locks refuse one of its imports as a deadlock
    (``_DeadlockError``): the warm-up thread imports numba's modules while the user's thread
    may be importing, and when their chains cross, one of the two is refused; the other
    finishes, and the retry then finds the module imported (seen once in the suite:
    "_DeadlockError: deadlock detected by _ModuleLock('importlib.resources.abc')"). Any other
    error, or the last try's, goes to the caller."""
    for attempt in range(IMPORT_TRIES):
        try:
            load()
            return
        except RuntimeError as exc:
            if type(exc).__name__ != "_DeadlockError" or attempt == IMPORT_TRIES - 1:
                raise
        time.sleep(0.05 * (attempt + 1))
