"""The adaptive window: an online model of handler time and arrival rate that sizes each window.

With ``adaptive=True`` the core asks :class:`AdaptiveWindow` for the length of every window it
opens. The model has two halves, both fed by the core and both free of clocks and I/O (every
method that needs time takes ``now`` in seconds, so tests drive it with made-up times):

* **Handler time** ``t(n) = a + b * n`` (milliseconds, ``n`` = items in the handler call),
  fitted by least squares over the last ``history`` observed batches. The fit is robust (Huber
  reweighting around the median residual, so a GC pause or a stalled backend call barely
  moves it), ridge-
  regularized towards a prior slope (so a stretch of equal batch sizes, where the slope cannot
  be identified, keeps the last slope that could be, instead of swinging wildly), and
  non-negative (``a >= 0`` and ``b >= 0`` always).
* **Arrival rate** (requests/s): two exponentially decaying event counts, a slow one (smooth)
  and a fast one (reacts to the start of a burst within ~0.1 s); the model uses the larger,
  because over-estimating the rate errs towards lower latency. Both are corrected for their
  start-up bias, so the first second of traffic is not mistaken for a slow trickle.

Given both, :meth:`AdaptiveWindow.window_ms` returns the largest window ``w`` in
``[min_window_ms, max_window_ms]`` whose oldest request meets the target under the model::

    w + overhead_ms + a + b * min(max_size, queued + m + z * sqrt(m)) <= target_latency_ms

with ``m = rate * w`` the expected arrivals and ``z = size_margin_sd`` (1: plan for a window one
Poisson standard deviation busier than average); ``queued`` = requests already waiting when the
window opens, normally the one that opened it; ``overhead_ms`` covers timer lateness and the
core's own work per batch.
If even ``min_window_ms`` misses the target, ``min_window_ms`` is used. With
``max_inflight_batches`` given, the window is also kept long enough that the handler keeps up
(otherwise the queue, and with it the latency, grows without bound); that floor wins over the
latency target.

Until the fit is identified (``min_batches`` observations over ``min_distinct_sizes`` distinct
batch sizes) the model is warming up and every window is ``min_window_ms``: small batches whose
natural size spread teaches the slope. If the sizes never spread (perfectly regular traffic,
or every batch exactly ``max_size``), warm-up ends after ``warmup_max_batches`` anyway and the
ridge prior (the through-origin slope ``mean(t) / mean(n)``, pessimistic for larger batches)
stands in for the missing information.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from .errors import ConfigError

__all__ = ["AdaptiveWindow"]

# Scale of a normal distribution's median absolute deviation: MAD * this ~ standard deviation.
_MAD_TO_SIGMA = 1.4826


class _DecayingRate:
    """Event rate as an exponentially decaying count, corrected for its start-up bias.

    Each event adds ``1 / tau`` and the total decays as ``exp(-dt / tau)``, so for a steady
    Poisson stream the value converges to the rate. Right after the first event the value
    under-reads by the factor ``1 - exp(-elapsed / tau)``; dividing by it removes the bias.
    """

    __slots__ = ("tau", "_value", "_last", "_first")

    def __init__(self, tau: float) -> None:
        self.tau = tau
        self._value = 0.0
        self._last: float | None = None
        self._first: float | None = None

    def _decay_to(self, now: float) -> None:
        if self._last is None:
            self._last = now
            return
        dt = now - self._last
        # A clock that steps back is treated as no time passing, never as growth.
        if dt > 0.0:
            self._value *= math.exp(-dt / self.tau)
            self._last = now

    def add(self, count: int, now: float) -> None:
        if self._first is None:
            self._first = now
        self._decay_to(now)
        self._value += count / self.tau

    def at(self, now: float) -> float:
        if self._first is None or self._last is None:
            return 0.0
        dt = max(0.0, now - self._last)
        value = self._value * math.exp(-dt / self.tau)
        # A floor on elapsed time keeps a single event from reading as an infinite rate.
        elapsed = max(now - self._first, 0.1 * self.tau)
        return value / -math.expm1(-elapsed / self.tau)


def _check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (value > 0 or (allow_zero and value == 0)):
        return float(value)
    allowed = "a finite number >= 0" if allow_zero else "a finite number > 0"
    raise ConfigError(f"{name} must be {allowed}, got {value!r}", field=name)


def _check_int(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}", field=name)
    return value


class AdaptiveWindow:
    """Chooses each window's length from an online model of handler time and arrival rate.

    Not thread-safe; meant to be owned by one scheduler. Costs: :meth:`observe_arrivals` is
    O(1) (two ``exp``), :meth:`observe_batch` is O(1), and :meth:`window_ms` refits in
    O(``history``) only when batches were observed since the last call (~70-90 us at 64).

    Args:
        target_latency_ms: The end-to-end latency (queue wait + handler) the oldest request of
            each window should stay under.
        min_window_ms: The shortest window ever returned; also the warm-up window.
        max_window_ms: The longest window ever returned.
        max_size: The most items one handler call takes (the window closes at once when reached).
        history: How many recent batches the fit uses.
        min_batches: Observations needed before the fit counts as identified.
        min_distinct_sizes: Distinct batch sizes needed before the fit counts as identified.
        warmup_max_batches: Warm-up ends after this many batches even if sizes never spread.
        ridge_items2: Weight of the prior slope, as a variance of batch sizes in items^2: data
            whose sizes vary much more than this decide the slope on their own.
        huber_c: Residuals beyond this many robust standard deviations are down-weighted.
        huber_passes: Reweighting passes after the plain least-squares fit (0: plain fit).
        rate_tau_s: Time constant of the slow (smooth) arrival-rate estimate, seconds.
        fast_rate_tau_s: Time constant of the fast (burst-detecting) estimate, seconds.
        size_margin_sd: Plan each batch for this many Poisson standard deviations more
            arrivals than expected, so a busier-than-average window still meets the target.
        overhead_ms: Latency outside the window and the handler call (timer lateness, the
            core's own work per batch) added to every plan.
        max_inflight_batches: If given, the handler calls that may run at once; the window
            then never gets so short that the handler would fall behind the arrivals.
        inflight_headroom: The share of ``max_inflight_batches`` the throughput floor plans to
            use, leaving room for bursts.

    Raises:
        ConfigError: An argument is out of range.
    """

    def __init__(
        self,
        target_latency_ms: float,
        min_window_ms: float,
        max_window_ms: float,
        max_size: int,
        *,
        history: int = 64,
        min_batches: int = 8,
        min_distinct_sizes: int = 3,
        warmup_max_batches: int = 32,
        ridge_items2: float = 0.25,
        huber_c: float = 3.0,
        huber_passes: int = 2,
        rate_tau_s: float = 0.5,
        fast_rate_tau_s: float = 0.1,
        size_margin_sd: float = 1.0,
        overhead_ms: float = 1.0,
        max_inflight_batches: int | None = None,
        inflight_headroom: float = 0.8,
    ) -> None:
        self._target = _check_positive("target_latency_ms", target_latency_ms)
        self._min_w = _check_positive("min_window_ms", min_window_ms)
        self._max_w = _check_positive("max_window_ms", max_window_ms)
        if self._min_w > self._max_w:
            raise ConfigError(
                f"min_window_ms must be <= max_window_ms={max_window_ms!r}, got {min_window_ms!r}",
                field="min_window_ms",
            )
        self._max_size = _check_int("max_size", max_size, 1)
        self._history = _check_int("history", history, 2)
        self._min_batches = _check_int("min_batches", min_batches, 2)
        self._min_distinct = _check_int("min_distinct_sizes", min_distinct_sizes, 2)
        self._warmup_max = _check_int("warmup_max_batches", warmup_max_batches, 1)
        self._ridge = _check_positive("ridge_items2", ridge_items2, allow_zero=True)
        self._huber_c = _check_positive("huber_c", huber_c)
        self._huber_passes = _check_int("huber_passes", huber_passes, 0)
        self._slow = _DecayingRate(_check_positive("rate_tau_s", rate_tau_s))
        self._fast = _DecayingRate(_check_positive("fast_rate_tau_s", fast_rate_tau_s))
        self._z = _check_positive("size_margin_sd", size_margin_sd, allow_zero=True)
        self._overhead = _check_positive("overhead_ms", overhead_ms, allow_zero=True)
        if max_inflight_batches is not None:
            _check_int("max_inflight_batches", max_inflight_batches, 1)
        self._max_inflight = max_inflight_batches
        headroom = _check_positive("inflight_headroom", inflight_headroom)
        if headroom > 1.0:
            raise ConfigError(
                f"inflight_headroom must be in (0, 1], got {inflight_headroom!r}",
                field="inflight_headroom",
            )
        self._headroom = headroom

        # A ring of the last `history` batches; the fit does not care about their order.
        self._ns = np.zeros(self._history)
        self._ts = np.zeros(self._history)
        self._sizes: Counter[int] = Counter()
        self._total_batches = 0
        self._dirty = False
        self._fitted = False
        self._prior_b: float | None = None
        self._a = 0.0
        self._b = 0.0
        self._rate = 0.0
        self._window = self._min_w

    # ----------------------------------------------------------------- observations

    def observe_arrivals(self, count: int, now: float) -> None:
        """Records that ``count`` requests were accepted at time ``now`` (seconds).

        Call once per accepted request, or once per submitted list with its length: the
        cost is O(1) either way.

        Raises:
            ValueError: ``count`` is negative or ``now`` is not finite.
        """
        if count < 0 or not math.isfinite(now):
            raise ValueError(
                f"observe_arrivals needs count >= 0 and a finite now, "
                f"got count={count!r}, now={now!r}"
            )
        if count:
            self._slow.add(count, now)
            self._fast.add(count, now)

    def observe_arrival(self, now: float) -> None:
        """Records one accepted request at time ``now`` (seconds)."""
        self.observe_arrivals(1, now)

    def observe_batch(self, n: int, seconds: float) -> None:
        """Records that a handler call over ``n`` items took ``seconds``.

        Raises:
            ValueError: ``n`` < 1, or ``seconds`` is negative or not finite.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"observe_batch needs an item count n >= 1, got {n!r}")
        if not (math.isfinite(seconds) and seconds >= 0.0):
            raise ValueError(f"observe_batch needs a finite duration >= 0 s, got {seconds!r}")
        slot = self._total_batches % self._history
        if self._total_batches >= self._history:
            old_n = int(self._ns[slot])
            self._sizes[old_n] -= 1
            if not self._sizes[old_n]:
                del self._sizes[old_n]
        self._ns[slot] = n
        self._ts[slot] = seconds * 1000.0
        self._sizes[n] += 1
        self._total_batches += 1
        self._dirty = True

    # ----------------------------------------------------------------- the fit

    def _refit(self) -> None:
        self._dirty = False
        k = min(self._total_batches, self._history)
        ns, ts = self._ns[:k], self._ts[:k]
        a, b, spread, t_mean = self._weighted_fit(ns, ts, None)
        # Without a floor on the residual scale, a perfectly clean fit (MAD = 0) would
        # discard every point that deviates by a rounding error.
        floor = 1e-3 + 0.01 * t_mean
        for _ in range(self._huber_passes):
            weights = self._huber_weights(ns, ts, a, b, floor)
            a, b, spread, _ = self._weighted_fit(ns, ts, weights)
        self._a, self._b = a, b
        identified = k >= self._min_batches and len(self._sizes) >= self._min_distinct
        if identified:
            self._fitted = True
        # Only a fit whose sizes really vary may teach the slope that later degenerate
        # stretches fall back on; a clustered one would just echo the prior.
        if identified and spread >= 1.0:
            self._prior_b = b

    def _weighted_fit(
        self, ns: np.ndarray, ts: np.ndarray, ws: np.ndarray | None
    ) -> tuple[float, float, float, float]:
        """Ridge-regularized, non-negative weighted least squares.

        ``ws=None`` means equal weights. Each numpy call costs microseconds on 64 values, so
        the sums are taken once and the centred moments derived from them.

        Returns:
            ``(a, b, variance of n, mean of t)`` under the weights.
        """
        if ws is None:
            sw, wn, wt = float(len(ns)), ns, ts
        else:
            sw, wn, wt = float(ws.sum()), ws * ns, ws * ts
        swn, swt = float(wn.sum()), float(wt.sum())
        swnn, swnt = float(wn @ ns), float(wn @ ts)
        n_bar, t_bar = swn / sw, swt / sw
        snn = swnn - swn * n_bar
        snt = swnt - swn * t_bar
        if snn <= 1e-12 * swnn:
            # Equal sizes: what is left of the centred sums is rounding noise, not a slope.
            snn = snt = 0.0
        origin_b = swt / swn  # n >= 1, so swn > 0
        prior_b = self._prior_b if self._prior_b is not None else origin_b
        ridge = self._ridge * sw
        b = (snt + ridge * prior_b) / (snn + ridge) if snn + ridge > 0.0 else prior_b
        a = t_bar - b * n_bar
        spread = snn / sw
        if a >= 0.0 and b >= 0.0:
            return a, b, spread, t_bar
        # The unconstrained optimum left the feasible quadrant, so the best feasible line lies
        # on one of its edges: flat (b = 0) or through the origin (a = 0). Keep the better one
        # (weighted SSE of each, expanded from the same sums).
        b_origin = max(0.0, swnt / swnn)
        swtt = float(wt @ ts)
        sse_flat = swtt - swt * t_bar
        sse_origin = swtt - 2.0 * b_origin * swnt + b_origin * b_origin * swnn
        if sse_flat <= sse_origin:
            return max(0.0, t_bar), 0.0, spread, t_bar
        return 0.0, b_origin, spread, t_bar

    def _huber_weights(
        self, ns: np.ndarray, ts: np.ndarray, a: float, b: float, floor: float
    ) -> np.ndarray:
        residuals = ts - (a + b * ns)
        mid = len(residuals) // 2
        # Measure deviations from the median residual, not from the line: a plain least-squares
        # start is shifted by its outliers, and centring on the bulk of the points undoes that
        # shift in one pass instead of several. (partition, not median: np.median costs ~20
        # numpy calls on a vector this small.)
        centre = float(np.partition(residuals, mid)[mid])
        deviations = np.abs(residuals - centre)
        mad = float(np.partition(deviations, mid)[mid])
        cut = self._huber_c * max(_MAD_TO_SIGMA * mad, floor)
        return cut / np.maximum(deviations, cut)

    def _ensure_fit(self) -> None:
        if self._dirty:
            self._refit()

    # ----------------------------------------------------------------- the decision

    def predict_ms(self, n: float) -> float:
        """Returns the modelled handler time for ``n`` items, in milliseconds."""
        self._ensure_fit()
        return self._a + self._b * n

    def _planned_size(self, arrivals: float, queued: float) -> float:
        """Items the batch is planned for: waiting + expected arrivals + a Poisson margin."""
        return min(float(self._max_size), queued + arrivals + self._z * math.sqrt(arrivals))

    def modelled_latency_ms(
        self, window_ms: float, rate: float, *, queued: int = 1, waited_ms: float = 0.0
    ) -> float:
        """Returns the latency the model plans for a window's oldest request.

        That is ``waited_ms + window_ms + overhead_ms + a + b * n`` with ``n`` the planned
        batch size: ``queued`` plus the expected arrivals ``m = rate * window``, plus
        ``size_margin_sd * sqrt(m)`` (one Poisson standard deviation by default), at most
        ``max_size``. :meth:`window_ms` returns the largest window for which this stays
        within the target.

        Args:
            window_ms: The window length.
            rate: Arrivals per second while the window is open.
            queued: Requests already waiting when the window opens.
            waited_ms: How long the oldest of them has waited already.
        """
        self._ensure_fit()
        n = self._planned_size(max(0.0, rate) * window_ms / 1000.0, float(queued))
        return waited_ms + window_ms + self._overhead + self._a + self._b * n

    def _latency_window(self, rate_per_ms: float, queued: int, waited_ms: float) -> float:
        """The largest window (unclamped; <= 0 if none) meeting the target under the model."""
        a, b, cap = self._a, self._b, float(self._max_size)
        budget = self._target - waited_ms - self._overhead - a
        q = min(float(queued), cap)
        # Below max_size the latency in s = sqrt(w) is the quadratic
        #   (1 + b*r) s^2 + b*z*sqrt(r) s + (b*q - budget),
        # increasing for s >= 0, so the bound is its positive root.
        c = b * q - budget
        if c >= 0.0:
            return 0.0
        qa = 1.0 + b * rate_per_ms
        qb = b * self._z * math.sqrt(rate_per_ms)
        root = (-qb + math.sqrt(qb * qb - 4.0 * qa * c)) / (2.0 * qa)
        w = root * root
        if self._planned_size(rate_per_ms * w, q) >= cap:
            # The batch fills before the window ends: past that point latency rises at
            # slope 1 with the item count fixed at max_size.
            w = budget - b * cap
        return w

    def _throughput_floor(self, rate_per_ms: float, queued: int) -> float:
        """The shortest window at which the in-flight handler calls keep up with arrivals."""
        if self._max_inflight is None or rate_per_ms <= 0.0:
            return 0.0
        slots = self._headroom * self._max_inflight
        a, b = self._a, self._b
        # One window's handler call must finish within `slots` window cycles, a cycle being
        # the window plus the mean gap until the next arrival opens the following window:
        #   a + b * (queued + rate * w) <= slots * (w + 1 / rate)
        gain = slots - b * rate_per_ms
        if gain <= 0.0:
            # No window length keeps up: the largest batches waste the least per item.
            return math.inf
        return (a + b * queued - slots / rate_per_ms) / gain

    def window_ms(self, now: float, *, queued: int = 1, waited_ms: float = 0.0) -> float:
        """Returns the length of the window opening at ``now`` (seconds), in milliseconds.

        Args:
            now: The current time in seconds, on the clock the arrivals were stamped with.
            queued: Requests already waiting as the window opens (1: the one that opened it).
            waited_ms: How long the oldest waiting request has waited already.
        """
        self._rate = max(self._slow.at(now), self._fast.at(now))
        self._ensure_fit()
        if not self._fitted and self._total_batches < self._warmup_max:
            self._window = self._min_w
            return self._window
        rate_per_ms = self._rate / 1000.0
        w = max(
            self._latency_window(rate_per_ms, queued, waited_ms),
            self._throughput_floor(rate_per_ms, queued),
        )
        self._window = min(self._max_w, max(self._min_w, w))
        return self._window

    # ----------------------------------------------------------------- read-outs

    @property
    def a_ms(self) -> float:
        """The fitted fixed cost of one handler call, in milliseconds (>= 0)."""
        self._ensure_fit()
        return self._a

    @property
    def b_ms(self) -> float:
        """The fitted cost of each item of a handler call, in milliseconds (>= 0)."""
        self._ensure_fit()
        return self._b

    @property
    def rate(self) -> float:
        """The arrival rate (requests/s) estimated at the last :meth:`window_ms` call."""
        return self._rate

    def rate_at(self, now: float) -> float:
        """Returns the arrival rate (requests/s) the model would use at ``now``."""
        return max(self._slow.at(now), self._fast.at(now))

    @property
    def current_window_ms(self) -> float:
        """The window last returned by :meth:`window_ms` (``min_window_ms`` before any call)."""
        return self._window

    @property
    def fitted(self) -> bool:
        """Whether the slope has been identified from enough distinct batch sizes.

        Once True it stays True: later stretches of equal sizes keep the identified slope.
        """
        self._ensure_fit()
        return self._fitted

    @property
    def warming_up(self) -> bool:
        """Whether windows are still pinned to ``min_window_ms`` to gather observations."""
        self._ensure_fit()
        return not self._fitted and self._total_batches < self._warmup_max

    @property
    def batches_observed(self) -> int:
        """How many handler calls have been observed in total."""
        return self._total_batches

    @property
    def target_latency_ms(self) -> float:
        """The latency target the windows are sized for."""
        return self._target

    def __repr__(self) -> str:
        return (
            f"AdaptiveWindow(target={self._target:g}ms, window={self._window:.2f}ms, "
            f"a={self.a_ms:.3f}ms, b={self.b_ms:.4f}ms/item, rate={self._rate:.1f}/s, "
            f"fitted={self._fitted})"
        )
