"""The saved object of `export_tf2` and its check: what the TF2 SavedModel holds and how it is verified.

`TF1Module` is the `tf.Module` that `tf.saved_model.save` writes: the TF1 variables by TF1 name (`tf1_variables`),
`infer(inputs)` and `train(inputs)` (the pruned inference and training functions of the TF1 graph, with the boolean
switches fed as constants), `__call__(inputs, training=False)` traced for both modes, and `serve` for the
`serving_default` signature (outputs by signature key). `save_checked` saves it into a staged directory, loads it
back in eager TF2, compares every variable bit for bit and the outputs of both modes with the TF1 session's, and
only then moves it into place.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from tf1tune._fs import staged_dir
from tf1tune.errors import ExportError, first_line
from tf1tune.export.saved_model import signature_keys
from tf1tune.export.verify import Verification, compare

LAYER_FILE = "tf1_layer.py"


@dataclass
class TF2Export:
    """What `export_tf2` wrote and how well it matches the TF1 session.

    Attributes:
        path: The SavedModel directory.
        inputs: TF1 input tensor names (signature keys from `signature_keys`).
        outputs: TF1 output tensor names.
        switches: Boolean placeholders that the `training` argument sets (`is_training:0`).
        trainable: Names of the variables exported as trainable.
        frozen: Names of the variables exported as not trainable (frozen layers, batch-norm statistics).
        inference: The inference endpoint against the TF1 session.
        training: The training endpoint against the TF1 session in training mode (None: no switch, or random).
        notes: What could not be done as usual.
    """

    path: str
    inputs: list[str]
    outputs: list[str]
    switches: list[str]
    trainable: list[str]
    frozen: list[str]
    inference: Verification
    training: Verification | None = None
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """A few lines for a terminal."""
        lines = ["inference (training=False) vs TF1 session " + self.inference.line()]
        if self.training is not None:
            lines.append("training (training=True) vs TF1 session " + self.training.line())
        lines += [f"note: {n}" for n in self.notes]
        keys_in, keys_out = signature_keys(self.inputs), signature_keys(self.outputs)
        switch = f"; training sets {', '.join(self.switches)}" if self.switches else "; no training switch"
        lines.append(f"wrote {self.path} ({len(self.trainable)} trainable, {len(self.frozen)} frozen variables; "
                     f"inputs {', '.join(keys_in.values())}; outputs {', '.join(keys_out.values())}{switch}; "
                     f"Keras 3 layer: {os.path.join(self.path, LAYER_FILE)})")
        return lines


class TF1Module(tf.Module):
    """The saved object: the TF1 variables by name and the two pruned functions of the TF1 graph."""

    def __init__(self, variables: Mapping[str, tf.Variable], infer: Any, train: Any, in_keys: list[str],
                 out_keys: list[str], specs: list[tf.TensorSpec]) -> None:
        super().__init__(name="tf1_model")
        self.tf1_variables = dict(variables)
        self._infer_fn, self._train_fn = infer, train
        self._in_keys, self._out_keys = in_keys, out_keys
        arg = specs[0] if len(specs) == 1 else dict(zip(in_keys, specs))
        self.infer = tf.function(lambda inputs: self._run(inputs, False), input_signature=[arg])
        if train is not None:
            self.train = tf.function(lambda inputs: self._run(inputs, True), input_signature=[arg])
        self.serve = tf.function(lambda inputs: self._named(self._run(inputs, False)), input_signature=[arg])
        self.__call__ = tf.function(self._call)
        self.__call__.get_concrete_function(arg, training=False)
        if train is not None:
            self.__call__.get_concrete_function(arg, training=True)

    def _named(self, outputs: Any) -> dict[str, tf.Tensor]:
        return outputs if isinstance(outputs, dict) else {self._out_keys[0]: outputs}

    def _call(self, inputs: Any, training: bool = False) -> Any:
        return self._run(inputs, bool(training) and self._train_fn is not None)

    def _run(self, inputs: Any, training: bool) -> Any:
        flat = [inputs] if not isinstance(inputs, dict) else [inputs[k] for k in self._in_keys]
        fn = self._train_fn if training else self._infer_fn
        results = fn(*flat)
        outputs = results[0] if training else results
        if len(self._out_keys) == 1:
            return outputs[0]
        return dict(zip(self._out_keys, outputs))


def with_switches(fn: Any, count: int, value: bool) -> Any:
    """`fn(*inputs)` with `count` boolean switches appended as constants."""
    if not count:
        return fn

    def call(*inputs: tf.Tensor) -> Any:
        return fn(*inputs, *([tf.constant(value)] * count))

    call.fn = fn  # type: ignore[attr-defined]  # keeps the pruned function (and its variables) reachable
    return call


def save_checked(module: TF1Module, target: str, in_names: list[str], out_names: list[str], switches: list[str],
                  values: Mapping[str, np.ndarray], data: Mapping[str, np.ndarray], expected: list[Any],
                  rtol: float, atol: float) -> TF2Export:
    """Save into a temp directory, load it back, compare with the TF1 session, then move it into place."""
    with staged_dir(target) as tmp_root:
        staged = os.path.join(tmp_root, "saved_model")
        try:
            tf.saved_model.save(module, staged, signatures={"serving_default": module.serve.get_concrete_function()})
        except (ValueError, TypeError, AssertionError, tf.errors.OpError) as e:
            raise ExportError(f"TensorFlow could not save the TF2 SavedModel: {first_line(e)}") from e
        shutil.copyfile(os.path.join(os.path.dirname(__file__), LAYER_FILE), os.path.join(staged, LAYER_FILE))
        loaded = tf.saved_model.load(staged)
        changed = [n for n, v in values.items() if not np.array_equal(loaded.tf1_variables[n].numpy(), v)]
        if changed:
            raise ExportError(f"the SavedModel's variables differ from the TF1 session's: {', '.join(changed[:5])}")
        arg = data[in_names[0]] if len(in_names) == 1 else {k: data[n] for n, k in signature_keys(in_names).items()}
        checks: list[Verification | None] = []
        notes = []
        for training, want in zip((False, True), expected):
            if want is None:
                checks.append(None)
                continue
            random = [n for n, w in zip(out_names, want) if w is None]
            if random:
                notes.append(f"training mode not compared for {', '.join(random)}: the TF1 graph gives other values "
                             "on each run (dropout)")
            got = module_outputs(loaded(arg, training=training), out_names)
            pairs = [(n, w, g) for n, w, g in zip(out_names, want, got) if w is not None]
            if not pairs:
                checks.append(None)
                continue
            max_abs, max_rel, failures = compare([p[1] for p in pairs], [p[2] for p in pairs], [p[0] for p in pairs],
                                                 rtol, atol)
            if failures:
                mode = "training" if training else "inference"
                raise ExportError(f"the TF2 SavedModel does not reproduce the TF1 session in {mode} mode: "
                                  + "; ".join(failures) + "; nothing was written")
            checks.append(Verification(max_abs, max_rel, len(next(iter(data.values()))), rtol, atol))
        if os.path.isdir(target):
            os.rmdir(target)
        os.replace(staged, target)
    if checks[0] is None:
        raise ExportError("internal: the inference endpoint was not checked")
    return TF2Export(path=target, inputs=in_names, outputs=out_names, switches=switches, trainable=[], frozen=[],
                     inference=checks[0], training=checks[1], notes=notes)


def module_outputs(result: Any, out_names: Sequence[str]) -> list[np.ndarray]:
    """The outputs of a call of the exported module (a dict by signature key when several) in `out_names` order."""
    if len(out_names) == 1:
        return [np.asarray(result)]
    return [np.asarray(result[k]) for k in signature_keys(out_names).values()]
