"""Fine-tuning graphs written the TF 1.x way (tests/tf1_style.py): `is_training` placeholders, batch norm under
`tf.cond`, frozen graphs with the head only, learning-rate multipliers of 0."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import tf1tune
from tests import tf1_style
from tf1tune.cli import main
from tf1tune.diff import diff_checkpoints
from tf1tune.restore import restore
from tf1tune.train.config import make_config
from tf1tune.train.loop import run_finetune
from tf1tune.train.task import build_task_model, build_training

HEAD_PARAMS = 8 * 2 + 2  # global_pool, dropout, dense(2) on the 8 channels of conv2


@pytest.fixture(scope="module")
def npz(tf1_cnn, tmp_path_factory):
    x, y = tf1_style.sample_data(48)
    path = str(tmp_path_factory.mktemp("data") / "d.npz")
    np.savez(path, x=x, y=y % 2)
    return path


def _config(tf1_cnn, npz, out, **overrides):
    options = dict(meta=tf1_cnn.meta, input="input", endpoint="conv2/Relu", num_classes=2, train_data=npz,
                   val_data=npz, steps=6, batch_size=8, learning_rate=0.05, checkpoint_every=1000, out=str(out))
    options.update(overrides)
    return make_config(**options)


def _stats(path, layer):
    reader = tf.train.load_checkpoint(path)
    return [reader.get_tensor(f"{layer}/BatchNorm/{n}") for n in ("moving_mean", "moving_variance")]


def test_frozen_graph_trains_the_new_head_with_no_phases(tf1_cnn, npz, tmp_path, capsys):
    # the default: head only, on a graph whose weights are all constants
    out = str(tmp_path / "run")
    assert main(["finetune", "--frozen", tf1_cnn.frozen_inference, "--input", "input", "--endpoint", "conv2/Relu",
                 "--num-classes", "2", "--train-data", npz, "--steps", "5", "--batch-size", "8", "--out", out]) == 0
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["trained_params"] == HEAD_PARAMS
    assert [s.split("/")[0] for s in metrics["trained_scopes"]] == ["finetune_head"]
    capsys.readouterr()
    assert main(["inspect", tf1_cnn.frozen_inference, "--json"]) == 0
    weights = json.loads(capsys.readouterr().out)["num_params"]
    assert metrics["frozen_params"] == weights  # the graph's weights, all constants
    # a scope named in trainable_scopes becomes variables again: it trains, the rest stays frozen
    out = str(tmp_path / "run2")
    assert main(["finetune", "--frozen", tf1_cnn.frozen_inference, "--input", "input", "--endpoint", "conv2/Relu",
                 "--num-classes", "2", "--train-data", npz, "--steps", "5", "--batch-size", "8", "--out", out,
                 "--trainable-scopes", "conv2,finetune_head", "--learning-rate", "0.005"]) == 0  # finite loss
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    conv2_trainable = 3 * 3 * 8 * 8 + 8 + 8  # weights, batch norm's beta and fixed gamma; not its moving statistics
    assert metrics["trained_params"] == HEAD_PARAMS + conv2_trainable
    assert metrics["frozen_params"] + conv2_trainable == weights
    reader = tf.train.load_checkpoint(out)
    frozen = tf1tune.load_frozen(tf1_cnn.frozen_inference)
    with frozen.session() as sess:
        for stat in ("moving_mean", "moving_variance"):  # unfrozen statistics stay as frozen
            before = sess.run(frozen.tensor(f"conv2/BatchNorm/{stat}:0"))
            assert before.tobytes() == reader.get_tensor(f"conv2/BatchNorm/{stat}").tobytes()


def _layer_outputs(tf1_cnn, npz, out, **overrides):
    """conv1 and conv2 outputs as a training step and as evaluation compute them, in the run's graph."""
    config = _config(tf1_cnn, npz, out, **overrides)
    model = build_task_model(config)
    build_training(model, config)
    x, _ = tf1_style.sample_data(8, seed=5)
    layers = [model.graph.get_tensor_by_name(f"conv{i}/Relu:0") for i in (1, 2)]
    with tf.compat.v1.Session(graph=model.graph) as sess, model.graph.as_default():
        restore(sess, [v for v in model.model_variables if "Adam" not in v.op.name and "power" not in v.op.name],
                model.checkpoint)
        training = sess.run(layers, {model.images: x, **model.train_feed})
        inference = sess.run(layers, {model.images: x, **model.eval_feed})
    return training, inference


