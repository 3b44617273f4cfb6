"""`tf1tune export-tflite`: a verified TFLite (LiteRT) model, float or quantized (dynamic, float16, int8).

The model is frozen and verified exactly as `tf1tune freeze` does it (same source flags), then converted
(`tf1tune.export.tflite`), run by the TFLite interpreter beside the frozen graph on the same inputs and held to
the rule of its mode: a float model to `--tflite-rtol`, a quantized one to `--min-agreement` (top-1) and
`--max-prob-diff`. Only then is `--out` written, atomically.

Data: int8 calibrates on `--representative-data` (any data `finetune` reads), or on a run's training data with
`--run-dir`. Verification runs on the run's validation data, else `--verify-data`, else the representative
data, else seeded random inputs.
"""

from __future__ import annotations

import argparse

from tf1tune.commands.freeze_cmd import add_source_arguments, freeze_and_verify

HELP = "export a model as a verified TFLite model (float32, dynamic, float16 or full-integer int8)"
EPILOG = """examples:
  tf1tune export-tflite --run-dir runs/digits-parity --quantize int8 --out parity.tflite   # one command
  tf1tune export-tflite checkpoints/digits_cnn --inputs input --outputs DigitsCNN/Predictions/Softmax \\
      --out digits.tflite                                  # float32, held to --tflite-rtol
  tf1tune export-tflite checkpoints/digits_cnn --inputs input --outputs DigitsCNN/Predictions/Softmax \\
      --quantize int8 --representative-data digits:train --verify-data digits:val --io-type int8 \\
      --labels labels.txt --out digits_int8.tflite         # int8 in and out, class names as metadata
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `export-tflite`."""
    from tf1tune.export.tflite import IO_TYPES, QUANTIZE_MODES

    add_source_arguments(parser)
    parser.add_argument("--out", required=True, metavar="FILE.tflite", help="where to write the TFLite model")
    parser.add_argument("--quantize", default="none", metavar="MODE",
                        help=f"{' | '.join(QUANTIZE_MODES)} (default none: float32)")
    parser.add_argument("--io-type", default="float32", metavar="TYPE",
                        help=f"--quantize int8 only: input/output type, {' or '.join(IO_TYPES)} (default float32)")
    parser.add_argument("--representative-data", metavar="DATA",
                        help="int8 calibration data (class folders, .npz, TFRecords, a built-in task); "
                             "--run-dir: the run's training data")
    parser.add_argument("--verify-data", metavar="DATA", help="verification data (default: the run's validation "
                        "data, else the representative data, else seeded random inputs)")
    parser.add_argument("--labels", metavar="FILE", help="class names, one per line, stored as TFLite metadata")
    parser.add_argument("--tflite-rtol", type=float, default=1e-4,
                        help="float32 TFLite: allowed max |diff| relative to each output's max |value| (default 1e-4)")
    parser.add_argument("--min-agreement", type=float, default=0.99,
                        help="quantized: least fraction of inputs with the frozen graph's top-1 class (default 0.99)")
    parser.add_argument("--max-prob-diff", type=float, default=0.1,
                        help="quantized: largest allowed difference of any output value (default 0.1)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def _images(data: str, shape: list, what: str):  # type: ignore[no-untyped-def,type-arg]
    from tf1tune.data import load_dataset
    from tf1tune.errors import ExportError

    if len(shape) != 4 or None in shape[1:]:
        raise ExportError(f"{what} is image data, but the model's input has shape {shape}; it needs [N, H, W, C]")
    return load_dataset(data, (shape[1], shape[2]), shape[3]).images


def run(args: argparse.Namespace) -> int:
    """Validate, freeze and verify, convert, verify the TFLite model, write; print both verification lines."""
    import os

    import tensorflow as tf

    from tf1tune.errors import ExportError
    from tf1tune.export.tflite import IO_TYPES, QUANTIZE_MODES, export_tflite
    from tf1tune.export.verify import random_feeds, source_batch

    if args.quantize not in QUANTIZE_MODES:
        raise ExportError(f"unknown --quantize '{args.quantize}'; use one of {', '.join(QUANTIZE_MODES)}")
    if args.io_type not in IO_TYPES:
        raise ExportError(f"unknown --io-type '{args.io_type}'; use one of {', '.join(IO_TYPES)}")
    if args.io_type != "float32" and args.quantize != "int8":
        raise ExportError(f"--io-type {args.io_type} needs --quantize int8 (full-integer)")
    if args.representative_data and args.quantize != "int8":
        raise ExportError("--representative-data calibrates int8 only; add --quantize int8 or leave it out")
    if args.quantize == "int8" and not (args.representative_data or args.run_dir):
        raise ExportError("--quantize int8 needs calibration data: --representative-data DATA (class folders, .npz, "
                          "TFRecords or a built-in task), or a run with --run-dir")
    if not 0.0 <= args.min_agreement <= 1.0:
        raise ExportError(f"--min-agreement must be in [0, 1], got {args.min_agreement}")
    labels = None
    if args.labels:
        from tf1tune.export.serving import read_labels_file

        labels = read_labels_file(args.labels)
    handle, frozen, check = freeze_and_verify(args)
    print("frozen graph " + check.line())
    for note in frozen.notes:
        print(f"note: {note}")
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(frozen.graph_def, name="")
    shape = graph.get_tensor_by_name(frozen.inputs[0]).shape.as_list()
    if labels is not None:
        classes = graph.get_tensor_by_name(frozen.outputs[0]).shape.as_list()
        if not classes or classes[-1] != len(labels):
            raise ExportError(f"--labels '{args.labels}' names {len(labels)} classes, but output '{frozen.outputs[0]}' "
                              f"has shape {classes}; give one label per class")
    representative = verify_images = None
    if args.run_dir:
        from tf1tune.train.run_dir import run_datasets

        train, val = run_datasets(args.run_dir, (shape[1], shape[2]), shape[3])
        representative, verify_images = train.images, val.images
    if args.representative_data:
        representative = _images(args.representative_data, shape, "--representative-data")
    if args.quantize != "int8":
        representative = None
    if args.verify_data:
        verify_images = _images(args.verify_data, shape, "--verify-data")
    elif verify_images is None:
        verify_images = representative
    if verify_images is not None:
        feeds = {frozen.inputs[0]: verify_images}
    else:
        feeds = random_feeds(frozen.graph_def, frozen.inputs, batch=source_batch(handle, frozen.inputs),
                             seed=args.seed)
    result = export_tflite(frozen.graph_def, frozen.inputs, frozen.outputs, args.out, feeds, quantize=args.quantize,
                           representative=representative, io_type=args.io_type, labels=labels,
                           rtol=args.tflite_rtol, atol=args.atol, min_agreement=args.min_agreement,
                           max_prob_diff=args.max_prob_diff)
    print(result.line())
    print(f"wrote {os.path.abspath(args.out)} ({result.size / 1024:.1f} KiB; {args.quantize}"
          f"{', ' + args.io_type + ' input/output' if args.quantize == 'int8' else ''}"
          f"{f', {len(labels)} labels as metadata' if labels else ''})")
    return 0
