"""`TF1Layer`: a SavedModel written by `tf1tune export-tf2` as a Keras 3 layer that fine-tunes with any optimizer.

This file needs only TensorFlow 2 and Keras 3, never tf1tune: `tf1tune export-tf2` copies it into every export
directory (`DIR/tf1_layer.py`), so a process without tf1tune can use it:

    import sys; sys.path.insert(0, "exported/digits")
    from tf1_layer import TF1Layer
    features = TF1Layer("exported/digits")(keras.Input((8, 8, 1)))

Why not `keras.layers.TFSMLayer(DIR, trainable=True)`: it names its weights after the TF variables with the `:0`
kept, and every optimizer with slots (SGD with momentum, Adam, RMSprop) fails on them (`'..._weights:0_momentum'
is not a valid scope name`). `TF1Layer` wraps the same variables (no copy: the SavedModel's functions train them
directly) under valid Keras names, keeps each variable's `trainable` flag as the export set it, and saves with the
model (`model.save("m.keras")` stores the trained values; loading needs the export directory at the same path).

Batch norm and dropout: by default the TF1 model always runs in inference mode (moving statistics, no dropout),
the usual way to fine-tune on top of a pre-trained base, and its moving statistics never change. With
`update_batch_norm=True`, calls with `training=True` (`model.fit`) use the export's training endpoint: batch
statistics, dropout, and moving averages updated as the TF1 graph's `UPDATE_OPS` did.
"""

from __future__ import annotations

import json
import os
from typing import Any

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tf1tune")
class TF1Layer(keras.layers.Layer):
    """A `tf1tune export-tf2` SavedModel as a Keras 3 layer.

    Args:
        path: The export directory.
        update_batch_norm: Run the training endpoint when Keras calls the layer with `training=True`.
        **kwargs: Keras layer arguments (`name`, `trainable`: False freezes every variable of the export).
    """

    def __init__(self, path: str, update_batch_norm: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.export_dir = path
        self.update_batch_norm = update_batch_norm
        self._loaded = tf.saved_model.load(path)
        if update_batch_norm and not hasattr(self._loaded, "train"):
            raise ValueError(f"'{path}' has no training endpoint (its TF1 graph has no batch-norm/dropout switch); "
                             "use update_batch_norm=False")
        self._tf1_names = tuple(sorted(self._loaded.tf1_variables))  # fixed: `.keras` files store weights by position
        for name in self._tf1_names:
            variable = self._loaded.tf1_variables[name]
            self._track_variable(keras.Variable(initializer=variable, trainable=variable.trainable,
                                                dtype=variable.dtype, shape=variable.shape,
                                                name=name.replace("/", "_")))
        self.built = True

    def tf1_weights(self) -> dict[str, Any]:
        """The layer's Keras variables by their TF1 names (`DigitsCNN/Conv2d_1/weights`)."""
        by_name = {w.name: w for w in self.weights}
        return {name: by_name[name.replace("/", "_")] for name in self._tf1_names}

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        """The TF1 model's outputs: a tensor, or a dict by signature key when it has several."""
        if training and self.update_batch_norm:
            return self._loaded.train(inputs)
        return self._loaded.infer(inputs)

    def compute_output_spec(self, inputs: Any, training: bool | None = None) -> Any:
        specs = self._loaded.infer.concrete_functions[0].structured_outputs
        batch = inputs.shape[0] if hasattr(inputs, "shape") else None

        def spec(s: Any) -> keras.KerasTensor:
            return keras.KerasTensor((batch,) + tuple(s.shape[1:]), dtype=s.dtype.name)

        return tf.nest.map_structure(spec, specs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "path": self.export_dir, "update_batch_norm": self.update_batch_norm}


def restore_optimizer(optimizer: Any, layer: TF1Layer, directory: str) -> int:
    """Put the TF1 run's weights and optimizer state (`tf1tune convert --to tf2 CKPT --out DIR`) into `optimizer`.

    Build the optimizer first over the model's trainable variables (`optimizer.build(model.trainable_variables)`,
    new head included), with the config `DIR/optimizer.json` names (the momentum mapping depends on the learning
    rate). Slots are matched by TF1 variable name; a variable with no TF1 slots (a new head) starts from zero, and
    the slots of variables this model does not train (frozen here) are left out.

    Returns:
        The number of variables whose slots were restored.

    Raises:
        ValueError: The optimizer's class or config differs from the converted one, or it is not built.
    """
    with open(os.path.join(directory, "optimizer.json"), encoding="utf-8") as f:
        info = json.load(f)
    wanted = info["keras"]
    if wanted["class_name"] and type(optimizer).__name__ != wanted["class_name"]:
        raise ValueError(f"the TF1 state is for a Keras {wanted['class_name']}, not a {type(optimizer).__name__}")
    config = optimizer.get_config()
    for key, value in (wanted["config"] or {}).items():
        if not abs(float(config[key]) - float(value)) <= 1e-7 * max(1.0, abs(float(value))):
            raise ValueError(f"optimizer {key} is {config[key]}, the TF1 state needs {value} ({directory}/optimizer.json)")
    if not optimizer.built:
        raise ValueError("build the optimizer first: optimizer.build(model.trainable_variables)")
    reader = tf.train.load_checkpoint(os.path.join(directory, "ckpt-1"))
    slots = {v.name: v for v in optimizer.variables}
    restored = 0
    for name, weight in layer.tf1_weights().items():
        if name in info["weights"]:
            weight.assign(reader.get_tensor(info["weights"][name]))
        keys = info["slots"].get(name, {}) if weight.trainable else {}
        for slot, key in keys.items():
            slot_name = f"{weight.name}_{slot}"
            if slot_name not in slots:
                raise ValueError(f"the optimizer has no {slot} for '{name}': build it over model.trainable_variables")
            slots[slot_name].assign(reader.get_tensor(key))
        restored += bool(keys)
    optimizer.iterations.assign(info["iterations"])
    return restored
