"""What stratabatch-perf prints: 80-column tables, a verdict in words, --wide, --explain, --plot."""

from __future__ import annotations

import sys

import pytest

from stratabatch.perf import cli
from stratabatch.perf.harness import PEER, TARGET_MODE, UNBATCHED
from stratabatch.perf.modes import Embedded, Unbatched
from stratabatch.perf.report import COLUMNS, verdict

TINY = [
    "--bursts",
    "1",
    "--burst-size",
    "30",
    "--burst-ms",
    "20",
    "--overhead-ms",
    "2",
    "--per-item-ms",
    "0.1",
    "--no-progress",
]


def _two_modes(monkeypatch):
    monkeypatch.setattr(cli, "all_modes", lambda: [Unbatched(), Embedded("exact")])


def test_every_line_fits_80_columns_and_the_run_ends_with_its_verdict(monkeypatch, capsys):
    _two_modes(monkeypatch)
    assert cli.main(TINY) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    assert "…" not in out  # no cell cut short
    header = next(line for line in lines if line.lstrip().startswith("mode"))
    for col in ("req/s", "unbatched", "ms", "items", "wrong", "lost"):
        assert col in header
    row = next(line for line in lines if line.startswith("stratabatch exact"))
    assert row.split()[-2:] == ["0", "0"]  # wrong, lost
    assert "stratabatch exact: " in out and "x unbatched" in out and "0 lost." in out


def test_wide_prints_every_column(monkeypatch, capsys):
    _two_modes(monkeypatch)
    assert cli.main([*TINY, "--wide"]) == 0
    out = capsys.readouterr().out
    header = " ".join(line for line in out.splitlines() if "┃" in line)
    for col in (
        "p50",
        "p95",
        "p99",
        "calls",
        "cost",
        "caught /",
        "existing",
        "surface caught /",
        "catchable",
        "lost /",
        "dup",
        "best",
    ):
        assert col in header, col
    assert "…" not in out


def test_explain_defines_every_column(monkeypatch, capsys):
    _two_modes(monkeypatch)
    assert cli.main([*TINY, "--explain"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for col, _meaning in COLUMNS:
        assert f"{col}:" in out, col
    assert "Caught cannot exceed existing" in out


def test_plot_without_matplotlib_fails_before_any_mode_runs(monkeypatch, capsys, tmp_path):
    ran = []

    class Recorder(Unbatched):
        async def run(self, workload, settings, progress):
            ran.append(1)
            return await super().run(workload, settings, progress)

    monkeypatch.setattr(cli, "all_modes", lambda: [Recorder()])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    with pytest.raises(SystemExit) as exc:
        cli.main([*TINY, "--plot", str(tmp_path / "s.png")])
    assert exc.value.code == 2
    assert ran == []
    assert "matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "s.png").exists()


def test_the_sweep_description_counts_in_words():
    from stratabatch.perf.workload import WorkloadConfig

    one = cli.sweep_description(
        WorkloadConfig(bursts=1, burst_size=400), WorkloadConfig(arrivals="poisson"), 900
    )
    assert "1 burst of 400" in one and "1 bursts" not in one
    two = cli.sweep_description(
        WorkloadConfig(bursts=2, burst_size=400), WorkloadConfig(arrivals="poisson"), 900
    )
    assert "2 bursts of 400" in two


def test_the_plot_axes_name_the_windows_that_ran(tmp_path):
    pytest.importorskip("matplotlib")
    from stratabatch.perf.report import sweep_figure

    rows = [
        {
            "window_ms": w,
            "max_size": m,
            "burst_throughput_rps": 1000.0 + w,
            "steady_latency_ms_p99": 100.0 + w,
            "steady_backend_calls": 50 - w,
        }
        for m in (16, 64)
        for w in (2.0, 10.0, 50.0)
    ]
    fig = sweep_figure(rows, "throughput on 1 burst of 400")
    try:
        for ax in fig.axes:
            assert ax.get_xlabel() == "window_ms (log scale)"
            assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "10", "50"]
            assert ax.get_ylabel() and ax.get_title()
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def _mode(rps, items, p99=100.0, wrong=0, lost=0, **extra):
    return {
        "ran": True,
        "throughput_rps": rps,
        "backend_items": items,
        "latency_ms_p99": p99,
        "wrong_merges": wrong,
        "lost": lost,
        "duplicated": 0,
        "stray": 0,
        "mismatched_answers": 0,
        **extra,
    }


def test_the_verdict_reads_the_run_s_own_numbers():
    reports = {
        UNBATCHED: _mode(100.0, 800),
        PEER: _mode(737.5, 751),
        TARGET_MODE: _mode(1180.0, 408, p99=249.0, speedup_vs_unbatched=11.8, speedup_vs_peer=1.6),
        "stratabatch hybrid": _mode(1300.0, 404),
        "stratabatch-engine embedding": {"ran": False, "skipped": "no engine"},
    }
    rows = [
        {"target": "a", "met": True},
        {"target": "busy time", "met": False},
        {"target": "p99", "met": None},
    ]
    lines = verdict(reports, TARGET_MODE, rows)
    assert lines[0] == (
        "stratabatch embedding: 11.8x unbatched, 1.6x the batching server, "
        "49% fewer backend items, p99 249 ms, 0 wrong merges, 0 lost."
    )
    assert lines[1].startswith("Fastest here: stratabatch hybrid, 1,300 req/s (1.10x")
    assert lines[2] == (
        "Targets: 1 of 2 met (missed: busy time); 1 not applicable to this workload (p99)."
    )
    reports["stratabatch hybrid"]["lost"] = 3
    assert verdict(reports, TARGET_MODE)[-1] == (
        "Lost, duplicated or misdelivered outcomes in: stratabatch hybrid."
    )
