"""How often near twins share the twin router's coarse key, and what a key costs in balance.

The Ray Serve router (``stratabatch.rayrouter``) sends a request to the replica of its key. With
a near strategy the key is :func:`~stratabatch.rayrouter.coarse_key`; near twins with another
key land on different replicas and cannot merge. This measures, for the coarse key and the
recipes it was chosen from (no Ray needed, nothing is deployed):

* **labelled pairs** (tests/data/guard_pairs.jsonl, which holds the round-2 pairs too, and
  tests/data/dedup_pairs.jsonl): ``twins``, the share of the pairs the default strategy merges
  (run through a real ``BatchProcessor``, each pair in its own scope, as
  perf/eval_quality.py does) whose keys are equal: those the router keeps together; ``dups``,
  the same over every pair labelled a near repeat (merged or not); ``traps``, the share of the
  pairs labelled different that share a key (they only share a replica: it costs balance, never
  a wrong merge); ``random``, the share of random pairs of distinct labelled texts that share a
  key;
* **perf/workload.py's traffic** (templated intents, surface and typo variants, long prompts
  over one preamble, a unique tail; seed 3, 6,000 requests): ``wl twins``, the share of the
  variants (not paraphrases) whose key equals their intent's text's; ``wl max/4``, the busiest
  of 4 replicas' requests over the mean, by rendezvous over 4 replica ids;
* **one domain's narrow vocabulary** (perf/bench_dedup_depth.py's: 7 words of 26, half near
  twins, 6,000 texts): ``nar twins`` and ``nar max/4``, ``nar max/16`` likewise.

    python perf/eval_ray_keys.py [--json FILE]

Recipes: ``exact`` is :func:`~stratabatch.rayrouter.route_key`; ``canonical`` keys by the
whole canonical text; ``words=k`` by the k lowest-ranked key words (``tail``: of the last so
many key words, 0 = all; ``dict``: dictionary words first). The router's recipe is marked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from perf.bench_dedup_depth import narrow_workload  # noqa: E402
from perf.eval_quality import merged_pairs  # noqa: E402
from perf.workload import WorkloadConfig, generate  # noqa: E402
from stratabatch.canon import canonical_text  # noqa: E402
from stratabatch.dedup import normalize_key  # noqa: E402
from stratabatch.rayrouter import (  # noqa: E402
    COARSE_TAIL,
    COARSE_WORDS,
    coarse_key,
    rendezvous,
    route_key,
)

PAIR_FILES = ("guard_pairs.jsonl", "dedup_pairs.jsonl")
REPLICAS_4 = [f"replica-{i}" for i in range(4)]
REPLICAS_16 = [f"replica-{i}" for i in range(16)]

KeyFn = Callable[[str], bytes]


def load_pairs(data: Path) -> list[dict]:
    """The labelled pairs of :data:`PAIR_FILES`, each (a, b) once."""
    seen: set[tuple[str, str]] = set()
    pairs = []
    for name in PAIR_FILES:
        for line in (data / name).read_text().splitlines():
            if line.strip():
                p = json.loads(line)
                if (p["a"], p["b"]) not in seen:
                    seen.add((p["a"], p["b"]))
                    pairs.append(p)
    return pairs


def recipes() -> list[tuple[str, KeyFn]]:
    """(name, text -> key) of each recipe measured; the router's is marked with a star."""

    def words(k: int, tail: int, first: bool) -> KeyFn:
        def key(text: str) -> bytes:
            out = coarse_key({"query": text}, words=k, tail=tail, dictionary_first=first)
            assert out is not None
            return out

        return key

    out: list[tuple[str, KeyFn]] = [
        ("exact", lambda t: route_key({"query": t})),
        ("canonical", lambda t: canonical_text(normalize_key(t)).encode()),
    ]
    for k, tail, first in [
        (1, 0, False),
        (1, COARSE_TAIL, True),
        (2, 0, False),
        (2, 0, True),
        (2, COARSE_TAIL, False),
        (2, COARSE_TAIL, True),
        (3, COARSE_TAIL, True),
        (2, 24, True),
    ]:
        star = " *" if (k, tail, first) == (COARSE_WORDS, COARSE_TAIL, True) else ""
        name = f"words={k} tail={tail} dict={'y' if first else 'n'}{star}"
        out.append((name, words(k, tail, first)))
    return out


