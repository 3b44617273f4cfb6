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

The thin wrappers `strip_device_placements` and `strip_unknown_attrs` apply `graph_repair`'s repairs to a GraphDef
or a MetaGraphDef's graph.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import tensorflow as tf
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import control_flow_pb2, meta_graph_pb2, queue_runner_pb2

from tf1tune import graph_repair
from tf1tune._fs import atomic_file, check_output
from tf1tune.errors import GraphRepairError, first_line
from tf1tune.names import not_found

__all__ = ["NewInput", "is_pipeline_op", "repair_file", "replace_input", "strip_device_placements", "strip_unknown_attrs"]

GraphOrMeta = graph_pb2.GraphDef | meta_graph_pb2.MetaGraphDef

# Ops that hold pipeline state: everything computed from them cannot run once the pipeline is gone.
_SOURCE_OPS = re.compile(r"^(FIFOQueue|RandomShuffleQueue|PaddingFIFOQueue|PriorityQueue|FakeQueue)(V2)?$"
                         r"|Reader(V2)?$|^(Iterator|IteratorV2|OneShotIterator|AnonymousIterator(V\d)?"
                         r"|MultiDeviceIterator)$")
# Ops that belong to a pipeline (sources, their users, and what produces a batch).
_PIPELINE_OPS = re.compile(r"^Queue|Queue(V2)?$|Reader|Iterator|^ParseExample|^ParseSingleExample"
                           r"|^ParseSequenceExample|Dataset")
_PRODUCER_OPS = re.compile(r"^QueueDequeue|^IteratorGetNext|^ParseExample|^ParseSingleExample|^ParseSequenceExample"
                           r"|^ReaderRead|^Decode")
_SUMMARY_OPS = re.compile(r"Summary(V2)?$")


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


def is_pipeline_op(op_type: str) -> bool:
    """Whether an op type belongs to a TF1 input pipeline (queue, reader, iterator, example parser, dataset)."""
    return bool(_PIPELINE_OPS.search(op_type))


def strip_device_placements(proto: GraphOrMeta) -> list[str]:
    """Clear every device placement of a GraphDef or a MetaGraphDef's graph (see `graph_repair.clear_devices`)."""
    graph_def = _graph_def(proto)
    n = sum(1 for node in graph_repair._all_nodes(graph_def) if node.device)
    lines = graph_repair.clear_devices(graph_def)
    return lines or ([f"cleared the CPU device placement of {n} node(s)"] if n else [])


def strip_unknown_attrs(proto: GraphOrMeta) -> list[str]:
    """Remove attrs this TensorFlow's ops no longer declare (see `graph_repair.repair_unknown_attrs`)."""
    return graph_repair.repair_unknown_attrs(_graph_def(proto))


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
    graph_def = _graph_def(graph_def_or_meta)
    nodes = {n.name: n for n in graph_def.node}
    specs = {_canonical(t): s for t, s in specs.items()}
    infos = _tensor_infos(graph_def, list(specs))
    had_consumers = {_input_node(i) for n in graph_def.node for i in n.input}
    placeholders: dict[str, str] = {}
    lines: list[str] = []
    taken = set(nodes)
    for t, spec in specs.items():
        op_name = t.split(":")[0]
        node = nodes.get(op_name)
        if node is None:
            raise not_found("tensor", t, [f"{n}:0" for n in nodes], "see `tf1tune inspect` for the graph's ops")
        if not force and not _PRODUCER_OPS.search(node.op) and not _downstream_of_source(graph_def, op_name):
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
    lines += _remove_pipeline(graph_def, meta, set(placeholders.values()), had_consumers)
    return lines


# ----------------------------------------------------------------------------------------------------------------
# Finding tensors and building placeholders


def _graph_def(proto: GraphOrMeta) -> graph_pb2.GraphDef:
    return proto.graph_def if isinstance(proto, meta_graph_pb2.MetaGraphDef) else proto


