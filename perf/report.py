"""What a run prints and writes: the modes table, the targets, the sweep table and its plot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def modes_table(reports: dict[str, dict[str, Any]], title: str) -> Table:
    """One row per mode: throughput and its ratios, latency, backend use, dedup, exactly-once."""
    t = Table(title=title, title_justify="left")
    for col in ("mode", "req/s", "vs unbatched", "vs peer", "p50 ms", "p95 ms", "p99 ms",
                "calls", "items", "cost $", "caught / catchable / existing", "wrong",
                "lost / dup", "bound %"):
        t.add_column(col, justify="left" if col == "mode" else "right")
    for name, r in reports.items():
        if not r.get("ran"):
            continue
        bad = r["lost"] or r["duplicated"] or r["stray"]
        t.add_row(
            name, f"{r['throughput_rps']:,.0f}", _x(r.get("speedup_vs_unbatched")),
            _x(r.get("speedup_vs_peer")), f"{r['latency_ms_p50']:,.0f}",
            f"{r['latency_ms_p95']:,.0f}", f"{r['latency_ms_p99']:,.0f}",
            f"{r['backend_calls']:,}", f"{r['backend_items']:,}", f"{r['cost_usd']:.2f}",
            f"{r['dups_caught']:,} / {r['dups_catchable']:,} / {r['dups_existing']:,}",
            f"{r['wrong_merges']}",
            ("[red]" if bad else "") + f"{r['lost']} / {r['duplicated']}",
            f"{r['concurrency_bound_pct']:.0f}",
        )
    return t


def targets_table(rows: Sequence[dict[str, Any]], mode: str) -> Table:
    """The issue's targets for one mode, measured, with a verdict each."""
    t = Table(title=f"targets ({mode})", title_justify="left")
    for col in ("target", "measured", "wanted", "met"):
        t.add_column(col)
    for r in rows:
        v = r["measured"]
        shown = "-" if v is None else (f"{v:,.1f}" if isinstance(v, float) else str(v))
        t.add_row(r["target"], shown, r["wanted"], "yes" if r["met"] else "[red]no[/red]")
    return t


def sweep_table(rows: Sequence[dict[str, Any]], desc: str) -> Table:
    """Throughput and p99 for each (window_ms, max_size) of the sweep."""
    t = Table(title=f"sweep: stratabatch embedding, window_ms x max_size; {desc}",
              title_justify="left")
    for col in ("window ms", "max_size", "req/s", "p50 ms", "p99 ms", "calls", "items",
                "bound %"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(f"{r['window_ms']:g}", str(r["max_size"]), f"{r['throughput_rps']:,.0f}",
                  f"{r['latency_ms_p50']:,.0f}", f"{r['latency_ms_p99']:,.0f}",
                  f"{r['backend_calls']:,}", f"{r['backend_items']:,}",
                  f"{r['concurrency_bound_pct']:.0f}")
    return t


def plot_sweep(rows: Sequence[dict[str, Any]], path: str, subtitle: str) -> None:
    """Write a PNG: throughput and p99 against window_ms, one line per max_size.

    Raises:
        ImportError: matplotlib is missing (``pip install "stratabatch[plot]"``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["max_size"] for r in rows})
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for size in sizes:
        mine = sorted((r for r in rows if r["max_size"] == size), key=lambda r: r["window_ms"])
        w = [r["window_ms"] for r in mine]
        ax1.plot(w, [r["throughput_rps"] for r in mine], marker="o", label=f"max_size {size}")
        ax2.plot(w, [r["latency_ms_p99"] for r in mine], marker="o", label=f"max_size {size}")
    for ax, ylabel in ((ax1, "throughput (req/s of busy time)"), (ax2, "p99 latency (ms)")):
        ax.set_xscale("log")
        ax.set_xlabel("window_ms")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    ax1.set_ylim(bottom=0)
    ax2.set_ylim(bottom=0)
    fig.suptitle(f"stratabatch-perf sweep: {subtitle}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_all(console: Console, reports: dict[str, dict[str, Any]], title: str,
              target_rows: Sequence[dict[str, Any]], target_mode: str,
              sweep: Sequence[dict[str, Any]], sweep_desc: str = "") -> None:
    """Print the modes table, the targets and the sweep (when there is one)."""
    console.print(modes_table(reports, title))
    skipped: dict[tuple[str, str], list[str]] = {}
    for name, r in reports.items():
        if not r.get("ran"):
            label = "engine" if name.startswith("stratabatch-engine") else name
            skipped.setdefault((label, r["skipped"]), []).append(name)
    for (label, why), names in skipped.items():
        console.print(escape(f"{label} mode unavailable: {why} (skipped: {', '.join(names)})"))
    console.print("[dim]req/s: requests per second of time with any request outstanding; "
                  "bound %: shortest time the backend's concurrency allows for the items run, "
                  "over that time; caught: merges whose answer had the same intent[/dim]")
    if target_rows:
        console.print(targets_table(target_rows, target_mode))
    if sweep:
        console.print(sweep_table(sweep, sweep_desc))
