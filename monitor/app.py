"""The live dashboard: a Textual app over one engine's counters block.

Every ``interval`` seconds the app polls a :class:`~stratabatch.monitor.snapshot.CountersSource`
(one consistent snapshot, or why there is none), measures its own rates and lays out every line
of the screen with :func:`stratabatch.monitor.draw.screen_lines`. One widget,
:class:`Dashboard`, holds those lines and repaints only the lines that differ from what it
shows: at 10 Hz with a busy engine that is the dozen lines of numbers, while the charts are
redrawn once a second. (A first version with a widget per panel part spent about 2 ms of
Textual's compositing per changed widget and used ~10% of a core at 160x48; repainting single
lines of one widget brings that down several times.)

Keys: ``q`` quit, ``p`` or space pause, ``r`` reset the rates (req/s, batches/s, the
clients' req/s and the red failure highlights start again from now), ``1``-``4`` show or
hide the panels, ``ctrl+c`` copy the selected text (a mouse drag selects the whole dashboard).
"""

from __future__ import annotations

import gc
import time

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.geometry import Region
from textual.selection import Selection
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Footer

from stratabatch.monitor import draw
from stratabatch.monitor.snapshot import (
    RATE_WINDOW_S,
    Clock,
    CountersSource,
    EngineSnapshot,
    Rates,
    RateTracker,
    Waiting,
)


class Dashboard(Widget):
    """Lines of text that repaint one by one: only the lines that changed are refreshed.

    A line arrives as pieces (a panel's line, its neighbour's); a piece already seen is not
    rendered again, and a line whose pieces are all unchanged is not touched at all.
    """

    DEFAULT_CSS = "Dashboard { width: 1fr; height: 1fr; }"
    _CACHE_LIMIT = 4096

    def __init__(self) -> None:
        super().__init__(id="dashboard")
        self._keys: list[tuple[tuple[str, tuple[object, ...]], ...]] = []
        self._strips: list[Strip] = []
        self._by_id: dict[int, tuple[Text, tuple[str, tuple[object, ...]]]] = {}
        self._piece_strips: dict[tuple[str, tuple[object, ...]], Strip] = {}
        self._styles: dict[tuple[Style, str | Style], Style] = {}
        self.repainted_lines = 0
        """Lines repainted so far (tests and the CPU budget watch it)."""

    @property
    def lines(self) -> list[str]:
        """The plain text of every line shown now."""
        return ["".join(k[0] for k in row) for row in self._keys]

    @property
    def text(self) -> str:
        """The whole screen's plain text, lines joined by newlines."""
        return "\n".join(self.lines)

    def _key(self, piece: Text) -> tuple[str, tuple[object, ...]]:
        seen = self._by_id.get(id(piece))
        if seen is not None and seen[0] is piece:
            return seen[1]
        key = (piece.plain, tuple(piece.spans))
        if len(self._by_id) > self._CACHE_LIMIT:
            self._by_id.clear()
        self._by_id[id(piece)] = (piece, key)
        return key

    def _strip(self, piece: Text, key: tuple[str, tuple[object, ...]], base: Style) -> Strip:
        strip = self._piece_strips.get(key)
        if strip is None:
            if len(self._piece_strips) > self._CACHE_LIMIT:
                self._piece_strips.clear()
            strip = self._piece_to_strip(piece, base)
            self._piece_strips[key] = strip
        return strip

    def _style(self, base: Style, style: str | Style) -> Style:
        """``base`` under ``style`` (a style name or a Style), parsed once."""
        combined = self._styles.get((base, style))
        if combined is None:
            parsed = self.app.console.get_style(style) if isinstance(style, str) else style
            combined = self._styles[(base, style)] = base + parsed
        return combined

    def _piece_to_strip(self, piece: Text, base: Style) -> Strip:
        """A piece as a strip over the widget's colours.

        The monitor's pieces are built by appending, so their spans follow each other without
        overlapping; those are cut into segments directly (several times faster than Rich's
        general renderer). Anything else goes through ``Text.render``.
        """
        plain = piece.plain
        root = self._style(base, piece.style) if piece.style else base
        segments: list[Segment] = []
        pos = 0
        for span in piece.spans:
            if span.start < pos or span.end > len(plain):
                strip = Strip(list(piece.render(self.app.console)), piece.cell_len)
                return strip.apply_style(base)
            if span.start > pos:
                segments.append(Segment(plain[pos : span.start], root))
            if span.end > span.start:
                segments.append(
                    Segment(plain[span.start : span.end], self._style(root, span.style))
                )
            pos = span.end
        if pos < len(plain):
            segments.append(Segment(plain[pos:], root))
        return Strip(segments, piece.cell_len)

    def show(self, rows: list[list[Text]]) -> None:
        """Show ``rows`` (lines as pieces), refreshing only the lines that changed."""
        width = self.size.width
        base = self.rich_style  # computed per call by Textual: once per show, not per piece
        changed: list[int] = []
        for y, pieces in enumerate(rows):
            keys = tuple(self._key(p) for p in pieces)
            if y < len(self._keys) and self._keys[y] == keys:
                continue
            strip = Strip.join([self._strip(p, k, base) for p, k in zip(pieces, keys, strict=True)])
            if y < len(self._keys):
                self._keys[y] = keys
                self._strips[y] = strip
            else:
                self._keys.append(keys)
                self._strips.append(strip)
            self.repainted_lines += 1
            changed.append(y)
        start = 0
        while start < len(changed):  # one refresh per run of adjacent lines
            end = start
            while end + 1 < len(changed) and changed[end + 1] == changed[end] + 1:
                end += 1
            self.refresh(Region(0, changed[start], width, end - start + 1))
            start = end + 1
        if len(self._keys) > len(rows):
            gone = len(self._keys) - len(rows)
            del self._keys[len(rows) :]
            del self._strips[len(rows) :]
            self.refresh(Region(0, len(rows), width, gone))

    def render_line(self, y: int) -> Strip:
        """One line of the screen."""
        if y < len(self._strips):
            return self._strips[y]
        return Strip.blank(self.size.width, self.rich_style)

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        """The selected part of the screen's text (what ctrl+c copies)."""
        return selection.extract(self.text), "\n"


