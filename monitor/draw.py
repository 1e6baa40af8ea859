"""Drawing a snapshot as Rich text: the panels' parts and the whole screen; no Textual here.

Each panel part (numbers, charts, client table) is a pure function of an
:class:`~stratabatch.monitor.snapshot.EngineSnapshot`, the monitor's own
:class:`~stratabatch.monitor.snapshot.Rates` and the room it may use.
:func:`screen_lines` lays the panels out in a grid of rounded boxes under a two-line header
and returns every screen line as pieces; the app's ``Dashboard`` repaints only the lines whose
pieces changed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence

from rich.cells import cell_len, set_cell_size
from rich.text import Text

from stratabatch.ipc.counters import similarity_bin
from stratabatch.monitor import fmt
from stratabatch.monitor.cli import model_text, options_line
from stratabatch.monitor.snapshot import EngineSnapshot, Rates, Waiting

BLOCKS = " ▁▂▃▄▅▆▇█"
"""Eighths of a cell, from empty to full."""
DIM = "grey50"
WORSE = "bold red"


def bar_rows(values: Sequence[float], height: int, top: float | None = None) -> list[str]:
    """Columns of eighth-blocks for ``values``, ``height`` rows tall, top row first.

    Args:
        values: One value per column (negative counts as 0).
        height: Rows to draw (at least 1).
        top: The value of a full column; the largest value by default.
    """
    height = max(1, height)
    values = [v if math.isfinite(v) else 0.0 for v in values]  # NaN or infinity: a damaged block
    peak = top if top is not None and math.isfinite(top) else max(values, default=0.0)
    if peak <= 0:
        return [" " * len(values) for _ in range(height)]
    levels = [min(height * 8, round(max(v, 0.0) / peak * height * 8)) for v in values]
    # a non-zero value shows at least one eighth, so that a small count is never invisible
    levels = [max(lv, 1) if v > 0 else lv for lv, v in zip(levels, values, strict=True)]
    rows = []
    for r in range(height):
        floor = (height - 1 - r) * 8
        rows.append("".join(BLOCKS[min(8, max(0, lv - floor))] for lv in levels))
    return rows


def sparkline(values: Sequence[float], width: int, height: int) -> list[str]:
    """The last ``width`` values as a sparkline ``height`` rows tall, right-aligned."""
    if width <= 0:
        return []
    tail = list(values[-width:])
    rows = bar_rows(tail, height)
    return [" " * (width - len(tail)) + row for row in rows]


Item = tuple[str, str, str]
"""A labelled value for :func:`flow`: (label, value, value style)."""


def flow(lines: Sequence[Sequence[Item]], width: int) -> list[Text]:
    """Lay out labelled values: each given line, wrapped between items where it is too wide;
    every line returned is exactly ``width`` cells."""
    out: list[Text] = []
    for items in lines:
        t = Text()
        used = 0
        for label, value, style in items:
            size = len(label) + (1 if label else 0) + len(value)
            if used and used + 2 + size > width:
                out.append(t)
                t = Text()
                used = 0
            elif used:
                t.append("  ")
                used += 2
            if label:
                t.append(label + " ", DIM)
            t.append(value, style)
            used += size
        out.append(t)
    for t in out:
        t.truncate(width, overflow="crop", pad=True)
    return out


def _columns(values: Sequence[float], width: int) -> tuple[list[float], int]:
    """Fit a per-second series into ``width`` columns: ``k`` seconds per column (at most 10),
    each column the largest of its seconds; returns the columns (newest last) and ``k``."""
    if width <= 0 or not values:
        return [], 1
    k = min(10, max(1, -(-len(values) // width)))
    tail = list(values[-width * k :])
    start = len(tail) % k
    if start:
        tail = tail[start:]
    return [max(tail[i : i + k]) for i in range(0, len(tail), k)], k


def state_label(snap: EngineSnapshot, *, paused: bool) -> tuple[str, str]:
    """The header's state and its style: ``PAUSED``, ``EXITED``, ``STALLED 5s`` or ``live``."""
    if paused:
        return " PAUSED ", "bold black on yellow"
    if not snap.alive:
        return " EXITED ", "bold white on red"
    if snap.stalled:
        return f" STALLED {fmt.duration(snap.heartbeat_age_s)} ", "bold white on red"
    return " live ", "bold green"


