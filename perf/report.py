"""What a run prints and writes: the modes table, the targets, the verdict, the sweep and its plot.

The default tables fit in 80 columns: the modes table shows mode, req/s, x unbatched, p99,
backend items, wrong merges and lost outcomes; ``--wide`` prints every column (about 170
columns), and ``--json`` holds every figure either way. :data:`COLUMNS` defines each column;
``--explain`` prints those definitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .harness import PEER, UNBATCHED

COLUMNS: tuple[tuple[str, str], ...] = (
    (
        "req/s",
        "requests divided by the busy time: the time during which at least one request "
        "was outstanding (idle gaps between bursts do not count)",
    ),
    (
        "x unbatched, x peer",
        "req/s over the unbatched mode's, or the mp.Queue batching server's, in the same run",
    ),
    ("p50, p95, p99 ms", "from a request's scheduled arrival to its answer"),
    (
        "calls, backend items",
        "backend calls and items, counted from the answers: each item is "
        "one request the backend ran; the rest shared its answer",
    ),
    ("cost $", "backend items x the price per item"),
    (
        "caught / existing",
        "duplicates caught: per burst and intent, the requests that shared "
        "the answer of another request with the same intent (k requests "
        "answered by d distinct requests: k - d caught); existing: requests "
        "minus distinct intents per burst. Caught cannot exceed existing",
    ),
    (
        "surface caught / catchable",
        "the same count per burst and surface form: catchable "
        "duplicates differ from another request of their burst only "
        "in case, punctuation, spacing or filler words (what the "
        "default embedder is built to merge). Typos and paraphrases "
        "merged count in caught, not here",
    ),
    (
        "wrong",
        "merges whose answer came from a request with another intent: a caller served "
        "someone else's answer",
    ),
    ("lost / dup", "requests that got no outcome / outcomes beyond the first; must be 0"),
    (
        "x best",
        "busy time over the time of the best schedule the backend allows for the same "
        "items: the same arrivals, max_size and concurrency (perf/schedule.py). 1.00x "
        "is reachable; 1.20x means the mode took 20% longer than that schedule",
    ),
)
"""Each column of the tables: its header and what it counts."""


TIE = 0.05
"""Modes whose req/s is within this fraction of the fastest's are named as tied with it."""


def _x(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}x"


def _compact(title: str) -> Table:
    """A table without outer edges or doubled padding: 7 columns of modes fit in 76."""
    return Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )


def _bad(r: dict[str, Any]) -> bool:
    return bool(r["lost"] or r["duplicated"] or r["stray"] or r["mismatched_answers"])


def modes_table(reports: dict[str, dict[str, Any]], title: str, wide: bool = False) -> Table:
    """One row per mode that ran: the compact columns, or every column when ``wide``."""
    if wide:
        t = Table(title=title, title_justify="left")
        cols: tuple[str, ...] = (
            "mode",
            "req/s",
            "x\nunbatched",
            "x\npeer",
            "p50\nms",
            "p95\nms",
            "p99\nms",
            "calls",
            "backend\nitems",
            "cost\n$",
            "caught /\nexisting",
            "surface caught /\ncatchable",
            "wrong",
            "lost /\ndup",
            "x\nbest",
        )
    else:
        t = _compact(title)
        cols = ("mode", "req/s", "x\nunbatched", "p99\nms", "backend\nitems", "wrong", "lost")
    for col in cols:
        t.add_column(col, justify="left" if col == "mode" else "right", no_wrap=True)
    for name, r in reports.items():
        if not r.get("ran"):
            continue
        red = "[red]" if _bad(r) else ""
        if wide:
            t.add_row(
                escape(name),
                f"{r['throughput_rps']:,.0f}",
                _x(r.get("speedup_vs_unbatched")),
                _x(r.get("speedup_vs_peer")),
                f"{r['latency_ms_p50']:,.0f}",
                f"{r['latency_ms_p95']:,.0f}",
                f"{r['latency_ms_p99']:,.0f}",
                f"{r['backend_calls']:,}",
                f"{r['backend_items']:,}",
                f"{r['cost_usd']:.2f}",
                f"{r['dups_caught']:,} / {r['dups_existing']:,}",
                f"{r['dups_caught_surface']:,} / {r['dups_catchable']:,}",
                f"{r['wrong_merges']}",
                red + f"{r['lost']} / {r['duplicated']}",
                _x(r.get("vs_best_schedule")),
            )
        else:
            t.add_row(
                escape(name),
                f"{r['throughput_rps']:,.0f}",
                _x(r.get("speedup_vs_unbatched")),
                f"{r['latency_ms_p99']:,.0f}",
                f"{r['backend_items']:,}",
                f"{r['wrong_merges']}",
                red + f"{r['lost']}",
            )
    return t


