"""Reading GraphDef / MetaGraphDef files and repairing what old files need to import on today's TensorFlow.

Each repair returns one line saying what it changed; loaders print those lines as warnings. Repairs:
- a `tensorflow_version` that is not a valid version string (`0.12.head`) is cut to its numeric part;
- attributes that the registered op no longer declares are removed;
- `_output_shapes` hints are removed when the import fails on them (old files carry hints that
  disagree with what today's shape inference computes; `tf1tune.graphdef.import_with_repair`);
- device placements are cleared (a graph pinned to `/gpu:0` must run on a CPU machine).
Op types that this TensorFlow does not register cannot be repaired: `check_ops_registered` raises one
error listing each unknown type and the nodes that use it.
"""

from __future__ import annotations

import os
import re
from typing import TypeAlias

import tensorflow as tf
from google.protobuf import message, text_format
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow.python.framework import op_def_registry

from tf1tune.errors import BadSourceError, SourceNotFoundError, UnknownOpsError
from tf1tune.graphdef import all_nodes
from tf1tune.names import capped

_VALID_VERSION = re.compile(r"^\d+(\.\d+)*([.-]?(a|b|rc|dev|post)\d*)?$")
_NUMERIC_PART = re.compile(r"^\d+(\.\d+)*")

ProtoT: TypeAlias = graph_pb2.GraphDef | meta_graph_pb2.MetaGraphDef | saved_model_pb2.SavedModel


def read_proto(path: str, proto: ProtoT, what: str) -> str:
    """Parse `path` into `proto`, binary or text format (detected); returns `"binary"` or `"text"`.

    Raises:
        SourceNotFoundError: `path` does not exist.
        BadSourceError: Neither a binary nor a text `what` (truncated or garbage file).
    """
    if not os.path.isfile(path):
        raise SourceNotFoundError(f"no {what} file at '{path}': the path does not exist")
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise BadSourceError(f"'{path}' is empty; expected a {what}")
    binary_error = ""
    if not _looks_like_text(data):
        try:
            proto.ParseFromString(data)
            if _has_content(proto):
                return "binary"
            binary_error = "parsed as an empty message"
        except (message.DecodeError, RuntimeError, ValueError) as e:
            binary_error = str(e) or type(e).__name__
    try:
        proto.Clear()
        text_format.Parse(data.decode("utf-8"), proto, allow_unknown_field=True)
        if _has_content(proto):
            return "text"
    except (text_format.ParseError, UnicodeDecodeError) as e:
        if not binary_error:
            raise BadSourceError(f"'{path}' looks like a text {what} but does not parse: {e}") from e
    raise BadSourceError(
        f"'{path}' is not a valid {what} (binary: {binary_error or 'not binary'}; not text format either); "
        "the file may be truncated or of another kind"
    )


def _looks_like_text(data: bytes) -> bool:
    head = data[:512]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return bool(re.match(r"\s*(#.*\n\s*)*[A-Za-z_]+\s*[{:]", text))


def _has_content(proto: ProtoT) -> bool:
    if isinstance(proto, graph_pb2.GraphDef):
        return len(proto.node) > 0
    if isinstance(proto, meta_graph_pb2.MetaGraphDef):
        return len(proto.graph_def.node) > 0
    return len(proto.meta_graphs) > 0


def repair_version_string(meta: meta_graph_pb2.MetaGraphDef) -> list[str]:
    """Cut an invalid `tensorflow_version` (e.g. `0.12.head`) to its numeric part."""
    version = meta.meta_info_def.tensorflow_version
    if not version or _VALID_VERSION.match(version):
        return []
    m = _NUMERIC_PART.match(version)
    fixed = m.group(0) if m else ""
    meta.meta_info_def.tensorflow_version = fixed
    return [f"tensorflow_version '{version}' is not a valid version string; read it as '{fixed or 'unknown'}'"]


def repair_unknown_attrs(graph_def: graph_pb2.GraphDef) -> list[str]:
    """Remove attrs that the registered op no longer declares (internal `_`-prefixed hints are kept)."""
    removed: dict[tuple[str, str], int] = {}
    for node in all_nodes(graph_def):
        op_def = op_def_registry.get(node.op)
        if op_def is None:
            continue
        declared = {a.name for a in op_def.attr}
        for attr in [a for a in node.attr if not a.startswith("_") and a not in declared]:
            del node.attr[attr]
            removed[(node.op, attr)] = removed.get((node.op, attr), 0) + 1
    return [f"removed attr '{attr}' from {n} {op} node(s): this TensorFlow's {op} does not have it"
            for (op, attr), n in sorted(removed.items())]


def clear_devices(graph_def: graph_pb2.GraphDef) -> list[str]:
    """Clear device placements; returns one line naming the devices that were set."""
    devices = set()
    for node in all_nodes(graph_def):
        if node.device:
            if not re.fullmatch(r"(/job:localhost(/replica:0)?(/task:0)?)?/(device:)?cpu:[0*]", node.device, re.IGNORECASE):
                devices.add(node.device)  # only placements that could fail here are worth a warning
            node.device = ""
    if not devices:
        return []
    shown = ", ".join(sorted(devices)[:3]) + (", ..." if len(devices) > 3 else "")
    return [f"cleared device placements ({shown}) so the graph runs on this machine"]


def check_ops_registered(graph_def: graph_pb2.GraphDef, source: str) -> None:
    """Raise `UnknownOpsError` listing every op type of `graph_def` that this TensorFlow lacks."""
    functions = {f.signature.name for f in graph_def.library.function}
    unknown: dict[str, list[str]] = {}
    for node in all_nodes(graph_def):
        if node.op not in functions and op_def_registry.get(node.op) is None:
            unknown.setdefault(node.op, []).append(node.name)
    if unknown:
        parts = []
        for op, nodes in sorted(unknown.items()):
            shown = capped(nodes, 3)
            parts.append(f"{op} (used by {shown})")
        raise UnknownOpsError(
            f"'{source}' uses op types that TensorFlow {tf.__version__} does not register: {'; '.join(parts)}; "
            "load the library that defines them (tf.load_op_library) or replace those nodes"
        )


def repair_graph_def(graph_def: graph_pb2.GraphDef, source: str) -> list[str]:
    """All graph-level repairs in order; raises on unknown ops. Returns the repair lines."""
    check_ops_registered(graph_def, source)
    return repair_unknown_attrs(graph_def) + clear_devices(graph_def)


def repair_meta_graph(meta: meta_graph_pb2.MetaGraphDef, source: str) -> list[str]:
    """Repairs for a MetaGraphDef: version string, then the graph repairs."""
    return repair_version_string(meta) + repair_graph_def(meta.graph_def, source)
