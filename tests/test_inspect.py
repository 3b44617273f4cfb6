"""`tf1tune inspect`: JSON keys and values for every source kind."""

from __future__ import annotations

import json
import os

import pytest

from tf1tune.cli import main

DIGITS = os.path.join(os.path.dirname(__file__), "..", "checkpoints", "digits_cnn")
KEYS = {"kind", "variables", "inputs", "outputs", "ops", "num_params", "tensorflow_version"}


def _inspect_json(capsys, source: str, *extra: str) -> dict:
    assert main(["inspect", source, "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("which,kind", [("ckpt_v2", "checkpoint"), ("meta", "meta"), ("frozen_binary", "frozen"),
                                        ("frozen_text", "frozen"), ("saved_model", "saved_model")])
def test_json_keys_for_each_kind(capsys, tiny, which, kind):
    summary = _inspect_json(capsys, getattr(tiny, which))
    assert KEYS <= set(summary) and summary["kind"] == kind
    for t in summary["inputs"] + summary["outputs"]:
        assert set(t) >= {"name", "shape", "dtype"}


def test_checkpoint_variables_and_params(capsys, tiny):
    summary = _inspect_json(capsys, tiny.ckpt_v2)
    by_name = {v["name"]: v for v in summary["variables"]}
    assert by_name["hidden/kernel"] == {"name": "hidden/kernel", "shape": [4, 3], "dtype": "float32", "trainable": True}
    assert by_name["hidden/kernel/Momentum"]["trainable"] is False
    assert summary["num_params"] == sum(
        __import__("math").prod(v["shape"]) for v in summary["variables"])


def test_meta_inputs_outputs_ops(capsys, tiny):
    summary = _inspect_json(capsys, tiny.meta)
    assert {"name": "x:0", "shape": [None, 4], "dtype": "float32"} in summary["inputs"]
    assert "probs:0" in [t["name"] for t in summary["outputs"]]
    assert summary["ops"]["MatMul"] >= 2
    assert summary["tensorflow_version"]


def test_slim_source(capsys):
    summary = _inspect_json(capsys, "slim:digits_cnn", "--num-classes", "3")
    assert summary["kind"] == "slim"
    assert summary["inputs"][0]["shape"] == [None, 8, 8, 1]
    logits = [v for v in summary["variables"] if v["name"].startswith("DigitsCNN/Logits") and v["name"].endswith("weights")]
    assert logits and logits[0]["shape"][-1] == 3


def test_human_output_has_summary_lines(capsys, tiny):
    assert main(["inspect", tiny.meta]) == 0
    out = capsys.readouterr().out
    assert "Total params:" in out and "Trainable params:" in out and "hidden/kernel" in out and "Ops (" in out


def _output_names(capsys, source: str) -> list[str]:
    return [t["name"] for t in _inspect_json(capsys, source)["outputs"]]


def test_outputs_of_frozen_graphs_are_what_a_user_feeds_to_outputs(capsys, tf1_cnn):
    # fused batch norm's side outputs (batch mean/variance, reserve spaces) and cond plumbing are not outputs
    assert _output_names(capsys, tf1_cnn.frozen_inference) == ["probs:0"]
    assert _output_names(capsys, tf1_cnn.frozen) == ["probs:0"]


def test_outputs_of_a_tf1_training_graph_leave_out_cond_plumbing(capsys, tf1_cnn):
    names = _output_names(capsys, tf1_cnn.meta)
    assert "probs:0" in names and not [n for n in names if "/cond" in n or "pred_id" in n], names
    assert set(names) == {"probs:0", "sparse_softmax_cross_entropy_loss/value:0"}


def test_outputs_of_a_frozen_slim_net(capsys, tmp_path):
    out = str(tmp_path / "digits.pb")
    assert main(["freeze", "--net", "digits_cnn", "--checkpoint", DIGITS,
                 "--outputs", "DigitsCNN/Predictions/Softmax:0", "--out", out]) == 0
    capsys.readouterr()
    assert _output_names(capsys, out) == ["DigitsCNN/Predictions/Softmax:0"]


def test_every_output_of_a_multi_output_op_nothing_consumes_is_kept(capsys, tmp_path):
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 5], name="x")
        flag = tf.compat.v1.placeholder_with_default(False, [], name="flag")
        tf.nn.top_k(tf.compat.v1.cond(flag, lambda: x * 2.0, lambda: x), k=2, name="top")
        tf.shape(x, name="batch_shape")[0]
    path = str(tmp_path / "g.pb")
    tf.io.write_graph(graph.as_graph_def(), str(tmp_path), "g.pb", as_text=False)
    assert _output_names(capsys, path) == ["top:0", "top:1"]


def test_graph_only_meta_reports_the_files_op_counts_and_still_restores(capsys, tmp_path):
    # a .meta without a saver_def (tf.compat.v1.train.export_meta_graph without a Saver): loading it must not
    # add a Saver's ops to the user's graph; the checkpoint is still restored by the first session
    import collections

    import numpy as np
    import tensorflow as tf

    import tf1tune

    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.variable_scope("", use_resource=False):
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        w = tf.compat.v1.get_variable("w", initializer=tf.ones([4, 2]))
        tf.matmul(x, w, name="y")
        meta = tf.compat.v1.train.export_meta_graph(str(tmp_path / "g.meta"), graph=graph)
        with tf.compat.v1.Session() as sess:
            w.load(np.full((4, 2), 3.0, np.float32), sess)
            tf.compat.v1.train.Saver().save(sess, str(tmp_path / "g"), write_meta_graph=False)
    assert not meta.HasField("saver_def")
    in_file = dict(collections.Counter(n.op for n in meta.graph_def.node))
    assert _inspect_json(capsys, str(tmp_path / "g.meta"))["ops"] == dict(sorted(in_file.items()))
    handle = tf1tune.load(str(tmp_path / "g.meta"))
    assert sorted(op.type for op in handle.graph.get_operations()) == sorted(n.op for n in meta.graph_def.node)
    with handle.session() as sess:
        assert (sess.run(handle.variable("w")) == 3.0).all() and handle.initialized_fresh == []


def test_loading_a_slim_net_with_a_checkpoint_adds_no_saver_until_a_session_restores(tiny):
    import tf1tune

    handle = tf1tune.load("slim:digits_cnn", checkpoint=DIGITS, num_classes=10)
    assert not [op for op in handle.graph.get_operations() if op.type in ("SaveV2", "RestoreV2")]
    with handle.session() as sess:
        assert handle.initialized_fresh == []
        sess.run(handle.outputs[0], {handle.inputs[0]: __import__("numpy").zeros((1, 8, 8, 1), "float32")})
