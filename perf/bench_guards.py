"""CPU cost of the merge guards and the canonical text, per request.

Peers in one run (so the ratios hold on a noisy machine), on the texts of
tests/data/guard_pairs.jsonl (short questions; ``--long`` adds the shared-preamble prompts):

* ``canonical_batch``: the canonical words of every text, one batch pass (what every request
  pays before embedding);
* ``embed raw`` / ``embed canonical``: the hashing embedder on the raw and canonical texts;
* ``features (all parts)``: every guard feature of every text (the pass computes them only
  for requests that have a candidate, and only the parts a decision reads);
* ``vetoes of first candidates``: the guard decision on each request's first candidate,
  per request of the batch;
* ``leader_cluster`` / ``exhaustive_candidates (first 8)``: the unguarded clustering kernel vs
  the candidate producer the guarded pass uses (stratabatch.candidates), on the same vectors;
* ``pass ...: guards off / canonical only / on / added``: a whole dedup pass
  (``Deduper.run``: exact stage, embedding, clustering, guards) over fresh requests, with the
  word guards and the canonical text off (``dedup_guards=()``, ``canonicalize=False``,
  threshold 0.96, the unguarded ``leader_cluster`` path), with the canonical text only (no
  word guards, threshold 0.96), and at the defaults, the three alternated; ``added`` is the
  defaults minus guards off (the canonical text and the guards), ``added by the guards``
  the defaults minus the canonical text only. On the dup-heavy batch (half the batch's
  size of pair texts, each twice: exact repeats and many near variants of each question),
  on distinct pair texts, and on one text per question.

    python perf/bench_guards.py [--repeats 7] [--batch 1024] [--long] [--json FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

from stratabatch.rehearsal import ScratchOps

ROOT = Path(__file__).resolve().parents[1]


def timed(fn: Callable[[], Any], repeats: int) -> float:
    """Median ns of ``fn()``, with the garbage collector paused while it runs (as timeit
    does: a collection of the whole heap would land on whichever step triggered it)."""
    fn()  # warm-up (JIT, caches)
    samples = []
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter_ns()
            fn()
            samples.append(time.perf_counter_ns() - t0)
        finally:
            gc.enable()
    return statistics.median(samples)


class _Ops(ScratchOps):
    """The core's side of a dedup pass, reduced to bookkeeping (no queues, no handler)."""

    def __init__(self) -> None:
        super().__init__()
        self.groups = 0

    def new_group(self, req: Any, part: Any) -> Any:
        self.groups += 1  # (``pending`` is keyed by the leader's seq: 0 for these requests)
        return super().new_group(req, part)

    def reject(self, req: Any, error: BaseException) -> None:
        raise AssertionError(f"unexpected rejection: {error!r}")


