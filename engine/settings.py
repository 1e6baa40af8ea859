"""Where each of the engine's options comes from: a flag, the environment, the config file, or
its default, in that order of precedence.

``stratabatch-engine`` reads every option (the batching options of the table in
:mod:`stratabatch.config` and the process options ``--name``, ``--max-clients``,
``--log-level``...) from the first of these that sets it:

1. the flag on the command line (``--window-ms 5``);
2. the variable ``STRATABATCH_<OPTION>`` (``STRATABATCH_WINDOW_MS=5``), the option's name in
   upper case;
3. the TOML file named by ``--config`` or ``STRATABATCH_CONFIG`` (``window_ms = 5``);
4. the default.

A variable's text is read as the flag's would be; a bad one fails the start with the same
message as a bad flag, naming the variable. A ``STRATABATCH_*`` variable that is not an option
is ignored (other tools, and stratabatch's own perf and test helpers, use the prefix too),
with a warning when its name is close to an option's, as a typo would be.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .cliargs import suggest
from .errors import ConfigError

ENV_PREFIX = "STRATABATCH_"
FLAG, ENV, CONFIG, DEFAULT = "flag", "env", "config", "default"
SOURCES = (FLAG, ENV, CONFIG, DEFAULT)
"""The sources of an option, strongest first."""

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Setting:
    """One option in force and where it came from."""

    name: str
    """The option's name (``window_ms``)."""
    value: Any
    """Its value, converted (what the engine uses)."""
    source: str
    """``flag``, ``env``, ``config`` or ``default``."""
    origin: str = ""
    """The flag, variable or file that set it (empty for a default)."""
    raw: Any = None
    """What that source held: the flag's or variable's text, the file's TOML value."""

    def where(self) -> str:
        """``env STRATABATCH_WINDOW_MS``, ``flag --window-ms``, ``config FILE``, ``default``."""
        return f"{self.source} {self.origin}" if self.origin else self.source

    def shown(self) -> str:
        """The value as ``--print-config`` shows it: as a flag would take it."""
        v = self.value
        if isinstance(self.raw, str) and not isinstance(v, (str, int, float, tuple)):
            return self.raw  # a MODULE:ATTR spec: the object it named prints badly
        if v is None:
            return "none"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, tuple):
            return ",".join(v) or "()"
        return str(v)


def env_var(name: str) -> str:
    """The variable of option ``name``: ``window_ms`` -> ``STRATABATCH_WINDOW_MS``."""
    return ENV_PREFIX + name.upper()


def flag_of(name: str) -> str:
    """The flag of option ``name``: ``window_ms`` -> ``--window-ms``."""
    return "--" + name.replace("_", "-")


def parse_bool(text: str) -> bool:
    """``1 true yes on`` / ``0 false no off`` (any case) as a bool.

    Raises:
        ValueError: Anything else.
    """
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"expected one of {', '.join(_TRUE + _FALSE)}, got {text!r}")


def read_env(
    environ: Mapping[str, str], names: Iterable[str], ignored: Mapping[str, str] | None = None
) -> tuple[dict[str, str], list[str]]:
    """The options set in ``environ``, and a warning for each likely typo.

    Args:
        environ: The environment (``os.environ``).
        names: The options a variable may set.
        ignored: Variables that look like options but are not read from the environment,
            each with the reason (``STRATABATCH_HANDLER``: the handler is named with a flag).

    Returns:
        ``{option: text}`` for each option's variable that is set, and the warnings: for a
        variable in ``ignored``, and for an unknown ``STRATABATCH_*`` variable whose name is
        close to an option's. Other unknown ones are not mentioned.
    """
    wanted = {env_var(n): n for n in names}
    ignored = ignored or {}
    found: dict[str, str] = {}
    warnings: list[str] = []
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX):
            continue
        if var in wanted:
            found[wanted[var]] = environ[var]
        elif var in ignored:
            warnings.append(f"{var} is ignored: {ignored[var]}")
        else:  # the names after the prefix decide (the shared prefix would make all close)
            close = suggest(
                var[len(ENV_PREFIX) :], [v[len(ENV_PREFIX) :] for v in wanted], cutoff=0.8
            )
            if close is not None:
                warnings.append(
                    f"{var} is not an option and is ignored; did you mean {ENV_PREFIX}{close}?"
                )
    return found, warnings


