"""README's "Into TF2 and Keras 3" runs as written: its commands with tf1tune, its Keras blocks without it.

Why: that section is the promise "from a TF1 checkpoint to `model.fit`". Every `tf1tune ...` command and every
```` ```py ```` block of the section runs in order in a scratch directory (with `checkpoints/` linked in), the
blocks in fresh processes without tf1tune on the path, and the figures the section states are checked.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _steps() -> list[tuple[str, str]]:
    """`("cmd", line)` and `("py", code)` items of the section, in order (synopsis lines with `[`/`(` left out)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Into TF2 and Keras 3"):]
    section = section[:section.index("\n## ", 3)]
    steps: list[tuple[str, str]] = []
    for match in re.finditer(r"```py\n(.*?)```|^    (tf1tune [^\n]*)$", section, re.DOTALL | re.MULTILINE):
        if match.group(1) is not None:
            steps.append(("py", match.group(1)))
        elif "[" not in match.group(2) and "(" not in match.group(2):
            steps.append(("cmd", match.group(2)))
    return steps


def test_readme_tf2_section_runs(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").symlink_to(ROOT / "checkpoints")
    (tmp_path / "exported").mkdir()
    plain = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_USE_LEGACY_KERAS")}
    plain["TF_CPP_MIN_LOG_LEVEL"] = "3"
    with_tf1tune = {**plain, "PYTHONPATH": str(ROOT)}
    outputs = []
    steps = _steps()
    assert [kind for kind, _ in steps] == ["cmd", "py", "cmd", "cmd", "cmd", "py"]
    for kind, body in steps:
        if kind == "cmd":
            argv = [sys.executable, "-m", "tf1tune", *shlex.split(body)[1:]]
            proc = subprocess.run(argv, cwd=tmp_path, env=with_tf1tune, capture_output=True, text=True, timeout=300, check=False)
        else:
            proc = subprocess.run([sys.executable, "-c", body], cwd=tmp_path, env=plain, capture_output=True,
                                  text=True, timeout=300, check=False)
        assert proc.returncode == 0, f"{body[:200]}\n{proc.stderr[-3000:]}"
        outputs.append(proc.stdout)
    accuracy = float(re.search(r"validation accuracy ([0-9.]+)", outputs[1]).group(1))  # type: ignore[union-attr]
    assert accuracy > 0.9
    assert "3 changed, 12 bit-identical" in outputs[2]
    assert "identical  DigitsCNN/Conv2d_1/weights" in outputs[2] and "changed    DigitsCNN/Conv2d_3/weights" in outputs[2]
    assert "learning_rate 0.0005" in outputs[4] and "iterations 1500" in outputs[4]
    assert "11 variables continue with their TF1 momentum" in outputs[5]
    assert (tmp_path / "exported" / "parity.keras").is_file()
