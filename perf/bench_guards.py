"""CPU cost of the merge guards and the canonical text, per request.

Peers in one run (so the ratios hold on a noisy machine), on the texts of
tests/data/guard_pairs.jsonl (short questions; ``--long`` adds the shared-preamble prompts):

* ``canonical_batch``: the canonical words of every text, one batch pass (what every request
  pays before embedding);
* ``embed raw`` / ``embed canonical``: the hashing embedder on the raw and canonical texts;
* ``features``: the guard features of a text (paid only by requests that have a candidate);
* ``veto``: one guard decision on a candidate pair (features cached);
* ``leader_cluster`` / ``candidates``: the unguarded kernel vs the candidate kernel on the
  same vectors;
* ``pass: guards off`` / ``pass: guards on``: a whole dedup pass through a real
  ``BatchProcessor`` (a burst of every text, a handler that returns at once), with the word
  guards and the canonical text off (``dedup_guards=()``, ``canonicalize=False``) and on.

    python perf/bench_guards.py [--repeats 7] [--batch 1024] [--long] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]


def timed(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up (JIT, caches)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples)


async def burst(texts: list[str], **options: Any) -> None:
    from stratabatch import BatchProcessor

    async def handler(reqs: list[dict]) -> list[None]:
        return [None] * len(reqs)

    batch = BatchProcessor(handler, max_size=len(texts), window_ms=1000, max_queue=10**6,
                           **options)
    await batch.process([{"query": t} for t in texts])
    await batch.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--long", action="store_true", help="include the long prompts")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import numpy as np

    from stratabatch.candidates import candidates
    from stratabatch.canon import canonical_batch
    from stratabatch.config import GUARDS
    from stratabatch.embed import HashingEmbedder
    from stratabatch.guards import Features, veto
    from stratabatch.kernels import leader_cluster

    rows = [json.loads(x) for x in
            (ROOT / "tests" / "data" / "guard_pairs.jsonl").read_text().splitlines() if x]
    texts = list(dict.fromkeys(t for r in rows for t in (r["a"], r["b"])
                               if args.long or len(t) < 200))
    texts = (texts * (args.batch // len(texts) + 1))[: args.batch]
    n = len(texts)
    emb = HashingEmbedder()
    toks = canonical_batch(texts)
    canon = [" ".join(t) for t in toks]
    feats = [Features(t, k) for t, k in zip(texts, toks, strict=True)]
    pairs = [(feats[i], feats[i + 1]) for i in range(0, n - 1, 2)]
    guards = frozenset(GUARDS)
    X = emb.embed(canon)
    part = np.zeros(n, np.int64)
    thr = emb.recommended_threshold

    def all_vetoes() -> None:
        for a, b in pairs:
            veto(a, b, guards, True)

    results: dict[str, float] = {}  # ns per request (per pair for veto)
    results["canonical_batch"] = timed(lambda: canonical_batch(texts), args.repeats) / n
    results["embed raw"] = timed(lambda: emb.embed(texts), args.repeats) / n
    results["embed canonical"] = timed(lambda: emb.embed(canon), args.repeats) / n
    results["features"] = timed(
        lambda: [Features(t, k) for t, k in zip(texts, toks, strict=True)], args.repeats) / n
    results["veto (per pair)"] = timed(all_vetoes, args.repeats) / len(pairs)
    results["leader_cluster"] = timed(
        lambda: leader_cluster(X, part, thr, 0, method="loop"), args.repeats) / n
    results["candidates"] = timed(lambda: candidates(X, part, thr, 0), args.repeats) / n
    rws, _, _ = candidates(X, part, thr, 0)
    with_cand = len(set(rws.tolist()))
    # the whole pass; a fresh processor each time, so nothing is pending from the last run
    results["pass: guards off"] = timed(
        lambda: asyncio.run(burst(texts, dedup_guards=(), canonicalize=False,
                                  dedup_threshold=0.96)), args.repeats) / n
    results["pass: guards on"] = timed(lambda: asyncio.run(burst(texts)), args.repeats) / n

    print(f"\n{n} texts (distinct {len(set(texts))}), {with_cand} with a candidate at "
          f"{thr}; median of {args.repeats}")
    print("| step | us per request |\n|---|---|")
    for k, v in results.items():
        print(f"| {k} | {v / 1000:.2f} |")
    added = results["pass: guards on"] - results["pass: guards off"]
    print(f"\nguards + canonical text add {added / 1000:.2f} us per request to a whole pass "
          f"({results['pass: guards on'] / results['pass: guards off']:.2f}x)")
    if args.json:
        args.json.write_text(json.dumps({"n": n, "ns_per_request": results}, indent=1))


if __name__ == "__main__":
    main()
