"""The graph rewrites of export, in one place: grappler, dead-branch pruning, batch-norm folding.

- `run_grappler`: TensorFlow's grappler (`tf_optimizer.OptimizeGraph`) with the named optimizers, the outputs kept
  as fetches.
- `inference_only`: conditionals and function calls (TF 2 builds `tf.cond` as `If`) lowered by grappler's function
  optimizer, then `prune_dead_branches` cuts the branch that a constant predicate never takes (grappler leaves
  Switches on constants in place), so dropout becomes identity and batch norm uses its moving statistics.
- `fold_batch_norms`: inference-mode fused batch norms folded into the conv or matmul before them, in numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
from tensorflow.core.framework import graph_pb2, node_def_pb2
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, rewriter_config_pb2

from tf1tune.errors import ExportError
from tf1tune.export._io import strip_colocation
from tf1tune.graphdef import FUNCTIONAL_OPS, FUSED_BATCH_NORM_OPS, node_name, split_input

__all__ = ["fold_batch_norms", "inference_only", "prune_dead_branches", "run_grappler"]


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


def inference_only(graph_def: graph_pb2.GraphDef, outputs: list[str]) -> graph_pb2.GraphDef:
    """Conditionals and function calls lowered and pruned on their now-constant predicates (grappler).

    Only runs when the graph has functional control flow (an `If` on `is_training`): then grappler's function
    optimizer inlines the calls and constant folding drops the branch that inference never takes.
    """
    if not any(n.op in FUNCTIONAL_OPS for n in graph_def.node):
        return graph_def
    lowered = run_grappler(graph_def, outputs, ["function"])
    return prune_dead_branches(lowered, outputs)


def prune_dead_branches(graph_def: graph_pb2.GraphDef, outputs: list[str]) -> graph_pb2.GraphDef:
    """Switch/Merge conditionals on a constant predicate replaced by the branch that runs.

    A `Switch` whose predicate is a constant (through Identities) forwards its data input on the taken port;
    everything fed by the other port is dead, deadness spreads through data and control edges except into a
    `Merge`, and a `Merge` left with one live input becomes an `Identity`. Then only what the outputs need is kept.
    """
    nodes = {n.name: n for n in graph_def.node}

    def constant(name: str) -> bool | None:
        node = nodes.get(split_input(name)[0])
        while node is not None and node.op == "Identity":
            node = nodes.get(split_input(node.input[0])[0])
        if node is None or node.op != "Const" or node.attr["dtype"].type != tf.bool.as_datatype_enum:
            return None
        return bool(tf.make_ndarray(node.attr["value"].tensor))

    taken = {n.name: int(v) for n in graph_def.node if n.op == "Switch" and (v := constant(n.input[1])) is not None}
    if not taken:
        return graph_def
    dead_nodes: set[str] = set()
    changed = True
    while changed:
        changed = False
        for node in graph_def.node:
            if node.name in dead_nodes or node.name in taken or node.op == "Merge":
                continue
            for text in node.input:
                src, index, control = split_input(text)
                if src in dead_nodes or (src in taken and not control and index != taken[src]):
                    dead_nodes.add(node.name)
                    changed = True
                    break
    result = graph_pb2.GraphDef()
    result.versions.CopyFrom(graph_def.versions)
    result.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        if node.name in dead_nodes or node.name in taken:
            continue
        new = result.node.add()
        new.CopyFrom(node)
        del new.input[:]
        for text in node.input:
            src, index, control = split_input(text)
            if src in dead_nodes or (src in taken and not control and index != taken[src]):
                if node.op != "Merge":
                    raise ExportError(f"internal: live node '{node.name}' reads dead '{text}'")
                continue
            if src in taken:  # the taken port forwards the Switch's data input; its control edge always fires
                if control:
                    continue
                text = nodes[src].input[0]
            new.input.append(text)
        if node.op == "Merge" and len([i for i in new.input if not i.startswith("^")]) == 1:
            new.op = "Identity"
            for key in list(new.attr):
                if key != "T":
                    del new.attr[key]
    # Control edges from nodes that only pass constants along (the branches' pivots and their NoOps) order nothing.
    trivial: set[str] = set()
    grew = True
    while grew:
        grew = False
        for node in result.node:
            if (node.name not in trivial and node.op in ("NoOp", "Identity", "Const")
                    and all(split_input(i)[0] in trivial for i in node.input)):
                trivial.add(node.name)
                grew = True
    for node in result.node:
        keep = [i for i in node.input if not (i.startswith("^") and i[1:] in trivial)]
        if len(keep) != len(node.input):
            del node.input[:]
            node.input.extend(keep)
    strip_colocation(result)  # hints naming removed nodes would pull them back in
    return tf.compat.v1.graph_util.extract_sub_graph(result, outputs)
