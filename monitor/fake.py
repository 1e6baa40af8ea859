"""A fake engine: writes plausible live counters so the monitor can be tried without an engine.

It creates the counters block exactly as the engine does (``CountersWriter.create``) and fills
it with simulated traffic: a request rate that swells and ebbs, duplicates (exact and near, with
similarities above the threshold), batches, latencies, an adaptive window, a few errors and
clients that come and go. Tests drive it step by step with a seed; as a script it runs live::

    python -m stratabatch.monitor.fake [NAME] [--rate 800] [--clients 3] [--history 300]
                                       [--handler module:attr]

Nothing in the monitor imports this module; it is a tool for trying the dashboard and a test
double for the engine.
"""

from __future__ import annotations

import argparse
import math
import signal
import time
from typing import Any

import numpy as np

from stratabatch.ipc.counters import SIMILARITY_BINS, CountersWriter, similarity_bin

DEFAULT_INFO: dict[str, Any] = {
    "handler": "demo.llm:complete",
    "version": "0.1.0",
    "max_size": 32,
    "dedup_strategy": "hybrid",
    "adaptive": True,
    "target_latency_ms": 50.0,
    "min_window_ms": 20.0,
    "max_window_ms": 200.0,
    "max_inflight_batches": 4,
    "max_queue": 10_000,
    "cost_per_request_usd": 0.002,
}


