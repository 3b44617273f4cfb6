"""Distributed fine-tuning on a localhost cluster: 1 ps + 2 workers as processes, on free ports, bounded in time.

What a user relies on: the main job run distributed ends with every task exiting 0 (the ps by itself), the frozen
layers bit-identical to the source and accuracy as high as one process reaches; phases, learning-rate multipliers
and element-wise masks keep their promises; a worker killed mid-run and started again, or the whole cluster
restarted with --resume, finishes the run; only the chief writes; a task that cannot reach the cluster says so
in one line after a bounded wait.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.cli_harness import run_cli
from tf1tune.errors import ConfigError
from tf1tune.train.cluster import cluster_from
from tf1tune.train.config import make_config
from tf1tune.train.local_cluster import LocalCluster, free_ports

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "checkpoints" / "digits_cnn"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
       "TF_CPP_MIN_LOG_LEVEL": "2"}
LIMIT = 420  # seconds for one whole cluster run on a loaded 2-core machine
FROZEN = ("DigitsCNN/Conv2d_1/", "DigitsCNN/Conv2d_2/")  # what the main job never trains (BN statistics too)


def _tf1tune(*args: str, timeout: float = LIMIT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tf1tune", *args], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def _values(checkpoint: str | Path) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(checkpoint))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def _assert_frozen_identical(run: Path) -> None:
    source, trained = _values(SOURCE), _values(tf.train.latest_checkpoint(str(run)))
    frozen = [n for n in source if n.startswith(FROZEN) and n in trained]  # (not the source's own optimizer slots)
    assert len(frozen) >= 10  # weights and batch-norm statistics of two conv blocks
    for name in frozen:
        assert trained[name].tobytes() == source[name].tobytes(), name


def _wait_for(predicate, what: str, cluster: LocalCluster, timeout: float = LIMIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        failed = {k: p.returncode for k, p in cluster.processes.items() if p.poll() not in (None, 0)}
        assert not failed, f"tasks failed while waiting for {what}: {failed}\n{_tail(cluster)}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{_tail(cluster)}"
        time.sleep(0.2)


def _tail(cluster: LocalCluster) -> str:
    return "\n".join(f"[{job} {i}] {line.rstrip()}" for (job, i), lines in cluster.output.items()
                     for line in lines[-8:])


def _finish(cluster: LocalCluster, timeout: float = LIMIT) -> None:
    """Every task (its latest process) exits 0 within `timeout`."""
    try:
        _wait_for(lambda: all(p.poll() is not None for p in cluster.processes.values()), "the end", cluster, timeout)
        codes = {k: p.returncode for k, p in cluster.processes.items()}
        assert set(codes.values()) == {0}, f"{codes}\n{_tail(cluster)}"
    finally:
        cluster.stop()


def _cluster(args: list[str] | None = None) -> LocalCluster:
    """A 1 ps + 2 workers localhost cluster run from the repository root; with `args`, every task started."""
    cluster = LocalCluster.on_free_ports(workers=2)
    cluster.cwd, cluster.env = str(ROOT), ENV
    for job, index in cluster.tasks if args is not None else []:
        cluster.start(args, job, index, echo=False)
    return cluster


def _errors(cluster: LocalCluster, job: str, index: int) -> list[str]:
    return [line for line in cluster.output[(job, index)] if line.startswith("tf1tune: error: ")]


LONG_RUN = ["--steps", "5000", "--checkpoint-every", "10", "--cluster-timeout", "15", "--no-progress"]


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The main job in one process (100 steps): what the cluster is held to."""
    run = tmp_path_factory.mktemp("single") / "run"
    done = _tf1tune("finetune", "--out", str(run), "--steps", "100", "--no-progress")
    assert done.returncode == 0, done.stderr[-2000:]
    return _metrics(run)


