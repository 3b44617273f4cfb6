"""`tf1tune freeze`: a verified frozen GraphDef (`.pb`) of a model, for inference.

The model is loaded (`SOURCE`, `--meta` or `--net`), its checkpoint restored, put into inference mode and frozen
(`tf1tune.export.freeze_model`), optionally optimized, then run side by side with the live session on the same
inputs; only when the outputs agree within the tolerance is the `.pb` written (atomically). The helpers here are
shared with `export-savedmodel`.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

HELP = "freeze a model (checkpoint values as constants, inference mode) into a verified .pb"
EPILOG = """examples:
  tf1tune freeze checkpoints/digits_cnn --inputs input --outputs DigitsCNN/Predictions/Softmax --out digits.pb
  tf1tune freeze checkpoints/digits_cnn --inputs input --outputs DigitsCNN/Predictions/Softmax --out digits.pb \
      --overwrite                     # replace an existing digits.pb
  tf1tune freeze checkpoints/digits_cnn --outputs DigitsCNN/Predictions/Softmax --inputs input --optimize \\
      --set is_training=false --out digits_opt.pb
  tf1tune freeze --meta PNet-18.meta --checkpoint PNet-18 --inputs input_image --outputs conv4_1/Reshape_1 --out pnet.pb
  tf1tune freeze --net digits_cnn --num-classes 10 --checkpoint checkpoints/digits_cnn \\
      --outputs DigitsCNN/Predictions/Softmax --out digits.pb
  tf1tune freeze frozen.pb --outputs output --optimize --out frozen_opt.pb   # a frozen source checks itself
  tf1tune freeze --run-dir runs/digits-parity --optimize --out parity.pb      # a fine-tuning run, in one command
  tf1tune freeze checkpoints/digits_cnn --inputs input --outputs DigitsCNN/Predictions/Softmax --optimize \
      --out digits.pb --onnx digits.onnx      # needs pip install 'tf1tune[onnx]'

