"""Export (issue 5): frozen graphs and SavedModels that compute what their source computes.

Why: an export is only useful if it is provably the same model. Each test freezes a real source (the tiny model,
the shipped digits checkpoint, every weight-carrying file of the legacy corpus), loads the result back the way a
user would, and compares it with the live session on the restored checkpoint within an explicit tolerance; it
also checks that training machinery is gone, that bad requests fail with one line and leave nothing behind, and
that source files are never written to.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import tf1tune
from tests import model_factory
from tf1tune.cli import main
from tf1tune.export import (
    export_saved_model,
    freeze_model,
    optimize,
    read_graph_def,
    run_graph_def,
    session_runner,
    verify,
)
from tf1tune.export.rewrites import fold_batch_norms

DIGITS = str(Path(__file__).resolve().parents[1] / "checkpoints" / "digits_cnn")
SOFTMAX = "DigitsCNN/Predictions/Softmax"
RTOL = 1e-5
# Op types that only training needs: none may survive freezing.
TRAINING_OPS = {"PlaceholderWithDefault", "ApplyMomentum", "ResourceApplyMomentum", "SaveV2", "RestoreV2",
                "Assign", "AssignSub", "AssignAdd", "VariableV2", "Variable", "VarHandleOp", "If", "StatelessIf",
                "Switch", "Merge", "RandomUniform", "FusedBatchNormGradV3", "QueueDequeueManyV2", "ScalarSummary",
                "MergeSummary", "SparseSoftmaxCrossEntropyWithLogits"}


def _hashes(*folders: str) -> dict[str, str]:
    return {os.path.join(d, f): hashlib.sha256(Path(d, f).read_bytes()).hexdigest()
            for d in folders for f in sorted(os.listdir(d)) if os.path.isfile(os.path.join(d, f))}


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _digits_images(n: int = 6) -> np.ndarray:
    """Digit-like inputs in the range the net was trained on ([0, 255])."""
    return np.random.default_rng(7).uniform(0, 255, size=(n, 8, 8, 1)).astype(np.float32)


def _live(source: str, output: str, feeds: dict[str, np.ndarray], **options) -> np.ndarray:
    """The output of the live session on the restored checkpoint, in inference mode (defaults of placeholders)."""
    handle = tf1tune.load(source, **options)
    with handle.session() as sess:
        return sess.run(handle.tensor(output), {handle.tensor(k): v for k, v in feeds.items()})


def _frozen_output(pb: str, output: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """The output of a `.pb` loaded back with `tf1tune.load_frozen`."""
    handle = tf1tune.load_frozen(pb)
    with handle.session() as sess:
        return sess.run(handle.tensor(output), {handle.tensor(k): v for k, v in feeds.items()})


def _op_types(pb: str) -> set[str]:
    return {n.op for n in read_graph_def(pb).node}


# ---- the tiny model ---------------------------------------------------------------------------------------
def test_freeze_tiny_meta_matches_live_session_and_numpy(tmp_path, capsys, tiny):
    out = str(tmp_path / "tiny.pb")
    code, stdout, err = _cli(capsys, "freeze", tiny.meta, "--inputs", "x", "--outputs", "logits_out_final,probs",
                             "--out", out)
    assert code == 0, err
    assert "verified on" in stdout and out in stdout
    x = model_factory.sample_input(7)  # another batch size than the check used: the batch dimension is free
    logits = _frozen_output(out, "logits_out_final:0", {"x:0": x})
    np.testing.assert_allclose(logits, _live(tiny.meta, "logits_out_final:0", {"x:0": x}), rtol=RTOL)
    np.testing.assert_allclose(logits, model_factory.expected_logits(x), rtol=RTOL, atol=1e-6)
    graph_def = read_graph_def(out)
    assert not _op_types(out) & TRAINING_OPS
    assert not [n.name for n in graph_def.node if "Momentum" in n.name or n.name.startswith(("save/", "y"))]
    assert sorted(os.listdir(tmp_path)) == ["tiny.pb"]  # no temp file left


# ---- the shipped digits checkpoint ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_pb(tmp_path_factory) -> str:
    before = _hashes(DIGITS)
    out = str(tmp_path_factory.mktemp("digits") / "digits.pb")
    assert main(["freeze", DIGITS, "--inputs", "input", "--outputs", SOFTMAX, "--out", out]) == 0
    assert _hashes(DIGITS) == before  # the source is only read
    return out


def test_frozen_digits_gives_the_live_predictions(digits_pb):
    x = _digits_images()
    frozen = _frozen_output(digits_pb, SOFTMAX + ":0", {"input:0": x})
    np.testing.assert_allclose(frozen, _live(DIGITS, SOFTMAX + ":0", {"input:0": x}), rtol=RTOL, atol=1e-7)


def test_frozen_digits_has_no_training_switch_or_ops(digits_pb):
    graph_def = read_graph_def(digits_pb)
    assert not _op_types(digits_pb) & TRAINING_OPS
    assert not [n.name for n in graph_def.node
                if "Momentum" in n.name or n.name.startswith("save/") or n.name in ("is_training", "labels")]
    (placeholder,) = [n for n in graph_def.node if n.op == "Placeholder"]
    assert placeholder.name == "input"
    assert [d.size for d in placeholder.attr["shape"].shape.dim] == [-1, 8, 8, 1]
    assert not graph_def.library.function  # the batch-norm and dropout conditionals are gone, not hidden


def test_set_is_training_false_is_the_default(tmp_path, capsys, digits_pb):
    out = str(tmp_path / "set.pb")
    code, stdout, err = _cli(capsys, "freeze", DIGITS, "--inputs", "input", "--outputs", SOFTMAX,
                             "--set", "is_training=false", "--out", out)
    assert code == 0, err
    assert "is_training:0=False" in stdout
    x = _digits_images()
    np.testing.assert_array_equal(_frozen_output(out, SOFTMAX + ":0", {"input:0": x}),
                                  _frozen_output(digits_pb, SOFTMAX + ":0", {"input:0": x}))


def test_optimized_digits_folds_batch_norm_and_verifies(tmp_path, capsys):
    out = str(tmp_path / "opt.pb")
    code, stdout, err = _cli(capsys, "freeze", "--meta", os.path.join(DIGITS, "model.ckpt-1500.meta"), "--inputs",
                             "input", "--outputs", SOFTMAX, "--optimize", "--out", out)
    assert code == 0, err
    assert "verified on" in stdout
    ops = _op_types(out)
    assert not {op for op in ops if op.startswith("FusedBatchNorm")}
    assert "Identity" not in ops and not ops & TRAINING_OPS
    x = _digits_images()
    np.testing.assert_allclose(_frozen_output(out, SOFTMAX + ":0", {"input:0": x}),
                               _live(DIGITS, SOFTMAX + ":0", {"input:0": x}), rtol=RTOL, atol=1e-7)


def test_fold_batch_norms_in_numpy_matches_the_unfolded_graph():
    """Conv2D, depthwise conv and MatMul each followed by an inference-mode FusedBatchNormV3, folded and compared."""
    rng = np.random.default_rng(3)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 5, 5, 2], name="x")

        def bn(t, channels, name):
            stats = [tf.constant(rng.uniform(lo, hi, channels).astype(np.float32))
                     for lo, hi in ((0.5, 2), (-1, 1), (-1, 1), (0.1, 3))]  # gamma, beta, mean, variance
            return tf.compat.v1.nn.fused_batch_norm(t, *stats[:2], mean=stats[2], variance=stats[3], epsilon=1e-3,
                                                    is_training=False, name=name)[0]

        conv = tf.nn.conv2d(x, tf.constant(rng.normal(size=(3, 3, 2, 4)).astype(np.float32)), 1, "SAME")
        net = bn(conv, 4, "bn1")
        dw = tf.nn.depthwise_conv2d(net, tf.constant(rng.normal(size=(3, 3, 4, 2)).astype(np.float32)), [1, 1, 1, 1],
                                    "SAME")
        net = bn(dw, 8, "bn2")
        flat = tf.reshape(net, [-1, 5 * 5 * 8])
        mm = tf.matmul(flat, tf.constant(rng.normal(size=(200, 3)).astype(np.float32)))
        tf.identity(bn(tf.reshape(mm, [-1, 1, 1, 3]), 3, "bn3"), name="out")
    graph_def = graph.as_graph_def()
    folded = fold_batch_norms(graph_def)
    assert [n.op for n in folded.node if n.op.startswith("FusedBatchNorm")] == ["FusedBatchNormV3"]  # bn3: via Reshape
    data = {"x": rng.normal(size=(3, 5, 5, 2)).astype(np.float32)}
    (want,) = run_graph_def(graph_def, ["out"], data)
    (got,) = run_graph_def(folded, ["out"], data)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * np.abs(want).max())
    (fully,) = run_graph_def(optimize(graph_def, ["x"], ["out"]), ["out"], data)
    np.testing.assert_allclose(fully, want, rtol=RTOL, atol=RTOL * np.abs(want).max())


def test_net_source_freezes_with_its_checkpoint(tmp_path, capsys):
    out = str(tmp_path / "net.pb")
    code, stdout, err = _cli(capsys, "freeze", "--net", "digits_cnn", "--num-classes", "10", "--checkpoint", DIGITS,
                             "--outputs", SOFTMAX, "--out", out)
    assert code == 0, err
    assert "verified on" in stdout and os.path.isfile(out)


def test_net_source_exports_at_the_input_size_it_was_fine_tuned_at(tmp_path, capsys):
    # a net fine-tuned at another size than its default (digits_cnn: 8x8) exports at that size
    out, saved = str(tmp_path / "net16.pb"), str(tmp_path / "net16_sm")
    code, _, err = _cli(capsys, "freeze", "--net", "digits_cnn", "--input-size", "16", "12", "--checkpoint", DIGITS,
                        "--outputs", SOFTMAX, "--out", out)
    assert code == 0, err
    frozen = tf1tune.load_frozen(out)
    assert frozen.tensor("input:0").shape.as_list() == [None, 16, 12, 1]
    code, _, err = _cli(capsys, "export-savedmodel", "--net", "digits_cnn", "--input-size", "16", "12",
                        "--checkpoint", DIGITS, "--outputs", SOFTMAX, "--out", saved)
    assert code == 0, err
    signature = tf.saved_model.load(saved).signatures["serving_default"]
    assert signature.structured_input_signature[1]["input"].shape.as_list() == [None, 16, 12, 1]
    code, _, err = _cli(capsys, "freeze", DIGITS, "--input-size", "16", "16", "--outputs", SOFTMAX,
                        "--out", str(tmp_path / "x.pb"))
    assert code == 2 and "--input-size only applies to --net" in err


def test_saved_model_loads_in_eager_mode_with_the_same_outputs(tmp_path, capsys, digits_pb):
    out = str(tmp_path / "digits_sm")
    code, stdout, err = _cli(capsys, "export-savedmodel", DIGITS, "--inputs", "input", "--outputs", SOFTMAX,
                             "--out", out)
    assert code == 0, err
    assert "SavedModel verified on" in stdout
    assert tf.executing_eagerly()
    loaded = tf.saved_model.load(out)
    x = _digits_images()
    result = loaded.signatures["serving_default"](input=tf.constant(x))
    np.testing.assert_allclose(result["DigitsCNN_Predictions_Softmax"].numpy(),
                               _frozen_output(digits_pb, SOFTMAX + ":0", {"input:0": x}), rtol=RTOL, atol=1e-7)
    assert sorted(os.listdir(tmp_path)) == ["digits_sm"]  # the staging directory is gone


def test_saved_model_from_a_handle(tmp_path, tiny):
    check = export_saved_model(tf1tune.load(tiny.meta), ["x"], ["probs"], str(tmp_path / "sm"))
    assert check.max_rel <= RTOL
    result = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"](
        x=tf.constant(model_factory.sample_input()))
    logits = model_factory.expected_logits(model_factory.sample_input())
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(result["probs"].numpy(), expected, rtol=RTOL, atol=1e-6)


def test_onnx_export_matches_onnxruntime(tmp_path, capsys):
    pytest.importorskip("tf2onnx")
    ort = pytest.importorskip("onnxruntime")
    pb, onnx_file = str(tmp_path / "d.pb"), str(tmp_path / "d.onnx")
    code, stdout, err = _cli(capsys, "freeze", DIGITS, "--inputs", "input", "--outputs", SOFTMAX, "--optimize",
                             "--out", pb, "--onnx", onnx_file)
    assert code == 0, err
    assert "ONNX (onnxruntime vs frozen graph) verified on" in stdout
    x = _digits_images()
    (got,) = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"]).run(None, {"input:0": x})
    np.testing.assert_allclose(got, _live(DIGITS, SOFTMAX + ":0", {"input:0": x}), rtol=RTOL, atol=1e-6)
    assert sorted(os.listdir(tmp_path)) == ["d.onnx", "d.pb"]


# ---- the legacy corpus -----------------------------------------------------------------------------------
LEGACY_CASES = [  # (source, inputs, outputs, extra flags)
    ("mtcnn-pnet-tf1.8/PNet-18.meta", "input_image", "conv4_1/Softmax,conv4_2/BiasAdd", []),
    ("regression-ckpt-tf1.11/model.meta", "X", "pred", []),
    ("half_plus_two-v1-single-file/export.meta", "Placeholder", "Add", []),
    ("fc-layers-frozen/frozen.pb", "X", "output", ["--optimize"]),
    ("mnist-softmax-frozen/mnist.pb", "input", "softmax", ["--optimize"]),
]


@pytest.mark.parametrize("relative,inputs,outputs,flags", LEGACY_CASES, ids=[c[0].split("/")[0] for c in LEGACY_CASES])
def test_legacy_file_exports_and_verifies(tmp_path, capsys, legacy_dir, relative, inputs, outputs, flags):
    source = os.path.join(legacy_dir, relative)
    before = _hashes(os.path.dirname(source))
    out = str(tmp_path / "out.pb")
    code, stdout, err = _cli(capsys, "freeze", source, "--inputs", inputs, "--outputs", outputs, *flags, "--out", out)
    assert code == 0, err
    assert "verified on" in stdout
    assert _hashes(os.path.dirname(source)) == before
    graph_def = read_graph_def(out)
    assert not {n.op for n in graph_def.node} & TRAINING_OPS
    (placeholder,) = [n for n in graph_def.node if n.op == "Placeholder"]
    shape = placeholder.attr["shape"].shape
    assert shape.unknown_rank or not shape.dim or shape.dim[0].size == -1  # the batch dimension is free


def test_mtcnn_runs_at_any_batch_once_frozen(legacy_dir):
    handle = tf1tune.load(os.path.join(legacy_dir, "mtcnn-pnet-tf1.8/PNet-18.meta"))
    frozen = freeze_model(handle, ["conv4_1/Softmax", "conv4_2/BiasAdd"], ["input_image"])
    assert not frozen.notes
    x = np.random.default_rng(0).uniform(-1, 1, size=(256, 12, 12, 3)).astype(np.float32)
    full = run_graph_def(frozen.graph_def, frozen.outputs, {"input_image": x})
    live = session_runner(handle, frozen.outputs)({"input_image:0": x})
    for a, b in zip(full, live):
        np.testing.assert_allclose(a, b, rtol=RTOL)
    three = run_graph_def(frozen.graph_def, frozen.outputs, {"input_image": x[:3]})  # the source takes only 256
    for a, b in zip(three, full):
        np.testing.assert_allclose(a, b[:3], rtol=RTOL, atol=1e-7)


def test_mtcnn_batch_baked_into_a_reshape_stays_fixed_with_a_note(tmp_path, capsys, legacy_dir):
    out = str(tmp_path / "pnet.pb")
    code, stdout, err = _cli(capsys, "freeze", os.path.join(legacy_dir, "mtcnn-pnet-tf1.8/PNet-18.meta"),
                             "--inputs", "input_image", "--outputs", "conv4_1/Reshape_1", "--out", out)
    assert code == 0, err
    assert "verified on 256 inputs" in stdout
    assert "note: batch size kept at input_image: 256" in stdout and "conv4_1/Reshape_1" in stdout
    (placeholder,) = [n for n in read_graph_def(out).node if n.op == "Placeholder"]
    assert [d.size for d in placeholder.attr["shape"].shape.dim] == [256, 12, 12, 3]


def test_half_plus_two_from_tf_examples_verifies_on_given_data(legacy_dir):
    handle = tf1tune.load(os.path.join(legacy_dir, "half_plus_two-tf0.12-sharded", "export.meta"))
    frozen = freeze_model(handle, ["Identity"], ["tf_example"])
    examples = np.array([tf.train.Example(features=tf.train.Features(feature={
        "x": tf.train.Feature(float_list=tf.train.FloatList(value=[v]))})).SerializeToString()
        for v in (0.0, 1.0, 4.0)], dtype=object)
    check = verify(session_runner(handle, frozen.outputs), frozen.graph_def, frozen.inputs, frozen.outputs,
                   feeds={"tf_example": examples})
    assert check.max_abs == 0
    (y,) = run_graph_def(frozen.graph_def, frozen.outputs, {"tf_example": examples})
    np.testing.assert_allclose(np.reshape(y, -1), [2.0, 2.5, 4.0])


# ---- bad input --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv,message", [
    (["--outputs", "DigitsCNN/Predictions/Softmaxx"], r"no tensor named 'DigitsCNN/Predictions/Softmaxx' \(closest: "
                                                       r"DigitsCNN/Predictions/Softmax:0"),
    (["--checkpoint", "/nonexistent/model.ckpt", "--outputs", SOFTMAX], r"no checkpoint at '/nonexistent/model.ckpt'"),
    (["--inputs", "input", "--outputs", "total_loss"], r"need placeholder\(s\) labels:0 that are not inputs"),
    (["--inputs", "DigitsCNN/Conv2d_1/Conv2D", "--outputs", SOFTMAX], r"not a placeholder"),
    (["--outputs", SOFTMAX, "--set", "is_training"], r"write NAME=VALUE"),
], ids=["unknown-output", "missing-checkpoint", "training-only-placeholder", "input-not-placeholder", "bad-set"])
def test_bad_requests_fail_with_one_line_and_write_nothing(tmp_path, capsys, argv, message):
    import re

    before = _hashes(DIGITS)
    out = str(tmp_path / "never.pb")
    code, stdout, err = _cli(capsys, "freeze", DIGITS, *argv, "--out", out)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("tf1tune: error: ")
    assert re.search(message, err), err
    assert os.listdir(tmp_path) == []
    assert _hashes(DIGITS) == before


def test_graph_without_weights_for_its_variables_is_refused(tmp_path, capsys):
    (tmp_path / "alone").mkdir()
    meta = tmp_path / "alone" / "model.meta"
    meta.write_bytes(Path(DIGITS, "model.ckpt-1500.meta").read_bytes())
    code, _, err = _cli(capsys, "freeze", "--meta", str(meta), "--outputs", SOFTMAX, "--out", str(tmp_path / "x.pb"))
    assert code == 2 and "no saved value" in err and not (tmp_path / "x.pb").exists()


def test_verification_failure_raises_and_nothing_is_written(tmp_path, capsys, tiny):
    handle = tf1tune.load(tiny.meta)
    frozen = freeze_model(handle, ["probs"], ["x"])
    tampered = frozen.graph_def
    bias = next(n for n in tampered.node if n.name == "logits/bias")
    value = tf.make_ndarray(bias.attr["value"].tensor).copy()
    value[0] += 1e-2  # one logit only: the same shift on both would leave the softmax unchanged
    bias.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    with pytest.raises(tf1tune.ExportError, match=r"verification failed .*probs:0: max abs diff"):
        verify(session_runner(handle, frozen.outputs), tampered, frozen.inputs, frozen.outputs)
    # an existing SavedModel directory is never overwritten
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(tf1tune.ExportError, match="already exists"):
        export_saved_model(frozen.graph_def, frozen.inputs, frozen.outputs, str(tmp_path / "taken"))
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine" and len(os.listdir(tmp_path)) == 1


def test_optimize_names_a_bad_input(tiny):
    frozen = freeze_model(tf1tune.load(tiny.meta), ["probs"], ["x"])
    with pytest.raises(tf1tune.ExportError, match=r"input\(s\) hidden_out are not placeholders"):
        optimize(frozen.graph_def, ["hidden_out"], ["probs"])


def test_outputs_never_overwrite_source_files(tmp_path, capsys, tiny):
    """--out / --onnx naming a data shard, the state file, the .index or a SavedModel's files is refused."""
    import shutil

    source = str(tmp_path / "src")
    shutil.copytree(DIGITS, source)
    before = _hashes(source)
    freeze = ["freeze", source, "--inputs", "input", "--outputs", SOFTMAX]
    for flag, name in [("--out", "model.ckpt-1500.data-00000-of-00001"), ("--out", "checkpoint"),
                       ("--out", "model.ckpt-1500.meta"), ("--onnx", "model.ckpt-1500.index")]:
        extra = ["--out", str(tmp_path / "x.pb")] if flag == "--onnx" else []
        code, _, err = _cli(capsys, *freeze, *extra, flag, os.path.join(source, name))
        assert code == 2 and err.count("\n") == 1, err
        assert err.startswith(f"tf1tune: error: {flag} '") and "is a file of the source" in err
    assert _hashes(source) == before and not (tmp_path / "x.pb").exists()

    saved = str(tmp_path / "sm")
    export_saved_model(tf1tune.load(tiny.meta), ["x"], ["probs"], saved)
    saved_before = _hashes(saved, os.path.join(saved, "variables"))
    code, _, err = _cli(capsys, "freeze", saved, "--outputs", "probs", "--out", os.path.join(saved, "saved_model.pb"))
    assert code == 2 and "is a file of the source" in err
    code, _, err = _cli(capsys, "export-savedmodel", saved, "--outputs", "probs",
                        "--out", os.path.join(saved, "variables", "again"))
    assert code == 2 and "is inside the source SavedModel" in err
    assert _hashes(saved, os.path.join(saved, "variables")) == saved_before