def share(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else float("nan")


def max_over_mean(keys: list[bytes], replicas: list[str]) -> float:
    """The busiest replica's requests over the mean, keys routed by rendezvous."""
    load = Counter(rendezvous(k, replicas) for k in keys)
    return max(load.values()) / (len(keys) / len(replicas))


def measure(name: str, fn: KeyFn, data: dict[str, Any]) -> dict[str, Any]:
    cache: dict[str, bytes] = {}

    def key(text: str) -> bytes:
        k = cache.get(text)
        if k is None:
            k = cache[text] = fn(text)
        return k

    pairs, merged = data["pairs"], data["merged"]
    same = [key(p["a"]) == key(p["b"]) for p in pairs]
    res: dict[str, Any] = {
        "twins": share([s for p, m, s in zip(pairs, merged, same, strict=True) if p["dup"] and m]),
        "dups": share([s for p, s in zip(pairs, same, strict=True) if p["dup"]]),
        "traps": share([s for p, s in zip(pairs, same, strict=True) if not p["dup"]]),
        "random": share([key(a) == key(b) for a, b in data["random"]]),
    }
    wl = data["workload"]
    res["wl_twins"] = share(
        [
            key(r.text) == key(wl.intents[r.intent].text)
            for r in wl.requests
            if r.kind != "tail" and r.variant != "paraphrase"
        ]
    )
    res["wl_max4"] = max_over_mean([key(r.text) for r in wl.requests], REPLICAS_4)
    texts, bases = data["narrow"]
    res["nar_twins"] = share(
        [key(t) == key(b) for t, b in zip(texts, bases, strict=True) if t != b]
    )
    nkeys = [key(t) for t in texts]
    res["nar_max4"] = max_over_mean(nkeys, REPLICAS_4)
    res["nar_max16"] = max_over_mean(nkeys, REPLICAS_16)
    by_kind: dict[str, list[bool]] = {}
    for p, m, s in zip(pairs, merged, same, strict=True):
        if p["dup"] and m:
            by_kind.setdefault(p["kind"], []).append(s)
    res["twins_by_kind"] = {k: (share(v), len(v)) for k, v in sorted(by_kind.items())}
    return res


COLUMNS = (
    ("twins", "twins"),
    ("dups", "dups"),
    ("traps", "traps"),
    ("random", "random"),
    ("wl_twins", "wl twins"),
    ("wl_max4", "wl max/4"),
    ("nar_twins", "nar twins"),
    ("nar_max4", "nar max/4"),
    ("nar_max16", "nar max/16"),
)


def table(results: list[tuple[str, dict[str, Any]]]) -> str:
    lines = [
        "| key | " + " | ".join(c for _, c in COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for name, r in results:
        cells = [f"{r[k]:.4f}" if k == "random" else f"{r[k]:.3f}" for k, _ in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT / "tests" / "data")
    ap.add_argument("--json", type=Path, help="write every result here")
    args = ap.parse_args()

    pairs = load_pairs(args.data)
    t0 = time.perf_counter()
    merged = asyncio.run(merged_pairs(pairs, cold_start="wait"))
    print(f"default strategy over the pairs: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    texts = sorted({t for p in pairs for t in (p["a"], p["b"])})
    rng = random.Random(7)
    rand = [(a, b) for a, b in ((rng.choice(texts), rng.choice(texts)) for _ in range(30_000))]
    ntexts, groups = narrow_workload(6000, 1024, 5)
    first: dict[int, str] = {}
    for t, g in zip(ntexts, groups, strict=True):
        first.setdefault(g, t)
    data = {
        "pairs": pairs,
        "merged": merged,
        "random": [(a, b) for a, b in rand if a != b],
        "workload": generate(WorkloadConfig(seed=3, bursts=4, burst_size=1500)),
        "narrow": (ntexts, [first[g] for g in groups]),
    }
    n_twins = sum(1 for p, m in zip(pairs, merged, strict=True) if p["dup"] and m)
    n_dups = sum(1 for p in pairs if p["dup"])
    print(
        f"{len(pairs)} labelled pairs: {n_dups} near repeats, of which the default strategy "
        f"merges {n_twins} (the twins); {len(pairs) - n_dups} traps"
    )
    results = []
    for name, fn in recipes():
        results.append((name, measure(name, fn, data)))
        print(f"done: {name}", file=sys.stderr)
    print(table(results))
    chosen = next(r for n, r in results if n.endswith("*"))
    print("\nthe router's key (*), twins sharing it by kind:")
    for kind, (s, n) in chosen["twins_by_kind"].items():
        print(f"  {kind:14} {s:.3f} of {n}")
    if args.json:
        args.json.write_text(json.dumps(dict(results), indent=1))


if __name__ == "__main__":
    main()
