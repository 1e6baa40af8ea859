"""Benchmark the numba kernels against plain numpy/Python peers, in one run, as ratios.

Sections:
  * leader clustering (dim 384) for n in 8, 32, 256, 1024: numba ``leader_cluster`` (auto path,
    plus the loop and BLAS paths forced) vs the numpy reference (X @ X.T, then a greedy pass in
    numpy/Python), on all-unique rows (worst case: every row is compared with every leader) and on
    rows that are 75% near-duplicates (typical traffic);
  * hashing: ``hash_strings`` vs ``hashlib.blake2b`` per string (8-byte digest);
  * the default embedder: sentences/s in batches and one sentence per call.

BLAS runs on one thread, as in the engine: this script sets OPENBLAS_NUM_THREADS=1 (and the
OpenMP/MKL equivalents) before numpy loads, unless the caller already set them.

Usage: python perf/bench_kernels.py [--repeats 7] [--json FILE] [--quick]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402 - the thread pins above must precede numpy's import
import hashlib  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from functools import partial  # noqa: E402

import numpy as np  # noqa: E402

DIM = 384
THRESHOLD = 0.9


def _median_ns(fn: Callable[[], object], repeats: int, min_ns: int = 20_000_000) -> float:
    """Median time of one call: each repeat loops until min_ns elapsed, to beat timer noise."""
    fn()  # warm-up (JIT compile or cache load, BLAS buffers)
    samples = []
    for _ in range(repeats):
        loops = 0
        t0 = time.perf_counter_ns()
        while True:
            fn()
            loops += 1
            elapsed = time.perf_counter_ns() - t0
            if elapsed >= min_ns:
                break
        samples.append(elapsed / loops)
    return statistics.median(samples)


def numpy_leader_cluster(
    X: np.ndarray, part: np.ndarray, threshold: float, n_fixed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The numpy peer: one BLAS product of all rows, then the greedy pass in numpy/Python."""
    n = X.shape[0]
    S = X @ X.T
    ok = (S >= np.float32(threshold)) & (part[:, None] == part[None, :])
    leader = np.arange(n, dtype=np.int64)
    sim = np.ones(n, dtype=np.float32)
    is_leader = np.zeros(n, dtype=bool)
    is_leader[:n_fixed] = True
    for i in range(n_fixed, n):
        cand = np.flatnonzero(ok[i, :i] & is_leader[:i])
        if cand.size:
            leader[i] = cand[0]
            sim[i] = S[i, cand[0]]
        else:
            is_leader[i] = True
    return leader, sim


def _rows(n: int, dup_fraction: float, rng: np.random.Generator) -> np.ndarray:
    n_base = max(1, round(n * (1.0 - dup_fraction)))
    base = rng.standard_normal((n_base, DIM)).astype(np.float32)
    pick = np.concatenate([np.arange(n_base), rng.integers(0, n_base, n - n_base)])
    rng.shuffle(pick)
    X = base[pick] + np.float32(0.02) * rng.standard_normal((n, DIM)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return np.ascontiguousarray(X, dtype=np.float32)


def bench_cluster(repeats: int, sizes: list[int]) -> list[dict]:
    from stratabatch.greedy import leader_cluster

    rng = np.random.default_rng(12345)
    rows = []
    for workload, dup in (("unique", 0.0), ("75% dup", 0.75)):
        for n in sizes:
            X = _rows(n, dup, rng)
            part = np.zeros(n, dtype=np.int64)
            ref = numpy_leader_cluster(X, part, THRESHOLD)
            got = leader_cluster(X, part, THRESHOLD)
            if not np.array_equal(ref[0], got[0]):
                raise SystemExit(f"numba and numpy disagree at n={n} {workload}")
            args = (X, part, THRESHOLD)
            t_np = _median_ns(partial(numpy_leader_cluster, *args), repeats)
            t_auto = _median_ns(partial(leader_cluster, *args), repeats)
            t_loop = _median_ns(partial(leader_cluster, *args, method="loop"), repeats)
            t_blas = _median_ns(partial(leader_cluster, *args, method="blas"), repeats)
            rows.append(
                {
                    "workload": workload,
                    "n": n,
                    "leaders": int((got[0] == np.arange(n)).sum()),
                    "numpy_us": t_np / 1e3,
                    "numba_us": t_auto / 1e3,
                    "loop_us": t_loop / 1e3,
                    "blas_us": t_blas / 1e3,
                    "numba_over_numpy": t_auto / t_np,
                }
            )
    return rows


def _sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    verbs = ["cancel", "track", "change", "reset", "update", "find", "check", "refund"]
    things = ["my order", "the password", "an invoice", "the subscription", "my account email"]
    tails = ["please", "asap", "for order 1234", "today", "before friday", "thanks!"]
    out = []
    for i in range(n):
        s = f"{rng.choice(['How do I', 'Can you', 'Please', 'hey,'])} {rng.choice(verbs)} "
        s += f"{rng.choice(things)} {rng.choice(tails)} #{i % 97}"
        out.append(s)
    return out


def bench_hash(repeats: int) -> list[dict]:
    from stratabatch.kernels import hash_strings

    rows = []
    for n in (1, 32, 1024):
        texts = _sentences(n, seed=n)

        def blake(texts: list[str] = texts) -> list[bytes]:
            return [hashlib.blake2b(t.encode(), digest_size=8).digest() for t in texts]

        t_x = _median_ns(lambda texts=texts: hash_strings(texts), repeats)
        t_b = _median_ns(blake, repeats)
        rows.append(
            {
                "n": n,
                "hash_strings_ns_per_str": t_x / n,
                "blake2b_ns_per_str": t_b / n,
                "ratio": t_x / t_b,
            }
        )
    return rows


def bench_embed(repeats: int) -> list[dict]:
    from stratabatch.embed import HashingEmbedder

    emb = HashingEmbedder()
    rows = []
    for batch in (1, 32, 1024):
        texts = _sentences(batch, seed=batch + 7)
        t = _median_ns(lambda texts=texts: emb.embed(texts), repeats)
        rows.append(
            {
                "batch": batch,
                "us_per_call": t / 1e3,
                "us_per_text": t / 1e3 / batch,
                "sentences_per_s": batch * 1e9 / t,
            }
        )
    return rows


def _blas_info() -> str:
    """BLAS kernel family and thread count as OpenBLAS reports them (threadpoolctl, if present)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    return ", ".join(
        f"{i.get('internal_api')} {i.get('architecture')} threads={i.get('num_threads')}"
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    )


def _print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    if not rows:
        return
    keys = list(rows[0])
    cells = [[f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print("  ".join(k.rjust(w) for k, w in zip(keys, widths, strict=True)))
    for c in cells:
        print("  ".join(v.rjust(w) for v, w in zip(c, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    """Run every section and print one table per section."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7, help="timed repeats per cell (median)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--quick", action="store_true", help="3 repeats, for a smoke run")
    args = ap.parse_args(argv)
    repeats = 3 if args.quick else args.repeats

    env = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE")}
    env["blas"] = _blas_info()
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, {env}")
    results = {
        "env": env,
        "cluster": bench_cluster(repeats, [8, 32, 256, 1024]),
        "hash": bench_hash(repeats),
        "embed": bench_embed(repeats),
    }
    _print_table(
        f"leader clustering, dim {DIM}, threshold {THRESHOLD} (median us per call)",
        results["cluster"],
    )
    _print_table("hashing (ns per string)", results["hash"])
    _print_table("default embedder (HashingEmbedder)", results["embed"])
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
