"""Which save and restore ops of a graph are its savers' own, and safe to leave in it (used by `graph_safety`).

A TF1 `.meta` carries its Saver as ops (`SaveV2`, `RestoreV2`, `MergeV2Checkpoints`). They touch files, yet they
are no risk when their path comes only from the filename that is fed (the checkpoint the user named) and nothing but
the saver runs after them. This module decides that from the GraphDef alone; nothing is imported or run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from tensorflow.core.framework import graph_pb2, node_def_pb2, types_pb2

_SAVER_FILE_OPS = frozenset({"Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice",
                             "MergeV2Checkpoints"})
# Ops a saver's path may pass through on its way from the filename tensor to a save or restore op.
_PATH_OPS = frozenset({"Const", "Identity", "StringJoin", "ShardedFilename", "ShardedFilespec", "Pack",
                       "StaticRegexFullMatch", "RegexFullMatch", "Select", "SelectV2", "PlaceholderWithDefault"})
_FILENAME_OPS = frozenset({"Placeholder", "PlaceholderWithDefault"})
_ASSIGN_OPS = frozenset({"Assign", "AssignVariableOp"})
_SAVER_PLUMBING = frozenset({"Identity", "NoOp", "Pack", "MergeV2Checkpoints", "SaveV2", "Save", "SaveSlices",
                             "RestoreV2", "Restore", "RestoreSlice", "StringJoin", "ShardedFilename", "ShardedFilespec"})
_SAVER_SUFFIX = re.compile(r"(_temp[0-9a-f_]*/part|\.part|part|\^s3://\.\*)")

def input_name(text: str) -> str:
    return text.lstrip("^").split(":")[0]


def saver_ops(graph_def: graph_pb2.GraphDef, filenames: frozenset[str]) -> set[str]:
    """Names of the save and restore ops of the graph's savers that are no risk: their path comes only from a
    saver's filename placeholder (the path tf1tune or the user feeds), and nothing but the saver itself runs after
    them (restore assigns of the values they read, the saver's identities and no-ops)."""
    nodes = {n.name: n for n in graph_def.node}
    consumers: dict[str, list[node_def_pb2.NodeDef]] = {}
    for node in graph_def.node:
        for i in node.input:
            consumers.setdefault(input_name(i), []).append(node)
    found = set()
    for node in graph_def.node:
        if node.op in _SAVER_FILE_OPS and _fed_path(nodes, node, filenames) and _only_saver_after(node, consumers):
            found.add(node.name)
    return found


def ancestors(nodes: dict[str, node_def_pb2.NodeDef], start: Iterable[str], data_only: bool = False,
               stop: Callable[[node_def_pb2.NodeDef], bool] | None = None) -> set[str]:
    """`start` and every node they depend on (data and control inputs, or data only), not looking past the nodes
    that `stop` is true of."""
    seen: set[str] = set()
    todo = [n for n in start if n in nodes]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if stop is not None and stop(nodes[name]):
            continue
        inputs = [i for i in nodes[name].input if not (data_only and i.startswith("^"))]
        todo.extend(i for i in map(input_name, inputs) if i in nodes and i not in seen)
    return seen


def _fed_path(nodes: dict[str, node_def_pb2.NodeDef], node: node_def_pb2.NodeDef, filenames: frozenset[str]) -> bool:
    """True when the path inputs of a save/restore op derive from a filename placeholder (or the `saver_def`'s
    filename tensor, in old savers a Const that is fed) and the standard suffixes of TensorFlow's savers
    (`_temp/part`, `.part`, shard numbers) only."""
    def fed(n: node_def_pb2.NodeDef) -> bool:
        return n.op in _FILENAME_OPS or n.name in filenames

    path_inputs = node.input[:2] if node.op == "MergeV2Checkpoints" else node.input[:1]
    for path_input in path_inputs:
        seen = ancestors(nodes, [input_name(path_input)], data_only=True, stop=fed)
        if not any(fed(nodes[n]) for n in seen):
            return False
        for name in seen:
            other = nodes[name]
            if fed(other):
                continue
            if other.op not in _PATH_OPS:
                return False
            if other.op == "Const" and other.attr["value"].tensor.dtype == types_pb2.DT_STRING:
                values = [v.decode("utf-8", "replace") for v in other.attr["value"].tensor.string_val]
                if not all(_SAVER_SUFFIX.fullmatch(v) for v in values):
                    return False
    return True


def _only_saver_after(node: node_def_pb2.NodeDef, consumers: dict[str, list[node_def_pb2.NodeDef]]) -> bool:
    """True when everything that runs after `node` (its consumers, transitively) is the saver's own plumbing: a
    save or restore op that something else (a model output, a variable's initializer) depends on could run."""
    restored = {node.name}  # nodes whose values come from the restore op (through identities)
    seen, todo = set(), [node.name]
    while todo:
        name = todo.pop()
        for consumer in consumers.get(name, []):
            data_from = {input_name(i) for i in consumer.input if not i.startswith("^")}
            if consumer.op in _ASSIGN_OPS:
                if input_name(consumer.input[1]) not in restored:  # an assign of some other value
                    return False
            elif consumer.op not in _SAVER_PLUMBING:
                return False
            if consumer.op == "Identity" and data_from & restored:
                restored.add(consumer.name)
            if consumer.name not in seen:
                seen.add(consumer.name)
                todo.append(consumer.name)
    return True
