"""`export_tf2`: a TF1 model as an object-based TF2 SavedModel whose weights are real, trainable `tf.Variable`s.

The mechanism keeps the TF1 graph's own computation, op for op, instead of rebuilding the net in Keras:

1. The graph is cut to what the outputs need, plus the batch-norm updates (`UPDATE_OPS`) for the training endpoint
   and each kept variable's initializer and read (`resource_graph.cut_graph`): no optimizer slots, `global_step`,
   saver or input pipeline is left to capture.
2. Reference variables (`VariableV2`) become resource variables, their reads and assigns resource ops
   (`resource_graph.to_resource_variables`), so TF2 can lift them.
3. `tf.compat.v1.wrap_function` imports that graph (`import_meta_graph` with one `VariableDef` per variable); TF
   lifts every variable out as an eager `tf.Variable` with the TF1 name and `trainable` flag, and each gets the
   value the TF1 session holds (the checkpoint's, restored by tf1tune). `prune` then gives one function for
   inference (the boolean `is_training`-style switches fed False) and one for training (fed True, running the
   batch-norm updates).
4. A `tf.Module` (`tf2_module.TF1Module`) holding the variables (`tf1_variables`, by TF1 name) and both
   functions is saved with `tf.saved_model.save`: `__call__(inputs, training=False)`, `infer(inputs)`,
   `train(inputs)` and the `serving_default` signature. `tf1_layer.py` (a Keras 3 layer, no tf1tune needed) is copied beside it.

Rebuilding slim nets under `track_tf1_style_variables` would also give TF2 variables, but only for nets with a
Python definition, through tf-keras rather than Keras 3, and with the layers' code re-run instead of the graph the
checkpoint was trained with; a `.meta` or frozen graph has no such code. Everything is checked before the directory
appears: the SavedModel is loaded back in eager TF2 and run against the TF1 session on the same inputs, in both
modes, and every variable is compared bit for bit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from tf1tune._fs import require_folder
from tf1tune.errors import ExportError, SelectionError, first_line
from tf1tune.export import resource_graph
from tf1tune.export.saved_model import signature_keys
from tf1tune.export.tf2_module import TF1Module, TF2Export, save_checked, with_switches
from tf1tune.export.verify import random_feeds, source_batch
from tf1tune.graphdef import PLACEHOLDER_OPS, PLAIN_PLACEHOLDER_OPS, VARIABLE_OPS, node_name, tensor_name
from tf1tune.handle import ModelHandle
from tf1tune.selection import scope_matches


def _dependencies(tensors: Sequence[tf.Tensor | tf.Operation], stop: set[str]) -> list[tf.Operation]:
    seen: dict[str, tf.Operation] = {}
    todo = [t if isinstance(t, tf.Operation) else t.op for t in tensors]
    while todo:
        op = todo.pop()
        if op.name in seen:
            continue
        seen[op.name] = op
        if op.name not in stop:
            todo.extend(t.op for t in op.inputs)
            todo.extend(op.control_inputs)
    return list(seen.values())


def _pick_placeholders(handle: ModelHandle, out_tensors: list[tf.Tensor], inputs: Sequence[str] | None,
                       set_names: set[str]) -> tuple[list[tf.Tensor], list[tf.Tensor]]:
    """The inputs (given, or every plain placeholder the outputs need) and the boolean switches."""
    given = [handle.tensor(n) for n in inputs] if inputs else None
    for t in given or []:
        if t.op.type not in PLACEHOLDER_OPS:
            raise ExportError(f"input '{t.name}' is a {t.op.type} op, not a placeholder; give a placeholder "
                              f"(candidates: {', '.join(x.name for x in handle.inputs) or 'none'})")
    stop = set_names | {t.op.name for t in given or []}
    needed = _dependencies(out_tensors, stop)
    plain = [op.outputs[0] for op in needed if op.type in PLAIN_PLACEHOLDER_OPS and op.name not in stop]
    switches = [op.outputs[0] for op in needed if op.type == "PlaceholderWithDefault" and op.name not in stop
                and op.outputs[0].dtype == tf.bool]
    if given is None:
        return sorted(plain, key=lambda t: t.name), sorted(switches, key=lambda t: t.name)
    if plain:
        raise ExportError(f"the outputs need placeholder(s) {', '.join(sorted(t.name for t in plain))} that are not "
                          "inputs and have no default; add them to --inputs or --set NAME=VALUE")
    return given, sorted(switches, key=lambda t: t.name)


def _set_constants(graph_def: graph_pb2.GraphDef, handle: ModelHandle, set_values: Mapping[str, Any]) -> set[str]:
    """Placeholders named in `set_values` turned into constants of their dtype; returns their node names."""
    from tf1tune.export.freeze import placeholder_value

    names = set()
    nodes = {n.name: n for n in graph_def.node}
    for name, value in set_values.items():
        op = handle.tensor(name).op
        node = nodes[op.name]
        array = placeholder_value(op, value)
        dtype = node.attr["dtype"].type
        node.op = "Const"
        del node.input[:]
        node.attr.clear()
        node.attr["dtype"].type = dtype
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(array, dtype=tf.as_dtype(dtype)))
        names.add(op.name)
    return names


def _update_ops(handle: ModelHandle, model_vars: set[str], stop: set[str]) -> list[str]:
    """`UPDATE_OPS` of the graph that write the model's variables and need nothing but the inputs and switches."""
    kept = []
    for item in handle.graph.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS):
        op = item if isinstance(item, tf.Operation) else item.op
        deps = _dependencies([op], stop)
        variables = {d.name for d in deps if d.type in VARIABLE_OPS}
        unfed = [d for d in deps if d.type in PLAIN_PLACEHOLDER_OPS and d.name not in stop]
        if variables and variables <= model_vars and not unfed:
            kept.append(op.name)
    return kept


