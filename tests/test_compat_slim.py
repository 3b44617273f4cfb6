"""Old slim code runs after `import tf1tune`: the fifteen typical calls, slim's training and evaluation loops end to
end, and `assign_from_checkpoint` of a partitioned variable, each checking values."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow.compat.v1 as tf
import tf_slim as slim

import tf1tune  # noqa: F401  (applies the compatibility layer)
from tests import slim_calls


@pytest.mark.parametrize("name", list(slim_calls.CALLS))
def test_typical_slim_call(name):
    slim_calls.CALLS[name]()


def test_there_are_fifteen_calls():
    assert len(slim_calls.CALLS) == 15


def _toy_problem(seed=0, n=64):
    rng = np.random.RandomState(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int32)
    return x, y


def _toy_net(x, is_training):
    with slim.arg_scope([slim.fully_connected], weights_initializer=tf.glorot_uniform_initializer(seed=1)):
        net = slim.fully_connected(x, 16, normalizer_fn=slim.batch_norm,
                                   normalizer_params={"is_training": is_training, "updates_collections": None})
        return slim.fully_connected(net, 2, activation_fn=None, scope="logits")


def test_slim_learning_train_with_in_place_batch_norm_and_gradient_clipping(tmp_path):
    x, y = _toy_problem()
    with tf.Graph().as_default():
        logits = _toy_net(tf.constant(x), is_training=True)
        tf.losses.sparse_softmax_cross_entropy(tf.constant(y), logits)
        loss = tf.losses.get_total_loss()
        train_op = slim.learning.create_train_op(loss, tf.train.GradientDescentOptimizer(0.5), clip_gradient_norm=1.0)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            initial_loss = sess.run(loss)
        final_loss = slim.learning.train(train_op, str(tmp_path), number_of_steps=40, save_summaries_secs=10_000,
                                         save_interval_secs=10_000, log_every_n_steps=1000)
    assert final_loss < 0.5 * initial_loss, (initial_loss, final_loss)
    reader = tf.train.NewCheckpointReader(tf.train.latest_checkpoint(str(tmp_path)))
    assert reader.get_tensor("global_step") == 40
    moving_mean = reader.get_tensor("fully_connected/BatchNorm/moving_mean")
    assert np.abs(moving_mean).max() > 0     # updated in place (updates_collections=None), no UPDATE_OPS needed


def test_slim_evaluation_over_a_tfrecord_through_dataset_data_provider(tmp_path):
    rng = np.random.RandomState(5)
    levels = rng.randint(0, 256, 12)
    labels = rng.randint(0, 2, 12)
    record = str(tmp_path / "eval.tfrecord")
    with tf.python_io.TFRecordWriter(record) as writer:
        for level, label in zip(levels, labels):
            writer.write(slim_calls.png_example(np.full((4, 4, 3), level, np.uint8), int(label)))
    threshold = 100.0                        # the checkpoint's value; the graph starts from 0 (all predicted 1)
    expected = float(np.mean((levels > threshold).astype(int) == labels))
    assert expected != float(np.mean(labels == 1))
    ckpt = str(tmp_path / "model.ckpt")
    with tf.Graph().as_default():
        tf.Variable(threshold, name="threshold")
        tf.train.get_or_create_global_step()
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver().save(sess, ckpt)

    with tf.Graph().as_default():
        dataset = slim.dataset.Dataset(data_sources=record, reader=tf.TFRecordReader,
                                       decoder=slim_calls.image_decoder(), num_samples=12,
                                       items_to_descriptions={"image": "4x4 RGB", "label": "0 or 1"})
        provider = slim.dataset_data_provider.DatasetDataProvider(dataset, num_readers=1, shuffle=False)
        image, label = provider.get(["image", "label"])
        images, batch_labels = tf.train.batch([image, label], batch_size=4)
        var = tf.Variable(0.0, name="threshold")
        predictions = tf.cast(tf.reduce_mean(tf.cast(images, tf.float32), [1, 2, 3]) > var, tf.int64)
        values, updates = slim.metrics.aggregate_metric_map(
            {"accuracy": slim.metrics.streaming_accuracy(predictions, batch_labels)})
        accuracy = slim.evaluation.evaluate_once("", ckpt, str(tmp_path / "eval"), num_evals=3,
                                                 eval_op=list(updates.values()), final_op=values["accuracy"])
    assert accuracy == pytest.approx(expected)


def test_assign_from_checkpoint_of_a_partitioned_variable(tmp_path):
    full = np.arange(12, dtype=np.float32).reshape(6, 2)
    ckpt = str(tmp_path / "model.ckpt")
    with tf.Graph().as_default():
        tf.get_variable("embedding", initializer=tf.constant(full))
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver().save(sess, ckpt)
    with tf.Graph().as_default():
        parts = tf.get_variable("embedding", [6, 2], partitioner=tf.fixed_size_partitioner(3),
                                initializer=tf.zeros_initializer())
        assign_op, feed = slim.assign_from_checkpoint(ckpt, list(parts))
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(assign_op, feed)
            restored = sess.run([p.read_value() for p in parts])
    assert [r.shape for r in restored] == [(2, 2), (2, 2), (2, 2)]
    np.testing.assert_array_equal(np.concatenate(restored), full)


def test_tfexample_decoder_inside_a_tf_data_map():
    """The object-detection style pipeline: `TFExampleDecoder.decode` traced by `tf.data` (autograph), eager TF 2."""
    import tensorflow as tf2
    image = np.random.RandomState(6).randint(0, 256, (4, 4, 3)).astype(np.uint8)
    decoder = slim_calls.image_decoder()
    examples = tf2.data.Dataset.from_tensor_slices([slim_calls.png_example(image, 3)] * 2)
    decoded = list(examples.map(lambda s: tuple(decoder.decode(s, ["image", "label"]))))
    assert len(decoded) == 2
    for out, label in decoded:
        np.testing.assert_array_equal(out.numpy(), image)
        assert label.numpy() == 3


def test_numpy_refuses_the_list_of_slices_that_tf_slim_uses():
    """Why the partitioned-checkpoint fix exists: NumPy 1.23 made `value[[slice, slice]]` an IndexError."""
    value = np.arange(12).reshape(6, 2)
    with pytest.raises(IndexError):
        value[[slice(0, 2), slice(0, 2)]]


def test_the_fix_is_only_in_tf_slims_view():
    import tf_slim.data.tfexample_decoder as decoder_module
    from tensorflow.python.framework import ops
    from tensorflow.python.ops import control_flow_ops
    from tf_slim.ops import variables as variables_module
    assert not hasattr(control_flow_ops, "case") and not hasattr(ops, "Tensor")
    assert decoder_module.control_flow_ops.case is tf.case
    assert decoder_module.control_flow_ops.group is control_flow_ops.group
    assert variables_module.tf.train.Saver is tf.train.Saver
    assert tf.train.NewCheckpointReader is not variables_module.tf.train.NewCheckpointReader


def test_patching_through_the_view_patches_tensorflow(monkeypatch):
    """`mock.patch.object(tf_slim_module.ops, ...)` in old tests acts on TensorFlow's module, as before."""
    import tf_slim.data.tfexample_decoder as decoder_module
    from tensorflow.python.ops import control_flow_ops
    marker = object()
    monkeypatch.setattr(decoder_module.control_flow_ops, "tf1tune_marker", marker, raising=False)
    assert control_flow_ops.tf1tune_marker is marker


README_SECTION = "### TensorFlow 2.16+ and tf-slim"


def test_readme_slim_example_runs(tmp_path):
    import re
    import subprocess
    import sys
    readme = Path(__file__).parent.parent.joinpath("README.md").read_text()
    section = readme[readme.index(README_SECTION):]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    assert "import tf1tune" in code and "slim.learning.train" in code
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
               TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, last = (float(v) for v in re.findall(r"loss ([0-9.]+)", proc.stdout))
    assert last < 0.5 * first
