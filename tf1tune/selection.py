"""Choosing variables: pure functions from a list of variables to a list (as tf-slim's `filter_variables`).

The matching rule, used by every function here: a scope matches a variable when it is a prefix of the
variable's op name that ends at a `/` boundary (or is the whole name). So `logits` matches `logits` and
`logits/weights`, `resnet_v1_50/logits` matches `resnet_v1_50/logits/biases`, but `logits` matches
neither `logits_new/w` nor `net/logits/w`. A trailing `/` on a scope is ignored. With `regex=True` a
scope is instead a regular expression, matched with `re.search` anywhere in the op name.

A selector that matches nothing raises `SelectionError` (a typo must not silently select nothing);
its message lists the top-level scopes that exist and the closest scope names.

Optimizer state (slots such as `.../Momentum`, `.../Adam_1`, `.../RMSProp`, `.../ExponentialMovingAverage`,
Adam's `beta1_power`/`beta2_power`) and the global step are left out of a `select` by default: a
restore for fine-tuning wants the model's weights, not the old run's training state.

Example:
    >>> restore_vars = select(handle.variables, exclude_scopes=["resnet_v1_50/logits"])
    >>> backbone = select(handle.variables, up_to=handle.endpoint("resnet_v1_50/block4"))
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeAlias

import tensorflow as tf

from tf1tune.errors import SelectionError
from tf1tune.graphdef import VARIABLE_OPS
from tf1tune.names import capped, closest

__all__ = ["exclude", "include", "is_optimizer_state", "is_optimizer_state_name", "rename_map", "scope_matches",
           "select", "trainable_only", "upstream_of", "without_optimizer_state"]

# Op types that hold a variable's value: ref variables, resource variables.
# Last name component of optimizer slot variables (`_N` when a graph holds several optimizers).
_SLOT = re.compile(r"/(Momentum|Adam|RMSProp|Adagrad|AdagradDA|Adadelta|Ftrl|ProximalAdagrad|"
                   r"ExponentialMovingAverage|MovingAverage)(_\d+)?$")
# Other training bookkeeping: Adam's powers, the step, the snapshots of element-wise frozen entries (train_op).
_OPTIMIZER_VARIABLES = re.compile(r"(^|/)(beta1_power|beta2_power|global_step|frozen_snapshot)(_\d+)?$")

Tensors: TypeAlias = tf.Tensor | tf.Operation | str | Sequence[tf.Tensor | tf.Operation | str]


def _name(variable: tf.Variable) -> str:
    return variable.op.name


def _clean(scope: str) -> str:
    return scope.rstrip("/")


def scope_matches(name: str, scope: str, regex: bool = False) -> bool:
    """True when `scope` matches the variable op name `name` (see the module docstring for the rule)."""
    if regex:
        return re.search(scope, name) is not None
    scope = _clean(scope)
    return scope == "" or name == scope or name.startswith(scope + "/")


def _scopes_of(names: Iterable[str]) -> list[str]:
    """Every `/`-boundary prefix of every name (the scopes a selector could name)."""
    found: set[str] = set()
    for name in names:
        parts = name.split("/")
        found.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(found)


def _no_match(what: str, scope: str, names: list[str], regex: bool) -> SelectionError:
    top = sorted({n.split("/")[0] for n in names})
    shown = capped(top, 10) if top else "none"
    near = [] if regex else closest(_clean(scope), _scopes_of(names), n=3)
    hint = f"; closest: {', '.join(near)}" if near else ""
    rule = ("the pattern is matched with re.search on variable names" if regex else
            "a scope matches whole '/'-separated prefixes of variable names, "
            "e.g. 'net/logits' matches 'net/logits/weights'")
    return SelectionError(f"{what} '{scope}' matches no variable (top-level scopes: {shown}{hint}); {rule}")


def _as_list(scopes: str | Iterable[str] | None) -> list[str]:
    if scopes is None:
        return []
    return [scopes] if isinstance(scopes, str) else list(scopes)


def _check_patterns(scopes: list[str], regex: bool) -> None:
    for scope in scopes if regex else []:
        try:
            re.compile(scope)
        except re.error as e:
            raise SelectionError(f"'{scope}' is not a valid regular expression ({e}); fix the pattern, "
                                 "or drop regex=True to match scope names") from e


def _matched(variables: Sequence[tf.Variable], scopes: str | Iterable[str], regex: bool, what: str) -> list[bool]:
    """For each variable, whether any of `scopes` matches it; a scope that matches none is a `SelectionError`."""
    scopes = _as_list(scopes)
    _check_patterns(scopes, regex)
    names = [_name(v) for v in variables]
    for scope in scopes:
        if not any(scope_matches(n, scope, regex) for n in names):
            raise _no_match(what, scope, names, regex)
    return [any(scope_matches(n, s, regex) for s in scopes) for n in names]


def include(variables: Sequence[tf.Variable], scopes: str | Iterable[str], regex: bool = False) -> list[tf.Variable]:
    """The variables matched by any of `scopes`, in their original order.

    Args:
        variables: Variables to choose from.
        scopes: Scope names (or regular expressions with `regex=True`).
        regex: Treat `scopes` as regular expressions (`re.search` on the op name).

    Returns:
        The matching variables.

    Raises:
        SelectionError: A scope matches none of `variables`.
    """
    return [v for v, hit in zip(variables, _matched(variables, scopes, regex, "include scope")) if hit]


def exclude(variables: Sequence[tf.Variable], scopes: str | Iterable[str], regex: bool = False) -> list[tf.Variable]:
    """The variables matched by none of `scopes`, in their original order.

    Args:
        variables: Variables to choose from.
        scopes: Scope names (or regular expressions with `regex=True`) to leave out.
        regex: Treat `scopes` as regular expressions (`re.search` on the op name).

    Returns:
        The remaining variables.

    Raises:
        SelectionError: A scope matches none of `variables` (most often a typo in the scope name).
    """
    return [v for v, hit in zip(variables, _matched(variables, scopes, regex, "exclude scope")) if not hit]


def trainable_only(variables: Sequence[tf.Variable], graph: tf.Graph | None = None) -> list[tf.Variable]:
    """The variables in the `TRAINABLE_VARIABLES` collection of `graph` (default: the variables' own graph).

    Batch-norm moving statistics and optimizer slots are not trainable, so they are left out.
    """
    if not variables:
        return []
    graph = graph or variables[0].graph
    trainable = {_name(v) for v in graph.get_collection(tf.compat.v1.GraphKeys.TRAINABLE_VARIABLES)}
    return [v for v in variables if _name(v) in trainable]


_keep_trainable = trainable_only  # `select` has a parameter of the same name


def _resolve_tensors(tensors: Tensors, graph: tf.Graph) -> list[tf.Operation]:
    items = [tensors] if isinstance(tensors, (str, tf.Tensor, tf.Operation)) else list(tensors)
    ops = []
    for item in items:
        if isinstance(item, tf.Tensor):
            ops.append(item.op)
        elif isinstance(item, tf.Operation):
            ops.append(item)
        else:
            try:
                ops.append(graph.get_operation_by_name(item.split(":")[0]))
            except (KeyError, ValueError):
                names = [op.name for op in graph.get_operations()]
                near = closest(item.split(":")[0], names)
                listed = f"closest: {', '.join(near)}" if near else "no similar names"
                raise SelectionError(
                    f"up_to tensor '{item}' is not in the graph ({listed}); give a tensor or op name of the graph"
                ) from None
    return ops


def upstream_of(variables: Sequence[tf.Variable], tensors: Tensors, graph: tf.Graph | None = None) -> list[tf.Variable]:
    """The variables that `tensors` depend on: what a model cut at `tensors` needs.

    Walks the graph backwards from the tensors' ops through data and control inputs and keeps the
    variables whose op (`VariableV2`, or `VarHandleOp` behind a resource variable's `ReadVariableOp`)
    is reached. In an inference-mode graph this includes batch norm's `moving_mean`/`moving_variance`,
    which feed `FusedBatchNorm`; variables after the cut are left out.

    Args:
        variables: Variables to choose from.
        tensors: Endpoint tensor(s) or operation(s), or their names (`scope/op:0` or `scope/op`).
        graph: Graph in which names are looked up (default: the variables' graph).

    Returns:
        The variables of `variables` upstream of `tensors`, in their original order.

    Raises:
        SelectionError: A name is not in the graph, or no variable is upstream of `tensors`.
    """
    if not variables:
        return []
    graph = graph or variables[0].graph
    start = _resolve_tensors(tensors, graph)
    seen: set[str] = set()
    reached: set[str] = set()
    stack = list(start)
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        if op.type in VARIABLE_OPS:
            reached.add(op.name)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    chosen = [v for v in variables if _name(v) in reached]
    if not chosen:
        names = ", ".join(op.name for op in start)
        raise SelectionError(
            f"no variable of the selection is upstream of '{names}'; give an endpoint that the variables feed "
            "(a layer's output), or select without up_to"
        )
    return chosen


def is_optimizer_state_name(name: str) -> bool:
    """True when a variable or checkpoint entry name is training state rather than a model weight.

    Optimizer slots (`.../Momentum`, `.../Adam`, `.../Adam_1`, `.../RMSProp`, `.../Adagrad`, `.../Ftrl`,
    `.../ExponentialMovingAverage`, ..., with an optional `_N`), Adam's `beta1_power`/`beta2_power`,
    `global_step` and the `frozen_snapshot` variables of element-wise frozen entries.

    Args:
        name: An op or checkpoint entry name (no `:0`).

    Returns:
        Whether the name is optimizer state.
    """
    return bool(_SLOT.search(name) or _OPTIMIZER_VARIABLES.search(name))


def is_optimizer_state(variable: tf.Variable) -> bool:
    """True for optimizer slots, Adam's `beta1_power`/`beta2_power` and the global step.

    Names are judged by `is_optimizer_state_name`; the global step is also recognised by being in the
    graph's `GLOBAL_STEP` collection.
    """
    name = _name(variable)
    if is_optimizer_state_name(name):
        return True
    return any(_name(v) == name for v in variable.graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_STEP))


def without_optimizer_state(variables: Sequence[tf.Variable]) -> list[tf.Variable]:
    """The variables that are not optimizer state (see `is_optimizer_state`)."""
    return [v for v in variables if not is_optimizer_state(v)]


def select(
    variables: Sequence[tf.Variable],
    include_scopes: str | Iterable[str] | None = None,
    exclude_scopes: str | Iterable[str] | None = None,
    regex: bool = False,
    trainable_only: bool = False,
    up_to: Tensors | None = None,
    graph: tf.Graph | None = None,
    keep_optimizer_state: bool = False,
) -> list[tf.Variable]:
    """The variables to restore or train, chosen by scope, trainability and graph position.

    Applied in this order: `include_scopes`, `exclude_scopes`, `trainable_only`, `up_to`, then optimizer
    state is left out unless `keep_optimizer_state`. Scope matching follows the module's rule.

    Args:
        variables: Variables to choose from (e.g. `handle.variables`).
        include_scopes: Keep only variables matched by one of these (None: all).
        exclude_scopes: Leave out variables matched by one of these.
        regex: Treat scopes as regular expressions (`re.search` on the op name).
        trainable_only: Keep only trainable variables (drops batch-norm moving statistics).
        up_to: Keep only variables that these endpoint tensor(s) (or names) depend on.
        graph: Graph for `trainable_only` and for tensor names in `up_to` (default: the variables' graph).
        keep_optimizer_state: Keep optimizer slots, `beta1_power`/`beta2_power` and the global step.

    Returns:
        The chosen variables, in their original order.

    Raises:
        SelectionError: A scope or `up_to` matches nothing, or the selection is empty.

    Example:
        >>> select(handle.variables, exclude_scopes=["DigitsCNN/Logits"])
    """
    chosen = list(variables)
    if not chosen:
        raise SelectionError("there are no variables to select from; build or load the model first")
    if include_scopes is not None:
        chosen = include(chosen, include_scopes, regex)
    if exclude_scopes:
        chosen = exclude(chosen, exclude_scopes, regex)
    if trainable_only:
        chosen = _keep_trainable(chosen, graph)
    if up_to is not None and chosen:
        chosen = upstream_of(chosen, up_to, graph)
    if not keep_optimizer_state:
        chosen = without_optimizer_state(chosen)
    if not chosen:
        raise SelectionError(
            f"the selection is empty (include_scopes={_as_list(include_scopes)}, exclude_scopes="
            f"{_as_list(exclude_scopes)}, trainable_only={trainable_only}, "
            f"up_to={'set' if up_to is not None else None}); "
            "loosen the selectors, or pass keep_optimizer_state=True to select optimizer state"
        )
    return chosen


def rename_map(variables: Sequence[tf.Variable], scope_map: Mapping[str, str]) -> dict[str, tf.Variable]:
    """Checkpoint name -> variable, with checkpoint scopes renamed to graph scopes.

    `scope_map` maps a checkpoint scope to the graph scope its values go into:
    `{"resnet_v1_50": "encoder/resnet_v1_50"}` restores the checkpoint entry `resnet_v1_50/conv1/weights`
    into the variable `encoder/resnet_v1_50/conv1/weights`. Graph scopes match at `/` boundaries (the
    longest matching one wins); variables under no graph scope keep their own name. The result is the
    `var_list` dict of `tf.compat.v1.train.Saver` and is accepted by `plan_restore` and `restore`.

    Args:
        variables: The graph variables to restore.
        scope_map: `{checkpoint_scope: graph_scope}` pairs (a trailing `/` is ignored; `""` is the root).

    Returns:
        `{checkpoint_name: variable}`.

    Raises:
        SelectionError: A graph scope matches none of `variables`.
    """
    names = [_name(v) for v in variables]
    pairs = sorted(((_clean(c), _clean(g)) for c, g in scope_map.items()), key=lambda p: -len(p[1]))
    for _, graph_scope in pairs:
        if not any(scope_matches(n, graph_scope) for n in names):
            raise _no_match("graph scope", graph_scope, names, regex=False)
    result: dict[str, tf.Variable] = {}
    for v, name in zip(variables, names):
        target = name
        for ckpt_scope, graph_scope in pairs:
            if scope_matches(name, graph_scope):
                rest = name[len(graph_scope):].lstrip("/") if graph_scope else name
                target = "/".join(p for p in (ckpt_scope, rest) if p)
                break
        if target in result:
            raise SelectionError(
                f"variables '{_name(result[target])}' and '{name}' both map to checkpoint name '{target}'; "
                "make the scope map one-to-one"
            )
        result[target] = v
    return result
