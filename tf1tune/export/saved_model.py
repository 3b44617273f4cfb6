"""`export_saved_model`: a frozen graph as a TF1 SavedModel with a `serving_default` signature.

The SavedModel is built with `tf.compat.v1.saved_model.Builder` from the frozen graph in a fresh `tf.Graph` (it
holds no variables: the weights are constants). It is written into a temp directory next to `export_dir`, loaded
back with `tf.saved_model.load` in TF2 eager mode, and its signature is called on the same inputs as the frozen
graph; only when the outputs agree within the tolerance is the directory renamed to `export_dir`.

Signature keys come from the tensor names: `input:0` -> `input`, `DigitsCNN/Predictions/Softmax:0` ->
`DigitsCNN_Predictions_Softmax`, `split:1` -> `split_1` (characters other than letters, digits and `_` become
`_`; a clash gets a numeric suffix).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import graph_pb2

from tf1tune._fs import require_folder, staged_dir
from tf1tune.errors import ExportError, first_line
from tf1tune.export.verify import Verification, compare, random_feeds, run_graph_def
from tf1tune.graphdef import tensor_name
from tf1tune.handle import ModelHandle


def signature_keys(names: Sequence[str]) -> dict[str, str]:
    """A safe, unique signature key for each tensor name (see the module docstring)."""
    keys: dict[str, str] = {}
    for name in names:
        op, _, index = tensor_name(name).rpartition(":")
        key = re.sub(r"[^A-Za-z0-9_]", "_", op) + (f"_{index}" if index != "0" else "")
        if not re.match(r"[A-Za-z]", key):
            key = "t_" + key
        base, n = key, 1
        while key in keys.values():
            key, n = f"{base}_{n}", n + 1
        keys[tensor_name(name)] = key
    return keys


def _build(graph_def: graph_pb2.GraphDef, inputs: Sequence[str], outputs: Sequence[str], path: str) -> None:
    in_keys, out_keys = signature_keys(inputs), signature_keys(outputs)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
        signature = tf.compat.v1.saved_model.predict_signature_def(
            {key: graph.get_tensor_by_name(name) for name, key in in_keys.items()},
            {key: graph.get_tensor_by_name(name) for name, key in out_keys.items()})
        with tf.compat.v1.Session(graph=graph) as sess:
            builder = tf.compat.v1.saved_model.Builder(path)
            builder.add_meta_graph_and_variables(sess, [tf.compat.v1.saved_model.tag_constants.SERVING],
                                                 signature_def_map={"serving_default": signature},
                                                 strip_default_attrs=True)
            builder.save()


def run_saved_model(export_dir: str, feeds: Mapping[str, np.ndarray], outputs: Sequence[str]) -> list[np.ndarray]:
    """Load `export_dir` with `tf.saved_model.load` (eager) and call `serving_default` on `feeds` (by tensor name)."""
    with tf.init_scope():  # eager, even if a caller has a graph as default
        loaded = tf.saved_model.load(export_dir)
        in_keys, out_keys = signature_keys(list(feeds)), signature_keys(outputs)
        result = loaded.signatures["serving_default"](**{in_keys[tensor_name(k)]: tf.constant(v) for k, v in feeds.items()})
        return [result[out_keys[tensor_name(n)]].numpy() for n in outputs]


def export_saved_model(
    source: graph_pb2.GraphDef | ModelHandle,
    inputs: Sequence[str],
    outputs: Sequence[str],
    export_dir: str | os.PathLike[str],
    set_values: Mapping[str, Any] | None = None,
    feeds: Mapping[str, np.ndarray] | None = None,
    rtol: float = 1e-5,
    atol: float = 0.0,
) -> Verification:
    """Write a verified SavedModel of a frozen graph (or of a handle, frozen first) to `export_dir`.

    Args:
        source: A frozen GraphDef, or a handle that `freeze_model` freezes (with `set_values`).
        inputs: Input tensor names; they become the signature inputs.
        outputs: Output tensor names; they become the signature outputs.
        export_dir: A directory that does not exist yet (or is empty).
        set_values: Placeholders to set, for a handle source (see `freeze_model`).
        feeds: Input data by name for the check; seeded random data by default.
        rtol: Relative tolerance of the check (see `tf1tune.export.verify`).
        atol: Absolute tolerance of the check.

    Returns:
        The SavedModel against the frozen graph.

    Raises:
        ExportError: `export_dir` is not empty, or the SavedModel does not reproduce the frozen graph.

    Example:
        >>> tf1tune.export_saved_model(frozen, ["input"], ["DigitsCNN/Predictions/Softmax"], "out/digits")
    """
    if isinstance(source, ModelHandle):
        from tf1tune.export.freeze import freeze_model

        frozen = freeze_model(source, outputs, inputs, set_values)
        graph_def, inputs, outputs = frozen.graph_def, frozen.inputs, frozen.outputs
    else:
        graph_def = source
    inputs, outputs = [tensor_name(n) for n in inputs], [tensor_name(n) for n in outputs]
    target = require_folder(export_dir, ExportError)
    if os.path.exists(target) and (not os.path.isdir(target) or os.listdir(target)):
        raise ExportError(f"'{os.fspath(export_dir)}' already exists and is not an empty directory; "
                          "give a new directory with --out")
    with staged_dir(target) as tmp_root:
        staged = os.path.join(tmp_root, "saved_model")
        try:
            _build(graph_def, inputs, outputs, staged)
        except (ValueError, KeyError, tf.errors.OpError) as e:
            from tf1tune.errors import describe_os_error

            raise ExportError(f"TensorFlow could not build the SavedModel: {describe_os_error(e) or first_line(e)}") \
                from e
        data = {tensor_name(k): v for k, v in (feeds or random_feeds(graph_def, inputs)).items()}
        expected = run_graph_def(graph_def, outputs, data)
        got = run_saved_model(staged, data, outputs)
        max_abs, max_rel, failures = compare(expected, got, outputs, rtol, atol)
        if failures:
            raise ExportError("the SavedModel does not reproduce the frozen graph: " + "; ".join(failures)
                              + "; nothing was written")
        if os.path.isdir(target):
            os.rmdir(target)
        os.replace(staged, target)
    n = len(next(iter(data.values()))) if data and np.ndim(next(iter(data.values()))) else 1
    return Verification(max_abs, max_rel, n, rtol, atol)
