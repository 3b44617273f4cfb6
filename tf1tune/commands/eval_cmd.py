"""`tf1tune eval`: accuracy, top-5, per-class precision/recall/F1 and the confusion matrix of a model on data.

Works on every format tf1tune reads or writes (checkpoint, `.meta`, run directory, frozen `.pb`, SavedModel,
ONNX, TFLite); see `tf1tune.evaluation`. `--png` draws the confusion matrix (`tf1tune.plots`).
"""

from __future__ import annotations

import argparse
import json

HELP = "evaluate a classifier (any format) on labelled data: accuracy, per-class metrics, confusion matrix"
EPILOG = """examples:
  tf1tune eval checkpoints/digits_cnn --data digits:val
  tf1tune eval runs/digits-parity --data digits-parity:val --png confusion.png
  tf1tune eval digits.tflite --data digits:val --json
  tf1tune eval frozen.pb --data photos/ --inputs input --outputs MobilenetV1/Predictions/Reshape_1
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `eval`."""
    parser.add_argument("model", help="checkpoint, .meta, run directory, .pb, SavedModel directory, .onnx or .tflite")
    parser.add_argument("--data", required=True, metavar="DATA",
                        help="labelled data: class folders, .npz, TFRecords or a built-in task (digits:val, ...)")
    parser.add_argument("--inputs", metavar="NAME", help="TensorFlow models: the image input (default: the only one)")
    parser.add_argument("--outputs", metavar="NAME", help="TensorFlow models: the score output (default: the only one)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--png", metavar="FILE.png", help="also draw the confusion matrix into this PNG file")


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the table (or JSON); write the PNG if asked."""
    import os

    from tf1tune.errors import Tf1tuneError
    from tf1tune.evaluation import evaluate, open_model

    if args.png and not os.path.isdir(os.path.dirname(os.path.abspath(args.png))):
        raise Tf1tuneError(f"--png '{args.png}': directory '{os.path.dirname(os.path.abspath(args.png))}' does not "
                           "exist; create it first")
    report = evaluate(open_model(args.model, args.inputs, args.outputs), args.data)
    written = None
    if args.png:
        from tf1tune.plots import confusion_png

        written = confusion_png(report.confusion, report.class_names, args.png,
                                title=f"{os.path.basename(os.path.normpath(args.model))} on {args.data} "
                                      f"(accuracy {report.accuracy:.4f})")
    if args.json:
        print(json.dumps(report.to_dict(), allow_nan=False))
    else:
        print(report.table())
        if written:
            print(f"wrote {written}")
    return 0