def _variable_protos(handle: ModelHandle) -> dict[str, Any]:
    """The `VariableDef` of each variable of the graph, by name."""
    with handle.graph.as_default():
        return {v.op.name: v.to_proto() for v in handle.variables}


def _variable_defs(protos: Mapping[str, Any], names: Sequence[str], trainable: set[str]) -> list[Any]:
    """One resource `VariableDef` per kept variable, naming its (rewritten) initializer and read."""
    missing = [n for n in names if n not in protos]
    if missing:
        raise ExportError(f"variable(s) {', '.join(missing[:5])} are used by the outputs but are not in the graph's "
                          "variables collection, so their initializers are unknown; export other outputs")
    defs = []
    for name in names:
        proto = protos[name]
        variable_def = type(proto)(variable_name=f"{name}:0", initializer_name=proto.initializer_name,
                                   snapshot_name=proto.snapshot_name, is_resource=True, trainable=name in trainable)
        defs.append(variable_def)
    return defs


def _session_run(handle: ModelHandle, names: Sequence[str], allow_fresh: bool, out_names: list[str],
                 data: Mapping[str, np.ndarray], switches: list[str]) -> tuple[dict[str, np.ndarray], list[Any]]:
    """In one TF1 session (checkpoint restored, the rest initialised): the variables' values, and the outputs on
    `data` with the switches False, then True (None without switches; an output None where two runs differ)."""
    by_name = {v.op.name: v for v in handle.variables}
    with handle.session() as sess:
        fresh = sorted(set(names) & set(handle.initialized_fresh))
        if fresh and not allow_fresh:
            where = f"checkpoint '{handle.checkpoint}'" if handle.checkpoint else "no checkpoint"
            raise ExportError(f"the outputs need variable(s) with no saved value ({', '.join(fresh[:5])}"
                              f"{', ...' if len(fresh) > 5 else ''}; {where}); give the checkpoint that holds them "
                              "with --checkpoint")
        with handle.graph.as_default():
            reads = {n: by_name[n].read_value() for n in names}
        values = sess.run(reads)
        fetches = [handle.tensor(n) for n in out_names]
        feeds = {handle.tensor(k): v for k, v in data.items()}
        expected: list[Any] = []
        for training in (False, True):
            if training and not switches:
                expected.append(None)
                continue
            feeds.update({handle.tensor(s): np.asarray(training) for s in switches})
            first = sess.run(fetches, feeds)
            if training:  # an output that differs between two runs depends on dropout: not comparable
                first = [a if np.array_equal(a, b) else None for a, b in zip(first, sess.run(fetches, feeds))]
            expected.append(first)
    return values, expected


