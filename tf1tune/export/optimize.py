"""`optimize`: a frozen graph made cheaper to run, with TensorFlow's own tools.

1. Identities removed (`graph_util.remove_training_nodes`), then fused batch norms (`FusedBatchNorm`, V2, V3 in
   inference mode) folded into the weights of the conv or matmul before them with numpy (`fold_batch_norms`
   here: TF 2.21's `optimize_for_inference` does handle `FusedBatchNormV3`, but multiplies the weights element
   by element in Python, 45 s on ResNet-50).
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
from tensorflow.core.framework import graph_pb2, node_def_pb2
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, rewriter_config_pb2

from tf1tune.errors import ExportError, first_line
from tf1tune.export._io import strip_colocation
from tf1tune.graphdef import FUSED_BATCH_NORM_OPS, PLAIN_PLACEHOLDER_OPS, node_name

_OPTIMIZERS = ["constfold", "arithmetic", "dependency", "constfold", "pruning"]


def run_grappler(graph_def: graph_pb2.GraphDef, outputs: Sequence[str], optimizers: Sequence[str]) -> graph_pb2.GraphDef:
    """`graph_def` rewritten by the named grappler optimizers, keeping the `outputs` ops (fetches) intact."""
    from tensorflow.python.grappler import tf_optimizer

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
        meta = tf.compat.v1.train.export_meta_graph(graph_def=graph.as_graph_def(add_shapes=True), graph=graph,
                                                    clear_devices=True)
    fetches = meta_graph_pb2.CollectionDef()
    fetches.node_list.value.extend(node_name(n) for n in outputs)
    meta.collection_def["train_op"].CopyFrom(fetches)
    config = config_pb2.ConfigProto()
    rewrite = config.graph_options.rewrite_options
    rewrite.optimizers.extend(optimizers)
    rewrite.meta_optimizer_iterations = rewriter_config_pb2.RewriterConfig.TWO
    rewrite.min_graph_nodes = -1  # also optimize tiny graphs
    optimized = tf_optimizer.OptimizeGraph(config, meta, verbose=False)
    for node in optimized.node:  # shapes inferred for the export, not part of the model
        node.attr.pop("_output_shapes", None)
    return optimized


_CONV_OPS = ("Conv2D", "DepthwiseConv2dNative", "MatMul")


def fold_batch_norms(graph_def: graph_pb2.GraphDef) -> graph_pb2.GraphDef:
    """Inference-mode fused batch norms folded into the Conv2D / depthwise conv / MatMul that feeds them, in numpy.

    `scale = gamma / sqrt(variance + epsilon)`; the weights become `w * scale` (per output channel) and the batch
    norm node becomes a `BiasAdd` (same name, so its consumers are untouched) adding `beta - mean * scale`.
    Same arithmetic as `optimize_for_inference_lib.fold_batch_norms`, which does it element by element in Python
    (45 s on ResNet-50); this takes well under a second. A batch norm is left alone unless its input is a conv or
    matmul used by nothing else, with constant weights used by nothing else, and its statistics are constants;
    TF's own pass then sees what is left.
    """
    nodes = {n.name: n for n in graph_def.node}
    consumers: dict[str, int] = {}
    for node in graph_def.node:
        for text in node.input:
            src = node_name(text)
            consumers[src] = consumers.get(src, 0) + 1
    used_ports = {text.lstrip("^") for node in graph_def.node for text in node.input}
    replaced: dict[str, node_def_pb2.NodeDef] = {}
    for bn in graph_def.node:
        if bn.op not in FUSED_BATCH_NORM_OPS or bn.attr["is_training"].b or len(bn.input) < 5:
            continue
        if any(f"{bn.name}:{i}" in used_ports for i in range(1, 6)):  # batch statistics are read by someone
            continue
        conv = nodes.get(node_name(bn.input[0]))
        params = [nodes.get(node_name(i)) for i in bn.input[1:5]]
        if conv is None or conv.op not in _CONV_OPS or consumers.get(conv.name) != 1 or ":" in bn.input[0]:
            continue
        weights = nodes.get(node_name(conv.input[1]))
        if (weights is None or weights.op != "Const" or consumers.get(weights.name) != 1
                or any(p is None or p.op != "Const" for p in params)
                or (conv.op == "MatMul" and conv.attr["transpose_b"].b)):
            continue
        gamma, beta, mean, var = (tf.make_ndarray(p.attr["value"].tensor).astype("float64") for p in params if p)
        w = tf.make_ndarray(weights.attr["value"].tensor)
        scale = gamma / (var + bn.attr["epsilon"].f) ** 0.5
        if conv.op == "DepthwiseConv2dNative":
            folded = w * scale.reshape(w.shape[2], w.shape[3])
        else:
            folded = w * scale
        new_weights = node_def_pb2.NodeDef()
        new_weights.CopyFrom(weights)
        new_weights.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(folded.astype(w.dtype)))
        bias = node_def_pb2.NodeDef(name=bn.name + "/folded_bias", op="Const")
        bias.attr["dtype"].type = weights.attr["dtype"].type
        bias.attr["value"].tensor.CopyFrom(tf.make_tensor_proto((beta - mean * scale).astype(w.dtype)))
        add = node_def_pb2.NodeDef(name=bn.name, op="BiasAdd", input=[bn.input[0], bias.name])
        add.attr["T"].CopyFrom(bn.attr["T"])
        if conv.op != "MatMul":
            add.attr["data_format"].CopyFrom(bn.attr["data_format"])
        replaced[weights.name] = new_weights
        replaced[bn.name] = add
        replaced[bias.name] = bias
    if not replaced:
        return graph_def
    result = graph_pb2.GraphDef()
    result.versions.CopyFrom(graph_def.versions)
    result.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        result.node.add().CopyFrom(replaced.get(node.name, node))
        if node.name in replaced and replaced[node.name].op == "BiasAdd":
            result.node.add().CopyFrom(replaced[node.name + "/folded_bias"])
    return result


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
