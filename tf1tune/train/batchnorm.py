"""Batch norm of frozen layers: one rule for which layers are frozen, their update ops, inference-mode rewiring.

The rule: a batch-norm op (its `FusedBatchNorm*` op, its moving-average update ops) belongs to a trained layer
when its op name lies under one of the trained scopes (the `/`-boundary rule of `tf1tune.selection`, or
`re.search` with `regex`; callers may pass that test as a function, e.g. to count scopes whose learning-rate
multiplier is 0 as frozen). Every other batch norm is frozen: `frozen_batch_norm_updates` drops its update ops,
so its moving statistics never change, and `batch_norm_to_inference` makes it normalise with them.

TF1 graphs often switch batch norm (and dropout) with a `tf.cond` on an `is_training` boolean placeholder.
`conds_to_inference` sends the conds of frozen layers to their inference branch for good, so a frozen layer
computes during fine-tuning exactly what it computes at inference, while the trained layers follow the switch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

from tf1tune.errors import Tf1tuneError
from tf1tune.graphdef import FUSED_BATCH_NORM_OPS, PLACEHOLDER_OPS, VARIABLE_OPS
from tf1tune.names import not_found
from tf1tune.selection import scope_matches

__all__ = ["batch_norm_to_inference", "bool_switches", "conds_to_inference", "frozen_batch_norm_layers",
           "frozen_batch_norm_updates"]

_PLACEHOLDERS = PLACEHOLDER_OPS
_IF_OPS = frozenset({"If", "StatelessIf"})

Trained = Sequence[str] | Callable[[str], bool]  # trained scopes, or a test of an op name


def _name(variable: tf.Variable) -> str:
    return variable.op.name


def _under(name: str, scopes: Sequence[str], regex: bool) -> bool:
    return any(scope_matches(name, s, regex) for s in scopes)


def frozen_batch_norm_updates(
    update_ops: Sequence[tf.Operation | tf.Tensor],
    trainable_scopes: Sequence[str],
    regex: bool = False,
) -> tuple[list[tf.Operation | tf.Tensor], list[tf.Operation | tf.Tensor]]:
    """Split update ops (batch-norm moving averages) into those of trained scopes and the rest.

    An op is kept when its op name lies under one of `trainable_scopes` (the `/`-boundary rule of
    `tf1tune.selection`), e.g. `DigitsCNN/Conv2d_2/BatchNorm/AssignMovingAvg/...` under `DigitsCNN/Conv2d_2`.
    Running only the kept ones leaves the moving statistics of frozen layers unchanged.

    Args:
        update_ops: Usually `graph.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)`.
        trainable_scopes: Scopes trained by the step.
        regex: Treat the scopes as regular expressions.

    Returns:
        `(kept, dropped)`, each in the original order.
    """
    kept: list[tf.Operation | tf.Tensor] = []
    dropped: list[tf.Operation | tf.Tensor] = []
    for op in update_ops:
        name = op.op.name if isinstance(op, tf.Tensor) else op.name
        (kept if _under(name, trainable_scopes, regex) else dropped).append(op)
    return kept, dropped


def _moving_read(graph: tf.Graph, layer: str, stat: str) -> tf.Tensor:
    """A fresh read of `<layer>/<stat>` (a collection variable, or a ref variable's `/read` tensor)."""
    target = f"{layer}/{stat}"
    for v in graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES):
        if _name(v) == target:
            return v.read_value() if hasattr(v, "read_value") else tf.identity(v)
    try:
        op = graph.get_operation_by_name(target)
    except KeyError:
        op = None
    if op is not None and op.type == "VarHandleOp":
        return tf.raw_ops.ReadVariableOp(resource=op.outputs[0], dtype=op.get_attr("dtype"))
    if op is not None and op.type in VARIABLE_OPS:  # a ref variable
        return tf.identity(op.outputs[0])
    raise not_found("batch-norm moving statistic", target,
                    [o.name for o in graph.get_operations() if o.name.startswith(layer + "/")],
                    hint="batch_norm_to_inference needs the layer's moving_mean and moving_variance variables")


