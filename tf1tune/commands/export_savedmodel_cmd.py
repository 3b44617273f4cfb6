"""`tf1tune export-savedmodel`: a verified SavedModel (`serving_default` signature) of a model.

Freezes and verifies exactly as `tf1tune freeze` does, then builds a SavedModel from the frozen graph, loads it
back with `tf.saved_model.load` in eager mode and checks its signature against the frozen graph before the
directory appears at `--out`.
"""

from __future__ import annotations

import argparse

from tf1tune.commands.freeze_cmd import add_serving_arguments, add_source_arguments, export_options, serving_options

HELP = "export a model as a verified SavedModel with a serving_default signature"
EPILOG = """examples:
  tf1tune export-savedmodel checkpoints/digits_cnn --inputs input --outputs DigitsCNN/Predictions/Softmax \\
      --out exported/digits          # signature: input -> DigitsCNN_Predictions_Softmax
  tf1tune export-savedmodel --run-dir runs/digits-parity --input-format jpeg --labels configs/digits_parity_labels.txt \
      --out exported/parity          # signature: image_bytes (JPEG) -> probabilities, label
  tf1tune export-savedmodel frozen.pb --outputs output --optimize --out exported/fc
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `export-savedmodel`."""
    add_source_arguments(parser)
    add_serving_arguments(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="SavedModel directory to create (new or empty)")


def run(args: argparse.Namespace) -> int:
    """Freeze, verify, export, verify again; print both verification lines and where it wrote."""
    from tf1tune.export import export_model
    from tf1tune.export.saved_model import signature_keys

    result = export_model(**export_options(args), **serving_options(args), saved_model=args.out)
    frozen = result.frozen
    print("frozen graph " + result.check.line())
    for note in frozen.notes:
        print(f"note: {note}")
    assert result.saved_model_check is not None  # saved_model was given
    print("SavedModel " + result.saved_model_check.line())
    if result.serving_check:
        print("serving graph " + result.serving_check.line())
    keys_in = signature_keys(result.served_inputs or frozen.inputs)
    keys_out = signature_keys(result.served_outputs or frozen.outputs)
    print(f"wrote {args.out} (serving_default: inputs {', '.join(keys_in.values())}; "
          f"outputs {', '.join(keys_out.values())})")
    return 0
