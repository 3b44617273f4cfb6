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

The chief's updates, readiness and the end of a run are `tf1tune.train.replicas`.

A ps task ends by itself: every worker, when it is done, puts a token into a queue on each ps task, and the ps
exits once it has one from every worker (`run_ps`); a run that fails (the chief's error, or a worker that
lost its chief) ends the ps tasks too.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from tf1tune.data.feeding import RunData
from tf1tune.errors import ClusterError, ConfigError

__all__ = ["Cluster", "cluster_from", "open_session", "placement", "run_ps", "shard", "start_server"]

DONE_QUEUE = "tf1tune_done_ps{}"  # on each ps task: one token per worker that is done (-1: the run gave up)


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
        while not reachable(host):
            if time.monotonic() > deadline:
                raise ClusterError(f"{cluster.name} cannot reach {what} {i} at {host} after "
                                   f"{cluster.timeout:g} s; start that task, or check the hosts given "
                                   "(--ps-hosts/--worker-hosts or TF_CONFIG) and --cluster-timeout")
            time.sleep(0.5)


def reachable(host: str) -> bool:
    """Whether `host:port` accepts a TCP connection now (within 2 s)."""
    name, _, port = host.rpartition(":")
    try:
        with socket.create_connection((name, int(port)), timeout=2.0):
            return True
    except OSError:
        return False


def _place_existing(graph: tf.Graph, setter: Any) -> None:
    """Give the ops already in `graph` (the loaded model) the devices `setter` picks; ops colocated with another
    (a variable's initializer, reads) follow it. TF applies device functions only to ops created inside
    `tf.compat.v1.device(...)`, and a loader builds its graph before the cluster is known: `Operation._set_device`
    is the one place TF sets a device afterwards (its own `_apply_device_functions` does the same)."""
    by_name = {op.name: op for op in graph.get_operations()}
    follows = {}  # op -> the op it is colocated with
    for op in graph.get_operations():
        groups = [g[len(b"loc:@"):].decode() for g in op.colocation_groups()]
        others = [by_name[g] for g in groups if g != op.name and g in by_name]
        if others:
            follows[op] = others[0]
        else:
            op._set_device(setter(op))  # noqa: SLF001 - see the docstring
    for op, group in follows.items():  # after every group op has its device
        op._set_device(group.device)  # noqa: SLF001


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
    """A parameter-server task: serve the variables until every worker has said it is done, then return 0 (1 when
    a worker ended the run early)."""
    server = start_server(cluster)
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.device(f"/job:ps/task:{cluster.task_index}"):
        queue = tf.compat.v1.FIFOQueue(-1, tf.int32, shapes=[()], shared_name=DONE_QUEUE.format(cluster.task_index),
                                       name=f"done_ps{cluster.task_index}")
        all_done = queue.dequeue_many(cluster.workers)
    print(f"{cluster.name}: serving; it ends when all {cluster.workers} workers are done", file=sys.stderr,
          flush=True)
    with tf.compat.v1.Session(server.target, graph=graph, config=cluster.session_config()) as sess:
        tokens = sess.run(all_done)
    if (tokens < 0).any():
        print(f"{cluster.name}: the run ended early (a worker gave up); see the workers' errors", file=sys.stderr,
              flush=True)
        return 1
    print(f"{cluster.name}: all {cluster.workers} workers are done", file=sys.stderr, flush=True)
    return 0
