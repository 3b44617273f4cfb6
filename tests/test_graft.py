"""Grafting heads on endpoints of every source kind, unfreezing constants, and shared layers."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_slim as slim

import tf1tune
from tf1tune.errors import GraftError
from tf1tune.graft import graft, parse_head_spec, shared_layer, unfreeze

RNG = np.random.default_rng(0)


def test_spec_head_on_a_slim_endpoint():
    net = tf1tune.load("slim:digits_cnn", num_classes=None)
    head = graft(net, "Conv2d_3", "global_pool, dropout(0.2), dense(16, relu), dense(3), softmax")
    assert head.output.shape.as_list() == [None, 3]
    assert {v.op.name for v in head.variables} == {"head/dense_2/weights", "head/dense_2/biases",
                                                   "head/dense_3/weights", "head/dense_3/biases"}
    x = RNG.uniform(0, 255, (4, 8, 8, 1)).astype(np.float32)
    with net.session() as sess:
        probs = sess.run(head.probabilities, {net.inputs[0]: x})
        dropped = [sess.run(head.output, {net.inputs[0]: x, head.is_training: True}) for _ in range(2)]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert not np.array_equal(dropped[0], dropped[1])  # dropout is live only when training


def test_callable_head_and_taken_scope():
    net = tf1tune.load("slim:digits_cnn", num_classes=None)
    head = graft(net, "global_pool", lambda x, training: slim.conv2d(x, 2, [1, 1], activation_fn=None, scope="logits"),
                 scope="task")
    assert head.output.shape.as_list() == [None, 1, 1, 2] and [v.op.name for v in head.variables][0].startswith("task/")
    with pytest.raises(GraftError, match="scope 'task' already holds variables"):
        graft(net, "global_pool", "dense(2)", scope="task")


def test_bad_specs_and_endpoints():
    with pytest.raises(GraftError, match="layers are: global_pool"):
        parse_head_spec("global_pool, densse(3)")
    with pytest.raises(GraftError, match="needs a number"):
        parse_head_spec("dense(many)")
    with pytest.raises(GraftError, match="unknown activation 'gelu'"):
        parse_head_spec("dense(3, gelu)")
    net = tf1tune.load("slim:digits_cnn", num_classes=None)
    with pytest.raises(tf1tune.NameNotFoundError, match="closest: global_pool"):
        graft(net, "global_pol", "dense(2)")


def test_graft_and_unfreeze_on_a_real_frozen_graph(legacy_dir):
    path = os.path.join(legacy_dir, "fc-layers-frozen", "frozen.pb")
    frozen = tf1tune.load(path)
    x = RNG.uniform(0, 1, (16, 784)).astype(np.float32)
    with frozen.session() as sess:
        reference = sess.run(frozen.tensor("output:0"), {frozen.tensor("X:0"): x})
        pred_kernel = sess.run(frozen.tensor("pred/kernel:0"))

    handle = unfreeze(frozen, ["pred"])
    assert sorted(v.op.name for v in handle.trainable_variables) == ["pred/bias", "pred/kernel"]
    head = graft(handle, "model/dense_1/Relu:0", "dense(3), softmax", scope="new_head")
    with handle.graph.as_default():
        labels = tf.constant(RNG.integers(0, 3, 16))
        loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(labels, head.output) + tf.reduce_mean(
            tf.square(handle.tensor("output:0")))
        train = tf.compat.v1.train.GradientDescentOptimizer(0.1).minimize(loss)
    with handle.session() as sess:
        kernel = handle.variable("pred/kernel")
        assert sess.run(kernel).tobytes() == pred_kernel.tobytes()  # values kept bit for bit
        np.testing.assert_array_equal(sess.run(handle.tensor("output:0"), {handle.tensor("X:0"): x}), reference)
        frozen_const = sess.run(handle.tensor("dense/kernel:0"))
        for _ in range(3):
            sess.run(train, {handle.tensor("X:0"): x})
        assert not np.array_equal(sess.run(kernel), pred_kernel)  # the unfrozen layer trains
        assert sess.run(handle.tensor("dense/kernel:0")).tobytes() == frozen_const.tobytes()  # the rest stays frozen
    with pytest.raises(tf1tune.NameNotFoundError, match="closest: pred/kernel"):
        unfreeze(frozen, ["pred/kernal"])


def test_shared_layer_is_one_variable_through_training_save_and_load(tmp_path):
    x_value = RNG.standard_normal((2, 9, 9, 3)).astype(np.float32)

    def build():
        x = tf.compat.v1.placeholder(tf.float32, [2, 9, 9, 3], name="x")
        a = slim.conv2d(x, 4, [3, 3], padding="SAME", scope="conv")
        b = shared_layer(slim.conv2d, "conv", x, 4, [3, 3], stride=2, padding="VALID")
        return x, a, b

    prefix = str(tmp_path / "shared.ckpt")
    with tf.Graph().as_default():
        x, a, b = build()
        assert [v.op.name for v in tf.compat.v1.global_variables()] == ["conv/weights", "conv/biases"]
        assert a.shape.as_list() == [2, 9, 9, 4] and b.shape.as_list() == [2, 4, 4, 4]
        train = tf.compat.v1.train.GradientDescentOptimizer(0.5).minimize(tf.reduce_sum(b))  # only b's loss
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            a_before = sess.run(a, {x: x_value})
            sess.run(train, {x: x_value})
            a_after, b_after = sess.run([a, b], {x: x_value})
            assert not np.array_equal(a_before, a_after)  # a sees the update made through b
            saver.save(sess, prefix)
    assert sorted(n for n, _ in tf.train.list_variables(prefix)) == ["conv/biases", "conv/weights"]
    with tf.Graph().as_default():
        x, a, b = build()
        with tf.compat.v1.Session() as sess:
            tf.compat.v1.train.Saver().restore(sess, prefix)
            a_loaded, b_loaded = sess.run([a, b], {x: x_value})
    np.testing.assert_array_equal(a_loaded, a_after)
    np.testing.assert_array_equal(b_loaded, b_after)


def test_shared_layer_errors():
    with tf.Graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 5, 5, 3])
        slim.conv2d(x, 4, [3, 3], scope="conv")
        with pytest.raises(tf1tune.NameNotFoundError, match="closest: conv"):
            shared_layer(slim.conv2d, "cnv", x, 4, [3, 3])
        with pytest.raises(GraftError, match="cannot be shared"):
            shared_layer(slim.conv2d, "conv", x, 8, [3, 3])
