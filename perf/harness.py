"""Run modes on one workload and judge every outcome against the ground truth.

:func:`account` turns a mode's raw outcomes into the figures of the report; it trusts nothing
the mode says about itself: calls and items are counted from the answers (each names its call
and the request it answered), merges are answers naming another request, and a merge is wrong when
that request has another intent or the echoed text is not the text of the request named.
Every share is defined so that it cannot exceed its denominator: duplicates caught count, per
burst and per intent (or per surface form), the requests that shared another request's answer,
which is at most the duplicates that exist there; the backend's time is compared with a schedule
that keeps the same limits (:mod:`.schedule`), so 1.00x is reachable.
:func:`run_modes` runs the modes one after the other on the same workload and adds the ratios;
:func:`check_exactly_once` raises :class:`OutcomeError` when a mode lost or duplicated an outcome.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .modes import Mode, ModeRun, Progress, Settings
from .schedule import best_schedule_ms
from .workload import Req, Workload

UNBATCHED = "unbatched"
PEER = "mp.Queue server (peer)"


class OutcomeError(RuntimeError):
    """A mode lost or duplicated an outcome, or answered a request that was never sent."""


def busy_periods(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of ``(start, end)`` intervals as disjoint ``(start, end)`` periods, in order."""
    out: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def busy_seconds(intervals: Sequence[tuple[float, float]]) -> float:
    """Length of the union of ``(start, end)`` intervals: the time with work outstanding."""
    return sum(end - start for start, end in busy_periods(intervals))


def shared_answers(groups: dict[Any, list[int]], leader_of: dict[int, int]) -> int:
    """Requests that got another request's answer, counted within each group.

    In a group of k requests answered by d distinct requests, k - d shared an answer; at most
    k - 1, so the sum is at most the duplicates within the groups. Requests without a right
    answer (``leader_of`` lacks them) are left out.
    """
    total = 0
    for rids in groups.values():
        answered = [leader_of[r] for r in rids if r in leader_of]
        total += len(answered) - len(set(answered))
    return total


def best_schedule_seconds(
    reqs: Sequence[Req],
    leaders: Sequence[int],
    periods: Sequence[tuple[float, float]],
    settings: Settings,
    batch_size: int,
) -> float:
    """The best schedule's time for these items, summed over the busy periods they fall in.

    Each item is released when its request (the leader) arrived; each busy period is scheduled
    on its own, from its first arrival, so the sum compares with the busy time.
    """
    starts = [start for start, _ in periods]
    by_period: dict[int, list[float]] = {}
    for leader in leaders:
        k = max(0, bisect_right(starts, reqs[leader].t) - 1)
        by_period.setdefault(k, []).append(reqs[leader].t * 1000)
    m, scale = settings.model, settings.time_scale
    total_ms = 0.0
    for k, arrivals_ms in by_period.items():
        arrivals_ms.sort()
        total_ms += (
            arrivals_ms[0]
            - starts[k] * 1000
            + best_schedule_ms(
                arrivals_ms,
                m.concurrency,
                max(1, batch_size),
                m.overhead_ms * scale,
                m.per_item_ms * scale,
            )
        )
    return total_ms / 1000


