"""``stratabatch-monitor --once`` / ``--json`` as a health check: the exit status says whether
the engine runs, is stalled, has died, or was never there.

The dead-engine cases use real processes: an engine (or a counters writer) is SIGKILLed, which
leaves its segments behind; a new owner of the same name reclaims them and removes them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from monitor_helpers import engine_name, publish

from stratabatch.ipc.counters import CountersWriter
from stratabatch.monitor.cli import (
    EXIT_DEAD,
    EXIT_NO_ENGINE,
    EXIT_RUNNING,
    EXIT_STALLED,
    EXIT_STATUSES,
    main,
)
from stratabatch.monitor.snapshot import engine_alive, shm_path
from tests.e2e.conftest import CHILD_PYTHONPATH, EngineProc

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": CHILD_PYTHONPATH}
ENGINE_ARGS = ["--handler", "tests.e2e.handlers:echo", "--dedup-strategy", "exact"]


def monitor(name: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """Run ``stratabatch-monitor NAME FLAGS`` as a user's health check would."""
    return subprocess.run(
        [sys.executable, "-m", "stratabatch.monitor.cli", name, *flags],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=120,
    )


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_exit_statuses_are_distinct():
    assert len(set(EXIT_STATUSES)) == len(EXIT_STATUSES) == len(set(EXIT_STATUSES.values()))
    assert EXIT_RUNNING == 0 and len({EXIT_NO_ENGINE, EXIT_DEAD, EXIT_STALLED, 0}) == 4


def test_a_sigkilled_engine_is_reported_dead(tmp_path):
    name = engine_name()
    eng = EngineProc(name, ENGINE_ARGS, ENV, tmp_path / "engine.log")
    try:
        live = monitor(name, "--json")
        data = json.loads(live.stdout)
        assert data["alive"] is True and data["engine"]["pid"] == eng.pid
        # a running engine is "running" (0); one starved of CPU for 3 s "stalled" (4)
        assert data["status"] in ("running", "stalled")
        assert live.returncode == (EXIT_RUNNING if data["status"] == "running" else EXIT_STALLED), (
            live.stderr
        )

        eng.kill()  # SIGKILL: no shutdown, the counters block stays behind
        assert os.path.exists(shm_path(name))

        once = monitor(name, "--once")
        assert once.returncode == EXIT_DEAD, once.stderr
        assert f"pid {eng.pid}" in once.stdout and "EXITED" in once.stdout
        assert f"engine {name!r} (pid {eng.pid}) is not running" in one_line(once.stderr)

        dead = monitor(name, "--json")
        assert dead.returncode == EXIT_DEAD, dead.stderr
        data = json.loads(dead.stdout)
        assert data["alive"] is False and data["status"] == "exited"
        assert data["engine"]["alive"] is False and data["engine"]["pid"] == eng.pid
        one_line(dead.stderr)
    finally:
        eng.stop()
        # a new engine of the same name reclaims the dead one's segments and socket; its
        # graceful stop removes them
        again = EngineProc(name, ENGINE_ARGS, ENV, tmp_path / "engine-2.log")
        assert again.stop() == 0, again.log()
    assert not os.path.exists(shm_path(name))


def test_a_name_that_never_ran_is_no_such_engine():
    name = engine_name()
    for flag in ("--once", "--json"):
        res = monitor(name, flag)
        assert res.returncode == EXIT_NO_ENGINE and res.stdout == ""
        assert f"no engine named {name!r}" in one_line(res.stderr)


_WRITER_DIES_MID_UPDATE = """
import sys, time
from stratabatch.ipc.counters import CountersWriter
w = CountersWriter.create(sys.argv[1], max_clients=2, history_s=300)
w.begin()  # an update that never ends: the engine is killed inside it
print("in update", flush=True)
time.sleep(600)
"""


def test_an_engine_killed_inside_an_update_is_dead_not_unreadable(capsys):
    name = engine_name()
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER_DIES_MID_UPDATE, name],
        stdout=subprocess.PIPE,
        env=ENV,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"in update\n"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert main([name, "--json"]) == EXIT_DEAD
        out = capsys.readouterr()
        assert out.out == "" and "exited" in one_line(out.err)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        CountersWriter.create(name, max_clients=2, history_s=300).close()  # reclaim, unlink
    assert not os.path.exists(shm_path(name))


def test_a_stalled_engine_exits_4(block, capsys):
    name, w = block
    publish(w)
    w.set("updated_at_ns", time.time_ns() - 60_000_000_000)  # no heartbeat for a minute
    assert main([name, "--once"]) == EXIT_STALLED
    out = capsys.readouterr()
    assert "STALLED" in out.out and "has not updated its counters for 1m00s" in one_line(out.err)
    assert main([name, "--json"]) == EXIT_STALLED
    data = json.loads(capsys.readouterr().out)
    assert data["alive"] is True and data["status"] == "stalled"


def test_an_engine_held_inside_an_update_is_stalled(block, capsys):
    name, w = block
    publish(w)
    w.begin()  # alive, but no consistent copy can be made
    try:
        assert main([name, "--once"]) == EXIT_STALLED
        assert "stayed mid-update" in one_line(capsys.readouterr().err)
    finally:
        w.end()


def test_a_zombie_engine_is_not_alive():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # exited, not reaped yet: a zombie
            with open(f"/proc/{proc.pid}/stat", "rb") as f:
                stat = f.read()
            if stat[stat.rfind(b")") + 2 :][:1] == b"Z":
                break
            time.sleep(0.01)
        assert not engine_alive(proc.pid)
    finally:
        proc.wait()
    assert engine_alive(os.getpid())
