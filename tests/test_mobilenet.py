"""MobileNet V1 / V2: published TF-slim checkpoint names and shapes, sizes, endpoints, forward pass.

The expected sizes were derived from the original definitions (tensorflow/models
`research/slim/nets/mobilenet_v1.py`, `research/slim/nets/mobilenet/mobilenet_v2.py`) and agree with
Keras' MobileNet / MobileNetV2 (weights=None) once their 1000-class head is widened to 1001 classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

import tf1tune  # noqa: F401  (installs the tf-slim batch-norm shim before any net is built)
from tf1tune.nets.build import build_net
from tf1tune.nets.registry import get_net

BATCH, SIZE = 2, 64

# Published variable names and shapes (1.0, 1001 classes), spot checks from first to logits.
V1_VARIABLES = {
    "MobilenetV1/Conv2d_0/weights": [3, 3, 3, 32],
    "MobilenetV1/Conv2d_0/BatchNorm/gamma": [32],
    "MobilenetV1/Conv2d_0/BatchNorm/beta": [32],
    "MobilenetV1/Conv2d_0/BatchNorm/moving_mean": [32],
    "MobilenetV1/Conv2d_0/BatchNorm/moving_variance": [32],
    "MobilenetV1/Conv2d_1_depthwise/depthwise_weights": [3, 3, 32, 1],
    "MobilenetV1/Conv2d_1_depthwise/BatchNorm/beta": [32],
    "MobilenetV1/Conv2d_1_pointwise/weights": [1, 1, 32, 64],
    "MobilenetV1/Conv2d_6_depthwise/depthwise_weights": [3, 3, 256, 1],
    "MobilenetV1/Conv2d_6_pointwise/weights": [1, 1, 256, 512],
    "MobilenetV1/Conv2d_12_pointwise/weights": [1, 1, 512, 1024],
    "MobilenetV1/Conv2d_13_depthwise/depthwise_weights": [3, 3, 1024, 1],
    "MobilenetV1/Conv2d_13_pointwise/weights": [1, 1, 1024, 1024],
    "MobilenetV1/Conv2d_13_pointwise/BatchNorm/moving_variance": [1024],
    "MobilenetV1/Logits/Conv2d_1c_1x1/weights": [1, 1, 1024, 1001],
    "MobilenetV1/Logits/Conv2d_1c_1x1/biases": [1001],
}
V2_VARIABLES = {
    "MobilenetV2/Conv/weights": [3, 3, 3, 32],
    "MobilenetV2/Conv/BatchNorm/gamma": [32],
    "MobilenetV2/Conv/BatchNorm/beta": [32],
    "MobilenetV2/Conv/BatchNorm/moving_mean": [32],
    "MobilenetV2/Conv/BatchNorm/moving_variance": [32],
    "MobilenetV2/expanded_conv/depthwise/depthwise_weights": [3, 3, 32, 1],
    "MobilenetV2/expanded_conv/depthwise/BatchNorm/gamma": [32],
    "MobilenetV2/expanded_conv/project/weights": [1, 1, 32, 16],
    "MobilenetV2/expanded_conv_1/expand/weights": [1, 1, 16, 96],
    "MobilenetV2/expanded_conv_1/depthwise/depthwise_weights": [3, 3, 96, 1],
    "MobilenetV2/expanded_conv_1/project/weights": [1, 1, 96, 24],
    "MobilenetV2/expanded_conv_14/expand/BatchNorm/moving_mean": [960],
    "MobilenetV2/expanded_conv_16/project/weights": [1, 1, 960, 320],
    "MobilenetV2/Conv_1/weights": [1, 1, 320, 1280],
    "MobilenetV2/Conv_1/BatchNorm/gamma": [1280],
    "MobilenetV2/Logits/Conv2d_1c_1x1/weights": [1, 1, 1280, 1001],
    "MobilenetV2/Logits/Conv2d_1c_1x1/biases": [1001],
}

# name: (published variables, #variables, #trainable, #parameters, #trainable parameters, feature depth)
NETS = {
    "mobilenet_v1": (V1_VARIABLES, 137, 83, 4_254_889, 4_233_001, 1024),
    "mobilenet_v2": (V2_VARIABLES, 262, 158, 3_540_265, 3_506_153, 1280),
}
ENDPOINTS = {
    "mobilenet_v1": ["Conv2d_0", "Conv2d_1_depthwise", "Conv2d_1_pointwise", "Conv2d_13_pointwise", "AvgPool_1a"],
    "mobilenet_v2": ["layer_1", "layer_2/output", "layer_16/expansion_output", "layer_16/output", "layer_19",
                     "Conv", "expanded_conv_14/output", "Conv_1", "global_pool"],
}


def _build(name: str, num_classes: int | None, is_training: bool) -> tuple[tf.Graph, Any, Any, dict[str, Any]]:
    graph = tf.Graph()
    with graph.as_default():
        images = tf.compat.v1.placeholder(tf.float32, [BATCH, SIZE, SIZE, 3], name="images")
        output, end_points = build_net(name, images, num_classes=num_classes, is_training=is_training)
    return graph, images, output, end_points


def _count(variables: list[Any]) -> int:
    return sum(int(np.prod(v.shape.as_list())) for v in variables)


@pytest.mark.parametrize("name", sorted(NETS))
def test_published_names_shapes_and_sizes(name: str) -> None:
    published, n_vars, n_trainable, n_params, n_trainable_params, _ = NETS[name]
    graph, _, _, _ = _build(name, num_classes=1001, is_training=False)
    with graph.as_default():
        variables = {v.op.name: v.shape.as_list() for v in tf.compat.v1.global_variables()}
        trainable = tf.compat.v1.trainable_variables()
        assert (len(variables), len(trainable)) == (n_vars, n_trainable)
        assert _count(tf.compat.v1.global_variables()) == n_params
        assert _count(trainable) == n_trainable_params
    for var_name, shape in published.items():
        assert variables.get(var_name) == shape, var_name
    scope = get_net(name).scope
    assert all(v.startswith(scope + "/") for v in variables)


@pytest.mark.parametrize("name", sorted(NETS))
def test_features_only_has_no_logits_variables(name: str) -> None:
    *_, depth = NETS[name]
    config = get_net(name)
    graph, _, output, end_points = _build(name, num_classes=None, is_training=True)
    assert output.shape.as_list() == [BATCH, 1, 1, depth]
    assert end_points[config.default_endpoint] is output
    assert "Logits" not in end_points and "Predictions" not in end_points
    with graph.as_default():
        names = [v.op.name for v in tf.compat.v1.global_variables()]
        assert not [n for n in names if n.startswith(config.classifier_scopes)]
        assert len(names) == NETS[name][1] - 2  # all but the classifier's weights and biases
        assert tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)  # batch norm in training


@pytest.mark.parametrize("is_training", [False, True])
@pytest.mark.parametrize("name", sorted(NETS))
def test_endpoints_and_forward_pass(name: str, is_training: bool) -> None:
    graph, images, logits, end_points = _build(name, num_classes=5, is_training=is_training)
    for key in ENDPOINTS[name] + ["Logits", "Predictions"]:
        assert key in end_points, key
    assert end_points["Logits"] is logits
    if name == "mobilenet_v2":
        cut = graph.get_tensor_by_name("MobilenetV2/expanded_conv_14/output:0")
        assert end_points["layer_16/output"] is cut and cut.shape.as_list() == [BATCH, 2, 2, 160]
    with tf.compat.v1.Session(graph=graph) as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        batch = np.random.default_rng(0).uniform(-1, 1, [BATCH, SIZE, SIZE, 3]).astype(np.float32)
        out, probs = sess.run([logits, end_points["Predictions"]], {images: batch})
    assert out.shape == (BATCH, 5) and np.isfinite(out).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(NETS))
def test_any_input_size_and_restore_by_name(name: str, tmp_path: Path) -> None:
    """Unknown spatial size (pooled globally); a 1001-class checkpoint restores into a features-only net."""
    feed = np.random.default_rng(1).uniform(-1, 1, [1, 100, 260, 3]).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        images = tf.compat.v1.placeholder(tf.float32, [None, None, None, 3])
        logits, end_points = build_net(name, images, num_classes=1001)
        pooled = end_points[get_net(name).default_endpoint]
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            out, features = sess.run([logits, pooled], {images: feed})
            prefix = tf.compat.v1.train.Saver().save(sess, str(tmp_path / "model.ckpt"))
    assert out.shape == (1, 1001) and features.shape == (1, 1, 1, NETS[name][5])

    graph = tf.Graph()
    with graph.as_default():
        images = tf.compat.v1.placeholder(tf.float32, [1, 100, 260, 3])
        features_only, _ = build_net(name, images, num_classes=None)
        with tf.compat.v1.Session() as sess:
            tf.compat.v1.train.Saver().restore(sess, prefix)  # every variable is found by name and shape
            np.testing.assert_allclose(sess.run(features_only, {images: feed}), features, rtol=1e-4, atol=1e-5)
