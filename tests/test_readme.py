"""The README's quick start runs as printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quick_start_runs_and_merges_the_surface_variant():
    code = re.search(r"## Quick start\s+```python\n(.*?)```", README.read_text(), re.S).group(1)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert "answer to What's the weather?" in out
    assert "['answer to Show me my invoice', 'answer to Show me my invoice']" in out
    assert out.strip().endswith("0.3333333333333333")  # 1 of 3 requests was a duplicate


def test_readme_opens_with_the_two_setup_commands_ci_runs():
    text = README.read_text()
    block = re.search(r"## Set up on a fresh machine\s+```sh\n(.*?)```", text, re.S).group(1)
    lines = [line for line in block.splitlines() if line.strip()]
    assert len(lines) == 2
    assert "stratabatch-perf --quick" in lines[0] and "pytest" in lines[1]
    ci = (README.parent / ".ci" / "run").read_text()
    assert lines[1] in ci
