"""A whole cluster on one machine, for trying a distributed run: `tf1tune cluster --workers 2 -- finetune ...`.

It picks free ports on localhost, starts every task as its own `python -m tf1tune finetune ...` process with the
cluster flags appended (`--ps-hosts`, `--worker-hosts`, `--job-name`, `--task-index`), prints each task's
output with the task's name in front, and returns when every task has ended: 0 when all of them exited 0. When
one task fails, the others are stopped and its exit code is returned (a resumable run is then continued with
the same command and `--resume`). Real clusters start the same commands, one per machine (README).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO

from tf1tune.errors import ClusterError

__all__ = ["LocalCluster", "free_ports", "run_local_cluster"]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct TCP ports that are free on `host` now (all held open together while they are picked)."""
    held = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((host, 0))
            held.append(s)
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


@dataclass
class LocalCluster:
    """The hosts of a cluster on localhost and the processes of its tasks."""

    ps_hosts: list[str]
    worker_hosts: list[str]
    python: str = sys.executable
    cwd: str | None = None  # the tasks' working directory and environment (default: this process's)
    env: dict[str, str] | None = None
    processes: dict[tuple[str, int], subprocess.Popen[str]] = field(default_factory=dict)
    output: dict[tuple[str, int], list[str]] = field(default_factory=dict)  # every line each task printed

    @classmethod
    def on_free_ports(cls, workers: int, ps: int = 1) -> LocalCluster:
        ports = free_ports(ps + workers)
        return cls([f"localhost:{p}" for p in ports[:ps]], [f"localhost:{p}" for p in ports[ps:]])

    @property
    def tasks(self) -> list[tuple[str, int]]:
        """Every task, the ps tasks first (so that they listen before the workers look for them)."""
        return [("ps", i) for i in range(len(self.ps_hosts))] + [("worker", i) for i in range(len(self.worker_hosts))]

    def command(self, args: Sequence[str], job: str, index: int) -> list[str]:
        """The command line of one task: `args` (`finetune ...`) with this cluster's flags."""
        return [self.python, "-m", "tf1tune", *args, "--ps-hosts", ",".join(self.ps_hosts),
                "--worker-hosts", ",".join(self.worker_hosts), "--job-name", job, "--task-index", str(index)]

    def start(self, args: Sequence[str], job: str, index: int, echo: bool = True) -> subprocess.Popen[str]:
        """Start (or restart) one task; its output is printed prefixed with `[job index]` when `echo`."""
        process = subprocess.Popen(self.command(args, job, index), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, errors="replace", cwd=self.cwd, env=self.env)
        self.processes[(job, index)] = process
        lines = self.output.setdefault((job, index), [])
        for pipe, out in ((process.stdout, sys.stdout), (process.stderr, sys.stderr)):
            threading.Thread(target=_relay, args=(pipe, out, f"[{job} {index}] " if echo else None, lines),
                             daemon=True).start()
        return process

    def stop(self) -> None:
        """Stop every task still running (SIGTERM, then SIGKILL after 10 s)."""
        running = [p for p in self.processes.values() if p.poll() is None]
        for p in running:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in running:
            try:
                p.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _relay(pipe: IO[str] | None, out: IO[str], prefix: str | None, lines: list[str]) -> None:
    if pipe is None:
        return
    for line in pipe:
        lines.append(line)
        if prefix is not None:
            try:
                out.write(prefix + line)
                out.flush()
            except (BrokenPipeError, ValueError):
                pass
    pipe.close()


def run_local_cluster(args: Sequence[str], workers: int = 2, ps: int = 1, ps_grace: float = 60.0) -> int:
    """Run `args` (`["finetune", ...]`) as a cluster of `ps` ps tasks and `workers` workers on localhost.

    Returns 0 when every task exited 0, else the exit code of the first task that failed (the others are
    stopped then).

    Raises:
        ClusterError: `args` is not a finetune command, or the counts are out of range.
    """
    args = list(args)
    if not args or args[0] != "finetune":
        raise ClusterError("tf1tune cluster runs a fine-tuning: give it as `tf1tune cluster --workers 2 -- finetune "
                           "[flags]`")
    taken = {"--ps-hosts", "--worker-hosts", "--job-name", "--task-index"} & {a.split("=")[0] for a in args}
    if taken:
        raise ClusterError(f"tf1tune cluster sets {', '.join(sorted(taken))} itself; leave them out of the "
                           "finetune flags")
    if not 1 <= workers <= 64 or not 1 <= ps <= 16:
        raise ClusterError(f"--workers must be 1..64 and --ps 1..16, got {workers} and {ps}")
    cluster = LocalCluster.on_free_ports(workers, ps)
    try:
        for job, index in cluster.tasks:
            cluster.start(args, job, index)
        return _wait(cluster, ps_grace)
    finally:
        cluster.stop()


def _wait(cluster: LocalCluster, ps_grace: float) -> int:
    """Wait for the workers; then give the ps tasks `ps_grace` seconds to end by themselves."""
    workers = [p for (job, _), p in cluster.processes.items() if job == "worker"]
    ended_at = None
    while True:
        for (job, index), p in cluster.processes.items():
            code = p.poll()
            if code not in (None, 0):
                print(f"tf1tune cluster: {job} {index} exited with {code}; stopping the other tasks",
                      file=sys.stderr, flush=True)
                return int(code)
        running = [p for p in cluster.processes.values() if p.poll() is None]
        if not running:
            return 0
        if all(p.poll() == 0 for p in workers):
            ended_at = ended_at or time.monotonic()
            if time.monotonic() - ended_at > ps_grace:
                print(f"tf1tune cluster: the ps tasks did not end within {ps_grace:g} s of the workers; stopped",
                      file=sys.stderr, flush=True)
                return 1
        time.sleep(0.2)

