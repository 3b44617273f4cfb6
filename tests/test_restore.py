"""Checked partial restore: exact values, one error listing every problem, skip mode, slots, renaming, CLI plan."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import tf1tune
from tf1tune.checkpoints import checkpoint_values
from tf1tune.cli import main
from tf1tune.errors import BadSourceError, CheckpointMismatchError, RestoreWarning
from tf1tune.restore import plan_restore, restore
from tf1tune.selection import rename_map, select

DIGITS_CKPT = os.path.join(os.path.dirname(__file__), "..", "checkpoints", "digits_cnn")
LOGITS = "DigitsCNN/Logits"


def _build_digits(num_classes: int, scope: str | None = None) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    images = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 1], name="input")
    if scope:
        with tf.compat.v1.variable_scope(scope):
            return tf1tune.build_net("digits_cnn", images, num_classes=num_classes)
    return tf1tune.build_net("digits_cnn", images, num_classes=num_classes)


def _build_digits_with_momentum(num_classes: int, learning_rate: float) -> tf.Variable:
    """`digits_cnn` with a Momentum train op (so the graph holds slots and a global step); returns the step."""
    logits, _ = _build_digits(num_classes)
    labels = tf.compat.v1.placeholder(tf.int64, [None])
    loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(labels, logits)
    step = tf.compat.v1.train.get_or_create_global_step()
    tf.compat.v1.train.MomentumOptimizer(learning_rate, 0.9).minimize(loss, global_step=step)
    return step


def _value(sess: tf.compat.v1.Session, name: str) -> np.ndarray:
    """The value of the global variable `name` of the session's graph."""
    (var,) = [v for v in sess.graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES) if v.op.name == name]
    return sess.run(var)


def _uninitialized(sess: tf.compat.v1.Session) -> list[bytes]:
    with sess.graph.as_default():
        return list(sess.run(tf.compat.v1.report_uninitialized_variables()))


@pytest.fixture(scope="module")
def ckpt10(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, np.ndarray]]:
    """A 10-class digits_cnn checkpoint with seeded values in every variable (no optimizer state)."""
    rng = np.random.default_rng(7)
    with tf.Graph().as_default() as graph:
        _build_digits(10)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for v in tf.compat.v1.global_variables():
                v.load(rng.standard_normal(v.shape.as_list()).astype(np.float32), sess)
            prefix = tf.compat.v1.train.Saver().save(sess, str(tmp_path_factory.mktemp("digits10") / "model.ckpt"))
    return prefix, checkpoint_values(prefix)


def test_restore_without_classifier_is_bit_identical(ckpt10):
    prefix, values = ckpt10
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
        _build_digits(5)
        everything = tf.compat.v1.global_variables()
        plan = restore(sess, select(everything, exclude_scopes=[LOGITS]), prefix)
        assert plan.ok and not plan.missing and len(plan.matched) == 15
        assert plan.unused == ["DigitsCNN/Logits/Conv2d_1x1/biases", "DigitsCNN/Logits/Conv2d_1x1/weights"]
        for v in everything:
            if not v.op.name.startswith(LOGITS):
                assert sess.run(v).tobytes() == values[v.op.name].tobytes(), v.op.name
        assert sorted(plan.initialized) == ["DigitsCNN/Logits/Conv2d_1x1/biases", "DigitsCNN/Logits/Conv2d_1x1/weights"]
        assert _value(sess, "DigitsCNN/Logits/Conv2d_1x1/weights").shape == (1, 1, 64, 5)
        assert _uninitialized(sess) == []


def test_shape_mismatch_raises_once_listing_all_and_loads_nothing(ckpt10):
    prefix, _ = ckpt10
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
        _build_digits(5)
        with pytest.raises(CheckpointMismatchError,
                           match=r"2 variables do not fit checkpoint .*shape mismatch: DigitsCNN/Logits/Conv2d_1x1/weights "
                                 r"graph \[1, 1, 64, 5\] vs checkpoint \[1, 1, 64, 10\], DigitsCNN/Logits/Conv2d_1x1/biases "
                                 r"graph \[5\] vs checkpoint \[10\]; exclude them with exclude_scopes / --exclude-scopes "
                                 r"\(DigitsCNN/Logits/Conv2d_1x1\), or skip them with on_mismatch='skip'"):
            restore(sess, None, prefix)
        assert len(_uninitialized(sess)) == 17  # raised before loading anything