def _measured(r: dict[str, Any]) -> str:
    v, unit = r["measured"], r.get("unit", "")
    if v is None:
        return "-"
    if unit == "x":
        return f"{v:.2f}x"
    if unit == "%":
        return f"{v:.1f} %"
    if unit == "ms":
        return f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else f"{v:,.1f}"


def targets_table(rows: Sequence[dict[str, Any]], mode: str) -> Table:
    """The issue's targets for one mode: measured, wanted, and met (yes, no or n/a)."""
    t = _compact(f"targets ({mode})")
    for col in ("target", "measured", "wanted", "met"):
        t.add_column(col, justify="left" if col in ("target", "met") else "right")
    for r in rows:
        met = "n/a" if r["met"] is None else ("yes" if r["met"] else "[red]no[/red]")
        t.add_row(r["target"], _measured(r), r["wanted"], met)
    return t


def sweep_table(rows: Sequence[dict[str, Any]], desc: str) -> Table:
    """Per (window_ms, max_size): throughput on bursts, latency and calls on the steady load."""
    t = _compact(f"sweep, embedding dedup: {desc}")
    for col in (
        "window\nms",
        "max\nsize",
        "burst\nreq/s",
        "burst\np99 ms",
        "steady\np50 ms",
        "steady\np99 ms",
        "steady\ncalls",
        "steady\nitems/call",
    ):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(
            f"{r['window_ms']:g}",
            str(r["max_size"]),
            f"{r['burst_throughput_rps']:,.0f}",
            f"{r['burst_latency_ms_p99']:,.0f}",
            f"{r['steady_latency_ms_p50']:,.0f}",
            f"{r['steady_latency_ms_p99']:,.0f}",
            f"{r['steady_backend_calls']:,}",
            f"{r['steady_avg_call_size']:.1f}",
        )
    return t


def _pct_fewer(items: int, base: int) -> str:
    return f"{100 * (1 - items / base):.0f}% fewer" if base else "-"


def verdict(
    reports: dict[str, dict[str, Any]], target_mode: str, target_rows: Sequence[dict[str, Any]] = ()
) -> list[str]:
    """The run's findings in words, from its own numbers: one sentence each.

    The first names the default strategy (or, when it did not run, the fastest stratabatch
    mode) against unbatched calls and the batching server; the next names a faster mode if
    there is one; then the targets, and any mode that lost, duplicated or misdelivered.
    """
    ran = {n: r for n, r in reports.items() if r.get("ran")}
    if not ran:
        return ["no mode ran."]
    ours = [n for n in ran if n.startswith("stratabatch")]
    name = (
        target_mode
        if target_mode in ran
        else max(ours or ran, key=lambda n: ran[n]["throughput_rps"])
    )
    r = ran[name]
    base, peer = ran.get(UNBATCHED), ran.get(PEER)
    parts = []
    if base is not None and name != UNBATCHED:
        parts.append(f"{_x(r.get('speedup_vs_unbatched'), 1)} unbatched")
    if peer is not None and name != PEER:
        parts.append(f"{_x(r.get('speedup_vs_peer'), 1)} the batching server")
    if base is not None and name != UNBATCHED:
        parts.append(f"{_pct_fewer(r['backend_items'], base['backend_items'])} backend items")
    parts.append(f"p99 {r['latency_ms_p99']:,.0f} ms")
    parts.append(f"{r['wrong_merges']} wrong merge{'' if r['wrong_merges'] == 1 else 's'}")
    parts.append(f"{r['lost']} lost")
    lines = [f"{name}: " + ", ".join(parts) + "."]
    fastest = max(ran, key=lambda n: ran[n]["throughput_rps"])
    top = ran[fastest]["throughput_rps"]
    # modes within the run-to-run noise of the fastest are named with it: which of two tied
    # modes came out first is chance, and a verdict should not flip between runs on it
    tied = [
        n
        for n in sorted(ran, key=lambda n: -ran[n]["throughput_rps"])
        if ran[n]["throughput_rps"] >= top * (1 - TIE)
    ]
    if fastest != name and name not in tied:
        f = ran[fastest]
        lead = fastest if len(tied) == 1 else f"{' and '.join(tied)} (within {TIE:.0%})"
        lines.append(
            f"Fastest here: {lead}, {f['throughput_rps']:,.0f} req/s "
            f"({f['throughput_rps'] / r['throughput_rps']:.2f}x {name})."
        )
    elif len(tied) > 1:
        lines.append(
            f"Fastest here, within {TIE:.0%} of each other: {', '.join(tied)} "
            f"({top:,.0f} req/s at most)."
        )
    if target_rows:
        met = [t["target"] for t in target_rows if t["met"] is True]
        missed = [t["target"] for t in target_rows if t["met"] is False]
        na = [t["target"] for t in target_rows if t["met"] is None]
        text = f"Targets: {len(met)} of {len(met) + len(missed)} met"
        if missed:
            text += f" (missed: {', '.join(missed)})"
        if na:
            text += f"; {len(na)} not applicable to this workload ({', '.join(na)})"
        lines.append(text + ".")
    bad = [n for n, b in ran.items() if _bad(b)]
    if bad:
        lines.append(f"Lost, duplicated or misdelivered outcomes in: {', '.join(bad)}.")
    return lines


