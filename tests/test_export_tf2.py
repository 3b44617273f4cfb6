"""TF1 models into TF2 and Keras 3 (issue 18): `export-tf2`, fine-tuned by Keras 3 in a process without tf1tune.

Why: the export is only worth something if plain TensorFlow 2 + Keras 3 can train it and it is provably the same
model. For each route (slim net + checkpoint, `.meta` + checkpoint, frozen `.pb` with a grafted head) the test
exports with tf1tune, then runs `tests/keras_finetune_script.py` in a fresh Python process (no tf1tune import, no
`TF_USE_LEGACY_KERAS`): the layer's outputs at step 0 equal the TF1 session's within 1e-5, `model.fit` runs a few
dozen steps, the weights exported as frozen stay bit-identical, the trained ones move, and the `.keras` file
reloads with the same predictions. Bad sources fail with one line, exit 2, and leave nothing behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import tf1tune
from tf1tune.cli import main
from tf1tune.errors import ExportError
from tf1tune.export.tf2 import export_tf2
from tf1tune.export.tf2_sources import load_slim_switchable
from tf1tune.graft import graft, unfreeze

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "checkpoints" / "digits_cnn")
SCRIPT = str(ROOT / "tests" / "keras_finetune_script.py")
TOL = 1e-5


def _digits(n: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """The first `n` digits as the net expects them ([0, 255]) and the parity task's labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images[:n, :, :, None] * (255.0 / 16.0)).astype(np.float32), (d.target[:n] % 2).astype(np.int64)


def _fresh_keras(export_dir: str, data: dict[str, np.ndarray], optimizer: str, tmp: Path) -> dict:
    """Run the Keras 3 fine-tuning script in a new process with a clean environment; its JSON result."""
    np.savez(tmp / "data.npz", **data)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_USE_LEGACY_KERAS")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    proc = subprocess.run([sys.executable, SCRIPT, export_dir, str(tmp / "data.npz"), optimizer,
                           str(tmp / "result.json")], cwd=tmp, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp / "result.json").read_text())


def _check_finetune(result: dict, frozen: list[str], trained: list[str]) -> None:
    assert result["keras"].startswith("3.") and not result["tf1tune_imported"] and result["legacy_keras_env"] is None
    assert result["step0_max_abs"] <= TOL
    assert result["steps"] >= 24
    assert result["loss"][1] < result["loss"][0]
    for name in frozen:  # Keras names: scope slashes become underscores
        key = name.replace("/", "_")
        assert result["frozen_identical"][key], f"{name} moved although exported as frozen"
    for name in trained:
        assert result["trained_moved"][name.replace("/", "_")] > 0, f"{name} did not train"
    assert "new_head/kernel" in result["trained_moved"] and result["trained_moved"]["new_head/kernel"] > 0
    assert result["reload_max_abs"] == 0.0


def test_slim_route_fine_tunes_in_keras3(tmp_path: Path) -> None:
    handle = load_slim_switchable("digits_cnn", 10, checkpoint=DIGITS)
    out = str(tmp_path / "slim-tf2")
    report = export_tf2(handle, ["global_pool"], out, trainable_scopes=["DigitsCNN/Conv2d_3"])
    assert report.switches == ["is_training:0"]
    assert report.inference.max_rel <= TOL and report.training is not None and report.training.max_rel <= TOL
    assert "DigitsCNN/Conv2d_3/weights" in report.trainable
    assert {"DigitsCNN/Conv2d_1/weights", "DigitsCNN/Conv2d_3/BatchNorm/moving_mean"} <= set(report.frozen)

    x, y = _digits()
    g = handle.graph
    moving = [v for v in handle.variables if "moving_" in v.op.name]
    with handle.session() as sess:
        feats = g.get_tensor_by_name("DigitsCNN/global_pool:0")
        expected = sess.run(feats, {"input:0": x})
        expected_training = sess.run(feats, {"input:0": x, "is_training:0": True})
        sess.run(g.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS), {"input:0": x, "is_training:0": True})
        moving_after = sess.run([v.read_value() for v in moving])
    data = {"x": x, "y": y, "expected": expected, "expected_training": expected_training,
            "moving_names": np.array([v.op.name for v in moving]),
            "moving_after": np.concatenate([m.ravel() for m in moving_after])}
    result = _fresh_keras(out, data, "adam", tmp_path)
    assert result["training_max_abs"] <= TOL
    assert result["moving_max_abs"] <= 1e-6
    _check_finetune(result, frozen=["DigitsCNN/Conv2d_1/weights", "DigitsCNN/Conv2d_2/BatchNorm/gamma",
                                    "DigitsCNN/Conv2d_3/BatchNorm/moving_mean"],
                    trained=["DigitsCNN/Conv2d_3/weights", "DigitsCNN/Conv2d_3/BatchNorm/beta"])


