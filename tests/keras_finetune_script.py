"""Fine-tune a `tf1tune export-tf2` SavedModel with Keras 3 in a fresh process that never imports tf1tune.

    python tests/keras_finetune_script.py EXPORT_DIR DATA.npz OPTIMIZER RESULT.json

DATA.npz holds `x` (images), `y` (labels of the new task), `expected` (the TF1 session's outputs on `x`) and,
when the export has a training switch, `expected_training` and `moving_after` / `moving_names` (outputs in training
mode, and the moving statistics after one TF1 update step, concatenated in `moving_names` order). RESULT.json gets the measured figures; the test asserts.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np


def main(export_dir: str, data_path: str, optimizer: str, result_path: str) -> None:
    import keras
    import tensorflow as tf

    sys.path.insert(0, export_dir)
    from tf1_layer import TF1Layer

    data = np.load(data_path)
    x, y = data["x"], data["y"]
    result: dict = {"keras": keras.__version__, "tf1tune_imported": any(m.startswith("tf1tune") for m in sys.modules),
                    "legacy_keras_env": os.environ.get("TF_USE_LEGACY_KERAS")}

    base = TF1Layer(export_dir, name="tf1")
    result["step0_max_abs"] = float(np.max(np.abs(np.asarray(base(x)) - data["expected"])))
    if "expected_training" in data:  # the training endpoint: batch statistics, moving averages updated once
        switched = TF1Layer(export_dir, update_batch_norm=True, name="tf1_train")
        out = np.asarray(switched(x, training=True))
        result["training_max_abs"] = float(np.max(np.abs(out - data["expected_training"])))
        moved = {w.name: w.numpy() for w in switched.weights}
        after = np.concatenate([moved[str(n).replace("/", "_")].ravel() for n in data["moving_names"]])
        result["moving_max_abs"] = float(np.max(np.abs(after - data["moving_after"])))

    inputs = keras.Input(x.shape[1:])
    features = keras.layers.Flatten()(base(inputs))
    outputs = keras.layers.Dense(int(y.max()) + 1, name="new_head")(features)
    model = keras.Model(inputs, outputs)
    opt = {"adam": keras.optimizers.Adam(1e-3), "momentum": keras.optimizers.SGD(1e-3, momentum=0.9),
           "rmsprop": keras.optimizers.RMSprop(1e-3)}[optimizer]
    model.compile(opt, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = {w.path: w.numpy().copy() for w in model.weights}
    history = model.fit(x, y, batch_size=8, epochs=int(np.ceil(30 * 8 / len(x))), verbose=0, shuffle=False)
    result["steps"] = int(opt.iterations.numpy())
    result["loss"] = [float(history.history["loss"][0]), float(history.history["loss"][-1])]
    result["frozen_identical"] = {w.path: bool(np.array_equal(before[w.path], w.numpy()))
                                  for w in model.non_trainable_weights}
    result["trained_moved"] = {w.path: float(np.max(np.abs(before[w.path] - w.numpy())))
                               for w in model.trainable_weights}

    tf.train.Checkpoint(model=model).write(os.path.join(os.path.dirname(result_path), "tf2-run", "ckpt"))
    path = os.path.join(os.path.dirname(result_path), "model.keras")
    model.save(path)
    again = keras.models.load_model(path)
    result["reload_max_abs"] = float(np.max(np.abs(again.predict(x, verbose=0) - model.predict(x, verbose=0))))
    result["tf_version"] = tf.__version__
    with open(result_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:5])
