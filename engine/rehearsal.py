"""A dress rehearsal of the dedup pass: every kernel a configuration can reach, loaded once.

Calling each numba kernel on hand-made arguments misses some: a kernel first called from a
path the warm-up did not take (the leader index's compaction, the word table, a text the
kernel hands back to the Python reference), or with argument types the hand-made call did not
use, compiles on a live request and stalls the loop for seconds. So the warm-up runs the real
pass instead: a throwaway :class:`~stratabatch.grouping.Deduper` with the same options, over a
small set of texts chosen to take every path (exact twins, near twins, numbers, non-ASCII,
typos of filler words, long texts, a request with its own vector, the off-loop half of a
large pass, leaders retired until the index compacts with its table in use).

Nothing it does is seen by the caller's core: its groups live in this module's
:class:`ScratchOps` and are dropped at the end.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .config import BatchConfig
from .grouping import Deduper
from .records import DONE, GROUPED, INFLIGHT, Group, Request

_WORDS = (
    "the quick brown fox jumps over a lazy dog while my order ships with the refund "
    "invoice and tracking number for account settings password reset please help "
    "why how what when where can you tell me about"
).split()


class ScratchOps:
    """The core's side of a dedup pass (:class:`~stratabatch.grouping.GroupOps`), reduced to
    what a rehearsal needs: pending groups in a dict, no timers, no outcomes."""

    def __init__(self) -> None:
        self.pending: dict[int, Group] = {}

    def new_group(self, req: Request, part: Any) -> Group:
        g = Group(req, part)
        self.pending[g.seq] = g
        return g

    def join(self, req: Request, g: Group, similarity: float, exact: bool) -> None:
        g.add(req, GROUPED, similarity, exact)

    def coalesce(self, req: Request, g: Group, similarity: float, exact: bool) -> None:
        g.add(req, INFLIGHT, similarity, exact)

    def reject(self, req: Request, error: BaseException) -> None:
        req.state = DONE

    def pending_groups(self) -> Any:
        return self.pending.values()

    def lane_twins(self) -> None:
        """No row lane here."""
        return None

    def reused(self) -> None:
        """No reuse cache here."""
        return None

    def near_reused(self) -> None:
        """No reuse cache here."""
        return None


def _texts(seed: int, n: int) -> list[str]:
    """``n`` sample texts of every kind the pass treats apart."""
    import random

    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = [rng.choice(_WORDS) for _ in range(rng.randrange(3, 14))]
        kind = i % 8
        if kind == 1:
            words.append(f"order {rng.randrange(10_000)}")  # numbers: the numbers guard
        elif kind == 2:
            words.insert(0, "café naïve résumé")  # non-ASCII: the Python reference path
        elif kind == 3:
            words.append(rng.choice(("teh", "hte", "recieve", "adress", "plese", "thier")))
        elif kind == 4 and i < 16:  # two long texts (over 32 distinct words): enough for
            # their paths; many similar long texts would only make the guards' work long
            words.extend(f"w{rng.randrange(1 << 20)}" for _ in range(40))
        elif kind == 5:
            words.append("don't do not never")  # negation, contractions
        out.append(" ".join(words))
    return out


def rehearse(config: BatchConfig, dim: int | None) -> None:
    """Run the dedup pass of ``config`` on sample requests, so that every kernel it can reach
    is loaded (compiled on a first start, read from numba's cache after).

    Args:
        config: The options of the core being warmed up (copied; never changed).
        dim: The embedding dimension, when the strategy uses vectors (a sample request then
            brings its own vector too), else None.
    """
    import numpy as np

    if not config.enable_dedup or config.dedup_function is not None or config.embedder is not None:
        return  # the user's code: never called on samples (it may be a paid API)
    cfg = dataclasses.replace(config)  # a copy: the caller's listeners are not told
    stage = ScratchOps()
    dedup = Deduper(cfg, stage)
    # compact at the first chance, so that compaction (with a table in use) runs here too
    dedup.leaders.compact_min_dead = 0
    seq = 0

    def requests(texts: list[str], vectors: bool) -> list[Request]:
        # records made directly, not by build_request: the caller's size limit is for its
        # callers' requests, not for these samples
        nonlocal seq
        out = [
            Request({cfg.dedup_key: t}, index=seq + i, text=t, size=len(t))
            for i, t in enumerate(texts)
        ]
        seq += len(out)
        if vectors and dim:
            v = np.zeros(dim, np.float32)
            v[0] = 1.0
            out.append(
                Request(
                    {cfg.dedup_key: "own vector"}, index=seq, text="own vector", vector=v, size=16
                )
            )
            out.append(Request({"no key": seq}, index=seq + 1, size=16))
            seq += 2
        for r in out:
            r.seq = r.index
        return out

    def retire_all() -> None:
        for g in list(stage.pending.values()):
            dedup.drop_row(g)
            dedup.drop_keys(g)
        stage.pending.clear()

    base = _texts(1, 96)
    # 1. small passes on the loop: exact twins, near twins (a word added), the rest
    dedup.run(requests(base[:48], vectors=True))
    dedup.run(requests(base[:24] + [t + " please" for t in base[24:48]], vectors=False))
    retire_all()
    # 2. enough leaders for the leader index's word table; a few leaders filed again, two
    # in three retired, and the next pass compacts the dead rows with the table in use
    many = _texts(2, 600)
    dedup.run(requests(many[:300], vectors=False))
    groups = list(stage.pending.values())
    for i, g in enumerate(groups):
        if i % 3:
            dedup.drop_row(g)
            dedup.drop_keys(g)
            del stage.pending[g.seq]
    dedup.leaders.file_leaders([g.row for g in groups[::3] if g.row is not None][:8])
    dedup.run(requests(many[300:], vectors=False))
    dedup.run(requests([t + " thanks" for t in many[300:400]], vectors=False))
    retire_all()
    # 3. the off-loop half of a large pass, then a small pass after the index emptied
    dedup.apply(dedup.prepare(requests(base + many[:200], vectors=True), embed_ahead=True))
    retire_all()
    dedup.run(requests(base[48:], vectors=False))
    retire_all()
    # 4. a near pair of texts past the index's key-word limit: the guards' own pre-check
    long = " ".join(f"w{i}" for i in range(1_100))
    dedup.run(requests([long + " alpha", long + " beta"], vectors=False))
    retire_all()


__all__ = ["ScratchOps", "rehearse"]
