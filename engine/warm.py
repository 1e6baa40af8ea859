"""The numba kernels' first compile: fill the on-disk cache ahead of time, and say when a start
compiles.

The dedup kernels are numba functions with ``cache=True``: the first start on a machine
compiles them (seconds to tens of seconds, see docs/coldstart.md), later starts load them from
numba's on-disk cache. This module

* tells whether a start will compile (:func:`check`): the warm-up leaves a marker file in the
  cache directory after it has loaded a strategy's kernels, keyed by everything numba's own
  cache entries depend on (numba and Python versions, the CPU, the kernel modules' sources),
  so an emptied cache directory, a new numba or an edited kernel module reads as a first
  start again;
* brackets a warm-up with one log line before a compile and one after it (:class:`Notice`;
  used by ``BatchProcessor.warm_up()`` and the engine's start);
* compiles ahead of time (:func:`compile_kernels`), for a container image's build step::

      python -m stratabatch.warm [--strategy exact|embedding|hybrid ...] [--all]

  or ``stratabatch-engine --compile-only [options]``, which compiles what its options reach.

Where numba caches: ``NUMBA_CACHE_DIR`` when set, else the ``__pycache__`` directory next to
the installed modules when it is writable, else a user-wide directory (``~/.cache/numba``).
When none is writable numba cannot cache, and loading the kernels fails.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import hashlib
import importlib.util
import json
import logging
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .cliargs import CliParser
from .config import BatchConfig

log = logging.getLogger("stratabatch.warm")

STRATEGIES = ("exact", "embedding", "hybrid")
"""The dedup strategies, each a set of kernels of its own."""

ENGINE = "engine"
"""The unit of the engine process's own kernels (shared-memory atomics and fences)."""

ESTIMATE_S = {"exact": 2, "embedding": 55, "hybrid": 60, ENGINE: 1}
"""Seconds a first compile takes per unit on a 2-core machine (perf/bench_coldstart.py)."""

KERNEL_MODULES = (
    "stratabatch.kernels",
    "stratabatch.cosine",
    "stratabatch.pairs",
    "stratabatch.textkernels",
    "stratabatch.canonkernels",
    "stratabatch.embedkernels",
    "stratabatch.greedy",
    "stratabatch.candidates",
    "stratabatch.hashtable",
    "stratabatch.sketches",
    "stratabatch.wordtable",
    "stratabatch.guardkernels",
    "stratabatch.numberkeys",
    "stratabatch.ipc.atomics",
    "stratabatch.ipc.counters",
)
"""Every module that holds numba kernels; their sources key the marker files."""

_MARKER = "stratabatch-warm-{unit}.json"


def estimate_s(missing: Sequence[str]) -> int:
    """Seconds a first compile of the units ``missing`` takes on a 2-core machine: not their
    sum, since the strategies share most kernels (all four units compile in about the time of
    the largest, measured: 29 s for embedding, exact, hybrid and the engine at once)."""
    if not missing:
        return 0
    return max(ESTIMATE_S[u] for u in missing) + 2 * (len(missing) - 1)


def units(config: BatchConfig, *, engine: bool = False) -> tuple[str, ...]:
    """The kernel units a warm-up of ``config`` loads, as :func:`check` names them.

    No dedup loads nothing; a ``dedup_function`` or a user's embedder loads only the hash
    kernel (the ``exact`` unit), since the warm-up never calls the user's code; an engine adds
    its own kernels.
    """
    out: list[str] = []
    if config.enable_dedup:
        embeds = (
            config.dedup_function is None
            and config.embedder is None
            and config.dedup_strategy in ("embedding", "hybrid")
        )
        out.append(config.dedup_strategy if embeds else "exact")
    if engine:
        out.append(ENGINE)
    return tuple(out)


def near_unit(config: BatchConfig) -> str | None:
    """The unit of ``config``'s near-dedup kernels (``embedding`` or ``hybrid``), or None when
    it has none (no dedup, ``exact``, a ``dedup_function`` or a user's embedder)."""
    u = units(config)
    return u[0] if u and u[0] != "exact" else None