def test_skip_warns_and_restores_the_rest(ckpt10):
    prefix, values = ckpt10
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
        _build_digits(5)
        with pytest.warns(RestoreWarning, match=r"2 variables do not fit .*not restored: shape mismatch: "
                                                r"DigitsCNN/Logits/Conv2d_1x1/weights"):
            plan = restore(sess, None, prefix, on_mismatch="skip")
        assert [m["name"] for m in plan.shape_mismatch] == ["DigitsCNN/Logits/Conv2d_1x1/weights",
                                                            "DigitsCNN/Logits/Conv2d_1x1/biases"]
        w = _value(sess, "DigitsCNN/Conv2d_3/weights")
        assert w.tobytes() == values["DigitsCNN/Conv2d_3/weights"].tobytes()
        biases = _value(sess, "DigitsCNN/Logits/Conv2d_1x1/biases")
        np.testing.assert_array_equal(biases, np.zeros(5, np.float32))  # its initializer, not a slice of the checkpoint
        assert _uninitialized(sess) == []


def test_optimizer_slots_created_before_restore_are_initialized_not_restored(ckpt10):
    prefix, values = ckpt10
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
        _build_digits_with_momentum(5, 0.1)
        everything = tf.compat.v1.global_variables()
        slots = [v for v in everything if v.op.name.endswith("/Momentum")]
        assert slots
        plan = restore(sess, select(everything, exclude_scopes=[LOGITS]), prefix)
        assert plan.ok and not any(n.endswith("/Momentum") for n in plan.matched)
        assert {v.op.name for v in slots} | {"global_step"} <= set(plan.initialized)
        for slot in slots:
            assert not sess.run(slot).any()
        w = _value(sess, "DigitsCNN/Conv2d_1/weights")
        assert w.tobytes() == values["DigitsCNN/Conv2d_1/weights"].tobytes()
        assert _uninitialized(sess) == []
        # asking for the slots explicitly is a missing-entry error
        with pytest.raises(CheckpointMismatchError, match=r"missing: .*DigitsCNN/Conv2d_1/weights/Momentum"):
            restore(sess, select(everything, exclude_scopes=[LOGITS], keep_optimizer_state=True), prefix)


def test_rename_checkpoint_scope_into_encoder(ckpt10):
    prefix, values = ckpt10
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
        _build_digits(10, scope="encoder")
        everything = tf.compat.v1.global_variables()
        assert all(v.op.name.startswith("encoder/DigitsCNN/") for v in everything)
        plan = restore(sess, rename_map(everything, {"DigitsCNN": "encoder/DigitsCNN"}), prefix)
        assert plan.ok and plan.unused == [] and plan.initialized == []
        assert plan.renamed["encoder/DigitsCNN/Conv2d_1/weights"] == "DigitsCNN/Conv2d_1/weights"
        for v in everything:
            assert sess.run(v).tobytes() == values[v.op.name[len("encoder/"):]].tobytes(), v.op.name


def test_plan_lists_missing_shape_dtype_unused(tmp_path):
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
        tf.compat.v1.get_variable("a", initializer=np.arange(2, dtype=np.float32))
        tf.compat.v1.get_variable("b", initializer=np.zeros(3, np.float32))
        tf.compat.v1.get_variable("c", initializer=np.int32(1))
        tf.compat.v1.get_variable("e", initializer=np.float32(1))
        sess.run(tf.compat.v1.global_variables_initializer())
        prefix = tf.compat.v1.train.Saver().save(sess, str(tmp_path / "abc"))
    with tf.Graph().as_default():
        variables = [tf.compat.v1.get_variable("a", shape=[2]), tf.compat.v1.get_variable("b", shape=[4]),
                     tf.compat.v1.get_variable("c", shape=[], dtype=tf.float32), tf.compat.v1.get_variable("d", shape=[1])]
        plan = plan_restore(variables, prefix)
    assert plan.to_dict() == {
        "checkpoint": prefix, "matched": ["a"], "missing": ["d"],
        "shape_mismatch": [{"name": "b", "graph_shape": [4], "checkpoint_shape": [3]}],
        "dtype_mismatch": [{"name": "c", "graph_dtype": "float32", "checkpoint_dtype": "int32"}],
        "unused": ["e"], "renamed": {},
    }
    assert "missing: d; shape mismatch: b graph [4] vs checkpoint [3]; dtype mismatch: c graph float32 vs checkpoint int32" \
        == plan.describe_problems()
    assert "unused checkpoint entries (1):" in plan.format()


