"""`digits_cnn`: a small slim-style CNN with batch norm, for 8x8 grayscale digits.

Why it exists: tf1tune ships one real TF1-style checkpoint of this net (`checkpoints/digits_cnn/`,
made by `scripts/make_digits_checkpoint.py` on scikit-learn's digits) as the default input of its
fine-tuning job. The net is written the way TF-slim model-zoo nets are (variable scopes, `slim.conv2d`
with `slim.batch_norm`, an arg scope, an `end_points` dict), so that checkpoint exercises the same
code paths as the published slim checkpoints, at a size that trains in seconds on a CPU.

Layout (input [B, 8, 8, 1], already divided by 255):

    Conv2d_1   3x3, 16 channels           -> [B, 8, 8, 16]
    Conv2d_2   3x3, 32 channels           -> [B, 8, 8, 32]
    MaxPool_2  2x2, stride 2              -> [B, 4, 4, 32]
    Conv2d_3   3x3, 64 channels           -> [B, 4, 4, 64]
    global_pool  spatial mean             -> [B, 1, 1, 64]   (the default endpoint for a new head)
    Dropout, then Logits 1x1 conv         -> [B, num_classes]
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_slim as slim

from tf1tune.nets.registry import register_net

SCOPE = "DigitsCNN"


def digits_cnn_arg_scope(
    weight_decay: float = 1e-4,
    batch_norm_decay: float = 0.95,
    batch_norm_epsilon: float = 1e-3,
) -> Any:
    """The slim arg scope `digits_cnn` is built under (as `inception_v3_arg_scope` for Inception V3).

    Args:
        weight_decay: L2 regularisation of the conv weights (added to `REGULARIZATION_LOSSES`).
        batch_norm_decay: Decay of the batch-norm moving averages.
        batch_norm_epsilon: Batch-norm epsilon.

    Returns:
        An arg scope dict for `slim.arg_scope`.
    """
    with slim.arg_scope(
        [slim.conv2d],
        weights_initializer=tf.compat.v1.variance_scaling_initializer(),
        weights_regularizer=slim.l2_regularizer(weight_decay),
        activation_fn=tf.nn.relu,
        normalizer_fn=slim.batch_norm,
        padding="SAME",
    ):
        with slim.arg_scope([slim.batch_norm], decay=batch_norm_decay, epsilon=batch_norm_epsilon,
                            scale=True) as scope:
            return scope


@register_net(
    name="digits_cnn", scope=SCOPE, input_size=(8, 8), channels=1, num_classes=10,
    classifier_scopes=(f"{SCOPE}/Logits",), default_endpoint="global_pool",
    arg_scope=digits_cnn_arg_scope, preprocessing="unit",
    description="Small 3-conv CNN with batch norm for 8x8 grayscale digits (tf1tune's shipped checkpoint)",
)
def digits_cnn(
    inputs: tf.Tensor,
    num_classes: int | None = 10,
    is_training: bool | tf.Tensor = False,
    dropout_keep_prob: float = 0.8,
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """Build `digits_cnn` in the current graph, under the variable scope `DigitsCNN`.

    Call it inside `digits_cnn_arg_scope()` (`tf1tune.build_net` does).

    Args:
        inputs: Images [B, 8, 8, 1], float32, scaled to [0, 1] ("unit" preprocessing).
        num_classes: Classifier outputs; None builds the features only (no `Logits` variables) and
            returns the `global_pool` endpoint.
        is_training: Training mode of batch norm and dropout: a Python bool, or a boolean scalar
            tensor (such as a `placeholder_with_default`) to choose the mode when the graph runs.
        dropout_keep_prob: Keep probability of the dropout before the logits (training mode only).

    Returns:
        The logits [B, num_classes] (or the pooled features [B, 1, 1, 64] when `num_classes` is None)
        and the `end_points` dict: `Conv2d_1`, `Conv2d_2`, `MaxPool_2`, `Conv2d_3`, `global_pool`, plus
        `Logits` and `Predictions` when a classifier is built.
    """
    end_points: dict[str, tf.Tensor] = {}
    with tf.compat.v1.variable_scope(SCOPE, "DigitsCNN", [inputs]):
        with slim.arg_scope([slim.batch_norm, slim.dropout], is_training=is_training):
            net = slim.conv2d(inputs, 16, [3, 3], scope="Conv2d_1")
            end_points["Conv2d_1"] = net
            net = slim.conv2d(net, 32, [3, 3], scope="Conv2d_2")
            end_points["Conv2d_2"] = net
            net = slim.max_pool2d(net, [2, 2], stride=2, scope="MaxPool_2")
            end_points["MaxPool_2"] = net
            net = slim.conv2d(net, 64, [3, 3], scope="Conv2d_3")
            end_points["Conv2d_3"] = net
            net = tf.reduce_mean(net, [1, 2], keepdims=True, name="global_pool")
            end_points["global_pool"] = net
            if num_classes is None:
                return net, end_points
            with tf.compat.v1.variable_scope("Logits"):
                net = slim.dropout(net, keep_prob=dropout_keep_prob, scope="Dropout")
                net = slim.conv2d(net, num_classes, [1, 1], activation_fn=None, normalizer_fn=None,
                                  weights_regularizer=None, biases_initializer=tf.zeros_initializer(),
                                  scope="Conv2d_1x1")
                logits = tf.squeeze(net, [1, 2], name="SpatialSqueeze")
            end_points["Logits"] = logits
            with tf.compat.v1.variable_scope("Predictions"):
                end_points["Predictions"] = tf.nn.softmax(logits, name="Softmax")
    return logits, end_points
