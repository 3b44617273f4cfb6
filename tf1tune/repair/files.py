"""`repair_file`: a repaired `.meta` or `.pb` written only after it imports again and passes its check.

The source is read (binary or text), repaired in memory (`tf1tune.repair.inputs`, `tf1tune.repair.graph`),
written to a temp file next to the output, read back, imported into a fresh graph, checked to hold the new
placeholders and no pipeline op, and only then moved into place (`tf1tune._fs`). The source is never written to.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence

import tensorflow as tf
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from tf1tune._fs import atomic_file, check_output
from tf1tune.errors import GraphRepairError, first_line
from tf1tune.graphdef import tensor_name
from tf1tune.repair import graph as graph_repair
from tf1tune.repair.inputs import NewInput, replace_input, strip_device_placements, strip_unknown_attrs
from tf1tune.repair.pipeline import SOURCE_OPS, GraphOrMeta, graph_def_of

__all__ = ["repair_file"]


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
        specs = {tensor_name(t): (v if isinstance(v, NewInput) else NewInput(v)) for t, v in replacements.items()}
        before = {n.name for n in graph_def_of(proto).node}
        lines += replace_input(proto, specs, force=force)
        placeholders = [n.name for n in graph_def_of(proto).node if n.name not in before]
    _write_verified(proto, out, placeholders, check_pipeline=bool(replacements))
    lines.append(f"wrote {out} ({len(graph_def_of(proto).node)} nodes)")
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
        left = sorted(op.name for op in graph.get_operations() if SOURCE_OPS.search(op.type) or op.type.startswith("Queue"))
        if left:
            problems.append(f"pipeline ops remain: {', '.join(left[:5])}")
        if graph.get_collection(tf.compat.v1.GraphKeys.QUEUE_RUNNERS):
            problems.append("queue runners remain")
    if problems:
        raise GraphRepairError(f"the repaired graph failed its check, nothing was written: {'; '.join(problems)}")
