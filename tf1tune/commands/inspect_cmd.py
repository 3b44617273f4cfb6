"""`tf1tune inspect SOURCE [--json]`: what a checkpoint, graph, SavedModel or net holds.

With `--checkpoint` and a graph source (`.meta` or `slim:NAME`) it also prints the restore plan: which of
the selected graph variables the checkpoint fills, which are missing or of another shape or dtype, and
which checkpoint entries go unused (`--json`: the key `plan`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

HELP = "summarise a checkpoint, .meta, frozen .pb, SavedModel directory or slim:NAME"
EPILOG = """examples:
  tf1tune inspect checkpoints/digits_cnn
  tf1tune inspect model.ckpt-1000.meta --json
  tf1tune inspect slim:mobilenet_v2 --num-classes 5 --input-size 96 96
  tf1tune inspect slim:digits_cnn --num-classes 5 --checkpoint checkpoints/digits_cnn \\
      --exclude-scopes DigitsCNN/Logits      # restore plan: what a 5-class head can reuse
  tf1tune inspect PNet-18.meta --checkpoint PNet-18 --up-to conv3/add:0 --json
"""

_GRAPH_KINDS = ("meta", "slim")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `inspect`."""
    parser.add_argument("source", help="checkpoint prefix or directory, .meta, .pb, SavedModel dir, or slim:NAME")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--checkpoint", help="checkpoint for a .meta (default: found next to it); with a .meta or "
                                             "slim:NAME source also prints the restore plan")
    parser.add_argument("--num-classes", type=int, help="slim:NAME only: classifier outputs (0: features only)")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="slim:NAME only: input size")
    parser.add_argument("--max-rows", type=int, default=60, help="variables shown in the table (default 60)")
    selectors = parser.add_argument_group("restore plan selectors (with --checkpoint and a .meta or slim:NAME)")
    selectors.add_argument("--include-scopes", action="append", metavar="SCOPES",
                           help="only variables under these scopes (comma-separated, or repeat the flag)")
    selectors.add_argument("--exclude-scopes", action="append", metavar="SCOPES",
                           help="leave out variables under these scopes (comma-separated, or repeat the flag)")
    selectors.add_argument("--up-to", metavar="ENDPOINT",
                           help="only variables that this endpoint or tensor name depends on")
    selectors.add_argument("--regex", action="store_true",
                           help="treat the scopes as regular expressions (re.search on variable names)")


def _split(values: Sequence[str] | None) -> list[str] | None:
    if not values:
        return None
    return [s.strip() for v in values for s in v.split(",") if s.strip()]


def run(args: argparse.Namespace) -> int:
    """Print the summary (and the restore plan when a checkpoint is given for a graph source)."""
    from tf1tune import _json
    from tf1tune.errors import Tf1tuneError
    from tf1tune.inspection import format_summary, inspect_source, summarize_handle
    from tf1tune.loaders import detect_kind, load

    options: dict[str, object] = {}
    kind = detect_kind(args.source)
    if args.checkpoint:
        options["checkpoint"] = args.checkpoint
    if kind == "slim":
        if args.num_classes is not None:
            options["num_classes"] = args.num_classes or None
        if args.input_size:
            options["input_size"] = tuple(args.input_size)
    include, exclude = _split(args.include_scopes), _split(args.exclude_scopes)
    has_selectors = bool(include or exclude or args.up_to or args.regex)
    if has_selectors and not (args.checkpoint and kind in _GRAPH_KINDS):
        raise Tf1tuneError(
            f"--include-scopes, --exclude-scopes, --up-to and --regex need --checkpoint and a .meta or slim:NAME "
            f"source (got a {kind} source{'' if args.checkpoint else ' and no --checkpoint'}); "
            "e.g. tf1tune inspect slim:digits_cnn --checkpoint checkpoints/digits_cnn --exclude-scopes DigitsCNN/Logits"
        )
    plan = None
    if args.checkpoint and kind in _GRAPH_KINDS:
        handle = load(args.source, **options)
        summary: dict[str, Any] = summarize_handle(handle)
        plan = _plan(handle, args.checkpoint, include, exclude, args.up_to, args.regex)
        summary["plan"] = plan.to_dict()
    else:
        summary = inspect_source(args.source, **options)
    if args.json:
        print(_json.dumps(summary))
    else:
        print(format_summary(summary, max_rows=args.max_rows))
        if plan is not None:
            print()
            print(plan.format())
    return 0


def _plan(handle: Any, checkpoint: str, include: list[str] | None, exclude: list[str] | None, up_to: str | None,
          regex: bool) -> Any:
    """The restore plan of the selected variables of `handle` against `checkpoint`."""
    from tf1tune.restore import plan_restore
    from tf1tune.selection import select

    endpoint = handle.endpoint(up_to) if up_to else None
    variables = select(handle.variables, include_scopes=include, exclude_scopes=exclude, regex=regex, up_to=endpoint)
    return plan_restore(variables, checkpoint)
