"""Train `digits_cnn` on scikit-learn's digits and save it as a TF1 user would: the shipped checkpoint.

Why it exists: tf1tune ships `checkpoints/digits_cnn/`, a small but real TF1-style training output
(`model.ckpt-STEP.{index,data-00000-of-00001,meta}` plus the `checkpoint` state file) of a slim net
with batch norm. It is the default input of tf1tune's fine-tuning job, and the tests load it with plain
`tf.compat.v1` calls. This script makes it again from scratch, so anyone can check how it was made.

What it does:
    1. builds the net in its own `tf.Graph()` with `tf.compat.v1`: an `input` placeholder (float32
       [None, 8, 8, 1], values in [0, 255]), a `labels` placeholder, an `is_training`
       `placeholder_with_default(False)` driving batch norm and dropout, a global step, a Momentum
       optimizer, and the batch-norm updates (`UPDATE_OPS`) as control dependencies of the train op;
       variables are reference variables (`VariableV2`), as TF 1.x made them;
    2. trains with every seed fixed (graph seed, numpy batch order, data split);
    3. saves the whole training graph (optimizer slots and global step included) with
       `tf.compat.v1.train.Saver(...).save(sess, prefix, global_step=...)`, relative paths in the
       `checkpoint` file so the directory can be moved;
    4. loads the saved files back in a fresh graph (`import_meta_graph` + `restore`), measures the
       validation accuracy in inference mode, and writes `README.md` and `metadata.json`;
    5. moves the finished directory into place; an existing output is replaced only at that point,
       never left half-written.

Usage:
    python scripts/make_digits_checkpoint.py [--out checkpoints/digits_cnn] [--steps 1500] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

import tf1tune  # noqa: F401  (installs the tf-slim shim before any net is built)
from tf1tune.data import load_digits_split
from tf1tune.errors import Tf1tuneError
from tf1tune.nets import build_net, get_net
from tf1tune.nets.preprocessing import get_preprocessing

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "checkpoints" / "digits_cnn"
NET = "digits_cnn"
PREFIX = "model.ckpt"

# Tensor names in the saved graph (recorded in metadata.json).
INPUT = "input:0"
LABELS = "labels:0"
IS_TRAINING = "is_training:0"
LOGITS = "DigitsCNN/Logits/SpatialSqueeze:0"
PREDICTIONS = "DigitsCNN/Predictions/Softmax:0"


class OutputDirError(Tf1tuneError):
    """The output directory exists and is not a previous output of this script."""


def build_training_graph(
    seed: int, steps: int, learning_rate: float, momentum: float, resource_variables: bool
) -> tuple[tf.Graph, dict[str, Any]]:
    """Build the training graph of `digits_cnn` (10 classes) in a new `tf.Graph`.

    Args:
        seed: Graph-level random seed.
        steps: Number of training steps (the learning rate drops 10x at 60% and again at 85%).
        learning_rate: Initial learning rate of the Momentum optimizer.
        momentum: Momentum of the optimizer.
        resource_variables: Make resource variables (TF 2 style) instead of reference variables.

    Returns:
        The graph, and its tensors and ops by role: `input`, `labels`, `is_training`, `logits`,
        `predictions`, `loss`, `train_op`, `global_step`, `init`, `saver`.
    """
    config = get_net(NET)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(seed)
        root = tf.compat.v1.get_variable_scope()
        with tf.compat.v1.variable_scope(root, use_resource=resource_variables):
            images = tf.compat.v1.placeholder(tf.float32, [None, *config.input_size, config.channels], name="input")
            labels = tf.compat.v1.placeholder(tf.int64, [None], name="labels")
            is_training = tf.compat.v1.placeholder_with_default(False, [], name="is_training")
            preprocessed = get_preprocessing(config.preprocessing)(images)
            logits, end_points = build_net(NET, preprocessed, num_classes=config.num_classes,
                                           is_training=is_training)  # type: ignore[arg-type]
            global_step = tf.compat.v1.train.get_or_create_global_step()
            tf.compat.v1.losses.sparse_softmax_cross_entropy(labels, logits)
            loss = tf.compat.v1.losses.get_total_loss(name="total_loss")
            boundaries = [int(steps * 0.6), int(steps * 0.85)]
            rate = tf.compat.v1.train.piecewise_constant(
                global_step, boundaries, [learning_rate, learning_rate * 0.1, learning_rate * 0.01],
                name="learning_rate")
            optimizer = tf.compat.v1.train.MomentumOptimizer(rate, momentum)
            with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
                train_op = optimizer.minimize(loss, global_step=global_step, name="train_op")
        init = tf.compat.v1.global_variables_initializer()
        saver = tf.compat.v1.train.Saver(max_to_keep=1, save_relative_paths=True)
    assert logits.name == LOGITS and end_points["Predictions"].name == PREDICTIONS, (logits, end_points)
    ops = {"input": images, "labels": labels, "is_training": is_training, "logits": logits,
           "predictions": end_points["Predictions"], "loss": loss, "train_op": train_op,
           "global_step": global_step, "init": init, "saver": saver}
    return graph, ops


def train_and_save(
    directory: Path, x_train: np.ndarray, y_train: np.ndarray, *, seed: int, steps: int, batch_size: int,
    learning_rate: float, momentum: float, resource_variables: bool,
) -> tuple[str, float]:
    """Train from scratch and save the final checkpoint in `directory`.

    Returns:
        The checkpoint prefix written (`directory/model.ckpt-STEPS`) and the mean loss of the last 100 steps.
    """
    graph, ops = build_training_graph(seed, steps, learning_rate, momentum, resource_variables)
    rng = np.random.RandomState(seed)
    order: np.ndarray = np.empty(0, dtype=np.int64)
    losses: list[float] = []
    with tf.compat.v1.Session(graph=graph) as sess:
        sess.run(ops["init"])
        for step in range(steps):
            if len(order) < batch_size:
                order = np.concatenate([order, rng.permutation(len(x_train))])
            batch, order = order[:batch_size], order[batch_size:]
            _, loss = sess.run([ops["train_op"], ops["loss"]], feed_dict={
                ops["input"]: x_train[batch], ops["labels"]: y_train[batch], ops["is_training"]: True})
            losses.append(float(loss))
            if (step + 1) % 250 == 0 or step + 1 == steps:
                print(f"step {step + 1}/{steps}  loss {np.mean(losses[-50:]):.4f}", flush=True)
        prefix = ops["saver"].save(sess, str(directory / PREFIX), global_step=ops["global_step"])
    return prefix, float(np.mean(losses[-100:]))


def evaluate_saved(prefix: str, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the saved checkpoint on `(x, y)`, loaded as a TF1 user would, in inference mode."""
    with tf.Graph().as_default() as graph:
        saver = tf.compat.v1.train.import_meta_graph(prefix + ".meta")
        predictions = graph.get_tensor_by_name(PREDICTIONS)
        with tf.compat.v1.Session(graph=graph) as sess:
            saver.restore(sess, prefix)
            probs = sess.run(predictions, feed_dict={graph.get_tensor_by_name(INPUT): x})
    return float(np.mean(np.argmax(probs, axis=1) == y))


