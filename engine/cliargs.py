"""The command-line manners every stratabatch command shares.

:class:`CliParser` is :class:`argparse.ArgumentParser` with three additions, so that
``stratabatch-engine``, ``stratabatch-monitor``, ``stratabatch-perf`` and
``python -m stratabatch.warm`` behave alike:

* ``--version`` prints ``PROG VERSION`` and exits 0;
* a mistyped flag gets a suggestion (``unrecognized arguments: --window_ms 5; did you mean
  --window-ms?``), from :func:`suggest` (argparse on Python 3.11 suggests nothing);
* ``--help`` ends with the command's exit statuses, one a line.

Importing this module is cheap (argparse only; difflib loads when a suggestion is needed).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NoReturn

from . import __version__

__all__ = ["CliParser", "suggest"]

_SHORT_USAGE_LINES = 6  # a longer usage is left out of an error message


def suggest(word: str, choices: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The choice closest to ``word`` (difflib's ratio at least ``cutoff``), or None.

    Underscores and hyphens count as the same character, so ``--window_ms`` finds
    ``--window-ms`` and ``STRATABATCH_WINDOW-MS`` finds ``STRATABATCH_WINDOW_MS``.
    """
    import difflib

    by_key: dict[str, str] = {}
    for choice in choices:
        by_key.setdefault(choice.replace("_", "-").lower(), choice)
    found = difflib.get_close_matches(
        word.replace("_", "-").lower(), list(by_key), n=1, cutoff=cutoff
    )
    return by_key[found[0]] if found else None


class CliParser(argparse.ArgumentParser):
    """An argument parser with ``--version``, flag suggestions and an exit-status section.

    Args:
        *args: As :class:`argparse.ArgumentParser`.
        exit_statuses: Status -> what it means, printed at the end of ``--help``.
        exit_title: The heading of that section.
        **kwargs: As :class:`argparse.ArgumentParser`.
    """

    def __init__(
        self,
        *args: Any,
        exit_statuses: Mapping[int, str] | None = None,
        exit_title: str = "exit status",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.exit_statuses = dict(exit_statuses or {})
        self.exit_title = exit_title
        self.add_argument(
            "--version",
            action="version",
            version=f"%(prog)s {__version__}",
            help="print the version and exit",
        )

    def format_help(self) -> str:
        """argparse's help, then the exit statuses (one a line, wrapped under their text)."""
        text = super().format_help()
        if not self.exit_statuses:
            return text
        import textwrap

        width = max(40, min(100, _columns()) - 2)
        lines = [f"\n{self.exit_title}:"]
        for status, meaning in self.exit_statuses.items():
            lines.extend(
                textwrap.wrap(
                    meaning,
                    width=width,
                    initial_indent=f"  {status:>3}  ",
                    subsequent_indent=" " * 7,
                )
            )
        return text + "\n".join(lines) + "\n"

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """As argparse's, but an unknown flag's error suggests the closest known flag."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self.unrecognized(extras)
        return parsed

    def unrecognized(self, extras: Sequence[str]) -> NoReturn:
        """Exit with status 2: ``unrecognized arguments: ...``, with a suggestion per flag."""
        message = "unrecognized arguments: " + " ".join(extras)
        known = [s for s in self._option_string_actions if s.startswith("--")]
        hints: list[tuple[str, str]] = []
        for arg in extras:
            if not arg.startswith("-") or arg == "-":
                continue
            flag = arg.split("=", 1)[0]
            if flag in self._option_string_actions:
                continue
            close = suggest(flag if flag.startswith("--") else "-" + flag, known)
            if close is not None:
                hints.append((flag, close))
        if len(hints) == 1:
            message += f" (did you mean {hints[0][1]}?)"
        elif hints:
            message += " (did you mean " + ", ".join(f"{c} for {f}" for f, c in hints) + "?)"
        self.error(message)

    def error(self, message: str) -> NoReturn:
        """Exit with status 2 after printing ``PROG: error: message``: under the usage when
        it is short, else with a pointer to ``--help`` (a long usage would bury the error)."""
        usage = self.format_usage()
        if usage.count("\n") <= _SHORT_USAGE_LINES:
            self._print_message(usage, sys.stderr)
        else:
            message += f"\n(see {self.prog} --help)"
        self.exit(2, f"{self.prog}: error: {message}\n")


def _columns() -> int:
    try:
        import shutil

        return shutil.get_terminal_size().columns
    except (OSError, ValueError):  # pragma: no cover - no terminal size at all
        return 80
