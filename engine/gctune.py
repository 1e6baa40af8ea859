"""The cyclic garbage collector in a process the engine owns (``stratabatch-engine``).

Request records are freed by reference counting (the core breaks the request-group-batch links
when a batch is answered), so the cyclic collector finds nothing among them; yet it walks every
one that is alive when it runs. With a deep queue each record lives long enough to be walked
in the young generation, again in the middle one, and, by CPython's rule of a full collection
whenever the old generation grew by a quarter, about four more times in the old one: measured
on perf/bench_dedup_depth.py, ~8 us of CPU per request at 32,768 waiting (exact dedup, twins),
more than the dedup itself.

:func:`settle` does two things once the process is ready:

* ``gc.freeze()``: what exists then (modules, the loaded kernels, the handler) lives as long
  as the process and is never walked again;
* the young generation's threshold raised from 700 to :data:`GEN0_THRESHOLD` net allocations
  of tracked objects: collections run ~14x less often, so most request records are answered
  and freed before any collection sees them (the deeper generations' thresholds count young
  collections, so they slow down with it). Garbage cycles a handler makes wait a little
  longer to be reclaimed: at most that many objects' worth.

The library never does this to a process it is embedded in (it is process-wide); an embedded
user can call :func:`settle` after their own start-up (docs/architecture.md).
"""

from __future__ import annotations

import gc

__all__ = ["GEN0_THRESHOLD", "settle"]

GEN0_THRESHOLD = 10_000
"""Net allocations of GC-tracked objects between young collections (CPython's default: 700).
Measured with perf/bench_dedup_depth.py (twins, 32,768 waiting, same run): 700 -> 10,000 took
exact from 13-19 to 10-12 us per request and the word index from 35-40 to 28-31 us; 50,000
gained nothing more."""


def settle() -> tuple[int, int, int]:
    """Freeze the objects that exist now and raise the young generation's threshold (see the
    module docstring). Returns the thresholds before, for ``gc.set_threshold`` to restore."""
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(before[0], GEN0_THRESHOLD), before[1], before[2])
    return before