def dedup_pass(texts: list[str], **options: Any) -> Callable[[], int]:
    """A function running one whole dedup pass (exact stage, embedding, clustering, guards)
    over fresh requests for ``texts``, on a fresh Deduper; returns the number of groups."""
    from stratabatch.config import BatchConfig
    from stratabatch.grouping import Deduper
    from stratabatch.records import Request

    config = BatchConfig(**options)

    def run() -> int:
        ops = _Ops()
        d = Deduper(config, ops)
        d.run([Request({"query": t}, text=t) for t in texts])
        return ops.groups

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--long", action="store_true", help="include the long prompts")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import numpy as np

    from stratabatch.candidates import exhaustive_candidates
    from stratabatch.canon import canonical_batch
    from stratabatch.config import GUARDS
    from stratabatch.embed import HashingEmbedder
    from stratabatch.greedy import leader_cluster
    from stratabatch.guards import Features, veto

    rows = [
        json.loads(x)
        for x in (ROOT / "tests" / "data" / "guard_pairs.jsonl").read_text().splitlines()
        if x
    ]
    distinct = list(
        dict.fromkeys(t for r in rows for t in (r["a"], r["b"]) if args.long or len(t) < 200)
    )
    texts = (distinct * (args.batch // len(distinct) + 1))[: args.batch]
    n = len(texts)
    emb = HashingEmbedder()
    toks = canonical_batch(texts)
    canon = [" ".join(t) for t in toks]
    X = emb.embed(canon)
    part = np.zeros(n, np.int64)
    thr = emb.recommended_threshold
    off_, crows, _, _ = exhaustive_candidates(X, part, thr, 0)
    cand_pairs = [
        (i, int(crows[off_[i]])) for i in range(n) if off_[i + 1] > off_[i]
    ]  # the candidate the greedy pass judges first
    guards = frozenset(GUARDS)

    def features_all() -> list[Features]:
        out = [Features(t, k) for t, k in zip(texts, toks, strict=True)]
        for f in out:  # force every lazy part
            f.counts, f.numbers, f.names  # noqa: B018
        return out

    def vetoes() -> None:
        feats = [Features(t, k) for t, k in zip(texts, toks, strict=True)]
        for i, j in cand_pairs:
            veto(feats[j], feats[i], guards, True)

    results: dict[str, float] = {}  # ns per request
    results["canonical_batch"] = timed(lambda: canonical_batch(texts), args.repeats) / n
    results["embed raw"] = timed(lambda: emb.embed(texts), args.repeats) / n
    results["embed canonical"] = timed(lambda: emb.embed(canon), args.repeats) / n
    results["features (all parts)"] = timed(features_all, args.repeats) / n
    results["vetoes of first candidates"] = timed(vetoes, args.repeats) / n
    results["leader_cluster"] = (
        timed(lambda: leader_cluster(X, part, thr, 0, method="loop"), args.repeats) / n
    )
    results["exhaustive_candidates (first 8)"] = (
        timed(lambda: exhaustive_candidates(X, part, thr, 0), args.repeats) / n
    )
    # Whole dedup passes (the Deduper alone: requests built, no event loop, no handler), the
    # two configurations alternated so that both see the same machine.
    off = dict(dedup_guards=(), canonicalize=False, dedup_threshold=0.96)
    canon_only = dict(dedup_guards=(), canonicalize=True, dedup_threshold=0.96)
    # one text per question: the first side of every pair of both labelled sets, long prompts
    # left out (few near variants, so few candidates: mostly what every request pays)
    old = [
        json.loads(x)
        for x in (ROOT / "tests" / "data" / "dedup_pairs.jsonl").read_text().splitlines()
        if x
    ]
    questions = list(dict.fromkeys(r["a"] for r in rows + old if len(r["a"]) < 200))
    half = distinct[: args.batch // 2]
    workloads = (
        ("dup-heavy", half + half),
        ("variants, distinct", distinct[: args.batch]),
        ("one per question", questions),
    )
    for name, sample in workloads:
        runs = (dedup_pass(sample, **off), dedup_pass(sample, **canon_only), dedup_pass(sample))
        groups = [run() for run in runs]
        times: list[list[float]] = [[], [], []]
        for _ in range(args.repeats):
            for run, t in zip(runs, times, strict=True):
                t.append(timed(run, 1) / len(sample))
        t_off, t_canon, t_on = times
        results[f"pass {name}: guards off"] = statistics.median(t_off)
        results[f"pass {name}: canonical only"] = statistics.median(t_canon)
        results[f"pass {name}: guards on"] = statistics.median(t_on)
        results[f"pass {name}: added"] = statistics.median(
            [b - a for a, b in zip(t_off, t_on, strict=True)]
        )
        results[f"pass {name}: added by the guards"] = statistics.median(
            [b - a for a, b in zip(t_canon, t_on, strict=True)]
        )
        print(
            f"{name}: {len(sample)} requests ({len(set(sample))} distinct), groups: "
            f"{groups[0]} guards off, {groups[1]} canonical only, {groups[2]} guards on"
        )

    print(
        f"\n{n} texts ({len(set(texts))} distinct), {len(cand_pairs)} with a candidate at "
        f"{thr}; median of {args.repeats}"
    )
    print("| step | us per request |\n|---|---|")
    for k, v in results.items():
        print(f"| {k} | {v / 1000:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"n": n, "ns_per_request": results}, indent=1))


if __name__ == "__main__":
    main()