def batch_norm_to_inference(graph: tf.Graph, frozen_scopes: Sequence[str], regex: bool = False) -> list[str]:
    """Make training-mode fused batch norm under `frozen_scopes` normalise with its moving statistics.

    For each `FusedBatchNorm`/`V2`/`V3` op with `is_training=True` under a frozen scope, a new
    `FusedBatchNormV3` with `is_training=False` (same epsilon and data format; inputs x, scale, offset
    and reads of `<layer>/moving_mean`, `<layer>/moving_variance`) is added next to it, and every consumer
    of the old op's output 0 is rerouted to the new one with `Operation._update_input` (a private
    graph-mode API, stable since TF 1.x; it is what graph editors use). The old op stays in the graph
    for its batch statistics, which only feed the moving-average updates (drop those with
    `frozen_batch_norm_updates`). Call it before building gradients and before the graph is finalised.

    A batch norm that is not fused (decomposed into `moments`/`mul`/`add`, e.g. `fused=False` or a
    `renorm` layer) has its training mode baked into the graph; such a layer raises, before anything is
    rewritten.

    Args:
        graph: The graph, built in training mode.
        frozen_scopes: Scopes whose batch norm should run in inference mode.
        regex: Treat the scopes as regular expressions.

    Returns:
        The names of the rewritten batch-norm ops.

    Raises:
        Tf1tuneError: A frozen scope holds a non-fused training-mode batch norm, or the graph is finalised.
        NameNotFoundError: A layer's moving statistics are not found.
    """
    scopes = list(frozen_scopes)
    ops = graph.get_operations()
    fused = [op for op in ops if op.type in FUSED_BATCH_NORM_OPS and op.get_attr("is_training")
             and _under(op.name, scopes, regex) and op._get_control_flow_context() is None]
    fused_layers = {op.name.rsplit("/", 1)[0] for op in ops if op.type in FUSED_BATCH_NORM_OPS}
    unfused = sorted({op.name.split("/moments/", 1)[0] for op in ops
                      if "/moments/" in op.name and op.type == "Mean" and _under(op.name, scopes, regex)}
                     - fused_layers)
    if unfused:
        raise Tf1tuneError(
            f"batch norm in {', '.join(unfused)} is not fused (built from moments/mul/add): its training mode is "
            "baked into the graph and cannot be switched to inference; its moving statistics still stay unchanged "
            "when its update ops are dropped, but it normalises with batch statistics")
    if fused and graph.finalized:
        raise Tf1tuneError("the graph is finalized; call batch_norm_to_inference before creating the session")
    rewritten = []
    for op in fused:
        layer = op.name.rsplit("/", 1)[0]
        old = op.outputs[0]
        consumers = [(c, i) for c in old.consumers() for i, t in enumerate(c.inputs) if t is old]
        with graph.as_default(), graph.name_scope(layer + "/"):
            mean = _moving_read(graph, layer, "moving_mean")
            variance = _moving_read(graph, layer, "moving_variance")
            x, scale, offset = op.inputs[0], op.inputs[1], op.inputs[2]
            y = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=scale, offset=offset, mean=tf.cast(mean, scale.dtype),
                variance=tf.cast(variance, scale.dtype), epsilon=op.get_attr("epsilon"),
                data_format=op.get_attr("data_format"), is_training=False,
                name="FusedBatchNormV3_inference")[0]
        for consumer, index in consumers:
            consumer._update_input(index, y)
        rewritten.append(op.name)
    return rewritten


def _trained_test(trained: Trained, regex: bool) -> Callable[[str], bool]:
    if callable(trained):
        return trained
    scopes = list(trained)
    return lambda name: _under(name, scopes, regex)


