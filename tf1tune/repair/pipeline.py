"""What a TF1 input pipeline is (queues, readers, iterators, example parsers, datasets), and removing it.

`remove_pipeline` removes what reads a pipeline source, then what only fed removed nodes (file name constants,
shuffles, epoch counters), with the collection entries, queue runners, control-flow contexts and signatures that
named them; the model itself (variables, the saver, train ops) must lose nothing, else nothing is removed and the
error names the tensor that still connects the model to the pipeline.
"""

from __future__ import annotations

import re
from typing import TypeAlias

import tensorflow as tf
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import control_flow_pb2, meta_graph_pb2, queue_runner_pb2

from tf1tune.errors import GraphRepairError
from tf1tune.graphdef import node_name, tensor_name

GraphOrMeta: TypeAlias = graph_pb2.GraphDef | meta_graph_pb2.MetaGraphDef

# Ops that hold pipeline state: everything computed from them cannot run once the pipeline is gone.
SOURCE_OPS = re.compile(r"^(FIFOQueue|RandomShuffleQueue|PaddingFIFOQueue|PriorityQueue|FakeQueue)(V2)?$"
                         r"|Reader(V2)?$|^(Iterator|IteratorV2|OneShotIterator|AnonymousIterator(V\d)?"
                         r"|MultiDeviceIterator)$")
# Ops that belong to a pipeline (sources, their users, and what produces a batch).
PIPELINE_OPS = re.compile(r"^Queue|Queue(V2)?$|Reader|Iterator|^ParseExample|^ParseSingleExample"
                           r"|^ParseSequenceExample|Dataset")
PRODUCER_OPS = re.compile(r"^QueueDequeue|^IteratorGetNext|^ParseExample|^ParseSingleExample|^ParseSequenceExample"
                           r"|^ReaderRead|^Decode")
SUMMARY_OPS = re.compile(r"Summary(V2)?$")


def graph_def_of(proto: GraphOrMeta) -> graph_pb2.GraphDef:
    """The GraphDef itself, or a MetaGraphDef's graph."""
    return proto.graph_def if isinstance(proto, meta_graph_pb2.MetaGraphDef) else proto


def is_pipeline_op(op_type: str) -> bool:
    """Whether an op type belongs to a TF1 input pipeline (queue, reader, iterator, example parser, dataset)."""
    return bool(PIPELINE_OPS.search(op_type))


def tainted(graph_def: graph_pb2.GraphDef) -> set[str]:
    """Nodes that read, through data edges, a pipeline source (queue, reader, iterator); MergeSummary excluded."""
    consumers: dict[str, list[tf.compat.v1.NodeDef]] = {}
    for node in graph_def.node:
        for inp in node.input:
            if not inp.startswith("^"):
                consumers.setdefault(node_name(inp), []).append(node)
    todo = [n.name for n in graph_def.node if SOURCE_OPS.search(n.op)]
    seen = set(todo)
    while todo:
        for c in consumers.get(todo.pop(), []):
            if c.name not in seen and c.op != "MergeSummary":
                seen.add(c.name)
                todo.append(c.name)
    return seen


def remove_pipeline(graph_def: graph_pb2.GraphDef, meta: meta_graph_pb2.MetaGraphDef | None,
                     new_inputs: set[str], had_consumers: set[str]) -> list[str]:
    """Remove what reads a pipeline source, then what only fed removed nodes; `had_consumers` is from before."""
    nodes = {n.name: n for n in graph_def.node}
    protected = _protected_names(meta)
    removed = tainted(graph_def)
    # The model must not lose anything but pipeline ops and summaries of them.
    side = {n for n in removed if is_pipeline_op(nodes[n].op) or SUMMARY_OPS.search(nodes[n].op)}
    lost = sorted(n for n in removed - side if n not in had_consumers or n in protected)
    if lost:
        still = sorted({tensor_name(i) for n in removed - side for i in nodes[n].input
                        if not i.startswith("^") and node_name(i) in side
                        and re.match(r"QueueDequeue|IteratorGetNext", nodes[node_name(i)].op)})
        hint = (f"; replace {', '.join(still[:5])} too" if still else
                "; replace the tensors that connect them to the pipeline too")
        raise GraphRepairError(f"removing the input pipeline would also remove {', '.join(lost[:5])}"
                               f"{' and more' if len(lost) > 5 else ''}: the model still reads from it{hint}")
    lines = []
    merged = _drop_merge_inputs(graph_def, removed)
    # Then everything whose consumers are all gone (file name constants, shuffles, epoch counters' ops, ...).
    while True:
        live_refs = {node_name(i) for n in graph_def.node if n.name not in removed for i in n.input}
        dead = {n.name for n in graph_def.node if n.name not in removed and n.name in had_consumers
                and n.name not in live_refs and n.name not in protected and n.name not in new_inputs}
        if not dead:
            break
        removed |= dead
    kept = [n for n in graph_def.node if n.name not in removed]
    for node in kept:
        controls = [i for i in node.input if i.startswith("^") and node_name(i) in removed]
        for c in controls:
            node.input.remove(c)
    by_kind: dict[str, int] = {}
    for name in removed:
        op = nodes[name].op
        kind = ("queue" if "Queue" in op else "reader" if "Reader" in op else
                "iterator/dataset" if "Iterator" in op or "Dataset" in op else "other")
        by_kind[kind] = by_kind.get(kind, 0) + 1
    del graph_def.node[:]
    graph_def.node.extend(kept)
    if removed:
        parts = ", ".join(f"{n} {k}" for k, n in sorted(by_kind.items()))
        lines.append(f"removed {len(removed)} input pipeline node(s) that nothing else needs ({parts})")
    lines += merged
    if meta is not None:
        lines += _clean_meta(meta, removed)
    return lines


