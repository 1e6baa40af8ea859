"""Shared plumbing of the standalone benchmarks (bench_engine, bench_core, bench_http).

What every script needs and none of them is about: the machine's load average, CPU time of a
process tree from ``/proc``, an engine subprocess that is started, waited for and always stopped
(with its shared memory and socket removed even when it had to be killed), a cleanup that runs on
Ctrl-C and SIGTERM, and the targets table (measured / wanted / met).
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_TICKS = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT_S = 120.0


def load_average() -> str:
    """The 1, 5 and 15 minute load averages and the CPU count, as one line."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def _task_cpu_s(pid: int, tid: str) -> float:
    # schedstat's first field is the thread's time on a CPU in ns; stat's utime + stime count
    # in clock ticks (10 ms), too coarse for a run of a second
    base = f"/proc/{pid}/task/{tid}"
    try:
        with open(f"{base}/schedstat", "rb") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"{base}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def task_cpu_s(pid: int) -> dict[tuple[int, str], float]:
    """CPU seconds so far of each live thread of process ``pid``, by (pid, thread id)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return {}
    return {(pid, tid): _task_cpu_s(pid, tid) for tid in tids}


def proc_cpu_s(pid: int) -> float:
    """CPU seconds so far of the live threads of process ``pid`` (0.0 once it is gone)."""
    return sum(task_cpu_s(pid).values())


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it (children, their children, ...)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                parent[int(entry)] = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = [pid], [pid]
    while frontier:
        frontier = [c for c, p in parent.items() if p in frontier]
        found += frontier
    return found


def tree_cpu_s(pids: Sequence[int]) -> dict[tuple[int, str], float]:
    """CPU seconds so far of every thread in the process trees rooted at ``pids``."""
    out: dict[tuple[int, str], float] = {}
    for root in pids:
        for p in descendants(root):
            out.update(task_cpu_s(p))
    return out


def cpu_delta_s(before: dict[Any, float], after: dict[Any, float]) -> float:
    """CPU seconds spent between two :func:`tree_cpu_s` readings: threads new in ``after`` count
    from zero, threads gone before ``after`` up to their last reading (what they did after it is
    lost; the servers measured here keep their threads)."""
    return sum(after.get(k, before.get(k, 0.0)) - before.get(k, 0.0) for k in after | before)


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per key, the median over ``runs``."""
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


# --------------------------------------------------------------------------- cleanup


class Cleanup:
    """Callbacks run once at exit, on Ctrl-C and on SIGTERM/SIGHUP, most recent first.

    Use as a context manager around ``main``'s body; SIGTERM and SIGHUP raise KeyboardInterrupt
    inside it so the same path runs.
    """

    def __init__(self) -> None:
        self._calls: list[Callable[[], None]] = []
        self._old: dict[int, Any] = {}

    def add(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` at cleanup."""
        self._calls.append(fn)

    def run(self) -> None:
        """Run every callback now (errors are printed, never raised)."""
        while self._calls:
            fn = self._calls.pop()
            try:
                fn()
            except Exception as exc:  # cleanup goes on whatever one step does
                print(f"cleanup: {exc!r}", file=sys.stderr)

    def __enter__(self) -> Cleanup:
        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(signal.Signals(signum).name)

        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old[sig] = signal.signal(sig, interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        # a second Ctrl-C during cleanup must not leave engines behind
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.run()
        finally:
            signal.signal(signal.SIGINT, old_int)
            for sig, handler in self._old.items():
                signal.signal(sig, handler)


def stop_process(
    proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, wait_s: float = 20
) -> None:
    """Signal ``proc`` and wait; kill it when it does not exit in ``wait_s``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and everything below it (what is left after a polite stop)."""
    for p in reversed(descendants(pid)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGKILL)


# --------------------------------------------------------------------------- the engine


def engine_socket_path(name: str) -> str:
    """Where the engine called ``name`` listens (DESIGN: one Unix socket per engine)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = os.path.join(runtime, "stratabatch") if runtime else f"/tmp/stratabatch-{os.getuid()}"
    return os.path.join(base, f"{name}.sock")


def remove_engine_leftovers(name: str) -> list[str]:
    """Unlink the shared memory and socket of a stopped engine ``name``; return what was left.

    A stopped engine removes both itself; this only catches an engine that had to be killed.
    """
    left = []
    prefix = f"stratabatch-{os.getuid()}-{name}-"
    with contextlib.suppress(OSError):
        for entry in os.listdir("/dev/shm"):
            if entry.startswith(prefix):
                left.append(f"/dev/shm/{entry}")
    sock = engine_socket_path(name)
    if os.path.exists(sock):
        left.append(sock)
    for path in left:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return left


class Engine:
    """A ``stratabatch-engine`` subprocess (``python -m stratabatch.cli``), stopped on cleanup.

    Args:
        name: the engine's name (clients pass it to ``stratabatch.connect``).
        handler: ``module:attr`` of the batch handler.
        options: more command-line flags (``["--window-ms", "1", ...]``).
        cleanup: the script's :class:`Cleanup`; the engine registers its own stop there.
        env: extra environment variables.
    """

    def __init__(
        self,
        name: str,
        handler: str,
        options: Sequence[str],
        cleanup: Cleanup,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        cmd = [sys.executable, "-m", "stratabatch.cli", "--handler", handler, "--name", name]
        self.proc = subprocess.Popen(
            [*cmd, "--log-level", "WARNING", *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        cleanup.add(self.stop)
        self.log: list[str] = []
        ready = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(ready,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"stratabatch-engine {name} did not get ready (exit code "
                    f"{self.proc.poll()}): {self.log[-5:]}"
                )

    @property
    def pid(self) -> int:
        """The engine process's pid."""
        return self.proc.pid

    def _read(self, ready: threading.Event) -> None:
        # keep the pipe flowing (a full pipe would stall the engine); note the ready line
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line.rstrip())
            if "ready" in line.lower():
                ready.set()

    def stop(self) -> None:
        """SIGTERM, wait, kill what is left, remove leftover shared memory and socket."""
        stop_process(self.proc)
        kill_tree(self.proc.pid)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        left = remove_engine_leftovers(self.name)
        if left:
            print(f"engine {self.name}: removed leftovers {left}", file=sys.stderr)


# --------------------------------------------------------------------------- output


def print_targets(rows: list[tuple[str, str, str, bool | None]]) -> list[dict[str, Any]]:
    """Print the targets table (target, measured, wanted, met); return it as JSON rows.

    ``met`` None prints ``n/a`` (reported only, or not measured in this run).
    """
    if not rows:
        print("\nno target applies to the systems of this run")
        return []
    width = max(len(r[0]) for r in rows) + 2
    print(f"\n{'target':<{width}}{'measured':>22}{'wanted':>16}  met")
    out = []
    for target, measured, wanted, met in rows:
        verdict = "n/a" if met is None else ("yes" if met else "NO")
        print(f"{target:<{width}}{measured:>22}{wanted:>16}  {verdict}")
        out.append({"target": target, "measured": measured, "wanted": wanted, "met": met})
    return out