def _wrap(meta: meta_graph_pb2.MetaGraphDef) -> Any:
    def load() -> None:
        tf.compat.v1.train.import_meta_graph(meta)

    try:
        return tf.compat.v1.wrap_function(load, [])
    except (ValueError, TypeError, KeyError, tf.errors.OpError) as e:
        raise ExportError(f"TensorFlow 2 cannot wrap the graph as a function: {first_line(e)}") from e


def export_tf2(
    handle: ModelHandle,
    outputs: Sequence[str],
    export_dir: str | os.PathLike[str],
    inputs: Sequence[str] | None = None,
    trainable_scopes: Sequence[str] | None = None,
    set_values: Mapping[str, Any] | None = None,
    feeds: Mapping[str, np.ndarray] | None = None,
    rtol: float = 1e-5,
    atol: float = 0.0,
    allow_fresh: bool = False,
    seed: int = 0,
) -> TF2Export:
    """Write `handle`'s model as an object-based TF2 SavedModel with trainable variables (see the module docstring).

    Args:
        handle: The loaded TF1 model; its checkpoint is restored in a session of its own.
        outputs: Output tensor, op or endpoint names (`DigitsCNN/global_pool`, `global_pool` for slim nets).
        export_dir: A directory that does not exist yet (or is empty).
        inputs: Input placeholders; by default every placeholder without a default that the outputs need.
        trainable_scopes: Only variables under these scopes stay trainable (the graph's trainable variables
            otherwise); batch-norm statistics never are.
        set_values: Placeholders replaced by constants (`{"keep_prob": 1.0}`).
        feeds: Input data by tensor name for the check; seeded random data by default.
        rtol: Relative tolerance of the check against the TF1 session.
        atol: Absolute tolerance of the check.
        allow_fresh: Accept variables the checkpoint does not hold (a grafted head), with their initial values.
        seed: Seed of the random check inputs.

    Returns:
        What was written, with both checks.

    Raises:
        ExportError: The graph cannot be wrapped (an op needing reference variables, ...), a variable has no saved
            value, `export_dir` is not new, or the SavedModel does not reproduce the TF1 session. Nothing is
            written then.
        SelectionError: A trainable scope matches no exported variable.

    Example:
        >>> handle = tf1tune.load("checkpoints/digits_cnn")
        >>> export_tf2(handle, ["DigitsCNN/global_pool"], "exported/digits", trainable_scopes=["DigitsCNN/Conv2d_3"])
    """
    if not outputs:
        raise ExportError("no outputs given; name at least one, e.g. --outputs DigitsCNN/global_pool")
    target = _check_target(export_dir)
    out_tensors = [handle.endpoint(n) for n in outputs]
    out_names = [t.name for t in out_tensors]
    graph_def = handle.graph.as_graph_def()
    set_names = _set_constants(graph_def, handle, set_values or {})
    in_tensors, switch_tensors = _pick_placeholders(handle, out_tensors, inputs, set_names)
    stop = set_names | {t.op.name for t in in_tensors + switch_tensors}

    model_cut = resource_graph.cut_graph(graph_def, out_names)
    model_vars = set(resource_graph.variable_nodes(model_cut))
    updates = _update_ops(handle, model_vars, stop) if switch_tensors else []
    protos = _variable_protos(handle)
    extra = [x for n in sorted(model_vars) if n in protos for x in (protos[n].initializer_name, protos[n].snapshot_name)]
    cut = resource_graph.cut_graph(graph_def, out_names + updates + extra)
    names = resource_graph.variable_nodes(cut)
    trainable = _trainable(handle, names, trainable_scopes)
    rewritten = resource_graph.to_resource_variables(cut)
    resource_graph.check_wrappable(rewritten)
    data = {tensor_name(k): v for k, v in feeds.items()} if feeds else _random_inputs(handle, in_tensors, seed)
    values, expected = _session_run(handle, names, allow_fresh, out_names, data,
                                    [t.name for t in switch_tensors])

    meta = meta_graph_pb2.MetaGraphDef(graph_def=rewritten)
    defs = _variable_defs(protos, names, trainable)
    meta.collection_def[tf.compat.v1.GraphKeys.GLOBAL_VARIABLES].bytes_list.value.extend(
        d.SerializeToString() for d in defs)
    meta.collection_def[tf.compat.v1.GraphKeys.TRAINABLE_VARIABLES].bytes_list.value.extend(
        d.SerializeToString() for d in defs if d.trainable)
    with tf.init_scope():
        wrapped = _wrap(meta)
        lifted = {v.name.split(":")[0]: v for v in wrapped.graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)}
        for name in names:
            lifted[name].assign(values[name])
        graph = wrapped.graph
        feeds_in = [graph.get_tensor_by_name(t.name) for t in in_tensors + switch_tensors]
        fetch = [graph.get_tensor_by_name(n) for n in out_names]
        try:
            infer = with_switches(wrapped.prune(feeds_in, fetch), len(switch_tensors), False)
            train = None
            if switch_tensors:
                train_fn = wrapped.prune(feeds_in, [fetch, [graph.get_operation_by_name(u) for u in updates]])
                train = with_switches(train_fn, len(switch_tensors), True)
        except (ValueError, KeyError, tf.errors.OpError) as e:
            raise ExportError(f"TensorFlow 2 cannot prune the wrapped graph to the outputs: {first_line(e)}") from e
        in_keys, out_keys = list(signature_keys([t.name for t in in_tensors]).values()), list(
            signature_keys(out_names).values())
        specs = [tf.TensorSpec(t.shape, t.dtype, name=k) for t, k in zip(in_tensors, in_keys)]
        module = TF1Module({n: lifted[n] for n in names}, infer, train, in_keys, out_keys, specs)
        result = save_checked(module, target, [t.name for t in in_tensors], out_names,
                               [t.name for t in switch_tensors], values, data, expected, rtol, atol)
    result.trainable = sorted(trainable)
    result.frozen = sorted(set(names) - trainable)
    fresh = sorted(set(names) & set(handle.initialized_fresh))
    if fresh:
        result.notes.append(f"{len(fresh)} variable(s) not in the checkpoint hold their initial values: "
                            + ", ".join(fresh[:5]) + (", ..." if len(fresh) > 5 else ""))
    return result


