"""RSS stays flat over many requests with each ``on_full`` policy.

Drives one BatchProcessor per policy (a no-op handler, exact dedup, a small ``max_queue`` so
the policy engages, priorities on so ``drop_lowest`` has something to choose) with concurrent
list calls (``return_exceptions=True``: refused and evicted requests count as outcomes) and
samples VmRSS from /proc/self/status every ``--every`` requests. The policies are peers in one
process and one run; each starts after a warm-up of ``--every`` requests of its own so that the
first sample does not include one-time allocations (kernels, caches). Reported per policy: RSS
at the first sample, at the end, growth (MB and %), and the outcome mix.

    python perf/bench_memory.py [--requests 1000000] [--every 100000] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import time

from stratabatch import BatchProcessor, StratabatchError


async def noop(requests: list) -> list:
    return [None] * len(requests)


def rss_mb() -> float:
    """Resident set size of this process, from /proc/self/status (MB)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def drive(
    policy: str, total: int, every: int, workers: int, chunk: int, distinct: int, seed: int
) -> dict:
    b = BatchProcessor(
        noop,
        window_ms=1,
        max_size=64,
        max_queue=32,
        on_full=policy,
        dedup_strategy="exact",
        enable_priorities=True,
        max_wait_ms=5,
    )
    await b.warm_up()
    rng = random.Random(seed)
    sent = 0
    ok = failed = 0
    samples: list[tuple[int, float]] = []
    next_sample = every

    async def worker() -> None:
        nonlocal sent, ok, failed
        while sent < total:
            n = min(chunk, total - sent)
            base = sent
            sent += n
            reqs = [{"query": f"question {(base + i) % distinct}"} for i in range(n)]
            try:
                out = await b.process(reqs, priority=rng.randint(0, 9), return_exceptions=True)
            except StratabatchError:  # "reject" refuses a list at the door: the whole call
                failed += n
                await asyncio.sleep(0.001)  # back off (and let the loop dispatch)
                continue
            bad = sum(isinstance(v, StratabatchError) for v in out)
            ok += n - bad
            failed += bad
            if bad:
                await asyncio.sleep(0.001)  # back off, as a client under backpressure would

    async def sampler() -> None:
        nonlocal next_sample
        while next_sample <= total:
            if ok + failed >= next_sample:
                gc.collect()
                samples.append((next_sample, rss_mb()))
                next_sample += every
            else:
                await asyncio.sleep(0.01)

    t0 = time.perf_counter_ns()
    await asyncio.gather(sampler(), *(worker() for _ in range(workers)))
    wall = (time.perf_counter_ns() - t0) / 1e9
    await b.close()
    s = b.get_stats()
    assert s.total_requests == s.unique_requests + s.duplicates + s.dropped + s.queue_depth
    first, last = samples[0][1], samples[-1][1]
    return {
        "policy": policy,
        "requests": total,
        "samples": samples,
        "rss_first_mb": first,
        "rss_last_mb": last,
        "growth_mb": last - first,
        "growth_pct": 100 * (last - first) / first,
        "ok": ok,
        "failed": failed,
        "duplicates": s.duplicates,
        "rejected": s.rejected,
        "dropped": s.dropped,
        "req_per_s": total / wall,
    }


async def run(a: argparse.Namespace) -> list[dict]:
    rows = []
    for policy in ("wait", "reject", "drop_lowest"):
        # warm-up run of the same policy: one-time allocations happen here, not in the figures
        await drive(policy, a.every, a.every, a.workers, a.chunk, a.distinct, a.seed)
        rows.append(
            await drive(policy, a.requests, a.every, a.workers, a.chunk, a.distinct, a.seed)
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--requests", type=int, default=1_000_000)
    p.add_argument("--every", type=int, default=100_000, help="RSS sample period (requests)")
    p.add_argument("--workers", type=int, default=16, help="concurrent callers")
    p.add_argument("--chunk", type=int, default=16, help="requests per process() call")
    p.add_argument("--distinct", type=int, default=50_000, help="distinct texts (rest: twins)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", metavar="FILE")
    a = p.parse_args()
    rows = asyncio.run(run(a))
    first_at = a.every
    print(
        f"\nRSS over {a.requests:,} requests per policy (max_queue=32, exact dedup, no-op handler)"
    )
    print(
        f"{'policy':<12} {'RSS@' + format(first_at, ','):>12} {'RSS@end':>10} "
        f"{'growth MB':>10} {'growth %':>9} {'ok':>9} {'refused':>9} {'req/s':>8}"
    )
    for r in rows:
        print(
            f"{r['policy']:<12} {r['rss_first_mb']:>10.1f}MB {r['rss_last_mb']:>8.1f}MB "
            f"{r['growth_mb']:>+10.1f} {r['growth_pct']:>+8.1f}% {r['ok']:>9,} "
            f"{r['failed']:>9,} {r['req_per_s']:>8,.0f}"
        )
    print("\nsamples (requests: RSS MB):")
    for r in rows:
        print(f"  {r['policy']:<12} " + "  ".join(f"{n // 1000}k:{m:.1f}" for n, m in r["samples"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
