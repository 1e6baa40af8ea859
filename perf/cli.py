"""``stratabatch-perf``: one workload through every mode and the peers, side by side.

    stratabatch-perf [--quick] [--wide] [--explain] [--json FILE] [--plot FILE.png]
                     [workload, batching and cost-model options]
    stratabatch-perf --repeat-traffic [--quick] [--json FILE] [repeat-traffic options]

Modes, in one run on the same seeded workload: unbatched direct calls; batching without dedup;
the embedded BatchProcessor with exact, embedding and hybrid dedup; the multiprocessing.Queue
batching server (the peer); stratabatch-engine with client processes (when installed); Ray Serve's
@serve.batch and stratabatch on Ray Serve (when the ``ray`` extra is installed). With ``--plot``
(or ``--sweep``) a window_ms x max_size sweep of the default strategy follows. The tables fit in
80 columns (--wide prints every column); the run ends with its verdict in words. Exits 1 if any
mode lost, duplicated or misdelivered an outcome, 2 on a usage error (--plot without matplotlib
fails before any mode runs). docs/perf.md explains the cost model and how to read the output.

``--repeat-traffic`` runs issue 23's other workload instead (perf/repeat_traffic.py, described
in docs/reuse.md): the same population of questions asked over minutes with Zipf popularity,
near variants and traps, replayed through the reuse cache (exact and near, ttl and bounds
varied) and sent live through BatchProcessor with reuse off, exact and near, beside
aiodataloader's cache where it installs. With the ``semantic`` extra installed, MiniLM rows
follow (near reuse with ``MiniLMEmbedder``, replayed and live; ``--repeat-no-minilm`` leaves
them out; without the extra they are skipped, saying why). It ends with the issue's checks
(wrong answers served, entries held at the bound, backend items against distinct intents) and
exits 1 if an answer served belongs to another question beyond the issue's 0.5% of reuses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from dataclasses import asdict, replace
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from stratabatch.cliargs import CliParser

from .backend import CostModel
from .harness import TARGET_MODE, OutcomeError, check_exactly_once, run_modes, targets
from .modes import Embedded, Mode, Settings, Unbatched
from .modes_engine import EngineMode
from .modes_ray import RayServeMode, StratabatchServeMode
from .mpqueue_server import MpQueuePeer
from .report import plot_sweep, print_all, verdict
from .sweep import run_sweep
from .workload import WorkloadConfig, generate

QUICK = {"bursts": 2, "burst_size": 400, "gap_ms": 600.0}
SWEEP_WINDOWS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
SWEEP_SIZES = (16, 32, 64, 128)
QUICK_SWEEP_WINDOWS = (2.0, 10.0, 50.0)
QUICK_SWEEP_SIZES = (16, 64)


def all_modes() -> list[Mode]:
    """Every mode, in the order of the table."""
    return [
        Unbatched(),
        Embedded("off"),
        Embedded("exact"),
        Embedded("embedding"),
        Embedded("hybrid"),
        MpQueuePeer(),
        EngineMode("exact"),
        EngineMode("embedding"),
        RayServeMode(),
        StratabatchServeMode(),
    ]


def build_parser() -> argparse.ArgumentParser:
    """The command line, every default shown in ``--help``."""
    p = CliParser(
        exit_statuses={
            0: "every mode answered every request exactly once, correctly",
            1: "a mode lost, duplicated or misdelivered an outcome",
            2: "a usage error (such as --plot without matplotlib)",
        },
        prog="stratabatch-perf",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = WorkloadConfig()
    m = CostModel()
    p.add_argument(
        "--quick",
        action="store_true",
        help="a small workload (2 bursts of 400) that runs in about 20 s",
    )
    p.add_argument(
        "--wide",
        action="store_true",
        help="print every column of the modes table (about 170 columns)",
    )
    p.add_argument("--explain", action="store_true", help="define every column under the table")
    p.add_argument("--json", metavar="FILE", help="write every figure and the configuration")
    p.add_argument("--plot", metavar="FILE.png", help="run the sweep and plot it (plot extra)")
    p.add_argument("--sweep", action="store_true", help="run the sweep without plotting")
    p.add_argument(
        "--modes",
        metavar="SUBSTR,...",
        help="run only modes whose name contains one of these (unbatched and the "
        "peer always run, for the ratios)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="runs per mode, median reported; unbatched runs once (default 3, 1 with --quick)",
    )
    p.add_argument(
        "--sweep-repeats",
        type=int,
        default=None,
        help="runs per sweep point and load (default 2, 1 with --quick)",
    )
    p.add_argument(
        "--sweep-rate",
        type=float,
        default=1000.0,
        help="the sweep's steady load: square wave between this rate and a tenth "
        "of it, req/s (default %(default)s)",
    )
    p.add_argument(
        "--sweep-duration-s",
        type=float,
        default=None,
        help="length of the sweep's steady load (default 2, 1 with --quick)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    r = p.add_argument_group("repeat traffic (reuse, issue 23)")
    r.add_argument(
        "--repeat-traffic",
        action="store_true",
        help="run the repeat-traffic workload instead of the modes: reuse replays and live "
        "systems (uses --seed and --json)",
    )
    r.add_argument(
        "--repeat-minutes",
        type=float,
        default=None,
        help="length of the stream in its own time (default 3, 0.5 with --quick)",
    )
    r.add_argument(
        "--repeat-rate", type=float, default=50.0, help="requests/s (default %(default)s)"
    )
    r.add_argument(
        "--repeat-speedup",
        type=float,
        default=30.0,
        help="pace of the live runs, times the stream's (default %(default)s)",
    )
    r.add_argument(
        "--repeat-replay-only",
        action="store_true",
        help="only the replays through the reuse cache, no live systems",
    )
    r.add_argument(
        "--repeat-no-minilm",
        action="store_true",
        help="leave out the MiniLM rows (run when the semantic extra is installed; they add "
        "~1-2 min)",
    )
    w = p.add_argument_group("workload")
    w.add_argument("--seed", type=int, default=d.seed, help="default %(default)s")
    w.add_argument(
        "--arrivals", choices=("bursts", "poisson"), default=d.arrivals, help="default %(default)s"
    )
    w.add_argument(
        "--clients",
        type=int,
        default=d.clients,
        help="client processes in the multiprocess modes (default %(default)s)",
    )
    w.add_argument("--bursts", type=int, default=d.bursts, help="default %(default)s")
    w.add_argument("--burst-size", type=int, default=d.burst_size, help="default %(default)s")
    w.add_argument("--burst-ms", type=float, default=d.burst_ms, help="default %(default)s")
    w.add_argument(
        "--gap-ms",
        type=float,
        default=d.gap_ms,
        help="idle time after each burst (default %(default)s)",
    )
    w.add_argument("--rate-high", type=float, default=d.rate_high, help="default %(default)s")
    w.add_argument("--rate-low", type=float, default=d.rate_low, help="default %(default)s")
    w.add_argument(
        "--half-period-ms", type=float, default=d.half_period_ms, help="default %(default)s"
    )
    w.add_argument("--duration-s", type=float, default=d.duration_s, help="default %(default)s")
    w.add_argument(
        "--zipf-s",
        type=float,
        default=d.zipf_s,
        help="Zipf exponent of intent popularity (default %(default)s)",
    )
    for name, what in (
        ("p_tail", "share of unique long-tail requests"),
        ("p_long", "share of long prompts (shared preamble)"),
        ("p_surface", "share of surface variants"),
        ("p_typo", "share of typo variants"),
        ("p_paraphrase", "share of paraphrases"),
    ):
        w.add_argument(
            "--" + name.replace("_", "-"),
            type=float,
            default=getattr(d, name),
            help=f"{what} (default %(default)s)",
        )
    b = p.add_argument_group("batching")
    b.add_argument(
        "--window-ms", type=float, default=Settings.window_ms, help="default %(default)s"
    )
    b.add_argument("--max-size", type=int, default=Settings.max_size, help="default %(default)s")
    c = p.add_argument_group("cost model of the simulated backend")
    c.add_argument(
        "--overhead-ms", type=float, default=m.overhead_ms, help="per call (default %(default)s)"
    )
    c.add_argument(
        "--per-item-ms", type=float, default=m.per_item_ms, help="per item (default %(default)s)"
    )
    c.add_argument(
        "--concurrency", type=int, default=m.concurrency, help="calls at once (default %(default)s)"
    )
    c.add_argument(
        "--price-per-item",
        type=float,
        default=m.price_per_item_usd,
        help="USD (default %(default)s)",
    )
    return p


def _workload_config(a: argparse.Namespace) -> WorkloadConfig:
    fields = {k: getattr(a, k) for k in asdict(WorkloadConfig()) if hasattr(a, k)}
    if a.quick:
        d = WorkloadConfig()
        for k, v in QUICK.items():
            if getattr(a, k) == getattr(d, k):  # an explicit option wins over --quick
                fields[k] = v
    return WorkloadConfig(**fields)


def _select(modes: list[Mode], spec: str | None) -> list[Mode]:
    if not spec:
        return modes
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    return [
        m
        for m in modes
        if m.name in ("unbatched", MpQueuePeer.name) or any(s in m.name for s in wanted)
    ]


async def _compile_step(
    modes: list[Any], bar: Progress, console: Console, *, sweep: bool = False
) -> None:
    """A first run on a machine: compile the kernels the modes reach into numba's cache, as
    its own step before any timed mode (``python -m stratabatch.warm`` in a child process, so
    the bar keeps moving); nothing when they are cached."""
    from stratabatch import warm

    strategies = sorted(
        {m.dedup for m in modes if getattr(m, "dedup", None) in warm.STRATEGIES}
        | ({"embedding"} if sweep else set())  # (the sweep runs the default strategy)
    )
    engine = any(isinstance(m, EngineMode) for m in modes)
    wanted = (*strategies, *((warm.ENGINE,) if engine else ()))
    missing = warm.check(unit_names=wanted).missing if wanted else ()
    if not missing:
        return
    task = bar.add_task(f"compiling kernels (first run, ~{warm.estimate_s(missing)} s)", total=1)
    cmd = [sys.executable, "-m", "stratabatch.warm"]
    for s in missing:
        if s != warm.ENGINE:
            cmd += ["--strategy", s]
    if warm.ENGINE not in missing:
        cmd.append("--no-engine")
    elif len(missing) == 1:  # the engine's kernels only: with the cheapest strategy's
        cmd += ["--strategy", "exact"]
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    bar.advance(task, 1)
    if proc.returncode != 0:
        raise RuntimeError(
            f"compiling the kernels failed ({' '.join(cmd[1:])}, exit status "
            f"{proc.returncode}): {err.decode(errors='replace').strip()[-2000:]}"
        )
    console.print(
        f"first run on this machine: compiled the kernels for {', '.join(missing)} in "
        f"{time.monotonic() - t0:.0f} s (numba's cache; not counted in any mode)"
    )


async def _main(a: argparse.Namespace, console: Console) -> int:
    cfg = _workload_config(a)
    model = CostModel(a.overhead_ms, a.per_item_ms, a.concurrency, a.price_per_item)
    settings = Settings(model=model, window_ms=a.window_ms, max_size=a.max_size)
    workload = generate(cfg)
    truth = workload.truth()
    seg = "burst" if cfg.arrivals == "bursts" else "segment"
    console.print(
        f"workload: {truth['requests']:,} requests ({cfg.arrivals}, {cfg.clients} clients, seed "
        f"{cfg.seed})\nduplicates within a {seg}: {truth['dups_existing']:,} existing, "
        f"{truth['dups_catchable']:,} of them surface variants\nbackend: "
        f"{model.overhead_ms:g} ms/call + {model.per_item_ms:g} ms/item, {model.concurrency} at "
        f"once, ${model.price_per_item_usd:g}/item\nbatching: window {a.window_ms:g} ms, "
        f"max_size {a.max_size}"
    )
    modes = _select(all_modes(), a.modes)
    repeats = a.repeats or (1 if a.quick else 3)
    sweep_repeats = a.sweep_repeats or (1 if a.quick else 2)
    sweep_rows: list[dict[str, Any]] = []
    sweep_desc = ""
    sweep_cfgs: dict[str, Any] | None = None
    # one progress task per step (each mode, then the sweep), so a step can be added in front
    with Progress(
        TextColumn("{task.description:<30}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=a.no_progress,
    ) as bar:

        def progress_for(name: str, total: int):
            task = bar.add_task(name, total=total)
            return lambda k: bar.advance(task, k)

        await _compile_step(modes, bar, console, sweep=bool(a.plot or a.sweep))
        t0 = time.monotonic()
        reports = await run_modes(workload, settings, modes, progress_for, repeats)
        elapsed_modes = time.monotonic() - t0
        if a.plot or a.sweep:
            windows = QUICK_SWEEP_WINDOWS if a.quick else SWEEP_WINDOWS
            sizes = QUICK_SWEEP_SIZES if a.quick else SWEEP_SIZES
            burst_cfg = replace(cfg, arrivals="bursts", bursts=min(cfg.bursts, 1 if a.quick else 2))
            steady_cfg = replace(
                cfg,
                arrivals="poisson",
                rate_high=a.sweep_rate,
                rate_low=a.sweep_rate / 10,
                duration_s=a.sweep_duration_s or (1.0 if a.quick else 2.0),
            )
            burst_load, steady_load = generate(burst_cfg), generate(steady_cfg)
            sweep_desc = sweep_description(burst_cfg, steady_cfg, len(steady_load))
            sweep_cfgs = {"bursts": asdict(burst_cfg), "steady": asdict(steady_cfg)}
            task = bar.add_task(
                "sweep window_ms x max_size", total=2 * len(windows) * len(sizes) * sweep_repeats
            )
            sweep_rows = await run_sweep(
                burst_load,
                steady_load,
                model,
                windows,
                sizes,
                sweep_repeats,
                lambda: bar.advance(task),
            )
    target_rows = targets(reports, settings)
    print_all(
        console,
        reports,
        f"{truth['requests']:,} requests, {cfg.arrivals}; modes took {elapsed_modes:.1f} s",
        target_rows,
        TARGET_MODE,
        sweep_rows,
        sweep_desc,
        wide=a.wide,
        explain=a.explain,
    )
    if a.plot and sweep_rows:
        plot_sweep(
            sweep_rows,
            a.plot,
            f"{sweep_desc}\nbackend {model.overhead_ms:g} ms/call + "
            f"{model.per_item_ms:g} ms/item, {model.concurrency} concurrent; "
            f"embedding dedup",
        )
        console.print(f"plot written to {a.plot}")
    if a.json:
        doc = {
            "command": ["stratabatch-perf", *sys.argv[1:]],
            "created_unix": time.time(),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "settings": {
                "window_ms": settings.window_ms,
                "max_size": settings.max_size,
                "repeats": repeats,
                "sweep_repeats": sweep_repeats,
                "timeout_s": settings.timeout_s,
                "cost_model": asdict(model),
            },
            "workload": workload.describe(),
            "modes": reports,
            "targets": {"mode": TARGET_MODE, "rows": target_rows},
            "verdict": verdict(reports, TARGET_MODE, target_rows),
            "sweep": {
                "workload": sweep_desc,
                "configs": sweep_cfgs,
                "strategy": "embedding",
                "repeats": sweep_repeats,
                "points": sweep_rows,
            },
        }
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=2)
        console.print(f"JSON written to {a.json}")
    all_runs = dict(reports)
    all_runs.update(
        {f"sweep {r['window_ms']:g}/{r['max_size']}": {**r, "ran": True} for r in sweep_rows}
    )
    misdelivered = {
        n: r["mismatched_answers"]
        for n, r in all_runs.items()
        if r.get("ran") and r["mismatched_answers"]
    }
    try:
        check_exactly_once(all_runs)
    except OutcomeError as exc:
        console.print(escape(f"FAILED: {exc}"), style="red")
        return 1
    if misdelivered:
        console.print(
            escape(f"FAILED: answers that name another request's text: {misdelivered}"), style="red"
        )
        return 1
    return 0


REUSE_WRONG_MAX = 0.005
"""Issue 23's bound on wrong answers served, as a share of the reuses."""


