"""`tf1tune freeze`: a verified frozen GraphDef (`.pb`) of a model, for inference.

The model is loaded (`SOURCE`, `--meta` or `--net`), its checkpoint restored, put into inference mode and frozen
(`tf1tune.export.freeze_model`), optionally optimized, then run side by side with the live session on the same
inputs; only when the outputs agree within the tolerance is the `.pb` written (atomically). The work is
`tf1tune.export.export_model`; the source arguments here are shared with `export-savedmodel`.
"""

from __future__ import annotations

import argparse
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
  tf1tune freeze --net digits_cnn --input-size 16 16 --checkpoint checkpoints/digits_cnn \\
      --outputs DigitsCNN/Predictions/Softmax --out digits16.pb   # the input size it was fine-tuned at
  tf1tune freeze frozen.pb --outputs output --optimize --out frozen_opt.pb   # a frozen source checks itself
  tf1tune freeze --run-dir runs/digits-parity --optimize --out parity.pb      # a fine-tuning run, in one command
  tf1tune freeze checkpoints/digits_cnn --inputs input --outputs DigitsCNN/Predictions/Softmax --optimize \
      --out digits.pb --onnx digits.onnx      # needs pip install 'tf1tune[onnx]'
  tf1tune freeze --run-dir runs/digits-parity --input-format jpeg --labels configs/digits_parity_labels.txt \\
      --out serving.pb                        # JPEG bytes in (image_bytes), class name out (label)

"""


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments that pick and freeze the model (shared with `export-savedmodel`)."""
    parser.add_argument("source", nargs="?", help="checkpoint prefix or directory, .meta, frozen .pb or SavedModel dir")
    parser.add_argument("--run-dir", metavar="RUN", help="a `tf1tune finetune` run directory: its last checkpoint, "
                        "its input and the head's probabilities, verified on the run's validation data")
    parser.add_argument("--meta", metavar="PATH", help="a .meta training graph (instead of SOURCE)")
    parser.add_argument("--net", metavar="NAME", help="a registered slim net (instead of SOURCE); see `tf1tune nets`")
    parser.add_argument("--num-classes", type=int, help="--net only: classifier outputs")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                        help="--net only: input height and width (default: the net's; slim's --image_size)")
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
    parser.add_argument("--allow-ops", action="append", metavar="TYPE[,TYPE]",
                        help="run these op types although they do more than compute (files, network, Python); "
                             "`tf1tune inspect` lists them under risks")


def add_serving_arguments(parser: argparse.ArgumentParser) -> None:
    """What serving needs (shared with `export-savedmodel`): JPEG input, label names out."""
    parser.add_argument("--input-format", default="tensor", metavar="FORMAT",
                        help="tensor (default: the image input as it is) or jpeg: a string input image_bytes of "
                             "encoded JPEGs, decoded and resized in the graph")
    parser.add_argument("--labels", metavar="FILE",
                        help="class names, one per line (or slim's 0:name): adds a string output `label`, the "
                             "name of the top-1 class, beside the probabilities")


def serving_options(args: argparse.Namespace) -> dict[str, Any]:
    """The serving keyword arguments of `export_model` (`--input-format`, `--labels` read from its file)."""
    labels = None
    if args.labels:
        from tf1tune.export.serving import read_labels_file

        labels = read_labels_file(args.labels)
    return {"input_format": args.input_format, "labels": labels}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `freeze`."""
    add_source_arguments(parser)
    add_serving_arguments(parser)
    parser.add_argument("--out", required=True, metavar="FILE.pb", help="where to write the frozen graph")
    parser.add_argument("--onnx", metavar="FILE.onnx",
                        help="also write an ONNX model, verified with onnxruntime (needs pip install 'tf1tune[onnx]')")
    parser.add_argument("--opset", type=int, help="--onnx only: ONNX opset (default: tf2onnx's)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out (and --onnx) file")


def _split(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def export_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of `tf1tune.export.export_model` that the source arguments give."""
    from tf1tune.export.freeze import parse_setting

    return {"source": args.source, "meta": args.meta, "net": args.net, "num_classes": args.num_classes,
            "input_size": tuple(args.input_size) if args.input_size else None, "checkpoint": args.checkpoint,
            "run_dir": args.run_dir, "outputs": _split(args.outputs),
            "inputs": _split(args.inputs), "settings": dict(parse_setting(s) for s in args.settings),
            "optimize": args.optimize, "rtol": args.rtol, "atol": args.atol, "seed": args.seed,
            "allow_ops": args.allow_ops}


def run(args: argparse.Namespace) -> int:
    """Freeze, verify, write; print the verification line and where it wrote."""
    from tf1tune.export import export_model

    result = export_model(**export_options(args), **serving_options(args), pb=args.out, onnx=args.onnx,
                          opset=args.opset, overwrite=args.overwrite)
    frozen = result.frozen
    print(result.check.line())
    if result.serving_check:
        print("serving graph " + result.serving_check.line())
    for note in frozen.notes:
        print(f"note: {note}")
    if frozen.settings:
        print("set: " + ", ".join(f"{k}={v.tolist()}" for k, v in frozen.settings.items()))
    if result.onnx_check:
        print("ONNX (onnxruntime vs frozen graph) " + result.onnx_check.line())
    served_in, served_out = result.served_inputs or frozen.inputs, result.served_outputs or frozen.outputs
    print(f"wrote {result.written[0]} ({result.served_nodes or len(frozen.graph_def.node)} nodes; inputs {', '.join(served_in)}; "
          f"outputs {', '.join(served_out)})")
    for path in result.written[1:]:
        print(f"wrote {path}")
    return 0
