"""Benchmark: head-only training from the feature cache against recomputing the frozen base on every step.

The issue's setting: MobileNet V1 (published variable names, random weights), 2 classes, 128x128, 1,000 JPEGs of
160x160 in class folders (800 for training after the 20% validation split), batch 50, 20 epochs of head-only
training (320 steps). Runs alternate cached / full graph (`--no-feature-cache`) / cached ..., each from a fresh run
directory (so every cached run extracts its features anew):

    python bench/feature_cache.py [--work /tmp/tf1tune-bench] [--rounds 1]

Prints per run the wall time of `run_finetune` (graph, restore, extraction, accuracy before and after, 320 steps),
the extraction time and the time per epoch (median step time x steps per epoch, from metrics.json), then the
ratios (targets: >= 30x per epoch, >= 5x end to end) and the largest relative difference of the trained heads.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

import numpy as np
import tensorflow as tf
from _data import jpeg_folder, mobilenet_checkpoint

from tf1tune.train.config import make_config
from tf1tune.train.loop import run_finetune

HEAD = "MobilenetV1/Logits/Conv2d_1c_1x1/weights"


def _run(work: str, data: str, checkpoint: str, cached: bool, index: int) -> dict:
    out = os.path.join(work, f"cache-run-{index}")
    shutil.rmtree(out, ignore_errors=True)
    config = make_config(net="mobilenet_v1", checkpoint=checkpoint, num_classes=2, input_size=[128, 128],
                         train_data=data, steps=320, batch_size=50, learning_rate=0.01, checkpoint_every=10_000,
                         out=out, feature_cache=cached)
    began = time.perf_counter()
    result = run_finetune(config, progress=False)
    wall = time.perf_counter() - began
    phase = result.metrics["phases"][0]
    head = tf.train.load_checkpoint(result.checkpoint).get_tensor(HEAD)
    return {"cached": cached, "wall": wall, "epoch": phase["epoch_seconds"], "head": head,
            "extraction": result.metrics["feature_cache"].get("extraction_seconds", 0.0),
            "steps_per_epoch": -(-result.metrics["train_size"] // 50)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/tf1tune-bench")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    data = jpeg_folder(os.path.join(args.work, "jpeg160-1000"), 1000, 160)
    checkpoint = mobilenet_checkpoint(os.path.join(args.work, "mobilenet_v1"))
    runs = []
    order = [True, False] * args.rounds + [True]
    for i, cached in enumerate(order):
        r = _run(args.work, data, checkpoint, cached, i)
        runs.append(r)
        print(f"{'cached' if cached else 'full graph':10s}: run {r['wall']:6.1f} s, extraction {r['extraction']:5.1f} s, "
              f"epoch {r['epoch'] * 1000:8.1f} ms", flush=True)
    cached = [r for r in runs if r["cached"]]
    full = [r for r in runs if not r["cached"]]
    c_epoch, f_epoch = np.median([r["epoch"] for r in cached]), np.median([r["epoch"] for r in full])
    c_wall, f_wall = np.median([r["wall"] for r in cached]), np.median([r["wall"] for r in full])
    c_train = np.median([r["extraction"] + 20 * r["epoch"] for r in cached])
    print(f"per epoch: full graph {f_epoch * 1000:.0f} ms / cached {c_epoch * 1000:.1f} ms = {f_epoch / c_epoch:.0f}x "
          "(target >= 30x)")
    print(f"end to end (whole run, 20 epochs): full graph {f_wall:.1f} s / cached {c_wall:.1f} s = "
          f"{f_wall / c_wall:.1f}x (target >= 5x)")
    print(f"training only (extraction + 20 epochs vs 20 epochs): {20 * f_epoch:.1f} s / {c_train:.1f} s = "
          f"{20 * f_epoch / c_train:.1f}x")
    ref = full[0]["head"]
    worst = max(float(np.max(np.abs(r["head"] - ref)) / np.max(np.abs(ref))) for r in cached)
    print(f"trained head, cached vs full graph: max |diff| / max |w| = {worst:.2e} (promise: <= 1e-3)")


if __name__ == "__main__":
    main()
