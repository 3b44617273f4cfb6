"""`tf1tune export-tf2`: a TF1 model as an object-based TF2 SavedModel with trainable variables, for Keras 3.

Takes the same sources as `tf1tune freeze` (SOURCE, `--meta`, `--net`, `--run-dir`); see `tf1tune.export.tf2`
for the mechanism and the checks made before the directory appears at `--out`.
"""

from __future__ import annotations

import argparse
from typing import Any

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


def _load(args: argparse.Namespace) -> tuple[Any, list[str] | None, list[str] | None, dict | None, list[str] | None]:
    """`(handle, inputs, outputs, feeds, trainable_scopes)` of the source the flags name."""
    from tf1tune.commands.freeze_cmd import load_source
    from tf1tune.errors import Tf1tuneError
    from tf1tune.export.tf2_sources import load_slim_switchable

    inputs, outputs, scopes = _split(args.inputs), _split(args.outputs), _split(args.trainable_scopes)
    if args.run_dir:
        from tf1tune.export.run_dir import _read_config, load_run

        if args.source or args.meta or args.net:
            raise Tf1tuneError("--run-dir replaces SOURCE, --meta and --net; give only one of them")
        run = load_run(args.run_dir)
        config = _read_config(f"{args.run_dir}/config.yaml")
        if scopes is None:
            phase_scopes = [s for p in config.get("phases") or [] for s in p.get("trainable_scopes") or []]
            scopes = sorted(set(phase_scopes or config.get("trainable_scopes") or [])) or None
        inputs = inputs or [run.input]
        return run.handle, inputs, outputs or [run.probabilities], {inputs[0]: run.validation_images}, scopes
    slim_name = args.net or (args.source[len("slim:"):] if args.source and args.source.startswith("slim:") else None)
    if slim_name and not args.meta and not (args.net and args.source):
        if args.num_classes is not None and not args.net:
            raise Tf1tuneError("--num-classes only applies to --net NAME")
        options: dict[str, Any] = {"checkpoint": args.checkpoint} if args.checkpoint else {}
        if args.num_classes is not None:
            options["num_classes"] = args.num_classes or None
        handle = load_slim_switchable(slim_name, **options)
    else:
        handle = load_source(args)
    if args.unfreeze:
        from tf1tune.graft import unfreeze

        if handle.kind != "frozen":
            raise Tf1tuneError(f"--unfreeze applies to a frozen .pb source; '{handle.source}' is a {handle.kind} source")
        handle = unfreeze(handle, _split(args.unfreeze) or [])
    return handle, inputs, outputs, None, scopes


def run(args: argparse.Namespace) -> int:
    """Load, export, check; print both checks and where it wrote."""
    from tf1tune.commands.freeze_cmd import _check_out
    from tf1tune.errors import Tf1tuneError
    from tf1tune.export.freeze import parse_setting
    from tf1tune.export.tf2 import export_tf2

    if args.optimize:
        raise Tf1tuneError("--optimize does not apply to export-tf2: the TF2 export keeps the graph's own "
                           "computation (batch norm unfolded, so it can train); leave it out")
    handle, inputs, outputs, feeds, scopes = _load(args)
    _check_out(handle, {"--out": args.out}, None)
    if not outputs:
        raise Tf1tuneError("--outputs is required (except with --run-dir); e.g. --outputs DigitsCNN/global_pool")
    settings = dict(parse_setting(s) for s in args.settings)
    if handle.extra.get("switch_note"):
        print(f"note: {handle.extra['switch_note']}")
    result = export_tf2(handle, outputs, args.out, inputs=inputs, trainable_scopes=scopes, set_values=settings,
                        feeds=feeds, rtol=args.rtol, atol=args.atol, allow_fresh=bool(args.unfreeze), seed=args.seed)
    print("\n".join(result.lines()))
    return 0