def background_unit(config: BatchConfig) -> str | None:
    """The unit a start of ``config`` compiles in a separate process while it serves with
    exact dedup (``cold_start="serve"``): its near-dedup kernels when they are not cached
    yet and numba can cache here; else None (they load, or compile, in this process)."""
    if config.cold_start != "serve":
        return None
    unit = near_unit(config)
    if unit is None:
        return None
    try:
        result = check(unit_names=(unit,))
    except Exception:  # an unreadable package: the warm-up reports it
        return None
    return unit if result.cold and result.cache_dir is not None else None


def units_now(config: BatchConfig, *, engine: bool = False) -> tuple[str, ...]:
    """The units a start of ``config`` loads before it serves: :func:`units`, with the
    near-dedup unit replaced by ``exact`` when it compiles in the background."""
    out = units(config, engine=engine)
    later = background_unit(config)
    return out if later is None else tuple("exact" if u == later else u for u in out)


def _kernel_file(module: str = "stratabatch.kernels") -> str:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:  # pragma: no cover - the package is installed
        raise ImportError(f"cannot find {module}")
    return spec.origin


def _writable_dir(path: str) -> bool:
    """What numba's locators check: the directory can be made, and a file made in it."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def _user_cache_root() -> str:
    """numba's user-wide cache directory (appdirs' ``user_cache_dir("numba")``)."""
    if sys.platform == "darwin":
        return os.path.expanduser("~/Library/Caches/numba")
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~")
        return os.path.join(base, "numba", "Cache")
    return os.path.join(os.getenv("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "numba")


def cache_dir() -> str | None:
    """The directory numba caches stratabatch's dedup kernels in, or None when it cannot
    cache them.

    numba's rule, in its order: ``NUMBA_CACHE_DIR`` (a subdirectory per source directory),
    else the ``__pycache__`` directory next to the module, else the user-wide cache directory
    (``~/.cache/numba``, a subdirectory per source directory); the first that is writable
    wins, and with none numba cannot cache (loading the kernels then fails). Worked out
    without importing numba, which the warm-up may be importing in another thread at the same
    time (numba's circular imports do not survive two importing threads); a test checks it
    against numba's own answer. Creates the directory, as numba would.
    """
    src_dir = os.path.dirname(os.path.abspath(_kernel_file()))
    sub = f"{os.path.basename(src_dir)}_{hashlib.sha1(src_dir.encode()).hexdigest()}"
    candidates = [os.path.join(src_dir, "__pycache__"), os.path.join(_user_cache_root(), sub)]
    if os.environ.get("NUMBA_CACHE_DIR"):
        candidates.insert(0, os.path.join(os.environ["NUMBA_CACHE_DIR"], sub))
    for path in candidates:
        if _writable_dir(path):
            return path
    return None


def _cpu() -> str:
    """The CPU, as far as numba's cache entries depend on it (its name and features)."""
    parts = [
        platform.machine(),
        os.environ.get("NUMBA_CPU_NAME", ""),
        os.environ.get("NUMBA_CPU_FEATURES", ""),
    ]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("model name", "flags", "Features", "CPU part")):
                    parts.append(line.strip())
                elif not line.strip():
                    break  # the first processor's block is enough
    except OSError:
        parts.append(platform.processor())
    return "\n".join(parts)


