"""Benchmark (run on demand, not a test): export a slim ResNet-50 and time the plain vs the optimized frozen graph.

    python bench/export_resnet50.py [--runs 10] [--batch 8]

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
graph reaches, and so the largest speed-up any float32 rewrite could still give. It also times a TF1-style
graph of the same checkpoint (batch norm under `tf.cond` on an `is_training` placeholder, frozen with
`convert_variables_to_constants` only) before and after TF's `optimize_for_inference`. For contrast it times the
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
import tensorflow as tf
from tensorflow.core.protobuf import rewriter_config_pb2

import tf1tune
from tf1tune.export import freeze_model, optimize, session_runner, verify

OUTPUT = "resnet_v1_50/logits/BiasAdd:0"
SIZE = 224  # input height and width


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


def _time_all(variants: dict[str, tuple[tf.compat.v1.GraphDef, dict[str, bool]]], x: np.ndarray, runs: int,
              warmup: int = 2) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    """Seconds per run and last output of every variant (graph, `_session` options), interleaved run by run so
    that load from other processes on the machine hits all of them alike."""
    sessions = {name: _session(graph_def, **options) for name, (graph_def, options) in variants.items()}
    times: dict[str, list[float]] = {name: [] for name in sessions}
    outputs: dict[str, np.ndarray] = {}
    try:
        for i in range(warmup + runs):
            for name, (sess, fetch, inp) in sessions.items():
                start = time.perf_counter()
                outputs[name] = sess.run(fetch, {inp: x})
                if i >= warmup:
                    times[name].append(time.perf_counter() - start)
    finally:
        for sess, _, _ in sessions.values():
            sess.close()
    return times, outputs


def _tf1_cond_graphs(prefix: str) -> tuple[tf.compat.v1.GraphDef, tf.compat.v1.GraphDef]:
    """The same checkpoint the way TF1 training scripts often exported it, and TF's own optimization of that.

    Batch norm under `tf.cond` on an `is_training` placeholder (TF1 control flow, Switch/Merge), frozen with
    `convert_variables_to_constants` and nothing else; then `optimize_for_inference_lib.optimize_for_inference`
    on it. This is the baseline a 1.67x claim for `optimize_for_inference` could have been measured against.
    The input gets the same in-graph preprocessing as `load_slim` gives the plain graph, so outputs compare.
    """
    import tf_slim as slim
    from tensorflow.python.tools import optimize_for_inference_lib
    from tf_slim.nets import resnet_v1

    from tf1tune.nets.preprocessing import get_preprocessing

    output = OUTPUT.split(":")[0]
    tf.compat.v1.disable_control_flow_v2()
    try:
        graph = tf.Graph()
        with graph.as_default():
            images = tf.compat.v1.placeholder(tf.float32, [None, SIZE, SIZE, 3], name="input")
            is_training = tf.compat.v1.placeholder_with_default(False, [], name="is_training")
            with slim.arg_scope(resnet_v1.resnet_arg_scope()):
                preprocessed = get_preprocessing(tf1tune.get_net("resnet_v1_50").preprocessing)(images)
                resnet_v1.resnet_v1_50(preprocessed, 1000, is_training=is_training)
            with tf.compat.v1.Session(graph=graph) as sess:
                tf.compat.v1.train.Saver().restore(sess, prefix)
                frozen = tf.compat.v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), [output])
    finally:
        tf.compat.v1.enable_control_flow_v2()
    optimized = optimize_for_inference_lib.optimize_for_inference(frozen, ["input"], [output],
                                                                  tf.float32.as_datatype_enum)
    return frozen, optimized


def _float_ops(graph_def: tf.compat.v1.GraphDef, batch: int) -> int:
    """Floating-point operations of one run of `graph_def` at `batch` (TF's profiler, input shape made static)."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [batch, SIZE, SIZE, 3])
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
        tf1_frozen, tf1_optimized = _tf1_cond_graphs(prefix)

    ops = lambda g: sum(1 for n in g.node if n.op != "Const")  # noqa: E731
    print(f"freeze + verify:   {t_freeze:.1f} s  ({ops(frozen.graph_def)} non-const nodes; {check.line()})")
    print(f"optimize + verify: {t_optimize:.1f} s  ({ops(fast)} non-const nodes; {check_fast.line()})")
    print(f"peak memory (ru_maxrss): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")

    x = np.random.default_rng(1).uniform(0, 255, (args.batch, SIZE, SIZE, 3)).astype(np.float32)
    on, off, bf16 = {"grappler": True}, {"grappler": False}, {"grappler": True, "bfloat16": True}
    times, outputs = _time_all({
        "plain": (frozen.graph_def, on), "optimized": (fast, on),
        "plain, no grappler": (frozen.graph_def, off), "optimized, no grappler": (fast, off),
        "optimized, bfloat16": (fast, bf16),
        "TF1 cond graph": (tf1_frozen, on), "TF1 cond graph + optimize_for_inference": (tf1_optimized, on),
    }, x, args.runs)
    med = {name: statistics.median(runs) for name, runs in times.items()}
    low = {name: min(runs) for name, runs in times.items()}
    plain_out = outputs["plain"]
    scale = float(np.max(np.abs(plain_out)))
    rel = {name: float(np.max(np.abs(out - plain_out))) / scale for name, out in outputs.items()}
    ms = lambda name: f"median {med[name] * 1000:.0f} ms, min {low[name] * 1000:.0f} ms"  # noqa: E731

    print(f"inference, batch {args.batch}, {args.runs} runs of each graph, interleaved (CPU, {os.cpu_count()} cores):")
    print(f"  plain frozen: {ms('plain')}")
    print(f"  optimized:    {ms('optimized')}")
    print(f"  speed-up:     {med['plain'] / med['optimized']:.2f}x on medians, "
          f"{low['plain'] / low['optimized']:.2f}x on minima; relative output difference {rel['optimized']:.2g}")
    print(f"  with the session's own grappler rewrites switched off: plain {med['plain, no grappler'] * 1000:.0f} ms, "
          f"optimized {med['optimized, no grappler'] * 1000:.0f} ms, "
          f"{med['plain, no grappler'] / med['optimized, no grappler']:.2f}x on medians")

    flops = _float_ops(fast, args.batch)
    peak = _matmul_rate()
    plain_rate, fast_rate = flops / med["plain"], flops / med["optimized"]
    print(f"what limits it: {flops / 1e9:.1f} GFLOP per batch of {args.batch}; a 4096x4096 float32 matmul runs at "
          f"{peak / 1e9:.0f} GFLOP/s here")
    print(f"  plain frozen reaches {plain_rate / 1e9:.0f} GFLOP/s ({plain_rate / peak:.0%} of that), optimized "
          f"{fast_rate / 1e9:.0f} GFLOP/s ({fast_rate / peak:.0%}); float32 speed-up left at most "
          f"{peak / plain_rate:.2f}x over plain")
    tf1, tf1_opt = "TF1 cond graph", "TF1 cond graph + optimize_for_inference"
    print(f"  TF1-style graph (batch norm under tf.cond on is_training, convert_variables_to_constants only): "
          f"{med[tf1] * 1000:.0f} ms; after TF's optimize_for_inference {med[tf1_opt] * 1000:.0f} ms "
          f"({med[tf1] / med[tf1_opt]:.2f}x; relative difference to plain {rel[tf1]:.2g} before, {rel[tf1_opt]:.2g} after); plain over it "
          f"{med[tf1] / med['plain']:.2f}x, optimized over it {med[tf1] / med['optimized']:.2f}x")
    print(f"  not counted: optimized with oneDNN bfloat16 auto mixed precision {med['optimized, bfloat16'] * 1000:.0f} ms, "
          f"{med['plain'] / med['optimized, bfloat16']:.2f}x over plain, but relative difference "
          f"{rel['optimized, bfloat16']:.2g} (outside the 1e-05 tolerance)")


if __name__ == "__main__":
    main()
