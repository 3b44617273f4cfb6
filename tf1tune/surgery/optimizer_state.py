"""Which entries of a checkpoint are optimizer state: slots by name, and the global step (also from the `.meta`)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import tensorflow as tf

from tf1tune.checkpoints import read_checkpoint
from tf1tune.graphdef import VARIABLE_OPS
from tf1tune.selection import is_optimizer_state_name

__all__ = ["optimizer_state_names"]

_GLOBAL_STEP = "global_step"
_INT_DTYPES = ("int32", "int64")


def optimizer_state_names(checkpoint: str, names: Sequence[str] | None = None) -> tuple[list[str], list[str], str]:
    """The optimizer slots and global step among a checkpoint's entries.

    Slots are the names `tf1tune.selection.is_optimizer_state_name` accepts (`.../Momentum`, `.../Adam_1`,
    `.../Adagrad`, `beta1_power`, `frozen_snapshot`, ...), except `global_step`, which is reported as a step.
    The global step is `global_step`, plus, when
    the checkpoint has a `.meta`, the variable in its GLOBAL_STEP collection; when that collection is empty, an
    integer scalar, non-trainable variable that an `AssignAdd` op increments (what `Optimizer.minimize(
    global_step=...)` builds; MTCNN's `Variable` is such a step).

    Args:
        checkpoint: A resolved checkpoint prefix.
        names: Its entry names (read from the checkpoint when None).

    Returns:
        (slot names, step names, how the step was found).
    """
    if names is None:
        names = sorted(read_checkpoint(checkpoint).get_variable_to_shape_map())
    slots = [n for n in names if n != _GLOBAL_STEP and is_optimizer_state_name(n)]
    steps, how = [], "by name"
    if _GLOBAL_STEP in names:
        steps.append(_GLOBAL_STEP)
    meta_steps, meta_how = _steps_from_meta(checkpoint)
    for s in meta_steps:
        if s in names and s not in steps:
            steps.append(s)
            how = meta_how
    return slots, steps, how


def _steps_from_meta(prefix: str) -> tuple[list[str], str]:
    """Global step variable names from the checkpoint's `.meta` (see `optimizer_state_names`)."""
    from tensorflow.core.framework import variable_pb2
    from tensorflow.core.protobuf import meta_graph_pb2

    from tf1tune.loaders import find_meta
    from tf1tune.repair.graph import read_proto

    meta_path = find_meta(prefix)
    if meta_path is None:
        return [], ""
    meta = meta_graph_pb2.MetaGraphDef()
    try:
        read_proto(meta_path, meta, "MetaGraphDef (.meta)")
    except Exception as e:  # noqa: BLE001  (an unreadable .meta only loses the step detection)
        warnings.warn(f"cannot read {meta_path} to find the global step ({e}); only 'global_step' is dropped",
                      stacklevel=3)
        return [], ""

    def var_names(key: str) -> list[str]:
        if key not in meta.collection_def:
            return []
        out = []
        for raw in meta.collection_def[key].bytes_list.value:
            v = variable_pb2.VariableDef()
            v.ParseFromString(raw)
            out.append(v.variable_name.split(":")[0])
        return out

    collected = var_names(tf.compat.v1.GraphKeys.GLOBAL_STEP)
    if collected:
        return collected, f"GLOBAL_STEP collection of {os.path.basename(meta_path)}"
    trainable = set(var_names(tf.compat.v1.GraphKeys.TRAINABLE_VARIABLES))
    nodes = {n.name: n for n in meta.graph_def.node}
    found = []
    for node in meta.graph_def.node:
        if node.op not in ("AssignAdd", "AssignAddVariableOp") or not node.input:
            continue
        var = nodes.get(node.input[0].split(":")[0].lstrip("^"))
        if var is None or var.op not in VARIABLE_OPS or var.name in trainable:
            continue
        dtype = tf.as_dtype(var.attr["dtype"].type).name
        scalar = not var.attr["shape"].shape.dim and not var.attr["shape"].shape.unknown_rank
        if dtype in _INT_DTYPES and scalar and var.name not in found:
            found.append(var.name)
    return found, f"int scalar incremented by AssignAdd in {os.path.basename(meta_path)}"
