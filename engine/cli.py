"""``stratabatch-engine``: run the batching core as a process that many clients share.

Usage::

    stratabatch-engine --handler pkg.module:attr [--name default] [--config FILE.toml]
                       [--max-clients 64] [every BatchProcessor option as --kebab-case]
    stratabatch-engine --compile-only [every BatchProcessor option as --kebab-case]

``attr`` is a batch handler, or a class / zero-argument factory whose instance is the handler
(so a model loads once, in the engine). The option flags come from the one option table in
:mod:`stratabatch.config`; ``--help`` shows each with its default and allowed range. Every
option can also come from a ``STRATABATCH_<OPTION>`` variable or the ``--config`` TOML file:
flag > environment > config file > default (:mod:`stratabatch.settings`); ``--print-config``
shows what is in force and where each value came from.
"""

from __future__ import annotations

import os

# BLAS threads are fixed when numpy loads; one thread is faster and steadier for the engine's
# small matrix products on few cores (DESIGN.md, "Kernels"). Set before anything imports numpy.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import importlib  # noqa: E402
import inspect  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable, Mapping, Sequence  # noqa: E402
from typing import Any  # noqa: E402

from . import logs  # noqa: E402
from . import settings as sources  # noqa: E402
from .cliargs import CliParser  # noqa: E402
from .config import BatchConfig  # noqa: E402
from .errors import ConfigError, StratabatchError  # noqa: E402
from .exitcodes import EXIT_CRASH, EXIT_OK, EXIT_USAGE, MEANINGS  # noqa: E402

DEFAULT_MAX_CLIENTS = 64
DEFAULT_SPIN_US = 50.0  # stratabatch.ipc.wait.DEFAULT_SPIN_US (a test keeps them equal)
_NONE_WORDS = ("none", "null", "")
# Flags that are not options: never read from the environment or the config file (why, for
# the warning a STRATABATCH_ variable of that name gets).
_NOT_OPTIONS = {
    "handler": "the handler is named only on the command line (--handler)",
    "compile_only": "--compile-only is an action, given as a flag",
    "print_config": "--print-config is an action, given as a flag",
}
_UNSET = object()  # a flag's default while parsing: tells "given" from "defaulted"


def load_object(spec: str) -> Any:
    """Import ``pkg.module:attr`` (attr may be dotted) and return the attribute.

    Raises:
        ConfigError: The spec is malformed, the module cannot be imported, or has no attr.
    """
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ConfigError(f"expected 'pkg.module:attr', got {spec!r}", field="handler")
    mod_name, attr = spec.split(":")
    if not mod_name or not attr:
        raise ConfigError(f"expected 'pkg.module:attr', got {spec!r}", field="handler")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # like uvicorn: the current directory is importable
    try:
        obj: Any = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ConfigError(
            f"cannot import {mod_name!r} (from {spec!r}): {exc}", field="handler"
        ) from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{mod_name!r} has no attribute {attr!r}", field="handler") from None
    return obj


def resolve_handler(obj: Any) -> Callable[..., Any]:
    """Turn the ``--handler`` target into the handler.

    A class is instantiated with no arguments (its instance must be callable); a callable that
    cannot take one positional argument but can be called with none is a factory and is
    called once; anything else callable is the handler itself.

    Raises:
        ConfigError: The target (or what its factory returned) is not callable.
    """
    if inspect.isclass(obj):
        try:
            obj = obj()
        except TypeError as exc:
            raise ConfigError(
                f"handler class {obj.__name__} must be constructible without arguments: {exc}",
                field="handler",
            ) from exc
    elif callable(obj) and _is_factory(obj):
        obj = obj()
    if not callable(obj):
        raise ConfigError(
            f"the handler must be callable (list[request] -> list[result]), got "
            f"{type(obj).__name__}",
            field="handler",
        )
    return obj


def _is_factory(fn: Any) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    try:
        sig.bind(None)
        return False  # takes one argument: a handler
    except TypeError:
        pass
    try:
        sig.bind()
        return True
    except TypeError:
        return False


