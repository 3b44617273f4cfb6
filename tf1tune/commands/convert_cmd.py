"""`tf1tune convert CKPT --out PREFIX [--dtype D]`: a V1 or V2 checkpoint as V2, floats optionally cast."""

from __future__ import annotations

import argparse

HELP = "write a checkpoint (V1 single file, V1 sharded or V2) as V2, optionally casting floating entries"
EPILOG = """the loss of each cast is reported (max abs and relative rounding error, values overflowed to inf).
examples:
  tf1tune convert half_plus_two/export --out v2/half_plus_two
  tf1tune convert checkpoints/digits_cnn --dtype float16 --out half/model.ckpt
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


def run(args: argparse.Namespace) -> int:
    """Convert, then print the cast losses."""
    from tf1tune.surgery import convert_checkpoint

    report = convert_checkpoint(args.checkpoint, args.out, dtype=args.dtype, allow_overflow=args.allow_overflow,
                                overwrite=args.overwrite)
    print("\n".join(report.summary_lines()))
    return 0
