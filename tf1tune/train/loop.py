"""Fine-tuning runs: build the model for the new task, restore what the checkpoint has, train in phases.

A run, in order:
1. builds the graph: for a slim net a training tower (batch norm in training mode) and an evaluation tower
   that shares its variables; for a `.meta` or frozen graph the imported graph with a new head grafted on
   `--endpoint` (and, for a frozen graph, the constants of the trainable scopes turned back into variables);
2. leaves the classifier scopes out of the restore when their shapes do not fit the checkpoint (another
   class count, the 1001/1000 background offset included), restores the rest with the checked plan of
   `tf1tune.restore`, and initialises only what was not restored (or, with `--resume`, restores the run's
   own last checkpoint instead);
3. per phase, trains exactly the variables of its trainable scopes with its own optimizer state; batch
   norm outside the trainable scopes runs in inference mode and its moving statistics never change;
4. saves a checkpoint every `checkpoint_every` steps into the run directory (never next to the source),
   writes TensorBoard events and `metrics.json` (accuracy before and after on the validation data, frozen
   and trained parameter counts).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf
import yaml

from tf1tune import data as data_lib
from tf1tune._fs import write_atomic
from tf1tune.checkpoints import checkpoint_entries, resolve_checkpoint, saver_restore
from tf1tune.errors import BadSourceError, Tf1tuneError
from tf1tune.finetune_config import ConfigError, FinetuneConfig
from tf1tune.graft import graft, unfreeze
from tf1tune.loaders import load_frozen, load_meta
from tf1tune.nets.build import build_net
from tf1tune.nets.preprocessing import get_preprocessing
from tf1tune.nets.registry import get_net
from tf1tune.restore import restore
from tf1tune.selection import scope_matches, select
from tf1tune.train_op import batch_norm_to_inference, build_train_op, frozen_batch_norm_updates, load_mask

HEAD_SCOPE = "finetune_head"


class FinetuneWarning(UserWarning):
    """Something the run could not do exactly as asked; the message says what and why."""


@dataclass
class TaskModel:
    """The graph of a fine-tuning run and the tensors the loop needs."""

    graph: tf.Graph
    images: tf.Tensor
    labels: tf.Tensor
    train_logits: tf.Tensor
    eval_logits: tf.Tensor
    image_size: tuple[int, int]
    channels: int
    model_variables: list[tf.Variable]
    new_scopes: list[str]
    classifier_scopes: tuple[str, ...] = ()
    train_feed: dict[tf.Tensor, Any] = field(default_factory=dict)
    checkpoint: str | None = None


@dataclass
class FinetuneResult:
    """What a run measured and where it wrote."""

    run_dir: str
    checkpoint: str
    steps: int
    accuracy_before: float
    accuracy_after: float
    trained_params: int
    frozen_params: int
    metrics: dict[str, Any]


def _logits_2d(logits: tf.Tensor, classes: int) -> tf.Tensor:
    return tf.reshape(logits, [-1, classes]) if logits.shape.rank != 2 else logits


def _build_slim(config: FinetuneConfig) -> TaskModel:
    net = get_net(config.net)  # type: ignore[arg-type]
    classes = config.num_classes or net.num_classes
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(config.seed)
        size: tuple[int, int] = tuple(config.input_size) if config.input_size else net.input_size  # type: ignore[assignment]
        images = tf.compat.v1.placeholder(tf.float32, [None, *size, net.channels], name="input")
        labels = tf.compat.v1.placeholder(tf.int64, [None], name="labels")
        inputs = get_preprocessing(net.preprocessing)(images)
        train_logits, _ = build_net(net.name, inputs, num_classes=classes, is_training=True)
        with tf.compat.v1.variable_scope(tf.compat.v1.get_variable_scope(), reuse=True):
            eval_logits, _ = build_net(net.name, inputs, num_classes=classes, is_training=False)
        train_logits, eval_logits = _logits_2d(train_logits, classes), _logits_2d(eval_logits, classes)
        model_variables = list(graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES))
    return TaskModel(graph=graph, images=images, labels=labels, train_logits=train_logits,
                     eval_logits=eval_logits, image_size=size, channels=net.channels,
                     model_variables=model_variables, new_scopes=[], classifier_scopes=net.classifier_scopes,
                     checkpoint=resolve_checkpoint(config.checkpoint) if config.checkpoint else None)


def _build_imported(config: FinetuneConfig) -> TaskModel:
    if config.meta:
        handle = load_meta(config.meta, checkpoint=config.checkpoint)
    else:
        handle = load_frozen(config.frozen)  # type: ignore[arg-type]
        scopes = [s for s in config.trainable_scopes if s != HEAD_SCOPE]
        scopes += [s for p in config.phases for s in p.trainable_scopes if s != HEAD_SCOPE and s not in scopes]
        if scopes:
            handle = unfreeze(handle, scopes)
    if not config.endpoint:
        raise ConfigError("--endpoint (the tensor to graft the new head on) is required with --meta or --frozen")
    if not config.num_classes:
        raise ConfigError("--num-classes is required with --meta or --frozen (the new head's outputs)")
    images = handle.tensor(config.input)  # type: ignore[arg-type]
    shape = images.shape.as_list()
    if len(shape) != 4 or None in shape[1:]:
        raise ConfigError(f"input '{images.name}' must be an image batch [N, H, W, C] with known H, W, C; it is {shape}")
    model_variables = list(handle.variables)
    spec = config.head or f"global_pool, dropout(0.2), dense({config.num_classes})"
    head = graft(handle, config.endpoint, spec, scope=HEAD_SCOPE)
    with handle.graph.as_default():
        tf.compat.v1.set_random_seed(config.seed)
        labels = tf.compat.v1.placeholder(tf.int64, [None], name="finetune_labels")
        logits = _logits_2d(head.output, config.num_classes)
    return TaskModel(graph=handle.graph, images=images, labels=labels, train_logits=logits, eval_logits=logits,
                     image_size=(shape[1], shape[2]), channels=shape[3], model_variables=model_variables,
                     new_scopes=[HEAD_SCOPE], train_feed={head.is_training: True},
                     checkpoint=handle.checkpoint if config.meta else None)


def build_task_model(config: FinetuneConfig) -> TaskModel:
    """The graph for `config`'s source and task (see the module docstring)."""
    return _build_slim(config) if config.net else _build_imported(config)


