"""The dedup pass over the core's arrivals, in slices (a component of the core).

Arrivals wait in :attr:`Passes.raw`, in arrival order, until a look of the core runs a pass
over them (:meth:`Passes.run`). One pass takes a slice that stays near 10 ms of the loop's
time: at most :data:`MAX_PASS` requests (fewer with near dedup over a deep queue, where each
arrival meets every pending leader); a slice whose requests encode to more than
:data:`INLINE_PASS_BYTES` runs its pure half (normalizing, hashing, embedding) in a worker
thread, so the loop never stalls on large texts, and its decisions are applied on the loop
when the thread is done. A pass that runs out of its own time (:meth:`Deduper.apply` with
``sliced``) leaves the rest of its requests first in line for the next slice, so the
decisions are those of one whole pass.

What a pass decides is carried out through the core's group operations (the
:class:`~stratabatch.grouping.GroupOps` the :class:`~stratabatch.grouping.Deduper` was made
with); the component itself only slices, schedules and reports failures. A failure never
strands a request: every request of a failed slice is rejected with the error.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from .config import BatchConfig
from .errors import StratabatchError, copy_error, safe_str
from .grouping import Deduper, Prepared
from .records import RAW, Group, Request

__all__ = ["INLINE_PASS_BYTES", "MAX_PASS", "MAX_PASS_PAIRS", "THREAD_PASS_BYTES", "Passes"]

INLINE_PASS_BYTES = 128 * 1024
"""A slice whose requests encode to more than this runs its pure half in a worker thread
(smaller slices run inline: a thread hop costs more than they do)."""
THREAD_PASS_BYTES = 8 * 1024 * 1024
"""One threaded slice takes at most this much."""
MAX_PASS = 2048
"""Requests in one inline slice: ~10 ms of exact dedup."""
MAX_PASS_PAIRS = 1_000_000
"""Near dedup compares each new request with every pending leader of its partition: ~12 ns a
pair measured, so ~1M pairs keep one slice near 10 ms."""


class Passes:
    """The arrivals and the pass over them.

    Args:
        config: The live options.
        dedup: The core's :class:`~stratabatch.grouping.Deduper`.
        pending: The core's pending groups by ``seq`` (read for the slice size; without dedup
            each arrival leads a group of its own there).
        reject: Fails one arrival with an error (the core's ``reject``).
        wake: Asks the core for another look soon (a slice is left, or a thread finished).
        kernels_error: Returns the error of the dedup kernels' loading, or None.

    Attributes:
        raw: Arrivals not grouped yet, in arrival order (departed ones included: they are
            skipped by their state).
        preparing: True while a slice's pure half runs in a worker thread.
    """

    def __init__(
        self,
        config: BatchConfig,
        dedup: Deduper,
        pending: dict[int, Group],
        reject: Callable[[Request, BaseException], None],
        wake: Callable[[], None],
        kernels_error: Callable[[], BaseException | None],
    ) -> None:
        self.config = config
        self.raw: list[Request] = []
        self.preparing = False
        self._dedup = dedup
        self._pending = pending
        self._reject = reject
        self._wake = wake
        self._kernels_error = kernels_error

    def limit(self) -> int:
        """How many arrivals one inline slice takes, so that it stays near 10 ms."""
        c = self.config
        if not c.enable_dedup:
            return 8 * MAX_PASS
        if c.dedup_function is not None:  # user code per pair: assume ~1 us a call
            return max(8, min(MAX_PASS, 20_000 // (len(self._pending) + 1)))
        if c.dedup_strategy == "exact":
            return MAX_PASS
        if self._dedup.leaders.table is not None:  # indexed: cost per request flat in depth
            return MAX_PASS
        return max(32, min(MAX_PASS, MAX_PASS_PAIRS // (len(self._pending) + 1)))

    def run(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Run the pass over the next slice of arrivals; True if arrivals remain (another
        look is then asked for)."""
        raw = self.raw
        e = self._kernels_error()
        if e is not None:
            self.raw = []
            for r in raw:
                if r.state == RAW:
                    self._reject(
                        r,
                        StratabatchError(f"dedup kernels failed to load: {type(e).__name__}: {e}"),
                    )
            return False
        dedup = self._dedup
        rest = dedup.take_rest()
        if rest is not None:
            # the rest of a pass that ran out of its slice (Deduper.apply): its requests wait
            # at the front of the arrivals, so a due batch waits for them as for any slice
            ids = {id(r) for r in rest.raw}
            k = 0
            while k < len(raw) and id(raw[k]) in ids:
                k += 1
            self.raw = raw[k:]
            try:
                rest = dedup.apply(rest, sliced=True)
                if rest is not None:
                    self.raw = rest.raw + self.raw
            except Exception as exc:
                self._fail(raw[:k], exc)
            if self.raw:
                self._wake()
                return True
            return False
        limit = self.limit()
        nbytes = 0
        k = 0
        for r in raw:
            k += 1
            if r.state == RAW:
                nbytes += r.size or (len(r.text) if r.text is not None else 0)
            if k >= limit or nbytes >= THREAD_PASS_BYTES:
                break
        chunk = [r for r in raw[:k] if r.state == RAW]
        self.raw = raw[k:]
        if chunk and not self.config.enable_dedup:  # each leads a group of its own
            pending = self._pending
            for r in chunk:
                pending[r.seq] = Group(r)
        elif chunk:
            if nbytes > INLINE_PASS_BYTES:
                self._off_loop(chunk, loop)
            else:
                try:
                    rest = dedup.run(chunk, sliced=True)
                    if rest is not None:  # out of its slice: the rest comes first next time
                        self.raw = rest.raw + self.raw
                except Exception as exc:  # never strand what arrived: each request gets it
                    self._fail(chunk, exc)
        if self.raw:
            self._wake()
            return True
        return False

    def _fail(self, chunk: list[Request], e: BaseException) -> None:
        err = StratabatchError(f"dedup failed: {type(e).__name__}: {safe_str(e)}")
        for r in chunk:
            if r.state == RAW:
                self._reject(r, copy_error(err))

    def _off_loop(self, chunk: list[Request], loop: asyncio.AbstractEventLoop) -> None:
        """Run the pure half of a large slice in a worker thread (the kernels release the
        GIL); its decisions are applied on the loop when it is done."""
        dedup = self._dedup
        self.preparing = True
        try:
            dedup.embedder()  # resolved here, on the loop, not in the thread
        except Exception as e:
            self.preparing = False
            self._fail(chunk, e)
            return

        def work() -> None:
            try:
                prep = dedup.prepare(chunk, embed_ahead=True)
            except BaseException as e:  # noqa: BLE001 - reported on the loop
                prep = Prepared(chunk, [], None, e)
            try:
                loop.call_soon_threadsafe(self._prepared, prep)
            except RuntimeError:
                pass  # the loop closed while this thread ran

        threading.Thread(target=work, name="stratabatch-dedup", daemon=True).start()

    def _prepared(self, prep: Prepared) -> None:
        """Apply a prepared slice for at most one slice of the loop's time
        (:meth:`Deduper.apply` with ``sliced``); what is left continues in the next one."""
        self.preparing = False
        try:
            rest = self._dedup.apply(prep, sliced=True)
            if rest is not None:  # first in the arrivals: the next slice (run) takes it
                self.raw = rest.raw + self.raw
        except Exception as e:
            self._fail(prep.raw, e)
        self._wake()
