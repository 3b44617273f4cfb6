"""`tf1tune export-tf2`: a TF1 model as an object-based TF2 SavedModel with trainable variables, for Keras 3.

Takes the same sources as `tf1tune freeze` (SOURCE, `--meta`, `--net`, `--run-dir`; `tf1tune.export.tf2_sources`);
see `tf1tune.export.tf2` for the mechanism and the checks made before the directory appears at `--out`.
"""

from __future__ import annotations

import argparse

from tf1tune.commands.freeze_cmd import add_source_arguments

HELP = "export a model as a TF2 SavedModel with trainable tf.Variables (fine-tune it with Keras 3)"
EPILOG = """examples:
  tf1tune export-tf2 checkpoints/digits_cnn --outputs DigitsCNN/global_pool \\
      --trainable-scopes DigitsCNN/Conv2d_3 --out exported/digits-tf2   # Conv2d_3 trainable, the rest frozen
  tf1tune export-tf2 --net digits_cnn --num-classes 10 --checkpoint checkpoints/digits_cnn --outputs global_pool \\
      --out exported/digits-slim        # rebuilt from the net definition, with an is_training switch
  tf1tune export-tf2 --run-dir runs/digits-parity --out exported/parity       # a fine-tuning run
  tf1tune export-tf2 frozen.pb --outputs probs --unfreeze hidden --out exported/fc   # constants made trainable
then in Keras 3 (no tf1tune needed): sys.path.insert(0, DIR); from tf1_layer import TF1Layer; TF1Layer(DIR)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `export-tf2`."""
    add_source_arguments(parser)
    parser.add_argument("--trainable-scopes", metavar="SCOPE[,SCOPE]",
                        help="only variables under these scopes are trainable (default: the graph's trainable "
                             "variables; --run-dir: the scopes its phases trained); batch-norm statistics never are")
    parser.add_argument("--unfreeze", metavar="NAME[,NAME]",
                        help="frozen .pb only: constants (or scopes of constants) to turn back into variables")
    parser.add_argument("--out", required=True, metavar="DIR", help="SavedModel directory to create (new or empty)")


def _split(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def run(args: argparse.Namespace) -> int:
    """Load, export, check; print both checks and where it wrote."""
    from tf1tune.errors import Tf1tuneError
    from tf1tune.export.freeze import parse_setting
    from tf1tune.export.pipeline import check_outputs
    from tf1tune.export.tf2 import export_tf2
    from tf1tune.export.tf2_sources import load_tf2_source

    if args.optimize:
        raise Tf1tuneError("--optimize does not apply to export-tf2: the TF2 export keeps the graph's own "
                           "computation (batch norm unfolded, so it can train); leave it out")
    src = load_tf2_source(args.source, meta=args.meta, net=args.net, num_classes=args.num_classes,
                          checkpoint=args.checkpoint, run_dir=args.run_dir, unfreeze=_split(args.unfreeze))
    check_outputs(src.handle, {"--out": args.out}, None)
    outputs = _split(args.outputs) or src.outputs
    if not outputs:
        raise Tf1tuneError("--outputs is required (except with --run-dir); e.g. --outputs DigitsCNN/global_pool")
    if src.handle.extra.get("switch_note"):
        print(f"note: {src.handle.extra['switch_note']}")
    result = export_tf2(src.handle, outputs, args.out, inputs=_split(args.inputs) or src.inputs,
                        trainable_scopes=_split(args.trainable_scopes) or src.trainable_scopes,
                        set_values=dict(parse_setting(s) for s in args.settings), feeds=src.feeds, rtol=args.rtol,
                        atol=args.atol, allow_fresh=bool(args.unfreeze), seed=args.seed)
    print("\n".join(result.lines()))
    return 0
