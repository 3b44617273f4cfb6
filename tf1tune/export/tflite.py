"""`export_tflite`: a frozen graph converted to TFLite (LiteRT), float or quantized, verified before it is written.

Conversion goes through `tf.compat.v1.lite.TFLiteConverter.from_frozen_graph`: the graph that `freeze` verified
(inference mode, only what the outputs need, optionally `optimize`d) is exactly what the converter reads, with
no SavedModel written in between, and the v1 converter is the one that still takes a TF1 GraphDef with named
input and output arrays (TF2's `tf.lite.TFLiteConverter` has no `from_frozen_graph`; a TF1 SavedModel goes
through the same v1 path after one more round trip to disk). The batch dimension is fixed at 1, as on a device;
`TfliteModel.run` feeds a batch one example at a time.

Quantization (`QUANTIZE_MODES`):

| mode      | weights | activations | what the converter is told                                           |
|-----------|---------|-------------|----------------------------------------------------------------------|
| `none`    | float32 | float32     | nothing                                                              |
| `dynamic` | int8    | float32     | `optimizations=[DEFAULT]` (dynamic-range quantization)               |
| `float16` | float16 | float32     | `optimizations=[DEFAULT]`, `supported_types=[float16]`               |
| `int8`    | int8    | int8        | full integer: a representative data set, `TFLITE_BUILTINS_INT8` only; input and output float32 (quantize/dequantize inside the model) or int8 (`io_type="int8"`) |

Verification runs the TFLite model and the frozen graph on the same inputs. A float model (`none`) is held to
`max |diff| <= atol + rtol * max |frozen|` per output (`tf1tune.export.verify`), default rtol 1e-4: TFLite's
XNNPACK kernels sum in another order than TensorFlow's, which moves float32 results by a few ulps per layer
(measured: 4e-7 on the digits CNN, 1e-6 to 2e-5 on MobileNet/ResNet-50 with random weights). A quantized model is
held to top-1 agreement (`min_agreement`, default 0.99) and the largest probability difference
(`max_prob_diff`, default 0.1) on the first output. Below either, nothing is written.

Label names go into the model's metadata table as an entry `labels` (UTF-8 text, one name per line, in class
order); `read_labels` reads them back. This is the flatbuffer's own `metadata` field (written with TensorFlow's
`flatbuffer_utils`), not TFLite Support's `TFLITE_METADATA` associated file, which needs the `tflite-support`
package (no wheels for this Python).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import graph_pb2

from tf1tune._fs import write_atomic
from tf1tune.errors import ExportError, first_line
from tf1tune.export.tflite_labels import add_labels, read_labels
from tf1tune.export.tflite_runtime import TfliteModel, native_quiet, read_tflite
from tf1tune.export.verify import compare, run_graph_def
from tf1tune.graphdef import node_name, tensor_name

__all__ = ["IO_TYPES", "QUANTIZE_MODES", "TfliteCheck", "TfliteModel", "add_labels", "check_tflite", "convert_tflite",
           "export_tflite", "read_labels", "read_tflite"]

QUANTIZE_MODES = ("none", "dynamic", "float16", "int8")
IO_TYPES = ("float32", "int8")
REPRESENTATIVE_SAMPLES = 200  # calibration examples used at most


def _representative(data: np.ndarray, shape: Sequence[int | None], name: str,
                    batch: int = 1) -> Callable[[], Iterable[list[np.ndarray]]]:
    data = np.asarray(data, dtype=np.float32)
    want = list(shape[1:])
    if data.ndim != len(shape) or any(w is not None and w != d for w, d in zip(want, data.shape[1:])):
        raise ExportError(f"representative data has shape {list(data.shape)}, but input '{name}' takes "
                          f"{['N', *want]}; give data of the input's size")
    if len(data) < batch:
        raise ExportError(f"the representative data set has {len(data)} examples; give at least {max(batch, 1)}")
    samples = data[:REPRESENTATIVE_SAMPLES]

    def generate() -> Iterable[list[np.ndarray]]:
        for start in range(0, len(samples) - batch + 1, batch):
            yield [samples[start:start + batch]]
    return generate


def convert_tflite(
    graph_def: graph_pb2.GraphDef,
    inputs: Sequence[str],
    outputs: Sequence[str],
    quantize: str = "none",
    representative: np.ndarray | None = None,
    io_type: str = "float32",
    labels: Sequence[str] | None = None,
    batch: int = 1,
) -> bytes:
    """The TFLite flatbuffer of a frozen graph (see the module docstring for the modes).

    Args:
        graph_def: A frozen GraphDef with free or fixed batch dimension (fixed to 1 here).
        inputs: Input placeholder names.
        outputs: Output tensor names.
        quantize: One of `QUANTIZE_MODES`.
        representative: float32 examples of the (single) input, `[N, ...]` of its shape; `int8` only.
        io_type: `int8` mode only: `float32` (quantize/dequantize inside the model) or `int8` input and output.
        labels: Class names to store as metadata (`read_labels`).
        batch: The model's fixed batch size (1, as on a device; `TfliteModel.run` feeds larger batches in parts).

    Raises:
        ExportError: Unknown mode or io type, missing or misshapen representative data, or the converter fails.
    """
    if quantize not in QUANTIZE_MODES:
        raise ExportError(f"unknown quantization mode '{quantize}'; use one of {', '.join(QUANTIZE_MODES)}")
    if io_type not in IO_TYPES:
        raise ExportError(f"unknown input/output type '{io_type}'; use one of {', '.join(IO_TYPES)}")
    if io_type != "float32" and quantize != "int8":
        raise ExportError(f"an {io_type} input/output needs --quantize int8 (full-integer), not '{quantize}'")
    if quantize == "int8" and representative is None:
        raise ExportError("int8 quantization needs representative data to calibrate on; give --representative-data "
                          "DATA (or export a run with --run-dir, which uses its training data)")
    in_names, out_names = [node_name(n) for n in inputs], [node_name(n) for n in outputs]
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    shapes = {}
    for name in in_names:
        shape = graph.get_tensor_by_name(tensor_name(name)).shape
        if shape.rank is None or None in shape.as_list()[1:]:
            raise ExportError(f"input '{name}' has shape {shape}; TFLite needs every dimension but the batch known")
        shapes[name] = [batch, *shape.as_list()[1:]]
    with tempfile.TemporaryDirectory(prefix="tf1tune-tflite-") as tmp:
        path = os.path.join(tmp, "frozen.pb")
        with open(path, "wb") as f:
            f.write(graph_def.SerializeToString())
        try:
            converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(path, in_names, out_names, shapes)
        except (ValueError, KeyError) as e:
            raise ExportError(f"the TFLite converter cannot read the graph: {first_line(e)}") from e
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8" and representative is not None:
            if len(in_names) != 1:
                raise ExportError(f"int8 calibration takes one input, the graph has {len(in_names)}; export one input")
            converter.representative_dataset = _representative(representative, [None, *shapes[in_names[0]][1:]],
                                                               in_names[0], batch)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if io_type == "int8":
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
        try:
            with native_quiet():
                blob = bytes(converter.convert())
        except Exception as e:  # ConverterError and friends: one line, the cause kept
            hint = "; an op without an int8 kernel? try --quantize dynamic" if quantize == "int8" else ""
            raise ExportError(f"the TFLite converter failed: {first_line(e)}{hint}") from e
    return add_labels(blob, labels) if labels else blob


@dataclass
class TfliteCheck:
    """How a TFLite model compares with the frozen graph on the same inputs.

    Attributes:
        quantize: The quantization mode.
        num_inputs: Examples compared.
        max_abs: Largest absolute difference over every output.
        max_rel: `max_abs` relative to the frozen graph's largest magnitude (worst output).
        agreement: Fraction of examples whose top-1 class (first output) is the same.
        max_prob_diff: Largest probability difference on the first output (= max_abs of that output).
        size: The model's size in bytes.
        rule: The rule it was held to, in words.
    """

    quantize: str
    num_inputs: int
    max_abs: float
    max_rel: float
    agreement: float
    max_prob_diff: float
    size: int
    rule: str

    def line(self) -> str:
        """One line for the user."""
        return (f"TFLite ({self.quantize}) verified on {self.num_inputs} inputs: top-1 agreement "
                f"{self.agreement:.4f}, max prob diff {self.max_prob_diff:.3g}, max rel diff {self.max_rel:.3g} "
                f"({self.rule})")


def check_tflite(
    model: bytes,
    graph_def: graph_pb2.GraphDef,
    inputs: Sequence[str],
    outputs: Sequence[str],
    feeds: Mapping[str, np.ndarray],
    quantize: str,
    rtol: float = 1e-4,
    atol: float = 0.0,
    min_agreement: float = 0.99,
    max_prob_diff: float = 0.1,
) -> TfliteCheck:
    """Run `model` and `graph_def` on `feeds` and hold the TFLite outputs to the rule of `quantize`.

    Raises:
        ExportError: The outputs differ beyond the rule (the message says by how much).
    """
    names = [tensor_name(n) for n in inputs]
    data = {tensor_name(k): np.asarray(v) for k, v in feeds.items()}
    expected = run_graph_def(graph_def, outputs, data)
    got = TfliteModel(model).run([data[n] for n in names])
    if len(got) != len(expected):
        raise ExportError(f"the TFLite model has {len(got)} outputs, the graph {len(expected)}")
    first_a, first_b = np.asarray(expected[0], np.float64), np.asarray(got[0], np.float64).reshape(np.shape(expected[0]))
    agreement = float(np.mean(np.argmax(first_a.reshape(len(first_a), -1), 1) ==
                              np.argmax(first_b.reshape(len(first_b), -1), 1))) if first_a.ndim >= 1 else 1.0
    prob_diff = float(np.max(np.abs(first_a - first_b))) if first_a.size else 0.0
    if quantize == "none":
        rule = f"float: abs diff <= {atol:g} + {rtol:g} * max |frozen|"
        max_abs, max_rel, failures = compare(expected, [g.reshape(np.shape(e)) for e, g in zip(expected, got)],
                                             list(outputs), rtol, atol)
    else:
        rule = f"quantized: top-1 agreement >= {min_agreement:g}, max prob diff <= {max_prob_diff:g}"
        max_abs, max_rel, _ = compare(expected, [g.reshape(np.shape(e)) for e, g in zip(expected, got)],
                                      list(outputs), 0.0, float("inf"))
        failures = []
        if agreement < min_agreement:
            failures.append(f"top-1 agreement {agreement:.4f} < {min_agreement:g}")
        if prob_diff > max_prob_diff:
            failures.append(f"max prob diff {prob_diff:.3g} > {max_prob_diff:g}")
    if failures:
        raise ExportError(f"TFLite ({quantize}) verification failed ({rule}): " + "; ".join(failures)
                          + "; nothing was written")
    n = len(next(iter(data.values()))) if data and np.ndim(next(iter(data.values()))) else 1
    return TfliteCheck(quantize, n, max_abs, max_rel, agreement, prob_diff, len(model), rule)


def export_tflite(
    graph_def: graph_pb2.GraphDef,
    inputs: Sequence[str],
    outputs: Sequence[str],
    path: str | os.PathLike[str],
    feeds: Mapping[str, np.ndarray],
    quantize: str = "none",
    representative: np.ndarray | None = None,
    io_type: str = "float32",
    labels: Sequence[str] | None = None,
    rtol: float = 1e-4,
    atol: float = 0.0,
    min_agreement: float = 0.99,
    max_prob_diff: float = 0.1,
) -> TfliteCheck:
    """Convert `graph_def` to TFLite, verify it against the graph on `feeds`, then write it to `path` atomically.

    Args are those of `convert_tflite` and `check_tflite`; `feeds` are the verification inputs by name.

    Returns:
        The comparison that passed.

    Raises:
        ExportError: Conversion or verification failed, or the directory of `path` does not exist; nothing
            is written then.

    Example:
        >>> frozen = tf1tune.export.freeze_model(handle, ["DigitsCNN/Predictions/Softmax"], ["input"])
        >>> export_tflite(frozen.graph_def, frozen.inputs, frozen.outputs, "digits.tflite",
        ...               feeds={"input": images[:64]}, quantize="int8", representative=images)
    """
    target = os.path.abspath(os.fspath(path))
    if not os.path.isdir(os.path.dirname(target)):
        raise ExportError(f"cannot write '{os.fspath(path)}': directory '{os.path.dirname(target)}' does not exist; "
                          "create it first")
    model = convert_tflite(graph_def, inputs, outputs, quantize, representative, io_type, labels)
    check = check_tflite(model, graph_def, inputs, outputs, feeds, quantize, rtol, atol, min_agreement, max_prob_diff)
    write_atomic(target, model)
    return check


@dataclass
class TfliteOptions:
    """What `tf1tune export-tflite` asks for, as `export_model(tflite=...)` takes it.

    Attributes:
        path: The `.tflite` file to write.
        quantize: One of `QUANTIZE_MODES`.
        io_type: `int8` mode: `float32` or `int8` input and output.
        representative_data: int8 calibration data (any source `tf1tune.data.load_dataset` reads); a run's
            training data by default.
        verify_data: Verification data; by default a run's validation data, else the representative data,
            else seeded random inputs.
        labels: Class names stored as metadata.
        rtol: float32 tolerance (see `check_tflite`).
        min_agreement: Quantized: least top-1 agreement.
        max_prob_diff: Quantized: largest difference of the first output.
    """

    path: str
    quantize: str = "none"
    io_type: str = "float32"
    representative_data: str | None = None
    verify_data: str | None = None
    labels: Sequence[str] | None = None
    rtol: float = 1e-4
    min_agreement: float = 0.99
    max_prob_diff: float = 0.1

    def validate(self, run_dir: str | None = None) -> None:
        """Refuse impossible requests before anything is loaded.

        Raises:
            ExportError: Unknown mode or io type, int8 without calibration data, a bad threshold.
        """
        if self.quantize not in QUANTIZE_MODES:
            raise ExportError(f"unknown --quantize '{self.quantize}'; use one of {', '.join(QUANTIZE_MODES)}")
        if self.io_type not in IO_TYPES:
            raise ExportError(f"unknown --io-type '{self.io_type}'; use one of {', '.join(IO_TYPES)}")
        if self.io_type != "float32" and self.quantize != "int8":
            raise ExportError(f"--io-type {self.io_type} needs --quantize int8 (full-integer)")
        if self.representative_data and self.quantize != "int8":
            raise ExportError("--representative-data calibrates int8 only; add --quantize int8 or leave it out")
        if self.quantize == "int8" and not (self.representative_data or run_dir):
            raise ExportError("--quantize int8 needs calibration data: --representative-data DATA (class folders, "
                              ".npz, TFRecords or a built-in task), or a run with --run-dir")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ExportError(f"--min-agreement must be in [0, 1], got {self.min_agreement}")


def _images(data: str, shape: list[int | None], flag: str) -> np.ndarray:
    from tf1tune.data import load_dataset

    if len(shape) != 4 or None in shape[1:]:
        raise ExportError(f"{flag} is image data, but the model's input has shape {shape}; it needs [N, H, W, C]")
    return load_dataset(data, (int(shape[1]), int(shape[2])), int(shape[3])).images  # type: ignore[arg-type]


def tflite_from_frozen(
    graph_def: graph_pb2.GraphDef,
    inputs: Sequence[str],
    outputs: Sequence[str],
    options: TfliteOptions,
    run_dir: str | None = None,
    random_feeds: Mapping[str, np.ndarray] | None = None,
    atol: float = 0.0,
) -> TfliteCheck:
    """Pick the calibration and verification data of `options` (see `TfliteOptions`), then `export_tflite`.

    Args:
        graph_def, inputs, outputs: The verified frozen graph.
        options: What to write and how to check it.
        run_dir: The fine-tuning run the graph comes from, if any (its training and validation data).
        random_feeds: Verification inputs when no data is named (the frozen graph's own random check inputs).
        atol: Absolute tolerance added for float32.
    """
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    shape = graph.get_tensor_by_name(tensor_name(inputs[0])).shape
    dims = shape.as_list() if shape.rank is not None else []
    if options.labels is not None:
        classes = graph.get_tensor_by_name(tensor_name(outputs[0])).shape
        if classes.rank is None or classes[-1] != len(options.labels):
            raise ExportError(f"--labels names {len(options.labels)} classes, but output '{outputs[0]}' has shape "
                              f"{classes}; give one label per class")
    representative = verify_images = None
    if run_dir:
        from tf1tune.train.run_dir import run_datasets

        train, val = run_datasets(run_dir, (dims[1], dims[2]), dims[3])
        representative, verify_images = train.images, val.images
    if options.representative_data:
        representative = _images(options.representative_data, dims, "--representative-data")
    if options.quantize != "int8":
        representative = None
    if options.verify_data:
        verify_images = _images(options.verify_data, dims, "--verify-data")
    elif verify_images is None:
        verify_images = representative
    feeds = {tensor_name(inputs[0]): verify_images} if verify_images is not None else dict(random_feeds or {})
    if not feeds:
        from tf1tune.export.verify import random_feeds as make_random

        feeds = make_random(graph_def, inputs)
    return export_tflite(graph_def, inputs, outputs, options.path, feeds, quantize=options.quantize,
                         representative=representative, io_type=options.io_type, labels=options.labels,
                         rtol=options.rtol, atol=atol, min_agreement=options.min_agreement,
                         max_prob_diff=options.max_prob_diff)
