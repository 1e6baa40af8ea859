"""Type-check engine/, ipc/ and monitor/ as the packages they install as.

pyproject.toml maps folders to packages (``stratabatch`` = engine/, ``stratabatch.ipc`` =
ipc/, ...) through setuptools' ``package-dir``. mypy finds modules by their path, so
``mypy engine ipc monitor`` sees packages called ``engine`` and ``ipc`` and cannot resolve a
single ``stratabatch.*`` import, and the editable install's import hook is invisible to it. This
script builds the installed layout as a tree of symlinks under build/mypy/ (read from
``package-dir``, so it follows the mapping), runs mypy on it with the ``[tool.mypy]`` settings
of pyproject.toml, and prints its messages with the paths of the real files.

Usage: python .ci/mypy.py [extra mypy arguments]   (exit status: mypy's)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: mypy depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "mypy"
CHECKED = ("stratabatch", "stratabatch.ipc", "stratabatch.monitor")
LINKED = ("*.py", "*.pyi", "py.typed")


def package_dirs() -> dict[str, str]:
    """The package -> folder mapping of pyproject.toml, for the packages checked here."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        mapping = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    missing = [p for p in CHECKED if p not in mapping]
    if missing:
        sys.exit(f".ci/mypy.py: pyproject.toml's package-dir has no {missing}")
    return {p: mapping[p] for p in CHECKED}


def build_tree() -> dict[str, str]:
    """Link every module of the checked packages into BUILD/tree; returns tree -> real prefixes."""
    tree = BUILD / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    prefixes = {}
    for package, folder in package_dirs().items():
        dest = tree.joinpath(*package.split("."))
        dest.mkdir(parents=True, exist_ok=True)
        for pattern in LINKED:
            for src in sorted((ROOT / folder).glob(pattern)):
                os.symlink(src, dest / src.name)
        prefixes[dest.relative_to(tree).as_posix() + "/"] = folder.rstrip("/") + "/"
    return prefixes


def main() -> int:
    prefixes = build_tree()
    cmd = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "--cache-dir",
        str(BUILD / "cache"),
        "-p",
        CHECKED[0],  # the tree holds only the checked packages; -p takes subpackages
        *sys.argv[1:],
    ]
    env = {**os.environ, "MYPYPATH": ""}
    proc = subprocess.run(cmd, cwd=BUILD / "tree", env=env, capture_output=True, text=True)
    longest_first = sorted(prefixes.items(), key=lambda kv: -len(kv[0]))
    for line in proc.stdout.splitlines():
        for tree_prefix, real_prefix in longest_first:
            if line.startswith(tree_prefix):
                line = real_prefix + line[len(tree_prefix) :]
                break
        print(line)
    sys.stderr.write(proc.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
