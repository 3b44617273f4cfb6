"""Training that goes wrong stops cleanly: a non-finite loss stops at its step without saving NaN weights, a failed
start leaves nothing that blocks the rerun, and the temporary files of writes cut short are cleaned."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from tests import hostile_models
from tests.cli_harness import run_cli
from tf1tune.checkpoints import checkpoint_values


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("image"))
    return {"meta": hostile_models.write(os.path.join(root, "meta"), None, os.path.join(root, "unused")),
            "data": hostile_models.write_data(os.path.join(root, "d.npz"), n=24)}


def _argv(image, out, *extra):
    return ["finetune", "--meta", image["meta"], "--input", "input", "--endpoint", "features", "--num-classes", "2",
            "--train-data", image["data"], "--val-data", image["data"], "--batch-size", "8", "--optimizer", "sgd",
            "--out", out, "--no-progress", *extra]


def _one_error(outcome):
    assert outcome.code == 2, outcome.err[-1500:]
    assert outcome.problem() is None, outcome.problem()
    return outcome.error_lines[0]


def test_non_finite_loss_stops_at_its_step_and_keeps_the_last_good_checkpoint(image, tmp_path):
    out = str(tmp_path / "diverged")
    line = _one_error(run_cli(_argv(image, out, "--steps", "40", "--learning-rate", "1e37",
                                    "--checkpoint-every", "1")))
    assert "training stopped at step" in line
    step = int(line.split("training stopped at step ")[1].split()[0].rstrip(":"))
    assert 1 <= step <= 40
    for path in tf.train.get_checkpoint_state(out).all_model_checkpoint_paths if os.path.isdir(out) else []:
        values = checkpoint_values(path)
        assert all(np.isfinite(v).all() for v in values.values() if v.dtype.kind == "f"), path
    latest = tf.train.latest_checkpoint(out) if os.path.isdir(out) else None
    assert latest is None or int(latest.rsplit("-", 1)[1]) < step
    if latest:
        assert "the last good checkpoint" in line and os.path.basename(latest) in line


def test_a_failed_start_leaves_no_directory_that_blocks_the_rerun(image, tmp_path):
    """Issue 13, item 5: the rerun, with or without --overwrite, is not refused."""
    out = str(tmp_path / "run")
    bad = _argv(image, out, "--steps", "2") + ["--head", "global_pool, dense(3)", "--num-classes", "2"]
    outcome = run_cli(bad[:-2] + ["--checkpoint", str(tmp_path / "no-such-checkpoint")])
    _one_error(outcome)
    assert not os.path.exists(out)
    yaml_path = tmp_path / "masks.yaml"  # fails after the run directory was created: a mask names no variable
    yaml_path.write_text("masks: {no/such/variable: {rows: [0]}}\n")
    _one_error(run_cli(_argv(image, out, "--steps", "2", "--config", str(yaml_path))))
    assert not os.path.exists(out)
    os.makedirs(out)  # what a start killed before its first checkpoint leaves: the marker and events
    open(os.path.join(out, "config.yaml"), "w").write("steps: 2\n")
    os.makedirs(os.path.join(out, "events"))
    assert run_cli(_argv(image, out, "--steps", "2", "--overwrite")).code == 0
    os.remove(os.path.join(out, "model.ckpt-2.index"))  # no checkpoint left: a rerun without flags starts again
    for name in os.listdir(out):
        if name.startswith("model.ckpt") or name == "checkpoint":
            os.remove(os.path.join(out, name))
    outcome = run_cli(_argv(image, out, "--steps", "2"))
    assert outcome.code == 0, outcome.err[-1500:]


def test_temporary_files_of_a_killed_write_are_removed_on_the_next_start(image, tmp_path):
    out = str(tmp_path / "run")
    assert run_cli(_argv(image, out, "--steps", "2", "--checkpoint-every", "1")).code == 0
    partial = ["model.ckpt-3.data-00000-of-00001.tempstate123456789", "model.ckpt-3.meta.tmp" + "a" * 32,
               "checkpoint.tmp" + "b" * 32, ".metrics.json.k2j4h1.tmp", "model.ckpt-3_temp"]
    for name in partial:
        path = os.path.join(out, name)
        os.makedirs(path) if name.endswith("_temp") else open(path, "w").write("partial")
    outcome = run_cli(_argv(image, out, "--steps", "4", "--checkpoint-every", "1", "--resume"))
    assert outcome.code == 0, outcome.err[-1500:]
    assert "removed 5 temporary file(s)" in outcome.err
    assert not set(partial) & set(os.listdir(out))
    assert tf.train.latest_checkpoint(out).endswith("model.ckpt-4")


def test_rgb_npz_for_a_grayscale_net_is_converted_with_a_warning(image, tmp_path):
    path = tmp_path / "rgb.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.uniform(0, 255, (8, 8, 8, 3)).astype(np.float32), y=np.arange(8) % 2)
    argv = _argv(image, str(tmp_path / "run"), "--steps", "1")
    argv[argv.index("--train-data") + 1] = argv[argv.index("--val-data") + 1] = str(path)
    outcome = run_cli(argv)
    assert outcome.code == 0, outcome.err[-1500:]
    assert "x has 3 channels (RGB) but the net takes 1; converting to grayscale" in outcome.err
