"""`tf1tune cluster`: run a fine-tuning as a whole cluster (ps tasks and workers) on this machine."""

from __future__ import annotations

import argparse

HELP = "run a fine-tuning on a cluster of local processes (1 ps + N workers), to try a distributed run"
EPILOG = """examples:
  tf1tune cluster --workers 2 -- finetune --overwrite         # the main job, synchronous over 2 workers
  tf1tune cluster --workers 2 -- finetune --resume            # continue it after a task was killed
  tf1tune cluster --workers 2 --ps 2 -- finetune --config configs/digits_parity.yaml --out runs/dist --overwrite

Every task is `python -m tf1tune finetune ...` with --ps-hosts, --worker-hosts, --job-name and --task-index
added on free localhost ports; on real machines start those commands yourself (README, "Distributed").
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `cluster`: the task counts, then `--` and the finetune command."""
    parser.add_argument("--workers", type=int, default=2, help="workers (worker 0 is the chief; default 2)")
    parser.add_argument("--ps", type=int, default=1, help="parameter-server tasks (default 1)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- finetune [flags]")


def run(args: argparse.Namespace) -> int:
    """Start the tasks, relay their output, return 0 when all of them exited 0."""
    from tf1tune.train.local_cluster import run_local_cluster

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return run_local_cluster(command, workers=args.workers, ps=args.ps)
