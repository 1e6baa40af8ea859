"""Real engine processes for the end-to-end tests.

``start_engine(...)`` runs ``python -m stratabatch.cli`` (what the ``stratabatch-engine``
console script runs) as a subprocess with a unique name, waits for its ready line and, at the
end of the test, stops it with SIGTERM and checks that it exited 0. Clients run in the test
process or in subprocesses (``tests/e2e/client_worker.py``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_name

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0
#: PYTHONPATH for a child process: the caller's own first (a worktree's import shim), then the
#: repo root (tests.e2e.handlers); a child never imports another checkout than its parent's.
CHILD_PYTHONPATH = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)]))


class EngineProc:
    """A running engine subprocess."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log_path = log
        self._stderr = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stratabatch.cli", "--name", name, *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            cwd=ROOT,
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        assert self.proc.stdout is not None
        line = b""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith(b"stratabatch-engine ready") or not line:
                break
        if not line.startswith(b"stratabatch-engine ready"):
            self.proc.kill()
            self.proc.wait()
            self._stderr.close()
            raise AssertionError(f"engine {name} did not start: {line!r}\n{self.log()}")
        self.ready_line = line.decode()
        self.pid = self.proc.pid

    def log(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()
        return rc

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def engine_name() -> str:
    """A name no other test (or concurrent test run) uses, with this run's tag."""
    return run_name("e2e")


@pytest.fixture
def start_engine(tmp_path: Path, engine_name: str) -> Iterator:
    """Start engines; each is stopped (SIGTERM, exit 0 checked) when the test ends."""
    started: list[EngineProc] = []

    def start(
        *args: str,
        name: str | None = None,
        env: dict[str, str] | None = None,
        handler: str = "tests.e2e.handlers:echo",
    ) -> EngineProc:
        full_env = {**os.environ, "PYTHONPATH": CHILD_PYTHONPATH, **(env or {})}
        log = tmp_path / f"engine-{len(started)}.log"
        eng = EngineProc(name or engine_name, ["--handler", handler, *args], full_env, log)
        started.append(eng)
        return eng

    yield start
    for eng in started:
        if eng.proc.poll() is None:
            rc = eng.stop()
            assert rc == 0, f"engine exited with {rc}\n{eng.log()}"
        else:
            eng.stop()


def run_workers(
    args_list: list[list[str]], env: dict[str, str] | None = None, timeout: float = 90.0
) -> list[subprocess.Popen]:
    """Start ``tests/e2e/client_worker.py`` processes (not waited for)."""
    full_env = {**os.environ, "PYTHONPATH": CHILD_PYTHONPATH, **(env or {})}
    return [
        subprocess.Popen(
            [sys.executable, str(ROOT / "tests/e2e/client_worker.py"), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            cwd=ROOT,
        )
        for args in args_list
    ]