def test_main_job_on_a_localhost_cluster(tmp_path: Path, single: dict) -> None:
    run = tmp_path / "run"
    done = _tf1tune("cluster", "--workers", "2", "--", "finetune", "--out", str(run), "--steps", "100",
                    "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]  # the launcher returns 0 only if every task exited 0
    assert "[ps 0]" in done.stderr and "all 2 workers are done" in done.stderr  # the ps ended by itself
    assert "[worker 1]" in done.stdout and "done at global step 100" in done.stdout
    metrics = _metrics(run)
    assert metrics["steps"] == 100 and metrics["train_seconds"] > 0
    assert metrics["cluster"] == {"workers": 2, "ps_tasks": 1, "mode": "synchronous", "batch_per_worker": 64,
                                  "effective_batch": 128}
    _assert_frozen_identical(run)
    one_sample = 1.0 / metrics["validation_size"]
    assert metrics["accuracy_after"] >= single["accuracy_after"] - 2 * one_sample, (metrics, single)
    assert metrics["accuracy_after"] > 0.95
    assert tf.train.latest_checkpoint(str(run)).endswith("model.ckpt-100")


PHASES = """
phases:
  - {steps: 30, trainable_scopes: [DigitsCNN/Logits], learning_rate: 0.05}
  - {steps: 30, trainable_scopes: [DigitsCNN/Conv2d_3, DigitsCNN/Logits], learning_rate: 0.05,
     lr_multipliers: {DigitsCNN/Conv2d_3: 0.5}}
masks:
  DigitsCNN/Conv2d_3/weights: {columns: [0, 5]}
checkpoint_every: 10
cluster_timeout: 120
clip_norm: 5.0
"""


def _phased_args(tmp_path: Path, run: Path) -> list[str]:
    config = tmp_path / "phases.yaml"
    config.write_text(PHASES)
    return ["finetune", "--config", str(config), "--out", str(run), "--no-progress"]


def _assert_phases_kept(run: Path) -> None:
    _assert_frozen_identical(run)
    source, trained = _values(SOURCE), _values(tf.train.latest_checkpoint(str(run)))
    name = "DigitsCNN/Conv2d_3/weights"
    assert trained[name][..., [0, 5]].tobytes() == source[name][..., [0, 5]].tobytes()  # masked columns
    assert not np.array_equal(trained[name][..., 1:5], source[name][..., 1:5])  # the rest trained in phase 2
    assert int(trained["global_step"]) == 60


def test_worker_killed_and_restarted_finishes_the_run(tmp_path: Path) -> None:
    run, elsewhere = tmp_path / "run", tmp_path / "not-the-chief"
    args = _phased_args(tmp_path, run)
    cluster = _cluster()
    cluster.start(args, "ps", 0, echo=False)
    cluster.start(args, "worker", 0, echo=False)
    worker_args = [*args[:-2], str(elsewhere), "--no-progress"]  # another --out: a worker that is not chief writes nothing
    victim = cluster.start(worker_args, "worker", 1, echo=False)
    _wait_for(lambda: (run / "model.ckpt-10.index").exists(), "the first checkpoint", cluster)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    time.sleep(1.0)
    cluster.start(worker_args, "worker", 1, echo=False)
    _finish(cluster)
    _assert_phases_kept(run)
    assert not elsewhere.exists()
    assert any("done at global step 60" in line for line in cluster.output[("worker", 1)])


def test_chief_killed_the_others_stop_after_a_bounded_wait(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cluster = _cluster(["finetune", "--out", str(run), *LONG_RUN])
    try:
        _wait_for(lambda: (run / "model.ckpt-10.index").exists(), "a checkpoint", cluster)
        cluster.processes[("worker", 0)].send_signal(signal.SIGKILL)
        worker, ps = cluster.processes[("worker", 1)], cluster.processes[("ps", 0)]
        assert worker.wait(timeout=120) == 2 and ps.wait(timeout=60) == 1
    finally:
        cluster.stop()
    errors = _errors(cluster, "worker", 1)
    assert len(errors) == 1, cluster.output[("worker", 1)][-5:]
    assert f"cannot reach the chief (worker 0 at {cluster.worker_hosts[0]}) for 15 s" in errors[0]
    assert "--resume" in errors[0]
    assert any("the run ended early" in line for line in cluster.output[("ps", 0)])
    assert tf.train.latest_checkpoint(str(run)) is not None  # what --resume continues from


def test_ps_killed_every_worker_stops_with_one_line(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cluster = _cluster(["finetune", "--out", str(run), *LONG_RUN])
    try:
        _wait_for(lambda: (run / "model.ckpt-10.index").exists(), "a checkpoint", cluster)
        cluster.processes[("ps", 0)].send_signal(signal.SIGKILL)
        codes = [cluster.processes[("worker", i)].wait(timeout=120) for i in (0, 1)]
    finally:
        cluster.stop()
    assert codes == [2, 2]
    for i in (0, 1):
        errors = _errors(cluster, "worker", i)
        assert len(errors) == 1 and "lost the cluster" in errors[0] and "--resume" in errors[0], errors
    assert tf.train.latest_checkpoint(str(run)) is not None


def test_whole_cluster_killed_then_resumed(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = _phased_args(tmp_path, run)
    cluster = _cluster(args)
    try:
        _wait_for(lambda: (run / "model.ckpt-20.index").exists(), "a checkpoint", cluster)
    finally:
        for p in cluster.processes.values():
            p.send_signal(signal.SIGKILL)
        cluster.stop()
    before = _metrics(run)["accuracy_before"]
    done = _tf1tune("cluster", "--workers", "2", "--", *args, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_phases_kept(run)
    assert _metrics(run)["accuracy_before"] == before  # the run went on; it did not start again


def test_a_failing_task_stops_the_cluster_with_its_exit_code(tmp_path: Path) -> None:
    done = _tf1tune("cluster", "--workers", "2", "--", "finetune", "--out", str(tmp_path / "run"), "--checkpoint",
                    str(tmp_path / "missing"), "--no-progress", "--cluster-timeout", "5")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "no checkpoint at" in done.stderr and "stopping the other tasks" in done.stderr


def test_asynchronous_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = _tf1tune("cluster", "--workers", "2", "--", "finetune", "--out", str(run), "--steps", "40",
                    "--async-replicas", "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = _metrics(run)
    assert metrics["cluster"]["mode"] == "asynchronous" and metrics["steps"] == 40
    _assert_frozen_identical(run)


def test_meta_graph_source_on_a_cluster(tmp_path: Path, tf1_cnn) -> None:
    from tests.tf1_style import sample_data

    x, y = sample_data(48)
    data, run = tmp_path / "d.npz", tmp_path / "run"
    np.savez(data, x=x, y=y)
    done = _tf1tune("cluster", "--workers", "2", "--", "finetune", "--meta", tf1_cnn.meta, "--input", "input",
                    "--endpoint", "conv2/Relu", "--num-classes", "3", "--train-data", str(data), "--val-data",
                    str(data), "--steps", "12", "--batch-size", "8", "--learning-rate", "0.01", "--out", str(run),
                    "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    source, trained = _values(tf1_cnn.checkpoint), _values(tf.train.latest_checkpoint(str(run)))
    graph_own = [n for n in source if n.startswith(("conv1/", "conv2/")) and n in trained
                 and "/Adam" not in n]  # (the graph's own optimizer slots are not restored: optimizer state)
    assert len(graph_own) >= 4
    assert [n for n in graph_own if trained[n].tobytes() != source[n].tobytes()] == []  # only the new head trains
    head = [n for n in trained if n.startswith("finetune_head/") and "Momentum" not in n]
    assert head and int(trained["global_step"]) == 12


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.startswith("tf1tune: error: ")]
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    return lines[0]


def test_unreachable_ps_is_one_line_after_a_bounded_wait(tmp_path: Path) -> None:
    ps, worker = free_ports(2)
    began = time.monotonic()
    done = _tf1tune("finetune", "--out", str(tmp_path / "run"), "--ps-hosts", f"localhost:{ps}",
                    "--worker-hosts", f"localhost:{worker}", "--job-name", "worker", "--task-index", "0",
                    "--cluster-timeout", "2", timeout=120)
    line = _one_error_line(done)
    assert f"cannot reach ps task 0 at localhost:{ps} after 2 s" in line, line
    assert time.monotonic() - began < 100


def test_worker_without_its_chief_gives_up_after_a_bounded_wait(tmp_path: Path) -> None:
    cluster = _cluster()
    args = ["finetune", "--out", str(tmp_path / "run"), "--cluster-timeout", "3", "--no-progress"]
    try:
        cluster.start(args, "ps", 0, echo=False)
        done = _tf1tune(*cluster.command(args, "worker", 1)[3:], timeout=180)
    finally:
        cluster.stop()
    line = _one_error_line(done)
    assert "worker 1" in line and "waited 3 s for the chief (worker 0" in line, line
    assert not (tmp_path / "run").exists()


def test_tf_config_and_flags() -> None:
    config = make_config()
    tf_config = {"cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"], "ps": ["p:9"]},
                 "task": {"type": "worker", "index": 1}}
    cluster = cluster_from(config, {"TF_CONFIG": json.dumps(tf_config)})
    assert cluster is not None
    assert (cluster.worker_hosts, cluster.ps_hosts, cluster.job_name, cluster.task_index) == (
        ("a:1", "b:2", "c:3"), ("p:9",), "worker", 2)  # the chief is worker 0
    chief = cluster_from(config, {"TF_CONFIG": json.dumps({**tf_config, "task": {"type": "chief", "index": 0}})})
    assert chief is not None and chief.is_chief
    assert cluster_from(config, {}) is None  # one process
    flags = make_config(ps_hosts="h:1", worker_hosts="h:2, h:3", job_name="worker", task_index=1)
    by_flags = cluster_from(flags, {"TF_CONFIG": json.dumps(tf_config)})  # flags win over TF_CONFIG
    assert by_flags is not None and by_flags.worker_hosts == ("h:2", "h:3") and not by_flags.is_chief
    with pytest.raises(ConfigError, match="'h2' is not host:port"):
        cluster_from(make_config(ps_hosts="h:1", worker_hosts="h2", job_name="worker"), {})
    with pytest.raises(ConfigError, match="task index 2 is out of range: the worker job has 2"):
        cluster_from(make_config(ps_hosts="h:1", worker_hosts="h:2,h:3", job_name="worker", task_index=2), {})
    with pytest.raises(ConfigError, match="TF_CONFIG is not a cluster description"):
        cluster_from(config, {"TF_CONFIG": "{not json"})
    with pytest.raises(ConfigError, match="job_name must be ps or worker"):
        make_config(job_name="chief")


@pytest.mark.parametrize("argv, expected", [
    (["cluster", "--", "inspect", "x"], "tf1tune cluster runs a fine-tuning"),
    (["cluster", "--", "finetune", "--job-name", "ps"], "sets --job-name itself"),
    (["cluster", "--workers", "0", "--", "finetune"], "--workers must be 1..64"),
])
def test_cluster_command_refuses_what_it_cannot_run(argv: list[str], expected: str) -> None:
    outcome = run_cli(argv)
    assert outcome.problem() is None and outcome.code == 2, outcome
    assert expected in outcome.err
