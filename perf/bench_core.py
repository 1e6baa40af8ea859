"""Benchmark: CPU per request of the embedded core against a 40-line asyncio batcher.

In one process and one event loop: ``--callers`` (256) concurrent caller tasks, each awaiting
``process(request)`` in a loop over its share of ``--requests``; a no-op async handler,
``max_size=32``, ``window_ms=1``. Systems, alternating (round-robin: each once per round), a
fresh event loop and a fresh batcher per run, medians of ``--repeats`` rounds after a warm-up
round:

* **40-line batcher** (:class:`MinimalBatcher`): what a competent user writes: collect until
  ``max_size`` or the window, call the handler, resolve the futures; a handler exception fails
  its batch, a caller that went away is skipped. No dedup, stats, timeouts or backpressure.
* **+ the request checks (yardstick)** (:class:`CheckedBatcher`): the 40-line batcher plus
  the least the contract asks of every call: the request rule checked in the caller (its
  cheapest form), a queue bound, and each request's arrival time for the latency stats; its
  futures and clock as the core's (``asyncio.Future()``, ``time.monotonic()``: cheaper than
  the batcher's ``loop.create_future()`` and ``loop.time()``). Not a peer: it tells how much
  of ``BatchProcessor``'s cost over the batcher any batcher that keeps the contract pays, and
  so where the floor of the targets lies.
* **+ exact dedup (exact yardstick)** (:class:`ExactBatcher`): the yardstick plus the least
  exact dedup asks of every call: the request's exact key (its text normalized as the
  contract says, through the same ASCII fast path the core takes), one dict from key to item
  that groups twins at arrival (a twin takes no batch slot, and a twin of work in the handler
  waits for its result), and one result fanned out to each twin. Its cheapest correct form
  (an item is one flat list, a one-caller item is answered without slicing it); not a peer
  either: what ``BatchProcessor, exact`` costs beyond it is the core's features (timeouts,
  priorities, stats, the general path, the hand-over), and what it costs beyond the batcher
  is the floor of any batcher that keeps the contract with exact dedup.
* **aiodataloader** (when installed: ``pip install aiodataloader``): ``DataLoader`` with
  ``max_batch_size=32`` and ``cache=False`` (its cache would be a result cache across batches,
  not batching); it batches what is asked in one event-loop iteration, it has no window.
* **BatchProcessor without dedup** (``enable_dedup=False``), **exact** (``dedup_strategy=
  "exact"``) and **default embedding** (the default strategy, ``cold_start="wait"`` so near
  dedup is in force from the first request).
* **BatchProcessor, exact, general path** (``dedup_strategy="exact"``,
  ``enable_priorities=True``: the options keep its requests off the row lane, so each gets a
  record and a group, as a request with a priority, a scope or its own vector does). Not a
  target: beside **exact** (the row lane) it tells what the general path costs per request.

The requests are distinct texts by default (``--dups`` sets a fraction of repeats of 200
popular texts): every system then hands the handler the same items, and dedup does all of its
work and saves nothing. Each of these texts holds numbers of its own ("q 3-12345"), and near
dedup compares only texts with equal numbers, so the default strategy finds no candidate for
any of them (each leads alone in its partition, on the row lane: no record, no group);
**BatchProcessor, default, no digits** runs the same processor on distinct
texts of 4-8 words drawn from a vocabulary of 2,000 made-up words (no digits), where it looks
for near twins among every waiting text: the honest figure for the dedup round-2 target.
Reported: CPU us per request (``time.process_time`` over the run, the whole process), req/s,
and the ratios of CPU per request to the 40-line batcher; then the issue's targets with
measured / wanted / met.

Usage::

    python perf/bench_core.py [--quick] [--requests 30000] [--repeats 5] [--callers 256]
                              [--dups 0.0] [--uvloop] [--systems off,exact,...] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stratabatch.perf.benchutil import load_average, median_of, print_targets

_Future = asyncio.Future
_monotonic = time.monotonic


async def noop(requests: list[Any]) -> list[Any]:
    """The no-op batch handler."""
    return [None] * len(requests)


class MinimalBatcher:
    """A 40-line asyncio batcher, the floor the core is compared with."""

    def __init__(self, handler: Callable[..., Any], window_ms: float, max_size: int) -> None:
        self.handler, self.window, self.max_size = handler, window_ms / 1000, max_size
        self.pending: list[tuple[Any, asyncio.Future[Any]]] = []
        self.timer: asyncio.TimerHandle | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def process(self, request: Any) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((request, future))
        if len(self.pending) >= self.max_size:
            self._flush()
        elif self.timer is None:
            self.timer = loop.call_later(self.window, self._flush)
        return await future

    def _flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch = [(r, f) for r, f in self.pending[: self.max_size] if not f.done()]
        del self.pending[: self.max_size]
        if self.pending:
            self.timer = asyncio.get_running_loop().call_later(self.window, self._flush)
        if batch:
            task = asyncio.ensure_future(self._run(batch))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _run(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        try:
            results = await self.handler([r for r, _ in batch])
        except Exception as exc:
            results = [exc] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def close(self) -> None:
        while self.pending or self.tasks:
            if self.pending:
                self._flush()
            await asyncio.gather(*self.tasks)


class CheckedBatcher(MinimalBatcher):
    """The 40-line batcher plus the least of what the contract asks of every single call: the
    request rule checked in the caller (:func:`stratabatch.requests.request_size`, its
    cheapest form: the exact msgpack size of a flat dict computed without encoding it), a
    bound on the queue, and each request's arrival time kept for the latency stats. A
    yardstick, not a peer: no dedup, timeouts, priorities, stats snapshot or hand-over, so
    what ``BatchProcessor`` costs beyond it is its features, and what it costs beyond the
    40-line batcher is a floor for any batcher that keeps the contract. It makes each
    caller's future and reads the clock as the core does (``asyncio.Future()`` on the
    running loop, ``time.monotonic()``), cheaper than the 40-line batcher's
    ``loop.create_future()`` and ``loop.time()``: a floor must not pay what the core
    does not."""

    def __init__(self, handler: Callable[..., Any], window_ms: float, max_size: int) -> None:
        from stratabatch.requests import flat_size, request_size

        super().__init__(handler, window_ms, max_size)
        self.flat_size, self.request_size = flat_size, request_size
        self.max_bytes, self.max_queue, self.waiting = 1 << 20, 10_000, 0
        self.latencies = [0.0] * 4096
        self.done = 0

    async def process(self, request: Any) -> Any:
        size = self.flat_size(request)
        if size is None or size > self.max_bytes:
            self.request_size(request, 0, self.max_bytes)  # (raises for a bad one)
        if self.waiting >= self.max_queue:
            raise RuntimeError("queue full")
        future: asyncio.Future[Any] = _Future()  # (the running loop's, as the core makes it)
        self.waiting += 1
        self.pending.append((request, (future, _monotonic())))
        if len(self.pending) >= self.max_size:
            self._flush()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.window, self._flush)
        return await future

    def _flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch = [(r, fa) for r, fa in self.pending[: self.max_size] if not fa[0].done()]
        self.waiting -= min(self.max_size, len(self.pending)) - len(batch)
        del self.pending[: self.max_size]
        if self.pending:
            self.timer = asyncio.get_running_loop().call_later(self.window, self._flush)
        if batch:
            task = asyncio.ensure_future(self._run(batch))  # type: ignore[arg-type]
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _run(self, batch: list[tuple[Any, Any]]) -> None:
        try:
            results = await self.handler([r for r, _ in batch])
        except Exception as exc:
            results = [exc] * len(batch)
        now = _monotonic()
        arrivals = []
        for (_, (future, arrival)), result in zip(batch, results, strict=True):
            arrivals.append(arrival)
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
        self.waiting -= len(batch)
        i, n = self.done & 4095, len(arrivals)
        if i + n <= 4096:
            self.latencies[i : i + n] = [now - a for a in arrivals]
        self.done += n


class ExactBatcher(CheckedBatcher):
    """The yardstick plus the least exact dedup asks: each request's exact key (its text under
    ``query`` normalized as the contract says: NFKC, casefold, whitespace collapsed; a request
    without that text keyed by its whole canonical encoding), one dict grouping the twins at
    arrival, and one result fanned out to every twin. A twin takes no batch slot (a batch
    closes at ``max_size`` distinct keys) and a twin of work already in the handler waits for
    its result (the dict holds an item from arrival until it is answered). Its cheapest form:
    ASCII text takes ``str.lower`` and a whitespace collapse only when there is something to
    collapse (the core's fast path for it), an item is one flat list ``[payload, key, future,
    arrival, future, arrival, ...]``, and a take of every waiting item is one swap of lists.
    A yardstick, not a peer: no scopes, near dedup, merge stats or timeouts."""

    def __init__(self, handler: Callable[..., Any], window_ms: float, max_size: int) -> None:
        from stratabatch.dedup import canonical_bytes, normalize_key

        super().__init__(handler, window_ms, max_size)
        self.normalize_key, self.canonical_bytes = normalize_key, canonical_bytes
        self.index: dict[Any, list[Any]] = {}  # key -> its item, waiting or running
        self.duplicates = 0

    async def process(self, request: Any) -> Any:
        size = self.flat_size(request)
        if size is None or size > self.max_bytes:
            self.request_size(request, 0, self.max_bytes)  # (raises for a bad one)
        if self.waiting >= self.max_queue:
            raise RuntimeError("queue full")
        t = request.get("query")
        if type(t) is str:
            if t.isascii():
                key: Any = t.lower()
                if not key.isprintable() or "  " in key or key.strip() is not key:
                    key = " ".join(key.split())
            else:
                key = self.normalize_key(t)
        else:
            key = self.canonical_bytes(request)
        future: asyncio.Future[Any] = _Future()
        item = self.index.get(key)
        if item is not None:  # a twin, waiting or running: no slot of its own
            item += (future, _monotonic())
            self.duplicates += 1
            if item[0] is not None:  # (None once taken: running, the twin does not wait)
                self.waiting += 1
            return await future
        self.waiting += 1
        self.index[key] = item = [request, key, future, _monotonic()]
        self.pending.append(item)  # type: ignore[arg-type]
        if len(self.pending) >= self.max_size:
            self._flush()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.window, self._flush)
        return await future

    def _flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        pending: list[Any] = self.pending
        if len(pending) <= self.max_size:
            taken, self.pending = pending, []
        else:
            taken = pending[: self.max_size]
            del pending[: self.max_size]
            self.timer = asyncio.get_running_loop().call_later(self.window, self._flush)
        # every caller of the taken items stops waiting: two list slots each, two an item more
        self.waiting -= (sum(map(len, taken)) >> 1) - len(taken)
        batch, payloads = [], []
        for item in taken:
            if item[2].done() and all(f.done() for f in item[4::2]):
                del self.index[item[1]]  # every caller left
                continue
            batch.append(item)
            payloads.append(item[0])
            item[0] = None  # (running: a twin arriving now waits for its result, not in line)
        if batch:
            task = asyncio.ensure_future(self._run(batch, payloads))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _run(self, batch: list[Any], payloads: list[Any]) -> None:  # type: ignore[override]
        try:
            results = await self.handler(payloads)
        except Exception as exc:
            results = [exc] * len(batch)
        now = _monotonic()
        index = self.index
        arrivals: list[float] = []
        arrived = arrivals.append
        for item, result in zip(batch, results, strict=True):
            del index[item[1]]  # (a twin arriving from now on makes a new item)
            if len(item) == 4:  # one caller (most items)
                arrived(item[3])
                future = item[2]
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
                continue
            arrivals += item[3::2]
            failed = isinstance(result, Exception)
            for future in item[2::2]:
                if future.done():
                    continue
                if failed:
                    future.set_exception(result)
                else:
                    future.set_result(result)
        i, n = self.done & 4095, len(arrivals)
        if i + n <= 4096:
            self.latencies[i : i + n] = [now - a for a in arrivals]
        self.done += n


class DataLoaderPeer:
    """aiodataloader's ``DataLoader`` behind the same ``process`` / ``close`` surface."""

    def __init__(self, max_size: int) -> None:
        from aiodataloader import DataLoader

        self.loader = DataLoader(noop, max_batch_size=max_size, cache=False)

    async def process(self, request: Any) -> Any:
        return await self.loader.load(request)

    async def close(self) -> None:
        pass