def _human(size: int) -> str:
    return f"{size / 1024:.1f} KB"


def write_docs(directory: Path, prefix: str, metadata: dict[str, Any], command: str) -> None:
    """Write `metadata.json` and `README.md` describing the checkpoint in `directory`."""
    (directory / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")

    variables = tf.train.list_variables(prefix)
    model = [(n, s) for n, s in variables if "/Momentum" not in n and n != "global_step"]
    slots = [(n, s) for n, s in variables if "/Momentum" in n]
    trainable = [(n, s) for n, s in model if "moving_" not in n]
    count = lambda vs: sum(int(np.prod(s)) for _, s in vs)  # noqa: E731
    rows = "\n".join(f"| `{n}` | {list(s)} |" for n, s in model)
    name = Path(prefix).name
    files = sorted(p for p in directory.iterdir() if p.name != "README.md")
    sizes = "\n".join(f"| `{p.name}` | {_human(p.stat().st_size)} |" for p in files)
    total = sum(p.stat().st_size for p in files)
    m = metadata
    variables = ("resource variables (`VarHandleOp`)" if m["training"]["variables"] == "resource"
                 else "reference variables (`VariableV2` ops in the graph, as TF 1.x made them)")
    readme = f"""# digits_cnn: the legacy TF1 checkpoint tf1tune ships

A small slim-style CNN with batch norm (`tf1tune/nets/digits_cnn.py`, registered as `digits_cnn`),
trained from scratch on scikit-learn's digits (`sklearn.datasets.load_digits`: 1797 8x8 grayscale
images, 10 classes), and saved exactly as a TensorFlow 1 training job would have saved it:
`tf.compat.v1.train.Saver().save(sess, "{PREFIX}", global_step=global_step)`. It is the default input
of tf1tune's fine-tuning job.

**Validation accuracy: {m['val_accuracy']:.4f}** ({m['data']['val_size']} held-out images, inference
mode, measured by loading these files back with `import_meta_graph` + `Saver.restore`).

## How it was made

    {command}

- Data: `tf1tune.data.load_digits_split(seed={m['data']['split_seed']}, val_fraction={m['data']['val_fraction']})`,
  a stratified split ({m['data']['train_size']} training / {m['data']['val_size']} validation images); pixel
  values 0..16 scaled to 0..255 (`x * 255 / 16`) and fed as float32 NHWC [N, 8, 8, 1].
- Training: {m['train_steps']} steps, batch {m['training']['batch_size']}, Momentum optimizer (momentum
  {m['training']['momentum']}), learning rate {m['training']['learning_rate']} divided by 10 at 60% and 85% of
  the steps, weight decay 1e-4, dropout keep 0.8, batch-norm decay 0.95; batch-norm updates run through
  `UPDATE_OPS` control dependencies. Seed {m['seed']} (graph seed, batch order, split). Reruns reach the
  same accuracy; the weights need not be bit-identical.
- Took {m['training']['seconds']:.1f} s of training on the machine that made it; final training loss
  {m['training']['final_loss']:.4f}.
- TensorFlow {m['tensorflow_version']} (`tf.compat.v1` graph mode), tf-slim; {variables}.

## Files

| file | size |
|---|---|
{sizes}

Total: {_human(total)}. The `checkpoint` state file holds relative paths, so the directory can be moved.

## The graph (`{name}.meta`)

The whole training graph: the net, loss, learning-rate schedule, Momentum optimizer and `global_step`.

| role | tensor |
|---|---|
| input images, float32 [None, 8, 8, 1], values in [0, 255] (the graph divides by 255) | `{INPUT}` |
| labels, int64 [None] | `{LABELS}` |
| training mode, bool scalar, defaults to False (inference) | `{IS_TRAINING}` |
| logits [None, 10] | `{m['logits']}` |
| softmax [None, 10] | `{m['predictions']}` |

Load it as a TF1 user would:

```python
import tensorflow as tf
with tf.Graph().as_default() as g, tf.compat.v1.Session() as sess:
    saver = tf.compat.v1.train.import_meta_graph("checkpoints/digits_cnn/{name}.meta")
    saver.restore(sess, tf.train.latest_checkpoint("checkpoints/digits_cnn"))
    probs = sess.run("{PREDICTIONS}", {{"{INPUT}": images}})  # images: float32 [N, 8, 8, 1] in [0, 255]
```

Or rebuild the net from its definition and restore the model variables only:
`tf1tune.build_net("digits_cnn", images / 255.0, num_classes=10)` creates exactly the variables below.

## Variables

{len(model)} model variables ({count(model)} values; {len(trainable)} trainable with {count(trainable)} values,
plus the batch-norm moving means and variances), {len(slots)} Momentum slots (`<variable>/Momentum`) and
`global_step` (= {m['train_steps']}).

| variable | shape |
|---|---|
{rows}

To fine-tune on another number of classes, leave out the classifier scope `DigitsCNN/Logits` when
restoring and graft a new head on the `global_pool` endpoint ([B, 1, 1, 64]).
"""
    (directory / "README.md").write_text(readme, encoding="utf-8")


def check_replaceable(out: Path) -> None:
    """Refuse to replace `out` unless it is missing, empty, or a previous output of this script."""
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputDirError(f"--out {out} exists and is not a directory; give another path")
    if not any(out.iterdir()):
        return
    try:
        previous = json.loads((out / "metadata.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = {}
    if previous.get("net") != NET:
        raise OutputDirError(f"--out {out} holds files that this script did not write; give an empty or new directory")


def publish(staging: Path, out: Path) -> None:
    """Move the finished `staging` directory to `out`, replacing a previous output in one swap."""
    backup = None
    if out.exists():
        backup = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.rename(out, backup)
    try:
        os.rename(staging, out)
    except OSError:
        if backup is not None:
            os.rename(backup, out)
        raise
    if backup is not None:
        shutil.rmtree(backup)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=1500, help="training steps (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, init and batches (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="default: %(default)s")
    parser.add_argument("--learning-rate", type=float, default=0.05, help="default: %(default)s")
    parser.add_argument("--momentum", type=float, default=0.9, help="default: %(default)s")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="default: %(default)s")
    parser.add_argument("--resource-variables", action="store_true",
                        help="make TF2-style resource variables instead of TF1 reference variables")
    args = parser.parse_args(argv)
    try:
        if args.steps < 1 or args.batch_size < 1:
            raise Tf1tuneError(f"--steps and --batch-size must be positive, got {args.steps} and {args.batch_size}")
        out = args.out.resolve()
        check_replaceable(out)
        x_train, y_train, x_val, y_val = load_digits_split(seed=args.seed, val_fraction=args.val_fraction)
    except Tf1tuneError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    np.random.seed(args.seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes 0700; ship the directory like any other
    try:
        start = time.perf_counter()
        prefix, final_loss = train_and_save(
            staging, x_train, y_train, seed=args.seed, steps=args.steps, batch_size=args.batch_size,
            learning_rate=args.learning_rate, momentum=args.momentum, resource_variables=args.resource_variables)
        seconds = time.perf_counter() - start
        accuracy = evaluate_saved(prefix, x_val, y_val)
        print(f"validation accuracy {accuracy:.4f} ({len(y_val)} images), training {seconds:.1f} s")
        metadata = {
            "net": NET,
            "num_classes": get_net(NET).num_classes,
            "val_accuracy": accuracy,
            "train_steps": args.steps,
            "seed": args.seed,
            "input": INPUT,
            "labels": LABELS,
            "is_training": IS_TRAINING,
            "logits": LOGITS,
            "predictions": PREDICTIONS,
            "checkpoint": Path(prefix).name,
            "preprocessing": "images float32 in [0, 255] (digits 0..16 scaled by 255/16); the graph divides by 255",
            "data": {"dataset": "sklearn.datasets.load_digits", "split": "tf1tune.data.load_digits_split",
                     "split_seed": args.seed, "val_fraction": args.val_fraction,
                     "train_size": int(len(y_train)), "val_size": int(len(y_val))},
            "training": {"batch_size": args.batch_size, "learning_rate": args.learning_rate,
                         "momentum": args.momentum, "optimizer": "MomentumOptimizer",
                         "variables": "resource" if args.resource_variables else "reference",
                         "seconds": round(seconds, 1), "final_loss": round(final_loss, 4)},
            "tensorflow_version": tf.__version__,
        }
        command = "python scripts/make_digits_checkpoint.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in
            (("steps", args.steps), ("seed", args.seed), ("batch_size", args.batch_size),
             ("learning_rate", args.learning_rate), ("momentum", args.momentum), ("val_fraction", args.val_fraction)))
        if args.resource_variables:
            command += " --resource-variables"
        write_docs(staging, prefix, metadata, command)
        publish(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    total = sum(p.stat().st_size for p in out.iterdir())
    print(f"wrote {out} ({total / 1024:.1f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
