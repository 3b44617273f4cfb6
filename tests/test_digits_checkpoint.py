"""Tests of the shipped legacy checkpoint `checkpoints/digits_cnn/` and of the net it was made from.

Why: tf1tune's fine-tuning job starts from this checkpoint by default, so it must load with plain
`tf.compat.v1` calls, reach the accuracy its `metadata.json` claims, and match the `digits_cnn`
definition variable for variable (a partial restore relies on that).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

import tf1tune
from tf1tune.data import digits_to_images, load_digits_split
from tf1tune.nets.preprocessing import get_preprocessing

CKPT_DIR = Path(__file__).resolve().parents[1] / "checkpoints" / "digits_cnn"


@pytest.fixture(scope="module")
def metadata() -> dict[str, Any]:
    return json.loads((CKPT_DIR / "metadata.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def prefix() -> str:
    found = tf.train.latest_checkpoint(str(CKPT_DIR))
    assert found is not None, f"no checkpoint state file in {CKPT_DIR}"
    return found


@pytest.fixture(scope="module")
def val_data(metadata: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    _, _, x_val, y_val = load_digits_split(seed=metadata["data"]["split_seed"],
                                           val_fraction=metadata["data"]["val_fraction"])
    return x_val, y_val


@pytest.fixture(scope="module")
def imported_probs(prefix: str, metadata: dict[str, Any], val_data: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Softmax of the validation images, from the shipped graph loaded as a TF1 user would (inference mode)."""
    with tf.Graph().as_default() as graph:
        saver = tf.compat.v1.train.import_meta_graph(prefix + ".meta")
        with tf.compat.v1.Session(graph=graph) as sess:
            saver.restore(sess, prefix)
            return sess.run(metadata["predictions"], feed_dict={metadata["input"]: val_data[0]})


def _checkpoint_entries(prefix: str) -> tuple[dict[str, list[int]], set[str]]:
    """(model variables -> shape, names of the trainable ones), leaving out optimizer slots and global step."""
    entries = dict(tf.train.list_variables(prefix))
    model = {name: list(shape) for name, shape in entries.items()
             if not name.endswith("/Momentum") and name != "global_step"}
    trainable = {name for name in model if f"{name}/Momentum" in entries}  # the optimizer has a slot for each
    return model, trainable


def test_directory_is_a_movable_tf1_training_output(prefix: str, metadata: dict[str, Any]) -> None:
    state = (CKPT_DIR / "checkpoint").read_text(encoding="utf-8")
    assert f'model_checkpoint_path: "{metadata["checkpoint"]}"' in state  # relative, not absolute
    assert Path(prefix).name == metadata["checkpoint"] == f"model.ckpt-{metadata['train_steps']}"
    shipped = sorted(p.name for p in CKPT_DIR.iterdir())
    assert shipped == sorted(["README.md", "checkpoint", "metadata.json", f"{metadata['checkpoint']}.index",
                              f"{metadata['checkpoint']}.data-00000-of-00001", f"{metadata['checkpoint']}.meta"])
    assert sum((CKPT_DIR / n).stat().st_size for n in shipped) < 600 * 1024
    entries = dict(tf.train.list_variables(prefix))
    assert "global_step" in entries and any(n.endswith("/Momentum") for n in entries)
    assert tf.train.load_checkpoint(prefix).get_tensor("global_step") == metadata["train_steps"]


def test_imported_graph_reaches_metadata_accuracy(
    imported_probs: np.ndarray, val_data: tuple[np.ndarray, np.ndarray], metadata: dict[str, Any]
) -> None:
    accuracy = float(np.mean(np.argmax(imported_probs, axis=1) == val_data[1]))
    assert accuracy == pytest.approx(metadata["val_accuracy"], abs=1e-6)
    assert accuracy >= 0.9
    assert imported_probs.shape == (len(val_data[1]), metadata["num_classes"])


def test_rebuilt_net_matches_checkpoint_and_predictions(
    prefix: str, metadata: dict[str, Any], val_data: tuple[np.ndarray, np.ndarray], imported_probs: np.ndarray
) -> None:
    model, trainable = _checkpoint_entries(prefix)
    config = tf1tune.get_net("digits_cnn")
    with tf.Graph().as_default() as graph:
        images = tf.compat.v1.placeholder(tf.float32, [None, *config.input_size, config.channels])
        inputs = get_preprocessing(config.preprocessing)(images)
        _, end_points = tf1tune.build_net("digits_cnn", inputs, num_classes=metadata["num_classes"])
        built = {v.op.name: v.shape.as_list() for v in tf.compat.v1.global_variables()}
        built_trainable = {v.op.name for v in tf.compat.v1.trainable_variables()}
        assert built == model
        assert built_trainable == trainable
        saver = tf.compat.v1.train.Saver(var_list=tf.compat.v1.global_variables())
        with tf.compat.v1.Session(graph=graph) as sess:
            saver.restore(sess, prefix)
            probs = sess.run(end_points["Predictions"], feed_dict={images: val_data[0]})
    np.testing.assert_allclose(probs, imported_probs, rtol=0, atol=1e-6)


def test_features_only_build_has_no_classifier() -> None:
    config = tf1tune.get_net("digits_cnn")
    assert (config.scope, config.input_size, config.channels, config.num_classes) == ("DigitsCNN", (8, 8), 1, 10)
    with tf.Graph().as_default():
        images = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 1])
        output, end_points = tf1tune.build_net("digits_cnn", images, num_classes=None)
        assert output.shape.as_list() == [None, 1, 1, 64]
        assert {"Conv2d_1", "Conv2d_2", "Conv2d_3", "global_pool"} <= set(end_points)
        assert "Logits" not in end_points
        names = [v.op.name for v in tf.compat.v1.global_variables()]
        assert names and not [n for n in names if n.startswith(config.classifier_scopes)]


def test_digits_split_is_stratified_nhwc_in_0_255() -> None:
    x_train, y_train, x_val, y_val = load_digits_split(seed=0, val_fraction=0.2)
    assert x_train.shape == (1437, 8, 8, 1) and x_val.shape == (360, 8, 8, 1)
    assert x_train.dtype == x_val.dtype == np.float32 and y_train.dtype == y_val.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 255.0
    assert np.all(np.abs(np.bincount(y_val, minlength=10) - 36) <= 1)
    again = load_digits_split(seed=0, val_fraction=0.2)
    np.testing.assert_array_equal(again[3], y_val)
    with pytest.raises(tf1tune.Tf1tuneError):
        load_digits_split(val_fraction=1.0)
    with pytest.raises(tf1tune.Tf1tuneError):
        digits_to_images(np.zeros((3, 10)))
