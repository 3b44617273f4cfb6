"""The training step of fine-tuning: optimizer, per-scope learning rates, clipping, element-wise freezing.

Why it exists: fine-tuning a TF1 model rarely trains "everything at one learning rate". The runner
(`tf1tune.train.loop`) trains a chosen set of variables, often with a smaller learning rate for the
backbone than for a new head, sometimes with single rows or entries of a weight frozen (say, the logits
of classes that must not change), and with the batch norm of frozen layers left alone. This module builds
that step in graph mode (`tf.compat.v1`), inside the caller's `with graph.as_default():`.

How each part is done, and why that way:

- Learning-rate multipliers: variables are grouped by multiplier and each group gets its own optimizer
  with `learning_rate * multiplier`. Scaling gradients instead would do nothing under Adam and RMSProp,
  which are invariant to the gradient's scale. A multiplier of 0 leaves the variable out altogether.
- Optimizer names: each group's optimizer is named `{name}_{group}/{Kind}` (`phase1_0/Momentum`), so
  its slots are `<var>/phase1_0/Momentum` (Adam: `.../Adam`, `.../Adam_1`). The phase and group keep
  the slots of two steps in one graph apart, and the last name component is the one that
  `tf1tune.selection.is_optimizer_state` recognises, so `select` keeps leaving optimizer state out.
- Element-wise freezing (`masks`): the masked gradient entries are zeroed, and after the optimizer update
  the masked entries are put back from a snapshot with `tf.where(mask, snapshot, variable)`. Zeroing the
  gradient alone is not enough: momentum, Adam and RMSProp move entries whose gradient is 0. `tf.where`
  copies the snapshot's bits, so masked entries never change, bit for bit, with any optimizer.
  The snapshot is the non-trainable global variable `<var>/frozen_snapshot` (saved in checkpoints, so a
  resumed run keeps the original values). Fill it once with `TrainOp.capture_snapshots(sess)` after
  restoring the checkpoint and before the first step; on resume it is restored from the run's own
  checkpoint and must not be captured again.
- Batch norm of frozen layers: `tf1tune.train.batchnorm` drops their moving-average update ops
  (`frozen_batch_norm_updates`, whose kept ops go in `update_ops` here) and makes them normalise with the
  moving statistics.

Example:
    >>> with graph.as_default():
    ...     kept, _ = frozen_batch_norm_updates(graph.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS),
    ...                                         ["DigitsCNN/Logits"])
    ...     step = build_train_op(loss, variables, optimizer="adam", learning_rate=1e-3,
    ...                           multipliers={"DigitsCNN/Conv2d_3": 0.1}, global_step=global_step,
    ...                           update_ops=kept, name="phase1")
    ...     # restore the checkpoint, initialise step.optimizer_variables, then:
    ...     step.capture_snapshots(sess)
    ...     sess.run(step.op, feed_dict=...)
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from tf1tune.errors import ConfigError, SelectionError, SourceNotFoundError, TrainWarning
from tf1tune.names import capped, closest, not_found
from tf1tune.selection import scope_matches
from tf1tune.train.grouped_apply import GroupedApply

__all__ = ["OPTIMIZERS", "TrainOp", "build_train_op", "load_mask", "multiplier_of"]

# optimizer name -> (class name used in slot names, factory(learning_rate, name))
_OPTIMIZERS: dict[str, tuple[str, Any]] = {
    "sgd": ("GradientDescent", lambda lr, name: tf.compat.v1.train.GradientDescentOptimizer(lr, name=name)),
    "momentum": ("Momentum", lambda lr, name: tf.compat.v1.train.MomentumOptimizer(lr, 0.9, name=name)),
    "adam": ("Adam", lambda lr, name: tf.compat.v1.train.AdamOptimizer(lr, name=name)),
    "rmsprop": ("RMSProp", lambda lr, name: tf.compat.v1.train.RMSPropOptimizer(lr, name=name)),
}
OPTIMIZERS: tuple[str, ...] = tuple(_OPTIMIZERS)

SNAPSHOT_SUFFIX = "frozen_snapshot"


@dataclass
class TrainOp:
    """One training step, as built by `build_train_op`.

    Attributes:
        op: The step: run it once per batch (it runs the update ops, applies every group's optimizer,
            restores masked entries and increments the global step once).
        groups: `(multiplier, [variable names])` per optimizer group, in order of first appearance.
        frozen_by_multiplier: Names of the variables left out because their multiplier is 0.
        optimizer_variables: Variables the step created (optimizer slots, Adam's `beta1_power`/
            `beta2_power`, masked variables' `<var>/frozen_snapshot`); initialise them before the first step
            (or restore them from the run's checkpoint on resume).
        snapshots: `{variable name: snapshot variable}` of the masked variables.
        no_gradient: Names of given variables that the loss does not depend on (left untouched).
    """

    op: tf.Operation
    groups: list[tuple[float, list[str]]]
    frozen_by_multiplier: list[str]
    optimizer_variables: list[tf.Variable]
    snapshots: dict[str, tf.Variable] = field(default_factory=dict)
    no_gradient: list[str] = field(default_factory=list)
    sync: Any = None  # the SyncReplicasOptimizer of a distributed synchronous step
    _capture: tf.Operation | None = field(default=None, repr=False)

    def capture_snapshots(self, sess: tf.compat.v1.Session) -> None:
        """Copy the masked variables' current values into their snapshots.

        Call it once per run, after the checkpoint is restored and before the first step. Do not call it
        when resuming from the run's own checkpoint: that checkpoint holds the snapshots with the original
        values, and capturing again would take whatever values the variables have now. Without masks it
        does nothing. Runs in `sess.graph` (the caller enters it, as for any `sess.run`).
        """
        if self._capture is not None:
            sess.run(self._capture)


def _name(variable: tf.Variable) -> str:
    return variable.op.name


def _optimizer(kind: str) -> tuple[str, Any]:
    key = kind.lower() if isinstance(kind, str) else kind
    if key not in _OPTIMIZERS:
        raise ConfigError(f"unknown optimizer '{kind}'; choose one of: {', '.join(OPTIMIZERS)}")
    return _OPTIMIZERS[key]


def _multiplier_of(name: str, multipliers: Sequence[tuple[str, float]], regex: bool) -> float:
    """The multiplier of the longest scope (pattern) that matches `name`, 1.0 when none does."""
    best: tuple[int, float] | None = None
    for scope, m in multipliers:
        if scope_matches(name, scope, regex):
            length = len(scope.rstrip("/")) if not regex else len(scope)
            if best is None or length > best[0]:
                best = (length, m)
    return 1.0 if best is None else best[1]


def multiplier_of(name: str, multipliers: Mapping[str, float], regex: bool = False) -> float:
    """`build_train_op`'s learning-rate multiplier for `name`: the longest matching scope's, else 1.0 (0 freezes)."""
    return _multiplier_of(name, [(s, float(m)) for s, m in multipliers.items()], regex)


def _check_multipliers(multipliers: Mapping[str, float], names: list[str], regex: bool) -> list[tuple[str, float]]:
    checked = []
    for scope, value in multipliers.items():
        if regex:
            try:
                re.compile(scope)
            except re.error as e:
                raise SelectionError(f"learning-rate multiplier pattern '{scope}' is not a valid regular expression "
                                     f"({e}); fix the pattern, or drop regex to match scope names") from e
        try:
            m = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"learning-rate multiplier of '{scope}' must be a number >= 0, got {value!r}") from None
        if not np.isfinite(m) or m < 0:
            raise ConfigError(f"learning-rate multiplier of '{scope}' must be a finite number >= 0, got {value!r}; "
                               "use 0 to freeze the scope")
        if not any(scope_matches(n, scope, regex) for n in names):
            scopes = sorted({"/".join(n.split("/")[: i + 1]) for n in names for i in range(n.count("/") + 1)})
            near = [] if regex else closest(scope.rstrip("/"), scopes, n=3)
            hint = f"closest: {', '.join(near)}" if near else f"trained variables: {capped(names)}"
            raise SelectionError(f"learning-rate multiplier scope '{scope}' matches none of the trained variables "
                                 f"({hint}); a scope matches whole '/'-separated prefixes of variable names")
        checked.append((scope, m))
    return checked


def _check_masks(masks: Mapping[str, np.ndarray], by_name: Mapping[str, tf.Variable]) -> dict[str, np.ndarray]:
    checked = {}
    for key, mask in masks.items():
        name = key.split(":")[0]
        if name not in by_name:
            raise not_found("trained variable to mask", key, by_name,
                            hint="masks apply to the variables this step trains; give a variable's op name")
        if not isinstance(mask, np.ndarray):
            raise ConfigError(f"the mask of '{name}' must be a numpy bool array, got {type(mask).__name__}; "
                               "build it with load_mask or np.zeros(shape, bool)")
        if mask.dtype != np.bool_:
            raise ConfigError(f"the mask of '{name}' has dtype {mask.dtype}, not bool; "
                               "use a boolean array (True = frozen entry), e.g. mask.astype(bool)")
        shape = tuple(by_name[name].shape.as_list())
        if tuple(mask.shape) != shape:
            raise ConfigError(f"the mask of '{name}' has shape {list(mask.shape)}, the variable has {list(shape)}; "
                               "give a mask of the variable's shape")
        checked[name] = mask
    return checked


def _snapshot(variable: tf.Variable) -> tf.Variable:
    """The non-trainable global variable `<var>/frozen_snapshot` (zeros until captured)."""
    graph = variable.graph
    with graph.name_scope(None):
        return tf.compat.v1.Variable(
            tf.zeros(variable.shape, variable.dtype.base_dtype), trainable=False,
            name=f"{_name(variable)}/{SNAPSHOT_SUFFIX}",
            collections=[tf.compat.v1.GraphKeys.GLOBAL_VARIABLES])


def build_train_op(
    loss: tf.Tensor,
    variables: Sequence[tf.Variable],
    *,
    optimizer: str = "momentum",
    learning_rate: float | tf.Tensor,
    multipliers: Mapping[str, float] | None = None,
    regex: bool = False,
    clip_norm: float | None = None,
    masks: Mapping[str, np.ndarray] | None = None,
    global_step: tf.Variable | None = None,
    update_ops: Sequence[tf.Operation] = (),
    name: str = "train",
    replicas: int | None = None,
) -> TrainOp:
    """Build one training step that trains exactly `variables`.

    Call it inside `with graph.as_default():` of the loss's graph.

    Args:
        loss: Scalar loss (weight decay included, if any).
        variables: The variables to train (the caller's selection of trainable ones); every other
            variable is left untouched.
        optimizer: One of `sgd`, `momentum` (0.9), `adam`, `rmsprop` (the `tf.compat.v1.train` optimizers).
        learning_rate: Base learning rate (a float or a scalar tensor such as a decay schedule).
        multipliers: `{scope: multiplier}`; a variable gets the multiplier of the longest scope that matches
            it (scopes match at `/` boundaries, see `tf1tune.selection`), 1.0 when none does. 0 freezes.
        regex: Treat the multiplier scopes as regular expressions (`re.search`; the longest pattern wins).
        clip_norm: Clip the gradients of all groups together to this global norm.
        masks: `{variable name: bool array of its shape}`, True = entry frozen bit for bit (see the module
            docstring; call `capture_snapshots` once after restoring).
        global_step: Incremented by exactly one per step; None leaves the step count alone.
        update_ops: Ops run before the update in each step (batch-norm updates of trained scopes only;
            see `frozen_batch_norm_updates`).
        name: Name of the step op and prefix of its optimizers' names (e.g. `phase1`); give each step in
            one graph its own name so their optimizer state stays apart.
        replicas: Synchronous data-parallel training over this many workers: the step pushes this worker's
            gradients and waits until the chief applied the sum of `replicas` pushes (`TrainOp.sync`).

    Returns:
        The `TrainOp`.

    Raises:
        ConfigError: Unknown optimizer, no variables to train, a bad multiplier or mask
            (`SelectionError` when a multiplier scope matches nothing, `NameNotFoundError` for a mask of an
            unknown variable).

    Example:
        >>> step = build_train_op(loss, variables, optimizer="sgd", learning_rate=0.01,
        ...                       multipliers={"DigitsCNN/Conv2d_1": 0.0, "DigitsCNN/Conv2d_2": 0.1})
    """
    kind, factory = _optimizer(optimizer)
    variables = list(variables)
    if not variables:
        raise ConfigError("there are no variables to train; select at least one trainable variable")
    if clip_norm is not None and not (clip_norm > 0):
        raise ConfigError(f"clip_norm must be a positive number or None, got {clip_norm!r}")
    graph = loss.graph
    names = [_name(v) for v in variables]
    checked = _check_multipliers(multipliers or {}, names, regex)
    by_name = dict(zip(names, variables))
    mask_arrays = _check_masks(masks or {}, by_name)

    group_of: dict[float, list[tf.Variable]] = {}
    frozen: list[str] = []
    for v, n in zip(variables, names):
        m = _multiplier_of(n, checked, regex)
        if m == 0:
            frozen.append(n)
        else:
            group_of.setdefault(m, []).append(v)
    if not group_of:
        raise ConfigError(f"every one of the {len(variables)} variables to train has learning-rate multiplier 0; "
                           "give a nonzero multiplier to at least one scope")

    before = {_name(v) for v in graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)}
    trained = [v for vs in group_of.values() for v in vs]
    with graph.name_scope(f"{name}_gradients"):
        grads = tf.compat.v1.gradients(loss, trained)
    missing = [_name(v) for v, g in zip(trained, grads) if g is None]
    if missing:
        warnings.warn(f"the loss does not depend on {', '.join(missing)}; the step leaves them unchanged",
                      TrainWarning, stacklevel=2)
    pairs = [(g, v) for g, v in zip(grads, trained) if g is not None]
    masked_vars = {n: by_name[n] for n in mask_arrays}
    mask_consts: dict[str, tf.Tensor] = {}
    with graph.name_scope(f"{name}_masks"):
        for n, mask in mask_arrays.items():
            mask_consts[n] = tf.constant(mask, name=n.replace("/", "_"))
        fixed = []
        for g, v in pairs:
            n = _name(v)
            if n in mask_consts:
                g = tf.convert_to_tensor(g)  # IndexedSlices (embeddings) become dense here
                g = tf.where(mask_consts[n], tf.zeros_like(g), g)
            fixed.append((g, v))
        pairs = fixed
    snapshots = {n: _snapshot(masked_vars[n]) for n in mask_arrays}
    groups = [(m, [_name(v) for v in vs]) for m, vs in group_of.items()]
    update = GroupedApply([(factory(learning_rate if m == 1.0 else learning_rate * m, f"{name}_{i}/{kind}"), names)
                           for i, (m, names) in enumerate(groups)],
                          [(masked_vars[n], mask_consts[n], snapshots[n]) for n in mask_arrays], clip_norm, name)
    sync = None
    if replicas is None:
        with tf.control_dependencies(list(update_ops)):
            step = update.apply_gradients(pairs, global_step, name=name)
    else:  # the mean of `replicas` workers' gradients per global step (see tf1tune.train.cluster)
        if global_step is None:
            raise ConfigError("a distributed step needs the global step (it tells stale gradients apart)")
        sync = tf.compat.v1.train.SyncReplicasOptimizer(update, replicas, replicas, name=f"{name}_sync")
        step = tf.group(sync.apply_gradients(pairs, global_step), *update_ops, name=name)
    capture = None
    if snapshots:
        with graph.name_scope(f"{name}_capture_snapshots"):
            capture = tf.group(*[snapshots[n].assign(masked_vars[n].read_value(), read_value=False)
                                 for n in snapshots])
    created = [v for v in graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES) if _name(v) not in before]
    return TrainOp(op=step, groups=groups, frozen_by_multiplier=frozen, optimizer_variables=created,
                   snapshots=snapshots, no_gradient=missing, sync=sync, _capture=capture)


def _indices(values: Any, what: str, size: int) -> list[int]:
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(f"mask '{what}' must be a non-empty list of integers, got {values!r}")
    out = []
    for i in values:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise ConfigError(f"mask '{what}' must hold integers, got {i!r}")
        if not 0 <= i < size:
            raise ConfigError(f"mask '{what}' index {i} is out of range for a dimension of size {size} "
                               f"(valid: 0..{size - 1})")
        out.append(int(i))
    return out


def load_mask(spec: Mapping[str, Any] | str | os.PathLike | np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """A boolean mask (True = frozen entry) of `shape` from a small spec.

    Args:
        spec: One of `{"rows": [0, 2]}` (indices along the first dimension), `{"columns": [1]}` (along
            the last dimension), `{"indices": [[0, 1], [2, 3]]}` (one index per dimension each), a path to a
            boolean `.npy` file, or a boolean numpy array.
        shape: The variable's shape.

    Returns:
        A bool array of `shape`.

    Raises:
        ConfigError: An unknown spec, an index out of range, a file that is missing, not boolean or of
            another shape.

    Example:
        >>> load_mask({"columns": [3]}, (64, 10))[:, 3].all()
        True
    """
    shape = tuple(int(d) for d in shape)
    if isinstance(spec, (str, os.PathLike)):
        path = os.fspath(spec)
        if not os.path.isfile(path):
            raise SourceNotFoundError(f"mask file '{path}' does not exist; give a boolean .npy file of shape "
                                      f"{list(shape)}, or a spec like {{\"rows\": [0]}}")
        try:
            mask = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ConfigError(f"mask file '{path}' is not a readable .npy array ({e}); save it with np.save") from e
        return _check_array(mask, shape, f"mask file '{path}'")
    if isinstance(spec, np.ndarray):
        return _check_array(spec, shape, "mask array")
    if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in ("rows", "columns", "indices"):
        raise ConfigError(f"unknown mask spec {spec!r}; give one of {{\"rows\": [...]}}, {{\"columns\": [...]}}, "
                           "{\"indices\": [[...], ...]} or a path to a boolean .npy file")
    if not shape:
        raise ConfigError("a scalar variable cannot be masked by rows, columns or indices; "
                           "leave it out of the trained variables instead")
    mask = np.zeros(shape, dtype=bool)
    key, values = next(iter(spec.items()))
    if key == "rows":
        mask[_indices(values, "rows", shape[0]), ...] = True
    elif key == "columns":
        mask[..., _indices(values, "columns", shape[-1])] = True
    else:
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"mask 'indices' must be a non-empty list of index lists, got {values!r}")
        for index in values:
            if not isinstance(index, (list, tuple)) or len(index) != len(shape):
                raise ConfigError(f"mask index {index!r} must have {len(shape)} entries, one per dimension of "
                                   f"shape {list(shape)}")
            mask[tuple(_indices([i], "indices", d)[0] for i, d in zip(index, shape))] = True
    return mask


def _check_array(mask: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    if mask.dtype != np.bool_:
        raise ConfigError(f"{what} has dtype {mask.dtype}, not bool; save a boolean array (True = frozen entry)")
    if tuple(mask.shape) != shape:
        raise ConfigError(f"{what} has shape {list(mask.shape)}, the variable has {list(shape)}")
    return mask
