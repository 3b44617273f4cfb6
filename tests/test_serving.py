"""What serving needs (issue 16): JPEG bytes in, label names out, in frozen graphs and SavedModels.

Why: TF Serving clients of old slim exports send encoded JPEGs and read a class name. The exported graph must
decode and resize in the graph exactly as TensorFlow decodes the same bytes, give the plain model's
probabilities on them, and name the top-1 class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tf1tune.cli import main
from tf1tune.data import load_dataset
from tf1tune.errors import ExportError
from tf1tune.export import freeze_model, read_graph_def, run_graph_def
from tf1tune.export.serving import encode_jpeg, read_labels_file, serving_graph

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "checkpoints" / "digits_cnn")
SOFTMAX = "DigitsCNN/Predictions/Softmax"
NAMES = [f"digit-{i}" for i in range(10)]


@pytest.fixture(scope="module")
def labels_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("labels") / "labels.txt"
    path.write_text("".join(f"{i}:{n}\n" for i, n in enumerate(NAMES)))  # slim's labels.txt form
    return str(path)


def _decoded(data: np.ndarray) -> np.ndarray:
    return np.stack([tf.image.resize(tf.cast(tf.io.decode_jpeg(b, channels=1), tf.float32), [8, 8]).numpy()
                     for b in data])


def _plain(images: np.ndarray) -> np.ndarray:
    import tf1tune

    frozen = freeze_model(tf1tune.load(DIGITS), [SOFTMAX], ["input"])
    return run_graph_def(frozen.graph_def, frozen.outputs, {"input:0": images})[0]


def test_frozen_graph_takes_jpeg_bytes_and_names_the_class(tmp_path, capsys, labels_file):
    out = tmp_path / "serving.pb"
    code = main(["freeze", DIGITS, "--inputs", "input", "--outputs", SOFTMAX, "--input-format", "jpeg",
                 "--labels", labels_file, "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert "serving graph verified" in stdout
    images = load_dataset("digits:val", (8, 8), 1).images[:20]
    data = encode_jpeg(images)
    probs, names = run_graph_def(read_graph_def(out), [f"{SOFTMAX}:0", "label:0"], {"image_bytes:0": data})
    expected = _plain(_decoded(data))
    np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-6)
    assert [n.decode() for n in names] == [NAMES[i] for i in expected.argmax(1)]
    assert not [n for n in read_graph_def(out).node if n.name == "input"]  # the float input is gone


def test_saved_model_takes_jpeg_bytes_in_eager_tf2(tmp_path, capsys, labels_file):
    out = tmp_path / "saved"
    code = main(["export-savedmodel", DIGITS, "--inputs", "input", "--outputs", SOFTMAX, "--input-format", "jpeg",
                 "--labels", labels_file, "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert "SavedModel" in stdout
    images = load_dataset("digits:val", (8, 8), 1).images[:12]
    data = encode_jpeg(images)
    loaded = tf.saved_model.load(str(out))
    result = loaded.signatures["serving_default"](image_bytes=tf.constant(list(data)))
    expected = _plain(_decoded(data))
    np.testing.assert_allclose(result["DigitsCNN_Predictions_Softmax"].numpy(), expected, rtol=0, atol=1e-6)
    assert [n.decode() for n in result["label"].numpy()] == [NAMES[i] for i in expected.argmax(1)]


def test_labels_only_keeps_the_tensor_input(tmp_path, capsys, labels_file):
    out = tmp_path / "labelled.pb"
    assert main(["freeze", DIGITS, "--inputs", "input", "--outputs", SOFTMAX, "--labels", labels_file,
                 "--out", str(out)]) == 0
    images = load_dataset("digits:val", (8, 8), 1).images[:5]
    probs, names = run_graph_def(read_graph_def(out), [f"{SOFTMAX}:0", "label:0"], {"input:0": images})
    assert [n.decode() for n in names] == [NAMES[i] for i in probs.argmax(1)]


def test_serving_bad_requests(tmp_path, capsys, tiny, labels_file):
    wrong = tmp_path / "three.txt"
    wrong.write_text("a\nb\nc\n")
    for argv, message in [
        ([DIGITS, "--inputs", "input", "--outputs", SOFTMAX, "--labels", str(wrong)], "3 labels given"),
        ([DIGITS, "--inputs", "input", "--outputs", SOFTMAX, "--input-format", "png"], "unknown input format 'png'"),
        ([tiny.frozen_binary, "--outputs", "probs", "--input-format", "jpeg"], "needs an image input"),
        ([DIGITS, "--inputs", "input", "--outputs", SOFTMAX, "--labels", str(tmp_path / "none.txt")],
         "cannot read labels file"),
    ]:
        code = main(["freeze", *argv, "--out", str(tmp_path / "x.pb")])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["three.txt"]
    assert read_labels_file(labels_file) == NAMES


def test_serving_graph_library_checks_the_label_count():
    import tf1tune

    frozen = freeze_model(tf1tune.load(DIGITS), [SOFTMAX], ["input"])
    with pytest.raises(ExportError, match="2 labels given, but output"):
        serving_graph(frozen.graph_def, frozen.inputs, frozen.outputs, labels=["a", "b"])
