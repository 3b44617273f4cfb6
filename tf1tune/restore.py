"""Checked partial restore: compare graph variables with a checkpoint, restore what fits, initialise the rest.

Every variable's name, shape and dtype is checked against the checkpoint before anything is loaded,
and all problems are collected into one `RestorePlan`. With `on_mismatch="error"` (the default) any
problem raises one `CheckpointMismatchError` that lists them all; with `"skip"` one warning names them and
only the matching variables are restored. A shape mismatch is never loaded: with TF 2.x resource
variables `Saver.restore` silently loads a [8, 10] tensor into an [8, 5] variable
(tensorflow/tensorflow#52220), so the check is done here.

Order matters: first the checkpoint is restored, then exactly the variables that are still
uninitialised are initialised from their initializers, so no restored value is overwritten.

Example:
    >>> handle = tf1tune.load("slim:digits_cnn", num_classes=5)
    >>> variables = tf1tune.select(handle.variables, exclude_scopes=["DigitsCNN/Logits"])
    >>> sess = tf.compat.v1.Session(graph=handle.graph)
    >>> plan = tf1tune.restore(sess, variables, "checkpoints/digits_cnn")  # the new head is initialised
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import tensorflow as tf

from tf1tune.checkpoints import checkpoint_entries, resolve_checkpoint, saver_restore
from tf1tune.errors import CheckpointMismatchError, RestoreWarning, Tf1tuneError
from tf1tune.handle import initialize_uninitialized
from tf1tune.names import capped
from tf1tune.selection import without_optimizer_state

__all__ = ["RestorePlan", "RestoreWarning", "plan_restore", "restore"]

Variables: TypeAlias = Sequence[tf.Variable] | Mapping[str, tf.Variable]
_SHOWN = 8  # names per list in one-line error messages


def _capped(items: Sequence[str]) -> str:
    return capped(items, _SHOWN)


@dataclass
class RestorePlan:
    """How graph variables fit a checkpoint.

    Names in `matched`, `missing` and the mismatch lists are graph variable names; `unused` holds
    checkpoint entry names. When a variable is restored from an entry of another name (see
    `tf1tune.selection.rename_map`), `renamed` maps the graph name to the checkpoint name.

    Attributes:
        checkpoint: The resolved checkpoint prefix.
        matched: Variables whose entry exists with the same shape and dtype (these are restored).
        missing: Variables without an entry in the checkpoint.
        shape_mismatch: `{"name", "graph_shape", "checkpoint_shape"}` for entries of another shape.
        dtype_mismatch: `{"name", "graph_dtype", "checkpoint_dtype"}` for entries of another dtype.
        unused: Checkpoint entries that no given variable asks for.
        renamed: `{graph_name: checkpoint_name}` where the two differ.
        initialized: After `restore`: variables of the graph initialised from their initializers.
    """

    checkpoint: str
    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    shape_mismatch: list[dict[str, Any]] = field(default_factory=list)
    dtype_mismatch: list[dict[str, Any]] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)
    initialized: list[str] = field(default_factory=list)
    var_list: dict[str, tf.Variable] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        """True when every given variable fits its checkpoint entry."""
        return not (self.missing or self.shape_mismatch or self.dtype_mismatch)

    @property
    def problems(self) -> list[str]:
        """Graph names of the variables that do not fit (missing, shape or dtype mismatch)."""
        return self.missing + [m["name"] for m in self.shape_mismatch] + [m["name"] for m in self.dtype_mismatch]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with the keys `checkpoint`, `matched`, `missing`, `shape_mismatch`,
        `dtype_mismatch`, `unused` and `renamed`."""
        return {
            "checkpoint": self.checkpoint,
            "matched": list(self.matched),
            "missing": list(self.missing),
            "shape_mismatch": [dict(m) for m in self.shape_mismatch],
            "dtype_mismatch": [dict(m) for m in self.dtype_mismatch],
            "unused": list(self.unused),
            "renamed": dict(self.renamed),
        }

    def describe_problems(self) -> str:
        """The problems on one line: `missing: a, b; shape mismatch: w graph [8, 5] vs checkpoint [8, 10]`.

        Each list names its first few variables and counts the rest (`... and 127 more`); `format()` lists all.
        """
        parts = []
        if self.missing:
            parts.append("missing: " + _capped(self.missing))
        if self.shape_mismatch:
            parts.append("shape mismatch: " + _capped(
                [f"{m['name']} graph {m['graph_shape']} vs checkpoint {m['checkpoint_shape']}"
                 for m in self.shape_mismatch]))
        if self.dtype_mismatch:
            parts.append("dtype mismatch: " + _capped(
                [f"{m['name']} graph {m['graph_dtype']} vs checkpoint {m['checkpoint_dtype']}"
                 for m in self.dtype_mismatch]))
        return "; ".join(parts)

    def format(self) -> str:
        """A human-readable rendering, one section per list."""
        lines = [f"Restore plan for checkpoint {self.checkpoint}:",
                 f"  matched ({len(self.matched)}):"]
        lines += [f"    {n}" + (f"  <- {self.renamed[n]}" if n in self.renamed else "") for n in self.matched]
        lines.append(f"  missing in checkpoint ({len(self.missing)}):")
        lines += [f"    {n}" for n in self.missing]
        lines.append(f"  shape mismatch ({len(self.shape_mismatch)}):")
        lines += [f"    {m['name']}: graph {m['graph_shape']} vs checkpoint {m['checkpoint_shape']}"
                  for m in self.shape_mismatch]
        lines.append(f"  dtype mismatch ({len(self.dtype_mismatch)}):")
        lines += [f"    {m['name']}: graph {m['graph_dtype']} vs checkpoint {m['checkpoint_dtype']}"
                  for m in self.dtype_mismatch]
        lines.append(f"  unused checkpoint entries ({len(self.unused)}):")
        lines += [f"    {n}" for n in self.unused]
        return "\n".join(lines)