def test_meta_route_fine_tunes_in_keras3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "meta-tf2")
    code = main(["export-tf2", DIGITS, "--outputs", "DigitsCNN/global_pool", "--trainable-scopes",
                 "DigitsCNN/Conv2d_3,DigitsCNN/Conv2d_2", "--out", out])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "training sets is_training:0" in printed
    x, y = _digits()
    handle = tf1tune.load(DIGITS)
    with handle.session() as sess:
        expected = sess.run(handle.tensor("DigitsCNN/global_pool"), {handle.tensor("input"): x})
    loaded = tf.saved_model.load(out)  # reference variables came out as real TF2 variables, under their TF1 names
    weights = loaded.tf1_variables["DigitsCNN/Conv2d_1/weights"]
    assert isinstance(weights, tf.Variable) and weights.name == "DigitsCNN/Conv2d_1/weights:0"
    assert not weights.trainable and loaded.tf1_variables["DigitsCNN/Conv2d_2/weights"].trainable
    assert not loaded.tf1_variables["DigitsCNN/Conv2d_2/BatchNorm/moving_mean"].trainable
    reader = tf.train.load_checkpoint(DIGITS)
    assert np.array_equal(weights.numpy(), reader.get_tensor("DigitsCNN/Conv2d_1/weights"))
    assert not any("Momentum" in n or "global_step" in n for n in loaded.tf1_variables)
    served = loaded.signatures["serving_default"](input=tf.constant(x))["DigitsCNN_global_pool"]
    assert np.max(np.abs(served.numpy() - expected)) <= TOL * np.max(np.abs(expected))

    result = _fresh_keras(out, {"x": x, "y": y, "expected": expected}, "momentum", tmp_path)
    _check_finetune(result, frozen=["DigitsCNN/Conv2d_1/weights", "DigitsCNN/Conv2d_1/BatchNorm/beta",
                                    "DigitsCNN/Conv2d_3/BatchNorm/moving_variance"],
                    trained=["DigitsCNN/Conv2d_2/weights", "DigitsCNN/Conv2d_3/weights"])

    # The TF2 run's object-based checkpoint, compared with the TF1 source under the TF1 names (inspect and diff).
    tf2_run = str(tmp_path / "tf2-run" / "ckpt")
    assert main(["diff", DIGITS, tf2_run, "--json"]) == 0
    diff = json.loads(capsys.readouterr().out)
    assert {"DigitsCNN/Conv2d_1/weights", "DigitsCNN/Conv2d_1/BatchNorm/moving_mean",
            "DigitsCNN/Conv2d_3/BatchNorm/moving_variance"} <= set(diff["unchanged"])
    assert {"DigitsCNN/Conv2d_2/weights", "DigitsCNN/Conv2d_3/BatchNorm/beta"} <= set(diff["changed"])
    assert "DigitsCNN/Conv2d_1/weights/Momentum" in diff["only_in_a"] and "global_step" in diff["only_in_a"]
    assert not any(n.startswith("DigitsCNN/") and "Momentum" not in n and "Logits" not in n for n in diff["only_in_a"])
    assert main(["inspect", tf2_run, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["format"] == "tf2-object"
    assert "DigitsCNN/Conv2d_1/weights" in {v["name"] for v in summary["variables"]}
    assert main(["diff", DIGITS, out]) == 0  # the export itself (a SavedModel directory): every weight identical
    printed = capsys.readouterr().out
    assert "0 changed, 15 bit-identical" in printed  # the 15 variables global_pool needs


def test_frozen_route_with_grafted_head_fine_tunes_in_keras3(tiny, tmp_path: Path) -> None:
    handle = unfreeze(tf1tune.load_frozen(tiny.frozen_binary), ["hidden"])  # constants back into variables
    handle.graph.seed = 0  # a seeded head: some unseeded draws leave every ReLU of the 3 dead, and nothing trains
    head = graft(handle, "Relu:0", "dense(3, relu)", scope="head")
    out = str(tmp_path / "frozen-tf2")
    report = export_tf2(handle, [head.output.name], out, trainable_scopes=["head"], allow_fresh=True)
    assert report.trainable == ["head/dense_0/biases", "head/dense_0/weights"]
    assert report.frozen == ["hidden/bias", "hidden/kernel"]
    assert report.inference.max_abs == 0.0
    x = np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    loaded = tf.saved_model.load(out)
    kernel = loaded.tf1_variables["hidden/kernel"].numpy()
    from tests.model_factory import weights
    assert np.array_equal(kernel, weights()["hidden/kernel"])
    exported = {name: v.numpy() for name, v in loaded.tf1_variables.items()}
    with handle.session() as sess, handle.graph.as_default():  # the TF1 graph, holding the exported values
        for v in handle.variables:
            v.load(exported[v.op.name], sess)
        expected = sess.run(head.output, {handle.tensor("x"): x})
    result = _fresh_keras(out, {"x": x, "y": y, "expected": expected}, "rmsprop", tmp_path)
    _check_finetune(result, frozen=["hidden/kernel", "hidden/bias"], trained=["head/dense_0/weights"])


def test_grafted_head_values_match_the_tf1_session(tiny, tmp_path: Path) -> None:
    """The head's (freshly initialised) values in the export are those of the TF1 session it was checked on."""
    handle = tf1tune.load_frozen(tiny.frozen_binary)
    head = graft(handle, "Relu:0", "dense(2)", scope="head")
    with pytest.raises(ExportError, match="no saved value"):
        export_tf2(handle, [head.output.name], str(tmp_path / "refused"))
    assert not (tmp_path / "refused").exists()
    report = export_tf2(handle, [head.output.name], str(tmp_path / "ok"), allow_fresh=True)
    assert report.inference.max_abs == 0.0 and report.notes


def _scatter_meta(folder: Path) -> str:
    """A .meta whose output needs a ScatterAdd on a reference variable (no resource-variable form in the rewrite)."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        v = tf.compat.v1.Variable(tf.zeros([3]), name="v", use_resource=False)
        bumped = tf.compat.v1.scatter_add(v, [0], [1.0])
        tf.identity(x + bumped, name="y")
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(folder / "model.ckpt"))
    return str(folder / "model.ckpt.meta")


def test_op_tf2_cannot_wrap_is_one_line_exit_2_nothing_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    meta = _scatter_meta(src)
    before = sorted(os.listdir(tmp_path))
    code = main(["export-tf2", meta, "--outputs", "y", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "ScatterAdd" in err and "reference variable 'v'" in err
    assert sorted(os.listdir(tmp_path)) == before


def test_existing_out_and_unknown_scope_fail_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "f").write_text("x")
    code = main(["export-tf2", DIGITS, "--outputs", "DigitsCNN/global_pool", "--out", str(tmp_path / "taken")])
    assert code == 2 and "already exists" in capsys.readouterr().err
    code = main(["export-tf2", DIGITS, "--outputs", "DigitsCNN/global_pool", "--trainable-scopes", "DigitsCNN/Conv9",
                 "--out", str(tmp_path / "new")])
    err = capsys.readouterr().err
    assert code == 2 and "DigitsCNN/Conv2d_3" in err and not (tmp_path / "new").exists()
    code = main(["export-tf2", DIGITS, "--outputs", "DigitsCNN/global_pool", "--optimize", "--out", str(tmp_path / "n")])
    assert code == 2 and "--optimize" in capsys.readouterr().err


def test_real_tf18_graph_exports_exactly(legacy_dir: str, tmp_path: Path) -> None:
    """MTCNN's PNet as TF 1.8 saved it (reference variables, a training graph with its optimizer): the export holds
    its 11 weights as TF2 variables and reproduces the TF1 session exactly."""
    handle = tf1tune.load(os.path.join(legacy_dir, "mtcnn-pnet-tf1.8", "PNet-18.meta"))
    assert {op.type for op in handle.graph.get_operations()} >= {"VariableV2"}
    report = export_tf2(handle, ["conv4_1/Reshape_1"], str(tmp_path / "pnet"), inputs=["input_image"])
    assert report.inference.max_abs == 0.0 and len(report.trainable) == 11
    loaded = tf.saved_model.load(str(tmp_path / "pnet"))
    reader = tf.train.load_checkpoint(handle.checkpoint)
    assert all(np.array_equal(v.numpy(), reader.get_tensor(n)) for n, v in loaded.tf1_variables.items())
