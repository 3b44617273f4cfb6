"""TFLite export (issue 16): float and quantized models that are checked against the frozen graph before they exist.

Why: a model shipped to a phone is only useful if it still computes what the checkpoint computes. Each test
converts a real source (the shipped digits checkpoint, a short fine-tuning run of it, the tiny model), runs the
file that was written in the LiteRT interpreter the way a user would, and compares it with the frozen graph on
real data: float32 within the stated tolerance, quantized models by top-1 agreement. Bad requests fail with one
line (exit 2) and leave no file behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import tf1tune
from tf1tune.cli import main
from tf1tune.data import load_dataset
from tf1tune.errors import BadSourceError, ExportError
from tf1tune.export import freeze_model, run_graph_def
from tf1tune.export.tflite import QUANTIZE_MODES, TfliteModel, convert_tflite, export_tflite, read_labels, read_tflite

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "checkpoints" / "digits_cnn")
SOFTMAX = "DigitsCNN/Predictions/Softmax"


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def digits():
    """The shipped digits checkpoint frozen, with its training and validation images."""
    frozen = freeze_model(tf1tune.load(DIGITS), [SOFTMAX], ["input"])
    return frozen, load_dataset("digits:train", (8, 8), 1), load_dataset("digits:val", (8, 8), 1)


@pytest.fixture(scope="module")
def parity_run(tmp_path_factory):
    """A short run of the main job (digits -> odd/even), enough to be far from chance."""
    from tf1tune.train.config import make_config
    from tf1tune.train.loop import run_finetune

    out = str(tmp_path_factory.mktemp("runs") / "parity")
    config = make_config(str(ROOT / "configs" / "digits_parity.yaml"), checkpoint=DIGITS, out=out,
                         phases=[{"steps": 60, "trainable_scopes": ["DigitsCNN/Logits"], "learning_rate": 0.05}],
                         checkpoint_every=1000)
    return run_finetune(config, progress=False)


def _dir_files(path: Path) -> list[str]:
    return sorted(os.listdir(path))


def test_run_exports_to_int8_in_one_command_and_passes_its_verification(parity_run, tmp_path, capsys):
    out = tmp_path / "parity.tflite"
    code, stdout, err = _cli(capsys, "export-tflite", "--run-dir", parity_run.run_dir, "--quantize", "int8",
                             "--out", str(out))
    assert code == 0, err
    assert "TFLite (int8) verified on 360 inputs" in stdout and "top-1 agreement" in stdout
    assert _dir_files(tmp_path) == ["parity.tflite"]  # no temp file left
    # the written file, run as a user would, agrees with the run's frozen graph on the validation data
    from tf1tune.train.run_dir import load_run

    run = load_run(parity_run.run_dir)
    frozen = freeze_model(run.handle, [run.probabilities], [run.input])
    val = load_dataset("digits-parity:val", (8, 8), 1).images
    expected = run_graph_def(frozen.graph_def, frozen.outputs, {frozen.inputs[0]: val})[0]
    model = TfliteModel(read_tflite(out))
    assert model.inputs[0]["dtype"] == np.float32  # float input/output around the int8 body by default
    got = model.run([val])[0]
    assert np.mean(got.argmax(1) == expected.argmax(1)) >= 0.99
    assert np.max(np.abs(got - expected)) <= 0.1
    assert len(out.read_bytes()) <= 0.4 * frozen.graph_def.ByteSize()


def test_int8_io_takes_and_gives_int8_and_keeps_agreement(digits, tmp_path):
    frozen, train, val = digits
    check = export_tflite(frozen.graph_def, frozen.inputs, frozen.outputs, tmp_path / "d.tflite",
                          {"input": val.images}, quantize="int8", representative=train.images, io_type="int8")
    model = TfliteModel(read_tflite(tmp_path / "d.tflite"))
    assert model.inputs[0]["dtype"] == np.int8 and model.outputs[0]["dtype"] == np.int8
    assert check.agreement >= 0.99 and check.num_inputs == len(val)
    # quantize/dequantize by the model's own scale and zero point reproduce the checked outputs
    expected = run_graph_def(frozen.graph_def, frozen.outputs, {"input:0": val.images})[0]
    assert np.mean(model.run([val.images])[0].argmax(1) == expected.argmax(1)) == pytest.approx(check.agreement)


def test_float_tflite_is_within_its_tolerance_and_quantized_modes_agree(digits):
    frozen, train, val = digits
    expected = run_graph_def(frozen.graph_def, frozen.outputs, {"input:0": val.images})[0]
    for mode in QUANTIZE_MODES:
        blob = convert_tflite(frozen.graph_def, frozen.inputs, frozen.outputs, mode,
                              representative=train.images if mode == "int8" else None)
        got = TfliteModel(blob).run([val.images])[0]
        if mode == "none":  # the stated float tolerance: 1e-4 of the largest output
            assert np.max(np.abs(got - expected)) <= 1e-4 * np.max(np.abs(expected))
        else:
            assert np.mean(got.argmax(1) == expected.argmax(1)) >= 0.99, mode
            assert np.max(np.abs(got - expected)) <= 0.1, mode


def test_labels_are_stored_as_metadata_and_eval_uses_them(digits, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"digit-{i}\n" for i in range(10)))
    out = tmp_path / "d.tflite"
    code, stdout, err = _cli(capsys, "export-tflite", DIGITS, "--inputs", "input", "--outputs", SOFTMAX,
                             "--labels", str(labels), "--out", str(out))
    assert code == 0, err
    assert "10 labels as metadata" in stdout
    assert read_labels(out.read_bytes()) == [f"digit-{i}" for i in range(10)]
    bad = tmp_path / "three.txt"
    bad.write_text("a\nb\nc\n")
    code, _, err = _cli(capsys, "export-tflite", DIGITS, "--inputs", "input", "--outputs", SOFTMAX,
                        "--labels", str(bad), "--out", str(tmp_path / "x.tflite"))
    assert code == 2 and "names 3 classes" in err and not (tmp_path / "x.tflite").exists()


@pytest.mark.parametrize("argv, message", [
    (["--quantize", "int4"], "unknown --quantize 'int4'; use one of none, dynamic, float16, int8"),
    (["--quantize", "int8"], "--quantize int8 needs calibration data"),
    (["--io-type", "int8"], "--io-type int8 needs --quantize int8"),
    (["--quantize", "int8", "--representative-data", "no/such/dir"], "data source 'no/such/dir' does not exist"),
    (["--quantize", "int8", "--representative-data", "digits:train", "--max-prob-diff", "0"],
     "TFLite (int8) verification failed"),
])
def test_bad_requests_fail_with_one_line_and_write_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "m.tflite"
    code, _, err = _cli(capsys, "export-tflite", DIGITS, "--inputs", "input", "--outputs", SOFTMAX, *argv,
                        "--out", str(out))
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert _dir_files(tmp_path) == []


def test_representative_data_of_the_wrong_shape_is_refused(digits, tiny, tmp_path, capsys):
    frozen, _, _ = digits
    with pytest.raises(ExportError, match=r"representative data has shape \[5, 4, 4, 1\], but input 'input' takes"):
        convert_tflite(frozen.graph_def, frozen.inputs, frozen.outputs, "int8",
                       representative=np.zeros((5, 4, 4, 1), np.float32))
    # images for a model whose input is not an image batch
    code, _, err = _cli(capsys, "export-tflite", tiny.frozen_binary, "--outputs", "probs", "--quantize", "int8",
                        "--representative-data", "digits:train", "--out", str(tmp_path / "t.tflite"))
    assert code == 2 and "the model's input has shape [None, 4]" in err
    assert _dir_files(tmp_path) == []


def test_a_file_that_is_not_tflite_is_one_line(tmp_path, capsys):
    fake = tmp_path / "fake.tflite"
    fake.write_bytes(b"\x00" * 64)
    with pytest.raises(BadSourceError, match="is not a TFLite model"):
        read_tflite(fake)
    code, _, err = _cli(capsys, "eval", str(fake), "--data", "digits:val")
    assert code == 2 and "is not a TFLite model" in err and len(err.strip().splitlines()) == 1
    # right identifier, broken body: the interpreter's refusal is one line too
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"\x10\x00\x00\x00TFL3" + b"\xff" * 56)
    code, _, err = _cli(capsys, "eval", str(broken), "--data", "digits:val")
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_tiny_float_model_converts_and_matches(tiny, tmp_path, capsys):
    out = tmp_path / "tiny.tflite"
    code, stdout, err = _cli(capsys, "export-tflite", tiny.frozen_binary, "--outputs", "probs", "--out", str(out))
    assert code == 0, err
    assert "TFLite (none) verified" in stdout
    from tests import model_factory

    x = model_factory.sample_input(7)
    logits = model_factory.expected_logits(x)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(TfliteModel(out.read_bytes()).run([x])[0], probs, rtol=0, atol=1e-5)


def test_existing_out_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "m.tflite"
    out.write_bytes(b"old")
    code, _, err = _cli(capsys, "export-tflite", DIGITS, "--inputs", "input", "--outputs", SOFTMAX, "--out", str(out))
    assert code == 2 and "exists" in err and out.read_bytes() == b"old"
    code, _, err = _cli(capsys, "export-tflite", DIGITS, "--inputs", "input", "--outputs", SOFTMAX, "--out", str(out),
                        "--overwrite")
    assert code == 0, err
    assert read_tflite(out)[4:8] == b"TFL3"


def test_tensorflow_interpreter_is_the_fallback_without_litert(digits, monkeypatch):
    import sys

    import tensorflow as tf

    from tf1tune.export import tflite_runtime

    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # import fails as if not installed
    assert tflite_runtime._interpreter_class() is tf.lite.Interpreter
    frozen, _, val = digits
    blob = convert_tflite(frozen.graph_def, frozen.inputs, frozen.outputs)
    expected = run_graph_def(frozen.graph_def, frozen.outputs, {"input:0": val.images[:8]})[0]
    np.testing.assert_allclose(TfliteModel(blob).run([val.images[:8]])[0], expected, rtol=0, atol=1e-4)