class FakeEngine:
    """Owns a counters block and writes simulated engine activity into it.

    Args:
        name: The engine name (the block is ``counters_segment_name(name)``).
        rate: Mean requests per second.
        clients: Client processes connected at the start.
        seed: Seed of the simulation (the same seed and steps give the same block).
        threshold: The near-duplicate threshold published.
        started_at_ns: The engine's start time; now by default.
        info: Overrides of :data:`DEFAULT_INFO`.
        max_clients: Rows of the client table.
    """

    def __init__(
        self,
        name: str,
        *,
        rate: float = 800.0,
        clients: int = 3,
        seed: int = 0,
        threshold: float = 0.92,
        started_at_ns: int | None = None,
        info: dict[str, Any] | None = None,
        max_clients: int = 64,
    ) -> None:
        self.name = name
        self.rate = rate
        self.threshold = threshold
        self.rng = np.random.default_rng(seed)
        full_info = {"name": name, **DEFAULT_INFO, **(info or {})}
        self.writer = CountersWriter.create(
            name, info=full_info, max_clients=max_clients, started_at_ns=started_at_ns
        )
        self.cost = float(full_info.get("cost_per_request_usd") or 0.0)
        self.max_size = int(full_info.get("max_size") or 32)
        self.t = 0.0  # simulated seconds since start
        self.totals = dict.fromkeys(
            (
                "total_requests",
                "total_batches",
                "unique_requests",
                "duplicates",
                "inflight_coalesced",
                "errors",
                "timeouts",
                "rejected",
                "exact_merges",
                "near_merges",
                "dropped",
                "batch_items",
                "batch_size_max",
            ),
            0,
        )
        self.sim_hist = np.zeros(SIMILARITY_BINS, np.int64)
        self.recent_lat = np.zeros(0)
        self.rps = 0.0
        self.queue = 0
        self.window_ms = 50.0
        self.clients: dict[int, dict[str, int]] = {}
        self._next_pid = 40_000
        self._last_second: int | None = None
        for _ in range(clients):
            self.join()

    # ------------------------------------------------------------------ clients

    def join(self, pid: int | None = None, now_ns: int | None = None) -> int:
        """Connect a simulated client; returns its slot."""
        slot = next(s for s in range(64) if s not in self.clients)
        if pid is None:
            self._next_pid += 17
            pid = self._next_pid
        self.clients[slot] = {"pid": pid}
        self.writer.set_row(
            "clients",
            slot,
            pid=pid,
            connected=1,
            connected_at_ns=time.time_ns() if now_ns is None else now_ns,
        )
        self.writer.set("clients_connected", len(self.clients))
        return slot

    def leave(self, slot: int) -> None:
        """Disconnect the client in ``slot`` (its row is cleared, as the engine does)."""
        del self.clients[slot]
        self.writer.clear_row("clients", slot)
        self.writer.set("clients_connected", len(self.clients))

    # ------------------------------------------------------------------ traffic

    def step(self, dt: float = 0.1, *, now_ns: int | None = None) -> None:
        """Simulate ``dt`` seconds of traffic and publish the counters, as the engine's tick."""
        rng, tot = self.rng, self.totals
        self.t += dt
        swell = 1.0 + 0.6 * math.sin(2 * math.pi * self.t / 90.0) + 0.2 * math.sin(self.t / 7.0)
        n = int(rng.poisson(max(self.rate * swell, 0.0) * dt))
        # the queue keeps the engine's accounting: total = unique + duplicates + dropped + queue
        queue = int(min(rng.poisson(6), self.queue + n))
        done = self.queue + n - queue
        self.queue = queue
        dups = int(rng.binomial(done, 0.45))
        exact = int(rng.binomial(dups, 0.7))
        near = dups - exact
        dropped = int(rng.binomial(done - dups, 0.002))
        unique = done - dups - dropped
        sizes: list[int] = []
        left = unique
        while left > 0:
            size = int(min(left, max(1, rng.normal(self.max_size * 0.7, self.max_size * 0.2))))
            size = min(size, self.max_size)
            sizes.append(size)
            left -= size
        sims = np.minimum(self.threshold + np.abs(rng.normal(0.0, 0.025, near)), 0.9999)
        for s in sims:
            self.sim_hist[similarity_bin(float(s))] += 1
        self.sim_hist[similarity_bin(1.0)] += exact
        lat = rng.lognormal(math.log(self.window_ms * 0.6 + 5.0), 0.45, n)
        self.recent_lat = np.concatenate([self.recent_lat, lat])[-4096:]
        errors = int(rng.binomial(n, 0.001))
        timeouts = int(rng.binomial(n, 0.0005))
        tot["total_requests"] += n
        tot["duplicates"] += dups
        tot["exact_merges"] += exact
        tot["near_merges"] += near
        tot["inflight_coalesced"] += int(rng.binomial(exact, 0.05))
        tot["dropped"] += dropped
        tot["unique_requests"] += unique
        tot["total_batches"] += len(sizes)
        tot["batch_items"] += unique
        tot["batch_size_max"] = max([tot["batch_size_max"], *sizes])
        tot["errors"] += errors
        tot["timeouts"] += timeouts
        tot["rejected"] += int(rng.binomial(n, 0.0002))
        self.rps += (n / dt - self.rps) * min(1.0, dt / 2.0) if dt > 0 else 0.0
        self.window_ms = float(np.clip(self.window_ms + rng.normal(0.0, 2.0), 20.0, 200.0))
        if self.recent_lat.size:
            p50, p95, p99 = (float(x) for x in np.percentile(self.recent_lat, (50, 95, 99)))
        else:
            p50 = p95 = p99 = 0.0
        total = tot["total_requests"]
        stats = {
            "total_requests": total,
            "total_batches": tot["total_batches"],
            "avg_batch_size": tot["batch_items"] / tot["total_batches"]
            if tot["total_batches"]
            else 0.0,
            "unique_requests": tot["unique_requests"],
            "duplicates": tot["duplicates"],
            "dedup_rate": tot["duplicates"] / total if total else 0.0,
            "inflight_coalesced": tot["inflight_coalesced"],
            "requests_per_second": float(self.rps),
            "cost_saved_usd": tot["duplicates"] * self.cost,
            "latency_ms_p50": p50,
            "latency_ms_p95": p95,
            "latency_ms_p99": p99,
            "queue_depth": self.queue,
            "window_ms": self.window_ms,
            "errors": tot["errors"],
            "timeouts": tot["timeouts"],
            "rejected": tot["rejected"],
            "exact_merges": tot["exact_merges"],
            "near_merges": tot["near_merges"],
            "merge_similarity_histogram": tuple(int(x) for x in self.sim_hist),
            "dropped": tot["dropped"],
            "batch_size_max": tot["batch_size_max"],
            "adaptive_a_ms": 4.2,
            "adaptive_b_ms": 0.85,
        }
        w = self.writer
        shares: list[int] = (
            rng.multinomial(n, [1 / len(self.clients)] * len(self.clients)).tolist()
            if self.clients
            else []
        )
        with w.update():
            w.write_stats(stats, now_ns=now_ns)
            w.set("inflight_batches", int(min(rng.poisson(1.5), 4)))
            w.set("dedup_threshold", self.threshold)
            if sizes:
                w.observe_many("batch_size", sizes)
            if n:
                w.observe_many("latency_ms", lat)
            for slot, share in zip(list(self.clients), shares, strict=False):
                w.add_row(
                    "clients",
                    slot,
                    requests=int(share),
                    errors=int(rng.binomial(int(share), 0.001)),
                )

    def tick_second(self, t_s: int) -> None:
        """Push the per-second row for the second ending at ``t_s``."""
        self.writer.sample_second(t_s)

    def run_simulated(self, seconds: int, *, end_s: int, steps_per_s: int = 10) -> None:
        """Simulate ``seconds`` of traffic ending at unix second ``end_s`` (history backfill)."""
        for k in range(seconds):
            t_s = end_s - seconds + k + 1
            for _ in range(steps_per_s):
                self.step(1.0 / steps_per_s, now_ns=t_s * 1_000_000_000)
            self.tick_second(t_s)

    def close(self) -> None:
        """Remove the block, as the engine does on shutdown."""
        self.writer.close()


