"""`convert_to_tf2`: a TF1 checkpoint, weights and optimizer slots, as a TF2 checkpoint of a Keras 3 optimizer.

TF1 optimizers keep their state as checkpoint entries next to the weights; Keras 3 keeps it in the optimizer
object, so a TF2 run that restores only the weights starts its optimizer from zero and takes another step than the
TF1 run would have. The mapping, per optimizer (TF1 update on the left, Keras 3 on the right):

| TF1 (entries)                                   | Keras 3 state                  | why                                        |
|-------------------------------------------------|--------------------------------|--------------------------------------------|
| Momentum: `var/Momentum` = a                    | `SGD` momentum m = -lr * a     | TF1: a = mu*a + g, w -= lr*a; Keras: m = mu*m - lr*g, w += m |
| Adam: `var/Adam`, `var/Adam_1`                  | `Adam` momentum, velocity      | the same first and second moments          |
| Adam: `beta1_power` = beta1^(t+1)               | `iterations` = t               | Keras raises beta to iterations + 1        |
| `global_step`                                   | `iterations` (Momentum)        |                                            |

Keras' Adam epsilon defaults to 1e-7, TF1's to 1e-8: the TF1 value is used. The hyperparameters (learning rate,
momentum, betas, epsilon, Nesterov) are read from the `.meta` next to the checkpoint: the inputs of its
`ApplyMomentum` / `ApplyAdam` ops, evaluated on the restored checkpoint (a learning-rate schedule gives its value at
the saved step; the TF2 run gets that value as a constant). Flags override them or stand in without a `.meta`.
Any other slot (RMSProp, Adagrad, Ftrl, moving averages, a second optimizer's `_1` slots) has no place in those
Keras optimizers: that is an error naming it, before anything is written.

The output directory holds `ckpt-1` (a `tf.train.Checkpoint(variables={TF1 name: tf.Variable}, optimizer=...)`)
and `optimizer.json`: the Keras optimizer class and config, `iterations`, and for each TF1 variable the checkpoint
keys of its weight and slots (Keras 3 stores slots by position; the keys are checked by reading them back).
`restore_optimizer` of `tf1_layer.py` (in every `export-tf2` directory) puts them into a Keras optimizer by name.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from tf1tune._fs import check_output, require_folder, staged_dir
from tf1tune.checkpoints import checkpoint_files, checkpoint_values, resolve_checkpoint
from tf1tune.errors import SurgeryError, first_line
from tf1tune.selection import is_optimizer_state_name

_MOMENTUM_OPS = {"ApplyMomentum": (2, 4), "ResourceApplyMomentum": (2, 4)}  # op -> input index of lr, momentum
_ADAM_OPS = {"ApplyAdam": (5, 6, 7, 8), "ResourceApplyAdam": (5, 6, 7, 8)}  # lr, beta1, beta2, epsilon
CKPT_NAME = "ckpt-1"


@dataclass
class TF2Conversion:
    """What `convert_to_tf2` wrote.

    Attributes:
        path: The output directory.
        optimizer: `momentum` or `adam` (None: the checkpoint held no optimizer state).
        config: The Keras optimizer's constructor arguments.
        variables: Names of the model variables, in the order the optimizer was built.
        iterations: The optimizer's `iterations`.
        notes: Where each hyperparameter came from, and what else happened.
    """

    path: str
    optimizer: str | None
    config: dict[str, Any]
    variables: list[str]
    iterations: int
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """A few lines for a terminal."""
        kind = {"momentum": "SGD with momentum", "adam": "Adam", None: "no optimizer state"}[self.optimizer]
        settings = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.config.items())
        return self.notes + [f"wrote {self.path} ({len(self.variables)} variables with optimizer state; Keras 3 {kind}"
                             + (f" ({settings}), iterations {self.iterations}" if self.optimizer else "") + ")"]


def _slot_kind(name: str, weights: set[str]) -> tuple[str, str] | None:
    """`(variable, slot)` for `var/Momentum`, `var/Adam`, `var/Adam_1` of a weight in `weights`, else None."""
    var, _, slot = name.rpartition("/")
    if var in weights and slot in ("Momentum", "Adam", "Adam_1"):
        return var, slot
    return None


def _graph_hyperparameters(prefix: str) -> tuple[dict[str, Any], str | None]:
    """Hyperparameters of the `.meta`'s optimizer ops evaluated on the restored checkpoint, and the reason when
    there are none (no `.meta`, several optimizers, inputs that need feeds)."""
    from tf1tune.loaders import find_meta, load_meta

    meta = find_meta(prefix)
    if meta is None:
        return {}, "no .meta next to the checkpoint"
    handle = load_meta(meta, checkpoint=prefix)
    per_op: list[dict[str, tf.Tensor]] = []
    nesterov = False
    for op in handle.graph.get_operations():
        if op.type in _MOMENTUM_OPS:
            lr, mu = _MOMENTUM_OPS[op.type]
            per_op.append({"learning_rate": op.inputs[lr], "momentum": op.inputs[mu]})
            nesterov = nesterov or bool(op.get_attr("use_nesterov"))
        elif op.type in _ADAM_OPS:
            lr, b1, b2, eps = _ADAM_OPS[op.type]
            per_op.append({"learning_rate": op.inputs[lr], "beta_1": op.inputs[b1], "beta_2": op.inputs[b2],
                           "epsilon": op.inputs[eps]})
    if not per_op:
        return {}, f"'{meta}' has no ApplyMomentum/ApplyAdam op"
    found: dict[str, set[float]] = {}
    try:
        with handle.session() as sess:
            for tensors in per_op:
                for key, t in tensors.items():
                    value = tf.get_static_value(t) if t.op.type == "Const" else None  # Consts may carry control deps
                    found.setdefault(key, set()).add(float(sess.run(t) if value is None else value))
    except (tf.errors.OpError, ValueError) as e:
        return {}, f"the optimizer's inputs in '{meta}' cannot be evaluated ({first_line(e)})"
    several = {k: v for k, v in found.items() if len(v) > 1}
    if several:
        key, seen = next(iter(several.items()))
        raise SurgeryError(f"the TF1 optimizer ops use {len(seen)} different values of {key} "
                           f"({', '.join(f'{x:g}' for x in sorted(seen))}: per-variable learning rates?); a Keras "
                           "optimizer has one: convert each group's checkpoint entries separately")
    result: dict[str, Any] = {k: next(iter(v)) for k, v in found.items()}
    if nesterov:
        result["nesterov"] = True
    return result, None


def convert_to_tf2(
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    hyperparameters: Mapping[str, float | None] | None = None,
    overwrite: bool = False,
) -> TF2Conversion:
    """Write the weights and the optimizer state of a TF1 checkpoint as a TF2 checkpoint of a Keras 3 optimizer.

    Args:
        checkpoint: The TF1 checkpoint (prefix, file or directory), with `var/Momentum` or `var/Adam`+`var/Adam_1`
            slots (or none: then only the weights are written).
        out_dir: The directory to create (see the module docstring for what it holds).
        hyperparameters: `learning_rate`, `momentum`, `beta_1`, `beta_2`, `epsilon` overriding (or standing in for)
            what the `.meta` says; None values are ignored.
        overwrite: Replace an existing `out_dir` that holds such a conversion.

    Returns:
        What was written.

    Raises:
        SurgeryError: A slot that neither Keras SGD nor Adam has a place for, a hyperparameter that is neither in
            the graph nor given, or an output directory that exists. Nothing is written then.
    """
    import keras

    prefix = resolve_checkpoint(checkpoint)
    values = checkpoint_values(prefix)
    state = {n for n in values if is_optimizer_state_name(n)}
    weights = sorted(n for n in values if n not in state)
    slots: dict[str, dict[str, str]] = {}
    extra_state = {"global_step", "beta1_power", "beta2_power"}
    unmapped = []
    for name in sorted(state):
        found = _slot_kind(name, set(weights))
        if found:
            slots.setdefault(found[1], {})[found[0]] = name
        elif name not in extra_state:
            unmapped.append(name)
    if unmapped:
        raise SurgeryError(f"optimizer state {', '.join(unmapped[:4])}{', ...' if len(unmapped) > 4 else ''} has no "
                           "place in Keras SGD-with-momentum or Adam state (only var/Momentum, var/Adam, var/Adam_1, "
                           "beta1_power, beta2_power and global_step map); drop it first with "
                           "tf1tune rename --drop-optimizer-state to convert the weights only")
    kind = "adam" if "Adam" in slots or "Adam_1" in slots else ("momentum" if "Momentum" in slots else None)
    if kind == "adam" and "Momentum" in slots:
        raise SurgeryError("the checkpoint holds both Momentum and Adam slots (two optimizers); drop one with "
                           "tf1tune rename --drop SCOPE first")
    target = _check_out(out_dir, prefix, overwrite)
    notes: list[str] = []
    config: dict[str, Any] = {}
    iterations = int(values.get("global_step", 0))
    if kind is not None:
        config = _config(kind, prefix, hyperparameters or {}, notes)
        if kind == "adam":
            iterations = _adam_iterations(values, config, notes)
    trained = sorted(slots.get("Momentum", slots.get("Adam", {})))
    order = trained if kind else weights
    variables = {n: tf.Variable(values[n], name=n) for n in weights}
    objects: dict[str, Any] = {"variables": variables}
    slot_keys: dict[str, dict[str, str]] = {}
    if kind is not None:
        keras_vars = [keras.Variable(initializer=variables[n], name=n.replace("/", "_")) for n in order]
        optimizer = (keras.optimizers.SGD(**config) if kind == "momentum" else keras.optimizers.Adam(**config))
        optimizer.build(keras_vars)
        index = {v.name: i for i, v in enumerate(optimizer.variables)}
        for n in order:
            base = n.replace("/", "_")
            mapped = ({"momentum": -config["learning_rate"] * values[slots["Momentum"][n]]} if kind == "momentum" else
                      {"momentum": values[slots["Adam"][n]], "velocity": values[slots["Adam_1"][n]]})
            for slot, value in mapped.items():
                i = index[f"{base}_{slot}"]
                optimizer.variables[i].assign(value)
                slot_keys.setdefault(n, {})[slot] = f"optimizer/_variables/{i}/.ATTRIBUTES/VARIABLE_VALUE"
        optimizer.iterations.assign(iterations)
        objects["optimizer"] = optimizer
        untrained = [n for n in weights if n not in trained]
        if untrained:
            notes.append(f"{len(untrained)} variable(s) without slots (not trained by the TF1 optimizer) are written "
                         "as weights only: " + ", ".join(untrained[:4]) + (", ..." if len(untrained) > 4 else ""))
    info = {"keras": {"class_name": {"momentum": "SGD", "adam": "Adam", None: None}[kind], "config": config},
            "iterations": iterations, "source": prefix,
            "weights": {n: f"variables/{_escape(n)}/.ATTRIBUTES/VARIABLE_VALUE" for n in weights}, "slots": slot_keys}
    _write(target, objects, info)
    return TF2Conversion(path=target, optimizer=kind, config=config, variables=order, iterations=iterations,
                         notes=notes)


def _config(kind: str, prefix: str, given: Mapping[str, float | None], notes: list[str]) -> dict[str, Any]:
    graph, why_not = _graph_hyperparameters(prefix)
    needed = ("learning_rate", "momentum") if kind == "momentum" else ("learning_rate", "beta_1", "beta_2", "epsilon")
    config: dict[str, Any] = {}
    for key in needed:
        if given.get(key) is not None:
            config[key] = float(given[key])  # type: ignore[arg-type]
            how = "given"
        elif key in graph:
            config[key] = graph[key]
            how = "from the graph, at the saved step"
        else:
            flag = "--" + key.replace("_", "-")
            raise SurgeryError(f"the {key.replace('_', ' ')} of the TF1 optimizer is needed to map its state and is "
                               f"not known ({why_not or 'not in the graph'}); give it with {flag}")
        notes.append(f"{key} {config[key]:g} ({how})")
    if kind == "momentum" and graph.get("nesterov"):
        config["nesterov"] = True
        notes.append("nesterov True (from the graph)")
    return config


def _adam_iterations(values: Mapping[str, np.ndarray], config: Mapping[str, Any], notes: list[str]) -> int:
    """t from `beta1_power` = beta1^(t+1), checked against `beta2_power` and `global_step` when present."""
    if "beta1_power" not in values:
        raise SurgeryError("Adam slots without beta1_power: the step count is unknown; the checkpoint is incomplete")
    steps = math.log(float(values["beta1_power"])) / math.log(config["beta_1"]) - 1
    t = round(steps)
    if abs(steps - t) > 1e-3 * max(1, t):
        raise SurgeryError(f"beta1_power {float(values['beta1_power']):g} is not a power of beta_1 "
                           f"{config['beta_1']:g}; give the run's beta_1 with --beta-1")
    if "beta2_power" in values:
        expected = config["beta_2"] ** (t + 1)
        if abs(float(values["beta2_power"]) - expected) > 1e-4 * expected:
            raise SurgeryError(f"beta2_power {float(values['beta2_power']):g} does not fit beta_2 {config['beta_2']:g} "
                               f"at step {t}; give the run's beta_2 with --beta-2")
    if "global_step" in values and int(values["global_step"]) != t:
        notes.append(f"global_step {int(values['global_step'])} differs from Adam's step count {t} (from "
                     "beta1_power); iterations follows Adam's")
    return t


def _check_out(out_dir: str | os.PathLike[str], prefix: str, overwrite: bool) -> str:
    """The output directory may not hold the source; an existing one is replaced only with `overwrite`, and only
    when it holds an earlier conversion."""
    sources = checkpoint_files(prefix)
    target = check_output(out_dir, [os.path.dirname(os.path.abspath(f)) for f in sources], overwrite,
                          is_source="--out '{path}' holds the source checkpoint ({source}); write elsewhere",
                          exists="'{path}' exists; give a new directory or pass --overwrite", error=SurgeryError)
    if os.path.exists(target) and not os.path.isfile(os.path.join(target, "optimizer.json")):
        raise SurgeryError(f"--overwrite refuses to replace '{os.fspath(out_dir)}': it holds no earlier conversion "
                           "(no optimizer.json); give a new directory")
    return require_folder(target, SurgeryError)


def _write(target: str, objects: Mapping[str, Any], info: Mapping[str, Any]) -> None:
    """Checkpoint and `optimizer.json` into a temp directory, read back, then moved into place."""
    with staged_dir(target) as tmp_root:
        staged = os.path.join(tmp_root, "out")
        os.makedirs(staged)
        path = tf.train.Checkpoint(**objects).write(os.path.join(staged, CKPT_NAME))
        reader = tf.train.load_checkpoint(path)
        for name, variable in objects["variables"].items():
            if not np.array_equal(reader.get_tensor(info["weights"][name]), variable.numpy()):
                raise SurgeryError(f"internal: '{name}' did not read back as written; nothing was written")
        if "optimizer" in objects:
            optimizer = objects["optimizer"]
            written = {v.name: v.numpy() for v in optimizer.variables}
            for name, keys in info["slots"].items():
                for slot, key in keys.items():
                    if not np.array_equal(reader.get_tensor(key), written[f"{name.replace('/', '_')}_{slot}"]):
                        raise SurgeryError(f"internal: the {slot} of '{name}' did not read back; nothing was written")
        with open(os.path.join(staged, "optimizer.json"), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=1)
        if os.path.exists(target):
            shutil.rmtree(target)
        os.replace(staged, target)


def _escape(name: str) -> str:
    """A trackable dict key as it appears in checkpoint keys (`.` doubled, `/` as `.S`)."""
    return name.replace(".", "..").replace("/", ".S")