def _canonical(tensor: str) -> str:
    return tensor if ":" in tensor else f"{tensor}:0"


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
    for attempt in (0, 1):
        graph = tf.Graph()
        try:
            with graph.as_default():
                tf.import_graph_def(copy, name="")
            break
        except (ValueError, tf.errors.InvalidArgumentError) as e:
            if attempt or not graph_repair.strip_output_shapes(copy):
                first = first_line(e)
                raise GraphRepairError(f"the graph does not import on TensorFlow {tf.__version__} ({first}), "
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
    return op_name in _tainted(graph_def)


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


# ----------------------------------------------------------------------------------------------------------------
# Removing the pipeline


def _input_node(inp: str) -> str:
    return inp.lstrip("^").split(":")[0]


def _tainted(graph_def: graph_pb2.GraphDef) -> set[str]:
    """Nodes that read, through data edges, a pipeline source (queue, reader, iterator); MergeSummary excluded."""
    consumers: dict[str, list[tf.compat.v1.NodeDef]] = {}
    for node in graph_def.node:
        for inp in node.input:
            if not inp.startswith("^"):
                consumers.setdefault(_input_node(inp), []).append(node)
    todo = [n.name for n in graph_def.node if _SOURCE_OPS.search(n.op)]
    seen = set(todo)
    while todo:
        for c in consumers.get(todo.pop(), []):
            if c.name not in seen and c.op != "MergeSummary":
                seen.add(c.name)
                todo.append(c.name)
    return seen


def _remove_pipeline(graph_def: graph_pb2.GraphDef, meta: meta_graph_pb2.MetaGraphDef | None,
                     new_inputs: set[str], had_consumers: set[str]) -> list[str]:
    """Remove what reads a pipeline source, then what only fed removed nodes; `had_consumers` is from before."""
    nodes = {n.name: n for n in graph_def.node}
    protected = _protected_names(meta)
    removed = _tainted(graph_def)
    # The model must not lose anything but pipeline ops and summaries of them.
    side = {n for n in removed if is_pipeline_op(nodes[n].op) or _SUMMARY_OPS.search(nodes[n].op)}
    lost = sorted(n for n in removed - side if n not in had_consumers or n in protected)
    if lost:
        still = sorted({_canonical(i) for n in removed - side for i in nodes[n].input
                        if not i.startswith("^") and _input_node(i) in side
                        and re.match(r"QueueDequeue|IteratorGetNext", nodes[_input_node(i)].op)})
        hint = (f"; replace {', '.join(still[:5])} too" if still else
                "; replace the tensors that connect them to the pipeline too")
        raise GraphRepairError(f"removing the input pipeline would also remove {', '.join(lost[:5])}"
                               f"{' and more' if len(lost) > 5 else ''}: the model still reads from it{hint}")
    lines = []
    merged = _drop_merge_inputs(graph_def, removed)
    # Then everything whose consumers are all gone (file name constants, shuffles, epoch counters' ops, ...).
    while True:
        live_refs = {_input_node(i) for n in graph_def.node if n.name not in removed for i in n.input}
        dead = {n.name for n in graph_def.node if n.name not in removed and n.name in had_consumers
                and n.name not in live_refs and n.name not in protected and n.name not in new_inputs}
        if not dead:
            break
        removed |= dead
    kept = [n for n in graph_def.node if n.name not in removed]
    for node in kept:
        controls = [i for i in node.input if i.startswith("^") and _input_node(i) in removed]
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
        gone = [i for i in node.input if _input_node(i) in removed and not i.startswith("^")]
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
            names.add(_input_node(t))
    for col in meta.collection_def.values():
        if col.HasField("node_list"):
            names.update(_input_node(v) for v in col.node_list.value)
    for sig in meta.signature_def.values():
        names.update(_input_node(i.name) for i in list(sig.inputs.values()) + list(sig.outputs.values()))
    return names


def _clean_meta(meta: meta_graph_pb2.MetaGraphDef, removed: set[str]) -> list[str]:
    """Drop collection entries, queue runners, control-flow contexts and signatures that name removed nodes."""
    from tensorflow.core.framework import variable_pb2

    def gone(name: str) -> bool:
        return bool(name) and _input_node(name) in removed

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


# ----------------------------------------------------------------------------------------------------------------
# Files


def repair_file(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    replacements: Mapping[str, str | NewInput | None] | None = None,
    strip_devices: bool = False,
    strip_attrs: bool = False,
    force: bool = False,
    overwrite: bool = False,
) -> list[str]:
    """Repair a `.meta` (written as a binary `.meta`) or a GraphDef `.pb` (written as a binary `.pb`).

    The result is written to a temporary file next to `output`, read back and imported into a fresh graph
    (`import_meta_graph` for a `.meta`), checked to hold the new placeholders and no pipeline op, and only then
    moved into place. The source is never written to.

    Args:
        source: A `.meta` file (by its suffix) or a GraphDef file, binary or text.
        output: The file to write.
        replacements: Tensor -> placeholder name or `NewInput` (see `replace_input`); None or empty replaces nothing.
        strip_devices: Clear every device placement.
        strip_attrs: Remove attrs this TensorFlow's ops no longer declare.
        force: Replace tensors that no input-pipeline op produces.
        overwrite: Replace an existing `output`.

    Returns:
        One line per change, then the line naming what was written.

    Raises:
        SourceNotFoundError, BadSourceError: The source is missing or unreadable.
        NameNotFoundError, GraphRepairError: Bad replacement, bad output path, nothing to do, or the result does
            not import; nothing is written then.

    Example:
        >>> repair_file("model.meta", "fixed.meta", {"batch:0": "images", "batch:1": "labels"})
    """
    src, out = os.fspath(source), os.fspath(output)
    is_meta = src.endswith(".meta")
    if not replacements and not strip_devices and not strip_attrs:
        raise GraphRepairError("nothing to do: give --replace-input TENSOR[=NAME], --strip-devices or --strip-attrs")
    if os.path.isdir(out) or out.endswith(("/", os.sep)):
        raise GraphRepairError(f"--out '{out}' is a directory; give a file name, e.g. {os.path.join(out, 'fixed')}"
                               f"{'.meta' if is_meta else '.pb'}")
    if is_meta != out.endswith(".meta"):
        raise GraphRepairError(f"--out '{out}' must {'' if is_meta else 'not '}end in .meta: the source is a "
                               f"{'MetaGraphDef' if is_meta else 'GraphDef'} and is written as one")
    check_output(out, [src] if os.path.exists(src) else [], overwrite, error=GraphRepairError,
                 is_source="--out '{path}' is the source; write to another file",
                 exists="'{path}' exists; choose another --out or pass --overwrite")
    proto: GraphOrMeta = meta_graph_pb2.MetaGraphDef() if is_meta else graph_pb2.GraphDef()
    graph_repair.read_proto(src, proto, "MetaGraphDef (.meta)" if is_meta else "GraphDef (.pb)")
    lines: list[str] = []
    if strip_devices:
        lines += strip_device_placements(proto)
    if strip_attrs:
        lines += strip_unknown_attrs(proto)
    placeholders = []
    if replacements:
        specs = {_canonical(t): (v if isinstance(v, NewInput) else NewInput(v)) for t, v in replacements.items()}
        before = {n.name for n in _graph_def(proto).node}
        lines += replace_input(proto, specs, force=force)
        placeholders = [n.name for n in _graph_def(proto).node if n.name not in before]
    _write_verified(proto, out, placeholders, check_pipeline=bool(replacements))
    lines.append(f"wrote {out} ({len(_graph_def(proto).node)} nodes)")
    return lines


def _write_verified(proto: GraphOrMeta, out: str, placeholders: Sequence[str], check_pipeline: bool) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with atomic_file(out) as tmp:
        with open(tmp, "wb") as f:
            f.write(proto.SerializeToString())
        _verify(tmp, isinstance(proto, meta_graph_pb2.MetaGraphDef), placeholders, check_pipeline)


def _verify(path: str, is_meta: bool, placeholders: Sequence[str], check_pipeline: bool) -> None:
    """Read `path` back, import it into a fresh graph and check the placeholders and that no pipeline op is left."""
    proto: GraphOrMeta = meta_graph_pb2.MetaGraphDef() if is_meta else graph_pb2.GraphDef()
    graph_repair.read_proto(path, proto, "repaired graph")
    graph = tf.Graph()
    try:
        with graph.as_default(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if is_meta:
                tf.compat.v1.train.import_meta_graph(proto)
            else:
                tf.import_graph_def(proto, name="")
    except (ValueError, KeyError, tf.errors.OpError) as e:
        first = first_line(e)
        hint = "" if "attr" not in first.lower() else "; try --strip-attrs"
        raise GraphRepairError(f"the repaired graph does not import, nothing was written: {first}{hint}") from e
    problems = []
    for name in placeholders:
        try:
            if graph.get_operation_by_name(name).type != "Placeholder":
                problems.append(f"{name} is not a placeholder")
        except KeyError:
            problems.append(f"placeholder {name} is missing")
    if check_pipeline:
        left = sorted(op.name for op in graph.get_operations() if _SOURCE_OPS.search(op.type) or op.type.startswith("Queue"))
        if left:
            problems.append(f"pipeline ops remain: {', '.join(left[:5])}")
        if graph.get_collection(tf.compat.v1.GraphKeys.QUEUE_RUNNERS):
            problems.append("queue runners remain")
    if problems:
        raise GraphRepairError(f"the repaired graph failed its check, nothing was written: {'; '.join(problems)}")
