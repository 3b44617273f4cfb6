"""Loader for a frozen GraphDef (`.pb`, binary or text format)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TypeAlias

import tensorflow as tf
from tensorflow.core.framework import graph_pb2, tensor_shape_pb2

from tf1tune import graph_safety
from tf1tune.errors import BadSourceError, first_line
from tf1tune.graphdef import PLAIN_PLACEHOLDER_OPS
from tf1tune.handle import ModelHandle
from tf1tune.loaders._graph_import import warn_repairs
from tf1tune.names import not_found
from tf1tune.repair import graph as graph_repair

Shape: TypeAlias = Sequence[int | None]


def load_frozen(
    path: str | os.PathLike[str],
    input_shapes: Mapping[str, Shape] | None = None,
    batch_size: int | None = None,
) -> ModelHandle:
    """Import a frozen GraphDef into its own graph, optionally with new input shapes.

    Args:
        path: The GraphDef file; binary or text format is detected from the content, not the name.
        input_shapes: New shapes for placeholders, by node name (`{"input": [None, 224, 224, 3]}`).
        batch_size: Shortcut that sets the first dimension of every placeholder (None keeps it).

    Returns:
        A handle with the placeholders as `inputs` and the nodes nothing consumes as `outputs`.

    Raises:
        SourceNotFoundError, BadSourceError, UnknownOpsError, NameNotFoundError.
    """
    source = os.fspath(path)
    graph_def = graph_pb2.GraphDef()
    read_proto_kind = graph_repair.read_proto(source, graph_def, "GraphDef (.pb)")
    repairs = graph_repair.repair_graph_def(graph_def, source)
    risks = graph_safety.scan(graph_def)
    _set_input_shapes(graph_def, input_shapes or {}, batch_size)
    graph = _import(graph_def, source)
    if read_proto_kind == "text":
        repairs.append("read as a text-format GraphDef")
    warn_repairs(source, [r for r in repairs if not r.startswith("read as")])
    return ModelHandle.from_graph(
        "frozen",
        source,
        graph,
        tensorflow_version=None,
        repairs=repairs,
        risks=risks,
        extra={"graph_def_version": graph_def.versions.producer, "format": read_proto_kind},
    )


def _set_input_shapes(graph_def: graph_pb2.GraphDef, shapes: Mapping[str, Shape], batch_size: int | None) -> None:
    placeholders = {n.name: n for n in graph_def.node if n.op in PLAIN_PLACEHOLDER_OPS}
    for name in shapes:
        if name.split(":")[0] not in placeholders:
            raise not_found("input placeholder", name, placeholders)
    for name, node in placeholders.items():
        new = shapes.get(name, shapes.get(f"{name}:0"))
        if new is None and batch_size is not None and "shape" in node.attr and not node.attr["shape"].shape.unknown_rank:
            new = [batch_size] + [d.size if d.size >= 0 else None for d in node.attr["shape"].shape.dim[1:]]
        if new is None:
            continue
        proto = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=-1 if d is None else int(d)) for d in new])
        node.attr["shape"].shape.CopyFrom(proto)
        node.attr.pop("_output_shapes", None)


def _import(graph_def: graph_pb2.GraphDef, source: str) -> tf.Graph:
    graph = tf.Graph()
    try:
        with graph.as_default():
            tf.import_graph_def(graph_def, name="")
    except (ValueError, tf.errors.InvalidArgumentError) as e:
        first = first_line(e)
        raise BadSourceError(f"'{source}' does not import on TensorFlow {tf.__version__}: {first}") from e
    return graph
