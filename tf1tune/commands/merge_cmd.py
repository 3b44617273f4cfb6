"""`tf1tune merge CKPT_A CKPT_B ... --out PREFIX [--prefer N]`: the union of several checkpoints."""

from __future__ import annotations

import argparse

HELP = "write the union of two or more checkpoints; entries that differ are an error unless --prefer picks one"
EPILOG = """identical entries (same dtype, shape and bytes) are written once.
examples:
  tf1tune merge backbone/model.ckpt head/model.ckpt --out merged/model.ckpt
  tf1tune merge old/model.ckpt finetuned/model.ckpt --prefer 1 --out merged/model.ckpt
  tf1tune merge old/model.ckpt finetuned/model.ckpt --prefer finetuned/model.ckpt --out merged/model.ckpt
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `merge`."""
    parser.add_argument("checkpoints", nargs="+", metavar="CKPT", help="two or more checkpoint prefixes or directories")
    parser.add_argument("--out", required=True, metavar="PREFIX", help="prefix of the checkpoint to write")
    parser.add_argument("--prefer", metavar="N|CKPT",
                        help="input whose values win where inputs differ: its position (0 = first) or CKPT as given")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint at --out")


def _position(prefer: str | None, checkpoints: list[str]) -> int | None:
    """`--prefer` as a position: a number, or one of the CKPT arguments spelled as given."""
    from tf1tune.errors import SurgeryError

    if prefer is None:
        return None
    if prefer.isdigit():
        return int(prefer)
    if prefer in checkpoints:
        if checkpoints.count(prefer) > 1:
            raise SurgeryError(f"--prefer {prefer} is given twice as an input; use its position instead")
        return checkpoints.index(prefer)
    raise SurgeryError(f"--prefer {prefer} is neither a position (0 to {len(checkpoints) - 1}) nor one of the "
                       f"inputs ({', '.join(checkpoints)})")


def run(args: argparse.Namespace) -> int:
    """Merge, then print where entries came from."""
    from tf1tune.surgery import merge_checkpoints

    report = merge_checkpoints(args.checkpoints, args.out, prefer=_position(args.prefer, args.checkpoints),
                               overwrite=args.overwrite)
    print("\n".join(report.summary_lines()))
    return 0
