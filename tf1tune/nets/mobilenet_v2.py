"""MobileNet V2 (depth multiplier 1.0) with the variable names of the published TF-slim checkpoints.

Why: tf-slim 1.1 on PyPI has no MobileNet, and the published `mobilenet_v2_1.0_224.ckpt` restores by
variable name and shape only into a graph built as the original. The original, tensorflow/models
`research/slim/nets/mobilenet/` (`mobilenet_v2.py` for the layer table `V2_DEF`, `conv_blocks.py` for
`expanded_conv`, `mobilenet.py` for the base, the head and `training_scope`), is a generic framework for
several MobileNets; this is a direct definition of the V2 1.0 net alone, without `output_stride`,
explicit padding or depth-multiplier options.

Layout (scope `MobilenetV2`): `Conv` (3x3/2 conv, 32); 17 inverted-residual blocks `expanded_conv`,
`expanded_conv_1` .. `expanded_conv_16`, each `expand` (1x1 conv to 6x the input depth; absent in the
first block, whose expansion factor is 1), `depthwise` (3x3 depthwise, variable `depthwise_weights`) and
`project` (1x1 conv, linear), with a residual addition when the stride is 1 and the depths match, and an
identity named `output` (so `MobilenetV2/expanded_conv_14/output:0` exists); `Conv_1` (1x1 conv, 1280);
then `Logits`: global average pool, `Dropout`, `Conv2d_1c_1x1` (1x1 conv with biases), an identity
`Logits/output`; `Predictions` is a softmax. Every conv has batch norm with gamma (`scale=True` in the
original `V2_DEF` defaults) and, except `project` and the logits, ReLU6.

Endpoints are the original's: `layer_1` (`Conv`) .. `layer_19` (`Conv_1`), where `layer_<k+2>` is
`expanded_conv_<k>`, and `layer_N/expansion_output`, `layer_N/depthwise_output`, `layer_N/output` for the
blocks; then `global_pool`, `Logits`, `Predictions`. The same tensors are also keyed by scope name
(`Conv`, `expanded_conv_14`, `expanded_conv_14/output`, ..., `Conv_1`).

Sizes (1001 classes): 262 variables, 158 of them trainable; 3,506,153 trainable parameters and
3,540,265 in all (with the 34,112 batch-norm moving statistics).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_slim as slim

from tf1tune.nets.registry import register_net

# (expansion factor, stride, output depth) of the blocks expanded_conv, expanded_conv_1 .. _16 (3x3).
_BLOCKS: tuple[tuple[int, int, int], ...] = (
    (1, 1, 16),
    (6, 2, 24), (6, 1, 24),
    (6, 2, 32), (6, 1, 32), (6, 1, 32),
    (6, 2, 64), (6, 1, 64), (6, 1, 64), (6, 1, 64),
    (6, 1, 96), (6, 1, 96), (6, 1, 96),
    (6, 2, 160), (6, 1, 160), (6, 1, 160),
    (6, 1, 320),
)


def mobilenet_v2_arg_scope(
    is_training: bool | None = None,
    weight_decay: float = 0.00004,
    stddev: float = 0.09,
    batch_norm_decay: float = 0.997,
    batch_norm_epsilon: float = 0.001,
) -> dict[str, Any]:
    """The slim arg scope of the original `mobilenet.training_scope` (training hyperparameters).

    The original also sets the dropout keep probability (0.8) here; `mobilenet_v2` takes it as an
    argument with that default instead.

    Args:
        is_training: Batch-norm mode; None leaves it to the builder (which always sets it).
        weight_decay: L2 weight decay of the convolutions (not of the depthwise ones).
        stddev: Standard deviation of the truncated-normal weight initializer; negative for Xavier.
        batch_norm_decay: Decay of the batch-norm moving averages.
        batch_norm_epsilon: Epsilon added to the batch-norm variance (slim's default, as the original).

    Returns:
        An arg-scope dict for `slim.arg_scope`.
    """
    batch_norm_params: dict[str, Any] = {"decay": batch_norm_decay, "epsilon": batch_norm_epsilon}
    if is_training is not None:
        batch_norm_params["is_training"] = is_training
    if stddev < 0:
        initializer = slim.initializers.xavier_initializer()
    else:
        initializer = tf.compat.v1.truncated_normal_initializer(stddev=stddev)
    with (
        slim.arg_scope([slim.conv2d, slim.fully_connected, slim.separable_conv2d],
                       weights_initializer=initializer, normalizer_fn=slim.batch_norm),
        slim.arg_scope([slim.batch_norm], **batch_norm_params),
        slim.arg_scope([slim.conv2d], weights_regularizer=slim.l2_regularizer(weight_decay)),
        slim.arg_scope([slim.separable_conv2d], weights_regularizer=None) as scope,
    ):
        return scope


def expanded_conv(
    inputs: tf.Tensor, expansion: int, stride: int, depth: int, scope: str
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """One inverted-residual block, as `expanded_conv` of the original `conv_blocks.py`.

    Args:
        inputs: Block input [B, H, W, C].
        expansion: Expansion factor of the inner depth (1: no `expand` conv).
        stride: Stride of the depthwise conv.
        depth: Output depth.
        scope: Variable (and name) scope of the block, e.g. `expanded_conv_3`.

    Returns:
        The block output (an identity named `output`) and its inner tensors by original endpoint
        suffix: `expansion_output` (when expanded), `depthwise_output`, `output`.
    """
    tensors: dict[str, tf.Tensor] = {}
    with tf.compat.v1.variable_scope(scope, values=[inputs]):
        inputs = tf.identity(inputs, name="input")
        in_depth = inputs.shape[3]
        net = inputs
        # The original rounds this to a multiple of 8, a no-op for the depths of the 1.0 net.
        inner = in_depth * expansion
        if inner > in_depth:
            net = slim.conv2d(net, inner, [1, 1], stride=1, scope="expand")
            net = tensors["expansion_output"] = tf.identity(net, name="expansion_output")
        net = slim.separable_conv2d(net, None, [3, 3], depth_multiplier=1, stride=stride, scope="depthwise")
        net = tensors["depthwise_output"] = tf.identity(net, name="depthwise_output")
        net = slim.conv2d(net, depth, [1, 1], stride=1, activation_fn=tf.identity, scope="project")
        if stride == 1 and depth == in_depth:
            net += inputs
        net = tensors["output"] = tf.identity(net, name="output")
    return net, tensors


def mobilenet_v2_base(inputs: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """The convolutional body, `Conv` to `Conv_1`, in the current variable scope.

    Args:
        inputs: Image batch [B, H, W, 3].

    Returns:
        The `Conv_1` activations [B, H/32, W/32, 1280] and the endpoints (see the module docstring).
    """
    end_points: dict[str, tf.Tensor] = {}

    def add(layer: int, scope: str, net: tf.Tensor, inner: dict[str, tf.Tensor] | None = None) -> None:
        end_points[f"layer_{layer}"] = end_points[scope] = net
        for suffix, tensor in (inner or {}).items():
            end_points[f"layer_{layer}/{suffix}"] = end_points[f"{scope}/{suffix}"] = tensor

    net = slim.conv2d(inputs, 32, [3, 3], stride=2, scope="Conv")
    add(1, "Conv", net)
    for k, (expansion, stride, depth) in enumerate(_BLOCKS):
        scope = "expanded_conv" if k == 0 else f"expanded_conv_{k}"
        net, inner = expanded_conv(net, expansion, stride, depth, scope)
        add(k + 2, scope, net, inner)
    net = slim.conv2d(net, 1280, [1, 1], stride=1, scope="Conv_1")
    add(len(_BLOCKS) + 2, "Conv_1", net)
    return net, end_points


@register_net(
    name="mobilenet_v2", scope="MobilenetV2", input_size=(224, 224), num_classes=1001,
    classifier_scopes=("MobilenetV2/Logits",), default_endpoint="global_pool",
    arg_scope=mobilenet_v2_arg_scope, preprocessing="inception", background_class=True,
    description="MobileNet V2 1.0 (slim checkpoint names)",
)
def mobilenet_v2(
    inputs: tf.Tensor,
    num_classes: int | None = 1001,
    is_training: bool = False,
    dropout_keep_prob: float = 0.8,
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """MobileNet V2 1.0 as `research/slim/nets/mobilenet/mobilenet_v2.py`, under the scope `MobilenetV2`.

    The layer settings that the checkpoint's variables depend on (batch norm with gamma after every
    convolution, ReLU6, SAME padding: the original `V2_DEF` defaults) are set here, so the variables
    are the same with or without `mobilenet_v2_arg_scope()`; that arg scope adds the initializer,
    weight decay and batch-norm decay.

    Args:
        inputs: Image batch [B, H, W, 3], scaled to [-1, 1].
        num_classes: Classifier outputs; None (or 0) stops after `global_pool` (no `Logits` variables).
        is_training: Training mode of batch norm and dropout.
        dropout_keep_prob: Keep probability of the dropout before the classifier.

    Returns:
        The logits [B, num_classes] (or the pooled features [B, 1, 1, 1280] when `num_classes` is None)
        and the endpoints (see the module docstring).
    """
    if inputs.shape.rank != 4:
        raise ValueError(f"MobileNet V2 needs a rank 4 input [B, H, W, C], got shape {inputs.shape}")
    with (
        tf.compat.v1.variable_scope("MobilenetV2", values=[inputs]),
        slim.arg_scope([slim.conv2d, slim.fully_connected, slim.separable_conv2d],
                       normalizer_fn=slim.batch_norm, activation_fn=tf.nn.relu6),
        slim.arg_scope([slim.conv2d, slim.separable_conv2d], padding="SAME"),
        slim.arg_scope([slim.batch_norm], center=True, scale=True, is_training=is_training),
    ):
        inputs = tf.identity(inputs, name="input")
        net, end_points = mobilenet_v2_base(inputs)
        net = tf.identity(net, name="embedding")
        with tf.compat.v1.variable_scope("Logits"):
            net = _global_pool(net)
            end_points["global_pool"] = net
            if not num_classes:
                return net, end_points
            net = slim.dropout(net, keep_prob=dropout_keep_prob, is_training=is_training, scope="Dropout")
            logits = slim.conv2d(net, num_classes, [1, 1], activation_fn=None, normalizer_fn=None,
                                 biases_initializer=tf.zeros_initializer(), scope="Conv2d_1c_1x1")
            logits = tf.squeeze(logits, [1, 2])
            logits = tf.identity(logits, name="output")
        end_points["Logits"] = logits
        end_points["Predictions"] = slim.softmax(logits, scope="Predictions")
    return logits, end_points


def _global_pool(net: tf.Tensor) -> tf.Tensor:
    """Average over the whole map to [B, 1, 1, C], as the original `mobilenet.global_pool`.

    The original uses an `AvgPool` op; with an unknown map size this uses `reduce_mean` (same values),
    as `AvgPool` takes no tensor kernel size.
    """
    height, width = net.shape[1], net.shape[2]
    if height is None or width is None:
        return tf.reduce_mean(net, axis=[1, 2], keepdims=True, name="AvgPool")
    return tf.compat.v1.nn.avg_pool(net, ksize=[1, height, width, 1], strides=[1, 1, 1, 1], padding="VALID")
