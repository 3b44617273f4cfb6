"""`tf1tune repair`: queue input pipelines replaced by placeholders, devices stripped, bad input rejected."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import meta_graph_pb2

import tf1tune
from tf1tune import cli
from tf1tune.errors import GraphRepairError
from tf1tune.repair import replace_input
from tf1tune.repair.graph import read_proto

RNG = np.random.RandomState(7)
X = RNG.rand(6, 4).astype(np.float32)  # forward: any batch size (the placeholder's batch dimension is free)
Y = RNG.randint(0, 3, size=4).astype(np.int64)  # training: the gradients hold the graph's static batch size 4


@dataclass
class QueueModel:
    meta: str
    prefix: str


@pytest.fixture(scope="module")
def queue_model(tmp_path_factory: pytest.TempPathFactory) -> QueueModel:
    """A training graph fed by a FIFOQueue + `train.batch` (dequeue op `batch`), saved as .meta + checkpoint."""
    root = str(tmp_path_factory.mktemp("queue_model"))
    graph = tf.Graph()
    with graph.as_default():
        data = tf.constant(RNG.rand(16, 4).astype(np.float32)), tf.constant(RNG.randint(0, 3, 16).astype(np.int64))
        queue = tf.queue.FIFOQueue(32, [tf.float32, tf.int64], shapes=[[4], []], name="examples")
        enqueue = queue.enqueue_many(data)
        tf.compat.v1.train.add_queue_runner(tf.compat.v1.train.QueueRunner(queue, [enqueue]))
        image, label = queue.dequeue()
        images, labels = tf.compat.v1.train.batch([image, label], batch_size=4)  # dequeue op "batch"
        w = tf.compat.v1.get_variable("dense/w", initializer=RNG.rand(4, 3).astype(np.float32),
                                      use_resource=False)
        b = tf.compat.v1.get_variable("dense/b", initializer=RNG.rand(3).astype(np.float32),
                                      use_resource=False)
        logits = tf.identity(tf.matmul(images, w) + b, name="logits")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits), name="loss")
        step = tf.compat.v1.train.get_or_create_global_step()
        tf.compat.v1.train.MomentumOptimizer(0.1, 0.9).minimize(loss, global_step=step, name="train_op")
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = saver.save(sess, os.path.join(root, "model.ckpt"))
    return QueueModel(meta=prefix + ".meta", prefix=prefix)


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _reference(meta: str, prefix: str, feeds: dict[str, np.ndarray], fetch: str, train: str | None = None):
    """Run the original graph, feeding the pipeline's tensors directly (TF lets any tensor be fed)."""
    graph = tf.Graph()
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(meta, clear_devices=True)
        with tf.compat.v1.Session(graph=graph) as sess:
            saver.restore(sess, prefix)
            out = sess.run(fetch, feeds)
            if train is not None:
                sess.run(train, feeds)
                return out, sess.run("dense/w:0")
    return out, None


def _no_pipeline(graph: tf.Graph) -> None:
    assert not graph.get_collection(tf.compat.v1.GraphKeys.QUEUE_RUNNERS)
    assert not [op.type for op in graph.get_operations() if op.type.startswith("Queue") or "Queue" in op.type]


def test_replace_queue_batch_runs_forward_and_train_step(queue_model, tmp_path, capsys):
    fixed = str(tmp_path / "fixed.meta")
    before = _digest(queue_model.meta)
    code = cli.main(["repair", queue_model.meta, "--replace-input", "batch:0=images",
                     "--replace-input", "batch:1=labels", "--out", fixed])
    out = capsys.readouterr().out
    assert code == 0
    assert "placeholder images (float32 [?,4]" in out and "placeholder labels (int64 [?]" in out
    assert "queue runner" in out and f"wrote {fixed}" in out
    assert _digest(queue_model.meta) == before

    handle = tf1tune.load_meta(fixed, checkpoint=queue_model.prefix)
    _no_pipeline(handle.graph)
    with handle.session() as sess:
        logits = sess.run("logits:0", {"images:0": X})
        sess.run("train_op", {"images:0": X[:4], "labels:0": Y})
        w_after = sess.run("dense/w:0")
        assert sess.run(handle.graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_STEP)[0]) == 1
    ref_logits, _ = _reference(queue_model.meta, queue_model.prefix, {"batch:0": X[:4]}, "logits:0")
    _, ref_w = _reference(queue_model.meta, queue_model.prefix, {"batch:0": X[:4], "batch:1": Y}, "logits:0",
                          train="train_op")
    np.testing.assert_allclose(logits[:4], ref_logits, rtol=1e-6, atol=1e-6)
    reader = tf.train.load_checkpoint(queue_model.prefix)
    np.testing.assert_allclose(logits, X @ reader.get_tensor("dense/w") + reader.get_tensor("dense/b"), rtol=1e-5)
    np.testing.assert_allclose(w_after, ref_w, rtol=1e-6, atol=1e-6)
    assert not np.allclose(w_after, tf.train.load_checkpoint(queue_model.prefix).get_tensor("dense/w"))


