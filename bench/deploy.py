"""Benchmark (run on demand, not a test): what a TF1 classifier costs on each runtime and precision it ships in.

    python bench/deploy.py [--runs 20] [--nets mobilenet_v1,mobilenet_v2,resnet_v1_50] [--batches 1,8]
                           [--threads 2] [--skip-real]

For each net (tf-slim definitions, random weights with perturbed batch-norm statistics, saved to a temporary
checkpoint and exported from it as a real checkpoint would be) and each batch size, in one process:

| variant          | what runs                                                                     |
|------------------|-------------------------------------------------------------------------------|
| plain            | `freeze_model` output in a `tf.compat.v1.Session` (the baseline)             |
| optimized        | `freeze --optimize`'s graph in a session                                      |
| onnxruntime      | the optimized graph through tf2onnx, onnxruntime CPU (when installed)        |
| tflite float32   | `export-tflite --quantize none`, LiteRT interpreter (XNNPACK)                |
| tflite int8      | `export-tflite --quantize int8` (full integer, float input/output), LiteRT   |

Every runtime gets `--threads` threads. The TFLite models are converted with the batch size they are timed at.
Timing: warm-up, then `--runs` rounds; each round calls every variant once, in turn, so that load from other
processes on a shared machine hits them alike; medians and ratios against the plain graph of the same round set.
Sizes are the serialized models. Agreement is top-1 agreement with the plain graph and the largest probability
difference on the same 32 random images (uniform in [0, 255]; int8 is calibrated on 64 others): with random
weights the probabilities are nearly uniform over 1000 classes, so random-input agreement understates what int8
keeps on a trained model. Real-data agreement is measured last (unless `--skip-real`): the shipped digits checkpoint
on `digits:val`, and a run fine-tuned from it (configs/digits_parity.yaml with fewer steps, in a temporary
directory) on `digits-parity:val`, each int8-calibrated on its training data.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf

import tf1tune
from tf1tune.export import freeze_model, optimize
from tf1tune.export.tflite import TfliteModel, convert_tflite

OUTPUTS = {"mobilenet_v1": "MobilenetV1/Predictions/Reshape_1:0", "mobilenet_v2": "MobilenetV2/Predictions/Reshape_1:0",
           "resnet_v1_50": "resnet_v1_50/predictions/Reshape_1:0"}
AGREEMENT_IMAGES = 32
CALIBRATION_IMAGES = 64


def _checkpoint(net: str, folder: str) -> str:
    """Random weights of `net` (non-trivial batch norm statistics) saved under `folder`."""
    handle = tf1tune.load_slim(net, checkpoint=None)
    rng = np.random.default_rng(0)
    with handle.session() as sess, handle.graph.as_default():
        for v in handle.variables:
            if v.op.name.endswith(("moving_mean", "moving_variance", "gamma", "beta")):
                shape = v.shape.as_list()
                value = (rng.uniform(0.5, 1.5, shape) if v.op.name.endswith(("moving_variance", "gamma"))
                         else rng.normal(0, 0.1, shape))
                v.load(value.astype(np.float32), sess)
        return tf.compat.v1.train.Saver(handle.variables).save(sess, os.path.join(folder, "model.ckpt"))


def _session_fn(graph_def: tf.compat.v1.GraphDef, inp: str, out: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1)
    sess = tf.compat.v1.Session(graph=graph, config=config)
    x, y = graph.get_tensor_by_name(inp), graph.get_tensor_by_name(out)
    return lambda images: sess.run(y, {x: images})


def _onnx(graph_def: tf.compat.v1.GraphDef, inp: str, out: str,
          threads: int) -> tuple[Callable[[np.ndarray], np.ndarray], int] | None:
    try:
        import onnxruntime
        import tf2onnx
    except ImportError:
        return None
    model, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=[inp], output_names=[out])
    blob = model.SerializeToString()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # idle threads that spin wait for work steal the CPU from the variant timed next on a 2-core machine
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
    return (lambda images: session.run([out], {inp: images})[0]), len(blob)


def _tflite_fn(blob: bytes, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    model = TfliteModel(blob, num_threads=threads)
    return lambda images: model.run([images])[0]


def _time(fns: dict[str, Callable[[np.ndarray], np.ndarray]], x: np.ndarray, runs: int,
          warmup: int = 3) -> tuple[dict[str, float], dict[str, float]]:
    """Median and minimum seconds per call of each function on `x`, interleaved call by call; the order rotates
    every round so that no variant always follows the same one."""
    for _ in range(warmup):
        for fn in fns.values():
            fn(x)
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(runs):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            start = time.perf_counter()
            fns[name](x)
            times[name].append(time.perf_counter() - start)
    return ({name: statistics.median(t) for name, t in times.items()}, {name: min(t) for name, t in times.items()})


def _agreement(reference: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    reference, other = reference.reshape(len(reference), -1), other.reshape(len(other), -1)
    return float(np.mean(reference.argmax(1) == other.argmax(1))), float(np.max(np.abs(reference - other)))


def bench_net(net: str, batches: list[int], runs: int, threads: int) -> None:
    """Convert `net` to every variant, then time and compare them at each batch size."""
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as folder:
        handle = tf1tune.load_slim(net, checkpoint=_checkpoint(net, folder))
        frozen = freeze_model(handle, [OUTPUTS[net]], ["input"])
    inp, out = frozen.inputs[0], frozen.outputs[0]
    size = handle.tensor(inp).shape.as_list()[1:]
    fast = optimize(frozen.graph_def, frozen.inputs, frozen.outputs)
    calibration = rng.uniform(0, 255, (CALIBRATION_IMAGES, *size)).astype(np.float32)
    probe = rng.uniform(0, 255, (AGREEMENT_IMAGES, *size)).astype(np.float32)
    onnx = _onnx(fast, inp, out, threads)
    sizes = {"plain": frozen.graph_def.ByteSize(), "optimized": fast.ByteSize()}
    if onnx:
        sizes["onnxruntime"] = onnx[1]
    print(f"\n== {net} ({size[0]}x{size[1]}, {threads} threads, {runs} interleaved rounds; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs) ==")
    for batch in batches:
        start = time.perf_counter()
        blobs = {"tflite float32": convert_tflite(frozen.graph_def, frozen.inputs, frozen.outputs, "none", batch=batch),
                 "tflite int8": convert_tflite(frozen.graph_def, frozen.inputs, frozen.outputs, "int8",
                                               representative=calibration, batch=batch)}
        convert_s = time.perf_counter() - start
        sizes.update({k: len(v) for k, v in blobs.items()})
        fns = {"plain": _session_fn(frozen.graph_def, inp, out, threads),
               "optimized": _session_fn(fast, inp, out, threads)}
        if onnx:
            fns["onnxruntime"] = onnx[0]
        fns.update({k: _tflite_fn(v, threads) for k, v in blobs.items()})
        medians, minima = _time(fns, probe[:batch], runs)
        reference = np.concatenate([fns["plain"](probe[i:i + batch]) for i in range(0, AGREEMENT_IMAGES, batch)])
        scale = float(np.max(np.abs(reference)))
        print(f"batch {batch} (TFLite conversion of both models {convert_s:.1f} s; load average after timing "
              f"{os.getloadavg()[0]:.1f}):")
        print(f"  {'variant':<15} {'median ms':>9} {'speed-up':>9} {'min ms':>7} {'speed-up':>9} {'size MB':>8} {'size':>6} {'top-1 agree':>11} "
              f"{'max prob diff':>13} {'rel diff':>9}")
        for name, fn in fns.items():
            got = np.concatenate([fn(probe[i:i + batch]) for i in range(0, AGREEMENT_IMAGES, batch)])
            agree, diff = _agreement(reference, got)
            print(f"  {name:<15} {medians[name] * 1000:9.2f} {medians['plain'] / medians[name]:8.2f}x "
                  f"{minima[name] * 1000:7.2f} {minima['plain'] / minima[name]:8.2f}x "
                  f"{sizes[name] / 1e6:8.2f} {sizes[name] / sizes['plain']:5.2f}x {agree:11.4f} {diff:13.3g} "
                  f"{diff / scale:9.2g}")


def _real_agreement(name: str, graph_def: tf.compat.v1.GraphDef, inputs: list[str], outputs: list[str],
                    train: np.ndarray, val: np.ndarray) -> None:
    reference = _session_fn(graph_def, inputs[0], outputs[0], 2)(val)
    for mode in ("none", "int8"):
        blob = convert_tflite(graph_def, inputs, outputs, mode, representative=train if mode == "int8" else None)
        got = TfliteModel(blob).run([val])[0]
        agree, diff = _agreement(reference, got)
        print(f"  {name}, TFLite {'float32' if mode == 'none' else mode}: top-1 agreement {agree:.4f} on {len(val)} "
              f"images, max prob diff {diff:.3g}, size {len(blob) / 1024:.1f} KiB "
              f"({len(blob) / graph_def.ByteSize():.2f}x the frozen graph)")


def real_data() -> None:
    """int8 and float32 TFLite agreement with the frozen graph on real data: digits checkpoint and a fine-tuned run."""
    from tf1tune.data import load_dataset
    from tf1tune.train.config import make_config
    from tf1tune.train.loop import run_finetune
    from tf1tune.train.run_dir import load_run

    print("\n== real data (agreement with the frozen graph) ==")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    handle = tf1tune.load(os.path.join(root, "checkpoints", "digits_cnn"))
    frozen = freeze_model(handle, ["DigitsCNN/Predictions/Softmax"], ["input"])
    _real_agreement("digits checkpoint on digits:val", frozen.graph_def, frozen.inputs, frozen.outputs,
                    load_dataset("digits:train", (8, 8), 1).images, load_dataset("digits:val", (8, 8), 1).images)
    with tempfile.TemporaryDirectory() as folder:
        config = make_config(os.path.join(root, "configs", "digits_parity.yaml"), out=os.path.join(folder, "run"),
                             checkpoint=os.path.join(root, "checkpoints", "digits_cnn"))
        run_finetune(config, progress=False)
        run = load_run(os.path.join(folder, "run"))
        frozen = freeze_model(run.handle, [run.probabilities], [run.input])
    _real_agreement("fine-tuned digits-parity run on digits-parity:val", frozen.graph_def, frozen.inputs,
                    frozen.outputs, load_dataset("digits-parity:train", (8, 8), 1).images,
                    load_dataset("digits-parity:val", (8, 8), 1).images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--nets", default="mobilenet_v1,mobilenet_v2,resnet_v1_50")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-real", action="store_true", help="leave out the real-data agreement")
    args = parser.parse_args()
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs")
    if not args.skip_real:
        real_data()
    for net in args.nets.split(","):
        bench_net(net.strip(), [int(b) for b in args.batches.split(",")], args.runs, args.threads)


if __name__ == "__main__":
    main()
