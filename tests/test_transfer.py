"""Issue scenarios end to end: a ResNet-50 checkpoint onto a new class count, a real .meta cut and re-headed."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

import tf1tune
from tf1tune.checkpoints import checkpoint_values
from tf1tune.errors import RestoreWarning
from tf1tune.graft import graft
from tf1tune.restore import restore
from tf1tune.selection import select


@pytest.fixture(scope="module")
def resnet50_1000(tmp_path_factory) -> str:
    """A slim ResNet-50 checkpoint with 1000 classes (random weights, saved as a TF1 user would)."""
    prefix = str(tmp_path_factory.mktemp("resnet") / "resnet_v1_50.ckpt")
    handle = tf1tune.load("slim:resnet_v1_50", num_classes=1000, input_size=(64, 64))
    with handle.session() as sess, handle.graph.as_default():
        tf.compat.v1.train.Saver().save(sess, prefix, write_meta_graph=False)
    return prefix


def test_resnet50_to_five_classes_restores_every_tensor_bit_identical(resnet50_1000):
    handle = tf1tune.load("slim:resnet_v1_50", num_classes=5, input_size=(64, 64))
    stored = checkpoint_values(resnet50_1000)
    with handle.graph.as_default():
        tf.compat.v1.train.MomentumOptimizer(0.01, 0.9).minimize(tf.reduce_mean(handle.outputs[0]))
    with tf.compat.v1.Session(graph=handle.graph) as sess:
        chosen = select(handle.variables, exclude_scopes=["resnet_v1_50/logits"])
        plan = restore(sess, chosen, resnet50_1000)
        assert len(plan.matched) == 265 and not plan.missing and not plan.shape_mismatch
        for v, value in zip(chosen, sess.run(chosen)):
            assert value.tobytes() == stored[v.op.name].tobytes(), v.op.name
        with handle.graph.as_default():
            assert sess.run(tf.compat.v1.report_uninitialized_variables()).size == 0
        assert sess.run(handle.variable("resnet_v1_50/logits/weights")).shape == (1, 1, 2048, 5)
        assert any(n.endswith("/Momentum") for n in plan.initialized)  # slots made before the restore: initialised


def test_resnet50_classifier_not_excluded_is_refused_or_skipped(resnet50_1000):
    handle = tf1tune.load("slim:resnet_v1_50", num_classes=5, input_size=(64, 64))
    with tf.compat.v1.Session(graph=handle.graph) as sess:
        with pytest.raises(tf1tune.CheckpointMismatchError,
                           match=r"resnet_v1_50/logits/weights graph \[1, 1, 2048, 5\] vs checkpoint \[1, 1, 2048, 1000\]"):
            restore(sess, select(handle.variables), resnet50_1000)
        with pytest.warns(RestoreWarning, match="resnet_v1_50/logits"):
            plan = restore(sess, select(handle.variables), resnet50_1000, on_mismatch="skip")
    assert {m["name"] for m in plan.shape_mismatch} == {"resnet_v1_50/logits/weights", "resnet_v1_50/logits/biases"}


def test_mtcnn_meta_cut_at_inner_endpoint_with_new_two_class_head(legacy_dir):
    handle = tf1tune.load(os.path.join(legacy_dir, "mtcnn-pnet-tf1.8", "PNet-18.meta"))
    stored = checkpoint_values(handle.checkpoint)
    head = graft(handle, "conv3/add:0", "global_pool, dense(2), softmax", scope="face_head")
    upstream = select(handle.variables, up_to="conv3/add:0")
    assert sorted({v.op.name.split("/")[0] for v in upstream}) == ["conv1", "conv2", "conv3"]
    images = np.random.default_rng(0).uniform(-1, 1, (256, 12, 12, 3)).astype(np.float32)
    with tf.compat.v1.Session(graph=handle.graph) as sess:
        plan = restore(sess, upstream, handle.checkpoint)
        for v, value in zip(upstream, sess.run(upstream)):
            assert value.tobytes() == stored[v.op.name].tobytes()
        assert not any(n.endswith("/Momentum") for n in plan.matched)
        assert any(n.endswith("/Momentum") for n in plan.initialized)  # slots: initialised, not restored
        assert {v.op.name for v in head.variables} <= set(plan.initialized)
        probs = sess.run(head.probabilities, {handle.tensor("input_image:0"): images})
    assert probs.shape == (256, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