def frozen_batch_norm_layers(graph: tf.Graph, trained_scopes: Trained, regex: bool = False) -> list[str]:
    """The layers (`DigitsCNN/Conv2d_1/BatchNorm`) of training-mode fused batch norms that no trained scope holds.

    Args:
        graph: The graph, built in training mode.
        trained_scopes: Every scope that some training step trains, or a function telling whether an op name
            belongs to a trained layer.
        regex: Treat the scopes as regular expressions.

    Returns:
        Sorted layer scopes, ready for `batch_norm_to_inference`.
    """
    trained = _trained_test(trained_scopes, regex)
    return sorted({op.name.rsplit("/", 1)[0] for op in graph.get_operations()
                   if op.type in FUSED_BATCH_NORM_OPS and op.get_attr("is_training") and not trained(op.name)})


def _bool_placeholder(tensor: tf.Tensor) -> tf.Operation | None:
    """The boolean placeholder that `tensor` is (through Identity ops), or None."""
    op = tensor.op
    while op.type == "Identity":
        op = op.inputs[0].op
    return op if op.type in _PLACEHOLDERS and op.outputs[0].dtype == tf.bool else None


def bool_switches(graph: tf.Graph) -> list[tf.Tensor]:
    """Scalar boolean placeholders (with or without a default): the `is_training` switches of TF1 graphs."""
    return [op.outputs[0] for op in graph.get_operations()
            if op.type in _PLACEHOLDERS and op.outputs[0].dtype == tf.bool and op.outputs[0].shape.rank in (0, None)]


def _cond_predicate_inputs(graph: tf.Graph, op: tf.Operation) -> tuple[str, list[tuple[tf.Operation, int]]] | None:
    """`(cond scope, [(op, input index)])` where a cond reads its predicate, when `op` is a cond's pred op."""
    if op.type in _IF_OPS:  # TF2 control flow: the predicate is input 0
        return op.name, [(op, 0)]
    if op.type != "Identity" or not op.name.endswith("/pred_id"):  # TF1 control flow: pred_id and the pivot Switch
        return None
    scope = op.name[: -len("/pred_id")]
    try:
        pivot = graph.get_operation_by_name(f"{scope}/switch_t").inputs[0].op
    except KeyError:
        return None
    if pivot.type not in ("Switch", "RefSwitch"):
        return None
    return scope, [(op, 0)] + [(pivot, i) for i in range(len(pivot.inputs))]


def conds_to_inference(graph: tf.Graph, trained_scopes: Trained, regex: bool = False) -> list[str]:
    """Send every cond of a frozen layer that a boolean placeholder drives to its False (inference) branch.

    A cond (TF1 `Switch`/`Merge` with its `pred_id`, or a TF2 `If`/`StatelessIf` op) whose scope no trained scope
    holds and whose predicate is a boolean placeholder (`is_training`, possibly through Identity ops) gets a
    constant False as its predicate instead (rerouted with `Operation._update_input`, as `batch_norm_to_inference`
    does). Slim's batch norm and dropout on an `is_training` tensor are such conds, so a frozen layer normalises
    with its moving statistics and drops nothing, whatever the switch is fed. Call it before building gradients.

    Args:
        graph: The graph.
        trained_scopes: Every scope that some training step trains, or a function telling whether an op name
            belongs to a trained layer.
        regex: Treat the scopes as regular expressions.

    Returns:
        The scopes of the conds switched to inference.
    """
    trained = _trained_test(trained_scopes, regex)
    false: tf.Tensor | None = None
    switched = []
    for op in graph.get_operations():
        found = _cond_predicate_inputs(graph, op)
        if found is None:
            continue
        scope, readers = found
        reader, index = readers[0]
        if trained(scope) or _bool_placeholder(reader.inputs[index]) is None:
            continue
        if false is None:
            with graph.as_default(), graph.name_scope(None):
                false = tf.constant(False, name="tf1tune_frozen_layers_inference")
        for reader, index in readers:
            reader._update_input(index, false)
        switched.append(scope)
    return switched
