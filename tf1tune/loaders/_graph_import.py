"""Importing a (repaired) MetaGraphDef into a fresh `tf.Graph`, shared by the `.meta` and SavedModel loaders."""

from __future__ import annotations

import warnings

import tensorflow as tf
from google.protobuf import message
from tensorflow.core.protobuf import meta_graph_pb2

from tf1tune.errors import BadSourceError, GraphRepairWarning, first_line
from tf1tune.graphdef import import_with_repair
from tf1tune.repair import graph as graph_repair

# What importing a MetaGraphDef with garbled collections or saver raises (beyond shape and attr errors).
_DAMAGED = (message.DecodeError, KeyError, TypeError, IndexError, AttributeError, UnicodeDecodeError)


def warn_repairs(source: str, repairs: list[str]) -> None:
    """One warning line per repair."""
    for line in repairs:
        warnings.warn(f"{source}: {line}", GraphRepairWarning, stacklevel=3)


def import_meta_graph_def(
    meta: meta_graph_pb2.MetaGraphDef, source: str
) -> tuple[tf.Graph, tf.compat.v1.train.Saver | None, list[str]]:
    """Repair `meta`, import it into a new graph; returns (graph, the file's own saver or None, repair lines).

    When the first import fails on `_output_shapes` hints that contradict today's shape inference,
    the hints are stripped and the import is tried once more (`tf1tune.graphdef.import_with_repair`).
    """
    repairs = graph_repair.repair_meta_graph(meta, source)
    try:
        (graph, saver), stripped = import_with_repair(meta.graph_def, lambda: _import(meta))
    except _DAMAGED as e:
        raise BadSourceError(f"'{source}' is damaged and does not import: {type(e).__name__}: {first_line(e)}") from e
    except (ValueError, tf.errors.InvalidArgumentError) as e:
        raise BadSourceError(f"'{source}' does not import on TensorFlow {tf.__version__}: {first_line(e)}") from e
    return graph, saver, repairs + stripped


def _import(meta: meta_graph_pb2.MetaGraphDef) -> tuple[tf.Graph, tf.compat.v1.train.Saver | None]:
    """Import `meta` into a new graph, adding no op the file does not hold.

    With a `saver_def`, `import_meta_graph` rebuilds the file's own Saver from its ops. Without one,
    `import_meta_graph` would build a new Saver (SaveV2, RestoreV2, Assign ops) into the graph; the graph is
    imported without it instead, and `ModelHandle.session()` builds a Saver only when it restores.
    """
    from tensorflow.python.framework import meta_graph

    graph = tf.Graph()
    with graph.as_default(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if meta.HasField("saver_def"):
            return graph, tf.compat.v1.train.import_meta_graph(meta, clear_devices=True)
        meta_graph.import_scoped_meta_graph(meta, clear_devices=True)
    return graph, None
