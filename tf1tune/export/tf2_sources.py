"""Sources for `export_tf2` that need more than the usual loaders: slim nets built with a training switch.

`tf1tune.load_slim` builds a net in one mode (a Python `is_training`). A TF2 export should switch batch norm and
dropout at call time, so here the net is built once on a boolean `placeholder_with_default(False)` named
`is_training`: slim's `batch_norm` and `dropout` then hold both modes, and `export_tf2` feeds the placeholder.
A net whose definition branches on `is_training` in Python cannot take a tensor; it is built in inference mode
and the export has no training endpoint (`ModelHandle.extra["switch_note"]` says so).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import tensorflow as tf

from tf1tune.checkpoints import resolve_checkpoint
from tf1tune.handle import ModelHandle
from tf1tune.loaders.slim import PUBLISHED
from tf1tune.nets.build import build_net
from tf1tune.nets.preprocessing import get_preprocessing
from tf1tune.nets.registry import get_net


def load_slim_switchable(
    name: str,
    num_classes: int | None | str = PUBLISHED,
    checkpoint: str | os.PathLike[str] | None = None,
    input_size: Sequence[int] | None = None,
) -> ModelHandle:
    """The registered net `name` behind an `input` placeholder (images in [0, 255]) with an `is_training` switch.

    Args:
        name: A registered net (`tf1tune nets`).
        num_classes: Classifier outputs; `"published"` for the published checkpoints' count, None for features only.
        checkpoint: The checkpoint `handle.session()` restores (every variable of the net).
        input_size: (height, width); None for the net's default.

    Returns:
        A `slim` handle like `tf1tune.load_slim`'s, whose graph has the boolean `is_training:0` switch.
    """
    config = get_net(name)
    classes = config.num_classes if num_classes == PUBLISHED else num_classes
    height, width = tuple(input_size) if input_size else config.input_size
    note = None
    for switch in (True, False):
        graph = tf.Graph()
        with graph.as_default():
            images = tf.compat.v1.placeholder(tf.float32, [None, height, width, config.channels], name="input")
            is_training = tf.compat.v1.placeholder_with_default(False, [], name="is_training") if switch else False
            net_input = get_preprocessing(config.preprocessing)(images)
            try:
                output, end_points = build_net(name, net_input, num_classes=classes,  # type: ignore[arg-type]
                                               is_training=is_training)  # type: ignore[arg-type]
            except TypeError as e:  # `if is_training:` in the definition
                note = f"net '{name}' branches on is_training in Python ({e}); exported in inference mode only"
                continue
            saver = tf.compat.v1.train.Saver(tf.compat.v1.global_variables()) if checkpoint else None
        break
    outputs = [output] + [end_points[k] for k in ("Predictions", "predictions") if k in end_points]
    return ModelHandle(
        kind="slim", source=f"slim:{name}", graph=graph, endpoints=end_points, inputs=[images], outputs=outputs,
        checkpoint=resolve_checkpoint(checkpoint) if checkpoint else None, tensorflow_version=tf.__version__,
        saver=saver, net=config,
        extra={"num_classes": classes, "is_training": "switch" if note is None else False,
               "preprocessing": config.preprocessing, "switch_note": note})