def repeat_traffic(a: argparse.Namespace, console: Console) -> int:
    """``--repeat-traffic``: perf/repeat_traffic.py's tables (its own ``main``), then the
    issue's checks; 1 if a system served other questions' answers beyond
    :data:`REUSE_WRONG_MAX` of its reuses (or any, for batching without reuse), else 0."""
    import tempfile

    from . import repeat_traffic as rt

    minutes = a.repeat_minutes or (0.5 if a.quick else 3.0)
    with tempfile.TemporaryDirectory() as tmp:
        out = a.json or os.path.join(tmp, "repeat.json")
        argv = [
            *("--minutes", str(minutes), "--rate", str(a.repeat_rate), "--seed", str(a.seed)),
            *("--speedup", str(a.repeat_speedup), "--json", out),
        ]
        if not a.repeat_replay_only:
            argv.append("--live")
        if a.repeat_no_minilm:
            argv.append("--no-minilm")
        sys.stdout.flush()
        rt.main(argv)
        sys.stdout.flush()
        with open(out) as f:
            doc = json.load(f)
    ok, lines = repeat_checks(doc)
    console.print(
        f"\nchecks (issue 23): wrong answers <= {REUSE_WRONG_MAX:.1%} of reuses, none "
        "without reuse; items against distinct intents"
    )
    for line in lines:
        console.print(escape(line))
    if a.json:
        console.print(f"JSON written to {a.json}")
    return 0 if ok else 1


