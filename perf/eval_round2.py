"""Merge quality on the dedup round-2 pairs (issue 20), per phenomenon: the baseline.

Every pair of ``tests/data/guard_pairs_round2.jsonl`` (or ``--pairs``) goes through a real
``BatchProcessor`` in one burst, kept apart from the other pairs by ``dedup_scope``, with
``perf/eval_quality.py``'s ``merged_pairs`` (a pair counts as merged when the handler saw one
item for it). Reported per phenomenon (the family of the pair, see
``tests/data/make_guard_pairs_round2.py``), on the test split and on all pairs:

* ``near``: the share of the near repeats (``dup`` true) that merged;
* ``traps``: the share of the traps and false friends (``dup`` false) that merged, wrongly;
* ``prec``: the precision of the merges (1.000 where nothing merged);
* the pair counts (near / traps) in the header of each configuration's columns.

Configurations, all offline (nothing is downloaded): ``exact``; the default (``embedding``
with the hashing embedder, the guards and the canonical text); ``hybrid``; and, when the
``semantic`` extra and its model package are installed, ``MiniLMEmbedder`` at its default
with the guards (skip it with ``--no-semantic``). Each runs with ``cold_start="wait"``, so
that a first start (kernels not yet compiled on this machine) measures near dedup too.

    python perf/eval_round2.py [--no-semantic] [--split test|all] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from perf.eval_quality import CachedEmbedder, merged_pairs  # noqa: E402

PHENOMENA = (
    "transposition",
    "space_typo",
    "filler",
    "coordination",
    "question_frame",
    "contraction_case",
    "voice_roles",
    "tense_time",
    "modifier",
    "perspective",
    "antonym",
    "names",
    "identifiers",
)


def rates(rows: list[tuple[dict, bool]]) -> dict[str, float]:
    """Near-repeat merge rate, wrong-merge rate and precision of (pair, merged) rows."""
    near = [m for p, m in rows if p["dup"]]
    traps = [m for p, m in rows if not p["dup"]]
    tp, fp = sum(near), sum(traps)
    return {
        "near": tp / len(near) if near else float("nan"),
        "traps": fp / len(traps) if traps else float("nan"),
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "n_near": len(near),
        "n_traps": len(traps),
        "merged_traps": fp,
    }


def by_phenomenon(pairs: list[dict], merged: list[bool]) -> dict[str, dict[str, dict]]:
    """{split: {phenomenon or "ALL": rates}} for the test split and for all pairs."""
    out: dict[str, dict[str, dict]] = {}
    for split in ("test", "all"):
        rows = [
            (p, m)
            for p, m in zip(pairs, merged, strict=True)
            if split == "all" or p["split"] == split
        ]
        names = [n for n in PHENOMENA if any(p["phenomenon"] == n for p, _ in rows)]
        names += sorted({p["phenomenon"] for p, _ in rows} - set(names))
        res = {n: rates([(p, m) for p, m in rows if p["phenomenon"] == n]) for n in names}
        res["ALL"] = rates(rows)
        out[split] = res
    return out


def table(results: list[tuple[str, dict]], split: str) -> str:
    """One row per phenomenon, three columns (near, traps, prec) per configuration."""
    first = results[0][1][split]
    head = "| phenomenon | pairs (near/traps) | " + " | ".join(
        f"{name}: near | traps | prec" for name, _ in results
    )
    lines = [f"\n{split} split", head + " |", "|---|---|" + "---|---|---|" * len(results)]
    for ph in first:
        r0 = first[ph]
        cells = [f"{int(r0['n_near'])}/{int(r0['n_traps'])}"]
        for _, res in results:
            r = res[split][ph]
            cells += [f"{r['near']:.2f}", f"{r['traps']:.2f}", f"{r['precision']:.3f}"]
        label = f"**{ph}**" if ph == "ALL" else ph
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def configurations(semantic: bool) -> list[tuple[str, dict[str, Any]]]:
    # cold_start="wait": a first start on this machine compiles the near-dedup kernels before
    # the first pass instead of merging identical requests only meanwhile (the default
    # "serve"), which would measure "exact" under every name.
    wait: dict[str, Any] = dict(cold_start="wait")
    runs: list[tuple[str, dict[str, Any]]] = [
        ("exact", dict(wait, dedup_strategy="exact")),
        ("default", dict(wait)),
        ("hybrid", dict(wait, dedup_strategy="hybrid")),
    ]
    if semantic:
        try:
            from stratabatch.semantic import MiniLMEmbedder

            mini = MiniLMEmbedder()
        except Exception as exc:  # the extra or its model package is not installed
            print(f"MiniLM skipped: {exc}", file=sys.stderr)
        else:
            runs.append(("MiniLM+guards", dict(wait, embedder=CachedEmbedder(mini))))
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--pairs", type=Path, default=ROOT / "tests" / "data" / "guard_pairs_round2.jsonl"
    )
    ap.add_argument("--no-semantic", action="store_true", help="skip MiniLMEmbedder")
    ap.add_argument("--split", choices=("test", "all"), nargs="*", default=["test", "all"])
    ap.add_argument("--json", type=Path, help="write every result here")
    args = ap.parse_args()

    pairs = [json.loads(x) for x in args.pairs.read_text().splitlines() if x.strip()]
    results: list[tuple[str, dict]] = []
    for name, opts in configurations(not args.no_semantic):
        merged = asyncio.run(merged_pairs(pairs, **opts))
        results.append((name, by_phenomenon(pairs, merged)))
        print(f"done: {name}", file=sys.stderr)
    print(f"merge rates on {args.pairs.name} ({len(pairs)} pairs)")
    for split in args.split:
        print(table(results, split))
    if args.json:
        args.json.write_text(json.dumps(dict(results), indent=1))


if __name__ == "__main__":
    main()