def test_library_keeps_variables_saver_and_train_op(queue_model):
    meta = meta_graph_pb2.MetaGraphDef()
    read_proto(queue_model.meta, meta, "meta")
    lines = replace_input(meta, {"batch:0": "images", "batch:1": "labels"})
    names = {n.name: n.op for n in meta.graph_def.node}
    assert names["images"] == names["labels"] == "Placeholder"
    assert "dense/w" in names and "save/restore_all" in names and "train_op" in names
    assert not [n for n, op in names.items() if "Queue" in op]
    assert tf.compat.v1.GraphKeys.QUEUE_RUNNERS not in meta.collection_def or \
        not meta.collection_def[tf.compat.v1.GraphKeys.QUEUE_RUNNERS].bytes_list.value
    assert any(line.startswith("removed") for line in lines)


def test_replacing_only_some_outputs_names_the_rest(queue_model):
    meta = meta_graph_pb2.MetaGraphDef()
    read_proto(queue_model.meta, meta, "meta")
    with pytest.raises(GraphRepairError, match=r"still reads from it; replace batch:1 too"):
        replace_input(meta, "batch:0", name="images")


def test_non_pipeline_tensor_needs_force(queue_model):
    meta = meta_graph_pb2.MetaGraphDef()
    read_proto(queue_model.meta, meta, "meta")
    with pytest.raises(GraphRepairError, match=r"not by an input pipeline op.*--force"):
        replace_input(meta, "dense/w/read:0")


def test_pnet_queue_pipeline_replaced(legacy_dir, tmp_path, capsys):
    src = os.path.join(legacy_dir, "mtcnn-pnet-tf1.8", "PNet-18.meta")
    prefix = os.path.join(legacy_dir, "mtcnn-pnet-tf1.8", "PNet-18")
    before = _digest(src)
    fixed = str(tmp_path / "PNet-18.meta")
    args = ["repair", src, "--out", fixed] + [a for i, n in enumerate(["image", "cls", "bbox", "landmark"])
                                               for a in ("--replace-input", f"batch:{i}={n}_batch")]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "2 queue runner(s)" in out and "Merge/MergeSummary" in out
    assert _digest(src) == before

    handle = tf1tune.load_meta(fixed, checkpoint=prefix)
    _no_pipeline(handle.graph)
    assert not [op for op in handle.graph.get_operations() if "Reader" in op.type]
    images = np.random.RandomState(0).rand(256, 12, 12, 3).astype(np.float32)
    with handle.session() as sess:
        probs = sess.run("cls_prob:0", {"input_image:0": images})
        reshaped = sess.run("Reshape_1:0", {"cls_batch:0": np.arange(256, dtype=np.float32)})
    ref, _ = _reference(src, prefix, {"input_image:0": images}, "cls_prob:0")
    np.testing.assert_allclose(probs, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(reshaped, np.arange(256))


def test_strip_devices_on_frozen_pb(tiny, tmp_path, capsys):
    graph_def = graph_pb2.GraphDef()
    read_proto(tiny.frozen_binary, graph_def, "pb")
    for node in graph_def.node:
        node.device = "/job:worker/task:1/device:GPU:0"
    src = str(tmp_path / "pinned.pb")
    with open(src, "wb") as f:
        f.write(graph_def.SerializeToString())
    fixed = str(tmp_path / "fixed.pb")
    assert cli.main(["repair", src, "--strip-devices", "--out", fixed]) == 0
    assert "cleared device placements" in capsys.readouterr().out
    written = graph_pb2.GraphDef()
    assert read_proto(fixed, written, "pb") == "binary"
    assert len(written.node) == len(graph_def.node) and not [n.name for n in written.node if n.device]


@pytest.mark.parametrize("case", ["unknown", "exists", "same"])
def test_bad_input_exit_2_nothing_written(queue_model, tmp_path, capsys, case):
    out = str(tmp_path / "fixed.meta")
    tensor = "batch:0=images"
    if case == "unknown":
        tensor = "bacth:0=images"
    elif case == "exists":
        with open(out, "w") as f:
            f.write("keep")
    else:
        out = queue_model.meta
    before = _digest(queue_model.meta)
    code = cli.main(["repair", queue_model.meta, "--replace-input", tensor, "--replace-input", "batch:1", "--out", out])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    expected = {"unknown": r"no tensor named 'bacth:0' \(closest: batch:0", "exists": "pass --overwrite",
                "same": "is the source"}[case]
    assert re.search(expected, err), err
    assert _digest(queue_model.meta) == before
    if case == "exists":
        assert open(out).read() == "keep"
    elif case == "unknown":
        assert not os.path.exists(out)
    assert not [f for f in os.listdir(os.path.dirname(out)) if ".tmp-" in f]
