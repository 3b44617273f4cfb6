"""Fifteen typical tf-slim 1.1 calls, written as TF 1.x slim code was, each in its own graph, each checking values.

This module does not import tf1tune: `tests/test_compat_slim.py` runs the calls after `import tf1tune`, and
`python tests/slim_calls.py [--tf1tune]` counts how many work without it and with it (README's figure).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
import tensorflow.compat.v1 as tf
import tf_slim as slim

CALLS: dict[str, Callable[[], None]] = {}


def call(fn: Callable[[], None]) -> Callable[[], None]:
    CALLS[fn.__name__] = fn
    return fn


def _run(fetches, feed=None, init_local=False):
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        if init_local:
            sess.run(tf.local_variables_initializer())
        return sess.run(fetches, feed)


def _images(seed=0, shape=(8, 4, 4, 3)):
    return np.random.RandomState(seed).uniform(-1, 3, shape).astype(np.float32)


@call
def conv2d_with_batch_norm():
    with tf.Graph().as_default():
        y = slim.conv2d(tf.constant(_images()), 4, [3, 3], activation_fn=None, normalizer_fn=slim.batch_norm,
                        normalizer_params={"is_training": True, "center": False, "scale": False})
        out = _run(y)
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 1, atol=1e-2)


def _one_batch_norm_update(**kwargs):
    x = _images(1)
    with tf.Graph().as_default():
        y = slim.batch_norm(tf.constant(x), decay=0.9, is_training=True, **kwargs)
        mean = tf.global_variables("BatchNorm/moving_mean")[0]
        with tf.control_dependencies([y] + tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
            step = tf.identity(y)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(step)
            return x.mean(axis=(0, 1, 2)), sess.run(mean)


@call
def batch_norm_updates_collections_none():
    batch_mean, moving_mean = _one_batch_norm_update(updates_collections=None)
    np.testing.assert_allclose(moving_mean, 0.1 * batch_mean, rtol=1e-5)   # updated in place: 0.9 * 0 + 0.1 * mean


@call
def batch_norm_zero_debias_moving_mean():
    batch_mean, moving_mean = _one_batch_norm_update(zero_debias_moving_mean=True)
    np.testing.assert_allclose(moving_mean, batch_mean, rtol=1e-5)         # debiased: the first mean itself


@call
def batch_norm_is_training_tensor():
    x = _images(2)
    with tf.Graph().as_default():
        is_training = tf.placeholder_with_default(True, [])
        y = slim.batch_norm(tf.constant(x), is_training=is_training, center=False, scale=False, epsilon=1e-8)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            train, infer = sess.run(y), sess.run(y, {is_training: False})
    np.testing.assert_allclose(train.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(infer, x, rtol=1e-5)                        # moving stats 0 and 1 at the start


def _linear_loss():
    w = tf.Variable([1.0, 1.0, 1.0], name="w")
    return w, tf.reduce_sum(w * tf.constant([3.0, 4.0, 0.0]))              # gradient (3, 4, 0), norm 5


@call
def create_train_op_clip_gradient_norm():
    with tf.Graph().as_default():
        w, loss = _linear_loss()
        train_op = slim.learning.create_train_op(loss, tf.train.GradientDescentOptimizer(1.0), clip_gradient_norm=1.0)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            assert sess.run(train_op) == 7.0
            np.testing.assert_allclose(sess.run(w), [0.4, 0.2, 1.0], rtol=1e-6)


@call
def optimize_loss_clip_gradients():
    with tf.Graph().as_default():
        w, loss = _linear_loss()
        step = tf.train.get_or_create_global_step()
        train_op = slim.optimize_loss(loss, step, learning_rate=0.5, optimizer="SGD", clip_gradients=1.0,
                                      summaries=["loss", "gradient_norm"])
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            assert sess.run(train_op) == 7.0
            np.testing.assert_allclose(sess.run(w), [0.7, 0.6, 1.0], rtol=1e-6)
            assert sess.run(step) == 1


@call
def local_variable():
    with tf.Graph().as_default():
        v = slim.local_variable([1.0, 2.0], name="counts")
        assert v in tf.local_variables() and v not in tf.global_variables() and v not in tf.trainable_variables()
        with tf.Session() as sess:
            sess.run(tf.local_variables_initializer())
            np.testing.assert_array_equal(sess.run(v), [1.0, 2.0])


def png_example(image: np.ndarray, label: int) -> bytes:
    """A serialized tf.train.Example as slim's dataset scripts wrote them: encoded PNG, format, class label."""
    with tf.Graph().as_default(), tf.Session() as sess:
        encoded = sess.run(tf.image.encode_png(image))
    feature = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
               "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"png"])),
               "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def image_decoder(shape=(4, 4, 3)) -> slim.tfexample_decoder.TFExampleDecoder:
    keys = {"image/encoded": tf.FixedLenFeature((), tf.string, default_value=""),
            "image/format": tf.FixedLenFeature((), tf.string, default_value="png"),
            "image/class/label": tf.FixedLenFeature([], tf.int64, default_value=-1)}
    items = {"image": slim.tfexample_decoder.Image(shape=list(shape)),
             "label": slim.tfexample_decoder.Tensor("image/class/label")}
    return slim.tfexample_decoder.TFExampleDecoder(keys, items)


@call
def tfexample_decoder_image():
    image = np.random.RandomState(3).randint(0, 256, (4, 4, 3)).astype(np.uint8)
    with tf.Graph().as_default():
        decoded, label = image_decoder().decode(tf.constant(png_example(image, 7)), ["image", "label"])
        out, lab = _run([decoded, label])
    np.testing.assert_array_equal(out, image)
    assert lab == 7