# ------------------------------------------------------------------------- flags


def _parse_value(name: str, raw: str, default: Any) -> Any:
    """Turn a flag's text into the option's type (validation stays BatchConfig's)."""
    if name in ("dedup_function", "embedder"):
        return None if raw.lower() in _NONE_WORDS else load_object(raw)
    if name in ("dedup_scope", "dedup_guards"):
        return tuple(p.strip() for p in raw.split(",") if p.strip() and p.strip() != "none")
    if name in ("processing_timeout", "dedup_threshold"):
        return None if raw.lower() in _NONE_WORDS else float(raw)
    if isinstance(default, bool):
        return sources.parse_bool(raw)
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


def build_parser() -> argparse.ArgumentParser:
    """The engine's argument parser: engine flags, then one flag per BatchConfig option."""
    p = CliParser(
        prog="stratabatch-engine",
        description="Run a stratabatch engine: one batching and dedup core that client "
        "processes share through stratabatch.connect(NAME).\n\n"
        "Every option (but --handler) can also be set as a STRATABATCH_<OPTION> variable "
        "(STRATABATCH_WINDOW_MS=5) or in the --config file.\n"
        "Precedence: flag > environment > config file > default; --print-config shows "
        "the options in force and where each came from.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        exit_statuses=MEANINGS,
    )
    p.add_argument(
        "--handler",
        metavar="MODULE:ATTR",
        help="batch handler, or a class / zero-argument factory returning one "
        "(required, except with --compile-only)",
    )
    p.add_argument(
        "--compile-only",
        action="store_true",
        help="compile the numba kernels the options reach into numba's on-disk "
        "cache and exit (0: cached; 1: failed, or numba cannot cache here); "
        "for a container image's build step (docs/coldstart.md)",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the options in force and where each came from (flag, env, config, "
        "default), then exit 0 without starting",
    )
    p.add_argument(
        "--name",
        default="default",
        help="engine name clients connect to (default: default; 1-48 characters of [A-Za-z0-9_.-])",
    )
    p.add_argument(
        "--config",
        metavar="FILE.toml",
        help="TOML file of options (snake_case or kebab-case keys); flags and "
        "STRATABATCH_* variables win",
    )
    p.add_argument(
        "--max-clients",
        type=int,
        default=DEFAULT_MAX_CLIENTS,
        help=f"client processes connected at once (default: {DEFAULT_MAX_CLIENTS}; "
        "range [1, 4096])",
    )
    p.add_argument(
        "--spin-us",
        type=float,
        default=DEFAULT_SPIN_US,
        help="microseconds the engine keeps looking at its rings after activity "
        "before it sleeps (default: 50; range [0, 100000])",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (default: 0, off; "
        "needs pip install 'stratabatch[metrics]'; docs/metrics.md)",
    )
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address the metrics port binds (default: 127.0.0.1, this machine only; "
        "0.0.0.0 serves every interface)",
    )
    p.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=logs.LEVELS,
        help="least level of the log lines on stderr (default: INFO; DEBUG adds each merge "
        "a guard vetoed); docs/logging.md",
    )
    p.add_argument(
        "--log-format",
        default="text",
        choices=logs.FORMATS,
        help="text: 'stratabatch-engine[PID] LEVEL message' lines; json: one JSON object a "
        "line (time, level, logger, message, pid, exception) (default: text)",
    )
    g = p.add_argument_group("batching options (as BatchProcessor's keyword arguments)")
    defaults = {f.name: f.default for f in dataclasses.fields(BatchConfig)}
    for name in BatchConfig.option_names():
        default = defaults[name]
        flag = "--" + name.replace("_", "-")
        shown = (
            "None"
            if default is None
            else (",".join(default) or "()")
            if isinstance(default, tuple)
            else default
        )
        help_text = f"default: {shown}; allowed: {BatchConfig.allowed(name)}"
        if name in ("dedup_function", "embedder"):
            help_text += " (as MODULE:ATTR)"
        if name == "dedup_scope":
            help_text += " (comma-separated)"
        if isinstance(default, bool):
            g.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            g.add_argument(flag, dest=name, default=None, metavar="VALUE", help=help_text)
    return p


def parse_command_line(
    argv: Sequence[str] | None = None,
) -> tuple[argparse.Namespace, set[str]]:
    """Parse the command line; also return the options it gave (as opposed to defaulted)."""
    parser = build_parser()
    defaults = vars(parser.parse_args([]))
    parser.set_defaults(**dict.fromkeys(defaults, _UNSET))
    args = parser.parse_args(argv)
    given = set()
    for dest, default in defaults.items():
        if getattr(args, dest) is _UNSET:
            setattr(args, dest, default)
        else:
            given.add(dest)
    return args, given


def settings_from(
    args: argparse.Namespace,
    given: set[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[dict[str, sources.Setting], list[str]]:
    """Every option in force and where it came from: flag > ``environ`` > config file >
    default (:mod:`stratabatch.settings`); and the warnings about ``STRATABATCH_*``
    variables that look mistyped.

    Args:
        args: The parsed command line.
        given: The options the command line gave (:func:`parse_command_line`); None counts
            every batching option that is not None, and every process option, as given.
        environ: The environment (None: none).

    Raises:
        ConfigError: A value cannot be read; the message names its flag, variable or file.
    """
    defaults = vars(build_parser().parse_args([]))
    batch = {f.name: f.default for f in dataclasses.fields(BatchConfig)}
    process = [d for d in defaults if d not in batch and d not in _NOT_OPTIONS]
    if given is None:
        given = {d for d in defaults if d not in batch or getattr(args, d) is not None}
    flags: dict[str, Any] = {}
    flag_text: dict[str, str] = {}
    for name in process:
        if name in given:
            flags[name] = getattr(args, name)
    for name, default in batch.items():
        raw = getattr(args, name)
        if name not in given or raw is None:
            continue
        if isinstance(raw, bool):
            flags[name] = raw
            continue
        flag_text[name] = raw
        try:
            flags[name] = _parse_value(name, raw, default)
        except ValueError:
            raise ConfigError(
                f"--{name.replace('_', '-')}: cannot parse {raw!r} "
                f"(allowed: {BatchConfig.allowed(name)})",
                field=name,
            ) from None
    names = process + list(batch)
    env, warnings = sources.read_env(
        environ or {},
        names,
        ignored={sources.env_var(n): why for n, why in _NOT_OPTIONS.items()},
    )
    config_path = flags.get("config") or env.get("config") or ""
    in_file = [n for n in names if n != "config"]
    config = sources.read_config(config_path, in_file) if config_path else {}

    def from_text(name: str, text: str) -> Any:
        if name in batch:
            try:
                return _parse_value(name, text, batch[name])
            except ValueError:
                raise ValueError(
                    f"cannot parse {text!r} (allowed: {BatchConfig.allowed(name)})"
                ) from None
        if isinstance(defaults[name], bool):
            return sources.parse_bool(text)
        p = build_parser()
        p.exit_on_error = False
        try:
            return getattr(p.parse_args([f"{sources.flag_of(name)}={text}"]), name)
        except argparse.ArgumentError as exc:
            raise ValueError(exc.message) from None

    def from_config(name: str, value: Any) -> Any:
        if name in batch:
            if name in ("dedup_function", "embedder") and isinstance(value, str):
                return load_object(value)
            return value
        if isinstance(defaults[name], bool) or isinstance(value, bool):
            if not isinstance(value, bool) or not isinstance(defaults[name], bool):
                raise ValueError(f"expected {type(defaults[name]).__name__}, got {value!r}")
            return value
        return from_text(name, str(value))

    found = sources.resolve(
        names,
        defaults={**defaults, **batch},
        flags=flags,
        flag_text=flag_text,
        env=env,
        config=config,
        config_path=config_path,
        from_text=from_text,
        from_config=from_config,
    )
    return found, warnings


def options_from(
    args: argparse.Namespace,
    given: set[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The BatchConfig options that are not at their default: the config file's, then the
    environment's, then the flags given on the command line (:func:`settings_from`)."""
    found, _ = settings_from(args, given, environ)
    batch = BatchConfig.option_names()
    return {n: found[n].value for n in batch if found[n].source != sources.DEFAULT}


def where_from(error: BaseException, found: Mapping[str, sources.Setting]) -> str:
    """``error``'s message, prefixed with where the option it names came from (when not a
    default): ``STRATABATCH_WINDOW_MS='-5': window_ms must be in (0, 60000], got -5.0``."""
    message = str(error)
    field = getattr(error, "field", None) or message.split(" ", 1)[0]
    return sources.label(message, field, found)


def compile_only(config: BatchConfig) -> int:
    """``--compile-only``: load (compiling on a first run) every kernel an engine with
    ``config`` reaches, so that its start loads them from numba's cache; the exit status.

    The handler is not imported: a build step need not be able to load the model behind it.
    """
    from .warm import compile_kernels

    log = logging.getLogger("stratabatch.engine")
    try:
        result = compile_kernels(config, engine=True, logger=log, level=logging.INFO)
    except Exception as exc:
        log.error("compiling the kernels failed: %s: %s", type(exc).__name__, exc)
        return EXIT_CRASH
    if result.units and result.cache_dir is None:
        log.error(
            "numba cannot cache the kernels here (no NUMBA_CACHE_DIR, and neither the "
            "package's __pycache__ nor the user cache directory is writable): set "
            "NUMBA_CACHE_DIR to a writable directory"
        )
        return EXIT_CRASH
    log.info("compile-only: %s %s", result.label, "compiled" if result.cold else "already cached")
    return EXIT_OK


def print_config(
    handler: str | None, found: Mapping[str, sources.Setting], warnings: Sequence[str]
) -> int:
    """``--print-config``: check the options, print them with their sources (the handler as
    given: not imported); the exit status."""
    for w in warnings:
        print(f"stratabatch-engine: warning: {w}", file=sys.stderr)
    try:
        BatchConfig(**{n: found[n].value for n in BatchConfig.option_names()})
        from .wire import check_name

        check_name(found["name"].value)
    except (StratabatchError, ValueError) as exc:
        print(f"stratabatch-engine: {where_from(exc, found)}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    named = sources.Setting("handler", handler, sources.FLAG, "--handler", handler)
    shown = [named if handler else sources.Setting("handler", None, sources.DEFAULT)]
    sys.stdout.write(sources.table([*shown, *found.values()]))
    sys.stdout.flush()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``stratabatch-engine``; returns its exit status (see exitcodes.py)."""
    args, given = parse_command_line(argv)
    try:
        found, warnings = settings_from(args, given, os.environ)
    except ConfigError as exc:
        print(f"stratabatch-engine: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    for name, setting in found.items():
        setattr(args, name, setting.value)
    if args.print_config:
        return print_config(args.handler, found, warnings)
    if args.handler is None and not args.compile_only:
        build_parser().error("the following arguments are required: --handler")
    logs.configure(args.log_level, args.log_format)
    log = logging.getLogger(logs.ENGINE)
    for w in warnings:
        log.warning("%s", w)
    try:
        options = {n: found[n].value for n in BatchConfig.option_names()}
        config = BatchConfig(**options)
        if args.compile_only:
            return compile_only(config)
        handler = resolve_handler(load_object(args.handler))
        from .server import Engine, run

        extra = {} if args.spin_us is None else {"spin_us": args.spin_us}
        extra.update(metrics_port=args.metrics_port, metrics_host=args.metrics_host)
        engine = Engine(handler, config, name=args.name, max_clients=args.max_clients, **extra)
    except (StratabatchError, ValueError) as exc:
        if args.log_format == "json":
            log.error("%s", where_from(exc, found))
        else:
            print(f"stratabatch-engine: {where_from(exc, found)}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    return run(engine)


if __name__ == "__main__":
    sys.exit(main())
