"""The stats recorder: a batch's answers counted at once equal the same answers counted one
by one (the core records per batch)."""

from __future__ import annotations

import random

import pytest

from stratabatch.stats import StatsRecorder


@pytest.mark.parametrize("batch", [1, 7, 32, 5000])
def test_recording_a_batch_of_answers_equals_recording_each(batch):
    rng = random.Random(batch)
    print("seed", batch)
    one, many = StatsRecorder(), StatsRecorder()
    now = 100.0
    for _ in range(40):  # past the latency ring's size: the batches wrap around it
        arrivals = [now - rng.random() * 0.05 for _ in range(rng.randint(1, batch))]
        for a in arrivals:
            one.record_done(now - a, now)
        many.record_done_many(arrivals, now)
        now += rng.random() * 0.7
    assert many.completed == one.completed == one._lat_n
    assert many._lat == one._lat
    assert many._rate_buckets == one._rate_buckets
    assert many._first_done == pytest.approx(one._first_done)
    a = one.snapshot(now=now, queue_depth=0, window_ms=1.0, cost_per_request=0.0)
    b = many.snapshot(now=now, queue_depth=0, window_ms=1.0, cost_per_request=0.0)
    assert a == b


def test_an_error_counted_after_delivery_shows_in_the_snapshot():
    rec = StatsRecorder()
    rec.record_done(0.001, 1.0)
    rec.record_error()
    snap = rec.snapshot(now=1.0, queue_depth=0, window_ms=1.0, cost_per_request=0.0)
    assert snap.errors == 1 and rec.completed == 1


def test_the_latency_log_holds_every_outcome_once_for_its_reader():
    rec = StatsRecorder()
    rec.record_done(0.5, 10.0)  # before anyone reads the log: not kept
    assert rec.take_latencies() == []
    rec.keep_latencies()
    rec.record_done(0.25, 10.0)
    rec.record_done_many([9.0, 9.5], 10.0)
    assert rec.take_latencies() == [0.25, 1.0, 0.5]
    assert rec.take_latencies() == []  # taken: the next reader sees only what came after
    rec.record_done_many([9.75], 10.0)
    assert rec.take_latencies() == [0.25]
    assert rec.completed == 5
