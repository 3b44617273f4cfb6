"""What serving needs around a frozen graph: JPEG bytes in, label names out.

`serving_graph` wraps a frozen classifier GraphDef:

* `input_format="jpeg"`: a new input `image_bytes` (string `[N]`, one encoded JPEG per example) is decoded
  (`tf.io.decode_jpeg` with the model's channel count), resized to the model's input size (`tf.image.resize`,
  bilinear, as `tf1tune.data` resizes training images), cast to float32 in [0, 255] and fed where the image
  input was, the way TF Serving exports of slim models took JPEG bytes. The image placeholder is gone.
* `labels`: a constant string tensor `labels` `[K]` and an output `label` (string `[N]`, the name of the
  top-1 class of the first output) beside the probabilities.

`check_serving` runs the wrapped graph on JPEG bytes (or images) and the original graph on the images that
TensorFlow decodes from those same bytes, and compares them like any export.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import graph_pb2

from tf1tune.errors import ExportError, first_line
from tf1tune.export.verify import Verification, compare, run_graph_def
from tf1tune.graphdef import node_name, tensor_name

INPUT_FORMATS = ("tensor", "jpeg")
JPEG_INPUT = "image_bytes:0"
LABEL_OUTPUT = "label:0"
LABELS_TENSOR = "labels:0"


def read_labels_file(path: str | os.PathLike[str]) -> list[str]:
    """Class names from a text file: one per line (blank lines skipped), or slim's `0:daisy` lines.

    Raises:
        ExportError: The file is missing, unreadable or holds no names.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise ExportError(f"cannot read labels file '{os.fspath(path)}': {first_line(e)}") from e
    if not lines:
        raise ExportError(f"labels file '{os.fspath(path)}' is empty; write one class name per line")
    if all(":" in line and line.split(":", 1)[0].strip().isdigit() for line in lines):
        by_id = {int(line.split(":", 1)[0]): line.split(":", 1)[1].strip() for line in lines}
        if sorted(by_id) != list(range(len(by_id))):
            raise ExportError(f"labels file '{os.fspath(path)}' numbers its classes {sorted(by_id)[:5]}...; "
                              "number them 0, 1, 2, ... without gaps")
        return [by_id[i] for i in range(len(by_id))]
    return lines


@dataclass
class ServingGraph:
    """A wrapped graph with its input and output tensor names."""

    graph_def: graph_pb2.GraphDef
    inputs: list[str]
    outputs: list[str]


def _image_shape(graph: tf.Graph, name: str) -> list[int]:
    shape = graph.get_tensor_by_name(tensor_name(name)).shape
    if shape.rank != 4 or None in shape.as_list()[1:] or shape.as_list()[3] not in (1, 3):
        raise ExportError(f"--input-format jpeg needs an image input [N, H, W, 1 or 3] of known size; "
                          f"'{name}' is {shape}")
    return shape.as_list()


def serving_graph(
    graph_def: graph_pb2.GraphDef,
    inputs: Sequence[str],
    outputs: Sequence[str],
    input_format: str = "tensor",
    labels: Sequence[str] | None = None,
) -> ServingGraph:
    """`graph_def` with JPEG input and/or a label output (see the module docstring).

    Raises:
        ExportError: Unknown input format, a JPEG input on a graph without one image input, or a label count
            that is not the first output's class count.
    """
    if input_format not in INPUT_FORMATS:
        raise ExportError(f"unknown input format '{input_format}'; use one of {', '.join(INPUT_FORMATS)}")
    inputs, outputs = [tensor_name(n) for n in inputs], [tensor_name(n) for n in outputs]
    probe = tf.Graph()
    with probe.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    classes = probe.get_tensor_by_name(outputs[0]).shape
    if labels is not None and (classes.rank is None or classes[-1] != len(labels)):
        raise ExportError(f"{len(labels)} labels given, but output '{outputs[0]}' has shape {classes} "
                          f"({classes[-1] if classes.rank else 'unknown'} classes); give one label per class")
    if input_format == "jpeg" and len(inputs) != 1:
        raise ExportError(f"--input-format jpeg takes one image input; the graph has {len(inputs)}: {', '.join(inputs)}")
    graph = tf.Graph()
    with graph.as_default():  # the new nodes are made first, so they get their names unless the graph has them
        input_map, new_inputs = {}, list(inputs)
        if input_format == "jpeg":
            _, height, width, channels = _image_shape(probe, inputs[0])
            encoded = tf.compat.v1.placeholder(tf.string, [None], name=node_name(JPEG_INPUT))

            def decode(data: tf.Tensor) -> tf.Tensor:
                image = tf.io.decode_jpeg(data, channels=channels)
                return tf.image.resize(tf.cast(image, tf.float32), [height, width], method="bilinear")

            images = tf.map_fn(decode, encoded, fn_output_signature=tf.float32, name="decode_jpeg")
            input_map[inputs[0]] = tf.clip_by_value(images, 0.0, 255.0)
            new_inputs = [encoded.name]
        got = tf.compat.v1.import_graph_def(graph_def, input_map=input_map or None, return_elements=outputs, name="")
        new_outputs = list(outputs)
        if labels is not None:
            names = tf.constant(list(labels), dtype=tf.string, name=node_name(LABELS_TENSOR))
            flat = tf.reshape(got[0], [tf.shape(got[0])[0], -1])
            label = tf.gather(names, tf.argmax(flat, axis=1), name=node_name(LABEL_OUTPUT))
            new_outputs.append(label.name)
    wrapped = graph.as_graph_def()
    if input_format == "jpeg":  # the old image placeholder is fed by the decoder now; drop it
        from tensorflow.compat.v1 import graph_util

        wrapped = graph_util.extract_sub_graph(wrapped, [node_name(n) for n in new_outputs])
    return ServingGraph(wrapped, new_inputs, new_outputs)


