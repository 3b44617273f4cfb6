"""Reading TF2 object-based checkpoints under the variable names a TF1 user knows, for `inspect` and `diff`.

A TF2 checkpoint (`tf.train.Checkpoint`, a SavedModel's `variables/variables`, what `tf1tune export-tf2` and
`convert --to tf2` write) keys its tensors by object path: `tf1_variables/DigitsCNN.SConv2d_1.Sweights/.ATTRIBUTES/
VARIABLE_VALUE`. Its object graph (the `_CHECKPOINTABLE_OBJECT_GRAPH` entry) also records each variable's own name
(`full_name`: `DigitsCNN/Conv2d_1/weights`), which is what a TF1 checkpoint calls the same weight. So each entry is
named by its `full_name`; when several entries share one (Keras 3 gives many variables the name `kernel`, and an
optimizer keeps a second reference to the weights it trains), entries holding the same bits are one entry, and
entries that differ are named by their object path instead (`model/dense/kernel`). TF1 checkpoints pass through
unchanged.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from tf1tune.checkpoints import read_tensor, resolve_checkpoint

OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"
_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def resolve_any_checkpoint(path: str | os.PathLike[str]) -> str:
    """`resolve_checkpoint`, also accepting a TF2 SavedModel directory (its `variables/variables`)."""
    text = os.fspath(path)
    inner = os.path.join(text, "variables", "variables")
    if os.path.isdir(text) and os.path.isfile(inner + ".index") and \
            any(os.path.isfile(os.path.join(text, f)) for f in ("saved_model.pb", "saved_model.pbtxt")):
        return resolve_checkpoint(inner)
    return resolve_checkpoint(text)


def is_object_based(reader: tf.train.CheckpointReader) -> bool:
    """True for a TF2 object-based checkpoint."""
    return reader.has_tensor(OBJECT_GRAPH)


def _object_path(key: str) -> str:
    """`a/b.Sc/.ATTRIBUTES/VARIABLE_VALUE` -> `a/b/c` (checkpoint keys escape `/` as `.S` and `.` as `..`)."""
    path = key[: -len(_SUFFIX)] if key.endswith(_SUFFIX) else key.replace("/.ATTRIBUTES/", "/")
    parts = []
    for part in path.split("/"):
        out, i = "", 0
        while i < len(part):
            if part[i] == "." and i + 1 < len(part) and part[i + 1] in ".S":
                out += "." if part[i + 1] == "." else "/"
                i += 2
            else:
                out += part[i]
                i += 1
        parts.append(out)
    return "/".join(parts)


def entry_keys(reader: tf.train.CheckpointReader, prefix: str) -> dict[str, str]:
    """Display name -> checkpoint key of every tensor (see the module docstring); identity for TF1 checkpoints."""
    keys = sorted(k for k in reader.get_variable_to_shape_map() if k != OBJECT_GRAPH)
    if not is_object_based(reader):
        return {k: k for k in keys}
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor(OBJECT_GRAPH))
    full = {a.checkpoint_key: a.full_name for node in graph.nodes for a in node.attributes if a.full_name}
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(full.get(key) or _object_path(key), []).append(key)
    names: dict[str, str] = {}
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    for name, members in groups.items():
        members.sort(key=lambda k: (k.count("/"), k))
        first = members[0]
        same = all(shapes[k] == shapes[first] and dtypes[k] == dtypes[first] for k in members[1:]) and all(
            np.array_equal(read_tensor(reader, k, prefix), read_tensor(reader, first, prefix)) for k in members[1:])
        if same:
            names[name] = first
        else:
            names.update({_object_path(k): k for k in members})
    return dict(sorted(names.items()))
