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
from typing import TYPE_CHECKING

from tf1tune.commands.freeze_cmd import add_source_arguments, export_options

if TYPE_CHECKING:
    from tf1tune.export.tflite import TfliteOptions

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


def options(args: argparse.Namespace) -> TfliteOptions:
    """The `TfliteOptions` the flags give (labels read from `--labels`)."""
    from tf1tune.export.tflite import TfliteOptions

    labels = None
    if args.labels:
        from tf1tune.export.serving import read_labels_file

        labels = read_labels_file(args.labels)
    result = TfliteOptions(path=args.out, quantize=args.quantize, io_type=args.io_type,
                           representative_data=args.representative_data, verify_data=args.verify_data, labels=labels,
                           rtol=args.tflite_rtol, min_agreement=args.min_agreement, max_prob_diff=args.max_prob_diff)
    result.validate(args.run_dir)
    return result


def run(args: argparse.Namespace) -> int:
    """Validate, freeze and verify, convert, verify the TFLite model, write; print both verification lines."""
    from tf1tune.export import export_model

    wanted = options(args)
    result = export_model(**export_options(args), tflite=wanted, overwrite=args.overwrite)
    print("frozen graph " + result.check.line())
    for note in result.frozen.notes:
        print(f"note: {note}")
    assert result.tflite_check is not None  # tflite was given
    print(result.tflite_check.line())
    labels = wanted.labels
    print(f"wrote {result.written[0]} ({result.tflite_check.size / 1024:.1f} KiB; {args.quantize}"
          f"{', ' + args.io_type + ' input/output' if args.quantize == 'int8' else ''}"
          f"{f', {len(labels)} labels as metadata' if labels else ''})")
    return 0