def word_requests_for(n: int, dups: float, seed: int) -> list[dict[str, str]]:
    """``n`` requests of 4-8 made-up words (2,000 of them, no digits), distinct but for a
    fraction ``dups`` of repeats of 200 popular ones."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = sorted(
        {"".join(rng.choice(letters) for _ in range(rng.randrange(3, 9))) for _ in range(2_000)}
    )

    def text() -> str:
        return " ".join(rng.choice(vocab) for _ in range(rng.randrange(4, 9)))

    popular = [text() for _ in range(200)]
    seen = set(popular)
    out = []
    while len(out) < n:
        if rng.random() < dups:
            out.append({"query": rng.choice(popular)})
            continue
        t = text()
        if t not in seen:
            seen.add(t)
            out.append({"query": t})
    return out


def requests_for(n: int, dups: float, seed: int) -> list[dict[str, str]]:
    """``n`` requests: distinct texts, a fraction ``dups`` of them repeats of 200 popular ones."""
    rng = random.Random(seed)
    return [
        {"query": f"popular {rng.randrange(200)}" if rng.random() < dups else f"q {seed}-{i}"}
        for i in range(n)
    ]


async def drive(
    make: Callable[[], Any], reqs: list[dict[str, str]], callers: int
) -> dict[str, float]:
    """One run: ``callers`` tasks share ``reqs``; CPU and wall time over the run."""
    target = make()
    if hasattr(target, "warm_up"):
        await target.warm_up()
    await target.process({"query": "warm"})
    it = iter(reqs)

    async def caller() -> None:
        for r in it:
            await target.process(r)

    w0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(caller() for _ in range(callers)))
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    await target.close()
    return {"cpu_us": cpu / len(reqs) * 1e6, "rps": len(reqs) / wall}


MINIMAL = "40-line asyncio batcher"
CHECKED = "  + the request checks (yardstick)"
EXACTYARD = "  + exact dedup (exact yardstick)"
LOADER = "aiodataloader"
OFF = "BatchProcessor, no dedup"
EXACT = "BatchProcessor, exact"
GENERAL = "BatchProcessor, exact, general path"
EMBEDDING = "BatchProcessor, default embedding"
WORDS = "BatchProcessor, default, no digits"
ALIASES = {
    "yardstick": CHECKED,
    "exact-yardstick": EXACTYARD,
    "aiodataloader": LOADER,
    "off": OFF,
    "exact": EXACT,
    "general": GENERAL,
    "embedding": EMBEDDING,
    "words": WORDS,
}
"""``--systems`` names."""


def main(argv: list[str] | None = None) -> int:
    """Run every system ``--repeats`` rounds, print the table and the targets, write JSON."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = ap.add_argument
    add("--quick", action="store_true", help="short run: 8,000 requests, 3 rounds")
    add("--requests", type=int, help="requests per run (30,000; --quick 8,000)")
    add("--repeats", type=int, help="measured rounds; the median is reported (5; --quick 3)")
    add("--callers", type=int, default=256, help="concurrent caller tasks (256)")
    add("--window-ms", type=float, default=1.0, help="window of every batcher (1)")
    add("--max-size", type=int, default=32, help="max_size of every batcher (32)")
    add("--dups", type=float, default=0.0, help="fraction of repeated texts (0.0)")
    add("--uvloop", action="store_true", help="run on uvloop instead of asyncio's loop")
    add(
        "--systems",
        help="comma-separated subset to run (the 40-line batcher always runs: ratios are to "
        f"it): {', '.join(ALIASES)} (default: all)",
    )
    add("--json", metavar="FILE", help="write every figure as JSON")
    a = ap.parse_args(argv)
    chosen = None
    if a.systems:
        wanted = {w.strip() for w in a.systems.split(",") if w.strip()}
        unknown = wanted - set(ALIASES)
        if unknown:
            ap.error(
                f"--systems: unknown {', '.join(sorted(unknown))}; choose from {', '.join(ALIASES)}"
            )
        chosen = {MINIMAL} | {ALIASES[w] for w in wanted}
    n = a.requests or (8_000 if a.quick else 30_000)
    repeats = a.repeats or (3 if a.quick else 5)
    from stratabatch import BatchProcessor

    def core(**kw: Any) -> Callable[[], Any]:
        return lambda: BatchProcessor(
            noop, window_ms=a.window_ms, max_size=a.max_size, cold_start="wait", **kw
        )

    systems: dict[str, Callable[[], Any]] = {
        MINIMAL: lambda: MinimalBatcher(noop, a.window_ms, a.max_size),
        CHECKED: lambda: CheckedBatcher(noop, a.window_ms, a.max_size),
        EXACTYARD: lambda: ExactBatcher(noop, a.window_ms, a.max_size),
    }
    loader_note = None
    try:
        import aiodataloader  # noqa: F401

        systems[LOADER] = lambda: DataLoaderPeer(a.max_size)
    except ImportError:
        loader_note = "aiodataloader is not installed (pip install aiodataloader): skipped"
    systems[OFF] = core(enable_dedup=False)
    systems[EXACT] = core(dedup_strategy="exact")
    systems[GENERAL] = core(dedup_strategy="exact", enable_priorities=True)
    systems[EMBEDDING] = core()
    systems[WORDS] = core()
    if chosen is not None:
        systems = {s: make for s, make in systems.items() if s in chosen}
    texts_of = {WORDS: word_requests_for}  # (the others: requests_for)
    run_loop: Any = asyncio.run
    if a.uvloop:
        import uvloop

        run_loop = uvloop.run
    load0 = load_average()
    print(f"bench_core: {load0}", flush=True)
    print(
        f"one process, {a.callers} callers, no-op handler, max_size {a.max_size}, window "
        f"{a.window_ms:g} ms, {n:,} requests per run ({a.dups:.0%} repeats), "
        f"{'uvloop' if a.uvloop else 'asyncio'} loop, median of {repeats} rounds "
        "(round-robin) after a warm-up round",
        flush=True,
    )
    if loader_note:
        print(loader_note)
    runs: dict[str, list[dict[str, float]]] = {s: [] for s in systems}
    for rnd in range(repeats + 1):
        for i, (name, make) in enumerate(systems.items()):
            reqs = texts_of.get(name, requests_for)(n if rnd else n // 4, a.dups, rnd * 10 + i)
            r = run_loop(drive(make, reqs, a.callers))
            label = f"round {rnd}" if rnd else "warm-up"
            print(
                f"{label:>8} {name:<34}{r['rps']:>9,.0f} req/s {r['cpu_us']:7.2f} us/req",
                file=sys.stderr,
                flush=True,
            )
            if rnd:
                runs[name].append(r)
    load1 = load_average()
    med = {s: median_of(runs[s]) for s in systems}
    base = med[MINIMAL]["cpu_us"]
    loader = med.get(LOADER)
    print(f"\nmedians of {repeats} rounds")
    print(f"{'system':<36}{'req/s':>9}{'CPU us/req':>12}{'x batcher':>11}{'x aiodataloader':>17}")
    for s, r in med.items():
        r["x_batcher_cpu"] = r["cpu_us"] / base
        if loader:
            r["x_aiodataloader_cpu"] = r["cpu_us"] / loader["cpu_us"]
        print(
            f"{s:<36}{r['rps']:>9,.0f}{r['cpu_us']:>12.2f}{r['x_batcher_cpu']:>10.2f}x"
            + (f"{r['x_aiodataloader_cpu']:>16.2f}x" if loader else "")
        )
    print(f"{load1} at the end")
    x = {s: r["x_batcher_cpu"] for s, r in med.items()}
    if CHECKED in x:
        print(
            f"the yardstick (the batcher plus the contract's per-call checks) is {x[CHECKED]:.2f}x"
            " the batcher: a floor for any batcher that checks requests in the caller"
        )
    if EXACTYARD in x:
        print(
            f"the exact yardstick (that plus exact keys, grouping at arrival and fan-out) is "
            f"{x[EXACTYARD]:.2f}x: a floor for any batcher that also keeps exact dedup"
        )
    rows: list[tuple[str, str, str, bool | None]] = []
    if OFF in x:
        rows.append(
            ("no dedup: CPU/req vs the batcher", f"{x[OFF]:.2f}x", "<= 1.3x", x[OFF] <= 1.3)
        )
    if EXACT in x:
        rows.append(
            ("exact: CPU/req vs the batcher", f"{x[EXACT]:.2f}x", "<= 1.5x", x[EXACT] <= 1.5)
        )
    if EMBEDDING in x:
        rows.append(("default embedding: CPU/req vs it", f"{x[EMBEDDING]:.2f}x", "reported", None))
    if WORDS in x:
        rows.append(("  texts without digits", f"{x[WORDS]:.2f}x", "reported", None))
    if EMBEDDING in x and WORDS in x:
        worst = max(x[EMBEDDING], x[WORDS])
        rows.append(("  (dedup round 2's target, both)", f"{worst:.2f}x", "<= 3x", worst <= 3))
    targets = print_targets(rows)
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                {
                    "medians": med,
                    "runs": runs,
                    "targets": targets,
                    "load_average": {"start": load0, "end": load1},
                    "skipped": loader_note,
                    "settings": {**vars(a), "requests": n, "repeats": repeats},
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