def repeat_checks(doc: dict[str, Any]) -> tuple[bool, list[str]]:
    """The issue's checks of a repeat-traffic run (perf/repeat_traffic.py's JSON): whether
    every answer served was right enough, and a line per check."""
    truth = doc["truth"]
    intents = truth["distinct_intents"]
    ok = True
    lines = []
    runs = [(f"replay ttl {r['ttl_s']:g}s max {r['max_entries']:,}", r) for r in doc["replays"]]
    runs += [
        (f"replay near, {r['label']}, ttl {r['ttl_s']:g}s max {r['max_entries']:,}", r)
        for r in (*doc.get("near_replays", []), *doc.get("minilm_replays", []))
    ]
    runs += [(rt_name(r["system"]), r) for r in doc.get("live", [])]
    for name, r in runs:
        wrong = r["wrong_answers"]
        hits = r.get("reuse_hits")
        if hits is None:  # no reuse: every answer must be the request's own
            good = wrong == 0
            what = f"{wrong} wrong"
        else:
            good = wrong <= REUSE_WRONG_MAX * hits
            what = f"{wrong} wrong/{hits:,} reuses"
        ok &= good
        lines.append(
            f"{'ok  ' if good else 'FAIL'} {name}: {what}, {r['backend_items']:,} items "
            f"({r['backend_items'] / intents:.2f}x)"
        )
    for r in doc["replays"]:
        held = r["entries_each_minute"]
        if r["peak_entries"] >= r["max_entries"]:
            flat = all(h <= r["max_entries"] for h in held)
            ok &= flat
            lines.append(
                f"{'ok  ' if flat else 'FAIL'} entries at each minute's end, bound "
                f"{r['max_entries']:,}: {held}"
            )
    best = min(runs, key=lambda nr: nr[1]["backend_items"], default=None)
    lines.append(
        "(<= 1.05x distinct intents is near reuse's target, "
        + (
            f"{'met' if best[1]['backend_items'] <= 1.05 * intents else 'not met'}: the fewest "
            f"items, {best[1]['backend_items'] / intents:.2f}x, {best[0]}; "
            if best is not None
            else ""
        )
        + "exact reuse's floor is the distinct exact keys, "
        f"{truth['distinct_exact_keys'] / intents:.2f}x)"
    )
    return ok, lines