def test_frozen_layers_compute_during_training_what_they_compute_at_inference(tf1_cnn, npz, tmp_path):
    # batch norm under tf.cond on an is_training placeholder: frozen layers take the inference branch
    (train1, train2), (eval1, eval2) = _layer_outputs(tf1_cnn, npz, tmp_path / "a")
    assert train1.tobytes() == eval1.tobytes() and train2.tobytes() == eval2.tobytes()
    # a trained layer follows the switch: batch statistics in training
    (train1, train2), (eval1, eval2) = _layer_outputs(tf1_cnn, npz, tmp_path / "b",
                                                      trainable_scopes=["conv2", "finetune_head"])
    assert train1.tobytes() == eval1.tobytes()
    assert np.abs(train2 - eval2).max() > 1e-3


def test_plain_is_training_placeholder_is_fed_and_frozen_statistics_stay(tf1_cnn, npz, tmp_path):
    out = tmp_path / "run"
    result = run_finetune(_config(tf1_cnn, npz, out, trainable_scopes=["conv2", "finetune_head"]), progress=False)
    for before, after in zip(_stats(tf1_cnn.checkpoint, "conv1"), _stats(result.checkpoint, "conv1")):
        assert before.tobytes() == after.tobytes()
    assert any(np.abs(b - a).max() > 0 for b, a in zip(_stats(tf1_cnn.checkpoint, "conv2"),
                                                       _stats(result.checkpoint, "conv2")))
    assert result.metrics["inference_feed"] == {"is_training:0": False}
    # the exported model is the model trained: its outputs equal the run's own evaluation
    pb = str(tmp_path / "run.pb")
    assert main(["freeze", "--run-dir", str(out), "--out", pb]) == 0
    frozen = tf1tune.load_frozen(pb)
    assert [t.name for t in frozen.inputs] == ["input:0"]
    assert main(["eval", str(out), "--data", npz]) == 0  # evaluation of the run feeds the switch too


def test_lr_multiplier_zero_counts_and_runs_as_frozen(tf1_cnn, npz, tmp_path):
    config = _config(tf1_cnn, npz, tmp_path / "run", trainable_scopes=["conv2", "finetune_head"],
                     lr_multipliers={"conv2": 0})
    result = run_finetune(config, progress=False)
    source = sum(v.size for n, v in tf1tune.checkpoints.checkpoint_values(tf1_cnn.checkpoint).items()
                 if "Adam" not in n and "power" not in n)
    assert result.trained_params == HEAD_PARAMS and result.frozen_params == source
    assert [s.split("/")[0] for s in result.metrics["trained_scopes"]] == ["finetune_head"]
    changed = diff_checkpoints(tf1_cnn.checkpoint, result.checkpoint).changed
    assert not [n for n in changed if n.startswith(("conv1/", "conv2/")) and "/Adam" not in n], changed
    (train1, train2), (eval1, eval2) = _layer_outputs(tf1_cnn, npz, tmp_path / "b",
                                                      trainable_scopes=["conv2", "finetune_head"],
                                                      lr_multipliers={"conv2": 0})
    assert train2.tobytes() == eval2.tobytes()


