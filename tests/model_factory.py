"""One seeded generator that writes the same tiny model in every source format tf1tune loads.

The model: x [N, 4] -> dense(3, relu) "hidden" -> dense(2) "logits" -> softmax "probs", with weights
drawn from a fixed seed, so every format can be checked against `expected_outputs(x)` computed in numpy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import saver_pb2

SEED = 1234
INPUT_DIM, HIDDEN, CLASSES = 4, 3, 2


def weights() -> dict[str, np.ndarray]:
    """The model's weights, by variable name."""
    rng = np.random.default_rng(SEED)
    return {
        "hidden/kernel": rng.standard_normal((INPUT_DIM, HIDDEN)).astype(np.float32),
        "hidden/bias": rng.standard_normal(HIDDEN).astype(np.float32),
        "logits/kernel": rng.standard_normal((HIDDEN, CLASSES)).astype(np.float32),
        "logits/bias": rng.standard_normal(CLASSES).astype(np.float32),
    }


def sample_input(n: int = 5) -> np.ndarray:
    """A fixed input batch."""
    return np.random.default_rng(SEED + 1).standard_normal((n, INPUT_DIM)).astype(np.float32)


def expected_logits(x: np.ndarray) -> np.ndarray:
    """The model's logits computed in numpy."""
    w = weights()
    h = np.maximum(x @ w["hidden/kernel"] + w["hidden/bias"], 0)
    return h @ w["logits/kernel"] + w["logits/bias"]


@dataclass
class TinyModels:
    """Paths of the tiny model in every format."""

    root: str
    meta: str          # .meta of a V2 checkpoint
    ckpt_v2: str       # V2 prefix
    ckpt_v1: str       # V1 single-file checkpoint (with .meta)
    ckpt_v1_sharded: str  # directory of a V1 sharded checkpoint (with .meta)
    frozen_binary: str
    frozen_text: str   # text format although named .pb
    saved_model: str


def _build(graph: tf.Graph, with_training: bool = True, optimizer: str = "momentum") -> dict[str, tf.Tensor]:
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, INPUT_DIM], name="x")
        w = weights()
        tensors = {}
        net = x
        for scope, act in (("hidden", tf.nn.relu), ("logits", None)):
            with tf.compat.v1.variable_scope(scope):
                k = tf.compat.v1.get_variable("kernel", initializer=w[f"{scope}/kernel"])
                b = tf.compat.v1.get_variable("bias", initializer=w[f"{scope}/bias"])
            net = tf.nn.bias_add(tf.matmul(net, k), b, name=f"{scope}_out")
            if act:
                net = act(net)
        logits = tf.identity(net, name="logits_out_final")
        probs = tf.nn.softmax(logits, name="probs")
        tensors.update(x=x, logits=logits, probs=probs)
        if with_training:
            y = tf.compat.v1.placeholder(tf.int64, [None], name="y")
            loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(y, logits)
            step = tf.compat.v1.train.get_or_create_global_step()
            opt = (tf.compat.v1.train.MomentumOptimizer(0.1, 0.9) if optimizer == "momentum"
                   else tf.compat.v1.train.AdamOptimizer(0.01) if optimizer == "adam"
                   else tf.compat.v1.train.RMSPropOptimizer(0.01))
            tensors["train"] = opt.minimize(loss, global_step=step)
            tensors["y"] = y
    return tensors


def _save(path_prefix: str, version: int = saver_pb2.SaverDef.V2, sharded: bool = False) -> str:
    os.makedirs(os.path.dirname(path_prefix), exist_ok=True)
    graph = tf.Graph()
    _build(graph)
    with graph.as_default():
        saver = tf.compat.v1.train.Saver(write_version=version, sharded=sharded)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            return saver.save(sess, path_prefix)


def write_all(root: str) -> TinyModels:
    """Write the tiny model in every format under `root`."""
    os.makedirs(root, exist_ok=True)
    ckpt_v2 = _save(os.path.join(root, "v2", "model.ckpt"))
    ckpt_v1 = _save(os.path.join(root, "v1", "model.ckpt"), version=saver_pb2.SaverDef.V1)
    sharded_dir = os.path.join(root, "v1_sharded")
    _save(os.path.join(sharded_dir, "model.ckpt"), version=saver_pb2.SaverDef.V1, sharded=True)

    graph = tf.Graph()
    t = _build(graph, with_training=False)
    with graph.as_default(), tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), ["probs"])
        export_dir = os.path.join(root, "saved_model")
        builder = tf.compat.v1.saved_model.Builder(export_dir)
        signature = tf.compat.v1.saved_model.predict_signature_def({"x": t["x"]}, {"probs": t["probs"], "logits": t["logits"]})
        builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": signature})
        builder.save()
    frozen_binary = os.path.join(root, "frozen.pb")
    with open(frozen_binary, "wb") as f:
        f.write(frozen.SerializeToString())
    frozen_text = os.path.join(root, "frozen_text.pb")
    with open(frozen_text, "w") as f:
        f.write(text_format.MessageToString(frozen))
    return TinyModels(root=root, meta=ckpt_v2 + ".meta", ckpt_v2=ckpt_v2, ckpt_v1=ckpt_v1,
                      ckpt_v1_sharded=sharded_dir, frozen_binary=frozen_binary, frozen_text=frozen_text,
                      saved_model=export_dir)


def batch(step: int, n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The seeded training batch number `step`: inputs and labels."""
    rng = np.random.default_rng(SEED + 100 + step)
    x = rng.standard_normal((n, INPUT_DIM)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64)


def write_trained(root: str, optimizer: str = "momentum", steps: int = 3) -> tuple[str, dict[str, np.ndarray]]:
    """Train the tiny model `steps` steps with a TF1 `optimizer` (`momentum`, `adam`, `rmsprop`), save it under
    `root`, then take one more step on `batch(steps)`.

    Returns:
        The checkpoint prefix (saved before the extra step) and the weights after the extra step.
    """
    os.makedirs(root, exist_ok=True)
    graph = tf.Graph()
    t = _build(graph, optimizer=optimizer)
    with graph.as_default(), tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        for step in range(steps):
            x, y = batch(step)
            sess.run(t["train"], {t["x"]: x, t["y"]: y})
        prefix = tf.compat.v1.train.Saver().save(sess, os.path.join(root, "model.ckpt"), global_step=steps)
        x, y = batch(steps)
        sess.run(t["train"], {t["x"]: x, t["y"]: y})
        model = {v.op.name: v for v in tf.compat.v1.trainable_variables()}
        return prefix, sess.run(model)
