"""The update half of a training step as one `tf.compat.v1.train.Optimizer`: clipping, one optimizer per
learning-rate group, masked entries put back, the global step incremented once.

Why an `Optimizer`: a single-process step calls `apply_gradients` on its own gradients, and a distributed
synchronous step hands the same object to `tf.compat.v1.train.SyncReplicasOptimizer`, which calls it once per
global step on the gradients aggregated over the workers (`tf1tune.train.cluster`). Both therefore run one and
the same update: learning-rate multipliers, `clip_norm` on the (aggregated) gradient, and element-wise masks
restored from their snapshots bit for bit (see `tf1tune.train.train_op`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import tensorflow as tf


class GroupedApply(tf.compat.v1.train.Optimizer):
    """Apply gradients group by group, each group with its own optimizer (`groups`: `(optimizer, variable names)`).

    `masked` holds `(variable, bool mask constant, snapshot variable)`: after every group's update, the masked
    entries are set back to the snapshot (`tf.where` copies bits). `clip_norm` clips the gradients of all groups
    together to that global norm first.
    """

    def __init__(self, groups: Sequence[tuple[tf.compat.v1.train.Optimizer, list[str]]],
                 masked: Sequence[tuple[tf.Variable, tf.Tensor, tf.Variable]] = (), clip_norm: float | None = None,
                 name: str = "train") -> None:
        super().__init__(use_locking=False, name=name)
        self._groups = list(groups)
        self._masked = list(masked)
        self._clip_norm = clip_norm

    def apply_gradients(self, grads_and_vars: Iterable[tuple[Any, tf.Variable]], global_step: tf.Variable | None = None,
                        name: str | None = None) -> tf.Operation:
        """The update op: clip, apply each group, restore masked entries, then increment `global_step` once."""
        pairs = [(g, v) for g, v in grads_and_vars if g is not None]
        name = name or self.get_name()
        graph = pairs[0][1].graph if pairs else tf.compat.v1.get_default_graph()
        if self._clip_norm is not None and pairs:
            with graph.name_scope(f"{name}_clip"):
                clipped, _ = tf.clip_by_global_norm([g for g, _ in pairs], self._clip_norm)
            pairs = list(zip(clipped, [v for _, v in pairs]))
        grad_of = {v.op.name: g for g, v in pairs}
        applies = []
        for optimizer, names in self._groups:
            with_grads = [(grad_of[n], v) for n, v in _by_name(pairs, names)]
            if with_grads:
                applies.append(optimizer.apply_gradients(with_grads))
        if not applies:
            applies.append(tf.no_op(name=f"{name}_nothing_to_apply"))
        with tf.control_dependencies(applies), graph.name_scope(f"{name}_restore_masked"):
            restores = [variable.assign(tf.where(mask, snapshot.read_value(), variable.read_value()), read_value=False)
                        for variable, mask, snapshot in self._masked]
        with tf.control_dependencies(applies + restores):
            if global_step is not None:
                return tf.group(global_step.assign_add(1, read_value=False), name=name)
            return tf.no_op(name=name)

    # SyncReplicasOptimizer forwards these to the optimizer it wraps
    def get_slot_names(self) -> list[str]:
        return sorted({s for optimizer, _ in self._groups for s in optimizer.get_slot_names()})

    def variables(self) -> list[tf.Variable]:
        return [v for optimizer, _ in self._groups for v in optimizer.variables()]

    def _apply_dense(self, grad: Any, var: Any) -> Any:  # never called: apply_gradients is overridden
        raise NotImplementedError

    _resource_apply_dense: Callable[..., Any] = _apply_dense
    _apply_sparse: Callable[..., Any] = _apply_dense


def _by_name(pairs: list[tuple[Any, tf.Variable]], names: list[str]) -> list[tuple[str, tf.Variable]]:
    wanted = set(names)
    return [(v.op.name, v) for _, v in pairs if v.op.name in wanted]