def _restore_choice(model: TaskModel, config: FinetuneConfig) -> tuple[list[tf.Variable], list[str]]:
    """Variables to restore from the source checkpoint, and one note per scope left out."""
    notes = []
    candidates = list(model.model_variables)
    if config.exclude_scopes:
        candidates = select(candidates, exclude_scopes=config.exclude_scopes, regex=config.regex_scopes)
    entries = {e.name: e.shape for e in checkpoint_entries(model.checkpoint)}  # type: ignore[arg-type]
    misfit = [s for s in model.classifier_scopes
              if any(scope_matches(v.op.name, s) and entries.get(v.op.name) != tuple(v.shape.as_list()) for v in candidates)]
    if misfit:
        candidates = [v for v in candidates if not any(scope_matches(v.op.name, s) for s in misfit)]
        notes.append(f"classifier scopes {', '.join(misfit)} left out of the restore: their shapes in the checkpoint "
                     "do not fit the new number of classes")
    return select(candidates), notes


def _phase_variables(model: TaskModel, scopes: list[str], regex: bool) -> list[tf.Variable]:
    trainable = model.graph.get_collection(tf.compat.v1.GraphKeys.TRAINABLE_VARIABLES)
    default = list(model.classifier_scopes) + model.new_scopes
    return select(trainable, include_scopes=scopes or default, regex=regex)


def _accuracy(sess: tf.compat.v1.Session, model: TaskModel, dataset: data_lib.Dataset, batch_size: int) -> float:
    correct = 0
    for x, y in data_lib.eval_batches(dataset, batch_size):
        logits = sess.run(model.eval_logits, {model.images: x})
        correct += int(np.sum(np.argmax(logits, axis=1) == y))
    return correct / max(len(dataset), 1)


RUN_MARKERS = ("config.yaml", "metrics.json")  # files that say a directory is a tf1tune run


def _source_paths(config: FinetuneConfig, checkpoint: str | None) -> list[str]:
    paths = [p for p in (config.meta, config.frozen) if p]
    if checkpoint:
        paths.append(os.path.dirname(checkpoint) or ".")
    for data in (config.train_data, config.val_data):
        if data and os.path.exists(data):
            paths.append(data)
    return [os.path.realpath(p) for p in paths]


