"""Tiny image models with one hostile op each, in `.meta` + checkpoint and frozen `.pb` form, for the safety tests.

The model: `input` [N, 8, 8, 1] -> 3x3 conv "conv" (4 channels, relu) -> `features` -> mean pool -> dense(2)
"logits" -> softmax `probs`. The hostile op is a control dependency of `features`, so whatever fetches the model's
outputs (or trains on `features`) would run it. Each hostile op leaves a trace (a file it writes, a file it
deletes) that the tests look for.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import tensorflow as tf

Hostile = Callable[[str], list[tf.Operation]]


def _write_file(trace: str) -> list[tf.Operation]:
    return [tf.io.write_file(trace, "written by the graph", name="evil_write")]


def _read_file(trace: str) -> list[tf.Operation]:
    contents = tf.io.read_file("/etc/hostname", name="evil_read")
    return [tf.io.write_file(trace, contents, name="evil_leak")]


def _matching_files(trace: str) -> list[tf.Operation]:
    found = tf.io.matching_files("/etc/*", name="evil_glob")
    return [tf.identity(found, name="evil_glob_out").op]


def _save_v2(trace: str) -> list[tf.Operation]:
    value = tf.constant([1.0], name="evil_value")
    return [tf.raw_ops.SaveV2(prefix=trace, tensor_names=["x"], shape_and_slices=[""], tensors=[value],
                              name="evil_save")]


def _print_to_file(trace: str) -> list[tf.Operation]:
    return [tf.print("printed by the graph", output_stream=f"file://{trace}", name="evil_print")]


def _py_func(trace: str) -> list[tf.Operation]:
    out = tf.compat.v1.py_func(lambda: np.float32(0), [], tf.float32, name="evil_python")
    return [out.op]


def _function_write(trace: str) -> list[tf.Operation]:
    @tf.function
    def hidden() -> tf.Tensor:
        tf.io.write_file(trace, "written from a function")
        return tf.constant(0)

    return [hidden().op]


HOSTILE: dict[str, tuple[str, Hostile]] = {
    "write_file": ("WriteFile", _write_file),
    "read_file": ("ReadFile", _read_file),
    "matching_files": ("MatchingFiles", _matching_files),
    "save_v2": ("SaveV2", _save_v2),
    "print_to_file": ("PrintV2", _print_to_file),
    "py_func": ("PyFunc", _py_func),
    "function_write": ("WriteFile", _function_write),
}


def _build(hostile: Hostile | None, trace: str) -> tf.Graph:
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(7)
        images = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 1], name="input")
        kernel = tf.compat.v1.get_variable("conv/weights", [3, 3, 1, 4])
        relu = tf.nn.relu(tf.nn.conv2d(images, kernel, 1, "SAME"))
        deps = hostile(trace) if hostile else []
        with tf.control_dependencies(deps):
            features = tf.identity(relu, name="features")
        pooled = tf.reduce_mean(features, [1, 2])
        dense = tf.compat.v1.get_variable("logits/weights", [4, 2])
        logits = tf.matmul(pooled, dense, name="logits")
        tf.nn.softmax(logits, name="probs")
        tf.compat.v1.train.get_or_create_global_step()
    return graph


def write(root: str, name: str | None, trace: str, frozen: bool = False) -> str:
    """Write the model with hostile op `name` (a key of `HOSTILE`, None: harmless) under `root`; returns the `.meta`
    path, or the `.pb` path with `frozen`. `trace` is the path the hostile op writes to."""
    os.makedirs(root, exist_ok=True)
    graph = _build(HOSTILE[name][1] if name else None, trace)
    with graph.as_default(), tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        if frozen:
            graph_def = tf.compat.v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), ["probs"])
            path = os.path.join(root, "model.pb")
            with open(path, "wb") as f:
                f.write(graph_def.SerializeToString())
            return path
        return tf.compat.v1.train.Saver().save(sess, os.path.join(root, "model.ckpt")) + ".meta"


def write_data(path: str, n: int = 24, seed: int = 0) -> str:
    """An `.npz` of `n` 8x8x1 images in [0, 255] with labels 0/1 (brighter image: class 1)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = (rng.uniform(0, 128, (n, 8, 8, 1)) + 100 * y[:, None, None, None]).astype(np.float32)
    np.savez(path, x=x, y=y)
    return path
