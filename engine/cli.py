"""``stratabatch-engine``: run the batching core as a process that many clients share.

Usage::

    stratabatch-engine --handler pkg.module:attr [--name default] [--config FILE.toml]
                       [--max-clients 64] [every BatchProcessor option as --kebab-case]
    stratabatch-engine --compile-only [every BatchProcessor option as --kebab-case]

``attr`` is a batch handler, or a class / zero-argument factory whose instance is the handler
(so a model loads once, in the engine). The option flags come from the one option table in
:mod:`stratabatch.config`; ``--help`` shows each with its default and allowed range. Values
from ``--config`` (a TOML table of options, snake_case or kebab-case keys) are overridden by
flags given on the command line.
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
from collections.abc import Callable, Sequence  # noqa: E402
from typing import Any  # noqa: E402

from .config import BatchConfig  # noqa: E402
from .errors import ConfigError, StratabatchError  # noqa: E402
from .exitcodes import EXIT_CRASH, EXIT_OK, EXIT_USAGE  # noqa: E402

DEFAULT_MAX_CLIENTS = 64
_NONE_WORDS = ("none", "null", "")


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
    if name == "dedup_scope":
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    if name in ("processing_timeout", "dedup_threshold"):
        return None if raw.lower() in _NONE_WORDS else float(raw)
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


def build_parser() -> argparse.ArgumentParser:
    """The engine's argument parser: engine flags, then one flag per BatchConfig option."""
    p = argparse.ArgumentParser(
        prog="stratabatch-engine",
        description="Run a stratabatch engine: one batching and dedup core that client "
        "processes share through stratabatch.connect(NAME).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        "--name",
        default="default",
        help="engine name clients connect to (default: default; 1-48 characters of [A-Za-z0-9_.-])",
    )
    p.add_argument(
        "--config",
        metavar="FILE.toml",
        help="TOML file of options (snake_case or kebab-case keys); flags win",
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
        default=None,
        help="microseconds the engine keeps looking at its rings after activity "
        "before it sleeps (default: 50; range [0, 100000])",
    )
    p.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="lifecycle log level on stderr (default: INFO)",
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


def options_from(args: argparse.Namespace) -> dict[str, Any]:
    """The BatchConfig options: the TOML file's, then the flags given on the command line."""
    defaults = {f.name: f.default for f in dataclasses.fields(BatchConfig)}
    options: dict[str, Any] = {}
    if args.config:
        import tomllib

        try:
            with open(args.config, "rb") as f:
                table = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read --config {args.config}: {exc}", field="config") from exc
        for key, value in table.items():
            name = key.replace("-", "_")
            if name not in defaults:
                raise ConfigError(f"{args.config}: unknown option {key!r}", field=name)
            if name in ("dedup_function", "embedder") and isinstance(value, str):
                value = load_object(value)
            options[name] = value
    for name, default in defaults.items():
        raw = getattr(args, name)
        if raw is None:
            continue
        if isinstance(raw, bool):
            options[name] = raw
            continue
        try:
            options[name] = _parse_value(name, raw, default)
        except ValueError:
            raise ConfigError(
                f"--{name.replace('_', '-')}: cannot parse {raw!r} "
                f"(allowed: {BatchConfig.allowed(name)})",
                field=name,
            ) from None
    return options


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``stratabatch-engine``; returns its exit status (see exitcodes.py)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.handler is None and not args.compile_only:
        parser.error("the following arguments are required: --handler")
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format=f"stratabatch-engine[{os.getpid()}] %(levelname)s %(message)s",
    )
    try:
        config = BatchConfig(**options_from(args))
        if args.compile_only:
            return compile_only(config)
        handler = resolve_handler(load_object(args.handler))
        from .server import Engine, run

        extra = {} if args.spin_us is None else {"spin_us": args.spin_us}
        engine = Engine(handler, config, name=args.name, max_clients=args.max_clients, **extra)
    except (StratabatchError, ValueError) as exc:
        print(f"stratabatch-engine: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    return run(engine)


if __name__ == "__main__":
    sys.exit(main())
