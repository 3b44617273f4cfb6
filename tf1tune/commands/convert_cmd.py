"""`tf1tune convert CKPT --out PREFIX [--dtype D]`: a V1 or V2 checkpoint as V2, floats optionally cast.

`--to tf2 --out DIR` instead writes a TF2 object-based checkpoint with the TF1 optimizer slots mapped onto a Keras 3
optimizer's state (`tf1tune.tf2_optimizer`).
"""

from __future__ import annotations

import argparse

HELP = "write a checkpoint (V1 single file, V1 sharded or V2) as V2, optionally casting floating entries"
EPILOG = """the loss of each cast is reported (max abs and relative rounding error, values overflowed to inf).
examples:
  tf1tune convert half_plus_two/export --out v2/half_plus_two
  tf1tune convert checkpoints/digits_cnn --dtype float16 --out half/model.ckpt
  tf1tune convert --to tf2 checkpoints/digits_cnn --out tf2-state    # weights + Momentum slots for Keras SGD
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `convert`."""
    parser.add_argument("checkpoint", help="checkpoint prefix, file or directory")
    parser.add_argument("--out", required=True, metavar="PREFIX", help="prefix of the checkpoint to write")
    parser.add_argument("--dtype", choices=("float16", "float32", "float64"),
                        help="cast every floating entry to this dtype (default: keep dtypes)")
    parser.add_argument("--allow-overflow", action="store_true",
                        help="accept values that overflow to inf in float16 (an error otherwise)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint at --out")
    parser.add_argument("--to", choices=("v2", "tf2"), default="v2",
                        help="v2: a TF1 V2 checkpoint (default); tf2: a TF2 checkpoint with the optimizer state "
                             "mapped onto Keras 3's (--out is then a directory)")
    for flag, what in (("--learning-rate", "learning rate"), ("--momentum", "Momentum's momentum"),
                       ("--beta-1", "Adam's beta1"), ("--beta-2", "Adam's beta2"), ("--epsilon", "Adam's epsilon")):
        parser.add_argument(flag, type=float, help=f"--to tf2: the TF1 run's {what} (default: read from its .meta)")


def run(args: argparse.Namespace) -> int:
    """Convert, then print the cast losses (or, --to tf2, where each hyperparameter came from)."""
    from tf1tune.errors import SurgeryError
    from tf1tune.surgery import convert_checkpoint

    hyper = {"learning_rate": args.learning_rate, "momentum": args.momentum, "beta_1": args.beta_1,
             "beta_2": args.beta_2, "epsilon": args.epsilon}
    if args.to == "tf2":
        from tf1tune.tf2_optimizer import convert_to_tf2

        if args.dtype or args.allow_overflow:
            raise SurgeryError("--dtype and --allow-overflow apply to --to v2 only")
        print("\n".join(convert_to_tf2(args.checkpoint, args.out, hyper, overwrite=args.overwrite).lines()))
        return 0
    given = [k for k, v in hyper.items() if v is not None]
    if given:
        raise SurgeryError(f"--{given[0].replace('_', '-')} applies to --to tf2 only")

    report = convert_checkpoint(args.checkpoint, args.out, dtype=args.dtype, allow_overflow=args.allow_overflow,
                                overwrite=args.overwrite)
    print("\n".join(report.summary_lines()))
    return 0