def rt_name(system: str) -> str:
    """A live system's name in the checks."""
    from .repeat_traffic import LIVE_NAMES

    return LIVE_NAMES.get(system, system)


def sweep_description(bursts: WorkloadConfig, steady: WorkloadConfig, steady_requests: int) -> str:
    """What the sweep ran, for its table and plot: ``throughput on 1 burst of 400; ...``."""
    burst_word = "burst" if bursts.bursts == 1 else "bursts"
    return (
        f"throughput on {bursts.bursts} {burst_word} of {bursts.burst_size}; latency and "
        f"calls on a {steady.rate_high:g}/{steady.rate_low:g} req/s square wave "
        f"({steady_requests:,} requests)"
    )


def plot_unavailable() -> str | None:
    """None when ``--plot`` can draw, else why not (checked before any mode runs)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return '--plot needs matplotlib, which is not installed: pip install "stratabatch[plot]"'
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``stratabatch-perf``; returns the exit status.

    0 when every mode answered every request exactly once and correctly, 1 when one did not,
    2 on a usage error (printed by argparse), such as ``--plot`` without matplotlib.
    """
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        _workload_config(a)
    except ValueError as exc:
        parser.error(str(exc))
    if a.plot and (why := plot_unavailable()):
        parser.error(why)
    # a terminal gets its own width; a pipe or file gets 80 columns, or room for --wide
    width = None if sys.stdout.isatty() else (200 if a.wide else 80)
    console = Console(width=width)
    if a.repeat_traffic:
        return repeat_traffic(a, console)
    return asyncio.run(_main(a, console))


if __name__ == "__main__":
    sys.exit(main())
