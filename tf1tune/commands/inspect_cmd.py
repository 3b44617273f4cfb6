"""`tf1tune inspect SOURCE [--json]`: what a checkpoint, graph, SavedModel or net holds."""

from __future__ import annotations

import argparse
import json

HELP = "summarise a checkpoint, .meta, frozen .pb, SavedModel directory or slim:NAME"
EPILOG = """examples:
  tf1tune inspect checkpoints/digits_cnn
  tf1tune inspect model.ckpt-1000.meta --json
  tf1tune inspect slim:mobilenet_v2 --num-classes 5 --input-size 96 96
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `inspect`."""
    parser.add_argument("source", help="checkpoint prefix or directory, .meta, .pb, SavedModel dir, or slim:NAME")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--checkpoint", help="checkpoint for a .meta (default: found next to it)")
    parser.add_argument("--num-classes", type=int, help="slim:NAME only: classifier outputs (0: features only)")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="slim:NAME only: input size")
    parser.add_argument("--max-rows", type=int, default=60, help="variables shown in the table (default 60)")


def run(args: argparse.Namespace) -> int:
    """Print the summary."""
    from tf1tune.inspection import format_summary, inspect_source
    from tf1tune.loaders import detect_kind

    options: dict[str, object] = {}
    kind = detect_kind(args.source)
    if args.checkpoint:
        options["checkpoint"] = args.checkpoint
    if kind == "slim":
        if args.num_classes is not None:
            options["num_classes"] = args.num_classes or None
        if args.input_size:
            options["input_size"] = tuple(args.input_size)
    summary = inspect_source(args.source, **options)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary, max_rows=args.max_rows))
    return 0