"""


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments that pick and freeze the model (shared with `export-savedmodel`)."""
    parser.add_argument("source", nargs="?", help="checkpoint prefix or directory, .meta, frozen .pb or SavedModel dir")
    parser.add_argument("--run-dir", metavar="RUN", help="a `tf1tune finetune` run directory: its last checkpoint, "
                        "its input and the head's probabilities, verified on the run's validation data")
    parser.add_argument("--meta", metavar="PATH", help="a .meta training graph (instead of SOURCE)")
    parser.add_argument("--net", metavar="NAME", help="a registered slim net (instead of SOURCE); see `tf1tune nets`")
    parser.add_argument("--num-classes", type=int, help="--net only: classifier outputs")
    parser.add_argument("--checkpoint", metavar="CKPT", help="checkpoint holding the weights (default: next to the .meta)")
    parser.add_argument("--outputs", metavar="NAME[,NAME]", help="output tensor or op names (--run-dir: the head's probabilities)")
    parser.add_argument("--inputs", metavar="NAME[,NAME]",
                        help="input placeholders (default: every placeholder without a default the outputs need)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="settings",
                        help="replace a placeholder by a constant, e.g. is_training=false (repeatable); boolean "
                             "placeholders with a default become false anyway")
    parser.add_argument("--optimize", action="store_true",
                        help="fold batch norm and constants, remove identities (optimize_for_inference + grappler)")
    parser.add_argument("--rtol", type=float, default=1e-5,
                        help="verification: allowed max |diff| relative to each output's max |value| (default 1e-5)")
    parser.add_argument("--atol", type=float, default=0.0, help="verification: absolute tolerance added (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random verification inputs (default 0)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `freeze`."""
    add_source_arguments(parser)
    parser.add_argument("--out", required=True, metavar="FILE.pb", help="where to write the frozen graph")
    parser.add_argument("--onnx", metavar="FILE.onnx",
                        help="also write an ONNX model, verified with onnxruntime (needs pip install 'tf1tune[onnx]')")
    parser.add_argument("--opset", type=int, help="--onnx only: ONNX opset (default: tf2onnx's)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out (and --onnx) file")


def _split(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def load_source(args: argparse.Namespace) -> Any:
    """The handle picked by SOURCE, `--meta` or `--net` (exactly one)."""
    import tf1tune
    from tf1tune.errors import Tf1tuneError

    given = [x for x in (args.source, args.meta, args.net) if x]
    if len(given) != 1:
        raise Tf1tuneError(f"give exactly one of SOURCE, --meta PATH, --net NAME or --run-dir RUN (got {len(given)}); "
                           "e.g. tf1tune freeze checkpoints/digits_cnn --outputs DigitsCNN/Predictions/Softmax --out m.pb")
    if args.num_classes is not None and not args.net:
        raise Tf1tuneError("--num-classes only applies to --net NAME")
    options = {"checkpoint": args.checkpoint} if args.checkpoint else {}
    if args.net:
        if args.num_classes is not None:
            options["num_classes"] = args.num_classes or None
        return tf1tune.load_slim(args.net, **options)
    if args.meta:
        return tf1tune.load_meta(args.meta, **options)
    from tf1tune.checkpoints import resolve_checkpoint
    from tf1tune.loaders import detect_kind, find_meta

    if args.checkpoint and detect_kind(args.source) == "checkpoint":  # the source names the graph, --checkpoint the weights
        meta = find_meta(resolve_checkpoint(args.source))
        if meta is None:
            raise Tf1tuneError(f"'{args.source}' has no .meta graph next to it; give the graph with --meta PATH")
        return tf1tune.load_meta(meta, **options)
    return tf1tune.load(args.source, **options)


def source_files(handle: Any) -> list[str]:
    """Every file the handle was loaded from, as real paths: never to be written to.

    That is the source file (or every file under a SavedModel directory), every file of its checkpoint
    (`tf1tune.checkpoints.checkpoint_files`: `.index`, `.data-*` shards, V1 files, `.meta`) and the `checkpoint`
    state file of the checkpoint's directory.

    Args:
        handle: A loaded `ModelHandle`.

    Returns:
        Sorted real paths of the files that exist.
    """
    from tf1tune.checkpoints import checkpoint_files

    found: set[str] = set()
    source = handle.source
    if os.path.isdir(source):
        for folder, _, names in os.walk(source):
            found.update(os.path.join(folder, n) for n in names)
    elif os.path.isfile(source):
        found.add(source)
    if handle.checkpoint:
        found.update(checkpoint_files(handle.checkpoint))
        found.add(os.path.join(os.path.dirname(handle.checkpoint) or ".", "checkpoint"))
    return sorted(os.path.realpath(f) for f in found if os.path.isfile(f))


def _check_out(handle: Any, outputs: dict[str, str | None], overwrite: bool | None) -> None:
    """Refuse output paths that would write over the source (sources are never written to).

    Args:
        handle: The loaded source.
        outputs: Flag (`--out`, `--onnx`) -> path given, None when not given.
        overwrite: None: existing outputs are the caller's concern; False: refuse an existing output file;
            True: allow replacing it.
    """
    from tf1tune.errors import Tf1tuneError

    own = set(source_files(handle))
    saved_model = os.path.realpath(handle.source) if handle.kind == "saved_model" and os.path.isdir(handle.source) \
        else None
    given = {flag: path for flag, path in outputs.items() if path}
    for flag, path in given.items():
        target = os.path.realpath(path)
        if target in own:
            raise Tf1tuneError(f"{flag} '{path}' is a file of the source; write the export somewhere else")
        if saved_model and (target == saved_model or target.startswith(saved_model + os.sep)):
            raise Tf1tuneError(f"{flag} '{path}' is inside the source SavedModel '{handle.source}'; "
                               "write the export somewhere else")
        if overwrite is False and os.path.exists(path):
            raise Tf1tuneError(f"{flag} '{path}' exists; choose another {flag} or pass --overwrite")
    targets = [os.path.realpath(p) for p in given.values()]
    if len(set(targets)) < len(targets):
        raise Tf1tuneError("--out and --onnx are the same file; give them different paths")


def freeze_and_verify(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """Load, freeze, optionally optimize and verify; returns `(handle, FrozenModel, Verification)`."""
    from tf1tune.export import freeze_model, optimize, session_runner, verify
    from tf1tune.export.freeze import parse_setting
    from tf1tune.export.verify import source_batch

    from tf1tune.errors import Tf1tuneError

    inputs, outputs, feeds = _split(args.inputs), _split(args.outputs), None
    if args.run_dir:
        from tf1tune.export.run_dir import load_run

        if args.source or args.meta or args.net:
            raise Tf1tuneError("--run-dir replaces SOURCE, --meta and --net; give only one of them")
        run = load_run(args.run_dir)
        handle = run.handle
        inputs, outputs = inputs or [run.input], outputs or [run.probabilities]
        feeds = {inputs[0]: run.validation_images}
    else:
        handle = load_source(args)
    # freeze checks existing outputs here (--overwrite); export-savedmodel requires a new or empty directory itself
    _check_out(handle, {"--out": args.out, "--onnx": getattr(args, "onnx", None)}, getattr(args, "overwrite", None))
    settings = dict(parse_setting(s) for s in args.settings)
    if not outputs:
        raise Tf1tuneError("--outputs is required (except with --run-dir); e.g. --outputs DigitsCNN/Predictions/Softmax")
    frozen = freeze_model(handle, outputs, inputs, settings)
    if args.optimize:
        frozen.graph_def = optimize(frozen.graph_def, frozen.inputs, frozen.outputs)
    check = verify(session_runner(handle, frozen.outputs, frozen.settings), frozen.graph_def, frozen.inputs,
                   frozen.outputs, feeds=feeds, rtol=args.rtol, atol=args.atol,
                   batch=source_batch(handle, frozen.inputs), seed=args.seed)
    return handle, frozen, check


def run(args: argparse.Namespace) -> int:
    """Freeze, verify, write; print the verification line and where it wrote."""
    from tf1tune.export import write_graph_def

    _, frozen, check = freeze_and_verify(args)
    print(check.line())
    for note in frozen.notes:
        print(f"note: {note}")
    if frozen.settings:
        print("set: " + ", ".join(f"{k}={v.tolist()}" for k, v in frozen.settings.items()))
    if args.onnx:  # checked before anything is written
        from tf1tune.export import export_onnx

        onnx_check = export_onnx(frozen.graph_def, frozen.inputs, frozen.outputs, args.onnx, opset=args.opset,
                                 rtol=args.rtol, atol=args.atol)
        print("ONNX (onnxruntime vs frozen graph) " + onnx_check.line())
    path = write_graph_def(frozen.graph_def, args.out)
    print(f"wrote {path} ({len(frozen.graph_def.node)} nodes; inputs {', '.join(frozen.inputs)}; "
          f"outputs {', '.join(frozen.outputs)})")
    if args.onnx:
        print(f"wrote {os.path.abspath(args.onnx)}")
    return 0