def explain_lines() -> list[str]:
    """``--explain``: what each column counts."""
    return [f"{col}: {meaning}." for col, meaning in COLUMNS]


def plot_sweep(rows: Sequence[dict[str, Any]], path: str, subtitle: str) -> None:
    """Write :func:`sweep_figure` as a PNG.

    Raises:
        ImportError: matplotlib is missing (``pip install "stratabatch[plot]"``).
    """
    import matplotlib.pyplot as plt

    fig = sweep_figure(rows, subtitle)
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def sweep_figure(rows: Sequence[dict[str, Any]], subtitle: str) -> Any:
    """Three panels against window_ms, one line per max_size: throughput on the bursts, p99 and
    calls on the steady load; the x axis is marked at the windows that ran.

    Raises:
        ImportError: matplotlib is missing (``pip install "stratabatch[plot]"``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    sizes = sorted({r["max_size"] for r in rows})
    windows = sorted({r["window_ms"] for r in rows})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    panels = (
        ("burst_throughput_rps", "bursts: throughput", "req/s of busy time"),
        ("steady_latency_ms_p99", "steady load: p99 latency", "p99 latency (ms)"),
        ("steady_backend_calls", "steady load: backend calls", "backend calls"),
    )
    for ax, (key, title, ylabel) in zip(axes, panels, strict=True):
        for size in sizes:
            mine = sorted((r for r in rows if r["max_size"] == size), key=lambda r: r["window_ms"])
            ax.plot(
                [r["window_ms"] for r in mine],
                [r[key] for r in mine],
                marker="o",
                label=f"max_size {size}",
            )
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(windows))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{w:g}" for w in windows])
        ax.set_xlabel("window_ms (log scale)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"stratabatch-perf sweep: {subtitle}", fontsize=9)
    fig.tight_layout()
    return fig


def print_all(
    console: Console,
    reports: dict[str, dict[str, Any]],
    title: str,
    target_rows: Sequence[dict[str, Any]],
    target_mode: str,
    sweep: Sequence[dict[str, Any]],
    sweep_desc: str = "",
    *,
    wide: bool = False,
    explain: bool = False,
) -> None:
    """Print the modes table, its legend, the targets, the sweep and the verdict."""
    console.print(modes_table(reports, title, wide))
    skipped: dict[tuple[str, str], list[str]] = {}
    for name, r in reports.items():
        if not r.get("ran"):
            label = "engine" if name.startswith("stratabatch-engine") else name
            skipped.setdefault((label, r["skipped"]), []).append(name)
    for (label, why), names in skipped.items():
        console.print(escape(f"{label} mode unavailable: {why} (skipped: {', '.join(names)})"))
    if explain:
        console.print("\n".join(escape(line) for line in explain_lines()))
    else:
        console.print(
            "[dim]req/s: requests per second of busy time (any request outstanding). "
            "backend items: requests the backend ran. wrong: merges that served "
            "another intent's answer. lost: requests with no outcome. "
            "--explain defines every column; --wide shows them all.[/dim]"
        )
    if target_rows:
        console.print(targets_table(target_rows, target_mode))
        for r in target_rows:
            if r["met"] is None:
                console.print(escape(f"{r['target']}: {r['why']}."), style="dim")
    if sweep:
        console.print(sweep_table(sweep, sweep_desc))
    console.print()
    console.print(
        "\n".join(escape(line) for line in verdict(reports, target_mode, target_rows)), style="bold"
    )