def _trainable(handle: ModelHandle, names: Sequence[str], scopes: Sequence[str] | None) -> set[str]:
    graph_trainable = {v.op.name for v in handle.trainable_variables}
    chosen = {n for n in names if n in graph_trainable}
    if scopes is None:
        return chosen
    for scope in scopes:
        if not any(scope_matches(n, scope) for n in names):
            parents = sorted({n.rsplit("/", 1)[0] for n in names})
            raise SelectionError(f"trainable scope '{scope}' matches no exported variable; scopes are: "
                                 + ", ".join(parents[:12]) + (", ..." if len(parents) > 12 else ""))
    return {n for n in chosen if any(scope_matches(n, s) for s in scopes)}


def _check_target(export_dir: str | os.PathLike[str]) -> str:
    target = require_folder(export_dir, ExportError)
    if os.path.exists(target) and (not os.path.isdir(target) or os.listdir(target)):
        raise ExportError(f"'{os.fspath(export_dir)}' already exists and is not an empty directory; "
                          "give a new directory with --out")
    return target


def _random_inputs(handle: ModelHandle, in_tensors: list[tf.Tensor], seed: int) -> dict[str, np.ndarray]:
    graph_def = graph_pb2.GraphDef()
    graph_def.node.extend(n for n in handle.graph.as_graph_def().node
                          if n.name in {node_name(t.name) for t in in_tensors})
    return random_feeds(graph_def, [t.name for t in in_tensors], batch=source_batch(handle, [t.name for t in in_tensors]),
                        seed=seed)
