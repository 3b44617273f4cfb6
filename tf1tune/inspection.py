"""`inspect_source`: a JSON-ready summary of any source, and its human-readable rendering.

The summary has at least the keys `kind`, `variables` ({name, shape, dtype, trainable}), `inputs`,
`outputs` ({name, shape, dtype}), `ops` ({op_type: count}), `num_params`, `tensorflow_version` and `risks`
({op, node, reason, allowable, dormant}: the nodes that do more than compute, see `tf1tune.graph_safety`; nothing
runs).
For a bare checkpoint `variables` is what the checkpoint holds (with `trainable` from its `.meta`
when one is found, else null); a TF2 object-based checkpoint (or a TF2 SavedModel directory) lists its
variables under their own names (`tf1tune.tf2_checkpoints`) and has `"format": "tf2-object"`. For a frozen graph
the weights are constants: `num_params` counts the elements of its floating-point constants and `frozen_weights`
says so.
"""

from __future__ import annotations

import collections
import math
import os
from typing import Any

import tensorflow as tf

from tf1tune.checkpoints import checkpoint_entries, read_checkpoint, resolve_checkpoint
from tf1tune.handle import ModelHandle, tensor_summary
from tf1tune.loaders import detect_kind, find_meta, load
from tf1tune.tf2_checkpoints import entry_keys, is_object_based

_FLOAT_CONST_TYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)


def inspect_source(source: str | os.PathLike[str], **options: Any) -> dict[str, Any]:
    """Summarise `source` (checkpoint, `.meta`, `.pb`, SavedModel directory or `slim:NAME`).

    Args:
        source: Anything `tf1tune.load` accepts, or a bare checkpoint prefix or directory.
        **options: Passed to the loader (e.g. `num_classes` for `slim:NAME`).

    Returns:
        A JSON-ready dict (see the module docstring for the keys).
    """
    text = os.fspath(source)
    kind = detect_kind(text)
    if kind == "checkpoint":
        return _inspect_checkpoint(text)
    if kind == "saved_model" and os.path.isfile(os.path.join(text, "variables", "variables.index")):
        prefix = os.path.join(text, "variables", "variables")
        reader = read_checkpoint(prefix)
        if is_object_based(reader):  # a TF2 SavedModel: its weights, by name
            return _inspect_object_checkpoint(text, prefix, reader)
    return summarize_handle(load(text, **options))


def summarize_handle(handle: ModelHandle) -> dict[str, Any]:
    """The summary of a loaded model."""
    trainable = {v.op.name for v in handle.trainable_variables}
    variables = [
        {"name": v.op.name, "shape": v.shape.as_list(), "dtype": v.dtype.base_dtype.name, "trainable": v.op.name in trainable}
        for v in handle.variables
    ]
    summary: dict[str, Any] = {
        "kind": handle.kind,
        "source": handle.source,
        "variables": variables,
        "inputs": [tensor_summary(t) for t in handle.inputs],
        "outputs": [tensor_summary(t) for t in handle.outputs],
        "ops": dict(sorted(collections.Counter(op.type for op in handle.graph.get_operations()).items())),
        "num_params": sum(_size(v["shape"]) for v in variables),
        "num_trainable_params": sum(_size(v["shape"]) for v in variables if v["trainable"]),
        "tensorflow_version": handle.tensorflow_version,
        "checkpoint": handle.checkpoint,
        "repairs": handle.repairs,
        "risks": [r.to_dict() for r in handle.risks],
    }
    if handle.kind == "frozen":
        consts = [op for op in handle.graph.get_operations()
                  if op.type == "Const" and op.outputs[0].dtype in _FLOAT_CONST_TYPES]
        summary["num_params"] = sum(_size(op.outputs[0].shape.as_list()) for op in consts)
        summary["frozen_weights"] = True
        summary["graph_def_version"] = handle.extra.get("graph_def_version")
    if handle.kind == "slim":
        summary["endpoints"] = sorted(handle.endpoints)
        summary["net"] = {"name": handle.net.name, "classifier_scopes": list(handle.net.classifier_scopes),
                          "default_endpoint": handle.net.default_endpoint,
                          "published_num_classes": handle.net.num_classes,
                          "background_class": handle.net.background_class,
                          "preprocessing": handle.net.preprocessing}
    if handle.signatures:
        summary["signatures"] = handle.signatures
    return summary


