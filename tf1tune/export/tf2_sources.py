"""Sources for `export_tf2`: the sources of `tf1tune freeze`, slim nets built with a training switch, run directories.

`load_tf2_source` picks the model as `tf1tune.export.load_source` does (SOURCE, `--meta`, `--net`, `--run-dir`),
with two differences that a trainable export needs:

`tf1tune.load_slim` builds a net in one mode (a Python `is_training`). A TF2 export should switch batch norm and
dropout at call time, so here the net is built once on a boolean `placeholder_with_default(False)` named
`is_training`: slim's `batch_norm` and `dropout` then hold both modes, and `export_tf2` feeds the placeholder.
A net whose definition branches on `is_training` in Python cannot take a tensor; it is built in inference mode
and the export has no training endpoint (`ModelHandle.extra["switch_note"]` says so).

A run directory gives its last checkpoint, its input and probabilities, its validation images for the check, and
the scopes its phases trained (the rest is exported frozen, as the run left it). A frozen `.pb` may have constants
turned back into variables (`unfreeze`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from tf1tune.checkpoints import resolve_checkpoint
from tf1tune.errors import Tf1tuneError
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
                                               is_training=is_training)
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


@dataclass
class TF2Source:
    """A loaded source with what its kind implies for the export (None: the caller's choice or the default)."""

    handle: ModelHandle
    inputs: list[str] | None = None
    outputs: list[str] | None = None
    feeds: dict[str, np.ndarray] | None = None
    trainable_scopes: list[str] | None = None


def load_tf2_source(
    source: str | None = None,
    *,
    meta: str | None = None,
    net: str | None = None,
    num_classes: int | None = None,
    checkpoint: str | None = None,
    run_dir: str | None = None,
    unfreeze: Sequence[str] | None = None,
) -> TF2Source:
    """The model for `export_tf2`, picked like `tf1tune.export.load_source` (see the module docstring).

    Raises:
        Tf1tuneError: Not exactly one source, `num_classes` without a net, `unfreeze` on a graph with variables.
    """
    from tf1tune.export.pipeline import load_source

    if run_dir:
        from tf1tune.train.run_dir import CONFIG, _read_config, load_run

        if source or meta or net:
            raise Tf1tuneError("--run-dir replaces SOURCE, --meta and --net; give only one of them")
        run = load_run(run_dir)
        config = _read_config(os.path.join(run_dir, CONFIG))
        phases = [s for p in config.get("phases") or [] for s in p.get("trainable_scopes") or []]
        scopes = sorted(set(phases or config.get("trainable_scopes") or [])) or None
        return TF2Source(run.handle, [run.input], [run.probabilities], {run.input: run.validation_images}, scopes)
    slim_name = net if net and not source and not meta else None
    if source and source.startswith("slim:") and not (meta or net):
        slim_name = source[len("slim:"):]
    if slim_name:
        if num_classes is not None and not net:
            raise Tf1tuneError("--num-classes only applies to --net NAME")
        options: dict[str, Any] = {"checkpoint": checkpoint} if checkpoint else {}
        if num_classes is not None:
            options["num_classes"] = num_classes or None
        handle = load_slim_switchable(slim_name, **options)
    else:
        handle = load_source(source, meta=meta, net=net, num_classes=num_classes, checkpoint=checkpoint)
    if unfreeze:
        from tf1tune.graft import unfreeze as unfreeze_constants

        if handle.kind != "frozen":
            raise Tf1tuneError(f"--unfreeze applies to a frozen .pb source; '{handle.source}' is a {handle.kind} source")
        handle = unfreeze_constants(handle, list(unfreeze))
    return TF2Source(handle)
