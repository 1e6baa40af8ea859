"""The best schedule the perf harness measures busy time against: real, and within the limits."""

from __future__ import annotations

import random

import pytest

from stratabatch.perf.schedule import best_schedule, best_schedule_ms, lower_bound_ms


def _check(arrivals, concurrency, max_size, overhead, per_item):
    ms, calls = best_schedule(arrivals, concurrency, max_size, overhead, per_item)
    first = arrivals[0]
    covered = []
    ends = []
    for start, i, n in calls:
        assert 1 <= n <= max_size
        # no call starts before the last of its items arrived
        assert start + 1e-6 >= arrivals[i + n - 1] - first
        covered += range(i, i + n)
        ends.append(start + overhead + n * per_item)
    assert sorted(covered) == list(range(len(arrivals)))  # each item in exactly one call
    for start, _, _ in calls:  # never more than `concurrency` calls at once
        running = sum(1 for (s, _, n), e in zip(calls, ends, strict=True) if s <= start < e)
        assert running <= concurrency
    assert max(ends) == pytest.approx(ms, abs=1e-6)
    assert ms >= lower_bound_ms(arrivals, concurrency, max_size, overhead, per_item) - 1e-6
    return ms


@pytest.mark.parametrize("seed", range(6))
def test_the_schedule_keeps_every_limit(seed):
    rnd = random.Random(seed)
    print("seed", seed)
    n = rnd.randint(1, 500)
    span = rnd.choice([0.0, 10.0, 100.0, 1000.0])
    arrivals = sorted(rnd.uniform(0, span) for _ in range(n))
    concurrency, max_size = rnd.randint(1, 6), rnd.choice([1, 4, 16, 32, 64])
    _check(arrivals, concurrency, max_size, rnd.choice([0.0, 5.0, 30.0]), rnd.choice([0.5, 3.0]))


def test_items_all_there_at_once_need_balanced_calls_not_whole_rounds():
    # 400 items, 4 slots, calls of at most 32: 100 items a slot in 4 calls, 4 x 30 + 300 ms.
    # Full calls in whole rounds (13 calls of 32 spread over 4 slots, 397.5 ms) cannot be met.
    ms = _check([0.0] * 400, 4, 32, 30.0, 3.0)
    assert ms == pytest.approx(420.0, rel=2e-3)


def test_one_item_a_call_is_the_plain_queue():
    # 8 requests at once, 2 slots, 10 ms each: 4 rounds
    assert best_schedule_ms([0.0] * 8, 2, 1, 10.0, 0.0) == pytest.approx(40.0, rel=2e-3)


def test_arrivals_delay_the_end():
    # the last item arrives at 100 ms and needs a call of its own afterwards
    ms = _check([0.0, 100.0], 4, 32, 30.0, 3.0)
    assert ms == pytest.approx(133.0, rel=2e-3)
