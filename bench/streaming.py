"""Benchmark: the streamed input pipeline keeps up with training (step time vs feeding from memory).

MobileNet V1 at 224x224 (random weights), 2 classes, batch 32, head-only training with the feature cache off
(`feature_cache=False`, so every step runs the whole net forward), from a class folder of 256x256 JPEGs made on
the spot. In one process, on one graph and session:

- in memory: the folder decoded up front (`load_dataset`) and each batch gathered from the array
  (`BatchStream.batch`) and fed, as tf1tune did before streaming;
- streamed: the run's feeder (`RunFeeder.train`), i.e. the `tf.data` pipeline reading, decoding and resizing
  the JPEGs in parallel with prefetch, exactly what `tf1tune finetune` does per step.

The two alternate in blocks of steps (the machine is shared); the first steps of each block are dropped (the
prefetch buffer fills while the other variant runs). Then the pipeline alone (no training) in images/s:

    python bench/streaming.py [--work /tmp/tf1tune-bench] [--images 640] [--rounds 5] [--block 6]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import tensorflow as tf
from _data import jpeg_folder

from tf1tune import data as data_lib
from tf1tune.train.config import make_config
from tf1tune.train.loop import training_step
from tf1tune.train.task import build_task_model, build_training

SIZE, BATCH, DROP = 224, 32, 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/tf1tune-bench")
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block", type=int, default=6)
    args = parser.parse_args()
    folder = jpeg_folder(os.path.join(args.work, f"jpeg256-{args.images}"), args.images, 256)
    config = make_config(net="mobilenet_v1", checkpoint=None, num_classes=2, input_size=[SIZE, SIZE],
                         batch_size=BATCH, feature_cache=False)
    model = build_task_model(config)
    training = build_training(model, config)
    source = data_lib.open_source(folder)
    memory = data_lib.load_dataset(source, (SIZE, SIZE), 3)
    in_memory = data_lib.BatchStream(memory, BATCH, seed=0)
    stream = data_lib.BatchStream(source, BATCH, seed=0)
    feeder = data_lib.RunFeeder(data_lib.RunData(train=source, val=source), stream, (SIZE, SIZE), 3, model.images,
                                model.labels, model.train_feed)
    op = training.train_ops[0].op
    times: dict[str, list[float]] = {"memory": [], "streamed": []}
    with tf.compat.v1.Session(graph=model.graph) as sess, model.graph.as_default():
        sess.run(tf.compat.v1.global_variables_initializer())
        step = {"memory": 0, "streamed": 0}

        def run_memory(s: int) -> None:
            training_step(sess, model, op, training.loss, in_memory, s)

        def run_streamed(s: int) -> None:
            feed, _ = feeder.train(s, cached=False)
            sess.run([op, training.loss, model.train_logits], feed)

        for _ in range(2):  # warm-up
            run_memory(step["memory"])
            step["memory"] += 1
            run_streamed(step["streamed"])
            step["streamed"] += 1
        for _ in range(args.rounds):
            for name, fn in (("memory", run_memory), ("streamed", run_streamed)):
                for k in range(args.block):
                    began = time.perf_counter()
                    fn(step[name])
                    if k >= DROP:
                        times[name].append(time.perf_counter() - began)
                    step[name] += 1
        feeder.close()
    mem, streamed = statistics.median(times["memory"]), statistics.median(times["streamed"])
    print(f"step time, batch {BATCH} at {SIZE}x{SIZE}: in memory {mem * 1000:.0f} ms, streamed {streamed * 1000:.0f} ms "
          f"({len(times['memory'])} steps each): streamed / in memory = {streamed / mem:.3f} (target <= 1.10)")
    batches = 20
    began = time.perf_counter()
    for batch in data_lib.train_batches(source, data_lib.BatchStream(source, BATCH, seed=1), (SIZE, SIZE), 3,
                                        stop=batches):
        pass
    rate = batches * BATCH / (time.perf_counter() - began)
    print(f"input pipeline alone: {rate:.0f} images/s (JPEG 256x256 -> {SIZE}x{SIZE}); "
          f"training consumes {BATCH / streamed:.0f} images/s")


if __name__ == "__main__":
    main()
