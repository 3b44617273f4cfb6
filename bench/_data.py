"""Synthetic data and checkpoints for the data-engine benchmarks: made on the spot, nothing downloaded."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

import tf1tune  # noqa: F401  (compat shim)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _images(start: int, count: int, size: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth seeded photos-like images (a per-class colour gradient plus noise), uint8 [count, size, size, 3]."""
    rng = np.random.default_rng(start)
    labels = (np.arange(start, start + count) % classes).astype(np.int64)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    base = ramp[None, :, None, None] * ramp[None, None, :, None] * 180
    tint = np.stack([(labels * 70) % 256, (labels * 130 + 40) % 256, (labels * 30 + 90) % 256], -1)
    noise = rng.normal(0, 12, (count, size // 8, size // 8, 3)).repeat(8, 1).repeat(8, 2)
    images = base + tint[:, None, None, :] * 0.3 + noise
    return np.clip(images, 0, 255).astype(np.uint8), labels


def jpeg_folder(root: str, count: int, size: int, classes: int = 2) -> str:
    """A class-folder tree of `count` JPEGs of `size`x`size` (made once; reused when complete)."""
    done = os.path.join(root, ".complete")
    if os.path.isfile(done):
        return root
    for c in range(classes):
        os.makedirs(os.path.join(root, f"class{c}"), exist_ok=True)
    for start in range(0, count, 500):
        images, labels = _images(start, min(500, count - start), size, classes)
        for i, (image, label) in enumerate(zip(images, labels)):
            path = os.path.join(root, f"class{label}", f"{start + i:06d}.jpg")
            with open(path, "wb") as f:
                f.write(tf.io.encode_jpeg(image, quality=90).numpy())
    open(done, "w").close()
    return root


def tfrecord_shards(folder: str, out: str, shards: int) -> str:
    """The JPEGs of a class folder as `shards` TFRecord files of tf.train.Example with slim's keys."""
    done = os.path.join(out, ".complete")
    if os.path.isfile(done):
        return out
    os.makedirs(out, exist_ok=True)
    files = sorted((os.path.join(folder, c, f), int(c[5:])) for c in sorted(os.listdir(folder))
                   if c.startswith("class") for f in os.listdir(os.path.join(folder, c)))
    for s in range(shards):
        with tf.io.TFRecordWriter(os.path.join(out, f"train-{s:05d}-of-{shards:05d}.tfrecord")) as writer:
            for path, label in files[s::shards]:
                with open(path, "rb") as f:
                    feature = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[f.read()])),
                               "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"jpeg"])),
                               "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))}
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    open(done, "w").close()
    return out


def mobilenet_checkpoint(folder: str) -> str:
    """A MobileNet V1 checkpoint with the published variable names and 1001 classes, random weights."""
    prefix = os.path.join(folder, "mobilenet_v1_1.0.ckpt")
    if os.path.isfile(prefix + ".index"):
        return prefix
    from tf1tune.nets.build import build_net

    os.makedirs(folder, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(0)
        images = tf.compat.v1.placeholder(tf.float32, [None, 224, 224, 3])
        build_net("mobilenet_v1", images, num_classes=1001, is_training=False)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, prefix, write_meta_graph=False)
    return prefix


# The child reports its own peak: VmHWM of its address space. (ru_maxrss would not do: Linux carries the forking
# parent's high-water mark over exec into it.)
_WRAPPER = ("import sys\n"
            "from tf1tune.cli import main\n"
            "code = main(sys.argv[1:])\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
            "print('PEAK_RSS_KB', hwm)\n"
            "sys.exit(code)\n")


def run_measured(argv: list[str]) -> tuple[float, float, str]:
    """Run `tf1tune ARGV` in a process of its own: (its peak RSS in GB, wall seconds, stdout)."""
    import time

    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, *argv], env=env, cwd=ROOT, capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - began
    if proc.returncode:
        raise SystemExit(f"tf1tune {' '.join(argv)} failed: {proc.stderr.strip().splitlines()[-1:]}")
    peak = next(int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("PEAK_RSS_KB"))
    return peak / 1e6, wall, proc.stdout