@functools.lru_cache(maxsize=1)
def _key() -> str:
    """What numba's cache entries of our kernels depend on, hashed (numba's version, Python's,
    the CPU, the kernel modules' sources); numba itself is not imported. Once per process: a
    start checks its units several times (the notice, the warm-up thread, the background
    compile), and each check would read and hash the same files again."""
    from importlib.metadata import version

    h = hashlib.sha256()
    h.update(
        repr(
            (version("numba"), sys.version_info[:2], getattr(sys, "abiflags", ""), _cpu())
        ).encode()
    )
    for module in KERNEL_MODULES:
        with open(_kernel_file(module), "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def _loaded(unit: str) -> bool:
    """Whether the kernels of ``unit`` are loaded in this process (at least one compiled
    version of a kernel in each of its modules), so a failed warm-up marks nothing."""
    modules = {"exact": ("stratabatch.kernels",), ENGINE: ("stratabatch.ipc.atomics",)}.get(
        unit, ("stratabatch.kernels", "stratabatch.embedkernels", "stratabatch.candidates")
    )
    for name in modules:
        mod = sys.modules.get(name)
        # a numba dispatcher's compiled versions are its ``overloads``
        if mod is None or not any(
            getattr(v, "overloads", None) and hasattr(v, "py_func") for v in vars(mod).values()
        ):
            return False
    return True


@dataclass(frozen=True)
class CacheCheck:
    """Whether the kernels a start needs are in numba's on-disk cache (see :func:`check`)."""

    units: tuple[str, ...]
    """The kernel units the start loads (:func:`units`)."""
    cache_dir: str | None
    """Where numba caches them; None when it cannot cache (every start compiles)."""
    missing: tuple[str, ...]
    """The units not in the cache yet: each compiles on this start."""
    key: str
    """The marker key of this numba, Python, CPU and kernel source ('' without units)."""

    @property
    def cold(self) -> bool:
        """Whether this start compiles kernels."""
        return bool(self.missing)

    @property
    def label(self) -> str:
        """The units as the log lines name them: ``strategy=embedding and the engine``."""
        return _label(self.units)

    @property
    def estimate_s(self) -> int:
        """A first compile's expected seconds on a 2-core machine."""
        return estimate_s(self.missing)

    def begin_message(self) -> str:
        """The line logged before a compile."""
        what = _label(self.missing)
        if self.cache_dir is None:
            return (
                f"compiling kernels for {what}: numba cannot cache them here (no writable "
                f"cache directory; set NUMBA_CACHE_DIR), ~{self.estimate_s} s"
            )
        return (
            f"compiling kernels for {what}: first start on this machine, cached after, "
            f"~{self.estimate_s} s (numba cache: {self.cache_dir})"
        )

    def done_message(self, wall_s: float, cpu_s: float) -> str:
        """The line logged after a compile."""
        return (
            f"compiled kernels for {_label(self.missing)} in {wall_s:.1f} s (CPU {cpu_s:.1f} s)"
            + ("" if self.cache_dir is None else "; later starts load them from the cache")
        )


def _label(names: Sequence[str]) -> str:
    parts = [f"strategy={u}" for u in names if u != ENGINE]
    if ENGINE in names:
        parts.append("the engine")
    return " and ".join(parts) or "nothing"


def check(
    config: BatchConfig | None = None,
    *,
    engine: bool = False,
    unit_names: Sequence[str] | None = None,
) -> CacheCheck:
    """Whether the kernels a warm-up of ``config`` loads are in numba's on-disk cache.

    Reads a few small files; does not import numba. A unit is cached when its
    marker file, written by a successful warm-up into the cache directory, carries the key
    of this numba, Python, CPU and kernel source.

    Args:
        config: The options of the start (None: the defaults).
        engine: Whether the start is an engine's (its own kernels too).
        unit_names: The units to check instead of those of ``config``.
    """
    wanted = (
        tuple(unit_names)
        if unit_names is not None
        else units(config or BatchConfig(), engine=engine)
    )
    if not wanted:
        return CacheCheck((), None, (), "")
    where = cache_dir()
    key = _key()
    missing = []
    for unit in wanted:
        if where is None or _marker_key(where, unit) != key:
            missing.append(unit)
    return CacheCheck(wanted, where, tuple(missing), key)


def _marker_key(where: str, unit: str) -> str | None:
    try:
        with open(os.path.join(where, _MARKER.format(unit=unit)), encoding="utf-8") as f:
            return str(json.load(f).get("key"))
    except (OSError, ValueError, AttributeError):
        return None


def purge_stale(result: CacheCheck) -> int:
    """Remove numba's cache entries of the kernels when they may be stale; returns how many
    files went.

    numba keys a cached kernel on its own source file only: a kernel that calls a function of
    another module keeps the machine code compiled against that function's old version when
    only the other module changed (a developer's tree, an upgrade that leaves the old cache
    behind). The markers key every kernel module's source together, so a marker that carries
    another key than this start's says that some entry may be stale: then every entry in the
    cache directory goes (it holds this package directory's kernels only, see
    :func:`cache_dir`), and every marker with it, and the start compiles what it needs, as it
    would for the modules that changed anyway. A directory without markers (a first start)
    or whose markers all carry this key is left alone. Never raises for a file it cannot
    remove (another start may be removing it too; numba recompiles what it cannot load).
    """
    where = result.cache_dir
    if where is None or not result.key:
        return 0
    try:
        names = os.listdir(where)
    except OSError:
        return 0
    head, _, tail = _MARKER.partition("{unit}")
    units_marked = [
        n[len(head) : -len(tail)] for n in names if n.startswith(head) and n.endswith(tail)
    ]
    if all(_marker_key(where, unit) == result.key for unit in units_marked):
        return 0  # (no marker at all: a first start)
    markers = {_MARKER.format(unit=unit) for unit in units_marked}
    removed = 0
    for name in names:
        if name.endswith((".nbi", ".nbc")) or name in markers:
            try:
                os.remove(os.path.join(where, name))
                removed += 1
            except OSError:
                pass
    return removed


def mark(result: CacheCheck, *, seconds: float | None = None) -> tuple[str, ...]:
    """Write the marker of each missing unit whose kernels are loaded in this process; the
    units marked. Never raises for a cache directory that refuses the file."""
    done = []
    if result.cache_dir is None:
        return ()
    for unit in result.missing:
        if not _loaded(unit):
            continue
        path = os.path.join(result.cache_dir, _MARKER.format(unit=unit))
        body = {
            "key": result.key,
            "unit": unit,
            "seconds": seconds,
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        try:
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(body, f)
            os.replace(tmp, path)  # atomic: a concurrent start reads the old or the new file
            done.append(unit)
        except OSError:
            pass
    return tuple(done)


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Notice:
    """One log line before a warm-up that compiles, one after it; nothing when it loads from
    the cache (a DEBUG line then).

    Args:
        config: The options whose kernels the warm-up loads.
        logger: Where the lines go.
        level: Their level.
        engine: Whether the engine's own kernels load too.
    """

    def __init__(
        self,
        config: BatchConfig,
        logger: logging.Logger = log,
        level: int = logging.WARNING,
        *,
        engine: bool = False,
    ) -> None:
        self._logger = logger
        self._level = level
        self.result: CacheCheck | None = None
        try:
            self.result = check(unit_names=units_now(config, engine=engine))
        except Exception as exc:  # numba missing or broken: the warm-up itself reports it
            logger.debug("cannot tell whether the kernels are cached: %r", exc)
        if self.result is not None and self.result.cold:
            removed = purge_stale(self.result)
            if removed:
                logger.debug(
                    "kernel sources changed since the cache was filled: %d cached files "
                    "removed from %s (numba keys a kernel on its own file only)",
                    removed,
                    self.result.cache_dir,
                )
        self._t0 = time.perf_counter()
        self._cpu0 = _cpu_s()
        if self.result is not None and self.result.cold:
            logger.log(level, "%s", self.result.begin_message())

    def done(self) -> None:
        """Log how long it took (after a compile) and mark what was compiled as cached."""
        wall = time.perf_counter() - self._t0
        cpu = _cpu_s() - self._cpu0
        r = self.result
        if r is None or not r.units:
            return
        if not r.cold:
            self._logger.debug("kernels for %s loaded from the cache in %.1f s", r.label, wall)
            return
        failed = [u for u in r.missing if not _loaded(u)]
        if failed:
            self._logger.log(
                max(self._level, logging.WARNING),
                "kernels for %s did not load (after %.1f s); dedup fails with the reason",
                _label(failed),
                wall,
            )
            return
        mark(r, seconds=wall)
        self._logger.log(self._level, "%s", r.done_message(wall, cpu))


# ---------------------------------------------------------------------- in the background

_CHILD_OPTIONS = (
    "dedup_threshold",
    "dedup_key",
    "normalize",
    "dedup_scope",
    "guard_numbers",
    "dedup_guards",
    "canonicalize",
)
"""The options a background compile passes on (those that decide which kernel versions the
warm-up reaches; the callables never reach it: a start with them has no background unit)."""


class BackgroundCompile:
    """Compile ``unit``'s kernels into numba's on-disk cache in a child process
    (``python -m stratabatch.warm``), so the caller can serve meanwhile; a first start with
    ``cold_start="serve"`` (see docs/coldstart.md). Logs one line when it starts and, through
    :meth:`wait`'s caller, one when done. The child exits when this process does.

    Args:
        config: The options of the start (those in ``_CHILD_OPTIONS`` are passed on).
        unit: The unit to compile (``embedding`` or ``hybrid``).
        logger: Where the lines go.
        level: Their level.
    """

    def __init__(
        self,
        config: BatchConfig,
        unit: str,
        logger: logging.Logger = log,
        level: int = logging.WARNING,
    ) -> None:
        import subprocess

        self.unit = unit
        self._logger = logger
        self._level = level
        options = {name: getattr(config, name) for name in _CHILD_OPTIONS}
        cmd = [
            sys.executable,
            "-m",
            "stratabatch.warm",
            "--strategy",
            unit,
            "--no-engine",
            "--parent",
            str(os.getpid()),
            "--options",
            json.dumps(options),
        ]
        self._err = tempfile.TemporaryFile()
        self._t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._err
        )
        self._cancelled = False
        logger.log(
            level,
            "compiling kernels for strategy=%s in a separate process (pid %d): first start on "
            "this machine, cached after, ~%d s (numba cache: %s); until they load, only "
            "identical requests merge",
            unit,
            self.proc.pid,
            ESTIMATE_S[unit],
            cache_dir(),
        )

    def cancel(self) -> None:
        """Stop the child (the caller closes); :meth:`wait` then returns False."""
        self._cancelled = True
        if self.proc.poll() is None:
            self.proc.kill()

    def wait(self) -> bool:
        """Block until the child is done; True when the cache now holds the unit's kernels.
        On failure logs why (the caller then loads them itself, compiling in its process)."""
        import subprocess

        while True:
            try:
                status = self.proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                continue
        if self._cancelled:
            self._err.close()
            return False
        self._err.seek(0)
        tail = self._err.read()[-2000:].decode(errors="replace").strip().splitlines()
        self._err.close()
        cached = not check(unit_names=(self.unit,)).cold
        if status == 0 and cached:
            return True
        reason = f"exit status {status}" if status != 0 else "its cache is not this process's"
        self._logger.warning(
            "compiling kernels for strategy=%s in a separate process failed (%s%s); "
            "compiling them in this process",
            self.unit,
            reason,
            f": {tail[-1]}" if tail else "",
        )
        return False

    def done_message(self) -> str:
        """The line the caller logs once the kernels are loaded."""
        return (
            f"compiled kernels for strategy={self.unit} in "
            f"{time.perf_counter() - self._t0:.1f} s in a separate process; near-duplicate "
            "dedup is on"
        )

    def log_done(self) -> None:
        """Log :meth:`done_message` at the level of the start line."""
        self._logger.log(self._level, "%s", self.done_message())


def _exit_with_parent(pid: int) -> None:
    """In a background compile's child: exit when the process that started it is gone."""
    import threading

    def watch() -> None:
        while os.getppid() == pid:
            time.sleep(0.5)
        os._exit(3)

    threading.Thread(target=watch, name="stratabatch-parent-watch", daemon=True).start()


# ---------------------------------------------------------------------- ahead of time


def load_engine_kernels() -> None:
    """Load the kernels the engine process calls itself (the counters' atomic increments and
    the rings' fence), with the argument types it calls them with."""
    import numpy as np

    from stratabatch.ipc.atomics import atomic_add, fence

    seq = np.zeros(1, np.int64)
    atomic_add(seq, 0, 1)
    fence()


async def _warm_core(config: BatchConfig) -> None:
    from .processor import BatchProcessor

    async def answer(requests: list[Any]) -> list[Any]:
        return [None] * len(requests)

    options = {name: getattr(config, name) for name in BatchConfig.option_names()}
    async with BatchProcessor(answer, **options) as batch:
        # a first request starts the warm-up, and one that needs the kernels waits for it: a
        # warm-up that failed fails it, so the build step that runs this fails too instead of
        # shipping an empty cache. Then the warm-up is waited for itself (not warm_up(): its
        # own Notice would log a second pair of lines): a request the row lane takes (exact
        # dedup) needs no kernel and does not wait, and the build step would end while the
        # warm-up thread still compiles the hash kernel, reporting it as not loaded
        await batch.process({config.dedup_key: "warm up"}, timeout=600)
        await batch._core.warm_up()


def compile_kernels(
    config: BatchConfig | None = None,
    *,
    engine: bool = True,
    logger: logging.Logger = log,
    level: int = logging.WARNING,
) -> CacheCheck:
    """Load (compiling on a first run) every kernel a start with ``config`` reaches, and mark
    them cached; returns the check made before, which says what was compiled.

    Runs its own event loop: call it from synchronous code (a build step, a CLI).

    Raises:
        StratabatchError: Loading failed (the warm-up's error, as the first request saw it).
    """
    # every kernel here, now: not in a background process (cold_start="serve")
    config = dataclasses.replace(config or BatchConfig(), cold_start="wait")
    notice = Notice(config, logger, level, engine=engine)
    asyncio.run(_warm_core(config))
    if engine:
        load_engine_kernels()
    notice.done()
    return notice.result or CacheCheck((), None, (), "")


def build_parser() -> argparse.ArgumentParser:
    """``python -m stratabatch.warm``'s argument parser."""
    p = CliParser(
        exit_statuses={
            0: "the cache holds every kernel asked for",
            1: "numba cannot cache here, loading failed, or (--check) a kernel is not cached",
            2: "bad arguments",
        },
        prog="python -m stratabatch.warm",
        description="Compile stratabatch's numba kernels into numba's on-disk cache, so that "
        "later starts (embedded or engine) load them instead of compiling. Run it "
        "in a container image's build step, as the user and with the "
        "NUMBA_CACHE_DIR the service runs with.",
    )
    p.add_argument(
        "--strategy",
        action="append",
        choices=STRATEGIES,
        help="a dedup strategy to compile for (repeatable; default: embedding, "
        "the default strategy)",
    )
    p.add_argument("--all", action="store_true", help="every strategy")
    p.add_argument(
        "--no-engine", action="store_true", help="skip the engine process's own kernels (about 1 s)"
    )
    # a background compile's child (BackgroundCompile): exit with the parent; its options
    p.add_argument("--parent", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--options", default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--check",
        action="store_true",
        help="compile nothing: print whether each is cached; exit status 1 when one is not",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m stratabatch.warm``: 0 when the cache holds every kernel
    asked for; 1 when numba cannot cache here, loading failed, or (``--check``) something
    is not cached."""
    args = build_parser().parse_args(argv)
    if args.parent is not None:
        _exit_with_parent(args.parent)
    extra = json.loads(args.options) if args.options else {}
    strategies = (
        list(STRATEGIES) if args.all else list(dict.fromkeys(args.strategy or ["embedding"]))
    )
    wanted = strategies + ([] if args.no_engine else [ENGINE])
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("stratabatch.warm: %(message)s"))
    log.addHandler(handler)
    log.propagate = False
    try:
        before = check(unit_names=wanted)
        if before.cache_dir is None:
            print(
                "stratabatch.warm: numba cannot cache here (no NUMBA_CACHE_DIR, and neither "
                "the package's __pycache__ nor the user cache directory is writable): set "
                "NUMBA_CACHE_DIR to a writable directory",
                file=sys.stderr,
            )
            return 1
        if args.check:
            for unit in wanted:
                state = "not cached" if unit in before.missing else "cached"
                print(f"stratabatch.warm: {unit}: {state}", file=sys.stderr)
        else:
            for i, strategy in enumerate(strategies):
                compile_kernels(
                    BatchConfig(dedup_strategy=strategy, **extra),
                    engine=ENGINE in wanted and i == 0,
                )
        after = check(unit_names=wanted)
        print(
            f"stratabatch.warm: {len(wanted) - len(after.missing)} of {len(wanted)} cached "
            f"({', '.join(wanted)}) in {after.cache_dir}",
            file=sys.stderr,
        )
        return 1 if after.cold else 0
    except Exception as exc:
        print(
            f"stratabatch.warm: loading the kernels failed: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1
    finally:
        log.removeHandler(handler)
        log.propagate = True


__all__ = [
    "ENGINE",
    "STRATEGIES",
    "BackgroundCompile",
    "CacheCheck",
    "Notice",
    "cache_dir",
    "check",
    "estimate_s",
    "compile_kernels",
    "background_unit",
    "load_engine_kernels",
    "main",
    "mark",
    "near_unit",
    "units",
    "units_now",
]


if __name__ == "__main__":
    sys.exit(main())
