"""`tf1tune eval` and the pictures (issue 16): the same model gives the same figures in every format.

Why: a user compares the fine-tuned checkpoint with what ships (frozen graph, SavedModel, ONNX, TFLite). Each
format of the shipped digits checkpoint is evaluated on the same validation data; the float formats must give
the checkpoint's own accuracy (0.9972, README) and confusion matrix exactly, int8 TFLite within a step or two;
the JSON is strict JSON, the PNG is a PNG; TensorBoard's own reader finds a run's scalars.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tf1tune.cli import main
from tf1tune.evaluation import evaluate, open_model

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "checkpoints" / "digits_cnn")
SOFTMAX = "DigitsCNN/Predictions/Softmax"
PNG = b"\x89PNG\r\n\x1a\n"


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def formats(tmp_path_factory):
    """The digits checkpoint exported to every format, by kind."""
    root = tmp_path_factory.mktemp("formats")
    model = ["--inputs", "input", "--outputs", SOFTMAX]
    assert main(["freeze", DIGITS, *model, "--out", str(root / "d.pb"), "--onnx", str(root / "d.onnx")]) == 0
    assert main(["export-savedmodel", DIGITS, *model, "--out", str(root / "saved")]) == 0
    assert main(["export-tflite", DIGITS, *model, "--out", str(root / "d.tflite")]) == 0
    assert main(["export-tflite", DIGITS, *model, "--quantize", "int8", "--representative-data", "digits:train",
                 "--out", str(root / "d8.tflite")]) == 0
    return {"checkpoint": DIGITS, "frozen": str(root / "d.pb"), "saved_model": str(root / "saved"),
            "onnx": str(root / "d.onnx"), "tflite": str(root / "d.tflite"), "int8": str(root / "d8.tflite")}


@pytest.fixture(scope="module")
def reference():
    return evaluate(open_model(DIGITS), "digits:val")


def test_checkpoint_gives_its_stated_accuracy_and_consistent_metrics(reference):
    assert reference.kind == "meta" and reference.examples == 360
    assert reference.accuracy == pytest.approx(0.9972, abs=1e-4)
    matrix = np.array(reference.confusion)
    assert matrix.shape == (10, 10) and matrix.sum() == 360
    assert np.trace(matrix) / 360 == pytest.approx(reference.accuracy)
    # recall of a class = its diagonal cell over its row, as scikit-learn says
    np.testing.assert_allclose(reference.recall, np.diag(matrix) / matrix.sum(1))
    assert reference.top5 is not None and reference.top5 >= reference.accuracy


@pytest.mark.parametrize("kind", ["frozen", "saved_model", "onnx", "tflite"])
def test_every_float_format_gives_the_checkpoint_figures(formats, reference, kind):
    report = evaluate(open_model(formats[kind]), "digits:val")
    assert report.kind == kind
    assert report.confusion == reference.confusion and report.accuracy == reference.accuracy


def test_int8_tflite_stays_within_two_images(formats, reference):
    report = evaluate(open_model(formats["int8"]), "digits:val")
    assert abs(report.accuracy - reference.accuracy) * 360 <= 2


def test_cli_table_json_and_png(formats, tmp_path, capsys):
    png = tmp_path / "confusion.png"
    code, out, err = _cli(capsys, "eval", formats["tflite"], "--data", "digits:val", "--png", str(png))
    assert code == 0, err
    assert "accuracy 0.9972" in out and "confusion matrix" in out and "precision" in out
    assert png.read_bytes().startswith(PNG)

    def no_constants(name: str) -> None:
        raise AssertionError(f"not strict JSON: {name}")

    code, out, err = _cli(capsys, "eval", formats["onnx"], "--data", "digits:val", "--json")
    assert code == 0, err
    data = json.loads(out, parse_constant=no_constants)
    assert data["accuracy"] == pytest.approx(0.9972, abs=1e-4) and len(data["classes"]) == 10
    assert {"name", "precision", "recall", "f1", "support"} == set(data["classes"][0])
    assert sum(map(sum, data["confusion_matrix"])) == 360


def test_run_directory_evaluates_on_its_task(tmp_path, capsys):
    from tf1tune.train.config import make_config
    from tf1tune.train.loop import run_finetune

    run = run_finetune(make_config(str(ROOT / "configs" / "digits_parity.yaml"), checkpoint=DIGITS,
                                   out=str(tmp_path / "run"), checkpoint_every=1000,
                                   phases=[{"steps": 40, "trainable_scopes": ["DigitsCNN/Logits"],
                                            "learning_rate": 0.05}]), progress=False)
    code, out, err = _cli(capsys, "eval", run.run_dir, "--data", "digits-parity:val", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["kind"] == "run" and data["top5_accuracy"] is None  # 2 classes: no top-5
    assert [c["name"] for c in data["classes"]] == ["even", "odd"]
    assert data["accuracy"] == pytest.approx(run.accuracy_after, abs=1e-9)  # what the run measured itself


@pytest.mark.parametrize("argv, message", [
    (["no/such/model", "--data", "digits:val"], "model 'no/such/model' does not exist"),
    ([DIGITS, "--data", "digits:nope"], "data source 'digits:nope' does not exist"),
    ([DIGITS, "--data", "digits:val", "--png", "no/such/dir/c.png"], "does not exist; create it first"),
])
def test_eval_bad_input_is_one_line(capsys, argv, message):
    code, _, err = _cli(capsys, "eval", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
