"""Types a user's checker sees: connect()'s two clients, a generic BatchProcessor, typed
options, the decorator; and that mypy finds the package as the README installs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import stratabatch
from stratabatch import BatchConfig, BatchOptions, BatchProcessor

ROOT = Path(__file__).resolve().parents[1]
USER = ROOT / "tests" / "typing_user.py"
LINE = re.compile(r"^[^:]+:(\d+): (error|note): (.*?)(?:  \[([\w-]+)\])?$")


def test_batch_options_has_exactly_the_option_table_keys():
    assert set(BatchOptions.__annotations__) == set(BatchConfig.option_names())
    assert BatchOptions.__optional_keys__ == frozenset(BatchConfig.option_names())
    assert not BatchOptions.__required_keys__


def test_generic_processor_is_the_same_class_at_run_time():
    async def handler(requests: list[dict]) -> list[int]:
        return [1] * len(requests)

    batch = BatchProcessor[int](handler, window_ms=5)
    assert type(batch) is BatchProcessor and batch.window_ms == 5


def _package_tree(dest: Path) -> Path:
    """The installed layout (stratabatch = engine/, ...) as symlinks, for MYPYPATH."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        mapping = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    for package, folder in mapping.items():
        target = dest.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for src in (ROOT / folder).iterdir():
            if src.suffix in (".py", ".pyi") or src.name == "py.typed":
                (target / src.name).symlink_to(src)
    return dest


def _mypy(
    tmp_path: Path, target: Path, mypypath: str
) -> tuple[str, list[tuple[int, str, str, str]]]:
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(config),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--hide-error-context",
            "--no-pretty",
            "--follow-imports=silent",  # the package's own errors are .ci/mypy.py's business
            str(target),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": mypypath},
        timeout=300,
    )
    found = []
    for line in proc.stdout.splitlines():
        m = LINE.match(line)
        if m:
            found.append((int(m[1]), m[2], m[3], m[4] or ""))
    return proc.stdout + proc.stderr, found


def test_mypy_sees_the_types_a_user_relies_on(tmp_path):
    expected_reveals: dict[int, str] = {}
    expected_errors: dict[int, str] = {}
    for n, text in enumerate(USER.read_text().splitlines(), 1):
        if m := re.search(r"\)  # reveal: (.+)$", text):
            expected_reveals[n] = m[1].strip()
        elif m := re.search(r"\)  # error: ([\w-]+)$", text):
            expected_errors[n] = m[1]
    out, found = _mypy(tmp_path, USER, str(_package_tree(tmp_path / "tree")))
    reveals = {n: msg for n, kind, msg, _ in found if msg.startswith("Revealed type is")}
    errors = {n: code for n, kind, _, code in found if kind == "error"}
    for n, want in expected_reveals.items():
        assert reveals.get(n) == f'Revealed type is "{want}"', f"line {n}\n{out}"
    assert errors == expected_errors, out


def _installed_through_import_hook() -> bool:
    """True when stratabatch comes from setuptools' default editable install, whose import
    hook (a MetaPathFinder) no type checker follows."""
    return any(
        type(f).__module__.startswith("__editable___stratabatch") for f in sys.meta_path
    ) or any(name.startswith("__editable___stratabatch") for name in sys.modules)


def test_mypy_finds_the_package_as_installed(tmp_path):
    """The README installs with ``editable_mode=strict`` (a tree of links named by a static
    .pth file, which mypy and pyright read), so a user's mypy finds stratabatch and its
    py.typed without any path set."""
    if _installed_through_import_hook():
        pytest.skip(
            "this environment was installed with `pip install -e .` without "
            "`--config-settings editable_mode=strict` (the README's command): its import hook "
            "is invisible to type checkers"
        )
    user = tmp_path / "user.py"
    user.write_text(
        "from stratabatch import connect\n"
        "reveal_type(connect('x'))\n"
        "reveal_type(connect('x', sync=True))\n"
    )
    out, found = _mypy(tmp_path, user, "")
    assert [msg for _, _, msg, _ in found] == [
        'Revealed type is "stratabatch.client.EngineClient"',
        'Revealed type is "stratabatch.client.SyncEngineClient"',
    ], out
    assert stratabatch.__name__ == "stratabatch"
