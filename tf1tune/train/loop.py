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

import contextlib
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from tf1tune import data as data_lib
from tf1tune import plots
from tf1tune.checkpoints import saver_restore
from tf1tune.data.feeding import RunFeeder, channel_notes
from tf1tune.errors import ConfigError, FinetuneWarning, GraphRunError, TrainingError, first_line
from tf1tune.limits import check_batch_memory
from tf1tune.restore import restore
from tf1tune.selection import select
from tf1tune.train import run_dir as run_dir_lib
from tf1tune.train.cache import cache_plan, prepare_cache
from tf1tune.train.cluster import Cluster, open_session, placement, shard, start_server
from tf1tune.train.config import FinetuneConfig, Phase, check_runnable
from tf1tune.train.replicas import SyncDriver, build_cluster_ops, cluster_metrics, lost_cluster
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


def _evaluate(sess: tf.compat.v1.Session, model: TaskModel, feeder: RunFeeder, batch_size: int,
              cached: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Labels and predicted classes of the validation data, in order (streamed images, or cached features when
    `cached`; undecodable images skipped)."""
    labels, predicted = [], []
    for feed, batch_labels in feeder.validation(batch_size, cached):
        if len(batch_labels):
            predicted.append(np.argmax(sess.run(model.eval_logits, feed), axis=1))
            labels.append(batch_labels)
    if not labels:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(labels), np.concatenate(predicted)


def _accuracy(sess: tf.compat.v1.Session, model: TaskModel, feeder: RunFeeder, batch_size: int,
              cached: bool = False) -> float:
    """Validation accuracy (see `_evaluate`)."""
    labels, predicted = _evaluate(sess, model, feeder, batch_size, cached)
    return float(np.mean(labels == predicted)) if len(labels) else 0.0


def _source_paths(config: FinetuneConfig, checkpoint: str | None) -> list[str]:
    paths = [p for p in (config.meta, config.frozen) if p]
    if checkpoint:
        paths.append(os.path.dirname(checkpoint) or ".")
    for data in (config.train_data, config.val_data):
        if data and os.path.exists(data):
            paths.append(data)
    return paths


def _load_data(config: FinetuneConfig, classes: int, channels: int) -> data_lib.RunData:
    assert config.train_data is not None  # check_runnable
    data = data_lib.open_run_data(config.train_data, config.val_data, config.val_fraction, config.seed,
                                  config.skip_bad_images)
    for note in channel_notes(data, channels):
        warnings.warn(note, FinetuneWarning, stacklevel=2)
    for name, source in (("train", data.train), ("validation", data.val)):
        if len(source) and int(source.labels.max()) >= classes:
            raise ConfigError(f"{name} data has labels up to {int(source.labels.max())} but the task has {classes} "
                              f"classes; set --num-classes to at least {int(source.labels.max()) + 1}")
    return data


def training_step(sess: tf.compat.v1.Session, model: TaskModel, train_op: tf.Operation, loss: tf.Tensor,
                  stream: data_lib.BatchStream, step: int) -> float:
    """Run one training step on the in-memory batch of `step` (`stream` over a `Dataset`); returns the batch loss.

    The benchmark in `bench/train_step.py` times it against a hand-written `sess.run` loop on the same graph.
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
    saver: tf.compat.v1.train.Saver | None  # None (and no writer) on a worker other than the chief: it writes nothing
    writer: Any
    run_dir: str
    feeder: RunFeeder
    cached: list[bool]
    driver: SyncDriver | None = None  # a task of a cluster: the global step moves with every worker's steps
    last_validation: tuple[np.ndarray, np.ndarray] = field(
        default_factory=lambda: (np.zeros(0, np.int64), np.zeros(0, np.int64)))

    @property
    def total_steps(self) -> int:
        return sum(p.steps for p in self.phases)

    def validate(self, step: int, cached: bool) -> float:
        """Validation accuracy now (from cached features while the base is as cached), also a TensorBoard summary;
        the labels and predictions are kept in `last_validation` (for the plots of the run)."""
        labels, predicted = _evaluate(self.sess, self.model, self.feeder, self.config.batch_size, cached)
        self.last_validation = (labels, predicted)
        accuracy = float(np.mean(labels == predicted)) if len(labels) else 0.0
        self.writer.add_summary(tf.compat.v1.Summary(value=[
            tf.compat.v1.Summary.Value(tag="accuracy/validation", simple_value=accuracy)]), step)
        return accuracy

    def save(self, step: int) -> str:
        """A checkpoint at `step`, after checking that the trained weights are finite (never saves NaN weights
        over the last good checkpoint)."""
        finite = self.training.weights_finite
        if finite is not None and not bool(self.sess.run(finite)):
            raise TrainingError(f"training stopped at step {step}: the trained weights are no longer finite (NaN or "
                                f"inf); {self._kept()}; lower the learning rate or set clip_norm")
        assert self.saver is not None  # the chief's
        return str(self.saver.save(self.sess, os.path.join(self.run_dir, run_dir_lib.CHECKPOINT_PREFIX),
                                   global_step=step))

    def _kept(self) -> str:
        if self.saver is None:
            return "the chief keeps its last checkpoint"
        last = tf.train.latest_checkpoint(self.run_dir)
        return (f"the last good checkpoint, {os.path.basename(last)}, is kept" if last
                else "nothing was saved")

    def _log(self, step: int, phase: int, loss_value: float, batch_acc: float) -> None:
        self.writer.add_summary(tf.compat.v1.Summary(value=[
            tf.compat.v1.Summary.Value(tag="loss", simple_value=loss_value),
            tf.compat.v1.Summary.Value(tag="accuracy/train_batch", simple_value=batch_acc),
            tf.compat.v1.Summary.Value(tag="learning_rate", simple_value=self.phases[phase].learning_rate)]), step + 1)
        if self.training.histograms is not None:
            self.writer.add_summary(self.sess.run(self.training.histograms), step + 1)

    def train(self, start: int, progress: bool) -> dict[int, float]:
        """Run the steps from `start` to the end, each on the batch of its step number; returns the median
        step time of each phase run here (seconds)."""
        from tqdm import tqdm

        total, config, training = self.total_steps, self.config, self.training
        bounds = np.cumsum([p.steps for p in self.phases])
        # disable=None: a bar on a terminal, none in logs
        bar = tqdm(total=total, initial=start, disable=None if progress else True, file=sys.stderr, unit="step",
                   leave=False)
        times: dict[int, list[float]] = {}
        chief, step, batch = self.writer is not None, start, start
        while step < total:  # `batch`: this task's own batch count (in a cluster the global step moves with others)
            began = time.perf_counter()
            phase = int(np.searchsorted(bounds, step, side="right"))
            if self.driver is not None:
                self.driver.before_step(step)
            feed, labels = self.feeder.train(batch, self.cached[phase])
            batch += 1
            # the step, its loss and the training batch's logits in one session.run
            _, loss_value, logits = self.sess.run(
                [training.train_ops[phase].op, training.loss, self.model.train_logits], feed)
            times.setdefault(phase, []).append(time.perf_counter() - began)
            if not math.isfinite(float(loss_value)):
                bar.close()
                raise TrainingError(
                    f"training stopped at step {step + 1} (phase {phase + 1}): the loss is {float(loss_value)}; "
                    f"{self._kept()}; lower the learning rate (now {self.phases[phase].learning_rate:g}) or set "
                    "clip_norm")
            new = step + 1 if self.driver is None else self.driver.step_done()  # other workers move it too
            bar.update(max(new - step, 0))
            if chief and (_crossed(step, new, config.log_every) or new >= total):
                bar.set_postfix(phase=phase + 1, loss=f"{loss_value:.4f}")
                self._log(new - 1, phase, float(loss_value), float(np.mean(np.argmax(logits, 1) == labels)))
            if chief and _crossed(step, new, config.checkpoint_every) and new < total:
                self.save(new)
                self.validate(new, self.cached[phase])
            step = new
        bar.close()
        self.feeder.close()
        return {phase: float(np.median(t)) for phase, t in times.items()}


def _crossed(step: int, new: int, every: int) -> bool:
    """Whether going from `step` to `new` passes a multiple of `every` (one step at a time: `new % every == 0`)."""
    return new // every > step // every


def _skipped(before: dict[str, Any] | None, skipped: data_lib.Skipped) -> dict[str, Any]:
    """What metrics.json records of the undecodable images skipped (this run and, on resume, before)."""
    files = sorted(set((before or {}).get("files", [])) | set(skipped.files))
    return {"count": len(files), "files": files[:100]}


@contextlib.contextmanager
def _one_line_run_errors(cluster: Cluster | None = None) -> Iterator[None]:
    """TensorFlow errors while the run's graph runs, as one `GraphRunError` line naming the tensor or op (a task
    of a cluster that lost it: one `ClusterError` line)."""
    try:
        yield
    except tf.errors.OpError as e:
        lost = lost_cluster(cluster, e) if cluster is not None else None
        if lost is not None:
            raise lost from e
        text = e.message or ""
        unfed = re.search(r"must feed a value for placeholder tensor '([^']+)' with dtype (\w+)", text)
        if unfed:
            raise GraphRunError(f"the graph needs a value for placeholder '{unfed[1]}' ({unfed[2]}) that tf1tune does "
                                f"not feed; give one with --set {unfed[1]}=VALUE (set: {{{unfed[1]}: VALUE}} in YAML)"
                                ) from e
        node = re.search(r"node '?([^'\s:(\]}]+)", text)
        where = e.op.name if e.op is not None else (node[1] if node else "an op")
        skip = ("Graph execution error", "Detected at node", "Node:", "[[")
        detail = next((line.strip() for line in text.splitlines()
                       if line.strip() and not line[0].isspace() and not line.startswith(skip)), first_line(e))
        raise GraphRunError(f"TensorFlow failed at '{where}' while running the fine-tuning graph: {detail}") from e


def run_finetune(config: FinetuneConfig, progress: bool = True, cluster: Cluster | None = None) -> FinetuneResult:
    """Run (or resume) the fine-tuning described by `config`; returns what it measured.

    With `cluster` this process is its chief (worker 0): it trains its shard of the data with the other workers
    (`tf1tune.train.cluster`) and alone writes the run directory. The other workers run `run_replica`.

    Raises:
        Tf1tuneError subclasses for bad configuration, sources, data or checkpoints (one-line messages).
    """
    check_runnable(config)
    if cluster is not None and not cluster.is_chief:
        raise ConfigError(f"{cluster.name} is not the chief; run it with run_replica")
    server = start_server(cluster) if cluster else None  # early: the others can reach this task while it builds
    model = build_task_model(config)
    if model.checkpoint is None and not config.frozen:
        raise ConfigError("a checkpoint to fine-tune from is required (--checkpoint); none was found next to the source")
    check_batch_memory(config.batch_size, model.image_size, model.channels, ConfigError)
    classes = int(model.train_logits.shape[-1])
    run_dir = run_dir_lib.check_run_dir(config.out, _source_paths(config, model.checkpoint), config.resume,
                                        config.overwrite)
    data = _load_data(config, classes, model.channels)
    existed = os.path.isdir(run_dir)
    try:
        fresh = run_dir_lib.start_run_dir(run_dir, config.overwrite, config.resume, config.to_dict())
    except BaseException:  # e.g. a full disk: a directory this run created must not block the rerun
        if not existed:
            run_dir_lib.discard_failed_start(run_dir)
        raise
    try:
        return _run(config, model, run_dir, data, progress, cluster, server)
    except BaseException:
        if fresh:  # a fresh run that failed leaves nothing that blocks its rerun (a kept checkpoint stays)
            run_dir_lib.discard_failed_start(run_dir)
        raise


def run_replica(config: FinetuneConfig, cluster: Cluster, progress: bool = True) -> int:
    """One worker of a cluster other than the chief: train its shard of the data until the global step reaches
    the end; it writes nothing (no run directory). Returns the global step reached.

    Raises:
        ClusterError: The ps tasks or the chief do not come up within `cluster.timeout`.
    """
    check_runnable(config)
    server = start_server(cluster)
    model = build_task_model(config)
    classes = int(model.train_logits.shape[-1])
    data = _load_data(config, classes, model.channels)
    return _run(config, model, "", data, progress, cluster, server).steps


def _run(config: FinetuneConfig, model: TaskModel, run_dir: str, data: data_lib.RunData, progress: bool,
         cluster: Cluster | None = None, server: Any = None) -> FinetuneResult:
    classes = int(model.train_logits.shape[-1])
    chief = cluster is None or cluster.is_chief
    phases = config.resolved_phases()
    replicas = cluster.workers if cluster is not None and cluster.sync else None
    with placement(model.graph, cluster):  # for a cluster: variables on the ps tasks, ops on this worker
        training = build_training(model, config, replicas, cluster.task_index if cluster else 0)
        saver = tf.compat.v1.train.Saver(max_to_keep=config.keep_checkpoints) if chief else None
        ops = build_cluster_ops(training.global_step, cluster, [t.sync for t in training.train_ops]) if cluster else None
    restore_list, restore_notes = restore_choice(model, config) if model.checkpoint and chief else ([], [])
    for note in training.notes + restore_notes:
        warnings.warn(note, FinetuneWarning, stacklevel=2)
    trained_params = param_count(list(training.trained.values()))
    frozen_params = model.frozen_constants + param_count(
        [v for v in (select(model.model_variables) if model.model_variables else []) if v.op.name not in training.trained])
    augment = data_lib.Augment(**config.augment) if config.augment else None
    mine = shard(data, cluster)
    stream = data_lib.BatchStream(mine.train, config.batch_size, seed=config.seed, augment=augment)
    feeder = RunFeeder(mine, stream, model.image_size, model.channels, model.images, model.labels, model.train_feed,
                       model.eval_feed)
    cached, reason = cache_plan(model, config, training, augment) if cluster is None else (
        [False] * len(phases), "a distributed run (each worker streams its own shard)")
    with open_session(model.graph, cluster, server) as sess, model.graph.as_default(), _one_line_run_errors(cluster), \
            contextlib.closing(feeder):  # the streamed pipeline stops first, also when a step fails
        driver = SyncDriver(sess, cluster, ops, training.global_step, [t.sync for t in training.train_ops],
                            list(np.cumsum([p.steps for p in phases]))) if cluster and ops else None
        writer = tf.compat.v1.summary.FileWriter(os.path.join(run_dir, run_dir_lib.EVENTS), graph=None) \
            if chief else None
        runner = _Runner(sess, model, config, phases, training, saver, writer, run_dir, feeder, cached, driver=driver)
        if not chief:
            assert driver is not None
            driver.start()  # waits until the chief has initialised the model
            runner.train(int(sess.run(training.global_step)), progress)
            driver.finish()
            return FinetuneResult(run_dir="", checkpoint="", steps=int(sess.run(training.global_step)),
                                  accuracy_before=math.nan, accuracy_after=math.nan, trained_params=trained_params,
                                  frozen_params=frozen_params, metrics={})
        assert saver is not None and writer is not None
        latest = tf.train.latest_checkpoint(run_dir)
        resumed = bool(config.resume and latest)
        if resumed:
            saver_restore(saver, sess, latest)
        elif model.checkpoint:
            restore(sess, restore_list, model.checkpoint)
        else:
            sess.run(tf.compat.v1.global_variables_initializer())
        start = int(sess.run(training.global_step))
        cache_info = prepare_cache(sess, model, config, feeder, cached, reason, start, run_dir)
        if resumed:
            metrics = run_dir_lib.read_metrics(run_dir)
        else:
            for t in training.train_ops:
                t.capture_snapshots(sess)
            metrics = {"accuracy_before": _accuracy(sess, model, feeder, config.batch_size, cached[0])}
            run_dir_lib.write_metrics(run_dir, metrics)  # a resumed run keeps the "before" figure
        if driver is not None:
            driver.start()  # the other workers start their steps once the model is initialised
        began = time.perf_counter()
        try:
            step_times = runner.train(start, progress)
        except BaseException:
            if driver is not None:
                driver.abort()  # the ps tasks end, so nothing is left waiting
            raise
        train_seconds = time.perf_counter() - began
        total_steps = runner.total_steps
        final = runner.save(total_steps)
        metrics.update({
            "accuracy_after": runner.validate(total_steps, cached[-1]),
            "validation_size": len(data.val), "train_size": len(data.train), "steps": total_steps,
            "trained_params": trained_params, "frozen_params": frozen_params,
            "trained_scopes": training.trained_scopes, "checkpoint": os.path.basename(final),
            "source_checkpoint": model.checkpoint,
            "input": model.images.name, "probabilities": training.probabilities.name,  # for `tf1tune freeze --run-dir`
            "inference_feed": {t.name: np.asarray(v).tolist() for t, v in model.eval_feed.items()},
            "phases": [{"steps": p.steps, "learning_rate": p.learning_rate,
                        "trainable_scopes": p.trainable_scopes or model.default_scopes, "feature_cache": cached[i],
                        **({"epoch_seconds": step_times[i] * stream.steps_per_epoch} if i in step_times else {})}
                       for i, p in enumerate(phases)],
            "feature_cache": {**metrics.get("feature_cache", {}), **cache_info},
            "skipped_images": _skipped(metrics.get("skipped_images"), data.skipped),
            "train_seconds": train_seconds, "steps_this_session": total_steps - start,  # for bench/distributed.py
            **({"cluster": cluster_metrics(cluster, config.batch_size)} if cluster else {}),
        })
        writer.close()
        if driver is not None:
            driver.finish()
    run_dir_lib.write_metrics(run_dir, metrics)
    labels, predicted = runner.last_validation  # the final validation pass, not a second one
    plots.write_run_plots(run_dir, labels, predicted, data.val.class_names, classes)  # curves.png, confusion.png
    return FinetuneResult(run_dir=run_dir, checkpoint=final, steps=total_steps,
                          accuracy_before=metrics["accuracy_before"], accuracy_after=metrics["accuracy_after"],
                          trained_params=trained_params, frozen_params=frozen_params, metrics=metrics)
