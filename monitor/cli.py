"""``stratabatch-monitor``: the live dashboard, or one snapshot as a table or JSON.

::

    stratabatch-monitor [NAME] [--interval 0.1]     the Textual dashboard (q quits)
    stratabatch-monitor [NAME] --once               one plain-text table, then exit
    stratabatch-monitor [NAME] --json               one JSON object, then exit
    stratabatch-monitor [NAME] --prometheus PORT    serve Prometheus metrics until Ctrl-C

``--once`` and ``--json`` never import Textual. Their exit status tells a health check what
they found (:data:`EXIT_STATUSES`): 0 the engine runs, 1 no engine of that name, 3 the engine
has exited (killed: its block is left behind), 4 it runs but has stopped updating, 5 the block
cannot be read. Anything but 0 also prints one line to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from stratabatch.cliargs import CliParser
from stratabatch.ipc.errors import SegmentNotFoundError
from stratabatch.monitor import fmt
from stratabatch.monitor.snapshot import (
    RATE_WINDOW_S,
    STALL_AFTER_S,
    EngineSnapshot,
    MidUpdateError,
    list_engines,
    read_snapshot,
    shm_path,
)

EXIT_RUNNING = 0
"""``--once`` / ``--json``: the engine runs and updates its block."""
EXIT_NO_ENGINE = 1
"""No engine of that name: no counters block exists (it never ran, or exited cleanly)."""
EXIT_USAGE = 2
"""Bad arguments (argparse's status)."""
EXIT_DEAD = 3
"""The block's engine has exited without removing it (killed); the snapshot is its last state."""
EXIT_STALLED = 4
"""The engine process exists but has not updated its block for :data:`STALL_AFTER_S` seconds."""
EXIT_UNREADABLE = 5
"""A block exists but cannot be read: damaged, foreign, or of another layout version."""
EXIT_STATUSES = {
    EXIT_RUNNING: "running",
    EXIT_NO_ENGINE: "no such engine",
    EXIT_USAGE: "bad arguments",
    EXIT_DEAD: "engine dead",
    EXIT_STALLED: "engine stalled",
    EXIT_UNREADABLE: "unreadable block",
}
"""Every exit status of ``--once`` and ``--json``, and what it means."""


def options_line(snap: EngineSnapshot, width: int = 1000) -> str:
    """The engine's key options in one line: window, max_size, strategy, threshold.

    The adaptive window's range and target are left out when the line would exceed ``width``.
    """
    info = snap.info
    parts = [f"window {fmt.ms(snap.stats.window_ms)} ms"]
    if info.get("adaptive"):
        lo, hi = _number(info.get("min_window_ms")), _number(info.get("max_window_ms"))
        tgt = _number(info.get("target_latency_ms"))
        extra = []
        if lo is not None and hi is not None:
            extra.append(f"{lo:g}-{hi:g}")
        if tgt is not None:
            extra.append(f"target {tgt:g}")
        parts[0] += " (adaptive" + (" " + ", ".join(extra) if extra else "") + ")"
    if "max_size" in info:
        parts.append(f"max_size {info['max_size']}")
    if "dedup_strategy" in info:
        parts.append(f"strategy {info['dedup_strategy']}")
    if snap.dedup_threshold:
        parts.append(f"threshold {snap.dedup_threshold:.2f}")
    line = "  ".join(parts)
    if len(line) > width and info.get("adaptive"):
        parts[0] = f"window {fmt.ms(snap.stats.window_ms)} ms (adaptive)"
        line = "  ".join(parts)
    return line


def _number(value: object) -> float | None:
    """An option of the engine's ``info`` as a number, or None when it is not one."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def model_text(snap: EngineSnapshot) -> str:
    """The fitted handler cost model, ``a + b*n ms``, or why there is none."""
    a, b = snap.stats.adaptive_a_ms, snap.stats.adaptive_b_ms
    if a == 0.0 and b == 0.0:
        return "not fitted yet" if snap.info.get("adaptive") else "none (adaptive off)"
    return f"{fmt.ms(a)} + {fmt.ms(b)}*n ms"


def reuse_lines(snap: EngineSnapshot) -> list[str]:
    """The reuse cache's line (``reuse="exact"``): hits, entries and bytes against their
    bounds, the ttl; none while reuse is off."""
    info, s = snap.info, snap.stats
    if info.get("reuse", "off") == "off":
        return []
    share = s.reuse_hits / s.total_requests if s.total_requests else 0.0
    near = f" near {fmt.count(s.reuse_near_hits)}" if info["reuse"] == "near" else ""
    return [
        f"reuse     {info['reuse']}  hits {fmt.count(s.reuse_hits)} ({fmt.pct(share)}){near}  "
        f"entries {fmt.count(s.reuse_entries)}/{fmt.count(info.get('reuse_max_entries', 0))}  "
        f"bytes {fmt.count(s.reuse_bytes)}/{fmt.count(info.get('reuse_max_bytes', 0))}  "
        f"ttl {fmt.duration(_number(info.get('reuse_ttl_s')) or 0.0)}"
    ]


def render_once(snap: EngineSnapshot) -> str:
    """A plain-text table of one snapshot (what ``--once`` prints)."""
    s = snap.stats
    info = snap.info
    state = "running" if snap.alive else "EXITED (stale block)"
    if snap.stalled:
        state = f"STALLED (no update for {fmt.duration(snap.heartbeat_age_s)})"
    max_inflight = info.get("max_inflight_batches")
    inflight = f"{snap.inflight_batches}" + (f"/{max_inflight}" if max_inflight else "")
    exact_rate = s.exact_merges / s.total_requests if s.total_requests else 0.0
    near_rate = s.near_merges / s.total_requests if s.total_requests else 0.0
    lines = [
        f"engine {info.get('name', snap.name)}  pid {snap.pid}  up {fmt.duration(snap.uptime_s)}"
        f"  {state}  handler {info.get('handler', '?')}",
        f"options   {options_line(snap)}",
        "",
        f"requests  {fmt.count(s.total_requests)}  req/s {fmt.rate(s.requests_per_second)} "
        f"({fmt.duration(RATE_WINDOW_S)} avg)  batches {fmt.count(s.total_batches)}  "
        f"avg batch {s.avg_batch_size:.1f} (max {s.batch_size_max})",
        f"unique    {fmt.count(s.unique_requests)}  duplicates {fmt.count(s.duplicates)} "
        f"({fmt.pct(s.dedup_rate)}: exact {fmt.pct(exact_rate)}, near {fmt.pct(near_rate)})  "
        f"coalesced {fmt.count(s.inflight_coalesced)}",
        *reuse_lines(snap),
        f"saved     {fmt.usd(s.cost_saved_usd)}",
        f"latency   p50 {fmt.ms(s.latency_ms_p50)}  p95 {fmt.ms(s.latency_ms_p95)}  "
        f"p99 {fmt.ms(s.latency_ms_p99)} ms",
        f"queue     {fmt.count(s.queue_depth)}  in flight {inflight}  "
        f"clients {snap.clients_connected}",
        f"model     {model_text(snap)}",
        f"failures  errors {fmt.count(s.errors)}  timeouts {fmt.count(s.timeouts)}  "
        f"rejected {fmt.count(s.rejected)}  dropped {fmt.count(s.dropped)}",
        "",
        f"{'slot':>4} {'pid':>8} {'requests':>12} {'errors':>8} {'timeouts':>8} {'connected':>10}",
    ]
    for c in snap.clients:
        since = (
            fmt.duration((snap.taken_at_ns - c.connected_at_ns) / 1e9) if c.connected_at_ns else "-"
        )
        lines.append(
            f"{c.slot:>4} {c.pid:>8} {fmt.count(c.requests):>12} "
            f"{fmt.count(c.errors):>8} {fmt.count(c.timeouts):>8} {since:>10}"
        )
    if not snap.clients:
        lines.append("  (no client connected)")
    return "\n".join(lines)


def _not_found(name: str) -> str:
    others = [n for n in list_engines() if n != name]
    hint = f"; engines found: {', '.join(others)}" if others else ""
    return f"stratabatch-monitor: no engine named {name!r} (looked for {shm_path(name)}){hint}"


def _one_snapshot(name: str, as_json: bool) -> int:
    """Print one snapshot of engine ``name`` (or why there is none); the exit status."""
    try:
        snap = read_snapshot(name)
    except SegmentNotFoundError:
        print(_not_found(name), file=sys.stderr)
        return EXIT_NO_ENGINE
    except MidUpdateError as exc:
        print(f"stratabatch-monitor: cannot read engine {name!r}: {exc}", file=sys.stderr)
        return EXIT_STALLED if exc.alive else EXIT_DEAD
    except Exception as exc:  # any block contents: one line, never a traceback
        print(f"stratabatch-monitor: cannot read engine {name!r}: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        text = (
            json.dumps(snap.to_json(), indent=2, allow_nan=False) if as_json else render_once(snap)
        )
    except Exception as exc:  # a value no engine writes: say so in one line
        print(
            f"stratabatch-monitor: cannot show engine {name!r}: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return EXIT_UNREADABLE
    print(text)
    if snap.status == "exited":
        print(
            f"stratabatch-monitor: engine {name!r} (pid {snap.pid}) is not running; its "
            "counters block was left behind by a run that did not shut down (killed?)",
            file=sys.stderr,
        )
        return EXIT_DEAD
    if snap.status == "stalled":
        print(
            f"stratabatch-monitor: engine {name!r} (pid {snap.pid}) has not updated its "
            f"counters for {fmt.duration(snap.heartbeat_age_s)} (more than "
            f"{STALL_AFTER_S:g} s)",
            file=sys.stderr,
        )
        return EXIT_STALLED
    return EXIT_RUNNING


def _interval(text: str) -> float:
    value = float(text)
    if not 0.02 <= value <= 60.0:
        raise argparse.ArgumentTypeError(f"must be in [0.02, 60] seconds, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``stratabatch-monitor``."""
    ap = CliParser(
        prog="stratabatch-monitor",
        description="Watch a running stratabatch engine: live dashboard, or one snapshot.",
        exit_statuses=EXIT_STATUSES,
        exit_title="exit status of --once and --json",
    )
    ap.add_argument(
        "name",
        nargs="?",
        default="default",
        metavar="NAME",
        help="engine name, as given to stratabatch-engine --name (default: default)",
    )
    ap.add_argument(
        "--interval",
        type=_interval,
        default=0.1,
        metavar="SECONDS",
        help="refresh period of the dashboard, 0.02-60 s (default: 0.1)",
    )
    ap.add_argument("--once", action="store_true", help="print one snapshot as a table and exit")
    ap.add_argument("--json", action="store_true", help="print one snapshot as JSON and exit")
    ap.add_argument(
        "--prometheus",
        type=int,
        metavar="PORT",
        help="serve the engine's counters as Prometheus metrics at "
        "http://HOST:PORT/metrics, headless, until Ctrl-C (needs pip install "
        "'stratabatch[metrics]'; exit 0 on Ctrl-C, 4 if the port cannot be bound)",
    )
    ap.add_argument(
        "--prometheus-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address --prometheus binds (default: 127.0.0.1, this machine only)",
    )
    args = ap.parse_args(argv)
    try:
        shm_path(args.name)
    except ValueError as exc:
        ap.error(str(exc))
    if args.prometheus is not None:
        if args.once or args.json:
            ap.error("--prometheus cannot be combined with --once or --json")
        from stratabatch.monitor.prometheus import serve

        return serve(args.name, args.prometheus, args.prometheus_host)
    if args.once or args.json:
        return _one_snapshot(args.name, args.json)
    from stratabatch.monitor.app import MonitorApp  # Textual loads only for the dashboard

    MonitorApp(args.name, interval=args.interval, freeze_gc=True).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
