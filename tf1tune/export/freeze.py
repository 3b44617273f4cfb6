"""`freeze`: a model's checkpoint values baked into constants, in inference mode, cut down to what the outputs need.

Freezing goes through TensorFlow's own `convert_variables_to_constants`, which also extracts the subgraph the
outputs need, so optimizer, saver, summary and input-queue ops fall away. Before that, the graph is put into
inference mode: every boolean `PlaceholderWithDefault` the outputs depend on (`is_training`) becomes a constant
`False` (or what `set_values` says). Conditionals on it (slim's batch norm and dropout become `If` ops on TF 2)
are lowered to Switch/Merge by grappler's function optimizer, and then the branch that inference never takes is
cut out (`tf1tune.export.rewrites.inference_only`; grappler leaves Switches on constants in place), so dropout turns into
identity and batch norm uses its moving statistics. The chosen inputs become placeholders with a free batch
dimension, unless the graph has its batch size baked into constants (then it stays, with a note). An output that
needs a placeholder which is neither an input nor set (say `labels`) is an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import graph_pb2

from tf1tune.errors import ExportError, first_line
from tf1tune.export._io import strip_colocation
from tf1tune.export.rewrites import inference_only
from tf1tune.graphdef import PLACEHOLDER_OPS, VARIABLE_OPS, node_name
from tf1tune.handle import ModelHandle

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass
class FrozenModel:
    """A frozen graph and what it takes to run it and its source the same way.

    Attributes:
        graph_def: The frozen GraphDef.
        inputs: Input tensor names (`input:0`), placeholders with a free batch dimension.
        outputs: Output tensor names (`scope/op:0`).
        settings: Placeholders turned into constants (`is_training:0` -> False); feed them to the source too.
        notes: What could not be done as usual (a batch size that had to stay fixed).
    """

    graph_def: graph_pb2.GraphDef
    inputs: list[str]
    outputs: list[str]
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def parse_setting(text: str) -> tuple[str, str]:
    """`NAME=VALUE` (as given to `--set`) split into its name and value text."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise ExportError(f"bad setting '{text}': write NAME=VALUE, e.g. --set is_training=false")
    return name.strip(), value.strip()


def placeholder_value(op: tf.Operation, text: Any) -> np.ndarray:
    """`text` (a string from the CLI, or a Python value) as a numpy value of the placeholder's dtype."""
    dtype = op.outputs[0].dtype
    if not isinstance(text, str):
        return np.asarray(text, dtype=dtype.as_numpy_dtype)
    low = text.lower()
    try:
        if dtype == tf.bool:
            if low not in _TRUE | _FALSE:
                raise ValueError(text)
            return np.asarray(low in _TRUE)
        if dtype.is_floating:
            return np.asarray(float(text), dtype=dtype.as_numpy_dtype)
        if dtype.is_integer:
            return np.asarray(int(text), dtype=dtype.as_numpy_dtype)
        if dtype == tf.string:
            return np.asarray(text.encode())
    except ValueError:
        pass
    raise ExportError(f"cannot set '{op.name}' ({dtype.name}) to '{text}'; give a {dtype.name} value, "
                      "e.g. --set is_training=false or --set keep_prob=1.0")


def _dependencies(outputs: Sequence[tf.Tensor], stop: set[str]) -> list[tf.Operation]:
    """Every op that `outputs` depend on (data and control inputs), not looking past the ops named in `stop`."""
    seen: dict[str, tf.Operation] = {}
    todo = [t.op for t in outputs]
    while todo:
        op = todo.pop()
        if op.name in seen:
            continue
        seen[op.name] = op
        if op.name in stop:
            continue
        todo.extend(t.op for t in op.inputs)
        todo.extend(op.control_inputs)
    return list(seen.values())


def _free_batch(node: Any) -> None:
    """Turn `node` into a plain Placeholder whose first dimension is unknown."""
    if node.op == "PlaceholderWithDefault":
        node.op = "Placeholder"
        del node.input[:]
    node.attr.pop("_output_shapes", None)
    shape = node.attr["shape"].shape if "shape" in node.attr else None
    if shape is not None and not shape.unknown_rank and len(shape.dim) > 0:
        shape.dim[0].size = -1


def _to_const(node: Any, value: np.ndarray) -> None:
    """Turn `node` into a Const holding `value`."""
    dtype = node.attr["dtype"].type
    node.op = "Const"
    del node.input[:]
    node.attr.clear()
    node.attr["dtype"].type = dtype
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value, dtype=tf.as_dtype(dtype)))


