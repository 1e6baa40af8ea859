"""The perf workload generator: reproducible, and its content is what the docs say."""

from __future__ import annotations

import random
import re

from stratabatch.perf.workload import (
    PREAMBLE,
    WorkloadConfig,
    base_intents,
    generate,
    long_intents,
    surface_variant,
    typo_variant,
)

SMALL = WorkloadConfig(seed=7, bursts=2, burst_size=300, burst_ms=50, gap_ms=100)


def test_same_seed_same_requests():
    a, b = generate(SMALL), generate(SMALL)
    assert a.requests == b.requests
    assert a.truth() == b.truth()


def test_other_seed_other_requests():
    other = WorkloadConfig(**{**SMALL.__dict__, "seed": 8})
    assert [r.text for r in generate(SMALL).requests] != [r.text for r in generate(other).requests]


def test_poisson_is_reproducible_and_follows_the_square_wave():
    cfg = WorkloadConfig(
        seed=3, arrivals="poisson", rate_high=2000, rate_low=100, half_period_ms=200, duration_s=0.8
    )
    a, b = generate(cfg), generate(cfg)
    assert a.requests == b.requests
    times = [r.t for r in a.requests]
    assert times == sorted(times) and 0 <= times[0] and times[-1] < 0.8
    per_segment = [sum(1 for r in a.requests if r.segment == s) for s in range(4)]
    # expected 400, 20, 400, 20: generous bounds
    assert per_segment[0] > 250 and per_segment[2] > 250
    assert per_segment[1] < 60 and per_segment[3] < 60


def test_bursts_arrive_within_their_window():
    w = generate(SMALL)
    for r in w.requests:
        start = r.segment * (SMALL.burst_ms + SMALL.gap_ms) / 1000
        assert start <= r.t <= start + SMALL.burst_ms / 1000
        assert 0 <= r.client < SMALL.clients
    assert [r.rid for r in w.requests] == list(range(len(w)))


def test_at_least_200_distinct_base_intents_with_paraphrases():
    base = base_intents()
    assert len(base) >= 200
    assert len({i.text for i in base}) == len(base)
    assert all(i.paraphrases for i in base)
    texts = {i.text for i in base}
    # adversarial neighbours exist: numbers, opposites, swapped roles
    assert {"Track my order 4821", "Track my order 4812"} <= texts
    assert {"Turn on the kitchen lights", "Turn off the kitchen lights"} <= texts
    assert {"Find flights from Paris to London", "Find flights from London to Paris"} <= texts


def test_long_prompts_share_the_preamble_and_differ_in_one_word():
    longs = long_intents(1000)
    assert all(i.text.startswith(PREAMBLE) and len(i.text) > 800 for i in longs)
    a, b = longs[0].text.split(), longs[1].text.split()
    assert len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) == 1


def test_variants_and_ground_truth_fields():
    w = generate(WorkloadConfig(seed=5, bursts=1, burst_size=3000))
    kinds = {r.variant for r in w.requests}
    assert kinds == {"exact", "surface", "typo", "paraphrase"}
    tails = [r for r in w.requests if r.kind == "tail"]
    assert tails and len({r.intent for r in tails}) == len(tails)
    assert len({r.text for r in tails}) == len(tails)
    for r in w.requests:
        intent = w.intents[r.intent]
        if r.variant == "exact":
            assert r.text == intent.text
        elif r.variant == "surface":
            assert r.text != intent.text
            # the same words, give or take case, punctuation, spacing and a filler
            words = set(re.findall(r"[a-z0-9']+", intent.text.lower()))
            assert words <= set(re.findall(r"[a-z0-9']+", r.text.lower()))
        elif r.variant == "paraphrase":
            assert r.form.startswith(f"{r.intent}/p")


def test_variant_helpers_never_return_the_input():
    rnd = random.Random(11)
    for text in ["Turn on the kitchen lights", "Do you ship to Peru?", "ok", "a"]:
        for _ in range(50):
            assert surface_variant(text, rnd) != text
            assert typo_variant(text, rnd) != text


def test_truth_counts_duplicates_within_segments():
    w = generate(SMALL)
    t = w.truth()
    by_seg: dict[int, list] = {}
    for r in w.requests:
        by_seg.setdefault(r.segment, []).append(r)
    assert t["dups_existing"] == sum(
        len(rs) - len({r.intent for r in rs}) for rs in by_seg.values()
    )
    assert 0 < t["dups_catchable"] <= t["dups_existing"] <= t["dups_existing_run"]
