"""Requests/s and CPU per request through the embedded core, with a no-op handler.

Peers in the same run: a minimal asyncio batcher (collect for the window, call the handler,
resolve futures; no dedup, no stats, no timeouts) sets the floor of what asyncio itself costs.
Reported: wall req/s, CPU us per request (process time / requests), and the ratio to the
minimal batcher. Callers: 1 (sequential awaits) and 1,000 concurrent.

    python perf/bench_core.py [--requests 20000] [--repeats 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from stratabatch import BatchProcessor


async def noop(requests):
    return [None] * len(requests)


class MinimalBatcher:
    """The smallest correct batcher: the floor the core is compared with."""

    def __init__(self, handler, window_ms: float, max_size: int):
        self.handler, self.window, self.max_size = handler, window_ms / 1000, max_size
        self.pending: list = []
        self.timer = None

    async def process(self, request):
        fut = asyncio.get_running_loop().create_future()
        self.pending.append((request, fut))
        if len(self.pending) >= self.max_size:
            self._flush()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.window, self._flush)
        return await fut

    def _flush(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.pending = self.pending[: self.max_size], self.pending[self.max_size :]
        if self.pending:
            self.timer = asyncio.get_running_loop().call_later(self.window, self._flush)
        asyncio.ensure_future(self._run(batch))

    async def _run(self, batch):
        results = await self.handler([r for r, _ in batch])
        for (_, fut), res in zip(batch, results, strict=True):
            fut.set_result(res)

    async def close(self):
        pass


async def drive(make, n: int, callers: int, distinct: bool) -> tuple[float, float]:
    target = make()
    if hasattr(target, "warm_up"):
        await target.warm_up()
    reqs = [{"query": f"request {i}" if distinct else f"request {i % 100}"} for i in range(n)]
    w0, c0 = time.perf_counter(), time.process_time()
    if callers == 1:
        for r in reqs:
            await target.process(r)
    else:  # `callers` concurrent callers, each awaiting its share of requests in turn

        async def caller(mine):
            for r in mine:
                await target.process(r)

        await asyncio.gather(*(caller(reqs[i::callers]) for i in range(callers)))
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    await target.close()
    return n / wall, cpu / n * 1e6


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--window-ms", type=float, default=10.0)
    p.add_argument("--max-size", type=int, default=32)
    p.add_argument("--json", metavar="FILE")
    a = p.parse_args(argv)

    def core(**kw):
        return lambda: BatchProcessor(noop, window_ms=a.window_ms, max_size=a.max_size, **kw)

    peers = {
        "minimal asyncio batcher": lambda: MinimalBatcher(noop, a.window_ms, a.max_size),
        "stratabatch, dedup off": core(enable_dedup=False),
        "stratabatch, exact dedup": core(dedup_strategy="exact"),
        "stratabatch, embedding dedup": core(dedup_strategy="embedding"),
    }
    rows = []
    for callers in (1, 1000):
        n = a.requests if callers > 1 else max(a.requests // 20, 200)
        for name, make in peers.items():
            runs = [asyncio.run(drive(make, n, callers, True)) for _ in range(a.repeats + 1)][1:]
            rps = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            rows.append(
                {
                    "peer": name,
                    "callers": callers,
                    "requests": n,
                    "req_per_s": rps,
                    "cpu_us_per_req": cpu,
                }
            )
    base = {r["callers"]: r for r in rows if r["peer"].startswith("minimal")}
    print(
        f"\nno-op handler, window {a.window_ms:g} ms, max_size {a.max_size}, "
        f"median of {a.repeats}\n"
    )
    print(f"{'peer':32} {'callers':>7} {'req/s':>10} {'CPU us/req':>11} {'vs minimal':>11}")
    for r in rows:
        ratio = r["req_per_s"] / base[r["callers"]]["req_per_s"]
        r["ratio_to_minimal"] = ratio
        print(
            f"{r['peer']:32} {r['callers']:>7} {r['req_per_s']:>10,.0f} "
            f"{r['cpu_us_per_req']:>11.1f} {ratio:>10.2f}x"
        )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