def account(
    workload: Workload, run: ModeRun, settings: Settings, batch_size: int
) -> dict[str, Any]:
    """The report's figures for one mode's run.

    Args:
        workload: what was sent, with the ground truth.
        run: what came back.
        settings: the run's settings (cost model, window).
        batch_size: most items one backend call of this mode can hold.

    Returns:
        A JSON-ready dict: outcome accounting (``lost``, ``duplicated``, ``stray``, ``errors``),
        dedup figures (``dups_existing``, ``dups_caught`` <= ``dups_existing``,
        ``dups_catchable``, ``dups_caught_surface`` <= ``dups_catchable``, ``merges``,
        ``wrong_merges``, right merges per variant), backend figures (``backend_calls``,
        ``backend_items``, ``cost_usd``), latency percentiles, ``throughput_rps`` (requests per
        second of time with work outstanding), the best schedule's time for the same items
        (``best_schedule_s``) and ``vs_best_schedule`` (busy time over it: 1.00x is the best).
    """
    reqs = workload.requests
    n = len(reqs)
    per_rid = Counter(o.rid for o in run.outcomes)
    stray = sum(c for rid, c in per_rid.items() if not 0 <= rid < n)
    answered = sum(1 for rid in per_rid if 0 <= rid < n)
    duplicated = sum(c - 1 for rid, c in per_rid.items() if 0 <= rid < n)
    errors: Counter[str] = Counter()
    merges = wrong = mismatched = 0
    caught_by_variant: Counter[str] = Counter()
    wrong_by_kind: Counter[str] = Counter()
    calls: set[Any] = set()
    items: set[tuple[Any, Any]] = set()
    right_leader: dict[int, int] = {}  # request -> the request whose answer it got, same intent
    for o in run.outcomes:
        if not 0 <= o.rid < n:
            continue
        if o.error is not None or not isinstance(o.result, dict):
            errors[(o.error or "no result").split(":", 1)[0]] += 1
            continue
        res = o.result
        leader = res.get("answer_to")
        calls.add(res.get("call"))
        items.add((res.get("call"), leader))
        if (
            not isinstance(leader, int)
            or not 0 <= leader < n
            or res.get("query") != reqs[leader].text
        ):
            mismatched += 1
            continue
        if reqs[leader].intent == reqs[o.rid].intent:
            right_leader.setdefault(o.rid, leader)
        if leader != o.rid:
            merges += 1
            if reqs[leader].intent != reqs[o.rid].intent:
                wrong += 1
                wrong_by_kind[reqs[o.rid].kind] += 1
            else:
                caught_by_variant[reqs[o.rid].variant] += 1
    truth = workload.truth()
    by_intent: dict[tuple[int, int], list[int]] = {}
    by_form: dict[tuple[int, str], list[int]] = {}
    for r in reqs:
        by_intent.setdefault((r.segment, r.intent), []).append(r.rid)
        by_form.setdefault((r.segment, r.form), []).append(r.rid)
    caught = shared_answers(by_intent, right_leader)
    caught_surface = shared_answers(by_form, right_leader)
    ok = [o for o in run.outcomes if o.error is None and 0 <= o.rid < n]
    lat_ms = np.array([o.latency_s * 1000 for o in ok]) if ok else np.array([math.nan])
    periods = busy_periods(
        [(reqs[o.rid].t, reqs[o.rid].t + o.latency_s) for o in run.outcomes if 0 <= o.rid < n]
    )
    busy = sum(end - start for start, end in periods)
    n_items = len(items)
    size = max(1, batch_size)
    leaders = [leader for _, leader in items if isinstance(leader, int) and 0 <= leader < n]
    best = best_schedule_seconds(reqs, leaders, periods, settings, size) if periods else 0.0
    window = settings.window_ms if size > 1 else 0.0
    p99_bound = 1.1 * (window + settings.model.call_ms(size))
    p99 = float(np.percentile(lat_ms, 99))
    seg_items = Counter(reqs[leader].segment for leader in leaders)
    return {
        "requests": n,
        "outcomes": len(run.outcomes),
        "lost": n - answered,
        "duplicated": duplicated,
        "stray": stray,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "mismatched_answers": mismatched,
        "dups_existing": truth["dups_existing"],
        "dups_caught": caught,
        "caught_pct": 100.0 * caught / truth["dups_existing"] if truth["dups_existing"] else 0.0,
        "dups_catchable": truth["dups_catchable"],
        "dups_caught_surface": caught_surface,
        "surface_caught_pct": (
            100.0 * caught_surface / truth["dups_catchable"] if truth["dups_catchable"] else 0.0
        ),
        "merges": merges,
        "right_merges_by_variant": dict(sorted(caught_by_variant.items())),
        "wrong_merges": wrong,
        "wrong_merge_pct": 100.0 * wrong / merges if merges else 0.0,
        "wrong_merges_by_kind": dict(sorted(wrong_by_kind.items())),
        "backend_calls": len(calls),
        "backend_items": n_items,
        "avg_call_size": n_items / len(calls) if calls else 0.0,
        "max_items_per_segment": max(seg_items.values(), default=0),
        "cost_usd": n_items * settings.model.price_per_item_usd,
        "items_saved": n - n_items,
        "latency_ms_p50": float(np.percentile(lat_ms, 50)),
        "latency_ms_p95": float(np.percentile(lat_ms, 95)),
        "latency_ms_p99": p99,
        "latency_ms_max": float(np.max(lat_ms)),
        "p99_bound_ms": p99_bound,
        "busy_s": busy,
        "throughput_rps": n / busy if busy > 0 else 0.0,
        "best_schedule_s": best,
        "vs_best_schedule": busy / best if best > 0 else None,
        "batch_size": size,
        "cpu_us_per_request": (run.cpu_s / n * 1e6) if run.cpu_s is not None and n else None,
        "notes": run.notes,
    }