@call
def arg_scope_l2_regularizer():
    with tf.Graph().as_default():
        with slim.arg_scope([slim.fully_connected], weights_regularizer=slim.l2_regularizer(0.5),
                            weights_initializer=tf.ones_initializer(), activation_fn=None):
            y = slim.fully_connected(tf.ones([1, 3]), 2)
        reg = tf.losses.get_regularization_loss()
        out, reg_value = _run([y, reg])
    np.testing.assert_allclose(out, [[3.0, 3.0]])
    np.testing.assert_allclose(reg_value, 0.5 * 6 / 2)                     # scale * sum(w**2) / 2


@call
def streaming_accuracy():
    with tf.Graph().as_default():
        acc, update = slim.metrics.streaming_accuracy(tf.constant([1, 2, 3, 4]), tf.constant([1, 2, 0, 4]))
        with tf.Session() as sess:
            sess.run(tf.local_variables_initializer())
            sess.run(update)
            assert sess.run(acc) == 0.75


@call
def streaming_concat():
    with tf.Graph().as_default():
        values = tf.placeholder(tf.int32, [None])
        concat, update = slim.metrics.streaming_concat(values)
        with tf.Session() as sess:
            sess.run(tf.local_variables_initializer())
            for batch in ([1, 2], [3], [4, 5, 6]):
                sess.run(update, {values: batch})
            np.testing.assert_array_equal(sess.run(concat), [1, 2, 3, 4, 5, 6])


@call
def assign_from_checkpoint_fn_excluding_logits(tmp_dir: str | None = None):
    import tempfile
    prefix = (tmp_dir or tempfile.mkdtemp()) + "/model.ckpt"
    with tf.Graph().as_default():
        with tf.variable_scope("net"):
            slim.model_variable("weights", initializer=tf.constant([1.0, 2.0]))
            slim.model_variable("logits", initializer=tf.constant([3.0]))
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver().save(sess, prefix)
    with tf.Graph().as_default():
        with tf.variable_scope("net"):
            weights = slim.model_variable("weights", shape=[2], initializer=tf.zeros_initializer())
            logits = slim.model_variable("logits", shape=[1], initializer=tf.zeros_initializer())
        to_restore = slim.get_variables_to_restore(exclude=["net/logits"])
        assert to_restore == [weights]
        init_fn = slim.assign_from_checkpoint_fn(prefix, to_restore)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            init_fn(sess)
            np.testing.assert_array_equal(sess.run(weights), [1.0, 2.0])
            np.testing.assert_array_equal(sess.run(logits), [0.0])


@call
def resnet_v1_small():
    from tf_slim.nets import resnet_v1
    with tf.Graph().as_default():
        blocks = [resnet_v1.resnet_v1_block("block1", base_depth=2, num_units=1, stride=2)]
        with slim.arg_scope(resnet_v1.resnet_arg_scope()):
            logits, end_points = resnet_v1.resnet_v1(tf.constant(_images(4, (2, 32, 32, 3))), blocks, num_classes=3,
                                                     is_training=True, scope="tiny")
        probs = _run(end_points["predictions"])
    assert logits.shape.as_list() == [2, 1, 1, 3]
    np.testing.assert_allclose(probs.sum(axis=-1), 1, rtol=1e-5)


@call
def multiply_and_clip_sparse_gradients():
    with tf.Graph().as_default():
        table = tf.Variable(tf.ones([4, 2]), name="table")
        loss = tf.reduce_sum(tf.gather(table, [0, 2]) * 3.0)              # an IndexedSlices gradient
        grads = tf.train.GradientDescentOptimizer(1.0).compute_gradients(loss, [table])
        grads = slim.learning.multiply_gradients(grads, {table: 2.0})
        grads = slim.learning.clip_gradient_norms(grads, 6.0)
        grad = grads[0][0]
        assert isinstance(grad, tf.IndexedSlices)
        values = _run(grad.values)
    np.testing.assert_allclose(values, np.full((2, 2), 3.0), rtol=1e-6)   # 6 each, norm 12, clipped to norm 6


@call
def auc_using_histogram():
    with tf.Graph().as_default():
        labels = tf.constant([True, True, False, False])
        scores = tf.constant([0.9, 0.8, 0.2, 0.1])
        auc, update = slim.metrics.auc_using_histogram(labels, scores, score_range=[0.0, 1.0], nbins=10)
        with tf.Session() as sess:
            sess.run(tf.local_variables_initializer())
            sess.run(update)
            np.testing.assert_allclose(sess.run(auc), 1.0, atol=1e-6)


def main(argv: list[str]) -> int:
    """Print which calls work, in one process per call (a failing call cannot break the next one)."""
    import os
    import subprocess
    flag = "--tf1tune" in argv
    if "--one" in argv:
        if flag:
            import tf1tune  # noqa: F401
        CALLS[argv[argv.index("--one") + 1]]()
        return 0
    here, ok = os.path.dirname(os.path.abspath(__file__)), 0
    for name in CALLS:
        proc = subprocess.run([sys.executable, __file__, "--one", name] + (["--tf1tune"] if flag else []),
                              check=False, capture_output=True, text=True,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                              cwd=os.path.dirname(here))
        ok += proc.returncode == 0
        error = "" if proc.returncode == 0 else proc.stderr.strip().splitlines()[-1][:110]
        print(f"{'ok  ' if proc.returncode == 0 else 'FAIL'} {name:42s} {error}")
    print(f"{ok}/{len(CALLS)} work {'with' if flag else 'without'} import tf1tune")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
