"""The README's Python examples run as written from the repository root."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCKS = re.findall(r"```python\n(.*?)```", open(os.path.join(ROOT, "README.md"), encoding="utf-8").read(), re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(legacy_dir, index):
    proc = subprocess.run([sys.executable, "-c", BLOCKS[index]], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_layout_table_names_paths_that_exist():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    table = readme.split("## Layout", 1)[1]
    paths = re.findall(r"^\| (.*?) \|", table, re.M)
    named = [p for cell in paths for p in re.findall(r"`([^`]+)`", cell)]
    assert len(named) > 20
    missing = [p for p in named if not os.path.exists(os.path.join(ROOT, p))]
    assert not missing, f"README's Layout table names paths that do not exist: {missing}"