def freeze_model(
    handle: ModelHandle,
    outputs: Sequence[str],
    inputs: Sequence[str] | None = None,
    set_values: Mapping[str, Any] | None = None,
) -> FrozenModel:
    """Freeze `handle` for inference; see the module docstring for what changes.

    Args:
        handle: The loaded model; its checkpoint (if any) is restored in a session of its own.
        outputs: Output tensor or op names (`DigitsCNN/Predictions/Softmax`).
        inputs: Input placeholder names; by default every plain placeholder (without a default) the outputs need.
        set_values: Placeholders to replace by constants, by name (`{"is_training": False}`; strings are parsed
            as the placeholder's dtype). Boolean `PlaceholderWithDefault`s not named here become `False`.

    Returns:
        The frozen graph with its input and output names and the settings applied.

    Raises:
        NameNotFoundError: An output, input or setting names no tensor of the graph (closest names listed).
        ExportError: An output needs a placeholder that is neither an input nor set, or a variable that the
            checkpoint does not hold.
    """
    if not outputs:
        raise ExportError("no outputs given; name at least one, e.g. --outputs DigitsCNN/Predictions/Softmax")
    out_tensors = [handle.tensor(n) for n in outputs]
    in_tensors = [handle.tensor(n) for n in inputs] if inputs else None
    set_ops = {handle.tensor(n).op.name: (handle.tensor(n).op, v) for n, v in (set_values or {}).items()}
    for t in in_tensors or []:
        if t.op.type not in PLACEHOLDER_OPS:
            raise ExportError(f"input '{t.name}' is a {t.op.type} op, not a placeholder; give a placeholder "
                              f"(candidates: {', '.join(x.name for x in handle.inputs) or 'none'})")
    stop = set(set_ops) | {t.op.name for t in in_tensors or []}
    needed = _dependencies(out_tensors, stop)

    settings: dict[str, Any] = {}
    free: list[str] = []
    for op in needed:
        if op.type not in PLACEHOLDER_OPS or (in_tensors is not None and op.name in {t.op.name for t in in_tensors}):
            continue
        if op.name in set_ops:
            settings[op.outputs[0].name] = placeholder_value(op, set_ops[op.name][1])
        elif op.type == "PlaceholderWithDefault" and op.outputs[0].dtype == tf.bool:
            settings[op.outputs[0].name] = np.asarray(False)
        elif op.type != "PlaceholderWithDefault":
            free.append(op.outputs[0].name)
    if in_tensors is None:
        in_tensors = [handle.tensor(n) for n in free]
        free = []
    if free:
        raise ExportError(
            f"output(s) {', '.join(t.name for t in out_tensors)} need placeholder(s) {', '.join(sorted(free))} that "
            f"are not inputs and have no default (a training-only input such as labels?); pick an inference output, "
            f"or add them with --inputs or --set NAME=VALUE")
    for name, (op, value) in set_ops.items():
        settings.setdefault(op.outputs[0].name, placeholder_value(op, value))

    needed_vars = {op.name for op in needed if op.type in VARIABLE_OPS}
    with handle.session() as sess, handle.graph.as_default():
        fresh = sorted(needed_vars & set(handle.initialized_fresh))
        if fresh:
            where = f"checkpoint '{handle.checkpoint}'" if handle.checkpoint else "no checkpoint"
            raise ExportError(f"the outputs need variable(s) with no saved value ({', '.join(fresh[:5])}"
                              f"{', ...' if len(fresh) > 5 else ''}; {where}); give the checkpoint that holds them "
                              "with --checkpoint")
        graph_def = handle.graph.as_graph_def()
        in_names = {t.op.name for t in in_tensors}
        set_names = {node_name(n): v for n, v in settings.items()}
        for node in graph_def.node:
            if node.name in in_names:
                _free_batch(node)
            elif node.name in set_names:
                _to_const(node, set_names[node.name])
            elif node.op == "Variable":  # TF < 1.0 variables: same attrs; TF 2.21's converter knows only V2
                node.op = "VariableV2"
        try:
            frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
                sess, graph_def, sorted({t.op.name for t in out_tensors}))
        except (ValueError, tf.errors.OpError) as e:
            first = first_line(e)
            raise ExportError(f"TensorFlow could not freeze the graph: {first}") from e
    frozen = inference_only(strip_colocation(frozen), [t.op.name for t in out_tensors])
    model = FrozenModel(graph_def=frozen, inputs=[t.name for t in in_tensors], outputs=[t.name for t in out_tensors],
                        settings=settings)
    _check_free_batch(model, {t.op.name: t.shape[0] for t in in_tensors if t.shape.rank and t.shape[0] is not None})
    return model


def _check_free_batch(model: FrozenModel, fixed: dict[str, int]) -> None:
    """Keep the source's fixed batch size when the graph has it baked into constants (say a Reshape to [256, ...]).

    Inputs that had a fixed first dimension are tried at another batch size; if the frozen graph fails on it,
    their first dimension goes back to the source's, and a note in `model.notes` says which op needed it.
    """
    if not fixed:
        return
    from tf1tune.export.verify import random_feeds, run_graph_def

    probe = 1 if min(fixed.values()) != 1 else 2
    try:
        run_graph_def(model.graph_def, model.outputs, random_feeds(model.graph_def, model.inputs, batch=probe))
    except (ValueError, tf.errors.OpError) as e:
        where = f" at op '{e.op.name}'" if isinstance(e, tf.errors.OpError) and e.op is not None else ""
        for node in model.graph_def.node:
            if node.name in fixed:
                node.attr["shape"].shape.dim[0].size = fixed[node.name]
        model.notes.append(f"batch size kept at {', '.join(f'{k}: {v}' for k, v in fixed.items())}: the graph has "
                           f"it baked into constants{where}; export an output before that op for a free batch")


def freeze(
    handle: ModelHandle,
    outputs: Sequence[str],
    inputs: Sequence[str] | None = None,
    set_values: Mapping[str, Any] | None = None,
) -> graph_pb2.GraphDef:
    """The frozen inference GraphDef of `handle` (see `freeze_model` for arguments and errors).

    Example:
        >>> handle = tf1tune.load("checkpoints/digits_cnn")
        >>> graph_def = tf1tune.freeze(handle, ["DigitsCNN/Predictions/Softmax"], inputs=["input"])
    """
    return freeze_model(handle, outputs, inputs, set_values).graph_def
