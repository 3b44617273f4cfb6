"""Benchmark: a fine-tuning run over a 20,000-image JPEG folder at 224x224 completes, in bounded memory.

MobileNet V1 (published variable names, random weights), 2 classes, 224x224, a class folder of 20,000 JPEGs of
256x256 made on the spot (nothing downloaded), 20% split off for validation, head-only training with the feature
cache on (the default: the base's features are extracted once per image, streamed to disk):

    python bench/big_folder.py [--work /tmp/tf1tune-bench] [--images 20000] [--steps 500]

Runs `tf1tune finetune` in a process of its own and prints its wall time, peak RSS, the extraction time, the
time per epoch and the accuracy; for scale, 20,000 images as one float32 array at 224x224 are 12 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil

from _data import jpeg_folder, mobilenet_checkpoint, run_measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/tf1tune-bench")
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    folder = jpeg_folder(os.path.join(args.work, f"jpeg256-{args.images}"), args.images, 256)
    checkpoint = mobilenet_checkpoint(os.path.join(args.work, "mobilenet_v1"))
    out = os.path.join(args.work, "run-big")
    shutil.rmtree(out, ignore_errors=True)
    rss, wall, _ = run_measured([
        "finetune", "--net", "mobilenet_v1", "--checkpoint", checkpoint, "--num-classes", "2", "--input-size", "224",
        "224", "--train-data", folder, "--steps", str(args.steps), "--batch-size", "64", "--checkpoint-every", "250",
        "--no-progress", "--out", out])
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    cache = metrics["feature_cache"]
    array_gb = args.images * 224 * 224 * 3 * 4 / 1e9
    print(f"{args.images} JPEGs at 224x224, {args.steps} steps of batch 64: completed in {wall:.0f} s, "
          f"peak RSS {rss:.2f} GB (the images as one float32 array: {array_gb:.1f} GB)")
    print(f"feature cache used: {cache['used']}, extraction {cache.get('extraction_seconds', 0):.0f} s "
          f"({args.images / max(cache.get('extraction_seconds', 1), 1e-9):.0f} images/s), epoch "
          f"{metrics['phases'][0]['epoch_seconds']:.2f} s; accuracy {metrics['accuracy_before']:.3f} -> "
          f"{metrics['accuracy_after']:.3f}; skipped images: {metrics['skipped_images']['count']}")


if __name__ == "__main__":
    main()