def _inspect_checkpoint(text: str) -> dict[str, Any]:
    prefix = resolve_checkpoint(text)
    reader = read_checkpoint(prefix)
    if is_object_based(reader):
        return _inspect_object_checkpoint(text, prefix, reader)
    entries = checkpoint_entries(prefix)
    meta_path = find_meta(prefix)
    trainable: set[str] | None = None
    version = None
    risks: list[dict[str, Any]] = []
    if meta_path:
        handle = load(meta_path, checkpoint=prefix)
        trainable = {v.op.name for v in handle.trainable_variables}
        version = handle.tensorflow_version
        risks = [r.to_dict() for r in handle.risks]
    variables: list[dict[str, Any]] = [
        {"name": e.name, "shape": list(e.shape), "dtype": e.dtype,
         "trainable": (e.name in trainable) if trainable is not None else None}
        for e in entries
    ]
    return {
        "kind": "checkpoint",
        "source": text,
        "checkpoint": prefix,
        "meta": meta_path,
        "variables": variables,
        "inputs": [],
        "outputs": [],
        "ops": {},
        "num_params": sum(_size(v["shape"]) for v in variables),
        "num_trainable_params": sum(_size(v["shape"]) for v in variables if v["trainable"]) if trainable is not None else None,
        "tensorflow_version": version,
        "risks": risks,
    }


def _inspect_object_checkpoint(text: str, prefix: str, reader: tf.train.CheckpointReader) -> dict[str, Any]:
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    variables = [{"name": name, "shape": list(shapes[key]), "dtype": dtypes[key].name, "trainable": None,
                  "key": key} for name, key in entry_keys(reader, prefix).items()]
    return {"kind": "checkpoint", "format": "tf2-object", "source": text, "checkpoint": prefix, "meta": None,
            "variables": variables, "inputs": [], "outputs": [], "ops": {},
            "num_params": sum(_size(v["shape"]) for v in variables), "num_trainable_params": None,
            "tensorflow_version": None}


def _size(shape: list[int | None] | None) -> int:
    if shape is None or any(d is None or d < 0 for d in shape):
        return 0
    return math.prod(d for d in shape if d is not None)


def format_summary(summary: dict[str, Any], max_rows: int = 60) -> str:
    """Render a summary as text, in the manner of Keras' `model.summary()`."""
    kind = summary["kind"] + (", TF2 object-based" if summary.get("format") == "tf2-object" else "")
    lines = [f"Source: {summary['source']}  (kind: {kind}, written by TensorFlow "
             f"{summary.get('tensorflow_version') or 'unknown'})"]
    if summary.get("checkpoint"):
        lines.append(f"Checkpoint: {summary['checkpoint']}")
    for repair in summary.get("repairs") or []:
        lines.append(f"Repaired: {repair}")
    variables = summary["variables"]
    if variables:
        width = min(max(len(v["name"]) for v in variables), 70)
        rule = "-" * (width + 40)
        lines += [rule, f"{'Variable':<{width}}  {'Shape':<20} {'Dtype':<9} Trainable", rule]
        for v in variables[:max_rows]:
            shape = "?" if v["shape"] is None else str(tuple(v["shape"]))
            flag = {True: "yes", False: "no", None: "?"}[v["trainable"]]
            lines.append(f"{v['name']:<{width}}  {shape:<20} {v['dtype']:<9} {flag}")
        if len(variables) > max_rows:
            lines.append(f"... {len(variables) - max_rows} more (use --json for all)")
        lines.append(rule)
    total = summary["num_params"]
    if summary.get("frozen_weights"):
        lines.append(f"Frozen weights (float constants): {total:,} values")
    else:
        trainable = summary.get("num_trainable_params")
        lines.append(f"Total params: {total:,}")
        if trainable is not None:
            lines.append(f"Trainable params: {trainable:,}")
            lines.append(f"Non-trainable params: {total - trainable:,}")
    for key in ("inputs", "outputs"):
        if summary[key]:
            lines.append(f"{key.capitalize()}:")
            lines += [f"  {t['name']:<40} {str(t['shape']):<22} {t['dtype']}" for t in summary[key]]
    if summary.get("signatures"):
        lines.append("Signatures:")
        for name, sig in summary["signatures"].items():
            lines.append(f"  {name}: {sig['inputs']} -> {sig['outputs']}")
    if summary.get("endpoints"):
        lines.append(f"Endpoints ({len(summary['endpoints'])}): " + ", ".join(summary["endpoints"]))
    risks_by_op: dict[str, list[dict[str, Any]]] = {}
    for risk in summary.get("risks") or []:
        risks_by_op.setdefault(risk["op"], []).append(risk)
    for op, found in sorted(risks_by_op.items()):
        nodes = ", ".join(r["node"] for r in found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        if found[0]["dormant"]:
            lines.append(f"Risk (dormant): {op} ({nodes}) {found[0]['reason']}")
        elif found[0]["allowable"]:
            lines.append(f"Risk: {op} ({nodes}) {found[0]['reason']}; not run without --allow-ops {op}")
        else:
            lines.append(f"Risk: {op} ({nodes}) {found[0]['reason']}; never run")
    if summary["ops"]:
        top = sorted(summary["ops"].items(), key=lambda kv: (-kv[1], kv[0]))
        lines.append(f"Ops ({sum(summary['ops'].values())} in {len(top)} types): "
                     + ", ".join(f"{op} {n}" for op, n in top[:15]) + (", ..." if len(top) > 15 else ""))
    return "\n".join(lines)
