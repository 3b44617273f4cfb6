"""Each loader on the tiny model in every format: same outputs, values restored bit for bit."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

import tf1tune
from tests import model_factory
from tf1tune.checkpoints import checkpoint_values, resolve_checkpoint
from tf1tune.errors import CheckpointWarning
from tf1tune.loaders import detect_kind

X = model_factory.sample_input()


def _run_logits(handle: tf1tune.ModelHandle, name: str = "logits_out_final:0") -> np.ndarray:
    with handle.session() as sess:
        return sess.run(handle.tensor(name), {handle.tensor("x:0"): X})


@pytest.mark.parametrize("which", ["meta", "ckpt_v2", "ckpt_v1", "ckpt_v1_sharded", "frozen_binary", "frozen_text", "saved_model"])
def test_every_format_gives_the_model_outputs(tiny, which):
    handle = tf1tune.load(getattr(tiny, which))
    np.testing.assert_allclose(_run_logits(handle), model_factory.expected_logits(X), rtol=1e-5, atol=1e-6)
    assert [t.name for t in handle.inputs][:1] == ["x:0"]


@pytest.mark.parametrize("which,kind", [("meta", "meta"), ("ckpt_v2", "checkpoint"), ("ckpt_v1", "checkpoint"),
                                        ("ckpt_v1_sharded", "checkpoint"), ("frozen_binary", "frozen"),
                                        ("frozen_text", "frozen"), ("saved_model", "saved_model")])
def test_detect_kind(tiny, which, kind):
    assert detect_kind(getattr(tiny, which)) == kind


@pytest.mark.parametrize("which", ["ckpt_v2", "ckpt_v1", "ckpt_v1_sharded"])
def test_restored_values_are_bit_identical(tiny, which):
    prefix = resolve_checkpoint(getattr(tiny, which))
    stored = checkpoint_values(prefix)
    handle = tf1tune.load(getattr(tiny, which))
    with handle.session() as sess:
        for v in handle.variables:
            np.testing.assert_array_equal(sess.run(v), stored[v.op.name])
    assert handle.initialized_fresh == []
    assert stored["hidden/kernel"].tobytes() == model_factory.weights()["hidden/kernel"].tobytes()


def test_checkpoint_given_as_any_of_its_files(tiny):
    prefix = tiny.ckpt_v2
    for form in (prefix, prefix + ".index", prefix + ".meta", prefix + ".data-00000-of-00001", os.path.dirname(prefix)):
        assert resolve_checkpoint(form) == prefix


def test_stale_state_file_falls_back_to_newest_prefix(tiny, tmp_path):
    d = tmp_path / "moved"
    shutil.copytree(os.path.dirname(tiny.ckpt_v2), d)
    (d / "checkpoint").write_text('model_checkpoint_path: "/old/machine/train/model.ckpt-9999"\n')
    with pytest.warns(CheckpointWarning, match="does not exist; using the newest"):
        assert resolve_checkpoint(str(d)) == str(d / "model.ckpt")


def test_frozen_with_new_batch_size(tiny):
    handle = tf1tune.load_frozen(tiny.frozen_binary, batch_size=5)
    assert handle.tensor("x:0").shape.as_list() == [5, model_factory.INPUT_DIM]
    np.testing.assert_allclose(_run_logits(handle), model_factory.expected_logits(X), rtol=1e-5, atol=1e-6)
    with pytest.raises(tf1tune.NameNotFoundError, match="closest: x"):
        tf1tune.load_frozen(tiny.frozen_binary, input_shapes={"xx": [1, 4]})


def test_frozen_outputs_are_unconsumed_nodes(tiny):
    handle = tf1tune.load_frozen(tiny.frozen_binary)
    assert [t.name for t in handle.outputs] == ["probs:0"]


def test_saved_model_signatures(tiny):
    handle = tf1tune.load_saved_model(tiny.saved_model)
    sig = handle.signatures["serving_default"]
    assert sig["inputs"] == {"x": "x:0"} and sig["outputs"]["probs"] == "probs:0"
    with pytest.raises(tf1tune.NameNotFoundError, match="tags"):
        tf1tune.load_saved_model(tiny.saved_model, tags=["train"])


def test_slim_net_with_checkpoint_restores_bit_identical(tmp_path):
    prefix = str(tmp_path / "digits.ckpt")
    with tf.Graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 1])
        tf1tune.build_net("digits_cnn", x, num_classes=10)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().save(sess, prefix)
    stored = checkpoint_values(prefix)
    handle = tf1tune.load("slim:digits_cnn", num_classes=10, checkpoint=prefix)
    with handle.session() as sess:
        for v in handle.variables:
            assert sess.run(v).tobytes() == stored[v.op.name].tobytes()


def test_lookup_misses_list_closest_names(tiny):
    handle = tf1tune.load(tiny.meta)
    with pytest.raises(tf1tune.NameNotFoundError, match=r"no tensor named 'logit_out_final:0' \(closest: logits_out_final:0"):
        handle.tensor("logit_out_final:0")
    with pytest.raises(tf1tune.NameNotFoundError, match="closest"):
        handle.endpoint("prob")
    with pytest.raises(tf1tune.NameNotFoundError, match="closest: resnet_v1_50"):
        tf1tune.get_net("resnet_v1_5O")


def test_each_load_uses_its_own_graph(tiny):
    a, b = tf1tune.load(tiny.meta), tf1tune.load(tiny.meta)
    assert a.graph is not b.graph
    assert tf.compat.v1.get_default_graph().get_operations() == []
