"""The live dashboard: a Textual app over one engine's counters block.

Every ``interval`` seconds the app polls a :class:`~stratabatch.monitor.snapshot.CountersSource`
(one consistent snapshot, or why there is none), measures its own rates, draws each panel's text
with :mod:`stratabatch.monitor.draw` and hands it to its widget, which repaints only when the
text differs from what it shows. Charts change once a second at most, so a refresh usually
repaints a few lines of numbers.

Keys: ``q`` quit, ``p`` or space pause, ``r`` reset the rate baselines, ``1``-``4`` show or
hide the panels.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical
from textual.widgets import Footer, Static

from stratabatch.monitor import draw
from stratabatch.monitor.snapshot import (
    Clock,
    CountersSource,
    EngineSnapshot,
    Rates,
    RateTracker,
    Waiting,
)


class Cell(Static):
    """A piece of text that repaints only when given different text."""

    DEFAULT_CSS = "Cell { height: 1fr; text-wrap: nowrap; text-overflow: clip; }"

    def __init__(self, *, id: str, classes: str = "") -> None:  # noqa: A002
        super().__init__("", id=id, classes=classes, markup=False)
        self._shown: tuple[str, tuple[object, ...]] | None = None
        self.paints = 0
        """How many times the cell was repainted (tests and the CPU budget watch it)."""

    @property
    def text(self) -> str:
        """The plain text shown now."""
        return self._shown[0] if self._shown else ""

    def show(self, text: Text) -> None:
        """Show ``text`` unless it is what the cell already shows."""
        key = (text.plain, tuple(text.spans))
        if key != self._shown:
            # a cell sized by its content needs a new layout when its line count changes
            relayout = self._shown is None or key[0].count("\n") != self._shown[0].count("\n")
            self._shown = key
            self.paints += 1
            self.update(text, layout=relayout)


class Panel(Vertical):
    """A bordered panel holding cells; ``1``-``4`` toggle it."""

    DEFAULT_CSS = """
    Panel { border: round $primary-darken-1; border-title-color: $text; padding: 0 1; }
    """


PANELS = ("traffic", "dedup", "health", "clients")


class MonitorApp(App[None]):
    """The ``stratabatch-monitor`` dashboard.

    Args:
        name: The engine name to watch.
        interval: Seconds between refreshes.
        clock: Wall clock in ns (tests inject a fixed one for a fixed uptime).
        source: Where snapshots come from; a :class:`CountersSource` for ``name`` by default.
        poll: Whether to start the refresh timer (tests drive :meth:`poll_now` themselves).
        chart_period: Charts (history, histograms) are redrawn at most this often, in
            seconds of real time; the numbers follow every refresh. 0 redraws them each time.
    """

    TITLE = "stratabatch-monitor"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    Screen { layout: vertical; }
    #header { height: 2; width: 1fr; }
    #body { layout: grid; grid-size: 2 2; height: 1fr; }
    #waiting { height: 1fr; content-align: center middle; display: none; }
    .nums { height: auto; }
    #client-table { height: auto; }
    #health-nums { height: auto; }
    """
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("p", "pause", "Pause"),
        Binding("space", "pause", "Pause", show=False),
        Binding("r", "reset_rates", "Reset rates"),
        Binding("1", "toggle('traffic')", "Traffic"),
        Binding("2", "toggle('dedup')", "Dedup"),
        Binding("3", "toggle('health')", "Health"),
        Binding("4", "toggle('clients')", "Clients"),
    ]

    def __init__(self, name: str = "default", *, interval: float = 0.1,
                 clock: Clock = time.time_ns, source: CountersSource | None = None,
                 poll: bool = True, chart_period: float = 1.0) -> None:
        super().__init__()
        self.engine_name = name
        self.interval = interval
        self.source = source if source is not None else CountersSource(name, clock=clock)
        self.rates_tracker = RateTracker()
        self.paused = False
        self.state: EngineSnapshot | Waiting | None = None
        self.rates = Rates()
        self._poll = poll
        self._error: str | None = None
        self.chart_period = chart_period
        self._charts_at = -1e18
        self._charts_force = True

    def compose(self) -> ComposeResult:
        """The header, the four panels (or the waiting screen) and the footer."""
        yield Cell(id="header")
        with Container(id="body"):
            with Panel(id="traffic"):
                yield Cell(id="traffic-nums", classes="nums")
                yield Cell(id="history")
                yield Cell(id="batch-sizes")
            with Panel(id="dedup"):
                yield Cell(id="dedup-nums", classes="nums")
                yield Cell(id="similarity")
            with Panel(id="health"):
                yield Cell(id="health-nums", classes="nums")
                yield Cell(id="latency")
            with Panel(id="clients"):
                yield Cell(id="client-table")
        yield Cell(id="waiting")
        yield Footer()

    def on_mount(self) -> None:
        """Title the panels, take a first snapshot and start the refresh timer."""
        for pid, title in zip(PANELS, ("1 Traffic", "2 Dedup", "3 Latency & health",
                                       "4 Clients"), strict=True):
            self.query_one(f"#{pid}", Panel).border_title = title
        self.poll_now()
        if self._poll:
            self.set_interval(self.interval, self.poll_now)

    def on_resize(self) -> None:
        """Redraw for the new size once the layout has settled."""
        self.redraw_all()

    def redraw_all(self) -> None:
        """Redraw everything, charts included, once the layout has settled."""
        self._charts_force = True
        self.call_after_refresh(self.paint)

    # ------------------------------------------------------------------ data

    def poll_now(self) -> None:
        """Take a snapshot (unless paused) and repaint what changed."""
        if self.paused:
            return
        try:
            state = self.source.poll()
            if isinstance(state, EngineSnapshot):
                self.rates = self.rates_tracker.update(state)
            else:
                self.rates_tracker.reset()
            became_live = isinstance(state, EngineSnapshot) and not isinstance(
                self.state, EngineSnapshot)
            self.state = state
            self._error = None
        except Exception as exc:  # the dashboard stays up, whatever the block holds
            self._error = f"monitor error: {type(exc).__name__}: {exc}"
            became_live = False
        self.paint()
        if became_live:  # the panels get their sizes only after this layout
            self.redraw_all()

    # ------------------------------------------------------------------ drawing

    def _cell(self, cid: str) -> Cell:
        return self.query_one(f"#{cid}", Cell)

    def paint(self) -> None:
        """Draw the current state into the cells (each repaints only on a change)."""
        state = self.state
        body = self.query_one("#body")
        waiting = self._cell("waiting")
        header = self._cell("header")
        live = self._error is None and isinstance(state, EngineSnapshot)
        for widget, shown in ((body, live), (header, live), (waiting, not live)):
            if widget.display != shown:  # setting the same value would still relayout
                widget.display = shown
        if not live:
            if self._error is not None:
                text = Text(self._error, style="bold red", justify="center")
            elif isinstance(state, Waiting):
                text = draw.waiting(state, waiting.size.width)
            else:
                text = Text("starting…", justify="center")
            waiting.show(text)
            return
        assert isinstance(state, EngineSnapshot)
        snap, rates = state, self.rates
        header.show(draw.header(snap, paused=self.paused, width=self.size.width))
        panels = {p: self.query_one(f"#{p}", Panel).display for p in PANELS}
        drawers: list[tuple[str, str, Callable[[int, int], Text]]] = [
            ("traffic", "traffic-nums", lambda w, h: draw.traffic_numbers(snap, rates, w)),
            ("dedup", "dedup-nums", lambda w, h: draw.dedup_numbers(snap, w)),
            ("health", "health-nums", lambda w, h: draw.health_numbers(snap, rates, w)),
            ("clients", "client-table", lambda w, h: draw.clients_table(
                snap, rates, w, self.query_one("#clients", Panel).content_size.height)),
        ]
        now = time.monotonic()
        if self._charts_force or now - self._charts_at >= self.chart_period:
            self._charts_force = False
            self._charts_at = now
            drawers += [
                ("traffic", "history", lambda w, h: draw.history_chart(snap, w, h)),
                ("traffic", "batch-sizes", lambda w, h: draw.batch_size_chart(snap, w, h)),
                ("dedup", "similarity", lambda w, h: draw.similarity_chart(snap, w, h)),
                ("health", "latency", lambda w, h: draw.latency_chart(snap, w, h)),
            ]
        for panel, cid, fn in drawers:
            if panels[panel]:
                cell = self._cell(cid)
                size = cell.content_size
                cell.show(fn(size.width, size.height))

    # ------------------------------------------------------------------ actions

    def action_pause(self) -> None:
        """Freeze (or resume) the numbers on screen."""
        self.paused = not self.paused
        self._charts_force = True
        if not self.paused:
            self.poll_now()
        else:
            self.paint()

    def action_reset_rates(self) -> None:
        """Drop the rate baselines: rates and highlights start again from now."""
        self.rates_tracker.reset()
        self.rates = Rates()
        if isinstance(self.state, EngineSnapshot):
            self.rates = self.rates_tracker.update(self.state)
        self.paint()

    def action_toggle(self, panel: str) -> None:
        """Show or hide one panel; the others share the room."""
        widget = self.query_one(f"#{panel}", Panel)
        widget.display = not widget.display
        shown = [self.query_one(f"#{p}", Panel) for p in PANELS]
        shown = [w for w in shown if w.display]
        body = self.query_one("#body")
        cols = 1 if len(shown) <= 1 else 2
        body.styles.grid_size_columns = cols
        body.styles.grid_size_rows = max(1, (len(shown) + 1) // 2)
        for i, w in enumerate(shown):
            w.styles.column_span = 2 if (cols == 2 and len(shown) % 2 and i == len(shown) - 1) \
                else 1
        self.redraw_all()

    def on_unmount(self) -> None:
        """Let go of the block."""
        self.source.close()