def _check_run_dir(config: FinetuneConfig, checkpoint: str | None) -> str:
    """The run directory's absolute path, after checking that a run may write (or replace) it.

    The run directory may not be, or contain, any source (checkpoint, graph, data); an existing run needs
    `--resume` or `--overwrite`, and `--overwrite` only ever deletes a directory that holds a tf1tune run.
    """
    if not config.out:
        raise ConfigError("--out (the run directory) is required")
    run_dir = os.path.realpath(config.out)
    for source in _source_paths(config, checkpoint):
        if os.path.commonpath([run_dir, source]) == run_dir:
            raise ConfigError(f"--out '{config.out}' is or contains a source of this run ({source}); "
                              "choose another run directory (sources are never written to)")
    has_run = os.path.isdir(run_dir) and tf.train.latest_checkpoint(run_dir) is not None
    if has_run and not (config.resume or config.overwrite):
        raise ConfigError(f"run directory '{config.out}' already holds a run; pass --resume to continue it "
                          "or --overwrite to start again")
    if config.overwrite and os.path.isdir(run_dir) and os.listdir(run_dir) \
            and not any(os.path.isfile(os.path.join(run_dir, m)) for m in RUN_MARKERS):
        raise ConfigError(f"--overwrite refuses to delete '{config.out}': it is not a tf1tune run directory "
                          f"(no {' or '.join(RUN_MARKERS)}); choose an empty or new --out")
    return run_dir


def _start_run_dir(config: FinetuneConfig, run_dir: str) -> None:
    """Create the run directory; with `--overwrite` (checked by `_check_run_dir`) empty it first."""
    if config.overwrite and os.path.isdir(run_dir):
        shutil.rmtree(run_dir)
    os.makedirs(run_dir, exist_ok=True)


def read_metrics(path: str) -> dict[str, Any]:
    """A run's `metrics.json` ({} when absent); a damaged one is a one-line error."""
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise BadSourceError(f"'{path}' cannot be read ({e}); restore it or start the run again with --overwrite") from e
    if not isinstance(data, dict):
        raise BadSourceError(f"'{path}' does not hold a JSON object; restore it or start again with --overwrite")
    return data


def _load_data(config: FinetuneConfig, model: TaskModel, classes: int) -> tuple[data_lib.Dataset, data_lib.Dataset]:
    train = data_lib.load_dataset(config.train_data, model.image_size, model.channels)
    if config.val_data:
        val = data_lib.load_dataset(config.val_data, model.image_size, model.channels)
    else:
        train, val = data_lib.split(train, config.val_fraction, config.seed)
    for name, dataset in (("train", train), ("validation", val)):
        if len(dataset) and int(dataset.labels.max()) >= classes:
            raise ConfigError(f"{name} data has labels up to {int(dataset.labels.max())} but the task has {classes} "
                              f"classes; set --num-classes to at least {int(dataset.labels.max()) + 1}")
    return train, val


def _masks(config: FinetuneConfig, graph: tf.Graph) -> dict[str, np.ndarray]:
    by_name = {v.op.name: v for v in graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)}
    masks = {}
    for name, spec in config.masks.items():
        if name not in by_name:
            from tf1tune.names import not_found

            raise not_found("variable to mask", name, by_name)
        masks[name] = load_mask(spec, tuple(by_name[name].shape.as_list()))
    return masks


def _params(variables: list[tf.Variable]) -> int:
    return int(sum(math.prod(v.shape.as_list()) for v in variables))


@dataclass
class Training:
    """The training part of a run's graph: loss, one train op per phase, and what they train."""

    global_step: tf.Variable
    loss: tf.Tensor
    train_ops: list[Any]
    trained: dict[str, tf.Variable]
    trained_scopes: list[str]
    histograms: tf.Tensor | None
    notes: list[str]
    probabilities: tf.Tensor | None = None


