"""`tf1tune repair SOURCE --out FILE`: replace a queue/iterator input pipeline by placeholders, strip devices/attrs."""

from __future__ import annotations

import argparse

HELP = "write a repaired copy of a .meta or GraphDef .pb: input pipeline -> placeholders, devices/attrs stripped"
EPILOG = """--replace-input TENSOR[=NAME[:DTYPE[:SHAPE]]]: dtype and shape default to the tensor's, batch dimension free;
SHAPE is comma-separated with -1 or ? for a free dimension (e.g. -1,12,12,3).
examples:
  tf1tune repair model.meta --replace-input batch:0=images --replace-input batch:1=labels --out fixed.meta
  tf1tune repair PNet-18.meta --replace-input batch:0 --replace-input batch:1 --out pnet/PNet-18.meta
  tf1tune repair frozen.pb --strip-devices --strip-attrs --out fixed.pb
"""


def _replacement(text: str) -> tuple[str, object]:
    from tf1tune.repair import NewInput

    tensor, _, rest = text.partition("=")
    if not tensor:
        raise argparse.ArgumentTypeError(f"'{text}' is not TENSOR[=NAME[:DTYPE[:SHAPE]]] (e.g. batch:0=images)")
    name, dtype, shape_text = (rest.split(":", 2) + ["", ""])[:3] if rest else ("", "", "")
    shape = None
    if shape_text:
        try:
            shape = [None if d.strip() in ("?", "-1", "") else int(d) for d in shape_text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"shape '{shape_text}' in '{text}' is not comma-separated sizes "
                                             "(e.g. -1,12,12,3)") from None
    return tensor, NewInput(name or None, dtype or None, shape)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `repair`."""
    parser.add_argument("source", help="a .meta file or a GraphDef .pb (binary or text)")
    parser.add_argument("--out", required=True, metavar="FILE", help="file to write (.meta for a .meta source)")
    parser.add_argument("--replace-input", dest="replacements", action="append", default=[], type=_replacement,
                        metavar="TENSOR[=NAME[:DTYPE[:SHAPE]]]",
                        help="replace a pipeline tensor (e.g. batch:0) by a placeholder NAME (repeatable)")
    parser.add_argument("--strip-devices", action="store_true", help="clear every device placement")
    parser.add_argument("--strip-attrs", action="store_true", help="remove attrs this TensorFlow's ops do not declare")
    parser.add_argument("--force", action="store_true",
                        help="also replace tensors that no input-pipeline op produces")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def run(args: argparse.Namespace) -> int:
    """Repair, then print one line per change."""
    from tf1tune.errors import GraphRepairError
    from tf1tune.repair import repair_file

    replacements = {}
    for tensor, spec in args.replacements:
        if tensor in replacements:
            raise GraphRepairError(f"--replace-input {tensor} is given twice; give each tensor once")
        replacements[tensor] = spec
    lines = repair_file(args.source, args.out, replacements, strip_devices=args.strip_devices,
                        strip_attrs=args.strip_attrs, force=args.force, overwrite=args.overwrite)
    print("\n".join(lines))
    return 0
