"""MobileNet V1 (depth multiplier 1.0) with the variable names of the published TF-slim checkpoints.

Why: tf-slim 1.1 on PyPI has no MobileNet, and the published `mobilenet_v1_1.0_224.ckpt` restores by
variable name and shape only into a graph built as in the original definition, tensorflow/models
`research/slim/nets/mobilenet_v1.py` (`mobilenet_v1`, `mobilenet_v1_base`, `mobilenet_v1_arg_scope`).
This is a compact rewrite of that definition for depth multiplier 1.0, without the `output_stride`,
`global_pool` and explicit-padding options (the pool is global for maps over 7x7: see `_average_pool`).

Layout (scope `MobilenetV1`): `Conv2d_0` (3x3/2 conv, 32), then 13 depthwise-separable layers
`Conv2d_<i>_depthwise` (3x3 depthwise, variable `depthwise_weights`) + `Conv2d_<i>_pointwise` (1x1 conv),
each followed by batch norm (with gamma: the original arg scope has `scale=True`) and ReLU6; then
`Logits/AvgPool_1a` (average pool to 1x1, see `_average_pool`), `Logits/Dropout_1b` (keep 0.999) and
`Logits/Conv2d_1c_1x1` (1x1 conv with biases), squeezed as `Logits/SpatialSqueeze`; `Predictions` is a
softmax. Endpoint keys are the original's.

Sizes (1001 classes): 137 variables, 83 of them trainable; 4,233,001 trainable parameters and
4,254,889 in all (with the 21,888 batch-norm moving statistics).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_slim as slim

from tf1tune.nets.registry import register_net

# (stride, depth) of the 13 depthwise-separable layers Conv2d_1 .. Conv2d_13 (all 3x3).
_SEPARABLE_LAYERS: tuple[tuple[int, int], ...] = (
    (1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512),
    (1, 512), (1, 512), (1, 512), (1, 512), (1, 512), (2, 1024), (1, 1024),
)


def mobilenet_v1_arg_scope(
    is_training: bool | None = None,
    weight_decay: float = 0.00004,
    stddev: float = 0.09,
    regularize_depthwise: bool = False,
    batch_norm_decay: float = 0.9997,
    batch_norm_epsilon: float = 0.001,
) -> dict[str, Any]:
    """The slim arg scope of the original `mobilenet_v1_arg_scope` (training hyperparameters).

    Args:
        is_training: Batch-norm mode; None leaves it to the builder (which always sets it).
        weight_decay: L2 weight decay of the convolutions (not of the depthwise ones by default).
        stddev: Standard deviation of the truncated-normal weight initializer.
        regularize_depthwise: Also apply the weight decay to the depthwise weights.
        batch_norm_decay: Decay of the batch-norm moving averages.
        batch_norm_epsilon: Epsilon added to the batch-norm variance.

    Returns:
        An arg-scope dict for `slim.arg_scope`.
    """
    batch_norm_params: dict[str, Any] = {
        "center": True, "scale": True, "decay": batch_norm_decay, "epsilon": batch_norm_epsilon,
    }
    if is_training is not None:
        batch_norm_params["is_training"] = is_training
    regularizer = slim.l2_regularizer(weight_decay)
    depthwise_regularizer = regularizer if regularize_depthwise else None
    with (
        slim.arg_scope([slim.conv2d, slim.separable_conv2d],
                       weights_initializer=tf.compat.v1.truncated_normal_initializer(stddev=stddev),
                       activation_fn=tf.nn.relu6, normalizer_fn=slim.batch_norm),
        slim.arg_scope([slim.batch_norm], **batch_norm_params),
        slim.arg_scope([slim.conv2d], weights_regularizer=regularizer),
        slim.arg_scope([slim.separable_conv2d], weights_regularizer=depthwise_regularizer) as scope,
    ):
        return scope


def mobilenet_v1_base(inputs: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """The convolutional body, `Conv2d_0` to `Conv2d_13_pointwise`, in the current variable scope.

    Args:
        inputs: Image batch [B, H, W, 3].

    Returns:
        The `Conv2d_13_pointwise` activations [B, H/32, W/32, 1024] and the endpoints by layer name.
    """
    end_points: dict[str, tf.Tensor] = {}
    net = slim.conv2d(inputs, 32, [3, 3], stride=2, scope="Conv2d_0")
    end_points["Conv2d_0"] = net
    for i, (stride, depth) in enumerate(_SEPARABLE_LAYERS, start=1):
        # num_outputs=None: separable_conv2d builds the depthwise convolution only.
        net = slim.separable_conv2d(net, None, [3, 3], depth_multiplier=1, stride=stride,
                                    scope=f"Conv2d_{i}_depthwise")
        end_points[f"Conv2d_{i}_depthwise"] = net
        net = slim.conv2d(net, depth, [1, 1], stride=1, scope=f"Conv2d_{i}_pointwise")
        end_points[f"Conv2d_{i}_pointwise"] = net
    return net, end_points


@register_net(
    name="mobilenet_v1", scope="MobilenetV1", input_size=(224, 224), num_classes=1001,
    classifier_scopes=("MobilenetV1/Logits",), default_endpoint="AvgPool_1a",
    arg_scope=mobilenet_v1_arg_scope, preprocessing="inception", background_class=True,
    description="MobileNet V1 1.0 (slim checkpoint names)",
)
def mobilenet_v1(
    inputs: tf.Tensor,
    num_classes: int | None = 1001,
    is_training: bool = False,
    dropout_keep_prob: float = 0.999,
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """MobileNet V1 1.0 as `research/slim/nets/mobilenet_v1.py`, under the scope `MobilenetV1`.

    The layer settings that the checkpoint's variables depend on (batch norm after every convolution,
    with gamma; ReLU6; SAME padding) are set here, so the variables are the same with or without
    `mobilenet_v1_arg_scope()`; that arg scope adds the initializer, weight decay and batch-norm decay.

    Args:
        inputs: Image batch [B, H, W, 3], scaled to [-1, 1].
        num_classes: Classifier outputs; None (or 0) stops after `AvgPool_1a` (no `Logits` variables).
        is_training: Training mode of batch norm and dropout.
        dropout_keep_prob: Keep probability of the dropout before the classifier.

    Returns:
        The logits [B, num_classes] (or the pooled features [B, 1, 1, 1024] when `num_classes` is None)
        and the endpoints: `Conv2d_0`, `Conv2d_<i>_depthwise`, `Conv2d_<i>_pointwise` (i = 1..13),
        `AvgPool_1a`, and with a classifier `Logits` and `Predictions`.
    """
    if inputs.shape.rank != 4:
        raise ValueError(f"MobileNet V1 needs a rank 4 input [B, H, W, C], got shape {inputs.shape}")
    with (
        tf.compat.v1.variable_scope("MobilenetV1", values=[inputs]),
        slim.arg_scope([slim.conv2d, slim.separable_conv2d], padding="SAME",
                       activation_fn=tf.nn.relu6, normalizer_fn=slim.batch_norm),
        slim.arg_scope([slim.batch_norm], center=True, scale=True),
        slim.arg_scope([slim.batch_norm, slim.dropout], is_training=is_training),
    ):
        net, end_points = mobilenet_v1_base(inputs)
        with tf.compat.v1.variable_scope("Logits"):
            net = _average_pool(net)
            end_points["AvgPool_1a"] = net
            if not num_classes:
                return net, end_points
            net = slim.dropout(net, keep_prob=dropout_keep_prob, scope="Dropout_1b")
            logits = slim.conv2d(net, num_classes, [1, 1], activation_fn=None, normalizer_fn=None,
                                 scope="Conv2d_1c_1x1")
            logits = tf.squeeze(logits, [1, 2], name="SpatialSqueeze")
        end_points["Logits"] = logits
        end_points["Predictions"] = slim.softmax(logits, scope="Predictions")
    return logits, end_points


def _average_pool(net: tf.Tensor) -> tf.Tensor:
    """`AvgPool_1a`: average over the whole map, to [B, 1, 1, C].

    The original pools with a 7x7 window, less when the map is smaller (`_reduced_kernel_size_for_small_input`),
    which is the whole map for inputs up to 224x224. For larger maps or an unknown map size the original
    leaves a spatial map that its logits squeeze rejects (or it pools a 0x0 map); here the average is then
    taken over the whole map, as the original's `global_pool=True` option.
    """
    height, width = net.shape[1], net.shape[2]
    if height is None or width is None:
        return tf.reduce_mean(net, axis=[1, 2], keepdims=True, name="AvgPool_1a")
    return slim.avg_pool2d(net, [height, width], padding="VALID", scope="AvgPool_1a")
