"""What a task of a cluster runs besides its training steps: readiness, local state, the chief's synchronous
updates, and the end of the run (done tokens for the ps tasks, or the chief's abort).

Why the chief drives the updates itself (`SyncDriver`) instead of `SyncReplicasOptimizer`'s queue runner: a
run of several phases has one sync optimizer per phase, and their gradient accumulators share names (a variable
trained in two phases); a queue runner left blocked from phase 1 would take phase 2's gradients. The driver runs
exactly one update per global step, with the update of that step's phase.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from tf1tune.errors import ClusterError
from tf1tune.train.cluster import DONE_QUEUE, Cluster, reachable, wait_until_initialized

__all__ = ["SyncDriver", "build_cluster_ops", "cluster_metrics", "lost_cluster"]

_TOKEN_QUEUE = "sync_token_q"  # SyncReplicasOptimizer's shared token queue


@dataclass
class _Ops:
    uninitialized: tf.Tensor
    local_init: tf.Operation
    done: list[tf.Operation]
    release: tf.Operation | None
    abort: list[tf.Operation]


def build_cluster_ops(global_step: tf.Variable, cluster: Cluster, syncs: Sequence[Any] = ()) -> _Ops:
    """What a task runs besides training (call inside `placement`): the readiness check, local initialisation,
    the done tokens for the ps tasks, and (synchronous) the chief's release of workers still waiting at the end."""
    uninitialized = tf.compat.v1.report_uninitialized_variables(tf.compat.v1.global_variables())
    uninitialized.mark_used()  # only the other workers run it; TF would report it unused in the chief
    for sync in syncs:  # SyncReplicasOptimizer's own readiness check: ours is `uninitialized` (quiets TF's
        if sync is not None:  # "Object was never used" report)
            sync.ready_for_local_init_op.mark_used()
    local_init = tf.compat.v1.local_variables_initializer()
    done, abort = [], []
    for i in range(len(cluster.ps_hosts)):
        with tf.compat.v1.device(f"/job:ps/task:{i}"):
            queue = tf.compat.v1.FIFOQueue(-1, tf.int32, shapes=[()], shared_name=DONE_QUEUE.format(i),
                                           name=f"done_ps{i}")
            done.append(queue.enqueue(cluster.task_index))
            abort.append(queue.enqueue_many([tf.fill([cluster.workers], -1)]))  # -1: the run ended early
    release = None
    if cluster.sync:
        with tf.compat.v1.device(global_step.device):
            queue = tf.compat.v1.FIFOQueue(-1, global_step.dtype.base_dtype, shapes=[()], shared_name=_TOKEN_QUEUE,
                                           name="release_tokens")
            release = queue.enqueue_many([tf.fill([cluster.workers], global_step.read_value())])
    return _Ops(uninitialized, local_init, done, release, abort)


