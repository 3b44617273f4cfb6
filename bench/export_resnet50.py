"""Benchmark (run on demand, not a test): export a slim ResNet-50 and time the plain vs the optimized frozen graph.

    /work/venv/bin/python bench/export_resnet50.py [--runs 10] [--batch 8]

The net is `tf1tune.load_slim("resnet_v1_50", num_classes=1000)` with random initial weights, saved to a
temporary checkpoint and reloaded from it (the way a real checkpoint is exported). Batch norm moving statistics
are perturbed before saving so that folding them is not a no-op. Prints: export time (freeze + verify, and
optimize + verify), peak memory of the process (ru_maxrss), CPU inference time of both graphs at the given batch
(warm-up runs, then the median of `--runs`, same process, same session options), their ratio, and the max output
difference on the same inputs; then both again with the session's own grappler pass switched off, which shows how
much of the optimization TF's runtime already does by itself (it folds batch norm and fuses conv+bias+relu at
session creation, so on the default runtime the offline optimization mostly saves start-up and file size).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time

import numpy as np

import tf1tune
import tensorflow as tf

from tf1tune.export import freeze_model, optimize, session_runner, verify

OUTPUT = "resnet_v1_50/logits/BiasAdd:0"


def _checkpoint(folder: str) -> str:
    """Random ResNet-50 weights (with non-trivial batch norm statistics) saved under `folder`."""
    handle = tf1tune.load_slim("resnet_v1_50", num_classes=1000, checkpoint=None)
    rng = np.random.default_rng(0)
    with handle.session() as sess, handle.graph.as_default():
        for v in handle.variables:
            if v.op.name.endswith(("moving_mean", "moving_variance", "gamma", "beta")):
                shape = v.shape.as_list()
                value = (rng.uniform(0.5, 1.5, shape) if v.op.name.endswith(("moving_variance", "gamma"))
                         else rng.normal(0, 0.1, shape))
                v.load(value.astype(np.float32), sess)
        return tf.compat.v1.train.Saver(handle.variables).save(sess, os.path.join(folder, "model.ckpt"))


def _time(graph_def: tf.compat.v1.GraphDef, x: np.ndarray, runs: int, warmup: int = 2,
          grappler: bool = True) -> tuple[float, np.ndarray]:
    """Median seconds per run of `graph_def` on `x`, and its output (`grappler=False`: no runtime rewrites)."""
    config = tf.compat.v1.ConfigProto()
    config.graph_options.rewrite_options.disable_meta_optimizer = not grappler
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph, config=config) as sess:
            fetch, feed = graph.get_tensor_by_name(OUTPUT), {graph.get_tensor_by_name("input:0"): x}
            for _ in range(warmup):
                out = sess.run(fetch, feed)
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                out = sess.run(fetch, feed)
                times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        prefix = _checkpoint(folder)
        start = time.perf_counter()
        handle = tf1tune.load_slim("resnet_v1_50", num_classes=1000, checkpoint=prefix)
        frozen = freeze_model(handle, [OUTPUT], ["input"])
        source = session_runner(handle, frozen.outputs, frozen.settings)
        check = verify(source, frozen.graph_def, frozen.inputs, frozen.outputs, batch=2)
        t_freeze = time.perf_counter() - start
        start = time.perf_counter()
        fast = optimize(frozen.graph_def, frozen.inputs, frozen.outputs)
        check_fast = verify(source, fast, frozen.inputs, frozen.outputs, batch=2, rtol=1e-4)
        t_optimize = time.perf_counter() - start

    ops = lambda g: sum(1 for n in g.node if n.op != "Const")  # noqa: E731
    print(f"freeze + verify:   {t_freeze:.1f} s  ({ops(frozen.graph_def)} non-const nodes; {check.line()})")
    print(f"optimize + verify: {t_optimize:.1f} s  ({ops(fast)} non-const nodes; {check_fast.line()})")
    print(f"peak memory (ru_maxrss): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")

    x = np.random.default_rng(1).uniform(0, 255, (args.batch, 224, 224, 3)).astype(np.float32)
    plain_s, plain_out = _time(frozen.graph_def, x, args.runs)
    fast_s, fast_out = _time(fast, x, args.runs)
    plain_s2, _ = _time(frozen.graph_def, x, args.runs)  # again, to see the noise of a shared machine
    diff = float(np.max(np.abs(plain_out - fast_out)))
    scale = float(np.max(np.abs(plain_out)))
    print(f"inference, batch {args.batch}, median of {args.runs} (CPU, {os.cpu_count()} cores):")
    print(f"  plain frozen: {plain_s * 1000:.0f} ms (again: {plain_s2 * 1000:.0f} ms)")
    print(f"  optimized:    {fast_s * 1000:.0f} ms")
    print(f"  speed-up:     {min(plain_s, plain_s2) / fast_s:.2f}x (against the faster plain run)")
    raw_plain, _ = _time(frozen.graph_def, x, args.runs, grappler=False)
    raw_fast, _ = _time(fast, x, args.runs, grappler=False)
    print(f"  with the session's own grappler rewrites switched off: plain {raw_plain * 1000:.0f} ms, "
          f"optimized {raw_fast * 1000:.0f} ms, {raw_plain / raw_fast:.2f}x")
    print(f"  max |plain - optimized| = {diff:.3g} (max |plain| = {scale:.3g}, relative {diff / scale:.3g})")


if __name__ == "__main__":
    main()
