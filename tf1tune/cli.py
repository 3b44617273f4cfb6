"""The `tf1tune` command line: a thin shell over the library.

Each subcommand lives in `tf1tune/commands/<name>.py` with `add_arguments(parser)` and `run(args) -> int`.
User errors (`Tf1tuneError`) print one line to stderr and exit 2; `--debug` shows the traceback.
TensorFlow's start-up chatter is kept off the terminal unless `--debug` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence
from typing import NoReturn

# subcommand name -> module under tf1tune.commands
COMMANDS = {
    "inspect": "inspect_cmd",
    "nets": "nets_cmd",
    "diff": "diff_cmd",
    "finetune": "finetune_cmd",
    "rename": "rename_cmd",
    "convert": "convert_cmd",
    "merge": "merge_cmd",
    "freeze": "freeze_cmd",
    "export-savedmodel": "export_savedmodel_cmd",
    "export-tf2": "export_tf2_cmd",
    "repair": "repair_cmd",
    "export-tflite": "export_tflite_cmd",
    "eval": "eval_cmd",
    "cluster": "cluster_cmd",
}

EPILOG = """examples:
  tf1tune inspect model.ckpt-1000            # what a checkpoint holds
  tf1tune inspect PNet-18.meta --json        # a .meta graph with its checkpoint, as JSON
  tf1tune inspect frozen.pb                  # inputs, outputs and ops of a frozen graph
  tf1tune inspect slim:resnet_v1_50          # a tf-slim net definition
  tf1tune nets                               # every registered net
  tf1tune rename model.ckpt-1500 --map DigitsCNN=encoder/DigitsCNN --out out/model.ckpt
  tf1tune convert export --dtype float16 --out out/half  # V1 or V2 in, V2 out
  tf1tune merge a/model.ckpt b/model.ckpt --prefer 1 --out out/merged
  tf1tune freeze checkpoints/digits_cnn --inputs input --outputs DigitsCNN/Predictions/Softmax --optimize --out d.pb
  tf1tune export-savedmodel checkpoints/digits_cnn --inputs input --outputs DigitsCNN/Predictions/Softmax --out d/
  tf1tune export-tflite --run-dir runs/digits-parity --quantize int8 --out parity.tflite
  tf1tune eval runs/digits-parity --data digits-parity:val --png confusion.png
  tf1tune export-tf2 checkpoints/digits_cnn --outputs DigitsCNN/global_pool --out d-tf2/   # trainable in Keras 3
  tf1tune repair model.meta --replace-input batch:0=images --replace-input batch:1=labels --out fixed.meta
"""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (with where to look for help) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"tf1tune: error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = _Parser(
        prog="tf1tune",
        description="Load, fine-tune and export TensorFlow 1 models on TensorFlow 2.x.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show TensorFlow's logs and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"tf1tune.commands.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP, epilog=getattr(module, "EPILOG", None),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 internal error, 2 bad input, 130 interrupted).

    Bad input includes what the file system or the machine refuses (disk full, read-only, permissions, a path
    component that is a file, out of memory): one line naming the path, exit 2.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    _quiet_tensorflow(debug)
    from tf1tune.errors import Tf1tuneError, describe_os_error, first_line

    parser = build_parser()
    args = parser.parse_args(args_list)
    try:
        with _one_line_warnings(debug):
            return int(args.run(args) or 0)
    except Tf1tuneError as e:
        if debug:
            traceback.print_exc()
        print(f"tf1tune: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tf1tune: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`tf1tune nets | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # noqa: BLE001  (an internal error: still one line unless --debug)
        if debug:
            traceback.print_exc()
        described = describe_os_error(e)
        if described is not None:  # the file system or the machine said no: bad input, not a bug
            print(f"tf1tune: error: {described}", file=sys.stderr)
            return 2
        first = first_line(e)
        print(f"tf1tune: internal error: {type(e).__name__}: {first} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


def _quiet_tensorflow(debug: bool) -> None:
    """Import TensorFlow with its C++ start-up lines silenced (they go to fd 2 before logging is set up)."""
    if debug or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from tf1tune._fs import stderr_to_devnull

    with stderr_to_devnull():
        import tensorflow as tf
    tf.get_logger().setLevel("ERROR")


@contextlib.contextmanager
def _one_line_warnings(debug: bool) -> Iterator[None]:
    """Show tf1tune's warnings as `tf1tune: warning: ...` lines; hide TensorFlow's deprecation noise."""
    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: object = None,
             line: str | None = None) -> None:
        print(f"tf1tune: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        if not debug:
            warnings.filterwarnings("ignore", module=r"(tensorflow|tf_keras|keras|tf_slim)(\.|$)")
            warnings.filterwarnings("ignore", category=DeprecationWarning)
        yield


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
