"""stratabatch-engine's options from flags, STRATABATCH_* variables, the config file and the
defaults: precedence, messages naming the source, and --print-config (in-process main())."""

from __future__ import annotations

import os

import pytest

from stratabatch.cli import main
from stratabatch.exitcodes import EXIT_OK, EXIT_USAGE


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in list(os.environ):
        if var.startswith("STRATABATCH_"):
            monkeypatch.delenv(var)


def _print_config(capsys, *argv: str) -> tuple[int, dict[str, tuple[str, str]], str]:
    """Run ``--print-config``; its table as ``{option: (value, from)}``, and stderr."""
    status = main(["--print-config", *argv])
    out, err = capsys.readouterr()
    rows = {}
    for line in out.splitlines()[1:]:
        name, value, source = line.split(None, 2)
        rows[name] = (value, source)
    return status, rows, err


def test_precedence_is_flag_then_env_then_config_then_default(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "engine.toml"
    cfg.write_text("window_ms = 7\nmax-size = 8\nmin_size = 2\nmax_clients = 5\n")
    monkeypatch.setenv("STRATABATCH_WINDOW_MS", "6")
    monkeypatch.setenv("STRATABATCH_MAX_SIZE", "9")
    status, rows, err = _print_config(capsys, "--config", str(cfg), "--max-size", "10")
    assert status == EXIT_OK and err == ""
    assert rows["max_size"] == ("10", "flag --max-size")  # flag > env > config
    assert rows["window_ms"] == ("6.0", "env STRATABATCH_WINDOW_MS")  # env > config
    assert rows["min_size"] == ("2", f"config {cfg}")  # config > default
    assert rows["max_clients"] == ("5", f"config {cfg}")  # process options too
    assert rows["max_wait_ms"] == ("100.0", "default")
    assert rows["config"] == (str(cfg), "flag --config")
    assert rows["handler"] == ("none", "default")


def test_process_options_and_the_config_file_come_from_the_environment(
    tmp_path, monkeypatch, capsys
):
    cfg = tmp_path / "engine.toml"
    cfg.write_text('dedup_strategy = "exact"\n')
    monkeypatch.setenv("STRATABATCH_CONFIG", str(cfg))
    monkeypatch.setenv("STRATABATCH_NAME", "from-env")
    monkeypatch.setenv("STRATABATCH_LOG_LEVEL", "debug")
    monkeypatch.setenv("STRATABATCH_LOG_FORMAT", "json")
    monkeypatch.setenv("STRATABATCH_ENABLE_DEDUP", "off")
    monkeypatch.setenv("STRATABATCH_DEDUP_SCOPE", "model,user")
    status, rows, _ = _print_config(capsys, "--handler", "pkg.mod:fn", "--name", "from-flag")
    assert status == EXIT_OK
    assert rows["handler"] == ("pkg.mod:fn", "flag --handler")  # shown, not imported
    assert rows["name"] == ("from-flag", "flag --name")
    assert rows["config"] == (str(cfg), "env STRATABATCH_CONFIG")
    assert rows["dedup_strategy"] == ("exact", f"config {cfg}")
    assert rows["log_level"] == ("DEBUG", "env STRATABATCH_LOG_LEVEL")
    assert rows["log_format"] == ("json", "env STRATABATCH_LOG_FORMAT")
    assert rows["enable_dedup"] == ("false", "env STRATABATCH_ENABLE_DEDUP")
    assert rows["dedup_scope"] == ("model,user", "env STRATABATCH_DEDUP_SCOPE")


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("STRATABATCH_MAX_SIZE", "many", "STRATABATCH_MAX_SIZE='many': cannot parse 'many'"),
        ("STRATABATCH_WINDOW_MS", "-5", "STRATABATCH_WINDOW_MS='-5': window_ms must be in (0"),
        ("STRATABATCH_ENABLE_DEDUP", "maybe", "STRATABATCH_ENABLE_DEDUP='maybe': cannot parse"),
        ("STRATABATCH_MAX_CLIENTS", "x", "STRATABATCH_MAX_CLIENTS='x': invalid int value"),
        ("STRATABATCH_LOG_LEVEL", "loud", "STRATABATCH_LOG_LEVEL='loud': invalid choice"),
        ("STRATABATCH_NAME", "a b", "STRATABATCH_NAME='a b': engine name must be"),
    ],
)
def test_a_bad_variable_fails_like_a_bad_flag_naming_the_variable(
    monkeypatch, capsys, var, value, expected
):
    monkeypatch.setenv(var, value)
    status, rows, err = _print_config(capsys)
    assert status == EXIT_USAGE and rows == {}
    assert err.startswith(f"stratabatch-engine: {expected}"), err
    assert "Traceback" not in err


def test_a_bad_flag_or_file_value_names_its_source(tmp_path, capsys):
    status, _, err = _print_config(capsys, "--window-ms", "-5")
    assert status == EXIT_USAGE and "--window-ms -5: window_ms must be in (0" in err
    cfg = tmp_path / "engine.toml"
    cfg.write_text("max_size = 0\n")
    status, _, err = _print_config(capsys, "--config", str(cfg))
    assert status == EXIT_USAGE and f"{cfg}: max_size = 0: max_size must be in [1" in err
    cfg.write_text("windows_ms = 5\n")
    status, _, err = _print_config(capsys, "--config", str(cfg))
    assert status == EXIT_USAGE and "unknown option 'windows_ms'; did you mean 'window_ms'?" in err


def test_unknown_variables_warn_only_when_they_look_like_a_typo(monkeypatch, capsys):
    monkeypatch.setenv("STRATABATCH_WINDOWMS", "5")  # a typo
    monkeypatch.setenv("STRATABATCH_HANDLER", "pkg:fn")  # not read from the environment
    monkeypatch.setenv("STRATABATCH_PERF_BACKEND", "{}")  # another tool's: not mentioned
    monkeypatch.setenv("STRATABATCH_TEST_RUN_TAG", "x")
    monkeypatch.setenv("STRATABATCH_ENGINE", "api")  # examples/fastapi_app.py's
    status, rows, err = _print_config(capsys)
    assert status == EXIT_OK and rows["window_ms"] == ("50.0", "default")
    lines = err.splitlines()
    assert (
        "stratabatch-engine: warning: STRATABATCH_WINDOWMS is not an option and is ignored; "
        "did you mean STRATABATCH_WINDOW_MS?"
    ) in lines
    assert any("STRATABATCH_HANDLER is ignored" in line for line in lines)
    assert len(lines) == 2, err


def test_print_config_starts_nothing(tmp_path, capsys, monkeypatch):
    # a handler that does not exist: --print-config never imports it
    status, rows, _ = _print_config(capsys, "--handler", "no.such.module:fn", "--name", "x")
    assert status == EXIT_OK and rows["name"] == ("x", "flag --name")


def test_spin_us_default_is_the_rings_own():
    from stratabatch.cli import DEFAULT_SPIN_US
    from stratabatch.ipc.wait import DEFAULT_SPIN_US as RING_DEFAULT

    assert DEFAULT_SPIN_US == RING_DEFAULT