def test_mtcnn_pnet_up_to_conv3(legacy_dir):
    meta = os.path.join(legacy_dir, "mtcnn-pnet-tf1.8", "PNet-18.meta")
    handle = tf1tune.load(meta)
    values = checkpoint_values(handle.checkpoint)
    chosen = select(handle.variables, up_to=handle.tensor("conv3/add:0"))  # conv3's PReLU output
    names = [v.op.name for v in chosen]
    assert names == [f"conv{i}/{w}" for i in (1, 2, 3) for w in ("weights", "biases", "alphas")]
    with tf.compat.v1.Session(graph=handle.graph) as sess:
        plan = restore(sess, chosen, handle.checkpoint)
        assert plan.ok and plan.matched == names
        assert "conv1/weights/Momentum" in plan.unused
        for v in chosen:
            assert sess.run(v).tobytes() == values[v.op.name].tobytes(), v.op.name
        assert "conv3/weights/Momentum" in plan.initialized and "conv4_1/weights" in plan.initialized
        assert _uninitialized(sess) == []


def _plan_json(capsys, *extra: str) -> dict:
    assert main(["inspect", "slim:digits_cnn", "--num-classes", "5", "--checkpoint", DIGITS_CKPT, "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)["plan"]


def test_cli_plan_with_and_without_classifier(capsys):
    plan = _plan_json(capsys, "--exclude-scopes", LOGITS)
    assert set(plan) >= {"matched", "missing", "shape_mismatch", "dtype_mismatch", "unused"}
    assert plan["missing"] == [] and plan["shape_mismatch"] == [] and plan["dtype_mismatch"] == []
    assert len(plan["matched"]) == 15 and "global_step" in plan["unused"]
    plan = _plan_json(capsys)
    assert {"name": "DigitsCNN/Logits/Conv2d_1x1/weights", "graph_shape": [1, 1, 64, 5],
            "checkpoint_shape": [1, 1, 64, 10]} in plan["shape_mismatch"]
    plan = _plan_json(capsys, "--up-to", "Conv2d_1")
    assert len(plan["matched"]) == 5 and all(n.startswith("DigitsCNN/Conv2d_1/") for n in plan["matched"])
    plan = _plan_json(capsys, "--include-scopes", "DigitsCNN/Conv2d_1,DigitsCNN/Conv2d_2", "--include-scopes",
                      "DigitsCNN/Conv2d_3")
    assert len(plan["matched"]) == 15


def test_cli_plan_text_and_errors(capsys, tiny):
    assert main(["inspect", "slim:digits_cnn", "--num-classes", "5", "--checkpoint", DIGITS_CKPT]) == 0
    out = capsys.readouterr().out
    assert "Restore plan for checkpoint" in out and "shape mismatch (2):" in out
    assert main(["inspect", "slim:digits_cnn", "--checkpoint", DIGITS_CKPT, "--exclude-scopes", "Logits"]) == 2
    assert "exclude scope 'Logits' matches no variable" in capsys.readouterr().err
    assert main(["inspect", tiny.frozen_binary, "--exclude-scopes", "x"]) == 2
    assert "need --checkpoint and a .meta or slim:NAME source" in capsys.readouterr().err


def test_shipped_checkpoint_optimizer_state_only_on_request():
    values = checkpoint_values(tf1tune.resolve_checkpoint(DIGITS_CKPT))
    for keep in (False, True):
        with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
            step = _build_digits_with_momentum(10, 0.05)
            plan = restore(sess, None, DIGITS_CKPT, keep_optimizer_state=keep)
            assert plan.ok and (plan.unused == [] if keep else "global_step" in plan.unused)
            assert sess.run(step) == (1500 if keep else 0)
            slot = _value(sess, "DigitsCNN/Conv2d_1/weights/Momentum")
            assert (slot.tobytes() == values["DigitsCNN/Conv2d_1/weights/Momentum"].tobytes()) is keep
            assert _uninitialized(sess) == []


def test_truncated_data_file_raises_bad_source(truncated_digits):
    bad = truncated_digits
    with pytest.raises(BadSourceError, match=r"checkpoint '.*' cannot be read \(.*\): the data file may be truncated"):
        tf1tune.load(bad).session()
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
        _build_digits(10)
        with pytest.raises(BadSourceError, match="the data file may be truncated"):
            restore(sess, None, bad)


def test_mismatch_message_names_at_most_eight_variables(ckpt10):
    prefix, _ = ckpt10
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
        _build_digits(10, scope="other")
        with pytest.raises(CheckpointMismatchError) as info:
            restore(sess, None, prefix)
    message = str(info.value)
    count = len(graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES))
    assert count > 16
    assert "missing: " in message and f"and {count - 8} more;" in message
    assert message.count("other/") <= 16  # 8 variables and at most 8 scopes
    assert "exclude them with exclude_scopes / --exclude-scopes" in message and "on_mismatch='skip'" in message