def _cut_left(text: str, cells: int) -> str:
    """The end of ``text`` in at most ``cells`` cells, ``…`` in front when cut."""
    if cell_len(text) <= cells:
        return text
    if cells <= 0:
        return ""
    out = ""
    for ch in reversed(text):
        if cell_len(ch + out) > cells - 1:
            break
        out = ch + out
    return "…" + out


def _cut_right(text: str, cells: int) -> str:
    """The start of ``text`` in at most ``cells`` cells, ``…`` at the end when cut."""
    if cell_len(text) <= cells:
        return text
    if cells <= 0:
        return ""
    return set_cell_size(text, cells - 1) + "…"


_HANDLER_MIN = 10
"""Fewest cells of a handler name worth showing cut (else the header leaves it out)."""


def header(snap: EngineSnapshot, *, paused: bool, width: int) -> list[Text]:
    """Two lines of ``width`` cells: engine identity and state; the key options.

    The state (see :func:`state_label`) is always shown at the right. What does not fit
    before it gives way in this order: the handler name is cut from the left (its function
    name stays) down to a few cells; then the uptime, the ``stratabatch`` label and the pid
    are left out to keep room for it; then the handler goes, and the engine name is cut last.
    """
    info = snap.info
    state, state_style = state_label(snap, paused=paused)
    room = width - cell_len(state) - 1  # one blank cell before the state
    name = str(info.get("name", snap.name))
    ran_s = (
        snap.uptime_s if snap.alive else max(0.0, (snap.updated_at_ns - snap.started_at_ns) / 1e9)
    )  # a dead engine's clock stops
    parts = {
        "brand": " stratabatch ",
        "name": f" {name}",
        "pid": f"  pid {snap.pid}",
        "up": f"  up {fmt.duration(ran_s)}",
    }
    label, handler = "  handler ", str(info.get("handler", "?"))
    for gone in ("up", "brand", "pid", None):
        left = room - sum(cell_len(p) for p in parts.values()) - cell_len(label)
        if left >= min(cell_len(handler), _HANDLER_MIN):
            handler = _cut_left(handler, left)
            break
        if gone is not None:
            del parts[gone]
    else:
        handler = ""
        parts["name"] = _cut_right(parts["name"], room)
    t = Text(no_wrap=True, overflow="crop")
    for key, text in parts.items():
        t.append(text, "bold reverse" if key == "brand" else "bold" if key == "name" else "")
    if handler:
        t.append(label)
        t.append(handler, "cyan")
    pad = width - t.cell_len - cell_len(state)
    if pad > 0:
        t.append(" " * pad)
    t.append(state, state_style)
    if t.cell_len > width:  # narrower than the state itself: keep its start
        t = Text(state, state_style, no_wrap=True, overflow="crop")
    second = Text(" " + options_line(snap, width - 1), DIM)
    for line in (t, second):
        line.truncate(width, overflow="crop", pad=True)
    return [t, second]


def window_text(rates: Rates) -> str:
    """What the rates on screen average over: ``10s avg`` (the uptime's way of writing
    seconds, short enough for the rates' line at 80 columns)."""
    return f"{fmt.duration(rates.window_s)} avg"


