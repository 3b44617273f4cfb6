"""`evaluate`: how good a classifier is on labelled data, in any format tf1tune reads or writes.

`open_model` gives one `Classifier` (images in, one score row per image out) for a checkpoint, a `.meta`, a
fine-tuning run directory, a frozen `.pb`, a SavedModel, an ONNX file (onnxruntime) or a TFLite file (LiteRT).
TensorFlow sources are frozen first (`tf1tune.export.freeze_model`: inference mode, `is_training` false), so
they are evaluated exactly as they would be exported. The metrics come from scikit-learn: accuracy, top-5
accuracy (when the model has more than 5 classes), precision, recall and F1 per class (and macro averages) and
the confusion matrix (rows: true class, columns: predicted class).

Example:
    >>> from tf1tune.evaluation import evaluate, open_model
    >>> report = evaluate(open_model("checkpoints/digits_cnn"), "digits:val")
    >>> round(report.accuracy, 4)
    0.9972
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tf1tune.errors import DataError, ExportError, SourceNotFoundError, Tf1tuneError, first_line

BATCH = 128


@dataclass
class Classifier:
    """A model reduced to what evaluation needs.

    Attributes:
        source: The path it was opened from.
        kind: `checkpoint`, `meta`, `run`, `frozen`, `saved_model`, `onnx` or `tflite`.
        image_shape: `(height, width, channels)` of the images it takes.
        predict: float32 images `[N, H, W, C]` in [0, 255] -> scores `[N, K]` (probabilities or logits).
        labels: Class names the model carries (a TFLite `labels` metadata entry), if any.
    """

    source: str
    kind: str
    image_shape: tuple[int, int, int]
    predict: Callable[[np.ndarray], np.ndarray]
    labels: list[str] | None = None


def _image_shape(shape: Sequence[Any], where: str) -> tuple[int, int, int]:
    dims = list(shape)
    if len(dims) != 4 or any(not isinstance(d, (int, np.integer)) or d is None or d <= 0 for d in dims[1:]):
        raise ExportError(f"{where} takes input of shape {dims}; evaluation needs an image batch [N, H, W, C] of "
                          "known size")
    return int(dims[1]), int(dims[2]), int(dims[3])


def _pick(candidates: list[Any], what: str, flag: str, source: str) -> Any:
    if len(candidates) == 1:
        return candidates[0]
    names = ", ".join(t.name for t in candidates) or "none"
    raise ExportError(f"cannot tell which tensor of '{source}' is the {what} (candidates: {names}); name it with {flag}")


def _graph_classifier(source: str, inputs: str | None, outputs: str | None, run_dir: bool) -> Classifier:
    import tensorflow as tf

    import tf1tune
    from tf1tune.export.freeze import freeze_model

    if run_dir:
        from tf1tune.train.run_dir import load_run

        run = load_run(source)
        handle, in_name, out_name, kind = run.handle, inputs or run.input, outputs or run.probabilities, "run"
        settings = run.settings  # the source's is_training switches: False
    else:
        handle = tf1tune.load(source)
        kind = handle.kind
        if inputs:
            in_name = inputs
        else:
            images = [t for t in handle.inputs if t.dtype.is_floating and t.shape.rank == 4]
            in_name = _pick(images, "image input", "--inputs NAME", source).name
        if outputs:
            out_name = outputs
        else:
            signature = (handle.signatures or {}).get("serving_default", {}).get("outputs", {})
            scores = [handle.tensor(n) for n in signature.values()] if signature else handle.outputs
            scores = [t for t in scores if t.dtype.is_floating and t.shape.rank == 2]
            out_name = _pick(scores, "score output", "--outputs NAME", source).name
    frozen = freeze_model(handle, [out_name], [in_name], settings if run_dir else None)
    shape = _image_shape(handle.tensor(in_name).shape.as_list(), f"input '{in_name}'")
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(frozen.graph_def, name="")
    session = tf.compat.v1.Session(graph=graph)
    x, y = graph.get_tensor_by_name(frozen.inputs[0]), graph.get_tensor_by_name(frozen.outputs[0])

    def predict(images: np.ndarray) -> np.ndarray:
        return np.concatenate([session.run(y, {x: images[i:i + BATCH]}) for i in range(0, len(images), BATCH)])
    return Classifier(source, kind, shape, predict)


def _onnx_classifier(source: str) -> Classifier:
    try:
        import onnxruntime
    except ImportError as e:
        raise Tf1tuneError(f"evaluating an ONNX model needs onnxruntime ({e}); pip install 'tf1tune[onnx]'") from e
    try:
        session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unreadable models
        from tf1tune.errors import BadSourceError

        raise BadSourceError(f"'{source}' is not an ONNX model onnxruntime can load: {first_line(e)}") from e
    first_in, first_out = session.get_inputs()[0], session.get_outputs()[0].name
    shape = [d if isinstance(d, int) else None for d in first_in.shape]
    fixed = shape[0] if isinstance(shape[0], int) else None
    step = fixed or BATCH

    def predict(images: np.ndarray) -> np.ndarray:
        return np.concatenate([session.run([first_out], {first_in.name: images[i:i + step]})[0]
                               for i in range(0, len(images), step)])
    return Classifier(source, "onnx", _image_shape(shape, f"ONNX input '{first_in.name}'"), predict)


def _tflite_classifier(source: str) -> Classifier:
    from tf1tune.export.tflite import TfliteModel, read_labels, read_tflite

    blob = read_tflite(source)
    model = TfliteModel(blob, where=f"'{source}'")
    shape = _image_shape(model.input_shapes[0], f"TFLite input '{model.inputs[0]['name']}'")
    return Classifier(source, "tflite", shape, lambda images: model.run([images])[0], read_labels(blob))


def open_model(source: str | os.PathLike[str], inputs: str | None = None, outputs: str | None = None) -> Classifier:
    """A `Classifier` for `source`, picked by what the path is (see the module docstring).

    Args:
        source: A checkpoint, `.meta`, run directory, `.pb`, SavedModel directory, `.onnx` or `.tflite`.
        inputs: The image input tensor of a TensorFlow source (default: its only float 4-D placeholder).
        outputs: The score output of a TensorFlow source (default: its only float 2-D output; a run's
            probabilities; a SavedModel's `serving_default` output).

    Raises:
        SourceNotFoundError: `source` does not exist.
        BadSourceError: The file is not what its name says.
        ExportError: The input or output cannot be told apart, or is not an image batch / score matrix.
    """
    source = os.fspath(source)
    if not os.path.exists(source) and not os.path.exists(source + ".index") and not source.startswith("slim:"):
        raise SourceNotFoundError(f"model '{source}' does not exist; give a checkpoint, run directory, .pb, "
                                  "SavedModel directory, .onnx or .tflite")
    if (inputs or outputs) and source.lower().endswith((".onnx", ".tflite")):
        raise ExportError("--inputs/--outputs apply to TensorFlow models; ONNX and TFLite use their first input "
                          "and output")
    if source.lower().endswith(".tflite"):
        return _tflite_classifier(source)
    if source.lower().endswith(".onnx"):
        return _onnx_classifier(source)
    is_run = os.path.isfile(os.path.join(source, "metrics.json"))
    return _graph_classifier(source, inputs, outputs, is_run)


@dataclass
class Report:
    """What `evaluate` measured (see `to_dict` for the JSON form)."""

    model: str
    kind: str
    data: str
    examples: int
    accuracy: float
    top5: float | None
    class_names: list[str]
    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]
    confusion: list[list[int]]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: every number a float or int, no NaN."""
        return {
            "model": self.model, "kind": self.kind, "data": self.data, "examples": self.examples,
            "accuracy": self.accuracy, "top5_accuracy": self.top5,
            "macro": {"precision": float(np.mean(self.precision)), "recall": float(np.mean(self.recall)),
                      "f1": float(np.mean(self.f1))},
            "classes": [{"name": n, "precision": p, "recall": r, "f1": f, "support": s} for n, p, r, f, s in
                        zip(self.class_names, self.precision, self.recall, self.f1, self.support)],
            "confusion_matrix": self.confusion, "notes": self.notes,
        }

    def table(self) -> str:
        """The report as text: summary lines, a per-class table and the confusion matrix."""
        lines = [f"model {self.model} ({self.kind}) on {self.data}: {self.examples} examples",
                 f"accuracy {self.accuracy:.4f}" + (f", top-5 accuracy {self.top5:.4f}" if self.top5 is not None
                                                    else "")]
        lines += [f"note: {n}" for n in self.notes]
        width = max([5, *map(len, self.class_names)])
        lines.append(f"{'class':<{width}}  precision  recall      f1  support")
        for n, p, r, f, s in zip(self.class_names, self.precision, self.recall, self.f1, self.support):
            lines.append(f"{n:<{width}}  {p:9.4f}  {r:6.4f}  {f:6.4f}  {s:7d}")
        lines.append(f"{'macro':<{width}}  {np.mean(self.precision):9.4f}  {np.mean(self.recall):6.4f}  "
                     f"{np.mean(self.f1):6.4f}  {sum(self.support):7d}")
        cell = max(4, len(str(max(max(r) for r in self.confusion))) + 1, *[len(n) + 1 for n in self.class_names])
        lines.append("confusion matrix (rows: true, columns: predicted)")
        lines.append(" " * width + "".join(f"{n:>{cell}}" for n in self.class_names))
        for n, row in zip(self.class_names, self.confusion):
            lines.append(f"{n:<{width}}" + "".join(f"{v:>{cell}d}" for v in row))
        return "\n".join(lines)


def evaluate(classifier: Classifier, data: str | os.PathLike[str]) -> Report:
    """Run `classifier` on the labelled data set `data` (any source `tf1tune.data.load_dataset` reads).

    Raises:
        DataError: The data cannot be loaded, or has labels beyond the model's classes.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, top_k_accuracy_score

    from tf1tune.data import load_dataset

    height, width, channels = classifier.image_shape
    if channels not in (1, 3):
        raise DataError(f"the model takes {channels}-channel images; evaluation reads 1 (grayscale) or 3 (RGB)")
    dataset = load_dataset(data, (height, width), channels)
    if not len(dataset):
        raise DataError(f"data set '{os.fspath(data)}' is empty")
    scores = np.asarray(classifier.predict(np.asarray(dataset.images, np.float32)), dtype=np.float64)
    scores = scores.reshape(len(scores), -1)
    classes = scores.shape[1]
    labels = np.asarray(dataset.labels)
    if int(labels.max()) >= classes:
        raise DataError(f"data set '{os.fspath(data)}' has labels up to {int(labels.max())}, but the model has "
                        f"{classes} classes; give data of the model's task")
    notes = []
    names = list(dataset.class_names) if len(dataset.class_names) == classes else None
    if names is None and classifier.labels and len(classifier.labels) == classes:
        names = list(classifier.labels)
    if names is None:
        names = [str(i) for i in range(classes)]
        if dataset.class_names:
            notes.append(f"the data names {len(dataset.class_names)} classes, the model has {classes}; classes are "
                         "shown by index")
    predicted = np.argmax(scores, axis=1)
    everything = list(range(classes))
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=everything,
                                                                     zero_division=0)
    top5 = float(top_k_accuracy_score(labels, scores, k=5, labels=everything)) if classes > 5 else None
    return Report(
        model=classifier.source, kind=classifier.kind, data=os.fspath(data), examples=len(labels),
        accuracy=float(np.mean(predicted == labels)), top5=top5, class_names=names,
        precision=[float(v) for v in precision], recall=[float(v) for v in recall], f1=[float(v) for v in f1],
        support=[int(v) for v in support],
        confusion=confusion_matrix(labels, predicted, labels=everything).astype(int).tolist(), notes=notes)
