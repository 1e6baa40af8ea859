"""stratabatch-engine's command line: flags from the option table, --config, --handler."""

from __future__ import annotations

import dataclasses

import pytest

from stratabatch.cli import build_parser, load_object, options_from, resolve_handler
from stratabatch.config import BatchConfig
from stratabatch.errors import ConfigError


def test_every_option_is_a_flag_and_help_shows_default_and_range():
    text = build_parser().format_help()
    for f in dataclasses.fields(BatchConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in text, flag
        assert BatchConfig.allowed(f.name).split()[0] in text
    assert "default: 50.0; allowed: (0, 60000] ms" in " ".join(text.split())
    assert "--max-clients" in text and "default: 64" in text


def test_flags_parse_into_validated_options(tmp_path):
    args = build_parser().parse_args(
        [
            "--handler",
            "x:y",
            "--window-ms",
            "20",
            "--max-size",
            "64",
            "--no-enable-dedup",
            "--dedup-scope",
            "model, user",
            "--processing-timeout",
            "none",
            "--on-full",
            "reject",
        ]
    )
    opts = options_from(args)
    assert opts == {
        "window_ms": 20.0,
        "max_size": 64,
        "enable_dedup": False,
        "dedup_scope": ("model", "user"),
        "processing_timeout": None,
        "on_full": "reject",
    }
    BatchConfig(**opts)
    with pytest.raises(ConfigError, match="window_ms must be in"):
        BatchConfig(
            **options_from(build_parser().parse_args(["--handler", "x:y", "--window-ms", "-5"]))
        )
    with pytest.raises(ConfigError, match="cannot parse"):
        options_from(build_parser().parse_args(["--handler", "x:y", "--max-size", "many"]))


def test_config_file_then_flags(tmp_path):
    cfg = tmp_path / "engine.toml"
    cfg.write_text('window-ms = 25\nmax_size = 8\ndedup_strategy = "exact"\n')
    args = build_parser().parse_args(["--handler", "x:y", "--config", str(cfg), "--max-size", "16"])
    assert options_from(args) == {"window_ms": 25, "max_size": 16, "dedup_strategy": "exact"}
    cfg.write_text("no_such_option = 1\n")
    with pytest.raises(ConfigError, match="unknown option"):
        options_from(build_parser().parse_args(["--handler", "x:y", "--config", str(cfg)]))


class _Model:
    def __call__(self, requests):
        return requests


def _factory():
    return _Model()


def _handler(requests):
    return requests


def test_handler_target_may_be_a_function_a_class_or_a_factory():
    assert resolve_handler(_handler) is _handler
    assert isinstance(resolve_handler(_Model), _Model)
    assert isinstance(resolve_handler(_factory), _Model)
    with pytest.raises(ConfigError, match="must be callable"):
        resolve_handler(42)
    from stratabatch.wire import socket_path

    assert load_object("stratabatch.wire:socket_path") is socket_path
    for bad in ("nocolon", "stratabatch.wire:", "no_such_module_xyz:f", "stratabatch.wire:nope"):
        with pytest.raises(ConfigError):
            load_object(bad)
