"""Pictures of a run (issue 16): TensorBoard reads a run's events, and a run leaves curves.png and confusion.png.

Why: after `pip install -e .` a user runs `tensorboard --logdir runs` or opens the PNGs; both must show the
run's real figures. TensorBoard's own `EventAccumulator` must find the scalars the run wrote; the pictures
must be PNG files drawn from the same numbers.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "checkpoints" / "digits_cnn")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from tf1tune.train.config import make_config
    from tf1tune.train.loop import run_finetune

    out = str(tmp_path_factory.mktemp("runs") / "parity")
    return run_finetune(make_config(str(ROOT / "configs" / "digits_parity.yaml"), checkpoint=DIGITS, out=out,
                                    log_every=10, checkpoint_every=20,
                                    phases=[{"steps": 40, "trainable_scopes": ["DigitsCNN/Logits"],
                                             "learning_rate": 0.05}]), progress=False)


def test_tensorboard_event_reader_finds_the_run_scalars(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(Path(run.run_dir) / "events"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss", "accuracy/train_batch", "accuracy/validation", "learning_rate"} <= tags
    assert [e.step for e in events.Scalars("loss")] == [10, 20, 30, 40]
    final = [e for e in events.Scalars("accuracy/validation") if e.step == 40]
    assert final and final[-1].value == pytest.approx(run.accuracy_after, abs=1e-6)


def test_tensorboard_is_installed_with_the_project():
    setup = (ROOT / "setup.py").read_text()
    requires = setup[setup.index("install_requires"):setup.index("extras_require")]
    assert re.search(r'"tensorboard', requires) and re.search(r'"matplotlib', requires)


def test_run_writes_curves_and_confusion_pictures(run):
    for name in ("curves.png", "confusion.png"):
        assert (Path(run.run_dir) / name).read_bytes().startswith(PNG), name


def test_read_scalars_and_confusion_png(run, tmp_path):
    from tf1tune.plots import confusion_png, curves_png, read_scalars

    scalars = read_scalars(Path(run.run_dir) / "events")
    steps, values = scalars["loss"]
    assert list(steps) == [10, 20, 30, 40] and np.all(np.isfinite(values))
    out = confusion_png(np.array([[5, 1], [0, 4]]), ["even", "odd"], tmp_path / "c.png")
    assert Path(out).read_bytes().startswith(PNG)
    assert Path(curves_png(Path(run.run_dir) / "events", tmp_path / "curves.png")).read_bytes().startswith(PNG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "curves.png"]  # no temp files left