def encode_jpeg(images: np.ndarray, quality: int = 95) -> np.ndarray:
    """float [N, H, W, C] images in [0, 255] as an object array of JPEG bytes (what a client sends)."""
    pixels = np.clip(np.round(np.asarray(images)), 0, 255).astype(np.uint8)
    return np.array([tf.io.encode_jpeg(p, quality=quality).numpy() for p in pixels], dtype=object)


def check_serving(
    serving: ServingGraph,
    graph_def: graph_pb2.GraphDef,
    inputs: Sequence[str],
    outputs: Sequence[str],
    images: np.ndarray,
    labels: Sequence[str] | None = None,
    rtol: float = 1e-5,
    atol: float = 0.0,
) -> Verification:
    """The wrapped graph against the original on the same examples; a JPEG input gets `images` as JPEG bytes
    and the original graph the images TensorFlow decodes (and resizes) from those bytes.

    Raises:
        ExportError: The outputs differ beyond the tolerance, or the label output names another class.
    """
    inputs, outputs = [tensor_name(n) for n in inputs], [tensor_name(n) for n in outputs]
    images = np.asarray(images, dtype=np.float32)
    if serving.inputs[0] != inputs[0]:  # a JPEG input
        data = encode_jpeg(images)
        height, width, channels = images.shape[1:]
        decoded = np.stack([tf.image.resize(tf.cast(tf.io.decode_jpeg(b, channels=channels), tf.float32),
                                            [height, width], method="bilinear").numpy() for b in data])
        feeds, plain_feeds = {serving.inputs[0]: data}, {inputs[0]: np.clip(decoded, 0.0, 255.0)}
    else:
        feeds = plain_feeds = {inputs[0]: images}
    expected = run_graph_def(graph_def, outputs, plain_feeds)
    try:
        got = run_graph_def(serving.graph_def, serving.outputs, feeds)
    except (ValueError, tf.errors.OpError) as e:
        raise ExportError(f"the serving graph does not run: {first_line(e)}") from e
    max_abs, max_rel, failures = compare(expected, got[:len(expected)], outputs, rtol, atol)
    if labels is not None:
        want = [labels[i] for i in np.argmax(np.reshape(expected[0], (len(expected[0]), -1)), axis=1)]
        have = [v.decode() for v in got[-1]]
        wrong = sum(a != b for a, b in zip(want, have))
        if wrong:
            failures.append(f"{LABEL_OUTPUT}: {wrong} of {len(want)} label names differ from the top-1 class")
    if failures:
        raise ExportError("the serving graph does not reproduce the frozen graph: " + "; ".join(failures)
                          + "; nothing was written")
    return Verification(max_abs, max_rel, len(images), rtol, atol)


def wrap_for_serving(
    graph_def: graph_pb2.GraphDef,
    inputs: Sequence[str],
    outputs: Sequence[str],
    input_format: str = "tensor",
    labels: Sequence[str] | None = None,
    images: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[ServingGraph, Verification, dict[str, np.ndarray]]:
    """`serving_graph` checked with `check_serving` on `images` (default: 4 seeded random images in [0, 255]).

    Returns:
        The wrapped graph, its check, and feeds for it (JPEG bytes or images) to check later copies with
        (a SavedModel built from it).
    """
    serving = serving_graph(graph_def, inputs, outputs, input_format, labels)
    if images is None:
        probe = tf.Graph()
        with probe.as_default():
            tf.compat.v1.import_graph_def(graph_def, name="")
        shape = probe.get_tensor_by_name(tensor_name(inputs[0])).shape.as_list()
        images = np.random.default_rng(seed).uniform(0, 255, [4, *shape[1:]]).astype(np.float32)
    check = check_serving(serving, graph_def, inputs, outputs, images, labels)
    feeds = {serving.inputs[0]: encode_jpeg(images) if serving.inputs[0] != tensor_name(inputs[0]) else images}
    return serving, check, feeds
