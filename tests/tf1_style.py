"""A small CNN written the way TF 1.x training scripts wrote it, for the defects users hit with such files.

TF1 control flow (`tf.cond` as Switch/Merge), reference variables, batch norm and dropout switched by a plain
`tf.compat.v1.placeholder(tf.bool)` named `is_training` (no default: it must be fed), an Adam train op that runs
the batch-norm updates, and every variable set to seeded random values (positive moving variances) so that
training-mode and inference-mode batch norm give different outputs. Written as:

- `meta` + `checkpoint`: the training graph and its V2 checkpoint;
- `frozen`: the graph frozen with `is_training` still a placeholder (batch norm under the conds);
- `frozen_inference`: the net rebuilt with `is_training=False` and frozen, as slim export scripts did (fused
  batch norm ops whose side outputs nothing consumes).

input [N, 16, 16, 3] -> conv1 (3x3, 8, batch norm) -> conv2 (3x3, 8, batch norm) -> mean over H, W ("pool")
-> dropout -> fc (dense 3) -> softmax "probs".
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

SEED = 77
SIZE, CHANNELS, CLASSES = 16, 3, 3
CONV_SCOPES = ("conv1", "conv2")


@dataclass
class Tf1Cnn:
    """Paths of the TF1-style CNN."""

    meta: str
    checkpoint: str
    frozen: str
    frozen_inference: str


def sample_data(n: int = 24, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Images in [0, 255] (what tf1tune feeds) and labels, seeded."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (n, SIZE, SIZE, CHANNELS)).astype(np.float32)
    return images, rng.integers(0, CLASSES, n).astype(np.int64)


def _net(images: tf.Tensor, is_training: tf.Tensor | bool) -> tuple[tf.Tensor, tf.Tensor]:
    import tf_slim as slim

    with slim.arg_scope([slim.conv2d], normalizer_fn=slim.batch_norm,
                        normalizer_params={"is_training": is_training, "decay": 0.9}):
        net = slim.conv2d(images, 8, 3, scope="conv1")
        net = slim.conv2d(net, 8, 3, scope="conv2")
    net = tf.reduce_mean(net, [1, 2], name="pool")
    net = slim.dropout(net, 0.5, is_training=is_training, scope="dropout")
    logits = slim.fully_connected(net, CLASSES, activation_fn=None, scope="fc")
    return logits, tf.nn.softmax(logits, name="probs")


def _random_values(sess: tf.compat.v1.Session, graph: tf.Graph) -> None:
    rng = np.random.default_rng(SEED)
    for v in graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES):
        shape = v.shape.as_list()
        if "moving_variance" in v.op.name:
            value = rng.uniform(0.5, 2.0, shape)
        elif "moving_mean" in v.op.name:
            value = rng.normal(0.0, 0.5, shape)
        elif v.dtype.base_dtype == tf.float32 and shape:
            value = rng.normal(0.0, 0.5, shape)
        else:
            continue
        v.load(value.astype(np.float32), sess)


def _freeze(sess: tf.compat.v1.Session, graph: tf.Graph, path: str) -> str:
    frozen = tf.compat.v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), ["probs"])
    with open(path, "wb") as f:
        f.write(frozen.SerializeToString())
    return path


def write_tf1_cnn(root: str) -> Tf1Cnn:
    """Write the CNN's training graph, checkpoint and two frozen graphs under `root`."""
    os.makedirs(root, exist_ok=True)
    prefix = os.path.join(root, "model.ckpt")
    v2_was_on = tf.compat.v1.control_flow_v2_enabled()
    tf.compat.v1.disable_control_flow_v2()
    try:
        graph = tf.Graph()
        with graph.as_default(), tf.compat.v1.variable_scope("", use_resource=False):
            tf.compat.v1.set_random_seed(SEED)
            images = tf.compat.v1.placeholder(tf.float32, [None, SIZE, SIZE, CHANNELS], name="input")
            labels = tf.compat.v1.placeholder(tf.int64, [None], name="labels")
            is_training = tf.compat.v1.placeholder(tf.bool, [], name="is_training")
            logits, _ = _net(images, is_training)
            loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(labels, logits)
            with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
                tf.compat.v1.train.AdamOptimizer(0.01).minimize(loss, name="train_op")
            saver = tf.compat.v1.train.Saver()
            with tf.compat.v1.Session(graph=graph) as sess:
                sess.run(tf.compat.v1.global_variables_initializer())
                _random_values(sess, graph)
                saver.save(sess, prefix)
                frozen = _freeze(sess, graph, os.path.join(root, "frozen.pb"))
        inference = tf.Graph()
        with inference.as_default(), tf.compat.v1.variable_scope("", use_resource=False):
            _net(tf.compat.v1.placeholder(tf.float32, [None, SIZE, SIZE, CHANNELS], name="input"), False)
            with tf.compat.v1.Session(graph=inference) as sess:
                tf.compat.v1.train.Saver().restore(sess, prefix)
                frozen_inference = _freeze(sess, inference, os.path.join(root, "frozen_inference.pb"))
    finally:
        if v2_was_on:
            tf.compat.v1.enable_control_flow_v2()
    return Tf1Cnn(meta=prefix + ".meta", checkpoint=prefix, frozen=frozen, frozen_inference=frozen_inference)