def traffic_numbers(snap: EngineSnapshot, rates: Rates, width: int) -> list[Text]:
    """Request and batch rates (the monitor's, over one window, named), totals, average batch
    size."""
    s = snap.stats
    return flow(
        [
            [
                ("req/s", fmt.rate(rates.requests_per_s), "bold"),
                ("batches/s", fmt.rate(rates.batches_per_s), "bold"),
                ("", window_text(rates), DIM),
            ],
            [
                ("requests", fmt.count(s.total_requests), ""),
                ("batches", fmt.count(s.total_batches), ""),
                ("avg batch", f"{s.avg_batch_size:.1f}", "bold"),
            ],
        ],
        width,
    )


def history_chart(snap: EngineSnapshot, width: int, height: int) -> Text:
    """Requests per second over the per-second ring, with its scale and time span.

    A column that covers several seconds shows the busiest of them, so the peak in the label
    is the busiest second of the span shown and the tallest column reaches it, however many
    seconds a column covers.
    """
    t = Text(no_wrap=True, overflow="crop")
    if width <= 0 or height <= 0:
        return t
    cols, k = _columns(snap.history.requests, width)
    if not cols:
        t.append("req/s: no history yet"[:width], DIM)
        return t
    label = f"req/s, last {fmt.duration(len(cols) * k)}, peak {fmt.short(max(cols))}"
    if k > 1 and len(label) + 16 <= width:
        label += f" (max of {k} s)"
    t.append(label[:width], DIM)
    for row in sparkline(cols, width, height - 1):
        t.append("\n")
        t.append(row, "cyan")
    return t


def _merge(counts: list[int], labels: list[str], fits: int) -> tuple[list[int], list[str]]:
    """Merge neighbouring buckets pairwise until at most ``fits`` remain (labels: the upper)."""
    while len(counts) > max(1, fits):
        counts = [sum(counts[i : i + 2]) for i in range(0, len(counts), 2)]
        labels = [labels[min(i + 1, len(labels) - 1)] for i in range(0, len(labels), 2)]
    return counts, labels


def _bars_with_labels(
    t: Text, counts: Sequence[int], labels: Sequence[str], col: int, height: int, style: str
) -> None:
    for r, row in enumerate(bar_rows([float(c) for c in counts], height)):
        if r:
            t.append("\n")
        t.append("".join((ch * (col - 1) + " ") if col > 1 else ch for ch in row), style)
    t.append("\n")
    t.append("".join(lab[: col - 1].ljust(col) if col > 1 else lab[:1] for lab in labels), DIM)


