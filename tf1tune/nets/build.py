"""Building a registered net in the current graph."""

from __future__ import annotations

import contextlib
from typing import Any

import tensorflow as tf
import tf_slim as slim

from tf1tune.errors import Tf1tuneError, first_line
from tf1tune.nets.registry import get_net


def build_net(
    name: str,
    inputs: tf.Tensor,
    num_classes: int | None = None,
    is_training: bool = False,
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """Build the registered net `name` on `inputs` in the current default graph.

    Args:
        name: A registered net name (see `list_nets()`).
        inputs: Image batch, NHWC float32, already preprocessed.
        num_classes: Classifier outputs; None builds the features only (no classifier variables).
        is_training: Training mode for batch norm and dropout.

    Returns:
        The net's output tensor and its `end_points` dict (endpoint name to tensor).

    Raises:
        Tf1tuneError: `num_classes=None` for a net whose definition always builds a classifier.
    """
    config = get_net(name)
    if num_classes is None and not config.features_only:
        raise Tf1tuneError(
            f"net '{name}' has no features-only mode in its slim definition; give a number of classes "
            f"(its published checkpoints have {config.num_classes})"
        )
    if num_classes is not None and num_classes < 1:
        raise Tf1tuneError(f"num_classes must be a positive integer or None, got {num_classes}")
    scope: Any = slim.arg_scope(config.arg_scope()) if config.arg_scope else contextlib.nullcontext()
    with scope:
        try:
            output, end_points = config.builder(inputs, num_classes=num_classes, is_training=is_training)
        except ValueError as e:  # shape errors from a too small input (negative dimension sizes, ...)
            first = first_line(e)
            raise Tf1tuneError(
                f"net '{name}' cannot be built on inputs of shape {inputs.shape.as_list()} ({first}); "
                f"use an input size closer to its default {config.input_size[0]}x{config.input_size[1]}"
            ) from e
    return output, dict(end_points)
