"""Fine-tuning runs end to end on the shipped digits checkpoint and on imported graphs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import tf1tune
from tf1tune.checkpoints import checkpoint_values
from tf1tune.cli import main
from tf1tune.diff import diff_checkpoints
from tf1tune.errors import ConfigError
from tf1tune.train.config import make_config
from tf1tune.train.loop import run_finetune

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "checkpoints", "digits_cnn")
FROZEN_LAYERS = ("DigitsCNN/Conv2d_1/", "DigitsCNN/Conv2d_2/")


def _hashes(directory: str) -> dict[str, str]:
    return {n: hashlib.sha256(open(os.path.join(directory, n), "rb").read()).hexdigest() for n in sorted(os.listdir(directory))}


@pytest.fixture(scope="module")
def two_phase_run(tmp_path_factory):
    """The main job's two phases, shortened: head only, then also Conv2d_3."""
    before = _hashes(SOURCE)
    out = str(tmp_path_factory.mktemp("runs") / "parity")
    config = make_config(os.path.join(ROOT, "configs", "digits_parity.yaml"), checkpoint=SOURCE, out=out,
                         phases=[{"steps": 80, "trainable_scopes": ["DigitsCNN/Logits"], "learning_rate": 0.05},
                                 {"steps": 40, "trainable_scopes": ["DigitsCNN/Logits", "DigitsCNN/Conv2d_3"],
                                  "learning_rate": 0.005}])
    result = run_finetune(config, progress=False)
    assert _hashes(SOURCE) == before  # the source checkpoint is never written to
    return result


def test_transfer_to_two_classes_reaches_stated_accuracy(two_phase_run):
    # digits (10 classes) -> odd/even (2 classes): the new head starts near chance and ends above 0.95
    assert two_phase_run.accuracy_before < 0.75
    assert two_phase_run.accuracy_after >= 0.95
    metrics = json.load(open(os.path.join(two_phase_run.run_dir, "metrics.json")))
    assert {"accuracy_before", "accuracy_after", "trained_params", "frozen_params"} <= set(metrics)
    assert metrics["steps"] == 120 and metrics["validation_size"] == 360


def test_frozen_weights_and_batch_norm_statistics_are_bit_identical(two_phase_run):
    result = diff_checkpoints(SOURCE, two_phase_run.checkpoint)
    frozen = {f"DigitsCNN/Conv2d_{i}/{n}" for i in (1, 2) for n in
              ("weights", "BatchNorm/beta", "BatchNorm/gamma", "BatchNorm/moving_mean", "BatchNorm/moving_variance")}
    assert frozen <= set(result.unchanged)
    assert not [n for n in result.changed if n.startswith(FROZEN_LAYERS)]
    assert "DigitsCNN/Conv2d_3/weights" in result.changed  # phase 2 trained it
    assert "DigitsCNN/Conv2d_3/BatchNorm/moving_mean" in result.changed  # its batch norm ran in training mode
    assert "DigitsCNN/Logits/Conv2d_1x1/weights" in result.reshaped  # the new 2-class head


def test_run_directory_holds_events_config_and_readable_checkpoints(two_phase_run):
    names = os.listdir(two_phase_run.run_dir)
    assert "config.yaml" in names and "metrics.json" in names and os.listdir(os.path.join(two_phase_run.run_dir, "events"))
    state = tf.train.get_checkpoint_state(two_phase_run.run_dir)
    assert state.model_checkpoint_path.endswith("model.ckpt-120")
    events = os.path.join(two_phase_run.run_dir, "events")
    tags = {v.tag for name in os.listdir(events)
            for event in tf.compat.v1.train.summary_iterator(os.path.join(events, name)) for v in event.summary.value}
    assert {"loss", "accuracy/train_batch", "accuracy/validation", "learning_rate"} <= tags
    assert any(t.startswith("DigitsCNN/Logits") for t in tags)  # the histograms of the config's `histograms`
    for path in state.all_model_checkpoint_paths:
        assert tf.train.load_checkpoint(path).get_tensor("global_step") == int(path.rsplit("-", 1)[1])


def test_existing_run_needs_resume_or_overwrite(two_phase_run):
    config = make_config(out=two_phase_run.run_dir, checkpoint=SOURCE, steps=1)
    with pytest.raises(ConfigError, match="--resume to continue it or --overwrite"):
        run_finetune(config, progress=False)


