"""The adaptive window model: the fit, the rate estimate and the window it chooses.

Everything runs on made-up times: no sleeping, no clock.
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratabatch import ConfigError
from stratabatch.adaptive import AdaptiveWindow

SEED = 20240607


def _rng(test: str) -> random.Random:
    print(f"{test}: seed {SEED}")
    return random.Random(SEED)


def _model(**kw) -> AdaptiveWindow:
    args = dict(target_latency_ms=50.0, min_window_ms=5.0, max_window_ms=200.0, max_size=64)
    args.update(kw)
    return AdaptiveWindow(**args)


def _feed_line(aw: AdaptiveWindow, a_ms: float, b_ms: float, sizes=range(1, 65)) -> None:
    """Exact observations of t = a + b*n over a wide spread of sizes."""
    for n in sizes:
        aw.observe_batch(n, (a_ms + b_ms * n) / 1000.0)


def _drive_rate(
    aw: AdaptiveWindow, rate: float, start: float = 0.0, seconds: float = 3.0, step: float = 0.002
) -> float:
    """Feeds a steady stream at ``rate``/s; returns the time of the last step."""
    carry = 0.0
    t = start
    for _ in range(int(seconds / step)):
        t += step
        carry += rate * step
        k = int(carry)
        carry -= k
        aw.observe_arrivals(k, t)
    return t


# --------------------------------------------------------------------------- the fit


@pytest.mark.parametrize(("a", "b"), [(20.0, 1.0), (5.0, 0.2), (0.0, 2.0), (30.0, 0.0)])
def test_fit_recovers_a_and_b_from_noisy_batches(a: float, b: float) -> None:
    rng = _rng("fit")
    aw = _model()
    for _ in range(200):
        n = rng.randint(1, 64)
        t = max(0.0, a + b * n + rng.gauss(0.0, 1.0))
        aw.observe_batch(n, t / 1000.0)
    assert aw.fitted
    assert aw.a_ms == pytest.approx(a, abs=1.2)
    assert aw.b_ms == pytest.approx(b, abs=0.04)
    assert aw.predict_ms(32) == pytest.approx(a + 32 * b, abs=0.8)


def test_fit_uses_only_the_last_history_batches() -> None:
    aw = _model(history=32)
    _feed_line(aw, 50.0, 3.0, sizes=list(range(1, 33)) * 2)
    _feed_line(aw, 10.0, 0.5, sizes=range(1, 33))  # the handler got faster: 32 new batches
    # Only the ridge prior (the old slope, weighted as a 0.25 item^2 spread against the new
    # data's ~85) still remembers the old regime.
    assert aw.a_ms == pytest.approx(10.0, abs=0.1)
    assert aw.b_ms == pytest.approx(0.5, abs=0.01)


def test_outliers_barely_move_the_robust_fit() -> None:
    rng = _rng("outliers")
    robust, plain = _model(), _model(huber_passes=0)
    for i in range(64):
        n = rng.randint(1, 64)
        t = 20.0 + 1.0 * n + rng.gauss(0.0, 0.5)
        if i % 13 == 5:  # 5 stalls (GC pause, slow backend) of ~200 ms
            t += 200.0
        for aw in (robust, plain):
            aw.observe_batch(n, t / 1000.0)
    assert robust.a_ms == pytest.approx(20.0, abs=1.0)
    assert robust.b_ms == pytest.approx(1.0, abs=0.03)
    # The peer without reweighting is dragged far off: the robustness is what helps.
    assert abs(plain.a_ms - 20.0) + 20 * abs(plain.b_ms - 1.0) > 5.0


def test_single_observation_gives_the_through_origin_line() -> None:
    aw = _model()
    aw.observe_batch(4, 0.030)
    assert aw.a_ms == 0.0
    assert aw.b_ms == pytest.approx(7.5)
    assert not aw.fitted


def test_all_equal_sizes_cannot_identify_the_slope() -> None:
    rng = _rng("equal sizes")
    aw = _model()
    for _ in range(100):
        aw.observe_batch(10, (30.0 + rng.gauss(0.0, 1.0)) / 1000.0)
    assert not aw.fitted
    assert not aw.warming_up  # warm-up gave up waiting for a spread after 32 batches
    # The pessimistic through-origin line, anchored at the observed point.
    assert aw.a_ms == 0.0
    assert aw.predict_ms(10) == pytest.approx(30.0, abs=0.5)


def test_a_degenerate_stretch_keeps_the_identified_slope() -> None:
    aw = _model()
    _feed_line(aw, 20.0, 1.0)
    assert aw.fitted
    # The handler's fixed cost rises to 25 ms, but every batch is now exactly 32 items.
    for _ in range(64):
        aw.observe_batch(32, (25.0 + 32.0) / 1000.0)
    assert aw.fitted
    # (The first fit's ridge prior, the through-origin slope 1.6, left a trace of 5e-4.)
    assert aw.b_ms == pytest.approx(1.0, abs=1e-3)
    assert aw.a_ms == pytest.approx(25.0, abs=0.05)


def test_zero_times_give_a_free_handler() -> None:
    aw = _model()
    for n in range(1, 20):
        aw.observe_batch(n, 0.0)
    assert (aw.a_ms, aw.b_ms) == (0.0, 0.0)
    t = _drive_rate(aw, 1000.0)
    # Only the window and the fixed overhead remain: the window takes the rest of the target.
    assert aw.window_ms(t) == pytest.approx(50.0 - 1.0)


def test_a_and_b_never_go_negative() -> None:
    falling = _model()
    _feed_line(falling, 40.0, -0.5, sizes=range(1, 40))  # bigger batches faster: noise, say
    assert falling.b_ms == 0.0
    assert falling.a_ms == pytest.approx(40.0 - 0.5 * 20, abs=1e-6)  # the mean time
    steep = _model()
    _feed_line(steep, -10.0, 2.0, sizes=range(10, 40))  # least squares would give a < 0
    assert steep.a_ms == 0.0
    assert 0.0 < steep.b_ms < 2.0


# --------------------------------------------------------------------------- warm-up


def test_warm_up_keeps_the_minimum_window_until_sizes_spread() -> None:
    aw = _model(min_window_ms=10.0)
    t = _drive_rate(aw, 100.0)
    for n in (3, 3, 4, 4, 3, 4, 3):
        aw.observe_batch(n, (20.0 + n) / 1000.0)
        assert aw.window_ms(t) == 10.0
    assert aw.warming_up and not aw.fitted
    aw.observe_batch(5, 0.025)  # 8 batches, 3 distinct sizes
    assert aw.fitted and not aw.warming_up
    w = aw.window_ms(t)
    assert w > 10.0
    assert aw.current_window_ms == w


# --------------------------------------------------------------------------- the rate


def test_rate_estimate_tracks_a_steady_stream() -> None:
    aw = _model()
    t = _drive_rate(aw, 500.0, seconds=3.0)
    # The fast estimate is noisier, and the larger of the two is used: a slight upward lean.
    assert 480.0 <= aw.rate_at(t) <= 560.0


def test_rate_estimate_is_not_biased_low_at_start_up() -> None:
    aw = _model()
    t = _drive_rate(aw, 500.0, seconds=0.2)
    assert aw.rate_at(t) == pytest.approx(500.0, rel=0.15)


def test_rate_estimate_catches_a_burst_quickly_and_decays_after() -> None:
    aw = _model()
    t = _drive_rate(aw, 10.0, seconds=5.0)
    t = _drive_rate(aw, 2000.0, start=t, seconds=0.1)
    assert aw.rate_at(t) > 1000.0  # the slow estimate alone would read ~400
    assert aw.rate_at(t + 5.0) < 5.0


def test_poisson_arrivals_one_at_a_time() -> None:
    rng = _rng("poisson")
    aw = _model()
    t = 0.0
    for _ in range(2000):
        t += rng.expovariate(1000.0)
        aw.observe_arrival(t)
    assert aw.rate_at(t) == pytest.approx(1000.0, rel=0.2)


# --------------------------------------------------------------------------- the window


def _fitted_model(a: float = 20.0, b: float = 1.0, **kw) -> AdaptiveWindow:
    aw = _model(**kw)
    _feed_line(aw, a, b)
    return aw


@pytest.mark.parametrize("rate", [0.0, 5.0, 50.0, 200.0, 500.0, 1000.0, 3000.0])
def test_window_is_the_largest_that_meets_the_target_under_the_model(rate: float) -> None:
    aw = _fitted_model(min_window_ms=1.0)
    t = _drive_rate(aw, rate) if rate else 10.0
    w = aw.window_ms(t)
    r = aw.rate
    assert 1.0 <= w <= 200.0
    if w > 1.0:
        assert aw.modelled_latency_ms(w, r) <= 50.0 + 1e-9
    if w < 200.0:
        assert aw.modelled_latency_ms(w + 0.01, r) > 50.0
    # Against brute force on a 0.01 ms grid.
    grid = [1.0 + 0.01 * i for i in range(19901)]
    ok = [g for g in grid if aw.modelled_latency_ms(g, r) <= 50.0]
    assert w == pytest.approx(ok[-1] if ok else 1.0, abs=0.011)


def test_window_meets_the_target_at_the_rates_of_the_bench() -> None:
    # 20 ms + 1 ms/item, a 50 ms target and 1 ms overhead: the window w solves
    #   w + 1 + 20 + (1 + m + sqrt(m)) = 50,  m = rate * w,
    # found here by bisection at the true rate.
    def solve(rate_per_ms: float) -> float:
        lo, hi = 0.0, 50.0
        for _ in range(60):
            w = (lo + hi) / 2
            m = rate_per_ms * w
            lo, hi = (w, hi) if w + 22.0 + m + math.sqrt(m) <= 50.0 else (lo, w)
        return lo

    for rate in (200.0, 500.0, 1000.0):
        aw = _fitted_model()
        t = _drive_rate(aw, rate, step=1.0 / rate)
        w = aw.window_ms(t)
        m = aw.rate * w / 1000.0
        assert w + 1.0 + aw.a_ms + aw.b_ms * (1 + m + math.sqrt(m)) == pytest.approx(50.0)
        # The rate estimate leans a few percent high (the larger of two estimates is used).
        assert solve(rate * 1.08 / 1000.0) - 0.05 <= w <= solve(rate / 1000.0) + 0.05


def test_window_clamps_to_min_and_max() -> None:
    slow = _fitted_model(a=60.0, b=1.0)  # the handler alone exceeds the 50 ms target
    assert slow.window_ms(_drive_rate(slow, 100.0)) == 5.0
    fast = _fitted_model(a=0.1, b=0.01, target_latency_ms=1000.0)
    assert fast.window_ms(_drive_rate(fast, 10.0)) == 200.0


def test_a_full_batch_stops_the_latency_growing_with_rate() -> None:
    aw = _fitted_model(max_size=8, target_latency_ms=100.0)
    t = _drive_rate(aw, 5000.0)
    # Eight items arrive within ~2 ms: the plan is the window plus a full batch.
    assert aw.window_ms(t) == pytest.approx(100.0 - 1.0 - 20.0 - 8.0, abs=0.05)


def test_time_already_waited_and_queued_requests_shrink_the_window() -> None:
    aw = _fitted_model()
    t = _drive_rate(aw, 200.0)
    base = aw.window_ms(t)
    assert aw.window_ms(t, waited_ms=5.0) < base
    assert aw.window_ms(t, queued=20) < base
    assert aw.window_ms(t, waited_ms=60.0) == 5.0


def test_throughput_floor_keeps_the_handler_up_with_arrivals() -> None:
    plain = _fitted_model(a=40.0, b=0.5, target_latency_ms=60.0, min_window_ms=1.0)
    floored = _fitted_model(
        a=40.0, b=0.5, target_latency_ms=60.0, min_window_ms=1.0, max_inflight_batches=2
    )
    t = _drive_rate(plain, 1000.0)
    _drive_rate(floored, 1000.0)
    w_plain, w_floor = plain.window_ms(t), floored.window_ms(t)
    assert w_floor > w_plain

    def needed_slots(w: float, rate: float) -> float:
        per_ms = rate / 1000.0
        return (40.0 + 0.5 * (1 + per_ms * w)) / (w + 1.0 / per_ms)

    assert needed_slots(w_plain, plain.rate) > 2 * 0.8
    assert needed_slots(w_floor, floored.rate) == pytest.approx(2 * 0.8, rel=1e-3)


@settings(max_examples=60, deadline=None)
@given(
    a=st.floats(0.0, 80.0),
    b=st.floats(0.0, 5.0),
    target=st.floats(5.0, 300.0),
    rates=st.tuples(st.floats(0.0, 4000.0), st.floats(0.0, 4000.0)),
    max_size=st.integers(1, 256),
)
def test_window_never_grows_with_rate_or_handler_cost(
    a: float, b: float, target: float, rates: tuple[float, float], max_size: int
) -> None:
    # What the design guarantees without max_inflight_batches: the modelled latency rises
    # with the window, the rate, a and b, so the chosen window can only shrink as they grow.
    runs = []
    for rate, cost in [(rates[0], 1.0), (rates[1], 1.0), (rates[1], 1.5)]:
        aw = _model(target_latency_ms=target, max_size=max_size, min_window_ms=1.0)
        _feed_line(aw, a * cost, b * cost, sizes=range(1, 33))
        t = _drive_rate(aw, rate, seconds=2.0, step=0.01)
        runs.append((aw.window_ms(t), aw.rate))
        assert 1.0 <= runs[-1][0] <= 200.0
    # Ordered by the rate the model estimated (at low rates the estimate of a slower stream
    # can read higher, depending on where its last arrival fell).
    (w_lo, r_lo), (w_hi, r_hi) = sorted(runs[:2], key=lambda run: run[1])
    assert w_hi <= w_lo + 1e-9
    assert runs[2][0] <= runs[1][0] + 1e-9


def test_a_larger_target_never_gives_a_smaller_window() -> None:
    windows = []
    for target in (30.0, 50.0, 80.0, 150.0, 400.0):
        aw = _fitted_model(target_latency_ms=target)
        windows.append(aw.window_ms(_drive_rate(aw, 300.0)))
    assert windows == sorted(windows)
    assert windows[0] < windows[-1]


# --------------------------------------------------------------------------- inputs


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"target_latency_ms": 0}, "target_latency_ms"),
        ({"min_window_ms": -5}, "min_window_ms"),
        ({"min_window_ms": 300.0}, "min_window_ms"),
        ({"max_window_ms": float("nan")}, "max_window_ms"),
        ({"max_size": 0}, "max_size"),
        ({"max_size": 2.5}, "max_size"),
        ({"history": 1}, "history"),
        ({"max_inflight_batches": 0}, "max_inflight_batches"),
        ({"inflight_headroom": 1.5}, "inflight_headroom"),
        ({"rate_tau_s": 0.0}, "rate_tau_s"),
    ],
)
def test_bad_options_raise_config_error_naming_the_field(kw: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        _model(**kw)
    assert info.value.field == field
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("n", "seconds"),
    [(0, 0.01), (-1, 0.01), (True, 0.01), (3, -0.001), (3, float("inf")), (3, float("nan"))],
)
def test_bad_batch_observations_are_refused(n: int, seconds: float) -> None:
    aw = _model()
    with pytest.raises(ValueError, match="observe_batch"):
        aw.observe_batch(n, seconds)
    assert aw.batches_observed == 0


def test_a_clock_stepping_back_does_not_inflate_the_rate() -> None:
    aw = _model()
    t = _drive_rate(aw, 100.0)
    before = aw.rate_at(t)
    aw.observe_arrivals(1, t - 1.0)  # counted as now, not as a second of decay undone
    # One event adds 1 / tau to the fast estimate (tau = 0.1 s), and nothing more.
    assert before < aw.rate_at(t) <= before + 1.0 / 0.1 + 0.5
    assert aw.window_ms(t - 2.0) >= 5.0
