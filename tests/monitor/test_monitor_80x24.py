"""The dashboard at 80x24 (issue 18): the header's state, one rate window, ``r``, the peak.

Each test drives the app with Pilot at 80x24 over a block the test writes, on a clock the test
moves (``poll=False``: a refresh happens when the test calls ``poll_now()``).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap

from monitor_helpers import T0_NS, engine_name, publish

from stratabatch.ipc.counters import CountersWriter
from stratabatch.monitor.app import MonitorApp
from stratabatch.monitor.snapshot import RATE_WINDOW_S

LONG_HANDLER = "examples.fastapi_app:answer_batch"
SIZE = (80, 24)
NOW = T0_NS + 3_723_000_000_000


class Clock:
    """A wall clock in ns that the test moves."""

    def __init__(self, ns: int = NOW) -> None:
        self.ns = ns

    def __call__(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += int(seconds * 1e9)


def long_handler_block(name: str, *, max_clients: int = 8) -> CountersWriter:
    return CountersWriter.create(
        name,
        info={
            "name": name,
            "handler": LONG_HANDLER,
            "max_size": 32,
            "dedup_strategy": "hybrid",
            "max_inflight_batches": 4,
        },
        max_clients=max_clients,
        history_s=300,
        started_at_ns=T0_NS,
    )


def state_of(header: str) -> str:
    """The last word of the header line: the state the screen shows."""
    assert len(header) == SIZE[0]
    return header.split()[-1]


async def test_the_header_keeps_its_state_when_the_handler_name_is_long():
    name = engine_name()
    w = long_handler_block(name)
    try:
        publish(w)
        clock = Clock()
        app = MonitorApp(name, poll=False, chart_period=0.0, clock=clock)
        async with app.run_test(size=SIZE) as pilot:
            app.poll_now()
            await pilot.pause()
            top = app.dashboard.lines[0]
            assert state_of(top) == "live"
            assert name in top and "answer_batch" in top  # the handler is cut, from the left
            await pilot.press("p")
            assert state_of(app.dashboard.lines[0]) == "PAUSED"  # p shows, at 80 columns
            await pilot.press("p")
            assert state_of(app.dashboard.lines[0]) == "live"
            w.set("updated_at_ns", NOW - 60_000_000_000)  # no heartbeat for a minute
            app.poll_now()
            assert app.dashboard.lines[0].rstrip().endswith("STALLED 1m00s")
    finally:
        w.close()


async def test_the_state_outlasts_a_longest_engine_name():
    name = engine_name()
    name = name + "x" * (48 - len(name))  # the longest engine name there is
    w = long_handler_block(name)
    try:
        publish(w)
        app = MonitorApp(name, poll=False, chart_period=0.0, clock=Clock())
        async with app.run_test(size=SIZE) as pilot:
            app.poll_now()
            await pilot.press("p")
            top = app.dashboard.lines[0]
            assert state_of(top) == "PAUSED" and name in top
    finally:
        w.close()


KILLED_ENGINE = """
    import sys
    from stratabatch.ipc.counters import CountersWriter
    w = CountersWriter.create(sys.argv[1], info={"name": sys.argv[1], "handler": sys.argv[2]})
    w.set("total_requests", 5)
    print("ready", flush=True)
    sys.stdin.read()
"""


async def test_a_killed_engine_shows_exited_with_its_last_numbers():
    name = engine_name()
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILLED_ENGINE), name, LONG_HANDLER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        app = MonitorApp(name, poll=False, chart_period=0.0)
        async with app.run_test(size=SIZE) as pilot:
            app.poll_now()
            await pilot.pause()
            assert state_of(app.dashboard.lines[0]) == "live"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            app.poll_now()
            screen = app.dashboard.text
            assert state_of(app.dashboard.lines[0]) == "EXITED"
            assert "requests 5" in screen and "Waiting" not in screen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stdout.close()
        CountersWriter.create(name).close()  # a successor reclaims the block, then removes it


# ---------------------------------------------------------------------- rates

CLIENT_PID = 40_017


def rates_on_screen(app: MonitorApp) -> tuple[str, str, str]:
    """(req/s, batches/s) of the traffic panel and the client's req/s cell, as shown."""
    screen = app.dashboard.text
    traffic = re.search(r"req/s (\S+)  batches/s (\S+)  10s avg", screen)
    assert traffic, screen
    row = re.search(rf"│\s+{CLIENT_PID}\s+[\d,]+\s+(\S+)\s", screen)
    assert row, screen
    return traffic[1], traffic[2], row[1]


