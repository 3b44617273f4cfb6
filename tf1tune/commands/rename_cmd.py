"""`tf1tune rename CKPT --map OLD=NEW ... --out PREFIX`: a copy of a checkpoint with scopes renamed or dropped."""

from __future__ import annotations

import argparse

HELP = "write a V2 copy of a checkpoint with scopes renamed (--map) or dropped (--drop, --drop-optimizer-state)"
EPILOG = """scopes match whole '/'-separated parts: 'logits' matches logits/w, not logits_new/w.
examples:
  tf1tune rename checkpoints/digits_cnn --map DigitsCNN=encoder/DigitsCNN --out out/model.ckpt
  tf1tune rename PNet-18 --drop-optimizer-state --out slim/PNet-18
  tf1tune rename model.ckpt --map old_head=new_head --drop aux_logits --out out/model.ckpt --overwrite
"""


def _mapping(text: str) -> tuple[str, str]:
    old, sep, new = text.partition("=")
    if not sep or not old:
        raise argparse.ArgumentTypeError(f"'{text}' is not OLD=NEW (e.g. DigitsCNN=encoder/DigitsCNN)")
    return old, new


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `rename`."""
    parser.add_argument("checkpoint", help="checkpoint prefix, file or directory (V1 or V2)")
    parser.add_argument("--map", dest="mapping", action="append", default=[], type=_mapping, metavar="OLD=NEW",
                        help="rename scope OLD to NEW (repeatable; an empty NEW removes the scope)")
    parser.add_argument("--drop", action="append", default=[], metavar="SCOPE", help="leave out a scope (repeatable)")
    parser.add_argument("--drop-optimizer-state", action="store_true",
                        help="leave out optimizer slots (Momentum, Adam, RMSProp, ...) and the global step")
    parser.add_argument("--out", required=True, metavar="PREFIX", help="prefix of the checkpoint to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint at --out")


def run(args: argparse.Namespace) -> int:
    """Rename, then print what was done."""
    from tf1tune.surgery import rename_checkpoint

    report = rename_checkpoint(args.checkpoint, args.out, args.mapping, drop=args.drop,
                               drop_optimizer_state=args.drop_optimizer_state, overwrite=args.overwrite)
    print("\n".join(report.summary_lines()))
    return 0