def check_exactly_once(reports: dict[str, dict[str, Any]]) -> None:
    """Raise :class:`OutcomeError` if any mode lost, duplicated or invented an outcome.

    Raises:
        OutcomeError: naming each offending mode and its counts.
    """
    bad = [
        f"{name}: lost {r['lost']}, duplicated {r['duplicated']}, stray {r['stray']}"
        for name, r in reports.items()
        if r.get("ran") and (r["lost"] or r["duplicated"] or r["stray"])
    ]
    if bad:
        raise OutcomeError("every request must get exactly one outcome; " + "; ".join(bad))


async def run_modes(
    workload: Workload,
    settings: Settings,
    modes: Sequence[Mode],
    progress_for: Callable[[str, int], Progress] | None = None,
    repeats: int = 1,
) -> dict[str, dict[str, Any]]:
    """Run each mode on the workload ``repeats`` times, interleaved, and account for each run.

    Repeats go round-robin (every mode once, then again), so drifting machine load touches all
    modes alike. The unbatched mode runs once: it is backend-bound and its figure is stable (and
    it is by far the slowest). Each mode's reported figures are those of its median run by
    throughput; ``throughput_rps_runs`` lists every run; ``lost``, ``duplicated``, ``stray``,
    ``errors`` and ``mismatched_answers`` are summed over all runs, so no bad run hides.

    Args:
        workload: the same requests for every mode.
        settings: batching and backend settings.
        modes: the modes; one that is unavailable is reported as skipped with its reason.
        progress_for: ``(mode name, total) -> progress callback``; None for no progress.
        repeats: runs per mode (at least 1).

    Returns:
        ``{mode name: figures}``; a skipped mode has ``ran: False`` and ``skipped``. Ratios
        against unbatched (``speedup_vs_unbatched``, ``cost_vs_unbatched``) and against the peer
        (``speedup_vs_peer``, ``p99_vs_peer``) are added when those modes ran.
    """
    reports: dict[str, dict[str, Any]] = {}
    runnable: list[Mode] = []
    for mode in modes:
        why = mode.unavailable()
        if why is None:
            runnable.append(mode)
        else:
            reports[mode.name] = {"ran": False, "skipped": why}
    runs: dict[str, list[dict[str, Any]]] = {m.name: [] for m in runnable}
    times = {m.name: 1 if m.name == UNBATCHED else max(1, repeats) for m in runnable}
    bars = {
        m.name: (
            progress_for(m.name, len(workload) * times[m.name])
            if progress_for
            else (lambda _n: None)
        )
        for m in runnable
    }
    for r in range(max(times.values(), default=0)):
        for mode in runnable:
            if r >= times[mode.name]:
                continue
            run = await mode.run(workload, settings, bars[mode.name])
            runs[mode.name].append(
                account(workload, run, settings, mode.batch_size or settings.max_size)
            )
    for mode in runnable:
        reports[mode.name] = median_run(runs[mode.name])
    add_ratios(reports)
    return reports


SUMMED = ("lost", "duplicated", "stray", "errors", "mismatched_answers")


