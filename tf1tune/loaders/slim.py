"""Loader for a registered net definition (tf-slim nets and tf1tune's own), optionally with a checkpoint."""

from __future__ import annotations

import os
from collections.abc import Sequence

import tensorflow as tf

from tf1tune.checkpoints import resolve_checkpoint
from tf1tune.handle import ModelHandle
from tf1tune.limits import MAX_BATCH, MAX_CLASSES, check_input_size, check_int
from tf1tune.nets.build import build_net
from tf1tune.nets.preprocessing import get_preprocessing
from tf1tune.nets.registry import get_net

PUBLISHED = "published"
"""`num_classes` value meaning: the class count of the net's published checkpoints."""


def load_slim(
    name: str,
    num_classes: int | None | str = PUBLISHED,
    input_size: Sequence[int] | None = None,
    batch_size: int | None = None,
    is_training: bool = False,
    checkpoint: str | os.PathLike[str] | None = None,
    preprocess: bool = True,
) -> ModelHandle:
    """Build the registered net `name` in a new graph behind an `input` placeholder.

    Args:
        name: Registered net name (`resnet_v1_50`, `mobilenet_v2`, `digits_cnn`; see `list_nets()`).
        num_classes: Classifier outputs; `"published"` (default) uses the published checkpoints' count,
            None builds the features only.
        input_size: (height, width); None uses the net's default.
        batch_size: Fixed batch dimension; None leaves it free.
        is_training: Build batch norm and dropout in training mode.
        checkpoint: Checkpoint to restore with `handle.session()` (all variables of the net).
        preprocess: Feed images in [0, 255] and apply the net's preprocessing inside the graph;
            False feeds the net's input directly.

    Returns:
        A handle whose `endpoints` are the net's `end_points` and whose output is the logits
        (or the features without a classifier).
    """
    config = get_net(name)
    classes = config.num_classes if num_classes == PUBLISHED else num_classes
    if classes is not None:
        check_int("num_classes", classes, 1, MAX_CLASSES)
    height, width = check_input_size("input size", list(input_size)) if input_size else config.input_size
    if batch_size is not None:
        check_int("batch_size", batch_size, 1, MAX_BATCH)
    graph = tf.Graph()
    with graph.as_default():
        images = tf.compat.v1.placeholder(tf.float32, [batch_size, height, width, config.channels], name="input")
        net_input = get_preprocessing(config.preprocessing)(images) if preprocess else images
        output, end_points = build_net(name, net_input, num_classes=classes, is_training=is_training)  # type: ignore[arg-type]
        net_variables = tf.compat.v1.global_variables()  # restored by the first session; no Saver ops until then
    outputs = [output] + [end_points[k] for k in ("Predictions", "predictions") if k in end_points]
    return ModelHandle(
        kind="slim",
        source=f"slim:{name}",
        graph=graph,
        endpoints=end_points,
        inputs=[images],
        outputs=outputs,
        checkpoint=resolve_checkpoint(checkpoint) if checkpoint else None,
        tensorflow_version=tf.__version__,
        restore_variables=net_variables,
        net=config,
        extra={"num_classes": classes, "is_training": is_training, "preprocessing": config.preprocessing if preprocess else None},
    )
