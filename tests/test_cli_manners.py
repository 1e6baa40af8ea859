"""Every stratabatch command: --version, a suggestion for a mistyped flag, and its exit
statuses at the end of --help."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

import stratabatch
from stratabatch import exitcodes


def _engine(argv):
    from stratabatch.cli import main

    return main(argv)


def _monitor(argv):
    from stratabatch.monitor.cli import main

    return main(argv)


def _perf(argv):
    from stratabatch.perf.cli import main

    return main(argv)


def _warm(argv):
    from stratabatch.warm import main

    return main(argv)


COMMANDS = {
    "stratabatch-engine": (_engine, "--window_ms", "--window-ms"),
    "stratabatch-monitor": (_monitor, "--jsn", "--json"),
    "stratabatch-perf": (_perf, "--quik", "--quick"),
    "python -m stratabatch.warm": (_warm, "--chek", "--check"),
}


def _run(capsys, fn, argv) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        fn(argv)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.mark.parametrize("prog", list(COMMANDS))
def test_version(capsys, prog):
    status, out, _ = _run(capsys, COMMANDS[prog][0], ["--version"])
    assert status == 0 and out == f"{prog} {stratabatch.__version__}\n"


def test_the_version_is_the_installed_distributions():
    assert stratabatch.__version__ == importlib.metadata.version("stratabatch")


@pytest.mark.parametrize("prog", list(COMMANDS))
def test_a_mistyped_flag_gets_a_suggestion(capsys, prog):
    fn, typo, meant = COMMANDS[prog]
    status, _, err = _run(capsys, fn, [typo])
    assert status == 2
    assert f"{prog}: error: unrecognized arguments: {typo} (did you mean {meant}?)" in err


def test_suggestions_for_several_flags_and_none_for_nonsense(capsys):
    status, _, err = _run(capsys, _engine, ["--max-sise", "3", "--dedup-stratgy", "exact"])
    assert status == 2
    assert "(did you mean --max-size for --max-sise, --dedup-strategy for --dedup-stratgy?)" in err
    status, _, err = _run(capsys, _engine, ["--zzzzqqq"])
    assert status == 2 and "unrecognized arguments: --zzzzqqq\n" in err
    assert "did you mean" not in err


@pytest.mark.parametrize("prog", list(COMMANDS))
def test_help_ends_with_the_exit_statuses(capsys, prog):
    status, out, _ = _run(capsys, COMMANDS[prog][0], ["--help"])
    assert status == 0
    tail = out[out.rindex("\nexit status") + 1 :]
    codes = [int(line.split()[0]) for line in tail.splitlines()[1:] if line[:5].strip()]
    assert codes[0] == 0 and 2 in codes
    if prog == "stratabatch-engine":
        assert codes == sorted(exitcodes.MEANINGS) == list(range(7))


def test_the_console_script_answers_version():
    proc = subprocess.run(
        [sys.executable, "-m", "stratabatch.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("stratabatch-engine ")