def median_run(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median throughput, with the failure counts summed over all runs."""
    ordered = sorted(runs, key=lambda r: r["throughput_rps"])
    rep = dict(ordered[(len(ordered) - 1) // 2])
    for key in SUMMED:
        rep[key] = sum(r[key] for r in runs)
    rep["repeats"] = len(runs)
    rep["throughput_rps_runs"] = [r["throughput_rps"] for r in runs]
    rep["latency_ms_p99_runs"] = [r["latency_ms_p99"] for r in runs]
    rep["ran"] = True
    return rep


def add_ratios(reports: dict[str, dict[str, Any]]) -> None:
    """Add ratios against the unbatched mode and the peer, where they ran."""
    base = reports.get(UNBATCHED, {})
    peer = reports.get(PEER, {})
    for rep in reports.values():
        if not rep.get("ran"):
            continue
        if base.get("ran"):
            rep["speedup_vs_unbatched"] = _ratio(rep["throughput_rps"], base["throughput_rps"])
            rep["cost_vs_unbatched"] = _ratio(rep["cost_usd"], base["cost_usd"])
        if peer.get("ran"):
            rep["speedup_vs_peer"] = _ratio(rep["throughput_rps"], peer["throughput_rps"])
            rep["p99_vs_peer"] = _ratio(rep["latency_ms_p99"], peer["latency_ms_p99"])


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


TARGET_MODE = "stratabatch embedding"


def targets(
    reports: dict[str, dict[str, Any]], settings: Settings, mode: str = TARGET_MODE
) -> list[dict[str, Any]]:
    """The issue's targets for batching + dedup, each with the measured value and a verdict.

    Every target is reachable on the run's workload, or says why it does not apply: ``met`` is
    True, False, or None with ``why`` when the workload cannot meet it by construction.
    """
    r = reports.get(mode, {})
    if not r.get("ran"):
        return []
    merges = r["merges"]
    rows: list[dict[str, Any]] = [
        _target(
            "throughput vs unbatched",
            r.get("speedup_vs_unbatched"),
            ">= 5x",
            (r.get("speedup_vs_unbatched") or 0) >= 5,
            "x",
        ),
        _target(
            "busy time vs the best schedule",
            r["vs_best_schedule"],
            "<= 1.02x",
            (r["vs_best_schedule"] or math.inf) <= 1.02,
            "x",
        ),
        _target(
            "surface duplicates caught",
            r["surface_caught_pct"],
            ">= 90 %",
            r["surface_caught_pct"] >= 90,
            "%",
        ),
        _target(
            "wrong merges / merges",
            r["wrong_merge_pct"],
            "<= 1 %",
            r["wrong_merges"] <= 0.01 * merges,
            "%",
        ),
    ]
    m = settings.model
    one_round = m.concurrency * r["batch_size"]
    p99 = _target(
        "p99 latency ms",
        r["latency_ms_p99"],
        f"<= {r['p99_bound_ms']:,.0f}",
        r["latency_ms_p99"] <= r["p99_bound_ms"],
        "ms",
    )
    if r["max_items_per_segment"] > one_round:
        rounds = math.ceil(r["max_items_per_segment"] / one_round)
        p99["met"] = None
        p99["why"] = (
            f"not applicable to this workload: the bound 1.1 x (window + full call) "
            f"holds when a burst's unique items fit in one round of {m.concurrency} "
            f"calls of {r['batch_size']} ({one_round}); here a burst has "
            f"{r['max_items_per_segment']:,}, so its last requests wait for "
            f"{rounds - 1} earlier round(s) whatever the batcher does"
        )
    rows.append(p99)
    rows.append(
        _target(
            "lost + duplicated outcomes",
            r["lost"] + r["duplicated"],
            "0",
            r["lost"] + r["duplicated"] == 0,
            "",
        )
    )
    return rows


def _target(name: str, measured: float | None, wanted: str, met: bool, unit: str) -> dict[str, Any]:
    return {
        "target": name,
        "measured": measured,
        "unit": unit,
        "wanted": wanted,
        "met": bool(met),
        "why": "",
    }