def batch_size_chart(snap: EngineSnapshot, width: int, height: int) -> Text:
    """Histogram of handler calls by batch size (bucket upper bounds as labels)."""
    t = Text(no_wrap=True, overflow="crop")
    if width <= 0 or height <= 0:
        return t
    h = snap.batch_size
    s = snap.stats
    t.append(f"batch size  max {s.batch_size_max}"[:width], DIM)
    if height < 3:
        return t
    t.append("\n")
    if not h.bounds or h.total == 0:
        t.append("no batches yet", DIM)
        return t
    last = max(i for i, c in enumerate(h.counts) if c)
    max_size = snap.info.get("max_size")
    if isinstance(max_size, int):
        last = max(last, min(len(h.bounds) - 1, sum(1 for b in h.bounds if b < max_size)))
    counts = list(h.counts[: last + 1])
    labels = [f"{b:g}" for b in h.bounds[: last + 1]]
    if last >= len(h.bounds):
        labels.append(f">{h.bounds[-1]:g}")
    col = max(len(lab) for lab in labels) + 1
    counts, labels = _merge(counts, labels, width // col)
    col = max(col, min(6, width // len(counts)))
    _bars_with_labels(t, counts, labels, col, height - 2, "green")
    return t


def dedup_numbers(snap: EngineSnapshot, width: int) -> list[Text]:
    """Dedup rate split into exact and near merges, coalesced work, cost saved; and, with
    reuse on, the reuse cache's row (:func:`reuse_items`)."""
    s = snap.stats
    total = s.total_requests or 1
    rows: list[list[Item]] = [
        [
            ("dedup", fmt.pct(s.dedup_rate), "bold"),
            ("exact", fmt.pct(s.exact_merges / total), ""),
            ("near", fmt.pct(s.near_merges / total), ""),
        ],
        [
            ("saved", fmt.usd(s.cost_saved_usd), "bold green"),
            ("merged", fmt.short(s.duplicates), ""),
            ("coalesced", fmt.short(s.inflight_coalesced), ""),
        ],
    ]
    return flow(rows, width) + flow(reuse_rows(snap, width), width)


def reuse_items(snap: EngineSnapshot) -> list[Item]:
    """The reuse cache at a glance, as ``--once``'s reuse line: its mode, hits (and their
    share of all requests), entries held and their bytes against their bounds, the ttl
    (one line in a 160-column terminal); nothing while reuse is off (or the engine does not
    say)."""
    info, s = snap.info, snap.stats
    mode = info.get("reuse", "off")
    if not isinstance(mode, str) or mode == "off":
        return []
    share = s.reuse_hits / s.total_requests if s.total_requests else 0.0
    return [
        ("reuse", mode, "bold"),
        ("hits", f"{fmt.short(s.reuse_hits)} ({fmt.pct(share)})", "bold green"),
        (
            "held",
            f"{fmt.short(s.reuse_entries)}/{fmt.short(_bound(info, 'reuse_max_entries'))}",
            "",
        ),
        ("bytes", f"{fmt.size(s.reuse_bytes)}/{fmt.size(_bound(info, 'reuse_max_bytes'))}", ""),
        ("ttl", fmt.seconds(_bound(info, "reuse_ttl_s")), ""),
    ]


def reuse_rows(snap: EngineSnapshot, width: int) -> list[list[Item]]:
    """The reuse cache's row laid out for ``width`` columns in at most two lines (none with
    reuse off): :func:`reuse_items` as one row where it flows into two lines (one in a wide
    panel); else two rows, ``reuse MODE  hits N (P%)`` and ``held N/MAX  BYTES/MAX  ttl T``
    (the bytes unlabelled: their unit says it); in the narrowest panels, the second row with
    single spaces and its bounds to three digits (``held 2.97k/10k 1.2M/64M ttl 60s``: at
    most 36 columns with round bounds, so a 36-column panel at 80x24 holds it; never more
    than two lines: flow crops a line at the panel's edge)."""
    items = reuse_items(snap)
    if not items or len(flow([items], width)) <= 2:
        return [items] if items else []
    info, s = snap.info, snap.stats
    head = items[:2]
    held, size = s.reuse_entries, s.reuse_bytes
    max_held, max_size = _bound(info, "reuse_max_entries"), _bound(info, "reuse_max_bytes")
    ttl = fmt.seconds(_bound(info, "reuse_ttl_s"))
    tail: list[Item] = [
        ("held", f"{fmt.short(held)}/{fmt.short(max_held)}", ""),
        ("", f"{fmt.size(size)}/{fmt.size(max_size)}", ""),
        ("ttl", ttl, ""),
    ]
    if len(flow([tail], width)) > 1:
        counts = f"{_sig3(held)}/{_sig3(max_held)} {fmt.size(size)}/{fmt.size(max_size)}"
        ttl = _ttl(_bound(info, "reuse_ttl_s"))
        terse = f"{counts} ttl {ttl}"
        if 5 + len(terse) > width:  # (extreme numbers: the ttl's unit says what it is)
            terse = f"{counts} {ttl}"
        tail = [("held", terse, "")]
    return [head, tail]


def _ttl(x: float) -> str:
    """A ttl in at most five characters: ``45s``, ``98.5s``, ``10m``, ``12.1m``, ``2h``."""
    if not math.isfinite(x) or x < 0:
        return "-"
    for unit, div, top in (("s", 1, 100), ("m", 60, 6000), ("h", 3600, 360_000)):
        if x < top:
            return f"{x / div:.3g}{unit}"
    return f"{min(x / 86400, 999):.3g}d"


def _sig3(n: float) -> str:
    """A count to three significant digits at most: ``950``, ``2.97k``, ``10k``, ``123k``."""
    text = fmt.short(n)
    if text[-1:] in ("k", "M", "G", "T"):
        value = float(text[:-1])
        text = f"{value:.3g}{text[-1]}" if value < 1000 else text
    return text


def _bound(info: Mapping[str, object], key: str) -> float:
    """A number of the engine's info, NaN when it is missing or not a number (shown as -)."""
    v = info.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return math.nan
    return float(v)


def similarity_chart(snap: EngineSnapshot, width: int, height: int) -> Text:
    """Near merges by similarity, 0.01 per bar, with the threshold as a dotted line.

    Exact merges (similarity 1.0 on equal keys) are left out: they would dwarf the near ones
    and say nothing about the threshold.
    """
    t = Text(no_wrap=True, overflow="crop")
    if width <= 0 or height <= 0:
        return t
    s = snap.stats
    thr = snap.dedup_threshold
    title = "near-merge similarity"
    if thr and len(title) + 16 <= width:
        title += f", threshold ┊ {thr:.2f}"
    t.append(title[:width], DIM)
    if height < 3:
        return t
    t.append("\n")
    hist = list(s.merge_similarity_histogram)
    if len(hist) < 101 or s.near_merges == 0:
        t.append("no near merges yet", DIM)
        return t
    hist[100] = max(0, hist[100] - s.exact_merges)
    thr_bin = similarity_bin(thr) if thr else None
    nonzero = [i for i, c in enumerate(hist) if c]
    lo = min(nonzero + ([thr_bin - 2] if thr_bin is not None else []))
    lo = max(0, min(lo, 100 - 4))
    room = width - (1 if thr_bin is not None else 0)
    col = max(1, min(6, room // (101 - lo)))
    lo = max(lo, 101 - room // col)
    bins = list(range(lo, 101))
    counts = [hist[i] for i in bins]
    if lo > 0 and any(hist[:lo]):
        counts[0] += sum(hist[:lo])  # everything below the drawn range, in the first bar
    rows = bar_rows([float(c) for c in counts], height - 2)
    split = len(bins) if thr_bin is None else max(0, min(len(bins), thr_bin - lo))
    for r, row in enumerate(rows):
        if r:
            t.append("\n")
        if thr_bin is None:
            t.append("".join(ch * col for ch in row), "magenta")
            continue
        if split:  # bars below the threshold: merges by a custom dedup_function, say
            t.append("".join(ch * col for ch in row[:split]), "red")
        t.append("┊", "yellow")
        t.append("".join(ch * col for ch in row[split:]), "magenta")
    t.append("\n")
    axis = [" "] * (len(bins) * col + (1 if thr_bin is not None else 0))

    def put(pos: int, text: str) -> None:
        for k, ch in enumerate(text):
            if 0 <= pos + k < len(axis):
                axis[pos + k] = ch

    put(len(axis) - 3, "1.0")
    thr_pos = (thr_bin - lo) * col if thr_bin is not None and thr_bin >= lo else None
    if thr_pos is None or thr_pos >= 5:
        put(0, f"{lo / 100:.2f}")
    if thr_pos is not None and thr_pos + 4 <= len(axis) - 4:
        put(thr_pos, f"{thr:.2f}")
    t.append("".join(axis)[:width], DIM)
    return t


def health_numbers(snap: EngineSnapshot, rates: Rates, width: int) -> list[Text]:
    """Latency percentiles, queue and in-flight work, window and handler model, failures."""
    s = snap.stats
    cap = snap.info.get("max_inflight_batches")
    return flow(
        [
            [
                ("p50", fmt.ms(s.latency_ms_p50), "bold"),
                ("p95", fmt.ms(s.latency_ms_p95), "bold"),
                ("p99", fmt.ms(s.latency_ms_p99), "bold"),
                ("", "ms", DIM),
            ],
            [
                ("queue", fmt.count(s.queue_depth), "bold"),
                ("in flight", f"{snap.inflight_batches}" + (f"/{cap}" if cap else ""), "bold"),
                ("clients", str(snap.clients_connected), ""),
            ],
            [("window", f"{fmt.ms(s.window_ms)} ms", "bold"), ("model", model_text(snap), "")],
            [
                (name, fmt.short(getattr(s, name)), WORSE if name in rates.grew else "")
                for name in ("errors", "timeouts", "rejected", "dropped")
            ],
        ],
        width,
    )


def latency_chart(snap: EngineSnapshot, width: int, height: int) -> Text:
    """p99 latency per second over the per-second ring."""
    t = Text(no_wrap=True, overflow="crop")
    if width <= 0 or height < 2:
        return t
    cols, k = _columns(snap.history.latency_ms_p99, width)
    if not cols:
        t.append("p99 per second: no history yet"[:width], DIM)
        return t
    label = f"p99 ms, last {fmt.duration(len(cols) * k)}, peak {fmt.ms(max(cols))}"
    t.append(label[:width], DIM)
    for row in sparkline(cols, width, height - 1):
        t.append("\n")
        t.append(row, "yellow")
    return t


_CLIENT_COLUMNS = (  # (title, width), in display order
    ("slot", 4),
    ("pid", 7),
    ("requests", 11),
    ("req/s", 7),
    ("errors", 6),
    ("timeouts", 8),
    ("connected", 9),
)
_CLIENT_PRIORITY = ("pid", "requests", "req/s", "errors", "slot", "timeouts", "connected")


def clients_table(snap: EngineSnapshot, rates: Rates, width: int, height: int) -> Text:
    """Connected clients: slot, pid, requests, req/s, errors, timeouts, connected for; the
    columns that fit the width, most useful first."""
    t = Text(no_wrap=True, overflow="crop")
    if height <= 0 or width <= 0:
        return t
    widths = dict(_CLIENT_COLUMNS)
    chosen: set[str] = set()
    used = -1
    for name in _CLIENT_PRIORITY:
        if used + 1 + widths[name] <= width:
            chosen.add(name)
            used += 1 + widths[name]
    cols = [(n, w) for n, w in _CLIENT_COLUMNS if n in chosen]
    t.append(" ".join(n.rjust(w) for n, w in cols), "bold")
    rows = snap.clients
    if not rows:
        if height > 1:
            t.append("\n")
            t.append("no client connected", DIM)
        return t
    room = height - 1
    shown = rows if len(rows) <= room else rows[: max(0, room - 1)]
    for c in shown:
        since = (
            fmt.duration((snap.taken_at_ns - c.connected_at_ns) / 1e9) if c.connected_at_ns else "-"
        )
        cells = {
            "slot": str(c.slot),
            "pid": str(c.pid),
            "requests": fmt.count(c.requests),
            "req/s": fmt.rate(rates.clients_per_s.get(c.slot)),
            "errors": fmt.short(c.errors),
            "timeouts": fmt.short(c.timeouts),
            "connected": since,
        }
        t.append("\n")
        t.append(" ".join(cells[n].rjust(w) for n, w in cols))
    if len(shown) < len(rows):
        t.append("\n")
        t.append(f"… {len(rows) - len(shown)} more", DIM)
    return t


def waiting(w: Waiting, width: int) -> Text:
    """The waiting screen: what the monitor waits for and where it looks."""
    t = Text(justify="center")
    t.append(f"Waiting for engine '{w.name}'\n\n", "bold")
    t.append("looking for its counters block at\n", DIM)
    t.append(f"{w.path}\n\n", "cyan")
    t.append(f"{w.reason}\n\n")
    t.append(f"start one with: stratabatch-engine --handler module:attr --name {w.name}\n", DIM)
    if w.engines:
        t.append("engines running now: ", DIM)
        t.append(", ".join(w.engines), "bold")
        t.append(f"  (stratabatch-monitor {w.engines[0]})\n", DIM)
    t.append("\nthis screen attaches by itself when the engine starts; q quits", DIM)
    return t


# ---------------------------------------------------------------------- the whole screen

PANEL_TITLES = {
    "traffic": "1 Traffic",
    "dedup": "2 Dedup",
    "health": "3 Latency & health",
    "clients": "4 Clients",
}
"""Panel names, in screen order, with their titles (the digit is the key that toggles it)."""
BORDER = "#5f87af"

ChartCache = dict[tuple[str, int, int], list[Text]]
"""Charts drawn at the last chart refresh, as padded lines, by (chart, width, height)."""


def _lines(text: Text, width: int, height: int) -> list[Text]:
    """``text`` as exactly ``height`` lines of exactly ``width`` cells."""
    out = []
    plain = text.plain
    parts = (
        ([text.copy()] if "\n" not in plain else text.split("\n", allow_blank=True))
        if plain
        else []
    )
    for line in parts[:height]:
        line.truncate(width, overflow="crop", pad=True)
        out.append(line)
    while len(out) < height:
        out.append(Text(" " * width))
    return out


def _side(line: Text) -> Text:
    row = Text("│ ", BORDER)
    row.append_text(line)
    row.append(" │", BORDER)
    return row


def _chart(
    cache: ChartCache,
    redraw: bool,
    key: str,
    width: int,
    height: int,
    fn: Callable[[int, int], Text],
) -> list[Text]:
    """A chart's lines with the panel's sides, kept until the next chart refresh."""
    k = (key, width, height)
    if redraw or k not in cache:
        cache[k] = [_side(line) for line in _lines(fn(width, height), width, height)]
    return cache[k]


def panel_body(
    panel: str,
    snap: EngineSnapshot,
    rates: Rates,
    width: int,
    height: int,
    charts: ChartCache,
    redraw: bool,
) -> list[Text]:
    """The inside of one panel with its sides: its numbers on top, its charts below."""
    if panel == "clients":
        # refreshed with the charts (its rates are averages over the rate window), and at
        # once when a client comes or goes
        members = "clients:" + ",".join(f"{c.slot}/{c.pid}" for c in snap.clients)
        return _chart(
            charts, redraw, members, width, height, lambda w, h: clients_table(snap, rates, w, h)
        )
    if panel == "traffic":
        nums = traffic_numbers(snap, rates, width)
    elif panel == "dedup":
        nums = dedup_numbers(snap, width)
    else:
        nums = health_numbers(snap, rates, width)
    top = [_side(line) for line in nums[:height]]
    room = height - len(top)
    if panel == "traffic":
        first = room // 2
        parts = [
            _chart(charts, redraw, "history", width, first, lambda w, h: history_chart(snap, w, h)),
            _chart(
                charts,
                redraw,
                "batch",
                width,
                room - first,
                lambda w, h: batch_size_chart(snap, w, h),
            ),
        ]
    elif panel == "dedup":
        parts = [
            _chart(
                charts, redraw, "similarity", width, room, lambda w, h: similarity_chart(snap, w, h)
            )
        ]
    else:
        parts = [
            _chart(charts, redraw, "latency", width, room, lambda w, h: latency_chart(snap, w, h))
        ]
    out = top
    for part in parts:
        out += part
    return out


@functools.lru_cache(maxsize=64)
def _borders(title: str, width: int) -> tuple[Text, Text]:
    label = f" {title} "
    top = Text("╭─", BORDER)
    top.append(label[: max(0, width - 4)], "bold")
    top.append("─" * max(0, width - 3 - len(label)) + "╮", BORDER)
    top.truncate(width, overflow="crop", pad=True)
    return top, Text("╰" + "─" * max(0, width - 2) + "╯", BORDER)


@functools.lru_cache(maxsize=64)
def _blank(width: int) -> Text:
    return Text(" " * width)


def _box(title: str, body: list[Text], width: int) -> list[Text]:
    """Top and bottom borders of ``width`` cells around ``body`` (lines with their sides).

    The borders are the same objects from one refresh to the next (never modified), so the
    dashboard recognises them without comparing their text.
    """
    top, bottom = _borders(title, width)
    return [top, *body, bottom]


def layout(visible: Sequence[str], width: int, height: int) -> list[tuple[str, int, int, int, int]]:
    """Where each visible panel goes: (panel, x, y, width, height) in a grid of two columns;
    an odd last panel spans both."""
    n = len(visible)
    if n == 0 or width < 8 or height < 3:
        return []
    rows = (n + 1) // 2
    out = []
    for i, panel in enumerate(visible):
        r, c = divmod(i, 2)
        y = r * (height // rows)
        h = height // rows if r < rows - 1 else height - y
        if n == 1 or (i == n - 1 and n % 2):
            out.append((panel, 0, y, width, h))
        else:
            left = width // 2
            out.append((panel, 0 if c == 0 else left, y, left if c == 0 else width - left, h))
    return out


Row = list[Text]
"""One screen line as pieces side by side (a panel's line, the next panel's line...)."""


def screen_lines(
    state: EngineSnapshot | Waiting | str | None,
    rates: Rates,
    *,
    width: int,
    height: int,
    visible: Sequence[str],
    paused: bool,
    charts: ChartCache,
    redraw_charts: bool,
) -> list[Row]:
    """Every line of the dashboard above the footer, as pieces whose widths add up to
    ``width``. Charts come from ``charts`` (the same objects until the next chart refresh),
    so a screen that differs only in a few numbers differs only in a few pieces.

    Args:
        state: A snapshot, why there is none, or an error message.
        rates: The monitor's rates for the snapshot.
        width: Screen width.
        height: Lines available.
        visible: The panels shown, in screen order.
        paused: Whether refreshing is paused (shown in the header).
        charts: Charts kept between calls; refreshed when ``redraw_charts``.
        redraw_charts: Draw the charts anew (else reuse those of the same size).
    """
    if width <= 0 or height <= 0:
        return []
    if not isinstance(state, EngineSnapshot):
        if isinstance(state, Waiting):
            body = waiting(state, width)
        else:
            body = Text(state or "starting…", "bold red" if state else DIM, justify="center")
        msg = body.split("\n", allow_blank=True)
        pad = max(0, (height - len(msg)) // 2)
        lines = [Text(" " * width) for _ in range(pad)]
        for m in msg:
            m = m.copy()
            m.align("center", width)
            lines.append(m)
        return [[line] for line in _lines(Text("\n").join(lines), width, height)]
    snap = state
    out: list[Row] = [[line] for line in header(snap, paused=paused, width=width)[:height]]
    body_h = height - len(out)
    grid: list[Row] = [[] for _ in range(body_h)]
    used = [0] * body_h
    for panel, x, y, w, h in layout(visible, width, body_h):
        if h < 3 or w < 6:
            continue
        inner = panel_body(panel, snap, rates, w - 4, h - 2, charts, redraw_charts)
        title = PANEL_TITLES[panel]
        if panel == "clients" and len(title) + 20 <= w:
            title += f" · req/s {window_text(rates)}"
        for dy, line in enumerate(_box(title, inner, w)):
            row = grid[y + dy]
            if used[y + dy] < x:
                row.append(_blank(x - used[y + dy]))
            row.append(line)
            used[y + dy] = x + w
    for row, n in zip(grid, used, strict=True):
        if n < width:
            row.append(_blank(width - n))
    return out + grid