def test_freeze_refuses_an_existing_out_without_overwrite(tmp_path, capsys):
    out = tmp_path / "digits.pb"
    out.write_bytes(b"keep me")
    argv = ["freeze", DIGITS, "--inputs", "input", "--outputs", SOFTMAX, "--out", str(out)]
    code, _, err = _cli(capsys, *argv)
    assert code == 2 and err.strip() == f"tf1tune: error: --out '{out}' exists; choose another --out or pass --overwrite"
    assert out.read_bytes() == b"keep me"
    code, stdout, _ = _cli(capsys, *argv, "--overwrite")
    assert code == 0 and "wrote" in stdout
    assert len(read_graph_def(str(out)).node) > 0


def test_export_model_from_python_freezes_verifies_and_writes(tmp_path):
    out = tmp_path / "digits.pb"
    result = tf1tune.export_model(DIGITS, inputs=["input"], outputs=["DigitsCNN/Predictions/Softmax"], optimize=True,
                                  pb=str(out))
    assert result.written == [str(out)] and result.check.max_abs <= 1e-5 * 1.0
    frozen = tf1tune.load_frozen(str(out))
    assert [t.name for t in frozen.inputs] == ["input:0"]
    with pytest.raises(tf1tune.ExportError, match="exists; choose another --out or pass --overwrite"):
        tf1tune.export_model(DIGITS, inputs=["input"], outputs=["DigitsCNN/Predictions/Softmax"], pb=str(out),
                             overwrite=False)

