"""A burst of support questions with duplicates through a BatchProcessor: ``python -m
stratabatch.demo``. Prints each handler call, then what dedup saved."""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from .processor import BatchProcessor

QUESTIONS = [
    "What's the weather in Paris?",
    "Track my order 1234",
    "Cancel my order 1234",
    "How do I reset my password?",
    "Show me my invoice",
    "Turn on dark mode",
    "Turn off dark mode",
    "Book a table for 2 at 7 pm",
    "What are your opening hours?",
    "Do you ship to Canada?",
]


def _variant(text: str, rnd: random.Random) -> str:
    """A surface variant a person might type: case, spacing, punctuation."""
    forms = [
        text,
        text.lower(),
        text.upper(),
        "  " + text + "  ",
        text.rstrip("?") + " ?",
        text.replace(" ", "  "),
        text + "!",
    ]
    return rnd.choice(forms)


async def main_async(n: int, seed: int, window_ms: float) -> None:
    rnd = random.Random(seed)
    calls: list[list[str]] = []

    async def backend(requests: list[dict]) -> list[str]:
        calls.append([r["query"] for r in requests])
        await asyncio.sleep(0.02)  # the expensive model
        return [f"answer #{len(calls)}.{i}" for i in range(len(requests))]

    # 70% of the traffic asks the popular questions (typed in many ways), 30% is a long tail
    texts = [
        _variant(rnd.choice(QUESTIONS), rnd)
        if rnd.random() < 0.7
        else f"Question about ticket {rnd.randrange(10_000)}"
        for _ in range(n)
    ]
    async with BatchProcessor(
        backend, window_ms=window_ms, max_size=32, cost_per_request_usd=0.002
    ) as batch:
        await batch.warm_up()
        t0 = time.perf_counter()
        results = await asyncio.gather(*(batch.process({"query": t}) for t in texts))
        elapsed = time.perf_counter() - t0
        stats = batch.get_stats()
    print(
        f"{n} requests from {n} concurrent callers, window {window_ms:g} ms, "
        f"threshold {batch.dedup_threshold_in_force:.2f} ({batch.dedup_strategy})\n"
    )
    for i, items in enumerate(calls, 1):
        print(f"handler call {i}: {len(items)} unique requests")
        for q in items[:12]:
            print(f"    {q!r}")
        if len(items) > 12:
            print(f"    ... and {len(items) - 12} more")
    print()
    print(f"every caller got its answer:   {len(results)} results in {elapsed * 1000:.0f} ms")
    print(f"handler items (paid calls):    {stats.unique_requests}")
    print(
        f"duplicates merged:             {stats.duplicates} "
        f"(exact {stats.exact_merges}, near {stats.near_merges}; "
        f"dedup rate {stats.dedup_rate:.0%})"
    )
    print(f"cost saved at $0.002/request:  ${stats.cost_saved_usd:.3f}")
    print(
        f"latency p50 / p99:             {stats.latency_ms_p50:.1f} / {stats.latency_ms_p99:.1f} ms"
    )


def main(argv: list[str] | None = None) -> None:
    """Run the demo."""
    p = argparse.ArgumentParser(prog="python -m stratabatch.demo", description=__doc__)
    p.add_argument("-n", type=int, default=200, help="requests in the burst (default 200)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--window-ms", type=float, default=50.0)
    args = p.parse_args(argv)
    asyncio.run(main_async(args.n, args.seed, args.window_ms))


if __name__ == "__main__":
    main()
