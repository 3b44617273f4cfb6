"""Every registered net builds on TF 2.x in training and inference mode, with the metadata it declares."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import tf1tune
from tf1tune.nets.registry import list_nets

SLIM_NETS = ["alexnet_v2", "inception_v1", "inception_v2", "inception_v3", "overfeat", "vgg_a", "vgg_16", "vgg_19"] + [
    f"resnet_v{v}_{d}" for v in (1, 2) for d in (50, 101, 152, 200)]


def test_registry_holds_every_tf_slim_net_and_mobilenets():
    assert set(SLIM_NETS + ["mobilenet_v1", "mobilenet_v2"]) <= set(list_nets())


@pytest.mark.parametrize("name", SLIM_NETS)
@pytest.mark.parametrize("is_training", [True, False])
def test_net_builds(name, is_training):
    config = tf1tune.get_net(name)
    with tf.Graph().as_default() as graph:
        x = tf.compat.v1.placeholder(tf.float32, [1, *config.input_size, config.channels])
        out, end_points = tf1tune.build_net(name, x, num_classes=7, is_training=is_training)
        names = [v.op.name for v in tf.compat.v1.global_variables()]
    assert out.shape.as_list()[-1] == 7
    assert config.default_endpoint in end_points
    for scope in config.classifier_scopes:
        assert any(n.startswith(scope + "/") for n in names), (scope, names[-5:])
    update_ops = graph.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
    has_bn = any("BatchNorm" in n for n in names)
    assert bool(update_ops) == (has_bn and is_training)


@pytest.mark.parametrize("name", ["resnet_v1_50", "inception_v3"])
def test_features_only_builds_no_classifier_variables(name):
    config = tf1tune.get_net(name)
    with tf.Graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, *config.input_size, 3])
        tf1tune.build_net(name, x, num_classes=None)
        names = [v.op.name for v in tf.compat.v1.global_variables()]
    assert not any(n.startswith(s + "/") for s in config.classifier_scopes for n in names)


def test_features_only_refused_where_the_definition_cannot():
    with tf.Graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 224, 224, 3])
        with pytest.raises(tf1tune.Tf1tuneError, match="no features-only mode"):
            tf1tune.build_net("vgg_16", x, num_classes=None)


def test_resnet_runs_in_training_mode_with_batch_norm_updates():
    handle = tf1tune.load("slim:resnet_v1_50", num_classes=5, input_size=(64, 64), is_training=True)
    update_ops = handle.graph.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
    moving = handle.variable("resnet_v1_50/conv1/BatchNorm/moving_mean")
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    with handle.session() as sess:
        before = sess.run(moving)
        logits, _ = sess.run([handle.outputs[0], update_ops], {handle.inputs[0]: images})
        after = sess.run(moving)
    assert logits.shape == (2, 1, 1, 5)
    assert not np.array_equal(before, after)


def test_published_metadata():
    assert tf1tune.get_net("resnet_v1_50").num_classes == 1000
    assert not tf1tune.get_net("resnet_v1_50").background_class
    v3 = tf1tune.get_net("inception_v3")
    assert v3.num_classes == 1001 and v3.background_class
    assert v3.classifier_scopes == ("InceptionV3/Logits", "InceptionV3/AuxLogits")
