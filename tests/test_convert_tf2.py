"""TF1 checkpoints with their optimizer state into TF2 (issue 18): `tf1tune convert --to tf2`.

Why: a run continued in TF2 must take the step the TF1 run would have taken, or "resuming" silently restarts the
optimizer. The tiny model trains a few steps with a TF1 optimizer and is saved; TF1 then takes one more step. The
checkpoint is converted, exported with `export-tf2`, and Keras 3 takes one step on the same batch with the restored
optimizer: the two updates agree within 1e-6 for SGD with momentum and for Adam. Slots that Keras cannot hold and
hyperparameters that are unknown fail with one line, exit 2, and write nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf1tune
from tests import model_factory
from tf1tune.cli import main
from tf1tune.export.tf1_layer import TF1Layer, restore_optimizer
from tf1tune.export.tf2 import export_tf2

STEPS = 3


def _keras_step(export_dir: str, converted: str, with_state: bool = True) -> dict[str, np.ndarray]:
    """One Keras 3 step on the batch TF1 took its extra step on, with the converted optimizer state (or a fresh one)."""
    info = json.loads(Path(converted, "optimizer.json").read_text())
    layer = TF1Layer(export_dir)
    optimizer = keras.optimizers.get({"class_name": info["keras"]["class_name"], "config": info["keras"]["config"]})
    optimizer.build(layer.trainable_weights)
    if with_state:
        assert restore_optimizer(optimizer, layer, converted) == 4
    x, y = model_factory.batch(STEPS)
    with tf.GradientTape() as tape:
        logits = layer(tf.constant(x))
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.constant(y), logits))
    weights = layer.trainable_weights
    optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
    return {name: w.numpy() for name, w in layer.tf1_weights().items()}


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_next_step_in_tf2_equals_the_tf1_step(optimizer: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix, tf1_after = model_factory.write_trained(str(tmp_path / "tf1"), optimizer, STEPS)
    before = {n: tf.train.load_checkpoint(prefix).get_tensor(n) for n in tf1_after}
    converted = str(tmp_path / "tf2-state")
    assert main(["convert", "--to", "tf2", prefix, "--out", converted]) == 0
    printed = capsys.readouterr().out
    assert "learning_rate" in printed and "from the graph" in printed
    info = json.loads(Path(converted, "optimizer.json").read_text())
    if optimizer == "adam":
        assert info["keras"]["config"]["epsilon"] == pytest.approx(1e-8) and info["iterations"] == STEPS
    else:
        assert info["keras"]["config"]["momentum"] == pytest.approx(0.9) and info["iterations"] == STEPS

    export_dir = str(tmp_path / "tf2-model")
    export_tf2(tf1tune.load(prefix + ".meta"), ["logits_out_final"], export_dir)
    keras_after = _keras_step(export_dir, converted)
    fresh_after = _keras_step(export_dir, converted, with_state=False)
    worst = 0.0
    for name in tf1_after:
        tf1_update, tf2_update = tf1_after[name] - before[name], keras_after[name] - before[name]
        assert np.max(np.abs(tf1_update)) > 1e-4  # a real step was taken
        assert np.max(np.abs(tf2_update - tf1_update)) <= 1e-6, name
        worst = max(worst, float(np.max(np.abs(fresh_after[name] - tf1_after[name]))))
    assert worst > 1e-3  # without the TF1 state the step is another one
    print(f"{optimizer}: max |TF2 update - TF1 update| "
          f"{max(float(np.max(np.abs(keras_after[n] - tf1_after[n]))) for n in tf1_after):.3g}; "
          f"with a fresh optimizer {worst:.3g}")


def test_unmappable_slots_are_one_line_exit_2_nothing_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix, _ = model_factory.write_trained(str(tmp_path / "tf1"), "rmsprop", 1)
    code = main(["convert", "--to", "tf2", prefix, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "hidden/bias/RMSProp" in err and "no place in Keras" in err
    assert not (tmp_path / "out").exists()
    assert sorted(os.listdir(tmp_path)) == ["tf1"]


def test_unknown_learning_rate_without_meta_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix, _ = model_factory.write_trained(str(tmp_path / "tf1"), "momentum", 1)
    os.remove(prefix + ".meta")
    code = main(["convert", "--to", "tf2", prefix, "--out", str(tmp_path / "out")])
    assert code == 2 and "--learning-rate" in capsys.readouterr().err and not (tmp_path / "out").exists()
    code = main(["convert", "--to", "tf2", prefix, "--learning-rate", "0.1", "--momentum", "0.9",
                 "--out", str(tmp_path / "out")])
    assert code == 0 and "(given)" in capsys.readouterr().out


def test_digits_checkpoint_schedule_value_is_taken_at_the_saved_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    digits = str(Path(__file__).resolve().parents[1] / "checkpoints" / "digits_cnn")
    assert main(["convert", "--to", "tf2", digits, "--out", str(tmp_path / "d")]) == 0
    info = json.loads((tmp_path / "d" / "optimizer.json").read_text())
    assert info["iterations"] == 1500
    assert info["keras"]["config"]["learning_rate"] == pytest.approx(0.0005)  # 0.05 / 100 after 85% of the steps
    assert len(info["slots"]) == 11 and "DigitsCNN/Conv2d_1/BatchNorm/moving_mean" in info["weights"]