def build_training(model: TaskModel, config: FinetuneConfig) -> Training:
    """Add the loss and one train op per phase to `model.graph`; frozen batch norm runs in inference mode."""
    phases = config.resolved_phases()
    notes: list[str] = []
    graph = model.graph
    with graph.as_default():
        global_step = tf.compat.v1.train.get_or_create_global_step()
        probabilities = tf.nn.softmax(model.eval_logits, name="probabilities")  # what an export serves
        loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(model.labels, model.train_logits)
        regularization = tf.compat.v1.losses.get_regularization_losses()
        total_loss = loss + tf.add_n(regularization) if regularization else loss
        phase_vars = [_phase_variables(model, p.trainable_scopes, config.regex_scopes) for p in phases]
        trained = {v.op.name: v for vs in phase_vars for v in vs}
        # Batch norm of layers that no phase trains runs in inference mode in the training tower too.
        frozen_bn = sorted({op.name.rsplit("/", 1)[0] for op in graph.get_operations()
                            if op.type.startswith("FusedBatchNorm") and op.get_attr("is_training")
                            and not any(op.name.startswith(v.rsplit("/", 1)[0] + "/") for v in trained)})
        try:
            batch_norm_to_inference(graph, frozen_bn)
        except Tf1tuneError as e:  # training mode baked into an imported graph: say so, keep the statistics fixed
            notes.append(str(e))
        update_ops = graph.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
        masks = _masks(config, graph)
        train_ops = []
        for i, (phase, variables) in enumerate(zip(phases, phase_vars)):
            scopes = phase.trainable_scopes or list(model.classifier_scopes) + model.new_scopes
            kept, _ = frozen_batch_norm_updates(update_ops, scopes)
            train_ops.append(build_train_op(
                total_loss, variables, optimizer=config.optimizer, learning_rate=phase.learning_rate,
                multipliers=phase.lr_multipliers, regex=config.regex_scopes, clip_norm=config.clip_norm,
                masks={k: m for k, m in masks.items() if k in {v.op.name for v in variables}},
                global_step=global_step, update_ops=kept, name=f"phase{i + 1}"))
        hist_vars = select(model.model_variables, include_scopes=config.histograms) if config.histograms else []
        histograms = tf.compat.v1.summary.merge([tf.compat.v1.summary.histogram(v.op.name, v) for v in hist_vars]) \
            if hist_vars else None
    return Training(global_step=global_step, loss=loss, train_ops=train_ops, trained=trained,
                    trained_scopes=sorted({n.rsplit("/", 1)[0] for n in trained}), histograms=histograms, notes=notes,
                    probabilities=probabilities)


def run_finetune(config: FinetuneConfig, progress: bool = True) -> FinetuneResult:
    """Run (or resume) the fine-tuning described by `config`; returns what it measured.

    Raises:
        Tf1tuneError subclasses for bad configuration, sources, data or checkpoints (one-line messages).
    """
    model = build_task_model(config)
    if model.checkpoint is None and not config.frozen:
        raise ConfigError("a checkpoint to fine-tune from is required (--checkpoint); none was found next to the source")
    if not config.train_data:
        raise ConfigError("--train-data is required (class folders, .npz, TFRecords or a named task)")
    classes = int(model.train_logits.shape[-1])
    run_dir = _check_run_dir(config, model.checkpoint)
    train, val = _load_data(config, model, classes)
    _start_run_dir(config, run_dir)
    phases = config.resolved_phases()
    training = build_training(model, config)
    graph, notes, trained = model.graph, training.notes, training.trained
    global_step, loss, train_ops, histograms = training.global_step, training.loss, training.train_ops, training.histograms
    with graph.as_default():
        saver = tf.compat.v1.train.Saver(max_to_keep=config.keep_checkpoints)
    restore_list, restore_notes = _restore_choice(model, config) if model.checkpoint else ([], [])
    notes += restore_notes
    for note in notes:
        warnings.warn(note, FinetuneWarning, stacklevel=2)
    trained_params = _params(list(trained.values()))
    frozen_params = _params([v for v in select(model.model_variables) if v.op.name not in trained])
    total_steps = sum(p.steps for p in phases)
    metrics_path = os.path.join(run_dir, "metrics.json")
    with tf.compat.v1.Session(graph=graph) as sess, graph.as_default():
        writer = tf.compat.v1.summary.FileWriter(os.path.join(run_dir, "events"), graph=None)
        latest = tf.train.latest_checkpoint(run_dir)
        if config.resume and latest:
            saver_restore(saver, sess, latest)
            metrics = read_metrics(metrics_path)
        else:
            if model.checkpoint:
                restore(sess, restore_list, model.checkpoint)
            else:
                sess.run(tf.compat.v1.global_variables_initializer())
            for t in train_ops:
                t.capture_snapshots(sess)
            metrics = {"accuracy_before": _accuracy(sess, model, val, config.batch_size)}
            write_atomic(os.path.join(run_dir, "config.yaml"), yaml.safe_dump(config.to_dict(), sort_keys=False))
            write_atomic(metrics_path, json.dumps(metrics, indent=2))  # a resumed run keeps the "before" figure
        start = int(sess.run(global_step))
        stream = data_lib.BatchStream(train, config.batch_size, seed=config.seed,
                                      augment=data_lib.Augment(**config.augment) if config.augment else None)
        _train_loop(sess, model, config, phases, train_ops, stream, saver, writer, histograms, run_dir, start,
                    total_steps, loss, progress, val)
        final = saver.save(sess, os.path.join(run_dir, "model.ckpt"), global_step=total_steps)
        metrics.update({
            "accuracy_after": _validation_summary(sess, model, val, config.batch_size, writer, total_steps),
            "validation_size": len(val), "train_size": len(train), "steps": total_steps,
            "trained_params": trained_params, "frozen_params": frozen_params,
            "trained_scopes": training.trained_scopes, "checkpoint": os.path.basename(final),
            "source_checkpoint": model.checkpoint,
            "input": model.images.name, "probabilities": training.probabilities.name,  # for `tf1tune freeze --run-dir`
            "phases": [{"steps": p.steps, "learning_rate": p.learning_rate,
                        "trainable_scopes": p.trainable_scopes or list(model.classifier_scopes) + model.new_scopes}
                       for p in phases],
        })
        writer.close()
    write_atomic(metrics_path, json.dumps(metrics, indent=2))
    return FinetuneResult(run_dir=run_dir, checkpoint=final, steps=total_steps,
                          accuracy_before=metrics["accuracy_before"], accuracy_after=metrics["accuracy_after"],
                          trained_params=trained_params, frozen_params=frozen_params, metrics=metrics)