def main(argv: list[str] | None = None) -> int:
    """Run a fake engine until Ctrl-C or SIGTERM."""
    ap = argparse.ArgumentParser(
        prog="python -m stratabatch.monitor.fake",
        description="Write simulated engine counters for the monitor.",
    )
    ap.add_argument("name", nargs="?", default="default", help="engine name (default: default)")
    ap.add_argument("--rate", type=float, default=800.0, help="mean requests per second")
    ap.add_argument("--clients", type=int, default=3, help="clients connected at the start")
    ap.add_argument(
        "--history", type=int, default=300, help="seconds of simulated history written at the start"
    )
    ap.add_argument(
        "--churn",
        type=float,
        default=20.0,
        help="seconds between a client joining or leaving (0: never)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--handler",
        default=DEFAULT_INFO["handler"],
        help=f"handler name shown by the monitor, module:attr (default: {DEFAULT_INFO['handler']})",
    )
    args = ap.parse_args(argv)
    now = time.time()
    eng = FakeEngine(
        args.name,
        rate=args.rate,
        clients=args.clients,
        seed=args.seed,
        started_at_ns=int((now - args.history) * 1e9),
        info={"handler": args.handler},
    )
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGHUP, _stop)  # the terminal closed
    try:
        eng.run_simulated(args.history, end_s=int(now) - 1)
        print(
            f"fake engine {args.name!r} running (pid of the block's writer: this process); "
            "Ctrl-C stops it",
            flush=True,
        )
        last_s = int(time.time())
        next_churn = time.monotonic() + args.churn
        next_tick = time.monotonic()
        while not stop:
            next_tick += 0.1
            eng.step(0.1)
            sec = int(time.time())
            if sec != last_s:
                eng.tick_second(sec)
                last_s = sec
            if args.churn > 0 and time.monotonic() >= next_churn:
                next_churn += args.churn
                if len(eng.clients) > 1 and eng.rng.random() < 0.5:
                    eng.leave(int(eng.rng.choice(list(eng.clients))))
                else:
                    eng.join()
            time.sleep(max(0.0, next_tick - time.monotonic()))
    finally:
        eng.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
