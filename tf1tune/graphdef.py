"""The vocabulary of TF1 graphs that every module shares: op-type sets, tensor and node names, every node of a
GraphDef, and importing with the one repair that needs a retry.

Op types are named once here (variables, placeholders, fused batch norm, functional control flow), so that a
loader, the selection of variables, freezing, optimizing and surgery agree on what a variable or an input is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import tensorflow as tf
from tensorflow.core.framework import graph_pb2

# Ops that hold a variable's value (TF < 1.0 `Variable`, ref `VariableV2`, resource `VarHandleOp`).
VARIABLE_OPS = frozenset({"VariableV2", "Variable", "VarHandleOp"})
# Ops that take an input: plain placeholders, and placeholders with a default (switches such as `is_training`).
PLAIN_PLACEHOLDER_OPS = frozenset({"Placeholder", "PlaceholderV2"})
PLACEHOLDER_OPS = PLAIN_PLACEHOLDER_OPS | {"PlaceholderWithDefault"}
FUSED_BATCH_NORM_OPS = frozenset({"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"})
# Control flow and calls as functions (TF 2 builds `tf.cond` as `If`); freezing lowers them.
FUNCTIONAL_OPS = frozenset({"If", "StatelessIf", "Case", "StatelessCase", "While", "StatelessWhile",
                            "PartitionedCall", "StatefulPartitionedCall"})

T = TypeVar("T")


def node_name(name: str) -> str:
    """The op name of a tensor or op name, or of a GraphDef input (`scope/op:0` -> `scope/op`, `^op` -> `op`)."""
    return name.lstrip("^").split(":")[0]


def tensor_name(name: str) -> str:
    """A tensor name with its output index (`op` -> `op:0`)."""
    return name if ":" in name else f"{name}:0"


def split_input(name: str) -> tuple[str, int, bool]:
    """`(node, output index, is_control)` of a GraphDef input string (`a:1`, `^a`, `a`)."""
    if name.startswith("^"):
        return name[1:], -1, True
    node, _, index = name.partition(":")
    return node, int(index or 0), False


def all_nodes(graph_def: graph_pb2.GraphDef) -> Iterable[tf.compat.v1.NodeDef]:
    """Every node of `graph_def`, those of its function library included."""
    yield from graph_def.node
    for function in graph_def.library.function:
        yield from function.node_def


def strip_output_shapes(graph_def: graph_pb2.GraphDef) -> list[str]:
    """Remove every `_output_shapes` hint (used when they contradict the graph); one line saying how many."""
    n = 0
    for node in all_nodes(graph_def):
        if "_output_shapes" in node.attr:
            del node.attr["_output_shapes"]
            n += 1
    return [f"removed inconsistent _output_shapes hints from {n} node(s)"] if n else []


def import_with_repair(graph_def: graph_pb2.GraphDef, do_import: Callable[[], T]) -> tuple[T, list[str]]:
    """Run `do_import` (it imports `graph_def`, or the MetaGraphDef that holds it) and return its result.

    Old files carry `_output_shapes` hints that today's shape inference contradicts: when the import fails, the
    hints are stripped from `graph_def` and the import is run once more.

    Returns:
        `(result, repair lines)`; the lines are empty when the first import worked.

    Raises:
        ValueError, tf.errors.InvalidArgumentError: The import failed and there was nothing to strip, or it
            failed again without the hints (the caller turns it into its one-line error).
    """
    try:
        return do_import(), []
    except (ValueError, tf.errors.InvalidArgumentError):
        stripped = strip_output_shapes(graph_def)
        if not stripped:
            raise
    return do_import(), stripped
