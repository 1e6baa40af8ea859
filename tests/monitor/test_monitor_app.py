"""The Textual dashboard, driven with Pilot over a counters block the test writes.

The app runs without its refresh timer (``poll=False``): each test calls ``poll_now()`` when
it wants a refresh, so what is on screen is exactly the block at that moment.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import textwrap

import pytest
from monitor_helpers import T0_NS, engine_name, publish

from stratabatch.ipc.counters import CountersWriter
from stratabatch.monitor.app import MonitorApp

FIXED_NOW = T0_NS + 3_723_000_000_000  # 1h02m03s after the start


def app_for(name: str, **kw) -> MonitorApp:
    return MonitorApp(name, poll=False, chart_period=0.0, clock=lambda: FIXED_NOW, **kw)


async def refresh(app: MonitorApp, pilot) -> str:
    app.poll_now()
    await pilot.pause()
    return app.dashboard.text


async def test_numbers_on_screen_are_the_blocks(block):
    name, w = block
    publish(w)
    app = app_for(name)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await refresh(app, pilot)
        assert f"{name}  pid {os.getpid()}  up 1h02m  handler tests.app:handle" in screen
        assert "window 48.5 ms  max_size 32  strategy hybrid  threshold 0.93" in screen
        for text in (
            "req/s -  batches/s -  10s avg",
            "avg batch 17.5",
            "requests 123,456",
            "batches 4,321",
            "dedup 42.9%",
            "exact 32.4%",
            "near 10.5%",
            "saved $106.00",
            "merged 53.0k",
            "coalesced 1.23k",
            "p50 12.3",
            "p95 45.6",
            "p99 78.9",
            "queue 17",
            "in flight 2/4",
            "clients 2",
            "window 48.5 ms",
            "model 4.20 + 0.85*n ms",
            "errors 7",
            "timeouts 3",
            "rejected 2",
            "dropped 456",
            "batch size  max 32",
            "threshold ┊ 0.93",
            " live",
        ):
            assert text in screen, text
        publish(w, total_requests=200_000, latency_ms_p99=91.5, errors=8)
        screen = await refresh(app, pilot)
        assert "requests 200,000" in screen and "p99 91.5" in screen and "errors 8" in screen


async def test_80x24_shows_every_panel(block):
    name, w = block
    publish(w)
    app = app_for(name)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await refresh(app, pilot)
        lines = screen.splitlines()
        assert len(lines) == 23 and all(len(line) == 80 for line in lines)
        for title in ("1 Traffic", "2 Dedup", "3 Latency & health", "4 Clients"):
            assert title in screen
        for text in ("requests 123,456", "dedup 42.9%", "p99 78.9", "errors 7", "dropped 456"):
            assert text in screen, text


async def test_the_dedup_panel_shows_the_reuse_cache_only_with_reuse_on(block):
    name, w = block
    publish(w, reuse_hits=5)
    app = app_for(name)
    async with app.run_test(size=(160, 48)) as pilot:
        assert "reuse" not in await refresh(app, pilot)
    name = engine_name()
    info = {
        "name": name,
        "reuse": "exact",
        "reuse_ttl_s": 60.0,
        "reuse_max_entries": 10_000,
        "reuse_max_bytes": 64 << 20,
    }
    w = CountersWriter.create(name, info=info, max_clients=8, history_s=300, started_at_ns=T0_NS)
    try:
        publish(w, reuse_hits=12_345, reuse_entries=2_974, reuse_bytes=1_234_567)
        for size in ((160, 48), (80, 24)):
            app = app_for(name)
            async with app.run_test(size=size) as pilot:
                screen = await refresh(app, pilot)
                assert "dedup 42.9%" in screen
            if size == (160, 48):  # one line when the panel is wide enough
                assert (
                    "reuse exact  hits 12.3k (10.0%)  held 2.97k/10.0k  bytes 1.2M/64M  ttl 60s"
                    in screen
                )
            else:  # two lines in the 36 columns of the panel at 80x24, the chart below
                lines = screen.splitlines()
                at = next(i for i, line in enumerate(lines) if "reuse exact" in line)
                assert "│ reuse exact  hits 12.3k (10.0%) " in lines[at], lines[at]
                assert "│ held 2.97k/10.0k  1.2M/64M  ttl 60s " in lines[at + 1], lines[at + 1]
                assert "near-merge similarity" in lines[at + 2], screen
                assert len(lines) == 23 and all(len(line) == 80 for line in lines)
    finally:
        w.close()


def test_a_reuse_row_of_a_garbled_info_shows_dashes():
    from types import SimpleNamespace

    from stratabatch import Stats
    from stratabatch.monitor.draw import reuse_items

    fields = {f: 0 for f in Stats.__dataclass_fields__}
    fields["merge_similarity_histogram"] = (0,) * 101
    snap = SimpleNamespace(
        info={"reuse": "exact", "reuse_max_entries": "x", "reuse_ttl_s": True},
        stats=Stats(**fields),
    )
    items = dict((label, value) for label, value, _ in reuse_items(snap))  # type: ignore[arg-type]
    assert items == {
        "reuse": "exact",
        "hits": "0 (0.0%)",
        "held": "0/-",
        "bytes": "0B/-",
        "ttl": "-",
    }
    for off in ({"reuse": "off"}, {}, {"reuse": 3}):
        assert reuse_items(SimpleNamespace(info=off, stats=snap.stats)) == []  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("hits", "total", "held", "size", "info", "want"),
    [
        (12_345, 123_456, 2_974, 1_234_567, (60.0, 10_000, 64 << 20),
         ["reuse exact  hits 12.3k (10.0%)", "held 2.97k/10.0k  1.2M/64M  ttl 60s"]),
        (999_999, 999_999, 100_000, 1023 << 20, (725.0, 100_000, 1023 << 20),
         ["reuse exact  hits 1.00M (100.0%)", "held 100k/100k 1023M/1023M ttl 12.1m"]),
        (123_456, 999_999, 12_345, (1023 << 20) - 1, (98.5, 12_345, (1023 << 20) + 5),
         ["reuse exact  hits 123.5k (12.3%)", "held 12.3k/12.3k 1023M/1023M 98.5s"]),
    ],
)  # fmt: skip
def test_the_reuse_row_takes_two_lines_at_most_in_a_36_column_panel(
    hits, total, held, size, info, want
):
    from types import SimpleNamespace

    from stratabatch import Stats
    from stratabatch.monitor.draw import flow, reuse_rows

    fields = {f: 0 for f in Stats.__dataclass_fields__}
    fields["merge_similarity_histogram"] = fields["reuse_similarity_histogram"] = (0,) * 101
    fields.update(reuse_hits=hits, total_requests=total, reuse_entries=held, reuse_bytes=size)
    ttl, max_entries, max_bytes = info
    snap = SimpleNamespace(
        info={
            "reuse": "exact",
            "reuse_ttl_s": ttl,
            "reuse_max_entries": max_entries,
            "reuse_max_bytes": max_bytes,
        },
        stats=Stats(**fields),
    )
    lines = [t.plain for t in flow(reuse_rows(snap, 36), 36)]  # type: ignore[arg-type]
    assert [line.rstrip() for line in lines] == want  # nothing cropped
    assert all(len(line) == 36 for line in lines)


async def test_pause_freezes_the_numbers(block):
    name, w = block
    publish(w)
    app = app_for(name)
    async with app.run_test(size=(120, 40)) as pilot:
        await refresh(app, pilot)
        await pilot.press("p")
        frozen = app.dashboard.text
        assert "PAUSED" in frozen and "requests 123,456" in frozen
        publish(w, total_requests=999_999)
        assert await refresh(app, pilot) == frozen  # a refresh while paused changes nothing
        await pilot.press("space")
        screen = await refresh(app, pilot)
        assert "requests 999,999" in screen and "PAUSED" not in screen


async def test_waiting_screen_then_attach_when_the_engine_starts():
    name = engine_name()
    app = app_for(name)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await refresh(app, pilot)
        assert f"Waiting for engine '{name}'" in screen
        assert f"/dev/shm/stratabatch-{os.getuid()}-{name}-counters" in screen
        assert "no engine of that name is running" in screen
        w = CountersWriter.create(name, info={"name": name}, started_at_ns=T0_NS)
        try:
            publish(w, total_requests=42)
            screen = await refresh(app, pilot)
            assert "Waiting" not in screen and "requests 42" in screen
        finally:
            w.close()
        screen = await refresh(app, pilot)
        assert f"Waiting for engine '{name}'" in screen


async def test_reattaches_after_an_engine_restart():
    name = engine_name()
    w = CountersWriter.create(name, info={"name": name}, started_at_ns=T0_NS)
    app = app_for(name)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            publish(w, total_requests=1_111)
            assert "requests 1,111" in await refresh(app, pilot)
            w.close()  # the engine restarts: same name, new block, new start time
            w = CountersWriter.create(
                name, info={"name": name}, started_at_ns=T0_NS + 60_000_000_000
            )
            publish(w, total_requests=7)
            screen = await refresh(app, pilot)
            assert "requests 7" in screen and "up 1h01m" in screen
    finally:
        w.close()


def _client_pids(screen: str) -> list[int]:
    table = screen[screen.index("4 Clients") :]
    return [int(m) for m in re.findall(r"^\S*│\s+\d+\s+(\d+)\s", table, re.M)]


async def test_client_table_follows_clients_coming_and_going(block):
    name, w = block
    publish(w)
    app = app_for(name)
    async with app.run_test(size=(80, 40)) as pilot:
        await pilot.press("1", "2", "3")  # only the clients panel, full width
        screen = await refresh(app, pilot)
        assert "no client connected" in screen and "1 Traffic" not in screen
        w.set_row("clients", 0, pid=1001, connected=1, requests=10)
        w.set_row("clients", 3, pid=1003, connected=1, requests=30)
        assert _client_pids(await refresh(app, pilot)) == [1001, 1003]
        w.clear_row("clients", 0)
        w.set_row("clients", 5, pid=1005, connected=1, requests=1)
        screen = await refresh(app, pilot)
        assert _client_pids(screen) == [1003, 1005]
        assert "1001" not in screen
        for slot in range(8):
            w.set_row("clients", slot, pid=2000 + slot, connected=1, requests=slot)
        assert _client_pids(await refresh(app, pilot)) == list(range(2000, 2008))


async def test_panels_toggle_and_rates_reset(block):
    name, w = block
    publish(w)
    app = app_for(name)
    async with app.run_test(size=(120, 40)) as pilot:
        await refresh(app, pilot)
        await pilot.press("2")
        screen = app.dashboard.text
        assert "2 Dedup" not in screen and "1 Traffic" in screen
        await pilot.press("2")
        assert "2 Dedup" in app.dashboard.text
        await pilot.press("r")
        assert app.rates.requests_per_s is None and "batches/s -" in app.dashboard.text
        await pilot.press("q")
    assert app.return_code == 0 or app.return_code is None


async def test_lines_that_did_not_change_are_not_repainted(block):
    name, w = block
    publish(w)
    app = app_for(name)
    async with app.run_test(size=(160, 48)) as pilot:
        await refresh(app, pilot)
        dash = app.dashboard
        before = dash.repainted_lines
        await refresh(app, pilot)
        assert dash.repainted_lines == before  # same block, same clock: nothing repainted
        publish(w, queue_depth=18)
        await refresh(app, pilot)
        assert dash.repainted_lines - before == 1  # the one line holding the queue depth


async def test_a_damaged_block_shows_a_message_not_a_traceback():
    name = engine_name()
    from stratabatch.ipc.counters import counters_segment_name
    from stratabatch.ipc.segment import Segment

    seg = Segment.create(counters_segment_name(name), 4096, magic=b"SBCOUNT1", version=2)
    try:
        app = app_for(name)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await refresh(app, pilot)
            assert "not a readable counters block" in screen
    finally:
        seg.close()


async def test_tiny_terminals_and_drawing_errors_never_raise(block, monkeypatch):
    name, w = block
    publish(w)
    w.set_row("clients", 0, pid=1, connected=1, requests=1)
    app = app_for(name)
    async with app.run_test(size=(80, 24)) as pilot:
        for size in ((30, 8), (12, 4), (6, 2), (200, 60)):
            await pilot.resize_terminal(*size)
            await pilot.pause()
            await refresh(app, pilot)
            assert all(len(line) == size[0] for line in app.dashboard.lines)

        def broken(*a, **k):
            raise ZeroDivisionError("boom")

        monkeypatch.setattr("stratabatch.monitor.draw.header", broken)
        screen = await refresh(app, pilot)
        assert "monitor error: ZeroDivisionError: boom" in screen


def test_fake_engine_keeps_the_stats_accounting():
    from stratabatch.monitor.fake import FakeEngine
    from stratabatch.monitor.snapshot import read_snapshot

    eng = FakeEngine(engine_name(), seed=3)
    try:
        eng.run_simulated(20, end_s=1_800_000_000)
        s = read_snapshot(eng.name).stats
        assert s.total_requests > 1000
        assert s.total_requests == s.unique_requests + s.duplicates + s.dropped + s.queue_depth
        assert s.duplicates == s.exact_merges + s.near_merges
    finally:
        eng.close()


async def test_ctrl_c_copies_the_selection_and_the_dashboard_runs_on(block):
    name, w = block
    publish(w)
    app = app_for(name)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await refresh(app, pilot)
        await pilot.press("ctrl+c")  # nothing selected: only a hint, the app runs on
        await pilot.pause()
        assert app.is_running
        await pilot.mouse_down(app.dashboard, offset=(2, 0))  # drag over the dashboard
        await pilot.hover(app.dashboard, offset=(40, 3))
        await pilot.mouse_up(app.dashboard, offset=(40, 3))
        await pilot.pause()
        assert app.dashboard in app.screen.selections
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert app.is_running
        assert app.clipboard and app.clipboard in screen and name in app.clipboard
        publish(w, total_requests=777)
        assert "requests 777" in await refresh(app, pilot)


def _names_defined(cls: type) -> set[str]:
    """Methods and class attributes of ``cls``'s own body, and every ``self.X`` it assigns."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0]
    assert isinstance(body, ast.ClassDef)
    names = set()
    for node in body.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    for node in ast.walk(body):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        ):
            names.add(node.attr)
    return names


def test_no_textual_name_is_overridden_by_accident():
    """Our widgets override only the Textual hooks they mean to: a private method of the
    same name as Textual's (``_render``) broke text selection."""
    from textual.app import App
    from textual.widget import Widget

    from stratabatch.monitor.app import Dashboard

    meant = {
        "__init__",
        "DEFAULT_CSS",
        "render_line",
        "get_selection",
        "TITLE",
        "ENABLE_COMMAND_PALETTE",
        "BINDINGS",
        "compose",
    }
    for cls, base, instance in ((Dashboard, Widget, Widget()), (MonitorApp, App, App())):
        theirs = set(dir(base)) | set(vars(instance))
        clashes = (_names_defined(cls) & theirs) - meant
        assert not clashes, f"{cls.__name__} overrides Textual's {sorted(clashes)}"
