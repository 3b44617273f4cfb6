"""`tf1tune diff CKPT_A CKPT_B [--json]`: which variables changed, by how many elements and how much."""

from __future__ import annotations

import argparse

HELP = "compare two checkpoints variable by variable (prove that frozen weights did not move)"
EPILOG = """examples:
  tf1tune diff checkpoints/digits_cnn runs/parity/model.ckpt-200
  tf1tune diff a.ckpt b.ckpt --json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `diff`."""
    parser.add_argument("a", help="first checkpoint (prefix, file or directory)")
    parser.add_argument("b", help="second checkpoint (prefix, file or directory)")
    parser.add_argument("--json", action="store_true",
                        help="print strict JSON with keys changed ({name: {count, max_abs}}), unchanged, "
                             "reshaped ({name: {shape_a, shape_b, dtype_a, dtype_b}}), only_in_a, only_in_b")


def run(args: argparse.Namespace) -> int:
    """Print the comparison."""
    from tf1tune.diff import diff_checkpoints

    result = diff_checkpoints(args.a, args.b)
    print(result.to_json() if args.json else result.format())
    return 0
