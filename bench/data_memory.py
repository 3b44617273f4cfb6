"""Benchmark: peak memory of `tf1tune finetune` does not grow with the number of images (streamed input).

The issue's setting: a MobileNet V1 checkpoint with the published names (random weights here), 2 classes,
input 128x128, 40 steps of batch 32, class folders of 160x160 JPEGs, made on the spot. Each configuration runs
in a process of its own (its own peak RSS, `VmHWM`), in the order 1,000 / 8,000 / 1,000 / 8,000 images, for a
class folder and for TFRecord shards (1 shard of 1,000 / 4 shards of 8,000):

    python bench/data_memory.py [--work /tmp/tf1tune-bench] [--rounds 1]

Prints each peak RSS and the ratio 8,000 / 1,000 images (target: within 1.25x; on main before streaming the ratio
was 4.1x for folders). The feature cache is off here (`--no-feature-cache`) so every step streams images, as the
issue measured; the cache streams its extraction the same way.
"""

from __future__ import annotations

import argparse
import os
import shutil

from _data import jpeg_folder, mobilenet_checkpoint, run_measured, tfrecord_shards


def _subset(folder: str, out: str, count: int) -> str:
    """The first `count` images of a class folder, hard-linked (no copy)."""
    if os.path.isfile(os.path.join(out, ".complete")):
        return out
    files = sorted((c, f) for c in sorted(os.listdir(folder)) if c.startswith("class")
                   for f in os.listdir(os.path.join(folder, c)))
    files = sorted(files, key=lambda cf: cf[1])[:count]
    for c, f in files:
        os.makedirs(os.path.join(out, c), exist_ok=True)
        os.link(os.path.join(folder, c, f), os.path.join(out, c, f))
    open(os.path.join(out, ".complete"), "w").close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/tf1tune-bench")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    big = jpeg_folder(os.path.join(args.work, "jpeg160-8000"), 8000, 160)
    small = _subset(big, os.path.join(args.work, "jpeg160-1000"), 1000)
    sources = {("folder", 1000): small, ("folder", 8000): big,
               ("tfrecord", 1000): tfrecord_shards(small, os.path.join(args.work, "records-1000"), 1),
               ("tfrecord", 8000): tfrecord_shards(big, os.path.join(args.work, "records-8000"), 4)}
    checkpoint = mobilenet_checkpoint(os.path.join(args.work, "mobilenet_v1"))
    peaks: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for kind in ("folder", "tfrecord"):
            for count in (1000, 8000):
                out = os.path.join(args.work, f"run-{kind}-{count}")
                shutil.rmtree(out, ignore_errors=True)
                rss, wall, _ = run_measured([
                    "finetune", "--net", "mobilenet_v1", "--checkpoint", checkpoint, "--num-classes", "2",
                    "--input-size", "128", "128", "--train-data", sources[kind, count], "--steps", "40",
                    "--batch-size", "32", "--checkpoint-every", "1000", "--no-feature-cache", "--no-progress",
                    "--out", out])
                peaks.setdefault((kind, count), []).append(rss)
                print(f"{kind:8s} {count:5d} images: peak RSS {rss:.2f} GB ({wall:.0f} s)", flush=True)
    for kind in ("folder", "tfrecord"):
        small_peak, big_peak = max(peaks[kind, 1000]), max(peaks[kind, 8000])
        print(f"{kind}: 8,000 images {big_peak:.2f} GB / 1,000 images {small_peak:.2f} GB = "
              f"{big_peak / small_peak:.2f}x (target <= 1.25x)")


if __name__ == "__main__":
    main()
