"""A fine-tuning run as one task of a TensorFlow cluster: parameter servers and workers, synchronous by default.

The mechanism is TF1's between-graph replication, which TF 2.21 still runs in `tf.compat.v1` graph mode:
- every task starts a `tf.distribute.Server`; each worker builds the whole graph under
  `tf.compat.v1.train.replica_device_setter`, so the variables live on the ps tasks and every op on the worker;
- a synchronous step (`tf1tune.train.train_op`, `replicas=`) is `SyncReplicasOptimizer` around the run's own
  update (`GroupedApply`): each worker pushes its gradients into accumulators on the ps and waits for a token;
  the chief applies the mean of one push per worker once per global step, so the effective batch is the sum of
  the workers' batches. `--async-replicas` applies each worker's gradients as they come instead.
- The chief (worker 0) restores the checkpoint, initialises what is new and alone writes checkpoints, events
  and `metrics.json`; the other workers wait (bounded by `--cluster-timeout`) until the model is initialised.

Why the chief drives the updates itself (`SyncDriver`) instead of `SyncReplicasOptimizer`'s queue runner: a
run of several phases has one sync optimizer per phase, and their gradient accumulators share names (a variable
trained in two phases); a queue runner left blocked from phase 1 would take phase 2's gradients. The driver runs
exactly one update per global step, with the update of that step's phase.

A ps task ends by itself: every worker, when it is done, puts a token into a queue on each ps task, and the ps
exits once it has one from every worker (`run_ps`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from tf1tune.data.feeding import RunData
from tf1tune.errors import ClusterError, ConfigError

__all__ = ["Cluster", "SyncDriver", "cluster_from", "placement", "run_ps", "start_server"]

_DONE_QUEUE = "tf1tune_done_ps{}"
_TOKEN_QUEUE = "sync_token_q"  # SyncReplicasOptimizer's shared token queue


@dataclass(frozen=True)
class Cluster:
    """The cluster a task belongs to and which task it is (worker 0 is the chief)."""

    ps_hosts: tuple[str, ...]
    worker_hosts: tuple[str, ...]
    job_name: str
    task_index: int
    sync: bool = True
    timeout: float = 120.0

    @property
    def is_chief(self) -> bool:
        return self.job_name == "worker" and self.task_index == 0

    @property
    def workers(self) -> int:
        return len(self.worker_hosts)

    @property
    def name(self) -> str:
        """This task as people say it: `worker 1 (host:port)`."""
        hosts = self.ps_hosts if self.job_name == "ps" else self.worker_hosts
        return f"{self.job_name} {self.task_index} ({hosts[self.task_index]})"

    def spec(self) -> tf.train.ClusterSpec:
        return tf.train.ClusterSpec({"ps": list(self.ps_hosts), "worker": list(self.worker_hosts)})

    def session_config(self) -> tf.compat.v1.ConfigProto:
        """Each task talks to the ps tasks and itself only: a worker that is down or restarting does not hold
        up the sessions of the others (and a ps never dials a worker before the worker asks it to)."""
        mine = f"/job:{self.job_name}/task:{self.task_index}"
        filters = [mine] if self.job_name == "ps" else ["/job:ps", mine]
        return tf.compat.v1.ConfigProto(device_filters=filters, allow_soft_placement=True)


def _hosts(value: Sequence[str], what: str) -> tuple[str, ...]:
    hosts = tuple(str(h).strip() for h in value if str(h).strip())
    for host in hosts:
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{what}: '{host}' is not host:port (e.g. localhost:2222 or 10.0.0.5:2222)")
    return hosts


def _from_tf_config(text: str) -> tuple[list[str], list[str], str, int]:
    """`(ps, workers, job, index)` of a `TF_CONFIG`; a `chief` job becomes worker 0, its workers follow."""
    try:
        parsed = json.loads(text)
        cluster, task = parsed["cluster"], parsed["task"]
        chief, workers, ps = list(cluster.get("chief", [])), list(cluster.get("worker", [])), list(cluster.get("ps", []))
        kind, index = str(task["type"]), int(task.get("index", 0))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"TF_CONFIG is not a cluster description ({type(e).__name__}: {e}); set it to JSON like "
                          '{"cluster": {"ps": ["h:2222"], "worker": ["h:2223", "h:2224"]}, '
                          '"task": {"type": "worker", "index": 0}}') from None
    if kind == "chief":
        return ps, chief + workers, "worker", index
    if kind == "worker":
        return ps, chief + workers, "worker", index + len(chief)
    if kind == "ps":
        return ps, chief + workers, "ps", index
    raise ConfigError(f"TF_CONFIG's task type '{kind}' is not run by tf1tune; use chief, worker or ps")


def cluster_from(config: Any, environ: dict[str, str] | None = None) -> Cluster | None:
    """The cluster of a run: from `--ps-hosts/--worker-hosts/--job-name/--task-index`, else from `TF_CONFIG`;
    None for a single-process run.

    Raises:
        ConfigError: Hosts that are not host:port, no ps task, a task index outside its job.
    """
    environ = dict(os.environ) if environ is None else environ
    if config.ps_hosts or config.worker_hosts or config.job_name:
        ps, workers, job, index = list(config.ps_hosts), list(config.worker_hosts), config.job_name, config.task_index
        if not job:
            raise ConfigError("--job-name (ps or worker) is required with --ps-hosts/--worker-hosts")
    elif environ.get("TF_CONFIG"):
        ps, workers, job, index = _from_tf_config(environ["TF_CONFIG"])
    else:
        return None
    ps_hosts, worker_hosts = _hosts(ps, "--ps-hosts"), _hosts(workers, "--worker-hosts")
    if not ps_hosts or not worker_hosts:
        raise ConfigError("a distributed run needs at least one ps task and one worker (--ps-hosts and "
                          "--worker-hosts, or TF_CONFIG's cluster)")
    size = len(ps_hosts if job == "ps" else worker_hosts)
    if not 0 <= index < size:
        raise ConfigError(f"task index {index} is out of range: the {job} job has {size} task(s) (0..{size - 1})")
    return Cluster(ps_hosts, worker_hosts, job, index, sync=not config.async_replicas,
                   timeout=float(config.cluster_timeout))


def start_server(cluster: Cluster) -> tf.distribute.Server:
    """This task's server (listening on its port).

    Raises:
        ClusterError: The port cannot be opened (taken by another process, say).
    """
    try:
        return tf.distribute.Server(cluster.spec(), job_name=cluster.job_name, task_index=cluster.task_index,
                                    config=cluster.session_config(), start=True)
    except (tf.errors.OpError, ValueError, RuntimeError) as e:
        raise ClusterError(f"{cluster.name} cannot start its server ({str(e).strip().splitlines()[0][:200]}); "
                           "is the port taken? pick another in --ps-hosts/--worker-hosts") from None


def wait_for(cluster: Cluster, hosts: Sequence[str], what: str) -> None:
    """Wait until every `host:port` accepts connections, at most `cluster.timeout` seconds.

    Raises:
        ClusterError: One of them did not come up in time (named, with what to check).
    """
    deadline = time.monotonic() + cluster.timeout
    for i, host in enumerate(hosts):
        name, _, port = host.rpartition(":")
        while True:
            try:
                with socket.create_connection((name, int(port)), timeout=2.0):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise ClusterError(f"{cluster.name} cannot reach {what} {i} at {host} after "
                                       f"{cluster.timeout:g} s; start that task, or check the hosts given "
                                       "(--ps-hosts/--worker-hosts or TF_CONFIG) and --cluster-timeout") from None
                time.sleep(0.5)


def _place_existing(graph: tf.Graph, setter: Any) -> None:
    """Give the ops already in `graph` (the loaded model) the devices `setter` picks; ops colocated with another
    (a variable's initializer, reads) follow it. TF applies device functions only to ops created inside
    `tf.compat.v1.device(...)`, and a loader builds its graph before the cluster is known: `Operation._set_device`
    is the one place TF sets a device afterwards (its own `_apply_device_functions` does the same)."""
    by_name = {op.name: op for op in graph.get_operations()}
    for op in graph.get_operations():
        groups = [g[len(b"loc:@"):].decode() for g in op.colocation_groups()]
        others = [by_name[g] for g in groups if g != op.name and g in by_name]
        device = others[0].device if others and others[0].device else setter(op)
        op._set_device(device)  # noqa: SLF001 - see the docstring
    for op in graph.get_operations():  # colocated ops whose group op was placed after them
        groups = [g[len(b"loc:@"):].decode() for g in op.colocation_groups()]
        others = [by_name[g] for g in groups if g != op.name and g in by_name]
        if others and op.device != others[0].device:
            op._set_device(others[0].device)  # noqa: SLF001


@contextlib.contextmanager
def placement(graph: tf.Graph, cluster: Cluster | None) -> Iterator[None]:
    """Inside: `graph` is the default graph and, for a cluster, variables go to the ps tasks and ops to this
    worker (the ops already in the graph are placed on entry). Without a cluster only `graph.as_default()`."""
    with graph.as_default():
        if cluster is None:
            yield
            return
        setter = tf.compat.v1.train.replica_device_setter(
            ps_tasks=len(cluster.ps_hosts), worker_device=f"/job:worker/task:{cluster.task_index}",
            cluster=cluster.spec())
        _place_existing(graph, setter)
        with tf.compat.v1.device(setter):
            yield


def wait_until_initialized(sess: tf.compat.v1.Session, uninitialized: tf.Tensor, cluster: Cluster) -> None:
    """A worker other than the chief: wait (bounded) until the chief has restored and initialised the model.

    Raises:
        ClusterError: The model is still not initialised after `cluster.timeout` seconds.
    """
    deadline = time.monotonic() + cluster.timeout
    while len(sess.run(uninitialized)):
        if time.monotonic() > deadline:
            raise ClusterError(f"{cluster.name} waited {cluster.timeout:g} s for the chief (worker 0 at "
                               f"{cluster.worker_hosts[0]}) to initialise the model; start the chief, or give it "
                               "more time with --cluster-timeout")
        time.sleep(0.5)


@dataclass
class _Ops:
    uninitialized: tf.Tensor
    local_init: tf.Operation
    done: list[tf.Operation]
    release: tf.Operation | None


def build_cluster_ops(global_step: tf.Variable, cluster: Cluster, syncs: Sequence[Any] = ()) -> _Ops:
    """What a task runs besides training (call inside `placement`): the readiness check, local initialisation,
    the done tokens for the ps tasks, and (synchronous) the chief's release of workers still waiting at the end."""
    uninitialized = tf.compat.v1.report_uninitialized_variables(tf.compat.v1.global_variables())
    uninitialized.mark_used()  # only the other workers run it; TF would report it unused in the chief
    for sync in syncs:  # SyncReplicasOptimizer's own readiness check: ours is `uninitialized` (quiets TF's
        if sync is not None:  # "Object was never used" report)
            sync.ready_for_local_init_op.mark_used()
    local_init = tf.compat.v1.local_variables_initializer()
    done = []
    for i in range(len(cluster.ps_hosts)):
        with tf.compat.v1.device(f"/job:ps/task:{i}"):
            done.append(tf.compat.v1.FIFOQueue(-1, tf.int32, shapes=[()], shared_name=_DONE_QUEUE.format(i),
                                               name=f"done_ps{i}").enqueue(cluster.task_index))
    release = None
    if cluster.sync:
        with tf.compat.v1.device(global_step.device):
            queue = tf.compat.v1.FIFOQueue(-1, global_step.dtype.base_dtype, shapes=[()], shared_name=_TOKEN_QUEUE,
                                           name="release_tokens")
            release = queue.enqueue_many([tf.fill([cluster.workers], global_step.read_value())])
    return _Ops(uninitialized, local_init, done, release)


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
        self._updates = [s.get_chief_queue_runner().enqueue_ops[0] if s is not None else None for s in self.syncs]

    def phase_of(self, step: int) -> int:
        return int(np.searchsorted(self.bounds, step, side="right"))

    def start(self) -> None:
        """After the chief restored (or the model is ready): local variables, and the chief's update thread."""
        if not self.cluster.is_chief:
            wait_until_initialized(self.sess, self.ops.uninitialized, self.cluster)
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
        if self._thread is not None:
            self._thread.join(timeout=self.cluster.timeout)
        if self._error is not None:
            raise self._error
        if self.cluster.is_chief and self.ops.release is not None:
            self.sess.run(self.ops.release)
        for op in self.ops.done:
            self.sess.run(op)


def shard(data: RunData, cluster: Cluster | None) -> RunData:
    """This worker's part of the training data: every N-th sample from its index on (all of it without a cluster);
    the validation data stays whole (only the chief validates)."""
    if cluster is None or cluster.workers == 1:
        return data
    indices = np.arange(cluster.task_index, len(data.train), cluster.workers)
    part = f"shard {cluster.task_index + 1} of {cluster.workers}"
    return RunData(train=data.train.subset(indices, part), val=data.val, skipped=data.skipped)


def open_session(graph: tf.Graph, cluster: Cluster | None, server: Any) -> tf.compat.v1.Session:
    """A session on `graph`: local, or on this task's server once every ps task accepts connections (bounded)."""
    if cluster is None:
        return tf.compat.v1.Session(graph=graph)
    wait_for(cluster, cluster.ps_hosts, "ps task")
    return tf.compat.v1.Session(server.target, graph=graph, config=cluster.session_config())


def run_ps(cluster: Cluster) -> int:
    """A parameter-server task: serve the variables until every worker has said it is done, then return 0."""
    server = start_server(cluster)
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.device(f"/job:ps/task:{cluster.task_index}"):
        queue = tf.compat.v1.FIFOQueue(-1, tf.int32, shapes=[()], shared_name=_DONE_QUEUE.format(cluster.task_index),
                                       name=f"done_ps{cluster.task_index}")
        all_done = queue.dequeue_many(cluster.workers)
    print(f"{cluster.name}: serving; it ends when all {cluster.workers} workers are done", file=sys.stderr,
          flush=True)
    with tf.compat.v1.Session(server.target, graph=graph, config=cluster.session_config()) as sess:
        sess.run(all_done)
    print(f"{cluster.name}: all {cluster.workers} workers are done", file=sys.stderr, flush=True)
    return 0
