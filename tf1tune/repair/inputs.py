"""Replacing a TF1 input pipeline with placeholders, in a GraphDef or a MetaGraphDef.

TF1 training graphs often read their batches from queues (`tf.compat.v1.train.batch`, `shuffle_batch`,
`string_input_producer` + a reader) or from a dataset iterator. Such a graph cannot be fed numpy data without
feeding an internal tensor, keeps queue runners that a session must start, and drags file names and readers into
every export. `replace_input` swaps each tensor the pipeline produces (`batch:0`, `IteratorGetNext:1`, a
`ParseExample` output) for a new `Placeholder` of the same dtype and shape (batch dimension free), rewires its
consumers, then removes what only the pipeline needed: queues, enqueue/close/size ops, readers, iterators, their
summaries and `QueueRunner` entries, and the constants that fed them. Variables, the saver's nodes and the train
ops stay; if the model still reads the pipeline through a tensor that was not replaced, nothing is removed and the
error names that tensor.

What a pipeline is and how it is removed is `tf1tune.repair.pipeline`. The thin wrappers `strip_device_placements`
and `strip_unknown_attrs` apply `tf1tune.repair.graph`'s repairs to a GraphDef or a MetaGraphDef's graph.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import tensorflow as tf
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from tf1tune.errors import GraphRepairError, first_line
from tf1tune.graphdef import all_nodes, import_with_repair, node_name, tensor_name
from tf1tune.names import not_found
from tf1tune.repair import graph as graph_repair
from tf1tune.repair.pipeline import PRODUCER_OPS, GraphOrMeta, graph_def_of, remove_pipeline, tainted

__all__ = ["NewInput", "replace_input", "strip_device_placements", "strip_unknown_attrs"]



@dataclass(frozen=True)
class NewInput:
    """How one replaced tensor's placeholder should look; None fields are taken from the graph.

    Attributes:
        name: Node name of the placeholder (default: the tensor name with `:` as `_`, e.g. `batch_0`).
        dtype: Its dtype (default: the tensor's dtype).
        shape: Its shape, None entries free (default: the tensor's shape with a free first dimension).
    """

    name: str | None = None
    dtype: str | tf.DType | None = None
    shape: Sequence[int | None] | None = None


def strip_device_placements(proto: GraphOrMeta) -> list[str]:
    """Clear every device placement of a GraphDef or a MetaGraphDef's graph (see `graph_repair.clear_devices`)."""
    graph_def = graph_def_of(proto)
    n = sum(1 for node in all_nodes(graph_def) if node.device)
    lines = graph_repair.clear_devices(graph_def)
    return lines or ([f"cleared the CPU device placement of {n} node(s)"] if n else [])


def strip_unknown_attrs(proto: GraphOrMeta) -> list[str]:
    """Remove attrs this TensorFlow's ops no longer declare (see `graph_repair.repair_unknown_attrs`)."""
    return graph_repair.repair_unknown_attrs(graph_def_of(proto))


def replace_input(
    graph_def_or_meta: GraphOrMeta,
    tensor: str | Mapping[str, str | NewInput | None],
    dtype: str | tf.DType | None = None,
    shape: Sequence[int | None] | None = None,
    name: str | None = None,
    force: bool = False,
) -> list[str]:
    """Replace input-pipeline tensors by placeholders and remove the pipeline, in place.

    Args:
        graph_def_or_meta: The graph to change (a MetaGraphDef's collections and signatures are updated too).
        tensor: One tensor name (`batch:0`), or a mapping tensor -> placeholder name or `NewInput` to replace
            several outputs of one dequeue at once (`{"batch:0": "images", "batch:1": "labels"}`).
        dtype: Placeholder dtype when `tensor` is one name (default: the tensor's).
        shape: Placeholder shape when `tensor` is one name (default: the tensor's, first dimension free).
        name: Placeholder name when `tensor` is one name (default: `batch_0` for `batch:0`).
        force: Also replace tensors that no input-pipeline op produces.

    Returns:
        One line per change.

    Raises:
        NameNotFoundError: A tensor does not exist (the closest names are listed).
        GraphRepairError: A tensor is not produced by a pipeline op (without `force`), a placeholder name is taken,
            or the model still reads the pipeline through a tensor that is not replaced.

    Example:
        >>> replace_input(meta, {"batch:0": "images", "batch:1": "labels"})
        ['replaced batch:0 (float32 [32,4]) by placeholder images (float32 [?,4], 1 consumer(s) rewired)', ...]
    """
    if isinstance(tensor, str):
        specs = {tensor: NewInput(name, dtype, shape)}
    else:
        if dtype is not None or shape is not None or name is not None:
            raise GraphRepairError("dtype, shape and name apply to one tensor; give a NewInput per tensor instead")
        specs = {t: (v if isinstance(v, NewInput) else NewInput(v)) for t, v in tensor.items()}
    if not specs:
        raise GraphRepairError("no tensor to replace; give at least one, e.g. batch:0")
    meta = graph_def_or_meta if isinstance(graph_def_or_meta, meta_graph_pb2.MetaGraphDef) else None
    graph_def = graph_def_of(graph_def_or_meta)
    nodes = {n.name: n for n in graph_def.node}
    specs = {tensor_name(t): s for t, s in specs.items()}
    infos = _tensor_infos(graph_def, list(specs))
    had_consumers = {node_name(i) for n in graph_def.node for i in n.input}
    placeholders: dict[str, str] = {}
    lines: list[str] = []
    taken = set(nodes)
    for t, spec in specs.items():
        op_name = t.split(":")[0]
        node = nodes.get(op_name)
        if node is None:
            raise not_found("tensor", t, [f"{n}:0" for n in nodes], "see `tf1tune inspect` for the graph's ops")
        if not force and not PRODUCER_OPS.search(node.op) and not _downstream_of_source(graph_def, op_name):
            raise GraphRepairError(f"{t} is produced by {node.op} node '{op_name}', not by an input pipeline op "
                                   "(a queue dequeue, iterator, reader or example parser); pass --force to replace it")
        ph_name = spec.name or _unique(t.replace(":", "_"), taken)
        if ph_name in taken or ph_name in placeholders.values():
            raise GraphRepairError(f"cannot name the placeholder for {t} '{ph_name}': a node has that name; "
                                   "choose another name")
        taken.add(ph_name)
        placeholders[t] = ph_name
        graph_dtype, graph_shape = infos[t]
        try:
            ph_dtype = tf.as_dtype(spec.dtype) if spec.dtype is not None else graph_dtype
        except TypeError as e:
            raise GraphRepairError(f"'{spec.dtype}' for {t} is not a dtype; use e.g. float32, int64, string") from e
        ph_shape = _placeholder_shape(graph_shape, spec.shape)
        graph_def.node.add().CopyFrom(_placeholder(ph_name, ph_dtype, ph_shape))
        consumers = _rewire(graph_def, t, ph_name)
        lines.append(f"replaced {t} ({graph_dtype.name} {_shape_text(graph_shape)}) by placeholder {ph_name} "
                     f"({ph_dtype.name} {_shape_text(ph_shape)}, {consumers} consumer(s) rewired)")
    if meta is not None:
        _rewire_meta(meta, placeholders)
    lines += remove_pipeline(graph_def, meta, set(placeholders.values()), had_consumers)
    return lines



# ----------------------------------------------------------------------------------------------------------------
# Finding tensors and building placeholders


def _unique(base: str, taken: set[str]) -> str:
    name, i = base, 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    return name


def _tensor_infos(graph_def: graph_pb2.GraphDef, tensors: list[str]) -> dict[str, tuple[tf.DType, tf.TensorShape]]:
    """dtype and shape of each tensor, computed by importing a repaired copy of the graph into a fresh graph."""
    names = {n.name for n in graph_def.node}
    wanted = [t for t in tensors if t.split(":")[0] in names]
    if not wanted:
        return {}
    copy = graph_pb2.GraphDef()
    copy.CopyFrom(graph_def)
    graph_repair.repair_unknown_attrs(copy)
    graph_repair.clear_devices(copy)

    def do_import() -> tf.Graph:
        graph = tf.Graph()
        with graph.as_default():
            tf.import_graph_def(copy, name="")
        return graph

    try:
        graph, _ = import_with_repair(copy, do_import)
    except (ValueError, tf.errors.InvalidArgumentError) as e:
        raise GraphRepairError(f"the graph does not import on TensorFlow {tf.__version__} ({first_line(e)}), "
                               "so the tensors' dtypes and shapes are unknown") from e
    out = {}
    for t in wanted:
        try:
            tensor = graph.get_tensor_by_name(t)
        except (KeyError, ValueError) as e:
            op = graph.get_operation_by_name(t.split(":")[0])
            raise GraphRepairError(f"{t} does not exist: {op.name} ({op.type}) has {len(op.outputs)} output(s), "
                                   f"{', '.join(o.name for o in op.outputs[:6]) or 'none'}") from e
        out[t] = (tensor.dtype, tensor.shape)
    return out


def _placeholder_shape(graph_shape: tf.TensorShape, given: Sequence[int | None] | None) -> tf.TensorShape:
    if given is not None:
        return tf.TensorShape([None if d is None or d < 0 else int(d) for d in given])
    if graph_shape.rank is None:
        return graph_shape
    dims = graph_shape.as_list()
    return tf.TensorShape([None] + dims[1:]) if dims else graph_shape


def _shape_text(shape: tf.TensorShape) -> str:
    if shape.rank is None:
        return "unknown shape"
    return "[" + ",".join("?" if d is None else str(d) for d in shape.as_list()) + "]"


def _placeholder(name: str, dtype: tf.DType, shape: tf.TensorShape) -> tf.compat.v1.NodeDef:
    node = tf.compat.v1.NodeDef(name=name, op="Placeholder")
    node.attr["dtype"].type = dtype.as_datatype_enum
    node.attr["shape"].shape.CopyFrom(shape.as_proto())
    node.attr["_output_shapes"].list.shape.add().CopyFrom(shape.as_proto())
    return node


def _downstream_of_source(graph_def: graph_pb2.GraphDef, op_name: str) -> bool:
    return op_name in tainted(graph_def)


# ----------------------------------------------------------------------------------------------------------------
# Rewiring


def _rewire(graph_def: graph_pb2.GraphDef, tensor: str, placeholder: str) -> int:
    op_name, index = tensor.split(":")
    refs = {tensor} | ({op_name} if index == "0" else set())
    n = 0
    for node in graph_def.node:
        hit = False
        for i, inp in enumerate(node.input):
            if inp in refs:
                node.input[i] = placeholder
                hit = True
        n += hit
    return n


def _rewire_meta(meta: meta_graph_pb2.MetaGraphDef, placeholders: Mapping[str, str]) -> None:
    """Point collections and signatures that named a replaced tensor at its placeholder."""
    new = {t: f"{p}:0" for t, p in placeholders.items()}
    for col in meta.collection_def.values():
        if col.HasField("node_list"):
            for i, v in enumerate(col.node_list.value):
                if v in new:
                    col.node_list.value[i] = new[v]
    for sig in meta.signature_def.values():
        for info in list(sig.inputs.values()) + list(sig.outputs.values()):
            if info.name in new:
                info.name = new[info.name]
