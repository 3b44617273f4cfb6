"""`optimize`: a frozen graph made cheaper to run, with TensorFlow's own tools.

1. Identities removed (`graph_util.remove_training_nodes`), then fused batch norms (`FusedBatchNorm`, V2, V3 in
   inference mode) folded into the weights of the conv or matmul before them with numpy
   (`tf1tune.export.rewrites.fold_batch_norms`: TF 2.21's `optimize_for_inference` does handle
   `FusedBatchNormV3`, but multiplies the weights element by element in Python, 45 s on ResNet-50).
2. `optimize_for_inference` (tensorflow/python/tools) on the rest: strips what the outputs do not need, folds
   what batch norm is left (the decomposed mul/add form, legacy batch-norm ops), fuses resize+pad+conv.
3. grappler (`tf_optimizer.OptimizeGraph` on a meta graph with the outputs as fetches): constant folding,
   arithmetic simplification and dependency (identity / no-op) removal. Remapping is left out on purpose: it
   fuses ops into internal `_Fused*` kernels that other runtimes (tf2onnx, TF Lite) do not read, and TF's session
   runtime applies it by itself anyway.

The result is checked by `verify` like any export; `optimize` itself does not verify.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
from tensorflow.core.framework import graph_pb2

from tf1tune.errors import ExportError, first_line
from tf1tune.export._io import strip_colocation
from tf1tune.export.rewrites import fold_batch_norms, run_grappler
from tf1tune.graphdef import PLAIN_PLACEHOLDER_OPS, node_name

_OPTIMIZERS = ["constfold", "arithmetic", "dependency", "constfold", "pruning"]


def optimize(graph_def: graph_pb2.GraphDef, inputs: Sequence[str], outputs: Sequence[str]) -> graph_pb2.GraphDef:
    """A faster graph computing the same outputs: batch norm folded, constants folded, identities removed.

    Args:
        graph_def: A frozen GraphDef (no variables), e.g. from `freeze`.
        inputs: Input placeholder names (`input` or `input:0`); they stay placeholders with their shapes.
        outputs: Output names; they keep their names.

    Returns:
        The optimized GraphDef.

    Raises:
        ExportError: An input is not a placeholder of the graph, or TensorFlow's tools reject the graph.

    Example:
        >>> fast = tf1tune.optimize(frozen, ["input"], ["DigitsCNN/Predictions/Softmax"])
    """
    from tensorflow.python.tools import optimize_for_inference_lib

    graph_def = strip_colocation(graph_pb2.GraphDef.FromString(graph_def.SerializeToString()))
    nodes = {n.name: n for n in graph_def.node}
    in_names = [node_name(n) for n in inputs]
    out_names = list(dict.fromkeys(node_name(n) for n in outputs))
    missing = [n for n in in_names if n not in nodes or nodes[n].op not in PLAIN_PLACEHOLDER_OPS]
    if missing:
        placeholders = [n.name for n in graph_def.node if n.op in PLAIN_PLACEHOLDER_OPS]
        raise ExportError(f"cannot optimize: input(s) {', '.join(missing)} are not placeholders of the graph "
                          f"(placeholders: {', '.join(placeholders) or 'none'})")
    shapes = {n: nodes[n].attr["shape"] for n in in_names if "shape" in nodes[n].attr}
    try:
        types = [nodes[n].attr["dtype"].type for n in in_names]
        result = tf.compat.v1.graph_util.remove_training_nodes(graph_def, out_names)
        result = fold_batch_norms(result)
        result = optimize_for_inference_lib.optimize_for_inference(result, in_names, out_names, types)
        for node in result.node:  # strip_unused rebuilds the placeholders; keep their declared shapes
            if node.name in shapes:
                node.attr["shape"].CopyFrom(shapes[node.name])
        result = run_grappler(result, out_names, _OPTIMIZERS)
    except (ValueError, KeyError, tf.errors.OpError) as e:
        first = first_line(e)
        raise ExportError(f"TensorFlow's optimize_for_inference rejected the graph: {first}; "
                          "export without --optimize") from e
    return result
