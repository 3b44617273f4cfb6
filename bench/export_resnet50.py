"""Benchmark (run on demand, not a test): export a slim ResNet-50 and time the plain vs the optimized frozen graph.

    /work/venv/bin/python bench/export_resnet50.py [--runs 10] [--batch 8]

The net is `tf1tune.load_slim("resnet_v1_50", num_classes=1000)` with random initial weights, saved to a
temporary checkpoint and reloaded from it (the way a real checkpoint is exported). Batch norm moving statistics
are perturbed before saving so that folding them is not a no-op. Prints: export time (freeze + verify, and
optimize + verify), peak memory of the process (ru_maxrss), CPU inference time of both graphs at the given batch
(warm-up runs, then `--runs` runs of each, interleaved run by run so that load from other processes on a shared
machine hits both alike; median and minimum), their ratio, and the max output
difference on the same inputs; then both again with the session's own grappler pass switched off, which shows how
much of the optimization TF's runtime already does by itself (it folds batch norm and fuses conv+bias+relu at
session creation, so on the default runtime the offline optimization mostly saves start-up and file size).

Last, what limits the speed-up: the net's floating-point work at this batch (TF's profiler), the rate a large
float32 matrix product reaches on this machine in the same process (the practical float32 ceiling), the rate each
graph reaches, and so the largest speed-up any float32 rewrite could still give. For contrast it times the
optimized graph with the runtime's oneDNN bfloat16 auto mixed precision, which computes in reduced precision and
so is outside the export tolerance: shown, not counted.
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
from tensorflow.core.protobuf import rewriter_config_pb2

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


def _session(graph_def: tf.compat.v1.GraphDef, grappler: bool,
             bfloat16: bool = False) -> tuple[tf.compat.v1.Session, tf.Tensor, tf.Tensor]:
    """A session on `graph_def` (`grappler=False`: without the runtime's own graph rewrites; `bfloat16=True`: with
    the runtime's oneDNN bfloat16 auto mixed precision)."""
    config = tf.compat.v1.ConfigProto()
    config.graph_options.rewrite_options.disable_meta_optimizer = not grappler
    if bfloat16:
        config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = rewriter_config_pb2.RewriterConfig.ON
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    sess = tf.compat.v1.Session(graph=graph, config=config)
    return sess, graph.get_tensor_by_name(OUTPUT), graph.get_tensor_by_name("input:0")


def _time_pair(plain: tf.compat.v1.GraphDef, fast: tf.compat.v1.GraphDef, x: np.ndarray, runs: int,
               grappler: bool = True, warmup: int = 2,
               fast_bfloat16: bool = False) -> tuple[list[float], list[float], np.ndarray, np.ndarray]:
    """Seconds per run of both graphs, interleaved run by run so that load from other processes hits both alike."""
    sessions = [_session(plain, grappler), _session(fast, grappler, bfloat16=fast_bfloat16)]
    times: list[list[float]] = [[], []]
    outs = [None, None]
    try:
        for i in range(warmup + runs):
            for k, (sess, fetch, inp) in enumerate(sessions):
                start = time.perf_counter()
                outs[k] = sess.run(fetch, {inp: x})
                if i >= warmup:
                    times[k].append(time.perf_counter() - start)
    finally:
        for sess, _, _ in sessions:
            sess.close()
    return times[0], times[1], outs[0], outs[1]


def _float_ops(graph_def: tf.compat.v1.GraphDef, batch: int) -> int:
    """Floating-point operations of one run of `graph_def` at `batch` (TF's profiler, input shape made static)."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [batch, 224, 224, 3])
        tf.compat.v1.import_graph_def(graph_def, input_map={"input:0": x}, name="")
        options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        options["output"] = "none"
        return tf.compat.v1.profiler.profile(graph, options=options).total_float_ops


def _matmul_rate(size: int = 4096, runs: int = 10) -> float:
    """Float32 FLOP/s of a `size` x `size` matrix product in a session: what this machine's CPU reaches at best."""
    graph = tf.Graph()
    with graph.as_default():
        rng = np.random.default_rng(2)
        a = tf.constant(rng.random((size, size), dtype=np.float32))
        b = tf.compat.v1.placeholder(tf.float32, [size, size])
        product = tf.reduce_sum(tf.matmul(a, b))
        value = rng.random((size, size), dtype=np.float32)
        with tf.compat.v1.Session(graph=graph) as sess:
            times = []
            for i in range(runs + 2):
                start = time.perf_counter()
                sess.run(product, {b: value})
                if i >= 2:
                    times.append(time.perf_counter() - start)
    return 2 * size ** 3 / statistics.median(times)


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
        check_fast = verify(source, fast, frozen.inputs, frozen.outputs, batch=2)
        t_optimize = time.perf_counter() - start

    ops = lambda g: sum(1 for n in g.node if n.op != "Const")  # noqa: E731
    print(f"freeze + verify:   {t_freeze:.1f} s  ({ops(frozen.graph_def)} non-const nodes; {check.line()})")
    print(f"optimize + verify: {t_optimize:.1f} s  ({ops(fast)} non-const nodes; {check_fast.line()})")
    print(f"peak memory (ru_maxrss): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")

    x = np.random.default_rng(1).uniform(0, 255, (args.batch, 224, 224, 3)).astype(np.float32)
    plain_t, fast_t, plain_out, fast_out = _time_pair(frozen.graph_def, fast, x, args.runs)
    med = statistics.median
    print(f"inference, batch {args.batch}, {args.runs} runs each, interleaved (CPU, {os.cpu_count()} cores):")
    print(f"  plain frozen: median {med(plain_t) * 1000:.0f} ms, min {min(plain_t) * 1000:.0f} ms")
    print(f"  optimized:    median {med(fast_t) * 1000:.0f} ms, min {min(fast_t) * 1000:.0f} ms")
    print(f"  speed-up:     {med(plain_t) / med(fast_t):.2f}x on medians, {min(plain_t) / min(fast_t):.2f}x on minima")
    raw_plain, raw_fast, _, _ = _time_pair(frozen.graph_def, fast, x, args.runs, grappler=False)
    print(f"  with the session's own grappler rewrites switched off: plain {med(raw_plain) * 1000:.0f} ms, "
          f"optimized {med(raw_fast) * 1000:.0f} ms, {med(raw_plain) / med(raw_fast):.2f}x on medians")
    diff = float(np.max(np.abs(plain_out - fast_out)))
    scale = float(np.max(np.abs(plain_out)))
    print(f"  max |plain - optimized| = {diff:.3g} (max |plain| = {scale:.3g}, relative {diff / scale:.3g})")

    flops = _float_ops(fast, args.batch)
    peak = _matmul_rate()
    plain_rate, fast_rate = flops / med(plain_t), flops / med(fast_t)
    print(f"what limits it: {flops / 1e9:.1f} GFLOP per batch of {args.batch}; a 4096x4096 float32 matmul runs at "
          f"{peak / 1e9:.0f} GFLOP/s here")
    print(f"  plain frozen reaches {plain_rate / 1e9:.0f} GFLOP/s ({plain_rate / peak:.0%} of that), optimized "
          f"{fast_rate / 1e9:.0f} GFLOP/s ({fast_rate / peak:.0%}); float32 speed-up left at most "
          f"{peak / plain_rate:.2f}x over plain")
    bf_plain, bf_fast, bf_plain_out, bf_out = _time_pair(frozen.graph_def, fast, x, args.runs, fast_bfloat16=True)
    bf_rel = float(np.max(np.abs(bf_out - bf_plain_out))) / float(np.max(np.abs(bf_plain_out)))
    print(f"  not counted: optimized with oneDNN bfloat16 auto mixed precision {med(bf_fast) * 1000:.0f} ms vs plain "
          f"{med(bf_plain) * 1000:.0f} ms, {med(bf_plain) / med(bf_fast):.2f}x, but relative difference "
          f"{bf_rel:.2g} (outside the 1e-05 tolerance)")


if __name__ == "__main__":
    main()
