"""The suite's own leak guards (tests/conftest.py) look only at the names this run created."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

from stratabatch.ipc.segment import Segment, segment_name
from stratabatch.wire import check_name, socket_dir
from tests.conftest import RUN_TAG, RUN_TAG_ENV, own_leftovers, run_name

ROOT = Path(__file__).resolve().parents[1]
MAGIC = b"SBGUARD0"


def test_run_names_are_engine_names_with_this_runs_tag():
    names = {run_name("e2e") for _ in range(50)}
    assert len(names) == 50
    for name in names:
        assert check_name(name) == name and f"-{RUN_TAG}-" in name
    assert check_name(run_name("x" * 27))


def test_only_this_runs_segments_count_as_leftovers():
    ours = segment_name(run_name("guard"), "control")
    foreign = segment_name(f"unrelated-{uuid.uuid4().hex[:8]}", "control")
    with (
        Segment.create(ours, 64, magic=MAGIC, version=1),
        Segment.create(foreign, 64, magic=MAGIC, version=1),
    ):
        found = own_leftovers()
        assert f"/dev/shm/{ours}" in found
        assert not any(foreign in path for path in found)


def test_a_run_passes_beside_another_engine_and_another_run():
    """An unrelated engine's segments and socket, and a concurrent run's segment, exist for the
    whole of a second pytest run: that run still exits 0."""
    unrelated = f"unrelated-{uuid.uuid4().hex[:8]}"
    other_run = run_name("other")  # this run's tag: a different run for the inner pytest
    sock_dir = socket_dir()
    os.makedirs(sock_dir, mode=0o700, exist_ok=True)
    sock_path = os.path.join(sock_dir, f"{unrelated}.sock")
    env = {k: v for k, v in os.environ.items() if k != RUN_TAG_ENV}
    with contextlib.ExitStack() as stack:
        for name in (segment_name(unrelated, "control"), segment_name(other_run, "counters")):
            stack.enter_context(Segment.create(name, 64, magic=MAGIC, version=1))
        listener = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        listener.bind(sock_path)
        stack.callback(os.unlink, sock_path)
        inner = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/test_suite_guards.py",
                "-k",
                "engine_names_with",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert inner.returncode == 0, inner.stdout + inner.stderr
    assert "1 passed" in inner.stdout
