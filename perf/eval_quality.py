"""Merge quality of near-duplicate dedup on the labelled guard pairs, through the real path.

Every pair of ``tests/data/guard_pairs.jsonl`` (or ``--pairs``) goes through a real
``BatchProcessor`` in one burst, kept apart from the other pairs by ``dedup_scope``; a pair
counts as merged when the handler saw one item for it. Reported per kind and per split
(train / test): the merge rate (recall for the kinds that should merge, the false-merge rate
for the traps), the precision over all pairs, and the near-repeat rate (surface, typo,
filler, frame, spelling, reorder, long_repeat).

    python perf/eval_quality.py                       # hashing embedder, guards on, a grid
    python perf/eval_quality.py --semantic            # also the MiniLM extra
    python perf/eval_quality.py --thresholds 0.8 0.85 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NEAR = (
    "surface", "typo", "transposition", "space_typo", "filler", "frame", "coordination",
    "spelling", "reorder", "long_repeat",
)  # fmt: skip
TRAPS = (
    "polarity", "roles", "entities", "scope", "numbers", "tense", "identifier", "near_miss",
    "long_trap",
)  # fmt: skip


class CachedEmbedder:
    """An embedder that remembers the vectors of texts it has embedded (same vectors: the
    grid then pays for the model once)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.dim = inner.dim
        self.name = getattr(inner, "name", "cached")
        self.recommended_threshold = getattr(inner, "recommended_threshold", None)
        self.merges_paraphrases = getattr(inner, "merges_paraphrases", True)
        self._cache: dict[str, Any] = {}

    def embed(self, texts: list[str]) -> Any:
        import numpy as np

        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            for t, v in zip(todo, self._inner.embed(todo), strict=True):
                self._cache[t] = v
        return np.stack([self._cache[t] for t in texts])


async def merged_pairs(pairs: list[dict], **options: Any) -> list[bool]:
    from stratabatch import BatchProcessor

    seen: dict[int, int] = defaultdict(int)

    async def handler(reqs: list[dict]) -> list[None]:
        for r in reqs:
            seen[r["pair"]] += 1
        return [None] * len(reqs)

    # cold_start="wait": the options' own strategy from the first request (a first start's
    # default serves exact dedup while the near kernels compile, which would be measured)
    options = {"cold_start": "wait", **options}
    batch = BatchProcessor(
        handler, dedup_scope=("pair",), max_size=4096, window_ms=5, max_queue=100_000, **options
    )
    reqs = [{"query": p[side], "pair": i} for i, p in enumerate(pairs) for side in "ab"]
    await batch.process(reqs)
    await batch.close()
    return [seen[i] == 1 for i in range(len(pairs))]


def summarize(pairs: list[dict], merged: list[bool]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for split in ("train", "test", "all"):
        rows = [
            (p, m)
            for p, m in zip(pairs, merged, strict=True)
            if split == "all" or p.get("split", "all") == split
        ]
        if not rows:
            continue
        res: dict[str, float] = {}
        tp = sum(m and p["dup"] for p, m in rows)
        fp = sum(m and not p["dup"] for p, m in rows)
        res["precision"] = tp / (tp + fp) if tp + fp else 1.0
        traps = [m for p, m in rows if not p["dup"]]
        res["traps"] = sum(traps) / len(traps) if traps else 0.0
        near = [m for p, m in rows if p["kind"] in NEAR]
        res["near"] = sum(near) / len(near) if near else 0.0
        for k in sorted({p["kind"] for p, _ in rows}):
            ks = [m for p, m in rows if p["kind"] == k]
            res[k] = sum(ks) / len(ks)
        res["n"] = len(rows)
        out[split] = res
    return out


def table(title: str, results: list[tuple[str, dict]], split: str, kinds: list[str]) -> str:
    cols = ["precision", "traps", "near", *kinds]
    lines = [
        f"\n{title} ({split} split)",
        "| config | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for name, res in results:
        r = res.get(split)
        if r is None:
            continue
        cells = [
            f"{r[c]:.3f}" if c == "precision" else f"{r.get(c, float('nan')):.2f}" for c in cols
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=Path, default=ROOT / "tests" / "data" / "guard_pairs.jsonl")
    ap.add_argument(
        "--thresholds",
        type=float,
        nargs="*",
        default=[0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.96],
    )
    ap.add_argument("--semantic", action="store_true", help="also the MiniLM extra")
    ap.add_argument(
        "--semantic-thresholds", type=float, nargs="*", default=[0.70, 0.75, 0.80, 0.85, 0.88, 0.90]
    )
    ap.add_argument("--json", type=Path, help="write every result here")
    args = ap.parse_args()

    from stratabatch.embed import HashingEmbedder

    pairs = [json.loads(x) for x in args.pairs.read_text().splitlines() if x.strip()]
    known = (*NEAR, "paraphrase", *TRAPS)
    seen_kinds = list(dict.fromkeys(p["kind"] for p in pairs))
    kinds = [k for k in known if k in seen_kinds] + [k for k in seen_kinds if k not in known]
    runs: list[tuple[str, dict[str, Any]]] = []
    hashing = CachedEmbedder(HashingEmbedder())
    runs.append(
        (
            "hashing, no guards, 0.96 (before)",
            dict(embedder=hashing, dedup_threshold=0.96, dedup_guards=(), canonicalize=False),
        )
    )
    runs.append(("hashing, default", dict(embedder=None)))
    for t in args.thresholds:
        runs.append((f"hashing, guards, {t:.2f}", dict(embedder=hashing, dedup_threshold=t)))
    if args.semantic:
        from stratabatch.semantic import MiniLMEmbedder

        mini = CachedEmbedder(MiniLMEmbedder())
        runs.append(
            (
                "MiniLM, no guards, 0.88 (before)",
                dict(embedder=mini, dedup_threshold=0.88, dedup_guards=(), canonicalize=False),
            )
        )
        runs.append(("MiniLM, default", dict(embedder=mini)))
        for t in args.semantic_thresholds:
            runs.append((f"MiniLM, guards, {t:.2f}", dict(embedder=mini, dedup_threshold=t)))
        runs.append(
            (
                "MiniLM, guards w/o residue, 0.88",
                dict(
                    embedder=mini,
                    dedup_threshold=0.88,
                    dedup_guards=("polarity", "roles", "entities", "scope"),
                ),
            )
        )
    results: list[tuple[str, dict]] = []
    for name, opts in runs:
        merged = asyncio.run(merged_pairs(pairs, **opts))
        results.append((name, summarize(pairs, merged)))
        print(f"done: {name}", file=sys.stderr)
    splits = ("train", "test") if any("split" in p for p in pairs) else ("all",)
    for split in splits:
        print(table(f"merge rates, {args.pairs.name}", results, split, kinds))
    if args.json:
        args.json.write_text(json.dumps(dict(results), indent=1))


if __name__ == "__main__":
    main()
