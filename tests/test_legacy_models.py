"""Every file of ../shared/legacy-models (real TF 0.12 to 1.11 files by other people) inspects, loads and runs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import tf1tune
from tf1tune.checkpoints import checkpoint_values
from tf1tune.cli import main

SOURCES = [
    "half_plus_two-tf0.12-sharded/export.meta",
    "half_plus_two-tf0.12-sharded",
    "half_plus_two-v1-single-file/export.meta",
    "half_plus_two-v1-single-file/export",
    "mtcnn-pnet-tf1.8/PNet-18.meta",
    "mtcnn-pnet-tf1.8",
    "regression-ckpt-tf1.11/model.meta",
    "regression-ckpt-tf1.11",
    "fc-layers-frozen/frozen.pb",
    "mnist-softmax-frozen/mnist.pb",
]


@pytest.mark.parametrize("relative", SOURCES)
def test_inspect_every_file(capsys, legacy_dir, relative):
    assert main(["inspect", os.path.join(legacy_dir, relative), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kind"] in {"checkpoint", "meta", "frozen"}
    assert summary["num_params"] > 0


def _restored_equal_checkpoint(handle: tf1tune.ModelHandle, sess: tf.compat.v1.Session) -> None:
    stored = checkpoint_values(handle.checkpoint)
    restored = [v for v in handle.variables if v.op.name in stored]
    assert restored
    for v, value in zip(restored, sess.run(restored)):
        assert np.asarray(value).tobytes() == stored[v.op.name].tobytes(), v.op.name


@pytest.mark.parametrize("folder", ["half_plus_two-tf0.12-sharded", "half_plus_two-v1-single-file"])
def test_half_plus_two_runs(legacy_dir, folder):
    handle = tf1tune.load(os.path.join(legacy_dir, folder, "export.meta"))
    x = np.array([[0.0], [1.0], [4.0]], dtype=np.float32)
    with handle.session() as sess:
        _restored_equal_checkpoint(handle, sess)
        if folder.endswith("sharded"):  # serving signature: a serialized tf.Example with feature "x"
            examples = [tf.train.Example(features=tf.train.Features(feature={
                "x": tf.train.Feature(float_list=tf.train.FloatList(value=[float(v)]))})).SerializeToString() for v in x[:, 0]]
            y = sess.run(handle.tensor("Identity:0"), {handle.tensor("tf_example:0"): examples})
        else:
            y = sess.run(handle.tensor("Add:0"), {handle.tensor("Placeholder:0"): x})
    np.testing.assert_allclose(np.reshape(y, -1), 0.5 * x[:, 0] + 2.0)


def test_mtcnn_pnet_runs(legacy_dir):
    handle = tf1tune.load(os.path.join(legacy_dir, "mtcnn-pnet-tf1.8"))
    assert handle.tensorflow_version == "1.8.0"
    images = np.random.default_rng(0).uniform(-1, 1, (256, 12, 12, 3)).astype(np.float32)
    with handle.session() as sess:
        _restored_equal_checkpoint(handle, sess)
        probs = sess.run(handle.tensor("conv4_1/Reshape_1:0"), {handle.tensor("input_image:0"): images})
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.reshape(256, -1).sum(axis=1), 1.0, rtol=1e-5)


def test_regression_runs(legacy_dir):
    handle = tf1tune.load(os.path.join(legacy_dir, "regression-ckpt-tf1.11"))
    x = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    with handle.session() as sess:
        _restored_equal_checkpoint(handle, sess)
        w, b = sess.run([handle.variable("W"), handle.variable("b")])
        pred = sess.run(handle.tensor("pred:0"), {handle.tensor("X:0"): x})
    np.testing.assert_allclose(pred, w * x + b, rtol=1e-6)


@pytest.mark.parametrize("relative,inp,out,width", [("fc-layers-frozen/frozen.pb", "X:0", "output:0", 10),
                                                    ("mnist-softmax-frozen/mnist.pb", "input:0", "softmax:0", 10)])
def test_frozen_graphs_run(legacy_dir, relative, inp, out, width):
    handle = tf1tune.load(os.path.join(legacy_dir, relative))
    assert [t.name for t in handle.inputs] == [inp] and out in [t.name for t in handle.outputs]
    shape = [4 if d is None else d for d in handle.tensor(inp).shape.as_list()]
    x = np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32)
    with handle.session() as sess:
        y = sess.run(handle.tensor(out), {handle.tensor(inp): x})
    assert y.shape[-1] == width and np.isfinite(y).all()
