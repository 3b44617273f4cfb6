"""Reading and atomically writing GraphDefs, and removing colocation hints before nodes are cut away."""

from __future__ import annotations

import os

from tensorflow.core.framework import graph_pb2

from tf1tune._fs import require_folder, write_atomic
from tf1tune.errors import ExportError


def strip_colocation(graph_def: graph_pb2.GraphDef) -> graph_pb2.GraphDef:
    """`graph_def` without colocation hints (`_class: loc:@...`): placement hints that only get in the way once
    nodes are removed (importing fails on a hint naming a node that is gone)."""
    for node in graph_def.node:
        if "_class" in node.attr:
            del node.attr["_class"]
    return graph_def


def write_graph_def(graph_def: graph_pb2.GraphDef, path: str | os.PathLike[str]) -> str:
    """Write `graph_def` (binary) to `path` atomically: a temp file in the same directory, then `os.replace`.

    Returns:
        The path written.

    Raises:
        ExportError: The directory does not exist or the graph is over protobuf's 2 GB limit.
    """
    target = require_folder(path, ExportError)
    if graph_def.ByteSize() >= 2**31:
        raise ExportError(f"the frozen graph is {graph_def.ByteSize() / 2**30:.1f} GB, over protobuf's 2 GB limit; "
                          "export a SavedModel instead")
    return write_atomic(target, graph_def.SerializeToString())


def read_graph_def(path: str | os.PathLike[str]) -> graph_pb2.GraphDef:
    """A binary GraphDef read from `path`."""
    graph_def = graph_pb2.GraphDef()
    with open(path, "rb") as f:
        graph_def.ParseFromString(f.read())
    return graph_def
