"""The random ops of a training graph as functions of the seed and the step, so that a resumed run is exact.

A stateful random op (`RandomUniform` under dropout, `TruncatedNormal`, ...) draws from a state that lives in the
session: a new process (a run resumed after `kill -9`) starts that state again from the op's seed and replays the
masks of step 0. `make_stateless` replaces every such op that the loss depends on by its stateless twin
(`StatelessRandomUniform`, ...) whose seed is `[key, global_step]`, `key` mixing the run's seed with the op's name:
the same op draws the same values at the same step in any process, and other values at every other step.
Consumers are rerouted with `Operation._update_input`, as `tf1tune.train.batchnorm` does; call it after the loss
is built and before the gradients are.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import tensorflow as tf

# stateful op type -> builder of its stateless twin from (old op, seed tensor)
_TWINS: dict[str, Callable[[tf.Operation, tf.Tensor], tf.Tensor]] = {
    "RandomUniform": lambda op, seed: tf.raw_ops.StatelessRandomUniform(
        shape=op.inputs[0], seed=seed, dtype=op.get_attr("dtype")),
    "RandomStandardNormal": lambda op, seed: tf.raw_ops.StatelessRandomNormal(
        shape=op.inputs[0], seed=seed, dtype=op.get_attr("dtype")),
    "TruncatedNormal": lambda op, seed: tf.raw_ops.StatelessTruncatedNormal(
        shape=op.inputs[0], seed=seed, dtype=op.get_attr("dtype")),
    "RandomUniformInt": lambda op, seed: tf.raw_ops.StatelessRandomUniformInt(
        shape=op.inputs[0], seed=seed, minval=op.inputs[1], maxval=op.inputs[2]),
}
# stateful random ops without a stateless twin here: the run warns that resuming is not exact for them
_NO_TWIN = frozenset({"RandomShuffle", "Multinomial", "RandomGamma", "RandomPoisson", "RandomPoissonV2",
                      "ParameterizedTruncatedNormal", "RandomCrop", "StatefulStandardNormalV2",
                      "StatefulUniform", "StatefulUniformInt", "StatefulUniformFullInt",
                      "StatefulTruncatedNormal"})
_FUNCTION_ATTRS = ("then_branch", "else_branch", "body", "cond", "f", "branches")


def _ancestors(tensors: list[tf.Tensor]) -> list[tf.Operation]:
    seen: dict[str, tf.Operation] = {}
    todo = [t.op for t in tensors]
    while todo:
        op = todo.pop()
        if op.name in seen:
            continue
        seen[op.name] = op
        todo.extend(t.op for t in op.inputs)
        todo.extend(op.control_inputs)
    return list(seen.values())


def _function_random_ops(graph: tf.Graph, op: tf.Operation) -> list[str]:
    """Stateful random op types inside the functions an `If`/`While`/call op runs."""
    found = []
    for attr in _FUNCTION_ATTRS:
        try:
            value = op.get_attr(attr)
        except ValueError:
            continue
        names = [f.name for f in value] if isinstance(value, list) else [getattr(value, "name", value)]
        for name in names:
            function = graph._get_function(name.decode() if isinstance(name, bytes) else name)
            if function is None:
                continue
            found += [n.op for n in function.definition.node_def if n.op in _TWINS or n.op in _NO_TWIN]
    return found


def _key(seed: int, name: str) -> int:
    return (seed * 0x9E3779B97F4A7C15 + zlib.crc32(name.encode())) % (1 << 62)


def make_stateless(graph: tf.Graph, loss: tf.Tensor, step: tf.Tensor, seed: int) -> tuple[list[str], list[str]]:
    """Replace the stateful random ops that `loss` depends on by stateless ones seeded with `[key, step]`.

    Args:
        graph: The training graph (not finalized).
        loss: The total loss, before any gradient is built.
        step: The global step (read as int64 each time the loss runs).
        seed: The run's seed.

    Returns:
        (names of the rewritten ops, one note per random op that stays stateful).
    """
    rewritten, notes = [], []
    with graph.as_default():
        step64 = tf.cast(step, tf.int64, name="random_ops_step")
    for op in sorted(_ancestors([loss]), key=lambda o: o._id):
        if op.type in _NO_TWIN:
            notes.append(f"random op '{op.name}' ({op.type}) has no stateless twin; a resumed run draws other "
                         "values there than an uninterrupted one")
            continue
        inner = _function_random_ops(graph, op)
        if inner:
            notes.append(f"'{op.name}' ({op.type}) runs random ops ({', '.join(sorted(set(inner)))}) inside a "
                         "function; a resumed run draws other values there than an uninterrupted one")
            continue
        if op.type not in _TWINS:
            continue
        old = op.outputs[0]
        consumers = [(c, i) for c in old.consumers() for i, t in enumerate(c.inputs) if t is old]
        context = op._get_control_flow_context()
        with graph.as_default(), graph.name_scope(op.name + "_stateless/"):
            if context is not None:
                context.Enter()
            try:
                seed_tensor = tf.stack([tf.constant(_key(seed, op.name), tf.int64), step64], name="seed")
                new = _TWINS[op.type](op, seed_tensor)
            finally:
                if context is not None:
                    context.Exit()
        for consumer, index in consumers:
            consumer._update_input(index, new)
        rewritten.append(op.name)
    return rewritten, notes
