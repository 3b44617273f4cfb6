"""Export: frozen GraphDefs, SavedModels, ONNX and TFLite models that are checked to compute what the source computes.

| step                  | module          | what it does                                                       |
|-----------------------|-----------------|--------------------------------------------------------------------|
| `freeze`              | `freeze`        | checkpoint values into constants, inference mode, only what the outputs need |
| `optimize`            | `optimize`      | batch norm folded into the conv/matmul, constants folded, identities removed |
| (graph rewrites)      | `rewrites`      | grappler, dead-branch pruning, batch-norm folding: every rewrite in one place |
| `verify`              | `verify`        | the source and the export on the same inputs, compared within a tolerance |
| `export_saved_model`  | `saved_model`   | a frozen graph as a SavedModel with a `serving_default` signature  |
| `export_onnx`         | `onnx_export`   | ONNX through tf2onnx, checked with onnxruntime (optional `onnx` extra) |
| `export_tflite`       | `tflite`        | TFLite float32 / dynamic / float16 / full-integer int8, checked in LiteRT's interpreter |
| `TfliteModel`         | `tflite_runtime`| a TFLite model run on float batches (quantization handled)          |
| `serving_graph`       | `serving`       | JPEG-bytes input and a label-name output around a frozen graph      |
| `export_tf2`          | `tf2`           | a TF2 SavedModel with trainable variables, for Keras 3 (`tf1_layer.py` beside it) |
| `write_graph_def`     | `_io`           | atomic write (temp file in the same directory, then `os.replace`)  |
| `export_model`        | `pipeline`      | all of it: load, check outputs, freeze, optimize, verify, write    |

Nothing is written before verification passes, and the source files are only ever read.
"""

from __future__ import annotations

from tf1tune.export._io import read_graph_def, write_graph_def
from tf1tune.export.freeze import FrozenModel, freeze, freeze_model
from tf1tune.export.onnx_export import export_onnx
from tf1tune.export.optimize import optimize
from tf1tune.export.pipeline import ExportResult, export_model, load_source, source_files
from tf1tune.export.saved_model import export_saved_model
from tf1tune.export.serving import serving_graph
from tf1tune.export.tflite import TfliteOptions, export_tflite
from tf1tune.export.tflite_runtime import TfliteModel
from tf1tune.export.verify import Verification, random_feeds, run_graph_def, session_runner, verify

__all__ = ["ExportResult", "FrozenModel", "TfliteModel", "TfliteOptions", "Verification", "export_model", "export_onnx",
           "export_saved_model", "export_tflite", "freeze", "freeze_model", "load_source", "optimize", "random_feeds",
           "read_graph_def", "run_graph_def", "serving_graph", "session_runner", "source_files", "verify",
           "write_graph_def"]
