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
    """Per (window_ms, max_size): throughput on bursts, latency and calls on the steady load."""
    t = Table(title=f"sweep, embedding dedup: {desc}", title_justify="left")
    for col in ("window ms", "max_size", "bursts req/s", "bursts p99 ms", "steady p50 ms",
                "steady p99 ms", "steady calls", "steady items/call"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(f"{r['window_ms']:g}", str(r["max_size"]), f"{r['burst_throughput_rps']:,.0f}",
                  f"{r['burst_latency_ms_p99']:,.0f}", f"{r['steady_latency_ms_p50']:,.0f}",
                  f"{r['steady_latency_ms_p99']:,.0f}", f"{r['steady_backend_calls']:,}",
                  f"{r['steady_avg_call_size']:.1f}")
    return t


def plot_sweep(rows: Sequence[dict[str, Any]], path: str, subtitle: str) -> None:
    """Write a PNG against window_ms, one line per max_size: throughput on the bursts, p99 and
    calls on the steady load.

    Raises:
        ImportError: matplotlib is missing (``pip install "stratabatch[plot]"``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["max_size"] for r in rows})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    panels = (("burst_throughput_rps", "bursts: throughput (req/s of busy time)"),
              ("steady_latency_ms_p99", "steady load: p99 latency (ms)"),
              ("steady_backend_calls", "steady load: backend calls"))
    for ax, (key, ylabel) in zip(axes, panels, strict=True):
        for size in sizes:
            mine = sorted((r for r in rows if r["max_size"] == size),
                          key=lambda r: r["window_ms"])
            ax.plot([r["window_ms"] for r in mine], [r[key] for r in mine], marker="o",
                    label=f"max_size {size}")
        ax.set_xscale("log")
        ax.set_xlabel("window_ms")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"stratabatch-perf sweep: {subtitle}", fontsize=9)
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
