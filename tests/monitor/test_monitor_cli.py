"""stratabatch-monitor --once / --json: the snapshot printed as a table or JSON, no Textual."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from monitor_helpers import engine_name, publish

from stratabatch import Stats
from stratabatch.monitor.cli import main


def test_once_prints_the_block_as_a_table(block, capsys):
    name, w = block
    publish(w)
    w.set_row("clients", 4, pid=31337, connected=1, requests=2_500, errors=3)
    assert main([name, "--once"]) == 0
    out = capsys.readouterr().out
    assert f"engine {name}  pid {os.getpid()}" in out and "handler tests.app:handle" in out
    assert "requests  123,456  req/s 812.4 (10s avg)  batches 4,321  avg batch 17.5 (max 32)" in out
    assert "duplicates 53,000 (42.9%: exact 32.4%, near 10.5%)" in out
    assert "latency   p50 12.3  p95 45.6  p99 78.9 ms" in out
    assert "queue     17  in flight 2/4  clients 2" in out
    assert "model     4.20 + 0.85*n ms" in out
    assert "errors 7  timeouts 3  rejected 2  dropped 456" in out
    assert "threshold 0.93" in out and "saved     $106.00" in out
    row = next(line for line in out.splitlines() if "31337" in line).split()
    assert row[:4] == ["4", "31337", "2,500", "3"]


def test_json_keys_are_the_stats_fields(block, capsys):
    name, w = block
    stats = publish(w)
    assert main([name, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for field in Stats.__dataclass_fields__:
        assert field in data
        want = stats[field]
        assert data[field] == (list(want) if isinstance(want, tuple) else want), field
    assert data["engine"]["pid"] == os.getpid() and data["engine"]["alive"] is True
    assert data["clients"] == [] and data["inflight_batches"] == 2


def test_no_engine_exits_1_and_says_where_it_looked(capsys):
    name = engine_name()
    assert main([name, "--once"]) == 1
    err = capsys.readouterr().err
    assert f"no engine named {name!r}" in err and f"/dev/shm/stratabatch-{os.getuid()}-" in err
    assert main([name, "--json"]) == 1


def test_bad_arguments_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["bad/name", "--once"])
    assert "engine name must be" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["x", "--interval", "0"])


def test_once_does_not_import_textual(block):
    name, w = block
    publish(w)
    # the child may take seconds to start on a busy machine: a heartbeat ahead of the clock
    # keeps the engine "running" (exit 0) rather than "stalled" for it
    w.set("updated_at_ns", time.time_ns() + 3_600_000_000_000)
    code = (
        "import sys\nfrom stratabatch.monitor.cli import main\n"
        f"rc = main([{name!r}, '--once'])\n"
        "assert 'textual' not in sys.modules, 'textual was imported'\n"
        "sys.exit(rc)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "123,456" in res.stdout


def test_once_shows_the_reuse_line_only_with_reuse_on():
    from types import SimpleNamespace

    from stratabatch.monitor.cli import reuse_lines

    fields = {f: 0 for f in Stats.__dataclass_fields__}
    fields.update(
        merge_similarity_histogram=(0,) * 101,
        total_requests=200,
        reuse_hits=50,
        reuse_entries=7,
        reuse_bytes=4096,
    )
    stats = Stats(**fields)
    off = SimpleNamespace(info={"reuse": "off"}, stats=stats)
    assert reuse_lines(off) == []  # type: ignore[arg-type]
    on = SimpleNamespace(
        info={
            "reuse": "exact",
            "reuse_ttl_s": 60.0,
            "reuse_max_entries": 10_000,
            "reuse_max_bytes": 1 << 20,
        },
        stats=stats,
    )
    (line,) = reuse_lines(on)  # type: ignore[arg-type]
    assert line.startswith("reuse     exact  hits 50 (25") and "entries 7/" in line, line
    assert " near " not in line
    near = SimpleNamespace(
        info={**on.info, "reuse": "near"},
        stats=Stats(**{**fields, "reuse_near_hits": 20}),
    )
    (line,) = reuse_lines(near)  # type: ignore[arg-type]
    assert line.startswith("reuse     near  hits 50 (25") and " near 20  " in line, line
