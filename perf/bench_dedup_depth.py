"""CPU per request of the dedup pass as the queue gets deep, and merge recall of the index.

Section "depth": the core driven directly (no processor, no futures), a no-op async handler,
``window_ms`` 1, ``max_size`` 256, one batch in flight, the default hashing embedder. The queue
is first filled to DEPTH waiting requests and all of them deduped (not timed); then, on every
loop turn, as many new requests are submitted as left the queue, so that each dedup pass
compares ~256 arrivals with ~DEPTH waiting leaders. Reported: process CPU time / requests,
median of the repeats; at least 2 x DEPTH requests are timed, so that the leader matrix is
compacted (and its table renumbered or rebuilt) within the window at every depth. Before the
clock starts, DEPTH requests flow the same way untimed: the steady state of a queue that stays
this deep. (Without them the window also pays the first touch of the memory the leader matrix
grows into: on this VM a page fault per 4 KB, ~0.3-1 s for the ~100 MB of 32,768 leaders,
once per process. The exhaustive reference warms and times fewer requests.) Peers in the same run:
``exact``; ``embedding`` with the exhaustive candidate loop (every arrival against every
leader: the reference); ``embedding`` as shipped (``auto``: the exhaustive loop below
INDEX_MIN_ROWS rows; above, the word index with the default guards, the sign-sketch index
without them at thresholds >= 0.9). The default threshold is the embedder's (0.80 with the
guards). ``--gc``: ``freeze`` (default; as ``stratabatch-engine`` runs, ``stratabatch.gctune``:
``gc.freeze()`` after warm-up, so collections walk only the objects made since, the live
request records among them, and young collections every 10,000 allocations instead of 700),
``on`` (an embedded process that changed nothing), ``off``.

Workload: six-word texts without digits over a 5,000-word synthetic vocabulary. "unique":
every text new. "dups": 30% are exact twins (case and spacing changed) and 20% near twins
(punctuation or a filler word added) of one of the last DEPTH texts, the rest new.

Section "burst": prompts sharing a long preamble and differing in one word of their question,
sent at once through BatchProcessor with the defaults (the hostile case of the word index:
they all share keys and clear the cosine). Peers: as shipped (the residue pre-check in the
candidate producers), and with the pre-check off (the guards asked about every such pair, as
before it). Reported: wall and CPU seconds, guard calls, wrong answers (a prompt answered
with another intent's prompt), and the typo twins left unmerged (answered on their own: their
original's batch had gone to the handler, bounded by ``max_wait_ms``, and finished before the
twin's slice of the burst was grouped; no merge across windows).

Section "narrow": one domain's traffic, seven-word texts drawn from the 26 words of
NARROW_WORDS, half near twins of a recent group (case and spacing, punctuation or a filler,
one typo, two typos), driven through BatchProcessor as users run it (the GC untouched, batches
of 256, one in flight, ``cold_start="wait"``), DEPTH requests kept outstanding in lists of 64;
the no-op handler lets a batch leave once every arrival is deduped, so that DEPTH deduped
requests wait (an instant handler drains the decided groups while the next pass is being
prepared, and few leaders ever wait). Peers, interleaved in each repeat: ``exact``, the default
(the word index with its budgets, :mod:`stratabatch.wordtable`), and the default with the
budgets lifted. Reported: CPU us per request, handler items, live leader rows. Then "narrow
recall": the same workload through :func:`cluster_stream`, merges of the capped index, the
uncapped one and the exhaustive path (the budgets' cost in merges).

Section "recall": 100,000 requests in known duplicate groups (a base text and its variants:
case, punctuation, filler words, one transposed letter pair, one word dropped or repeated),
embedded, then fed in passes of 256 through two leader indexes, exhaustive and indexed;
leaders leave after RECALL_DEPTH newer rows (as if dispatched). Counted: merges of the
exhaustive path, those the index missed, merges only the index made, and merges across
different groups (false merges) for both.

BLAS runs on one thread (set before numpy loads), as in the engine.

    python perf/bench_dedup_depth.py [--depths 256,2048,8192,32768] [--requests 20000]
        [--repeats 3] [--gc freeze|on|off] [--threshold T] [--recall-requests 100000]
        [--burst 500,1000] [--narrow 1024,4096,16384] [--narrow-requests 16384]
        [--narrow-recall-requests 60000] [--skip-depth] [--skip-recall] [--json FILE]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402 - the thread pins above must precede numpy's import
import asyncio  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from stratabatch.config import BatchConfig  # noqa: E402
from stratabatch.core import Core  # noqa: E402
from stratabatch.gctune import settle  # noqa: E402
from stratabatch.records import Request  # noqa: E402

_SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ne",
    "ru",
    "ta",
    "po",
    "si",
    "ve",
    "do",
    "ga",
    "le",
    "zu",
    "bi",
    "fo",
    "ha",
    "je",
    "ny",
    "qu",
    "wa",
    "ter",
    "son",
    "mar",
    "pel",
]
_FILLERS = ["please", "thanks", "hey", "just", "quick question"]


def vocabulary(rng: random.Random, size: int = 5000) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def workload(n: int, depth: int, dups: bool, seed: int) -> list[str]:
    """n texts; with ``dups``, twins of one of the last ``depth`` texts (see the docstring)."""
    rng = random.Random(seed)
    vocab = vocabulary(rng)
    out: list[str] = []
    for _ in range(n):
        x = rng.random()
        if dups and out and x < 0.5:
            base = out[rng.randrange(max(0, len(out) - depth), len(out))]
            if x < 0.3:
                out.append(
                    "  ".join(base.upper().split()) if rng.random() < 0.5 else base.capitalize()
                )
            else:
                out.append(base + "?" if rng.random() < 0.5 else f"{rng.choice(_FILLERS)} {base}")
        else:
            out.append(" ".join(rng.choice(vocab) for _ in range(6)))
    return out


async def _noop(reqs: list) -> list:
    return [None] * len(reqs)


async def drive(
    strategy: str,
    method: str,
    depth: int,
    texts: list[str],
    measured: int,
    threshold: float | None = None,
    gc_mode: str = "on",
    guards: str = "default",
    warm: int = 0,
) -> float:
    """CPU us per request over ``measured`` requests submitted while ``depth`` wait, after
    ``warm`` requests that flowed the same way untimed."""
    done = [0]
    answered = asyncio.Event()

    def on_complete(req: Request, value: object, error: BaseException | None) -> None:
        done[0] += 1
        answered.set()

    cfg = BatchConfig(
        window_ms=1,
        max_size=256,
        max_inflight_batches=1,
        max_queue=10_000_000,
        dedup_strategy=strategy,
        dedup_threshold=threshold,
        **({} if guards == "default" else {"dedup_guards": ()}),
    )
    core = Core(cfg, on_complete, _noop)
    core._dedup.leaders.method = method
    core.bind(asyncio.get_running_loop())
    await core.warm_up()
    thresholds = gc.get_threshold()
    if gc_mode == "freeze":
        settle()  # as stratabatch-engine does once it is ready
    elif gc_mode == "off":
        gc.disable()
    it = iter(texts)
    sent = 0

    def submit(k: int) -> None:
        nonlocal sent
        for _ in range(k):
            t = next(it)
            core.submit(Request({"query": t}, text=t))
            sent += 1

    async def flow(count: int) -> None:
        """Keep ``depth`` waiting until ``count`` more requests were sent."""
        s0 = sent
        while sent - s0 < count:
            room = min(depth - core.waiting, count - (sent - s0))
            if room > 0:
                submit(room)
            # sleep until answers free room: a driver spinning on sleep(0) would bill its own
            # idle loop turns to the requests, more for the slower peers
            answered.clear()
            await answered.wait()
        while core._raw or core._preparing:  # every request deduped
            await asyncio.sleep(0)

    submit(depth)
    # the clock starts once the whole prefill is deduped (the core slices big passes), and
    # the warm requests have taken the leader matrix and its table to their working size
    while core._raw or core._preparing:
        await asyncio.sleep(0)
    await flow(warm)
    c0 = time.process_time()
    s0 = sent
    await flow(measured)  # (the clock stops once every request is deduped)
    cpu = time.process_time() - c0
    await core.close()
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    gc.enable()
    return cpu / (sent - s0) * 1e6


def bench_depth(
    depths: list[int],
    requests: int,
    repeats: int,
    threshold: float | None,
    gc_mode: str = "freeze",
    guards: str = "default",
) -> list[dict]:
    peers = [
        ("exact", "exact", "auto"),
        ("embedding exhaustive", "embedding", "exhaustive"),
        ("embedding indexed (auto)", "embedding", "auto"),
    ]
    rows = []
    for dups in (False, True):
        for depth in depths:
            row: dict = {"workload": "dups" if dups else "unique", "depth": depth}
            for name, strategy, method in peers:
                n = max(requests, 2 * depth)
                warm = depth
                if method == "exhaustive":  # the reference costs O(depth) a request
                    n = warm = max(1024, min(requests, requests * 512 // depth))
                texts = workload(depth + warm + n + 512, depth, dups, seed=depth)
                runs = [
                    asyncio.run(
                        drive(strategy, method, depth, texts, n, threshold, gc_mode, guards, warm)
                    )
                    for _ in range(repeats)
                ]
                row[name] = statistics.median(runs)
            rows.append(row)
            print(
                f"  {row['workload']:6} depth {depth:6}: "
                + ", ".join(f"{k} {v:.1f}" for k, v in row.items() if isinstance(v, float)),
                flush=True,
            )
    return rows


# --------------------------------------------------------------------------------------------
# A narrow vocabulary: one domain's requests share most of their words
# --------------------------------------------------------------------------------------------

NARROW_WORDS = (
    "order",
    "refund",
    "shipping",
    "delivery",
    "package",
    "tracking",
    "account",
    "password",
    "invoice",
    "payment",
    "return",
    "exchange",
    "warranty",
    "address",
    "status",
    "cancel",
    "discount",
    "coupon",
    "subscription",
    "billing",
    "receipt",
    "store",
    "product",
    "damaged",
    "missing",
    "late",
)


def _typo(word: str, rng: random.Random) -> str:
    """One letter of ``word`` (5+ letters) replaced inside it: a typo the guards accept."""
    p = rng.randrange(1, len(word) - 1)
    return word[:p] + ("x" if word[p] != "x" else "z") + word[p + 1 :]


def narrow_variant(base: str, rng: random.Random) -> str:
    """A near twin of ``base``: case and spacing (30 of 50), punctuation or a filler (10),
    one typo (7), two typos in different words (3)."""
    x = rng.random() * 50
    if x < 30:
        return "  ".join(base.upper().split()) if x < 15 else base.capitalize()
    if x < 40:
        return base + "?" if x < 35 else f"{rng.choice(_FILLERS)} {base}"
    words = base.split()
    long = [k for k, w in enumerate(words) if len(w) >= 5]
    for k in rng.sample(long, min(len(long), 1 if x < 47 else 2)):
        words[k] = _typo(words[k], rng)
    return " ".join(words)


def narrow_workload(n: int, depth: int, seed: int) -> tuple[list[str], list[int]]:
    """n seven-word texts drawn from the 26 words of NARROW_WORDS, with their group ids: half
    new, half a near twin (:func:`narrow_variant`) of one of the last ``depth`` groups."""
    rng = random.Random(seed)
    bases: list[str] = []
    texts, groups = [], []
    for _ in range(n):
        if bases and rng.random() < 0.5:
            g = rng.randrange(max(0, len(bases) - depth // 2), len(bases))
            texts.append(narrow_variant(bases[g], rng))
        else:
            g = len(bases)
            bases.append(" ".join(rng.choice(NARROW_WORDS) for _ in range(7)))
            texts.append(bases[g])
        groups.append(g)
    return texts, groups


_UNCAPPED = 1 << 40


async def drive_processor(
    strategy: str, depth: int, texts: list[str], measured: int, warm: int, capped: bool = True
) -> tuple[float, int, int]:
    """CPU us per request through BatchProcessor (its defaults but for a 1 ms window, batches
    of 256, one in flight, and no queue bound), the GC as the process has it, while ``depth``
    requests wait: lists of 64 requests go in through ``process()`` as lists come back. Also
    returns the handler items of the timed requests, and the median count of live leader
    rows (groups deduped and waiting or running; 0 for ``exact``) while they ran.
    ``capped``: False reads every leader the word keys offer (the budgets of
    :mod:`stratabatch.wordtable` lifted)."""
    from stratabatch import BatchProcessor, wordtable

    items = [0]
    core: Any = None

    async def handler(reqs: list) -> list:
        # a batch leaves once every arrival is deduped: else the instant handler drains the
        # decided groups while the next pass is prepared, and few leaders ever wait
        while core._raw or core._preparing:
            await asyncio.sleep(0.0002)
        items[0] += len(reqs)
        return [None] * len(reqs)

    chunk = 64
    saved = wordtable.FINE_BUDGET, wordtable.PAIR_BUDGET
    if not capped:
        wordtable.FINE_BUDGET = wordtable.PAIR_BUDGET = _UNCAPPED
    try:
        async with BatchProcessor(
            handler=handler,
            window_ms=1,
            max_size=256,
            max_inflight_batches=1,
            max_queue=10_000_000,
            dedup_strategy=strategy,
            cold_start="wait",  # (the steady state: no exact-only start while kernels compile)
        ) as bp:
            await bp.warm_up()
            pos = 0
            outstanding = 0
            room = asyncio.Event()
            tasks: set[asyncio.Task] = set()

            def done(t: asyncio.Task) -> None:
                nonlocal outstanding
                outstanding -= chunk
                tasks.discard(t)
                room.set()

            def send(k: int) -> None:
                nonlocal pos, outstanding
                for _ in range(k // chunk):
                    t = asyncio.ensure_future(
                        bp.process([{"query": q} for q in texts[pos : pos + chunk]])
                    )
                    pos += chunk
                    outstanding += chunk
                    tasks.add(t)
                    t.add_done_callback(done)

            core = bp._core
            leaders = core._dedup.leaders  # (live leaders: deduped groups waiting)
            samples: list[int] = []

            async def flow(count: int) -> None:
                end = pos + count
                while pos < end:
                    send(min(depth - outstanding, end - pos))
                    room.clear()
                    await room.wait()
                    samples.append(leaders.live + len(leaders.lazy))  # (rows or not)

            send(depth)
            await flow(warm)
            samples.clear()
            c0 = time.process_time()
            i0, p0 = items[0], pos
            await flow(measured)
            cpu = time.process_time() - c0
            timed = pos - p0
            used = items[0] - i0
            await asyncio.gather(*tasks)
    finally:
        wordtable.FINE_BUDGET, wordtable.PAIR_BUDGET = saved
    return cpu / timed * 1e6, used, int(statistics.median(samples)) if samples else 0


def bench_narrow(depths: list[int], requests: int, repeats: int) -> list[dict]:
    """The narrow-vocabulary workload at each depth: exact, the default (capped) and the
    default with the budgets lifted, interleaved in each repeat."""
    peers = [
        ("exact", "exact", True),
        ("embedding (default)", "embedding", True),
        ("embedding uncapped", "embedding", False),
    ]
    rows = []
    for depth in depths:
        n = max(requests, 2 * depth) // 64 * 64
        warm = depth // 64 * 64
        texts, _ = narrow_workload(depth + warm + n + 512, depth, seed=depth)
        runs: dict[str, list[float]] = {p[0]: [] for p in peers}
        used: dict[str, list[int]] = {p[0]: [] for p in peers}
        live: dict[str, list[int]] = {p[0]: [] for p in peers}
        for _ in range(repeats):
            for name, strategy, capped in peers:
                us, k, lv = asyncio.run(drive_processor(strategy, depth, texts, n, warm, capped))
                runs[name].append(us)
                used[name].append(k)
                live[name].append(lv)
        row: dict = {"depth": depth, "timed": n}
        for name in runs:
            row[name] = statistics.median(runs[name])
            row[f"{name} items"] = int(statistics.median(used[name]))
            row[f"{name} leaders"] = int(statistics.median(live[name]))
        rows.append(row)
        print(
            f"  depth {depth:6}: "
            + ", ".join(
                f"{k} {row[k]:.1f} us ({row[k + ' items']} items, {row[k + ' leaders']} leaders)"
                for k in runs
            ),
            flush=True,
        )
    return rows


def bench_narrow_recall(n: int, depth: int) -> dict:
    """Merges of the narrow workload in passes of 256 (:func:`cluster_stream`, default
    guards and threshold): the word index with its budgets against the same without them
    (and against the exhaustive path), merges across groups counted."""
    from stratabatch import wordtable
    from stratabatch.canon import canonical_batch
    from stratabatch.embed import default_embedder

    texts, groups = narrow_workload(n, depth, seed=7)
    emb = default_embedder()
    X = np.ascontiguousarray(emb.embed([" ".join(t) for t in canonical_batch(texts)]))
    thr = emb.recommended_threshold
    grp = np.array(groups)
    res: dict = {"requests": n, "depth": depth, "threshold": thr}
    lead = {}
    saved = wordtable.FINE_BUDGET, wordtable.PAIR_BUDGET
    for name, method, capped in (
        ("capped", "words", True),
        ("uncapped", "words", False),
        ("exhaustive", "exhaustive", True),
    ):
        if not capped:
            wordtable.FINE_BUDGET = wordtable.PAIR_BUDGET = _UNCAPPED
        try:
            t0 = time.perf_counter()
            lead[name] = cluster_stream(X, method, thr, depth, texts=texts)
            res[f"{name}_s"] = time.perf_counter() - t0
        finally:
            wordtable.FINE_BUDGET, wordtable.PAIR_BUDGET = saved
        merged = lead[name] != np.arange(n)
        res[f"{name}_merges"] = int(merged.sum())
        res[f"{name}_false_merges"] = int((merged & (grp[lead[name]] != grp)).sum())
    cap = lead["capped"] != np.arange(n)
    for ref in ("uncapped", "exhaustive"):
        other = lead[ref] != np.arange(n)
        res[f"lost_vs_{ref}"] = int((other & ~cap).sum())
        res[f"only_capped_vs_{ref}"] = int((cap & ~other).sum())
    return res


# --------------------------------------------------------------------------------------------
# Recall of the index against the exhaustive path
# --------------------------------------------------------------------------------------------


def variant(base: str, rng: random.Random) -> str:
    words = base.split()
    kind = rng.randrange(6)
    if kind == 0:
        return base.upper() if rng.random() < 0.5 else base.capitalize() + "!"
    if kind == 1:
        return f"{rng.choice(_FILLERS)}, {base}?"
    if kind == 2:  # one transposed letter pair in one word
        k = rng.randrange(len(words))
        w = words[k]
        if len(w) > 3:
            p = rng.randrange(1, len(w) - 2)
            words[k] = w[:p] + w[p + 1] + w[p] + w[p + 2 :]
        return " ".join(words)
    if kind == 3:  # one word dropped
        del words[rng.randrange(len(words))]
        return " ".join(words)
    if kind == 4:  # one word said twice
        k = rng.randrange(len(words))
        words.insert(k, words[k])
        return " ".join(words)
    return " ".join(words) + " " + rng.choice(_FILLERS)


def grouped_workload(n: int, window: int, seed: int) -> tuple[list[str], list[int]]:
    """n texts with their group ids: half start a group, half vary a recent group's base."""
    rng = random.Random(seed)
    vocab = vocabulary(rng)
    bases: list[str] = []
    texts, groups = [], []
    for _ in range(n):
        if bases and rng.random() < 0.5:
            g = rng.randrange(max(0, len(bases) - window // 2), len(bases))
            texts.append(variant(bases[g], rng))
        else:
            g = len(bases)
            bases.append(" ".join(rng.choice(vocab) for _ in range(6)))
            texts.append(bases[g])
        groups.append(g)
    return texts, groups


class _Owner:
    def __init__(self, row: int, first: int) -> None:
        self.row: int | None = row  # its row in the index (the index renumbers on compaction)
        self.first = first  # the request that leads it


def cluster_stream(
    X: np.ndarray,
    method: str,
    threshold: float,
    depth: int,
    chunk: int = 256,
    texts: list[str] | None = None,
) -> np.ndarray:
    """The leading request of each request's group, in passes of ``chunk`` rows; a leader
    leaves once ``depth`` newer requests have arrived (as if dispatched). With ``texts``,
    merges go through the default word guards (as the core's with the hashing embedder), and
    except for the ``"exhaustive"`` reference the rows carry their key words (for the word
    index and the residue pre-check); the reference asks the guards about every pair at the
    threshold."""
    from collections import deque

    from stratabatch.greedy import greedy_pass
    from stratabatch.guards import GUARDS, features_batch, veto
    from stratabatch.index import LeaderIndex
    from stratabatch.wordkeys import word_profile

    feats = features_batch(texts) if texts is not None else None
    wk = None
    if feats is not None and method != "exhaustive":
        wk = [word_profile(f.tokens) for f in feats]
    idx = LeaderIndex(method=method)
    idx.dim = X.shape[1]
    out = np.arange(X.shape[0])
    alive: deque[_Owner] = deque()
    for a in range(0, X.shape[0], chunk):
        while alive and alive[0].first < a - depth:
            o = alive.popleft()
            idx.drop(o.row)  # type: ignore[arg-type]
            o.row = None
        rows = X[a : a + chunk]
        start = idx.append(rows, [0] * len(rows), None if wk is None else wk[a : a + len(rows)])
        n = start + len(rows)
        no = None
        if feats is not None:

            def no(i: int, r: int, sim: float, start: int = start, a: int = a) -> bool:
                first = idx.owners[r].first if r < start else a + (r - start)
                return veto(feats[first], feats[a + i - start], GUARDS, False) is not None

        leader, _, late = greedy_pass(
            idx.mat[:n],
            idx.part[:n],
            threshold,
            start,
            idx.candidates(start, threshold),
            veto=no,
            words=idx.word_data(),
        )
        for j, li in enumerate(leader):
            if li == start + j:
                o = _Owner(li, a + j)
                idx.lead(li, o)
                alive.append(o)
            else:
                out[a + j] = idx.owners[li].first if li < start else a + (li - start)
                idx.retire(start + j)
        idx.file_leaders(late)
    return out


def bench_recall(n: int, depth: int, guarded: bool) -> dict:
    """Merges of the exhaustive path the index misses. ``guarded``: the defaults (word guards,
    threshold 0.80, the word index); else no guards at the unguarded threshold 0.96 (the
    sketch index)."""
    from stratabatch.canon import canonical_batch
    from stratabatch.embed import default_embedder

    texts, groups = grouped_workload(n, depth, seed=99)
    emb = default_embedder()
    seen = [" ".join(t) for t in canonical_batch(texts)] if guarded else texts
    X = np.ascontiguousarray(emb.embed(seen), np.float32)
    thr = emb.recommended_threshold if guarded else emb.recommended_threshold_unguarded
    grp = np.array(groups)
    index = "words" if guarded else "index"
    res: dict = {
        "requests": n,
        "depth": depth,
        "threshold": thr,
        "guards": "default" if guarded else "none",
        "index": index,
    }
    leaders = {}
    for method in ("exhaustive", index):
        t0 = time.perf_counter()
        leaders[method] = lead = cluster_stream(
            X, method, thr, depth, texts=texts if guarded else None
        )
        merged = lead != np.arange(n)
        name = "exhaustive" if method == "exhaustive" else "index"
        res[f"{name}_merges"] = int(merged.sum())
        res[f"{name}_false_merges"] = int((merged & (grp[lead] != grp)).sum())
        res[f"{name}_s"] = time.perf_counter() - t0
    ex = leaders["exhaustive"] != np.arange(n)
    ix = leaders[index] != np.arange(n)
    res["missed_by_index"] = int((ex & ~ix).sum())
    res["only_index"] = int((ix & ~ex).sum())
    res["recall"] = 1.0 - res["missed_by_index"] / max(1, int(ex.sum()))
    return res


# --------------------------------------------------------------------------------------------
# A burst of long prompts sharing a preamble
# --------------------------------------------------------------------------------------------

PREAMBLE = (
    "You are a careful assistant for Acme Corp. Answer concisely, cite the policy "
    "section, never invent facts, and use British spelling where the customer does. "
) * 6


_ITEMS = (
    "kettle",
    "toaster",
    "blender",
    "lamp",
    "chair",
    "desk",
    "sofa",
    "mirror",
    "rug",
    "clock",
    "heater",
    "kayak",
    "tent",
    "stove",
    "drill",
    "ladder",
    "camera",
    "speaker",
    "monitor",
    "printer",
)
_COLOURS = (
    "blue",
    "green",
    "black",
    "white",
    "yellow",
    "purple",
    "orange",
    "silver",
    "golden",
    "crimson",
)
_KINDS = (
    "large",
    "small",
    "used",
    "broken",
    "spare",
    "cheap",
    "heavy",
    "vintage",
    "noisy",
    "smart",
    "electric",
    "wooden",
    "plastic",
    "folding",
    "outdoor",
)


def preamble_prompts(n: int) -> tuple[list[str], list[str]]:
    """n prompts (at most 3,000) that share PREAMBLE and differ in a word or more of their
    question (never by a typo: no two words of the lists are typos of each other, checked),
    and a typo variant ("bougth") of each of the first n // 20, sent after all of them (it
    merges with its original while that one still waits or runs)."""
    from itertools import combinations, product

    from stratabatch.guards import is_typo_of

    for words in (_ITEMS, _COLOURS, _KINDS):
        assert not any(is_typo_of(a, b) for a, b in combinations(words, 2))
    combos = list(product(_KINDS, _COLOURS, _ITEMS))[:n]
    if len(combos) < n:
        raise ValueError(f"at most {len(combos)} prompts")
    texts = [
        f"{PREAMBLE} Question: how do I return the {k} {c} {i} I bought last week?"
        for k, c, i in combos
    ]
    return texts, [t.replace("bought", "bougth") for t in texts[: n // 20]]


async def drive_burst(texts: list[str], typos: list[str], precheck: bool) -> dict:
    """All prompts at once through BatchProcessor (defaults, no-op echo handler)."""
    from stratabatch import BatchProcessor
    from stratabatch.index import LeaderIndex

    async def handler(reqs: list) -> list:
        return [r["q"] for r in reqs]

    saved = LeaderIndex.word_data
    if not precheck:  # the guards are asked about every pair at the threshold, as before
        LeaderIndex.word_data = lambda self: None  # type: ignore[method-assign]
    try:
        async with BatchProcessor(handler=handler, max_size=64, window_ms=20, dedup_key="q") as bp:
            await bp.warm_up()
            dedup = bp._core._dedup
            asked = [0]
            real = dedup.veto

            def counting(*args: object) -> object:
                asked[0] += 1
                return real(*args)

            dedup.veto = counting
            t0, c0 = time.perf_counter(), time.process_time()
            out = await bp.process([{"q": t} for t in texts + typos])
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        LeaderIndex.word_data = saved  # type: ignore[method-assign]
    n = len(texts)
    # a typo twin answered with its own text was not merged (its original's batch had
    # finished before the twin's slice was grouped: no merge across windows); any other
    # answer that is not the caller's own intent's is a wrong merge
    sent = texts + typos
    expected = texts + texts[: len(typos)]
    unmerged = sum(o == s != e for o, s, e in zip(out, sent, expected, strict=True))
    wrong = sum(o != e and o != s for o, s, e in zip(out, sent, expected, strict=True))
    return {
        "prompts": n,
        "typos": len(typos),
        "wall_s": wall,
        "cpu_s": cpu,
        "guard_calls": asked[0],
        "wrong": wrong,
        "typos_unmerged": unmerged,
    }


def bench_burst(sizes: list[int]) -> list[dict]:
    rows = []
    for n in sizes:
        texts, typos = preamble_prompts(n)
        for precheck in (True, False):
            r = asyncio.run(drive_burst(texts, typos, precheck))
            r["peer"] = "pre-check (shipped)" if precheck else "guards only"
            rows.append(r)
            print(
                f"  {n:6,} prompts, {r['peer']:20}: {r['wall_s']:6.2f} s wall, "
                f"{r['cpu_s']:6.2f} s CPU, {r['guard_calls']:9,} guard calls, "
                f"{r['wrong']} wrong, {r['typos_unmerged']} of {r['typos']} typo twins unmerged",
                flush=True,
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the sections and print their tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--depths", default="256,2048,8192,32768")
    ap.add_argument("--requests", type=int, default=20_000, help="timed requests per cell")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--recall-requests", type=int, default=100_000)
    ap.add_argument("--recall-depth", type=int, default=4096)
    ap.add_argument("--skip-recall", action="store_true")
    ap.add_argument("--skip-depth", action="store_true")
    ap.add_argument(
        "--burst",
        default="500,1000",
        help="sizes of the shared-preamble burst section ('' to skip)",
    )
    ap.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="dedup_threshold (default: the embedder's, 0.80 with the guards)",
    )
    ap.add_argument(
        "--guards",
        default="default",
        choices=("default", "none"),
        help="dedup_guards: the default five, or none (then the sign-sketch index "
        "serves thresholds >= 0.9)",
    )
    ap.add_argument(
        "--gc",
        default="freeze",
        choices=("freeze", "on", "off"),
        help="the cyclic GC while timing (see the module docstring)",
    )
    ap.add_argument(
        "--narrow",
        default="1024,4096,16384",
        help="depths of the narrow-vocabulary section ('' to skip)",
    )
    ap.add_argument("--narrow-requests", type=int, default=16_384)
    ap.add_argument("--narrow-recall-requests", type=int, default=60_000)
    ap.add_argument("--narrow-recall-depth", type=int, default=4096)
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args(argv)
    out: dict = {}
    if a.narrow:
        print(
            "narrow: 7 words of a 26-word vocabulary, half near twins (BatchProcessor, the GC "
            "as the process has it; CPU us per request, median of repeats; handler items)",
            flush=True,
        )
        depths = [int(x) for x in a.narrow.split(",")]
        rows = out["narrow"] = bench_narrow(depths, a.narrow_requests, a.repeats)
        names = ["exact", "embedding (default)", "embedding uncapped"]
        print(f"\n{'waiting':>8} " + " ".join(f"{k:>22}" for k in names) + "  default/exact")
        for r in rows:
            print(
                f"{r['depth']:>8,} "
                + " ".join(f"{r[k]:>22.1f}" for k in names)
                + f"  {r['embedding (default)'] / r['exact']:.2f}x"
            )
        if len(rows) > 1:
            k = "embedding (default)"
            print(f"default largest/smallest depth = {rows[-1][k] / rows[0][k]:.2f}x")
        if a.narrow_recall_requests:
            r = out["narrow_recall"] = bench_narrow_recall(
                a.narrow_recall_requests, a.narrow_recall_depth
            )
            print("\nnarrow recall (passes of 256, default guards):")
            for k, v in r.items():
                print(f"  {k:24} {v:.4f}" if isinstance(v, float) else f"  {k:24} {v}")
            print(flush=True)
    if not a.skip_depth:
        depths = [int(x) for x in a.depths.split(",")]
        print("depth (CPU us per request, median of repeats):", flush=True)
        print(f"dedup_threshold {a.threshold or 'default'}, guards {a.guards}, gc {a.gc}")
        rows = out["depth"] = bench_depth(
            depths, a.requests, a.repeats, a.threshold, a.gc, a.guards
        )
        names = [k for k in rows[0] if k not in ("workload", "depth")]
        print(f"\n{'workload':8} {'waiting':>8} " + " ".join(f"{k:>26}" for k in names))
        for r in rows:
            print(
                f"{r['workload']:8} {r['depth']:>8,} " + " ".join(f"{r[k]:>26.1f}" for k in names)
            )
        for w in ("unique", "dups"):
            sel = [r for r in rows if r["workload"] == w]
            if len(sel) > 1:
                k = "embedding indexed (auto)"
                print(f"{w}: indexed largest/smallest depth = {sel[-1][k] / sel[0][k]:.2f}x")
    if a.burst:
        print(
            "\nburst: prompts sharing a 1,000-character preamble, one word of the question "
            "apart, all at once (BatchProcessor, defaults); 5% typo twins",
            flush=True,
        )
        out["burst"] = bench_burst([int(x) for x in a.burst.split(",")])
    if not a.skip_recall:
        print(
            f"\nrecall: {a.recall_requests:,} requests, leaders live {a.recall_depth} rows",
            flush=True,
        )
        out["recall"] = []
        for guarded in (True, False):
            r = bench_recall(a.recall_requests, a.recall_depth, guarded)
            out["recall"].append(r)
            for k, v in r.items():
                print(f"  {k:24} {v:.4f}" if isinstance(v, float) else f"  {k:24} {v}")
            print(flush=True)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
