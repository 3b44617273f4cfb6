"""`export_onnx`: a frozen graph converted to ONNX with tf2onnx and checked against onnxruntime (optional extra).

Needs `pip install tf2onnx onnxruntime` (the `onnx` extra). The converted model is run by onnxruntime on the same
inputs as the frozen graph, compared within the tolerance (see `tf1tune.export.verify`), and only then written,
atomically. ONNX input and output names are the TensorFlow tensor names (`input:0`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from tensorflow.core.framework import graph_pb2

from tf1tune._fs import require_folder, write_atomic
from tf1tune.errors import EnvironmentProblem, ExportError, first_line
from tf1tune.export.verify import Verification, compare, random_feeds, run_graph_def
from tf1tune.graphdef import tensor_name


def export_onnx(
    graph_def: graph_pb2.GraphDef,
    inputs: Sequence[str],
    outputs: Sequence[str],
    path: str | os.PathLike[str],
    opset: int | None = None,
    feeds: Mapping[str, np.ndarray] | None = None,
    rtol: float = 1e-5,
    atol: float = 0.0,
) -> Verification:
    """Convert `graph_def` to ONNX, verify it with onnxruntime against the frozen graph, write it to `path`.

    Args:
        graph_def: A frozen GraphDef (from `freeze`, optionally `optimize`d).
        inputs: Input tensor names.
        outputs: Output tensor names.
        path: The `.onnx` file to write.
        opset: ONNX opset (tf2onnx's default when None).
        feeds: Input data by name for the check; seeded random data by default.
        rtol: Relative tolerance of the check.
        atol: Absolute tolerance of the check.

    Returns:
        The differences between onnxruntime and the frozen graph.

    Raises:
        EnvironmentProblem: tf2onnx or onnxruntime is not installed.
        ExportError: tf2onnx cannot convert the graph, or onnxruntime's outputs differ beyond the tolerance.
    """
    try:
        import onnxruntime
        import tf2onnx
    except ImportError as e:
        raise EnvironmentProblem(f"ONNX export needs tf2onnx and onnxruntime ({e}); "
                                 "install them with pip install 'tf1tune[onnx]'") from e
    inputs, outputs = [tensor_name(n) for n in inputs], [tensor_name(n) for n in outputs]
    try:
        model, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=inputs, output_names=outputs, opset=opset)
    except Exception as e:  # tf2onnx raises many types; any failure means "cannot convert"
        first = first_line(e)
        raise ExportError(f"tf2onnx cannot convert the graph: {type(e).__name__}: {first}") from e
    data = {tensor_name(k): v for k, v in (feeds or random_feeds(graph_def, inputs)).items()}
    blob = model.SerializeToString()
    session = onnxruntime.InferenceSession(blob, providers=["CPUExecutionProvider"])
    got = session.run(outputs, data)
    expected = run_graph_def(graph_def, outputs, data)
    max_abs, max_rel, failures = compare(expected, got, outputs, rtol, atol)
    if failures:
        raise ExportError("the ONNX model does not reproduce the frozen graph: " + "; ".join(failures)
                          + "; nothing was written")
    write_atomic(require_folder(path, ExportError), blob)
    n = len(next(iter(data.values()))) if data and np.ndim(next(iter(data.values()))) else 1
    return Verification(max_abs, max_rel, n, rtol, atol)