def read_config(path: str, names: Iterable[str]) -> dict[str, Any]:
    """The options of a TOML config file, keys in snake_case (``window-ms`` is accepted).

    Raises:
        ConfigError: The file cannot be read or parsed, or names an unknown option (with the
            closest known one).
    """
    import tomllib

    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read --config {path}: {exc}", field="config") from exc
    known = set(names)
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in known:
            close = suggest(name, known)
            hint = f"; did you mean {close!r}?" if close else ""
            raise ConfigError(f"{path}: unknown option {key!r}{hint}", field=name)
        out[name] = value
    return out


def resolve(
    names: Iterable[str],
    *,
    defaults: Mapping[str, Any],
    flags: Mapping[str, Any],
    flag_text: Mapping[str, str] | None = None,
    env: Mapping[str, str],
    config: Mapping[str, Any],
    config_path: str = "",
    from_text: Callable[[str, str], Any],
    from_config: Callable[[str, Any], Any],
) -> dict[str, Setting]:
    """Each option's setting: the flag's, else the variable's, else the file's, else the
    default.

    Args:
        names: The options, in the order to report them.
        defaults: Each option's default.
        flags: The options given on the command line, values already converted.
        flag_text: Their text as given, where it differs from the value (for messages).
        env: The options' variables that are set (their text).
        config: The config file's options (TOML values).
        config_path: That file, for messages.
        from_text: Converts a variable's text to option ``name``'s value (as the flag's text).
        from_config: Converts a TOML value to option ``name``'s value.

    Raises:
        ConfigError: A variable's or the file's value cannot be converted; the message names
            the variable (``STRATABATCH_MAX_SIZE='many': ...``) or the file.
    """
    out: dict[str, Setting] = {}
    for name in names:
        if name in flags:
            raw = (flag_text or {}).get(name)
            out[name] = Setting(name, flags[name], FLAG, flag_of(name), raw)
        elif name in env:
            text = env[name]
            try:
                value = from_text(name, text)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{env_var(name)}={text!r}: {exc}", field=name) from None
            out[name] = Setting(name, value, ENV, env_var(name), text)
        elif name in config:
            raw = config[name]
            try:
                value = from_config(name, raw)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{config_path}: {name} = {raw!r}: {exc}", field=name) from None
            out[name] = Setting(name, value, CONFIG, config_path, raw)
        else:
            out[name] = Setting(name, defaults[name], DEFAULT)
    return out


def label(message: str, field: str | None, settings: Mapping[str, Setting]) -> str:
    """``message`` (about option ``field``), prefixed with where that option's value came
    from when not a default: ``STRATABATCH_WINDOW_MS='-5': window_ms must be ...``,
    ``--window-ms -5: ...``, ``FILE: window_ms = -5: ...``."""
    s = settings.get(field or "")
    if s is None or s.source == DEFAULT:
        return message
    if s.source == CONFIG:
        where = f"{s.origin}: {s.name} = {s.raw!r}"
    elif s.source == ENV:
        where = f"{s.origin}={s.raw!r}"
    else:
        where = f"{s.origin} {s.raw if isinstance(s.raw, str) else s.shown()}"
    return f"{where}: {message}"


def table(settings: Iterable[Setting]) -> str:
    """The ``--print-config`` table: option, value, and where it came from, one a line."""
    rows = [(s.name, s.shown(), s.where()) for s in settings]
    w0 = max([len("option")] + [len(r[0]) for r in rows])
    w1 = min(40, max([len("value")] + [len(r[1]) for r in rows]))
    lines = [f"{'option':<{w0}}  {'value':<{w1}}  from"]
    lines += [f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
    return "\n".join(lines) + "\n"


__all__ = [
    "CONFIG",
    "DEFAULT",
    "ENV",
    "ENV_PREFIX",
    "FLAG",
    "SOURCES",
    "Setting",
    "env_var",
    "flag_of",
    "label",
    "parse_bool",
    "read_config",
    "read_env",
    "resolve",
    "table",
]