class Traffic:
    """One client sending ``rate`` requests a second in batches of 30, as the engine counts
    them; the engine's own ``requests_per_second`` is another figure (another window)."""

    def __init__(self, w: CountersWriter) -> None:
        self.w = w
        self.requests = 0
        self.errors = 0
        w.set_row("clients", 0, pid=CLIENT_PID, connected=1, connected_at_ns=NOW)

    def run(
        self,
        app: MonitorApp,
        clock: Clock,
        seconds: float,
        rate: float,
        engine_rps: float,
        errors_per_s: int = 0,
    ) -> None:
        for _ in range(round(seconds / 0.5)):
            clock.advance(0.5)
            n = round(rate * 0.5)
            self.requests += n
            self.errors += errors_per_s // 2
            with self.w.update():
                self.w.set("total_requests", self.requests)
                self.w.set("total_batches", self.requests // 30)
                self.w.set("errors", self.errors)
                self.w.set("requests_per_second", engine_rps)
            self.w.set_row("clients", 0, requests=self.requests)
            app.poll_now()


async def test_every_rate_has_one_window_and_falls_to_zero_within_it():
    name = engine_name()
    w = long_handler_block(name)
    try:
        clock = Clock()
        traffic = Traffic(w)
        app = MonitorApp(name, poll=False, chart_period=0.0, clock=clock)
        async with app.run_test(size=SIZE) as pilot:
            app.poll_now()
            await pilot.pause()
            assert "4 Clients · req/s 10s avg" in app.dashboard.text  # the window, named
            traffic.run(app, clock, 12.0, rate=600.0, engine_rps=368.8)
            # the panel and the only client's row: the same number
            assert rates_on_screen(app) == ("600.0", "20.0", "600.0")
            # traffic stops; the engine's own figure lags behind, the screen does not show it
            traffic.run(app, clock, RATE_WINDOW_S / 2, rate=0.0, engine_rps=574.4)
            assert rates_on_screen(app) == ("300.0", "10.0", "300.0")
            traffic.run(app, clock, RATE_WINDOW_S / 2, rate=0.0, engine_rps=574.4)
            assert rates_on_screen(app) == ("0.0", "0.0", "0.0")  # within the window
    finally:
        w.close()


async def test_the_panel_and_the_client_table_show_the_same_measurement():
    name = engine_name()
    w = long_handler_block(name)
    try:
        clock = Clock()
        traffic = Traffic(w)
        app = MonitorApp(name, poll=False, chart_period=3600.0, clock=clock)
        async with app.run_test(size=SIZE) as pilot:
            app.poll_now()
            traffic.run(app, clock, 12.0, rate=600.0, engine_rps=600.0)
            await pilot.press("4", "4")  # a chart refresh
            assert rates_on_screen(app) == ("600.0", "20.0", "600.0")
            traffic.run(app, clock, 2.0, rate=1200.0, engine_rps=600.0)
            assert app.rates.requests_per_s == 720.0  # measured at every refresh...
            # ...and shown with the table, at the next chart refresh: never two figures
            assert rates_on_screen(app) == ("600.0", "20.0", "600.0")
            await pilot.press("4", "4")
            assert rates_on_screen(app) == ("720.0", "24.0", "720.0")
    finally:
        w.close()


def test_a_slow_refresh_widens_the_window_it_names():
    app = MonitorApp(engine_name(), interval=30.0, poll=False)
    assert app.rates_tracker.window_s == 60.0 and app.rates.window_s == 60.0


async def test_r_resets_every_rate_it_names_on_screen():
    name = engine_name()
    w = long_handler_block(name)
    try:
        clock = Clock()
        traffic = Traffic(w)
        # charts (and the client table with them) are otherwise redrawn once an hour here
        app = MonitorApp(name, poll=False, chart_period=3600.0, clock=clock)
        async with app.run_test(size=SIZE) as pilot:
            app.poll_now()
            traffic.run(app, clock, 12.0, rate=600.0, engine_rps=600.0, errors_per_s=2)
            await pilot.press("4", "4")  # hide and show the clients: their table is redrawn
            assert rates_on_screen(app) == ("600.0", "20.0", "600.0")
            assert app.rates.grew == {"errors"}
            await pilot.press("r")
            assert rates_on_screen(app) == ("-", "-", "-")
            assert app.rates.grew == frozenset()  # the red highlight is gone too
            traffic.run(app, clock, 2.0, rate=300.0, engine_rps=600.0)
            await pilot.press("4", "4")
            assert rates_on_screen(app) == ("300.0", "10.0", "300.0")  # from the reset on
    finally:
        w.close()


# ---------------------------------------------------------------------- sparkline


async def test_the_sparkline_peak_is_the_busiest_second_shown():
    name = engine_name()
    w = long_handler_block(name)
    try:
        publish(w)
        app = MonitorApp(name, poll=False, chart_period=0.0, clock=Clock())
        async with app.run_test(size=SIZE) as pilot:
            t_s = NOW // 1_000_000_000 - 400
            seen = []
            for seconds in (30, 70, 200):  # 30 s of history, then 100 s, then 300 s
                for k in range(seconds):  # one busy second, early on: in every span shown
                    t_s += 1
                    spike = k == 10 and seconds == 30
                    w.push_second_sample(t_s=t_s, requests=202 if spike else 50 + k % 3)
                app.poll_now()
                await pilot.pause()
                screen = app.dashboard.text
                label = re.search(r"req/s, last (\S+), peak (\S+)", screen)
                assert label, screen
                seen.append(label[2])
                lines = screen.splitlines()
                at = next(i for i, line in enumerate(lines) if label[0] in line)
                chart = lines[at + 1][: SIZE[0] // 2]  # the traffic panel's half
                assert chart.count("█") == 1  # the busiest second's column, full height
            assert seen == ["202", "202", "202"]
    finally:
        w.close()