def training_step(sess: tf.compat.v1.Session, model: TaskModel, train_op: tf.Operation, loss: tf.Tensor,
                  stream: data_lib.BatchStream, step: int) -> float:
    """Run one training step on the batch of `step`; returns the batch loss.

    This is the whole per-step work of a run (the benchmark in `bench/train_step.py` times it against a
    hand-written `sess.run` loop on the same graph and batch).
    """
    x, y = stream.batch(step)
    _, loss_value = sess.run([train_op, loss], {model.images: x, model.labels: y, **model.train_feed})
    return float(loss_value)


def _validation_summary(sess, model, val, batch_size, writer, step) -> float:  # type: ignore[no-untyped-def]
    accuracy = _accuracy(sess, model, val, batch_size)
    writer.add_summary(tf.compat.v1.Summary(value=[
        tf.compat.v1.Summary.Value(tag="accuracy/validation", simple_value=accuracy)]), step)
    return accuracy


def _train_loop(sess, model, config, phases, train_ops, stream, saver, writer, histograms, run_dir, start,
                total_steps, loss, progress, val) -> None:  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    bounds = np.cumsum([p.steps for p in phases])
    # disable=None: a bar on a terminal, none in logs
    bar = tqdm(total=total_steps, initial=start, disable=None if progress else True, file=sys.stderr, unit="step",
               leave=False)
    for step in range(start, total_steps):
        phase = int(np.searchsorted(bounds, step, side="right"))
        loss_value = training_step(sess, model, train_ops[phase].op, loss, stream, step)
        bar.update(1)
        if (step + 1) % config.log_every == 0 or step + 1 == total_steps:
            bar.set_postfix(phase=phase + 1, loss=f"{loss_value:.4f}")
            x, y = stream.batch(step)
            batch_acc = float(np.mean(np.argmax(sess.run(model.eval_logits, {model.images: x}), 1) == y))
            writer.add_summary(tf.compat.v1.Summary(value=[
                tf.compat.v1.Summary.Value(tag="loss", simple_value=loss_value),
                tf.compat.v1.Summary.Value(tag="accuracy/train_batch", simple_value=batch_acc),
                tf.compat.v1.Summary.Value(tag="learning_rate", simple_value=phases[phase].learning_rate)]), step + 1)
            if histograms is not None:
                writer.add_summary(sess.run(histograms), step + 1)
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < total_steps:
            saver.save(sess, os.path.join(run_dir, "model.ckpt"), global_step=step + 1)
            _validation_summary(sess, model, val, config.batch_size, writer, step + 1)
    bar.close()
