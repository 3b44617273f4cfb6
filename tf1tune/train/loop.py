"""Fine-tuning runs: build the model for the new task, restore what the checkpoint has, train in phases.

A run, in order:
1. builds the graph (`tf1tune.train.task`): the task model for the source, the loss and one train op per phase;
2. leaves the classifier scopes out of the restore when their shapes do not fit the checkpoint (another
   class count, the 1001/1000 background offset included), restores the rest with the checked plan of
   `tf1tune.restore`, and initialises only what was not restored (or, with `--resume`, restores the run's
   own last checkpoint instead);
3. per phase, trains exactly the variables of its trainable scopes with its own optimizer state; batch
   norm outside the trainable scopes runs in inference mode and its moving statistics never change;
4. saves a checkpoint every `checkpoint_every` steps into the run directory (never next to the source),
   writes TensorBoard events and `metrics.json` (`tf1tune.train.run_dir`: accuracy before and after on the
   validation data, frozen and trained parameter counts).
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from tf1tune import data as data_lib
from tf1tune import plots
from tf1tune.checkpoints import saver_restore
from tf1tune.errors import ConfigError, FinetuneWarning
from tf1tune.restore import restore
from tf1tune.selection import select
from tf1tune.train import run_dir as run_dir_lib
from tf1tune.train.config import FinetuneConfig, Phase, check_runnable
from tf1tune.train.task import TaskModel, Training, build_task_model, build_training, param_count, restore_choice


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


def _predictions(sess: tf.compat.v1.Session, model: TaskModel, dataset: data_lib.Dataset,
                 batch_size: int) -> np.ndarray:
    """The predicted class of every example of `dataset`, in order."""
    parts = [np.argmax(sess.run(model.eval_logits, {model.images: x}), axis=1)
             for x, _ in data_lib.eval_batches(dataset, batch_size)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _accuracy(sess: tf.compat.v1.Session, model: TaskModel, dataset: data_lib.Dataset, batch_size: int) -> float:
    correct = 0
    for batch in data_lib.eval_batches(dataset, batch_size):
        logits = sess.run(model.eval_logits, {model.images: batch.images})
        correct += int(np.sum(np.argmax(logits, axis=1) == batch.labels))
    return correct / max(len(dataset), 1)


def _source_paths(config: FinetuneConfig, checkpoint: str | None) -> list[str]:
    paths = [p for p in (config.meta, config.frozen) if p]
    if checkpoint:
        paths.append(os.path.dirname(checkpoint) or ".")
    for data in (config.train_data, config.val_data):
        if data and os.path.exists(data):
            paths.append(data)
    return paths


def _load_data(config: FinetuneConfig, model: TaskModel, classes: int) -> tuple[data_lib.Dataset, data_lib.Dataset]:
    assert config.train_data is not None  # check_runnable
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


def training_step(sess: tf.compat.v1.Session, model: TaskModel, train_op: tf.Operation, loss: tf.Tensor,
                  stream: data_lib.BatchStream, step: int) -> float:
    """Run one training step on the batch of `step`; returns the batch loss.

    This is the whole per-step work of a run (the benchmark in `bench/train_step.py` times it against a
    hand-written `sess.run` loop on the same graph and batch).
    """
    x, y = stream.batch(step)
    _, loss_value = sess.run([train_op, loss], {model.images: x, model.labels: y, **model.train_feed})
    return float(loss_value)


@dataclass
class _Runner:
    """One open session of a run: the steps from `start` to the end, with logging and checkpoints."""

    sess: tf.compat.v1.Session
    model: TaskModel
    config: FinetuneConfig
    phases: list[Phase]
    training: Training
    saver: tf.compat.v1.train.Saver
    writer: Any
    run_dir: str
    val: data_lib.Dataset

    @property
    def total_steps(self) -> int:
        return sum(p.steps for p in self.phases)

    def validate(self, step: int) -> float:
        """Validation accuracy now, also written as a TensorBoard summary at `step`."""
        accuracy = _accuracy(self.sess, self.model, self.val, self.config.batch_size)
        self.writer.add_summary(tf.compat.v1.Summary(value=[
            tf.compat.v1.Summary.Value(tag="accuracy/validation", simple_value=accuracy)]), step)
        return accuracy

    def save(self, step: int) -> str:
        return str(self.saver.save(self.sess, os.path.join(self.run_dir, run_dir_lib.CHECKPOINT_PREFIX),
                                   global_step=step))

    def _log(self, step: int, phase: int, loss_value: float, stream: data_lib.BatchStream) -> None:
        x, y = stream.batch(step)
        logits = self.sess.run(self.model.eval_logits, {self.model.images: x})
        batch_acc = float(np.mean(np.argmax(logits, 1) == y))
        self.writer.add_summary(tf.compat.v1.Summary(value=[
            tf.compat.v1.Summary.Value(tag="loss", simple_value=loss_value),
            tf.compat.v1.Summary.Value(tag="accuracy/train_batch", simple_value=batch_acc),
            tf.compat.v1.Summary.Value(tag="learning_rate", simple_value=self.phases[phase].learning_rate)]), step + 1)
        if self.training.histograms is not None:
            self.writer.add_summary(self.sess.run(self.training.histograms), step + 1)

    def train(self, start: int, stream: data_lib.BatchStream, progress: bool) -> None:
        """Run the steps from `start` to the end, each on the batch of its step number."""
        from tqdm import tqdm

        total, config = self.total_steps, self.config
        bounds = np.cumsum([p.steps for p in self.phases])
        # disable=None: a bar on a terminal, none in logs
        bar = tqdm(total=total, initial=start, disable=None if progress else True, file=sys.stderr, unit="step",
                   leave=False)
        for step in range(start, total):
            phase = int(np.searchsorted(bounds, step, side="right"))
            loss_value = training_step(self.sess, self.model, self.training.train_ops[phase].op, self.training.loss,
                                       stream, step)
            bar.update(1)
            if (step + 1) % config.log_every == 0 or step + 1 == total:
                bar.set_postfix(phase=phase + 1, loss=f"{loss_value:.4f}")
                self._log(step, phase, loss_value, stream)
            if (step + 1) % config.checkpoint_every == 0 and step + 1 < total:
                self.save(step + 1)
                self.validate(step + 1)
        bar.close()


def run_finetune(config: FinetuneConfig, progress: bool = True) -> FinetuneResult:
    """Run (or resume) the fine-tuning described by `config`; returns what it measured.

    Raises:
        Tf1tuneError subclasses for bad configuration, sources, data or checkpoints (one-line messages).
    """
    check_runnable(config)
    model = build_task_model(config)
    if model.checkpoint is None and not config.frozen:
        raise ConfigError("a checkpoint to fine-tune from is required (--checkpoint); none was found next to the source")
    classes = int(model.train_logits.shape[-1])
    run_dir = run_dir_lib.check_run_dir(config.out, _source_paths(config, model.checkpoint), config.resume,
                                        config.overwrite)
    train, val = _load_data(config, model, classes)
    run_dir_lib.start_run_dir(run_dir, config.overwrite)
    phases = config.resolved_phases()
    training = build_training(model, config)
    with model.graph.as_default():
        saver = tf.compat.v1.train.Saver(max_to_keep=config.keep_checkpoints)
    restore_list, restore_notes = restore_choice(model, config) if model.checkpoint else ([], [])
    for note in training.notes + restore_notes:
        warnings.warn(note, FinetuneWarning, stacklevel=2)
    trained_params = param_count(list(training.trained.values()))
    frozen_params = param_count([v for v in select(model.model_variables) if v.op.name not in training.trained])
    with tf.compat.v1.Session(graph=model.graph) as sess, model.graph.as_default():
        writer = tf.compat.v1.summary.FileWriter(os.path.join(run_dir, run_dir_lib.EVENTS), graph=None)
        runner = _Runner(sess, model, config, phases, training, saver, writer, run_dir, val)
        latest = tf.train.latest_checkpoint(run_dir)
        if config.resume and latest:
            saver_restore(saver, sess, latest)
            metrics = run_dir_lib.read_metrics(run_dir)
        else:
            if model.checkpoint:
                restore(sess, restore_list, model.checkpoint)
            else:
                sess.run(tf.compat.v1.global_variables_initializer())
            for t in training.train_ops:
                t.capture_snapshots(sess)
            metrics = {"accuracy_before": _accuracy(sess, model, val, config.batch_size)}
            run_dir_lib.write_config(run_dir, config.to_dict())
            run_dir_lib.write_metrics(run_dir, metrics)  # a resumed run keeps the "before" figure
        stream = data_lib.BatchStream(train, config.batch_size, seed=config.seed,
                                      augment=data_lib.Augment(**config.augment) if config.augment else None)
        runner.train(int(sess.run(training.global_step)), stream, progress)
        total_steps = runner.total_steps
        final = runner.save(total_steps)
        metrics.update({
            "accuracy_after": runner.validate(total_steps),
            "validation_size": len(val), "train_size": len(train), "steps": total_steps,
            "trained_params": trained_params, "frozen_params": frozen_params,
            "trained_scopes": training.trained_scopes, "checkpoint": os.path.basename(final),
            "source_checkpoint": model.checkpoint,
            "input": model.images.name, "probabilities": training.probabilities.name,  # for `tf1tune freeze --run-dir`
            "phases": [{"steps": p.steps, "learning_rate": p.learning_rate,
                        "trainable_scopes": p.trainable_scopes or model.default_scopes} for p in phases],
        })
        writer.close()
        predicted = _predictions(sess, model, val, config.batch_size)
    run_dir_lib.write_metrics(run_dir, metrics)
    plots.write_run_plots(run_dir, val.labels, predicted, val.class_names, classes)  # curves.png, confusion.png
    return FinetuneResult(run_dir=run_dir, checkpoint=final, steps=total_steps,
                          accuracy_before=metrics["accuracy_before"], accuracy_after=metrics["accuracy_after"],
                          trained_params=trained_params, frozen_params=frozen_params, metrics=metrics)
