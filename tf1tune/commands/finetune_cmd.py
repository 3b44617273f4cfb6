"""`tf1tune finetune`: fine-tune a legacy model on new data (flags as in slim's train_image_classifier)."""

from __future__ import annotations

import argparse

HELP = "fine-tune a checkpoint on a new task: restore, freeze what should be frozen, train the rest"
EPILOG = """examples:
  tf1tune finetune                                   # the main job: checkpoints/digits_cnn -> odd/even digits
  tf1tune finetune --config configs/digits_parity.yaml --overwrite
  tf1tune finetune --net resnet_v1_50 --checkpoint resnet_v1_50.ckpt --num-classes 5 \\
      --train-data flowers/train --val-data flowers/val --trainable-scopes resnet_v1_50/logits --out runs/flowers
  tf1tune finetune --meta PNet-18.meta --input input_image --endpoint conv3/add --num-classes 2 \\
      --train-data faces.npz --out runs/pnet
  tf1tune finetune --out runs/digits-parity --resume  # continue after an interruption

Flags override the --config file, which overrides the defaults (the main job).
"""

_FLAGS: list[tuple[str, dict]] = [
    ("--net", {"help": "registered net name (tf1tune nets)"}),
    ("--meta", {"help": ".meta graph to fine-tune (with --input and --endpoint)"}),
    ("--frozen", {"help": "frozen .pb to fine-tune (with --input and --endpoint)"}),
    ("--input", {"help": "input tensor name for --meta/--frozen"}),
    ("--checkpoint", {"help": "checkpoint to start from (prefix, file or directory)"}),
    ("--endpoint", {"help": "tensor to graft the new head on (--meta/--frozen)"}),
    ("--head", {"help": "head spec for --meta/--frozen, e.g. 'global_pool, dropout(0.2), dense(5)'"}),
    ("--num-classes", {"type": int, "help": "classes of the new task"}),
    ("--input-size", {"type": int, "nargs": 2, "metavar": ("H", "W"), "help": "--net only: input size (default: the net's)"}),
    ("--exclude-scopes", {"help": "comma-separated scopes left out of the restore"}),
    ("--trainable-scopes", {"help": "comma-separated scopes to train (default: the classifier or new head)"}),
    ("--train-data", {"help": "class folders, .npz, TFRecords, or a named task (digits-parity:train)"}),
    ("--val-data", {"help": "validation data (default: a split of the training data)"}),
    ("--val-fraction", {"type": float, "help": "validation split when no --val-data (default 0.2)"}),
    ("--steps", {"type": int, "help": "training steps (single phase)"}),
    ("--batch-size", {"type": int, "help": "batch size (default 64)"}),
    ("--learning-rate", {"type": float, "help": "learning rate (single phase)"}),
    ("--optimizer", {"help": "sgd, momentum, adam or rmsprop (default momentum)"}),
    ("--clip-norm", {"type": float, "help": "clip gradients to this global norm"}),
    ("--out", {"help": "run directory (checkpoints, events, metrics.json)"}),
    ("--seed", {"type": int, "help": "seed of data order, augmentation and initialisation"}),
    ("--checkpoint-every", {"type": int, "help": "save every N steps (default 50)"}),
    ("--keep-checkpoints", {"type": int, "help": "checkpoints kept in the run directory (default 3)"}),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `finetune`."""
    parser.add_argument("--config", help="YAML file with the same keys (underscores or dashes)")
    for flag, options in _FLAGS:
        parser.add_argument(flag, default=None, **options)
    parser.add_argument("--resume", action="store_true", default=None, help="continue from the run's last checkpoint")
    parser.add_argument("--overwrite", action="store_true", default=None, help="delete an existing run directory first")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the fine-tuning and print accuracy before and after."""
    from tf1tune.finetune import run_finetune
    from tf1tune.finetune_config import make_config

    overrides = {flag.lstrip("-").replace("-", "_"): getattr(args, flag.lstrip("-").replace("-", "_")) for flag, _ in _FLAGS}
    overrides.update(resume=args.resume, overwrite=args.overwrite)
    config = make_config(args.config, **overrides)
    result = run_finetune(config, progress=not args.no_progress)
    print(f"run directory: {result.run_dir}")
    print(f"validation accuracy before fine-tuning (new head): {result.accuracy_before:.4f}")
    print(f"validation accuracy after {result.steps} steps: {result.accuracy_after:.4f}")
    print(f"parameters trained: {result.trained_params:,}; frozen: {result.frozen_params:,}")
    print(f"checkpoint: {result.checkpoint}")
    return 0