def _drop_merge_inputs(graph_def: graph_pb2.GraphDef, removed: set[str]) -> list[str]:
    lines = []
    for node in graph_def.node:
        if node.op != "MergeSummary" or node.name in removed:
            continue
        gone = [i for i in node.input if node_name(i) in removed and not i.startswith("^")]
        if not gone:
            continue
        keep = [i for i in node.input if i not in gone]
        del node.input[:]
        node.input.extend(keep)
        node.attr["N"].i = sum(1 for i in keep if not i.startswith("^"))
        if node.attr["N"].i == 0:
            removed.add(node.name)
        lines.append(f"{node.name}: dropped {len(gone)} summary input(s) of the removed pipeline")
    return lines


def _protected_names(meta: meta_graph_pb2.MetaGraphDef | None) -> set[str]:
    """Nodes a MetaGraphDef names (saver, train ops, collections, signatures): never swept as dead."""
    if meta is None:
        return set()
    names = set()
    sd = meta.saver_def
    for t in (sd.filename_tensor_name, sd.save_tensor_name, sd.restore_op_name):
        if t:
            names.add(node_name(t))
    for col in meta.collection_def.values():
        if col.HasField("node_list"):
            names.update(node_name(v) for v in col.node_list.value)
    for sig in meta.signature_def.values():
        names.update(node_name(i.name) for i in list(sig.inputs.values()) + list(sig.outputs.values()))
    return names


def _clean_meta(meta: meta_graph_pb2.MetaGraphDef, removed: set[str]) -> list[str]:
    """Drop collection entries, queue runners, control-flow contexts and signatures that name removed nodes."""
    from tensorflow.core.framework import variable_pb2

    def gone(name: str) -> bool:
        return bool(name) and node_name(name) in removed

    lines = []
    for key in list(meta.collection_def):
        col = meta.collection_def[key]
        if col.HasField("node_list"):
            keep = [v for v in col.node_list.value if not gone(v)]
            n = len(col.node_list.value) - len(keep)
            if n:
                del col.node_list.value[:]
                col.node_list.value.extend(keep)
                lines.append(f"removed {n} entr{'y' if n == 1 else 'ies'} naming removed nodes from collection {key}")
        elif col.HasField("bytes_list"):
            keep_raw, n = [], 0
            for raw in col.bytes_list.value:
                drop = False
                if key == tf.compat.v1.GraphKeys.QUEUE_RUNNERS:
                    qr = queue_runner_pb2.QueueRunnerDef.FromString(raw)
                    drop = gone(qr.queue_name) or any(gone(o) for o in qr.enqueue_op_name)
                elif key == "cond_context":
                    c = control_flow_pb2.CondContextDef.FromString(raw)
                    drop = gone(c.pred_name) or gone(c.pivot_name) or any(gone(v) for v in c.values_def.values)
                elif key == "while_context":
                    w = control_flow_pb2.WhileContextDef.FromString(raw)
                    drop = gone(w.pivot_name) or any(gone(v) for v in w.values_def.values)
                elif key in (tf.compat.v1.GraphKeys.GLOBAL_VARIABLES, tf.compat.v1.GraphKeys.LOCAL_VARIABLES,
                             tf.compat.v1.GraphKeys.TRAINABLE_VARIABLES, tf.compat.v1.GraphKeys.MODEL_VARIABLES):
                    v = variable_pb2.VariableDef.FromString(raw)
                    drop = gone(v.variable_name) or gone(v.initializer_name) or gone(v.snapshot_name)
                if drop:
                    n += 1
                else:
                    keep_raw.append(raw)
            if n:
                del col.bytes_list.value[:]
                col.bytes_list.value.extend(keep_raw)
                what = "queue runner(s)" if key == tf.compat.v1.GraphKeys.QUEUE_RUNNERS else "entr(ies)"
                lines.append(f"removed {n} {what} of the removed pipeline from collection {key}")
    for key in list(meta.signature_def):
        sig = meta.signature_def[key]
        if any(gone(i.name) for i in list(sig.inputs.values()) + list(sig.outputs.values())):
            del meta.signature_def[key]
            lines.append(f"removed signature {key}: it reads the removed pipeline")
    return lines
