"""Running TFLite (LiteRT) models: the interpreter, float batches in and out, quantization handled.

The interpreter is LiteRT's (`ai-edge-litert`, the `tflite` extra) where it is installed, else TensorFlow's own
`tf.lite.Interpreter` (deprecated, but still in TensorFlow 2.21). `TfliteModel.run` takes and gives what the
float graph takes and gives: integer inputs and outputs are quantized and dequantized with their scale and zero
point, and a batch is fed in parts of the model's own (fixed) batch size.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow as tf

from tf1tune._fs import stderr_to_devnull
from tf1tune.errors import BadSourceError, ExportError, first_line


@contextlib.contextmanager
def native_quiet() -> Iterator[None]:
    """Keep the converter's and interpreter's C++ lines (`fully_quantize: 0, ...`, `Created TensorFlow Lite
    XNNPACK delegate`) off stderr when TensorFlow's own logs are off (`TF_CPP_MIN_LOG_LEVEL=3`, as the CLI sets
    it without `--debug`)."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "3":
        yield
        return
    with stderr_to_devnull():
        yield


def _interpreter_class() -> type:
    """LiteRT's interpreter (`ai-edge-litert`), else TensorFlow's deprecated `tf.lite.Interpreter`."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        return tf.lite.Interpreter


def read_tflite(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a `.tflite` file, checked to be a TFLite flatbuffer (identifier `TFL3`).

    Raises:
        BadSourceError: The file is missing, unreadable or not a TFLite model.
    """
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise BadSourceError(f"cannot read TFLite model '{os.fspath(path)}': {first_line(e)}") from e
    if len(blob) < 8 or blob[4:8] != b"TFL3":
        raise BadSourceError(f"'{os.fspath(path)}' is not a TFLite model (no TFL3 flatbuffer identifier); give a "
                             ".tflite file written by the TFLite converter or tf1tune export-tflite")
    return blob


class TfliteModel:
    """A TFLite model in an interpreter, run on float batches like the frozen graph it came from.

    Quantized inputs and outputs (int8/uint8) are quantized and dequantized here with their scale and zero
    point, so `run` takes and returns what the float graph takes and returns.
    """

    def __init__(self, model: bytes, num_threads: int | None = None, where: str = "the TFLite model") -> None:
        try:
            with native_quiet():
                self.interpreter = _interpreter_class()(model_content=model, num_threads=num_threads)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise BadSourceError(f"{where} cannot be loaded by the TFLite interpreter: {first_line(e)}") from e
        self.inputs = self.interpreter.get_input_details()
        self.outputs = self.interpreter.get_output_details()

    @property
    def input_shapes(self) -> list[list[int]]:
        """The shape of each input (batch dimension included, usually 1)."""
        return [list(map(int, d["shape"])) for d in self.inputs]

    def invoke(self, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One call on inputs already of the model's shape and dtype; outputs as the model gives them."""
        for detail, value in zip(self.inputs, values):
            self.interpreter.set_tensor(detail["index"], value)
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(d["index"]) for d in self.outputs]

    def quantize_inputs(self, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Float inputs in the dtype of each model input (quantized with its scale and zero point if integer)."""
        result = []
        for detail, value in zip(self.inputs, values):
            dtype = np.dtype(detail["dtype"])
            if dtype.kind in "iu" and np.asarray(value).dtype.kind == "f":
                scale, zero = detail["quantization"]
                info = np.iinfo(dtype)
                value = np.clip(np.round(np.asarray(value) / scale + zero), info.min, info.max)
            result.append(np.asarray(value).astype(dtype))
        return result

    def dequantize_outputs(self, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Outputs as float32 (dequantized with their scale and zero point if integer)."""
        result = []
        for detail, value in zip(self.outputs, values):
            scale, zero = detail["quantization"]
            if np.asarray(value).dtype.kind in "iu" and scale:
                value = (np.asarray(value).astype(np.float32) - zero) * scale
            result.append(np.asarray(value))
        return result

    def run(self, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Every output on a batch of float inputs (one array per input, in input order), one example at a time."""
        if len(values) != len(self.inputs):
            raise ExportError(f"the TFLite model takes {len(self.inputs)} input(s), got {len(values)}")
        n = len(values[0]) if np.ndim(values[0]) else 1
        per_call = self.input_shapes[0][0] if self.input_shapes[0] else 1
        parts: list[list[np.ndarray]] = [[] for _ in self.outputs]
        for start in range(0, n, max(per_call, 1)):
            chunk = [np.asarray(v)[start:start + per_call] for v in values]
            for shape, value in zip(self.input_shapes, chunk):
                if list(value.shape) != shape:
                    raise ExportError(f"input of shape {list(value.shape)} does not fit the TFLite model's input "
                                      f"shape {shape}")
            for part, out in zip(parts, self.dequantize_outputs(self.invoke(self.quantize_inputs(chunk)))):
                part.append(out)
        return [np.concatenate(p) for p in parts]