class SyncDriver:
    """The cluster side of a run's session: readiness, local state, the chief's updates, the end of the run.

    Asynchronous runs use it too (readiness, done tokens); only synchronous ones have updates to drive.
    """

    def __init__(self, sess: tf.compat.v1.Session, cluster: Cluster, ops: _Ops, global_step: tf.Variable,
                 syncs: Sequence[Any], bounds: Sequence[int]) -> None:
        self.sess, self.cluster, self.ops, self.global_step = sess, cluster, ops, global_step
        self.syncs = list(syncs)  # one SyncReplicasOptimizer per phase (None when asynchronous)
        self.bounds = np.asarray(bounds)
        self.total = int(self.bounds[-1]) if len(self.bounds) else 0
        self._phase: int | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._finished = threading.Event()
        self._updates = [s.get_chief_queue_runner().enqueue_ops[0] if s is not None else None for s in self.syncs]

    def phase_of(self, step: int) -> int:
        return int(np.searchsorted(self.bounds, step, side="right"))

    def start(self) -> None:
        """After the chief restored (or the model is ready): local variables, and the chief's update thread."""
        if not self.cluster.is_chief:
            wait_until_initialized(self.sess, self.ops.uninitialized, self.cluster)
            threading.Thread(target=self._watch_chief, name="tf1tune-watch-chief", daemon=True).start()
        self.sess.run(self.ops.local_init)
        if self.cluster.is_chief and self.cluster.sync:
            self._thread = threading.Thread(target=self._drive, name="tf1tune-sync-updates", daemon=True)
            self._thread.start()

    def _drive(self) -> None:
        """The chief's updates: one per global step, with the sync optimizer of that step's phase (each phase's
        accumulators set to the current step when the phase begins, so older pushes count as stale)."""
        try:
            entered = None
            while True:
                step = int(self.sess.run(self.global_step))
                if step >= self.total:
                    return
                phase = self.phase_of(step)
                if phase != entered:
                    self.sess.run(self.syncs[phase].chief_init_op)
                    entered = phase
                self.sess.run(self._updates[phase])
        except tf.errors.CancelledError:
            return  # the session closed (the run ended or failed)
        except BaseException as e:  # noqa: BLE001 - raised in the training thread by before_step or finish
            self._error = e

    def before_step(self, step: int) -> None:
        """Entering a phase, this worker's local step of that phase's sync optimizer takes the global step (its
        gradients would be stale otherwise); an error of the update thread stops the run here."""
        if self._error is not None:
            raise self._error
        phase = self.phase_of(step)
        if phase != self._phase and self.cluster.sync and self.syncs[phase] is not None:
            self.sess.run(self.syncs[phase].local_step_init_op)
        self._phase = phase

    def step_done(self) -> int:
        """The global step after this worker's step (other workers move it too)."""
        return int(self.sess.run(self.global_step))

    def finish(self) -> None:
        """The end of this task's run: the chief releases workers still waiting for a token; every worker tells
        each ps task that it is done."""
        self._finished.set()
        if self._thread is not None:
            self._thread.join(timeout=self.cluster.timeout)
        if self._error is not None:
            raise self._error
        if self.cluster.is_chief and self.ops.release is not None:
            self.sess.run(self.ops.release)
        for op in self.ops.done:
            self.sess.run(op)

    def _watch_chief(self) -> None:
        """A worker other than the chief: when the chief cannot be reached for `cluster.timeout` seconds (it was
        killed, its machine is down), say so in one line, tell the ps tasks to end, and exit with 2. Without the
        chief nothing applies the gradients, so this worker's step would wait forever."""
        host = self.cluster.worker_hosts[0]
        last_seen = time.monotonic()
        while not self._finished.wait(2.0):
            if reachable(host):
                last_seen = time.monotonic()
            elif time.monotonic() - last_seen > self.cluster.timeout:
                print(f"tf1tune: error: {self.cluster.name} cannot reach the chief (worker 0 at {host}) for "
                      f"{self.cluster.timeout:g} s; start the whole cluster again with --resume (the chief keeps "
                      "its last checkpoint)", file=sys.stderr, flush=True)
                self.abort()
                os._exit(2)

    def abort(self) -> None:
        """The run cannot go on (the chief failed, or lost): tell every ps task to end (the other workers then stop
        with an error), as far as the ps tasks can still be reached (a few seconds at most)."""
        options = tf.compat.v1.RunOptions(timeout_in_ms=5000)
        for op in self.ops.abort:
            with contextlib.suppress(tf.errors.OpError):
                self.sess.run(op, options=options)


def cluster_metrics(cluster: Cluster, batch_size: int) -> dict[str, Any]:
    """What metrics.json records of a distributed run."""
    return {"workers": cluster.workers, "ps_tasks": len(cluster.ps_hosts),
            "mode": "synchronous" if cluster.sync else "asynchronous", "batch_per_worker": batch_size,
            "effective_batch": batch_size * cluster.workers if cluster.sync else batch_size}


def lost_cluster(cluster: Cluster, error: tf.errors.OpError) -> ClusterError | None:
    """The one line for a TF error that means this task lost the cluster (a ps task or a peer went away), or
    None for any other error."""
    if not isinstance(error, (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError)):
        return None
    lines = [line.strip() for line in (error.message or "").splitlines() if line.strip().strip("=")]
    return ClusterError(f"{cluster.name} lost the cluster ({type(error).__name__}: {lines[0][:160] if lines else ''}); "
                        "the chief keeps its last checkpoint: start the whole cluster again with --resume")
