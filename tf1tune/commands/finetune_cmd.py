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
  tf1tune cluster --workers 2 -- finetune --overwrite  # the main job on 1 ps + 2 workers on this machine
  tf1tune finetune --ps-hosts h0:2222 --worker-hosts h1:2222,h2:2222 --job-name worker --task-index 0

Flags override the --config file, which overrides the defaults (the main job).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `finetune`: one flag per config field that has one (`tf1tune.train.config.cli_flags`)."""
    from tf1tune.train.config import cli_flags

    parser.add_argument("--config", help="YAML file with the same keys (underscores or dashes)")
    for flag, name, options in cli_flags():
        parser.add_argument(flag, dest=name, **options)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the fine-tuning and print accuracy before and after."""
    from tf1tune.train.cluster import cluster_from, run_ps
    from tf1tune.train.config import cli_flags, make_config
    from tf1tune.train.loop import run_finetune, run_replica

    config = make_config(args.config, **{name: getattr(args, name) for _, name, _ in cli_flags()})
    cluster = cluster_from(config)  # flags or TF_CONFIG; None: one process
    if cluster is not None and cluster.job_name == "ps":
        return run_ps(cluster)
    if cluster is not None and not cluster.is_chief:
        steps = run_replica(config, cluster, progress=not args.no_progress)
        print(f"{cluster.name}: done at global step {steps} (the chief, worker 0, wrote the run directory)")
        return 0
    result = run_finetune(config, progress=not args.no_progress, cluster=cluster)
    print(f"run directory: {result.run_dir}")
    print(f"validation accuracy before fine-tuning (new head): {result.accuracy_before:.4f}")
    print(f"validation accuracy after {result.steps} steps: {result.accuracy_after:.4f}")
    print(f"parameters trained: {result.trained_params:,}; frozen: {result.frozen_params:,}")
    print(f"checkpoint: {result.checkpoint}")
    return 0