def test_a_placeholder_the_graph_needs_is_one_line_naming_it_and_set_feeds_it(tmp_path, capsys):
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.variable_scope("", use_resource=False):
        x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 1], name="input")
        scale = tf.compat.v1.placeholder(tf.float32, [], name="scale")
        w = tf.compat.v1.get_variable("conv/weights", initializer=tf.ones([3, 3, 1, 4]) * 0.1)
        checked = tf.debugging.check_numerics(tf.math.log(scale), "log of scale", name="checked_scale")
        tf.nn.relu(tf.nn.conv2d(x * checked, w, 1, "SAME"), name="conv/Relu")
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = tf.compat.v1.train.Saver().save(sess, str(tmp_path / "model"))
    rng = np.random.default_rng(0)
    np.savez(str(tmp_path / "d.npz"), x=rng.uniform(0, 255, (16, 8, 8, 1)).astype(np.float32), y=rng.integers(0, 2, 16))
    argv = ["finetune", "--meta", prefix + ".meta", "--input", "input", "--endpoint", "conv/Relu", "--num-classes", "2",
            "--train-data", str(tmp_path / "d.npz"), "--steps", "2", "--batch-size", "4"]
    assert main(argv + ["--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "placeholder 'scale'" in err[0] and "--set scale=VALUE" in err[0], err
    assert main(argv + ["--out", str(tmp_path / "b"), "--set", "scale=2"]) == 0
    capsys.readouterr()
    assert main(argv + ["--out", str(tmp_path / "c"), "--set", "scale=-1"]) == 2  # any other TF error: one line too
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checked_scale" in err[0] and "log of scale" in err[0], err


def test_a_phase_that_leaves_the_new_head_untrained_warns(tf1_cnn, npz, tmp_path):
    with pytest.warns(UserWarning, match="phase 1 does not train the new head .*add 'finetune_head'"):
        run_finetune(_config(tf1_cnn, npz, tmp_path / "run", steps=2, trainable_scopes=["conv2"]), progress=False)


@pytest.mark.parametrize("source", ["net", "meta"])
def test_loss_adds_the_graphs_regularization_losses_and_weight_decay(tf1_cnn, npz, tmp_path, source):
    if source == "net":  # digits_cnn's arg scope puts an L2 regularizer on its conv weights
        config = make_config(checkpoint=os.path.join(os.path.dirname(__file__), "..", "checkpoints", "digits_cnn"),
                             out=str(tmp_path / "run"), weight_decay=0.01)
    else:
        config = _config(tf1_cnn, npz, tmp_path / "run", weight_decay=0.01)
    model = build_task_model(config)
    training = build_training(model, config)
    graph_losses = model.graph.get_collection(tf.compat.v1.GraphKeys.REGULARIZATION_LOSSES)
    kernels = [v for v in training.trained.values() if v.shape.rank >= 2]
    assert kernels and (graph_losses if source == "net" else not graph_losses)
    x, y = tf1_style.sample_data(4) if source == "meta" else (np.zeros((4, 8, 8, 1), np.float32), np.zeros(4, np.int64))
    with tf.compat.v1.Session(graph=model.graph) as sess, model.graph.as_default():
        sess.run(tf.compat.v1.global_variables_initializer())
        feed = {model.images: x, model.labels: y, **model.eval_feed}
        total, loss, regs, values = sess.run([training.total_loss, training.loss, graph_losses, kernels], feed)
    expected = loss + sum(regs) + 0.01 * sum(float(np.sum(v.astype(np.float64) ** 2)) / 2 for v in values)
    assert total == pytest.approx(expected, rel=1e-5)


def test_keeping_the_graphs_own_classifier(tf1_cnn, npz, tmp_path):
    # README: --endpoint on its logits, --head flatten, its class count, its scope trained
    x, y = tf1_style.sample_data(24)
    data = str(tmp_path / "three.npz")
    np.savez(data, x=x, y=y)
    result = run_finetune(_config(tf1_cnn, npz, tmp_path / "run", endpoint="fc/BiasAdd", head="flatten",
                                  num_classes=3, trainable_scopes=["fc"], train_data=data, val_data=data),
                          progress=False)
    assert result.trained_params == 8 * 3 + 3 and result.metrics["trained_scopes"] == ["fc"]
    assert set(result.metrics) == {"accuracy_before", "accuracy_after", "validation_size", "train_size", "steps",
                                   "trained_params", "frozen_params", "trained_scopes", "checkpoint",
                                   "source_checkpoint", "input", "probabilities", "inference_feed", "phases",
                                   "feature_cache", "skipped_images", "train_seconds", "steps_this_session"}
    assert result.metrics["train_seconds"] > 0 and result.metrics["steps_this_session"] == result.steps
    changed = diff_checkpoints(tf1_cnn.checkpoint, result.checkpoint).changed
    assert {"fc/weights", "fc/biases"} <= set(changed)
    assert not [n for n in changed if n.startswith(("conv1/", "conv2/")) and "/Adam" not in n]


def test_the_main_job_file_shows_every_key_and_the_readme_shows_the_file():
    import dataclasses
    import re

    from tf1tune.train.config import FinetuneConfig

    root = os.path.join(os.path.dirname(__file__), "..")
    text = open(os.path.join(root, "configs", "digits_parity.yaml"), encoding="utf-8").read()
    shown = set(re.findall(r"^(?:# )?([a-z_]+):", text, re.M))
    assert {f.name for f in dataclasses.fields(FinetuneConfig)} <= shown
    assert "```yaml\n" + text + "```" in open(os.path.join(root, "README.md"), encoding="utf-8").read()