def test_overwrite_never_deletes_sources_or_foreign_directories(tmp_path):
    import shutil

    copy = tmp_path / "src" / "digits_cnn"
    shutil.copytree(SOURCE, copy)
    before = _hashes(str(copy))
    with pytest.raises(ConfigError, match="is or contains a source of this run"):
        run_finetune(make_config(checkpoint=str(copy), out=str(tmp_path / "src"), overwrite=True, steps=1), progress=False)
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(ConfigError, match="not a tf1tune run directory"):
        run_finetune(make_config(checkpoint=SOURCE, out=str(foreign), overwrite=True, steps=1), progress=False)
    assert _hashes(str(copy)) == before and (foreign / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_masked_entries_never_move(tmp_path, optimizer):
    weights = "DigitsCNN/Conv2d_3/weights"
    config = make_config(checkpoint=SOURCE, out=str(tmp_path / "run"), steps=20, optimizer=optimizer,
                         trainable_scopes=["DigitsCNN/Logits", "DigitsCNN/Conv2d_3"],
                         masks={weights: {"columns": [0, 5]}})
    result = run_finetune(config, progress=False)
    source, tuned = checkpoint_values(resolve(SOURCE)), checkpoint_values(result.checkpoint)
    assert tuned[weights][..., [0, 5]].tobytes() == source[weights][..., [0, 5]].tobytes()
    assert not np.array_equal(tuned[weights], source[weights])


def resolve(path: str) -> str:
    return tf1tune.resolve_checkpoint(path)


def test_config_errors_name_the_key_and_what_is_allowed(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("net: digits_cnn\ntrainable_scope: [x]\n")
    with pytest.raises(ConfigError, match="unknown key 'trainable_scope'.*did you mean trainable_scopes"):
        make_config(str(bad))
    bad.write_text("learning_rate: 1e-3\nsteps: '5'\nphases: [{steps: 3, trainable_scopes: DigitsCNN/Logits}]\n")
    config = make_config(str(bad))  # YAML 1.1 reads 1e-3 as a string; a scope string is one scope
    assert config.learning_rate == 0.001 and config.steps == 5 and config.phases[0].trainable_scopes == ["DigitsCNN/Logits"]
    for text, message in (("learning_rate: fast\n", "learning_rate must be a number"),
                          ("augment: {crop: 2}\n", "unknown key 'crop' in augment"),
                          ("lr_multipliers: [a]\n", "lr_multipliers must be a mapping")):
        bad.write_text(text)
        with pytest.raises(ConfigError, match=message):
            make_config(str(bad))
    assert make_config(net="resnet_v1_50").checkpoint is None  # another source takes nothing from the main job
    assert main(["finetune", "--optimizer", "adagrad", "--out", str(tmp_path / "r")]) == 2
    assert "choose one of sgd, momentum, adam, rmsprop" in capsys.readouterr().err


def test_kill_minus_nine_then_resume_ends_where_an_uninterrupted_run_ends(tmp_path):
    out = str(tmp_path / "killed")
    argv = [sys.executable, "-m", "tf1tune", "finetune", "--checkpoint", SOURCE, "--out", out, "--steps", "3000",
            "--checkpoint-every", "25", "--no-progress"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline:
        latest = tf.train.latest_checkpoint(out) if os.path.isdir(out) else None
        if latest and int(latest.rsplit("-", 1)[1]) >= 50:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = int(tf.train.latest_checkpoint(out).rsplit("-", 1)[1])
    assert killed_at < 3000
    resumed = subprocess.run(argv + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    state = tf.train.get_checkpoint_state(out)
    assert state.model_checkpoint_path.endswith("model.ckpt-3000")
    for path in state.all_model_checkpoint_paths:
        assert tf.train.load_checkpoint(path).get_tensor("global_step") == int(path.rsplit("-", 1)[1])
    assert json.load(open(os.path.join(out, "metrics.json")))["steps"] == 3000


def test_resnet_with_4d_logits_builds_and_trains_only_its_classifier():
    from tf1tune import data as data_lib
    from tf1tune.train.loop import training_step
    from tf1tune.train.task import build_task_model, build_training

    config = make_config(net="resnet_v1_50", checkpoint=None, num_classes=3, input_size=[32, 32])
    model = build_task_model(config)
    training = build_training(model, config)
    assert model.train_logits.shape.as_list() == [None, 3]
    assert sorted(training.trained) == ["resnet_v1_50/logits/biases", "resnet_v1_50/logits/weights"]
    rng = np.random.default_rng(0)
    dataset = data_lib.Dataset(images=rng.uniform(0, 255, (8, 32, 32, 3)).astype(np.float32),
                               labels=rng.integers(0, 3, 8), class_names=["a", "b", "c"], source="random")
    stream = data_lib.BatchStream(dataset, 4, seed=0)
    moving = [v for v in model.model_variables if v.op.name == "resnet_v1_50/conv1/BatchNorm/moving_mean"][0]
    conv = [v for v in model.model_variables if v.op.name == "resnet_v1_50/conv1/weights"][0]
    with tf.compat.v1.Session(graph=model.graph) as sess, model.graph.as_default():
        sess.run(tf.compat.v1.global_variables_initializer())
        before = sess.run([moving, conv])
        for step in range(2):
            training_step(sess, model, training.train_ops[0].op, training.loss, stream, step)
        after = sess.run([moving, conv])
    assert all(a.tobytes() == b.tobytes() for a, b in zip(before, after))  # frozen base and its statistics


def test_meta_source_with_a_grafted_head(tmp_path):
    meta = os.path.join(SOURCE, "model.ckpt-1500.meta")
    config = make_config(net=None, meta=meta, input="input:0", endpoint="DigitsCNN/global_pool:0", num_classes=2,
                         checkpoint=SOURCE, steps=60, out=str(tmp_path / "meta_run"),
                         train_data="digits-parity:train", val_data="digits-parity:val")
    result = run_finetune(config, progress=False)
    assert result.accuracy_after >= 0.9 and result.accuracy_after > result.accuracy_before
    diff = diff_checkpoints(SOURCE, result.checkpoint)
    # the whole imported net stayed frozen (its old Momentum slots are optimizer state: not restored, re-initialised)
    assert not [n for n in diff.changed if n.startswith("DigitsCNN/") and not n.endswith("/Momentum")]
    assert "finetune_head/dense_2/weights" in diff.only_in_b


def test_frozen_source_with_an_unfrozen_layer(tmp_path):
    handle = tf1tune.load("slim:digits_cnn", num_classes=10, checkpoint=SOURCE)
    with handle.session() as sess, handle.graph.as_default():
        graph_def = tf.compat.v1.graph_util.convert_variables_to_constants(
            sess, handle.graph.as_graph_def(), ["DigitsCNN/Predictions/Softmax"])
    frozen = tmp_path / "digits_frozen.pb"
    frozen.write_bytes(graph_def.SerializeToString())
    config = make_config(net=None, frozen=str(frozen), input="input:0", endpoint="DigitsCNN/global_pool:0",
                         num_classes=2, checkpoint=None, steps=60, out=str(tmp_path / "frozen_run"),
                         train_data="digits-parity:train", val_data="digits-parity:val",
                         trainable_scopes=["finetune_head", "DigitsCNN/Conv2d_3/weights"])
    result = run_finetune(config, progress=False)
    assert result.accuracy_after >= 0.9
    tuned = checkpoint_values(result.checkpoint)
    source = checkpoint_values(resolve(SOURCE))
    assert "DigitsCNN/Conv2d_3/weights" in tuned  # turned back into a variable and trained
    assert not np.array_equal(tuned["DigitsCNN/Conv2d_3/weights"], source["DigitsCNN/Conv2d_3/weights"])
    assert "DigitsCNN/Conv2d_2/weights" not in tuned  # still a constant of the frozen graph


def test_run_directory_freezes_optimizes_and_verifies_in_one_command(two_phase_run, tmp_path, capsys):
    from tf1tune.train.run_dir import load_run

    out = str(tmp_path / "parity.pb")
    assert main(["freeze", "--run-dir", two_phase_run.run_dir, "--optimize", "--out", out]) == 0
    assert "verified on 64 inputs" in capsys.readouterr().out
    run = load_run(two_phase_run.run_dir)
    with run.handle.session() as sess:
        live = sess.run(run.handle.tensor(run.probabilities), {run.handle.tensor(run.input): run.validation_images})
    frozen = tf1tune.load_frozen(out)
    assert not [op for op in frozen.graph.get_operations() if op.type.startswith("FusedBatchNorm")]
    with frozen.session() as sess:
        exported = sess.run(frozen.tensor(run.probabilities), {frozen.tensor(run.input): run.validation_images})
    np.testing.assert_allclose(exported, live, rtol=1e-5, atol=1e-6)
    assert np.array_equal(exported.argmax(1), live.argmax(1))
    assert main(["freeze", "--run-dir", str(tmp_path), "--out", str(tmp_path / "x.pb")]) == 2
    assert "not a finished `tf1tune finetune` run directory" in capsys.readouterr().err


def test_resume_inside_the_second_phase_keeps_each_phase_state(tmp_path):
    import shutil

    phases = [{"steps": 20, "trainable_scopes": ["DigitsCNN/Logits"], "learning_rate": 0.05},
              {"steps": 20, "trainable_scopes": ["DigitsCNN/Logits", "DigitsCNN/Conv2d_3"], "learning_rate": 0.005}]
    first = str(tmp_path / "first")
    run_finetune(make_config(checkpoint=SOURCE, out=first, phases=phases, checkpoint_every=10, keep_checkpoints=5),
                 progress=False)
    interrupted = str(tmp_path / "interrupted")  # what a run killed after step 30 (in phase 2) leaves behind
    os.makedirs(interrupted)
    for name in os.listdir(first):
        if name.startswith("model.ckpt-30") or name == "config.yaml":
            shutil.copy(os.path.join(first, name), interrupted)
    with open(os.path.join(first, "metrics.json")) as f:
        before = {"accuracy_before": json.load(f)["accuracy_before"]}
    with open(os.path.join(interrupted, "metrics.json"), "w") as f:
        json.dump(before, f)
    with open(os.path.join(interrupted, "checkpoint"), "w") as f:
        f.write('model_checkpoint_path: "model.ckpt-30"\nall_model_checkpoint_paths: "model.ckpt-30"\n')
    result = run_finetune(make_config(checkpoint=SOURCE, out=interrupted, phases=phases, resume=True), progress=False)
    assert result.steps == 40 and result.accuracy_before == before["accuracy_before"]
    at_30, at_40 = checkpoint_values(os.path.join(interrupted, "model.ckpt-30")), checkpoint_values(result.checkpoint)
    phase1_slot = "DigitsCNN/Logits/Conv2d_1x1/weights/phase1_0/Momentum"
    phase2_slot = "DigitsCNN/Conv2d_3/weights/phase2_0/Momentum"
    assert at_30[phase1_slot].tobytes() == at_40[phase1_slot].tobytes()  # phase 1's state kept, untouched in phase 2
    assert not np.array_equal(at_30[phase2_slot], at_40[phase2_slot])  # phase 2 continued from its own state
    assert not np.array_equal(at_30["DigitsCNN/Conv2d_3/weights"], at_40["DigitsCNN/Conv2d_3/weights"])


def test_run_directory_exports_to_tf2_with_its_trained_scopes_trainable(two_phase_run, tmp_path, capsys):
    out = str(tmp_path / "parity-tf2")
    assert main(["export-tf2", "--run-dir", two_phase_run.run_dir, "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "inference (training=False) vs TF1 session verified on 64 inputs" in printed
    loaded = tf.saved_model.load(out)
    variables = loaded.tf1_variables
    trained_by_phases = {n for n in variables if n.startswith(("DigitsCNN/Logits/", "DigitsCNN/Conv2d_3/"))
                         and "moving_" not in n}
    assert "DigitsCNN/Conv2d_3/weights" in trained_by_phases and "DigitsCNN/Logits/Conv2d_1x1/weights" in trained_by_phases
    assert {n for n, v in variables.items() if v.trainable} == trained_by_phases  # Conv2d_1/2, statistics: frozen
    values = checkpoint_values(two_phase_run.checkpoint)
    assert all(np.array_equal(v.numpy(), values[n]) for n, v in variables.items())