def _as_var_map(variables: Variables) -> dict[str, tf.Variable]:
    if isinstance(variables, Mapping):
        return dict(variables)
    return {v.op.name: v for v in variables}


def _shape(shape: tf.TensorShape | Sequence[int]) -> list[int | None] | None:
    shape = tf.TensorShape(shape)
    return shape.as_list() if shape.rank is not None else None


def plan_restore(variables: Variables, checkpoint: str | os.PathLike[str]) -> RestorePlan:
    """Compare variables with a checkpoint's entries by name, shape and dtype; load nothing.

    Args:
        variables: Graph variables (each looked up under its own op name), or a `{checkpoint_name: variable}`
            map (e.g. from `tf1tune.selection.rename_map`).
        checkpoint: A checkpoint prefix, file or directory (see `tf1tune.resolve_checkpoint`).

    Returns:
        The plan; `plan.ok` is True when every variable fits.

    Raises:
        SourceNotFoundError: No checkpoint at `checkpoint`.
        BadSourceError: The checkpoint cannot be read.
    """
    prefix = resolve_checkpoint(checkpoint)
    entries = {e.name: e for e in checkpoint_entries(prefix)}
    plan = RestorePlan(checkpoint=prefix)
    for ckpt_name, var in _as_var_map(variables).items():
        name = var.op.name
        if ckpt_name != name:
            plan.renamed[name] = ckpt_name
        entry = entries.get(ckpt_name)
        if entry is None:
            plan.missing.append(name)
            continue
        graph_shape = var.shape
        if not graph_shape.is_compatible_with(tf.TensorShape(entry.shape)):
            plan.shape_mismatch.append({"name": name, "graph_shape": _shape(graph_shape),
                                        "checkpoint_shape": list(entry.shape)})
            continue
        graph_dtype = var.dtype.base_dtype.name
        if graph_dtype != entry.dtype:
            plan.dtype_mismatch.append({"name": name, "graph_dtype": graph_dtype, "checkpoint_dtype": entry.dtype})
            continue
        plan.matched.append(name)
        plan.var_list[ckpt_name] = var
    used = set(_as_var_map(variables))
    plan.unused = sorted(n for n in entries if n not in used)
    return plan


def _exclude_hint(plan: RestorePlan) -> str:
    """How to leave the misfits out, for Python and the CLI: their scopes (capped) and the two options."""
    scopes = sorted({n.rsplit("/", 1)[0] if "/" in n else n for n in plan.problems})
    return (f"exclude them with exclude_scopes / --exclude-scopes ({_capped(scopes)}), "
            "or skip them with on_mismatch='skip'")


def restore(
    sess: tf.compat.v1.Session,
    variables: Variables | None,
    checkpoint: str | os.PathLike[str],
    on_mismatch: str = "error",
    keep_optimizer_state: bool = False,
    initialize: bool = True,
) -> RestorePlan:
    """Restore `variables` from `checkpoint` after checking them, then initialise what is still uninitialised.

    Args:
        sess: A session on the graph that holds the variables.
        variables: Variables to restore (a list, looked up under their own names, e.g. from
            `tf1tune.selection.select`), a `{checkpoint_name: variable}` map (from `tf1tune.selection.rename_map`),
            both used as given, or None for every global variable of `sess.graph` except optimizer state.
        checkpoint: A checkpoint prefix, file or directory.
        on_mismatch: `"error"`: any missing, shape or dtype problem raises before anything is loaded;
            `"skip"`: warn once and restore only the variables that fit.
        keep_optimizer_state: With `variables=None`: also restore optimizer slots, `beta1_power`/`beta2_power`
            and the global step. By default they are left out (and so initialised fresh); `select` leaves them
            out of a list the same way.
        initialize: Afterwards initialise exactly the graph's global variables that hold no value yet.

    Returns:
        The plan; `plan.initialized` lists the variables initialised fresh.

    Raises:
        CheckpointMismatchError: `on_mismatch="error"` and some variables do not fit (counted, the first named).
        BadSourceError: The checkpoint cannot be read (e.g. a truncated data file).
        Tf1tuneError: `on_mismatch` is not `"error"` or `"skip"`.

    Example:
        >>> variables = select(handle.variables, exclude_scopes=["DigitsCNN/Logits"])
        >>> plan = restore(sess, variables, "checkpoints/digits_cnn")
    """
    if on_mismatch not in ("error", "skip"):
        raise Tf1tuneError(f"on_mismatch must be 'error' or 'skip', got {on_mismatch!r}")
    graph = sess.graph
    if variables is None:
        collected = list(graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES))
        variables = collected if keep_optimizer_state else without_optimizer_state(collected)
    plan = plan_restore(variables, checkpoint)
    if not plan.ok:
        count = len(plan.problems)
        subject = f"{count} variables do" if count != 1 else "1 variable does"
        what = f"{subject} not fit checkpoint '{plan.checkpoint}'"
        if on_mismatch == "error":
            raise CheckpointMismatchError(
                f"{what}: {plan.describe_problems()}; {_exclude_hint(plan)} to restore the rest"
            )
        warnings.warn(f"{what}, not restored: {plan.describe_problems()}", RestoreWarning, stacklevel=2)
    with graph.as_default():  # Saver.restore takes an eager code path outside a graph context
        if plan.var_list:
            saver = tf.compat.v1.train.Saver(var_list=plan.var_list, name="tf1tune_restore")
            saver_restore(saver, sess, plan.checkpoint)
        if initialize:
            plan.initialized = initialize_uninitialized(
                sess, graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES))
    return plan