class MonitorApp(App[None]):
    """The ``stratabatch-monitor`` dashboard.

    Args:
        name: The engine name to watch.
        interval: Seconds between refreshes.
        clock: Wall clock in ns (tests inject a fixed one for a fixed uptime).
        source: Where snapshots come from; a :class:`CountersSource` for ``name`` by default.
        poll: Whether to start the refresh timer (tests drive :meth:`poll_now` themselves).
        chart_period: Charts (history, histograms, the client table) and the rates shown
            are redrawn at most this often, in seconds of real time; the other numbers follow
            every refresh. 0 redraws them each time.
        freeze_gc: After the first screen, move every object alive then out of the garbage
            collector's sight (``gc.freeze()``): the app's long-lived widgets and caches are
            not traversed again by each full collection. This halves the variance of a refresh
            at 10 Hz; the command line turns it on, tests leave it off.
    """

    TITLE = "stratabatch-monitor"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("p", "pause", "Pause"),
        Binding("space", "pause", "Pause", show=False),
        Binding("r", "reset_rates", "Reset rates"),
        Binding("1", "toggle_panel('traffic')", "Traffic"),
        Binding("2", "toggle_panel('dedup')", "Dedup"),
        Binding("3", "toggle_panel('health')", "Latency"),
        Binding("4", "toggle_panel('clients')", "Clients"),
    ]

    def __init__(
        self,
        name: str = "default",
        *,
        interval: float = 0.1,
        clock: Clock = time.time_ns,
        source: CountersSource | None = None,
        poll: bool = True,
        chart_period: float = 1.0,
        freeze_gc: bool = False,
    ) -> None:
        super().__init__()
        self.engine_name = name
        self.interval = interval
        self.source = source if source is not None else CountersSource(name, clock=clock)
        # every rate on screen shares one window; a slow refresh widens it to two refreshes
        self.rates_tracker = RateTracker(max(RATE_WINDOW_S, 2.0 * interval))
        self.paused = False
        self.state: EngineSnapshot | Waiting | None = None
        self.rates = Rates(window_s=self.rates_tracker.window_s)
        """The rates of the last refresh."""
        self._shown_rates = self.rates
        self.panels = list(draw.PANEL_TITLES)
        """The panels shown, in screen order."""
        self.chart_period = chart_period
        self._freeze_gc = freeze_gc
        self._poll = poll
        self._error: str | None = None
        self._charts: draw.ChartCache = {}
        self._charts_at = -1e18
        self._charts_force = True

    def compose(self) -> ComposeResult:
        """The dashboard and the footer with the keys."""
        yield Dashboard()
        yield Footer()

    def on_mount(self) -> None:
        """Take a first snapshot and start the refresh timer."""
        self.poll_now()
        if self._poll:
            self.set_interval(self.interval, self.poll_now)
        if self._freeze_gc:
            self.call_after_refresh(self._freeze)

    def _freeze(self) -> None:
        gc.collect()
        gc.freeze()

    def on_resize(self) -> None:
        """Redraw for the new size once the layout has settled."""
        self.redraw_all()

    def redraw_all(self) -> None:
        """Redraw everything, charts included, once the layout has settled."""
        self._charts_force = True
        self.call_after_refresh(self.paint)

    @property
    def dashboard(self) -> Dashboard:
        """The widget holding the screen's lines."""
        return self.query_one(Dashboard)

    # ------------------------------------------------------------------ data

    def poll_now(self) -> None:
        """Take a snapshot (unless paused) and repaint what changed."""
        if self.paused:
            return
        try:
            state = self.source.poll()
            if isinstance(state, Waiting) and state == self.state and self._error is None:
                return  # still waiting for the same thing: the screen is already right
            if isinstance(state, EngineSnapshot):
                if (
                    not isinstance(self.state, EngineSnapshot)
                    or state.pid != self.state.pid
                    or state.started_at_ns != self.state.started_at_ns
                ):
                    self.rates_tracker.reset()  # another engine: old baselines mean nothing
                    self._charts_force = True
                self.rates = self.rates_tracker.update(state)
            self.state = state
            self._error = None
        except Exception as exc:  # the dashboard stays up, whatever the block holds
            self._error = f"monitor error: {type(exc).__name__}: {exc}"
        self.paint()

    # ------------------------------------------------------------------ drawing

    def paint(self) -> None:
        """Lay out the current state and repaint the lines that changed."""
        dash = self.dashboard
        size = dash.size
        now = time.monotonic()
        redraw = self._charts_force or now - self._charts_at >= self.chart_period
        if redraw:
            self._charts_force = False
            self._charts_at = now
            self._charts.clear()
            # the rates shown change with the charts: the traffic numbers and the client
            # table (drawn with the charts) always show the same measurement
            self._shown_rates = self.rates
        state: EngineSnapshot | Waiting | str | None = self._error or self.state
        try:
            rows = draw.screen_lines(
                state,
                self._shown_rates,
                width=size.width,
                height=size.height,
                visible=self.panels,
                paused=self.paused,
                charts=self._charts,
                redraw_charts=redraw,
            )
        except Exception as exc:  # a drawing bug shows as a message, never a traceback
            rows = draw.screen_lines(
                f"monitor error: {type(exc).__name__}: {exc}",
                self.rates,
                width=size.width,
                height=size.height,
                visible=(),
                paused=False,
                charts={},
                redraw_charts=True,
            )
        dash.show(rows)

    # ------------------------------------------------------------------ actions

    def action_pause(self) -> None:
        """Freeze (or resume) the numbers on screen."""
        self.paused = not self.paused
        if not self.paused:
            self.poll_now()
        else:
            self.paint()

    def action_reset_rates(self) -> None:
        """Drop the rate baselines: rates and highlights start again from now."""
        self.rates_tracker.reset()
        self.rates = Rates(window_s=self.rates_tracker.window_s)
        if isinstance(self.state, EngineSnapshot):
            self.rates = self.rates_tracker.update(self.state)
        self._charts_force = True  # the client table's rates are drawn with the charts
        self.paint()

    def action_toggle_panel(self, panel: str) -> None:
        """Show or hide one panel; the others share the room."""
        if panel in self.panels:
            self.panels.remove(panel)
        else:
            self.panels = [p for p in draw.PANEL_TITLES if p in self.panels or p == panel]
        self._charts_force = True
        self.paint()

    def on_unmount(self) -> None:
        """Let go of the block."""
        self.source.close()
