"""The compatibility shim: needed on this TensorFlow, applied by `import tf1tune`, nothing global beyond it."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=False, capture_output=True, text=True,
                          timeout=300)


BATCH_NORM_NET = """
    import tensorflow as tf, tf_slim as slim
    with tf.Graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, [2, 8, 8, 3])
        y = slim.conv2d(x, 4, [3, 3], normalizer_fn=slim.batch_norm)
    print("built", y.shape, tf.executing_eagerly())
"""


def test_slim_batch_norm_needs_the_shim_on_this_tensorflow():
    proc = _run(BATCH_NORM_NET)
    # On TF 2.16-2.21 with tf-keras, slim.batch_norm fails without the shim; this documents why it exists.
    assert proc.returncode != 0 and "tf_keras.legacy_tf_layers" in proc.stderr


def test_import_tf1tune_makes_slim_batch_norm_work_and_keeps_eager_on():
    proc = _run("import tf1tune\n" + textwrap.dedent(BATCH_NORM_NET))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "built (2, 8, 8, 4) True" in proc.stdout


def test_shim_hands_out_the_one_module_copy():
    proc = _run("""
        import tf1tune
        import tf_keras.legacy_tf_layers.normalization as public
        import tf_keras.src.legacy_tf_layers.normalization as private
        print(public is private, public.BatchNormalization is private.BatchNormalization)
    """)
    assert proc.stdout.strip().endswith("True True"), proc.stderr[-2000:]


def test_import_tf1tune_does_not_import_tensorflow_or_tf_slim_or_touch_the_environment():
    proc = _run("""
        import os, sys
        before = dict(os.environ)
        import tf1tune
        print("tensorflow" in sys.modules, "tf_slim" in sys.modules, dict(os.environ) == before)
    """)
    assert proc.stdout.strip() == "False False True"
