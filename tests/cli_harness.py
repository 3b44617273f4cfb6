"""Running `tf1tune.cli.main(argv)` in-process with a time limit, and many such runs in worker processes.

`run_cli` captures stdout and stderr and stops Python code that runs past its limit (SIGALRM). `Pool` runs cases
in a few long-lived worker processes (one TensorFlow import each, not one per case), and kills a worker whose case
passes the limit inside TensorFlow's C++ code, where no signal reaches Python: that case counts as a hang.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
import traceback
from dataclasses import dataclass, field
from typing import Any


class _Timeout(BaseException):
    """Raised by the alarm; a BaseException so that no `except Exception` in tf1tune swallows it."""


@dataclass
class Outcome:
    """How one CLI run ended."""

    argv: list[str]
    code: int | str          # exit code, or "timeout" / "raised" (an exception escaped main) / "killed"
    out: str = ""
    err: str = ""
    seconds: float = 0.0
    label: str = ""

    @property
    def error_lines(self) -> list[str]:
        """Stderr lines other than warnings and progress bars."""
        return [line for line in self.err.splitlines()
                if line.strip() and not line.startswith("tf1tune: warning: ") and "\r" not in line
                and "step/s" not in line and "it/s" not in line]

    def problem(self) -> str | None:
        """Why this outcome breaks the promise (exit 0, or one line + exit 2, never a traceback), or None."""
        if self.code == 0:
            return "traceback on stderr" if "Traceback" in self.err else None
        if self.code != 2:
            return f"exit {self.code}: {self.err.strip()[-600:]}"
        lines = self.error_lines
        if len(lines) != 1 or not lines[0].startswith("tf1tune: error: "):
            return f"not one error line: {lines[:5]}"
        if "Traceback" in self.err:
            return "traceback on stderr"
        return None


def run_cli(argv: list[str], limit: float = 60.0, label: str = "") -> Outcome:
    """`tf1tune.cli.main(argv)` in this process, stdout/stderr captured, stopped after `limit` seconds."""
    from tf1tune.cli import main

    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()

    def alarm(signum: int, frame: Any) -> None:
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    code: int | str
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 2
    except _Timeout:
        code = "timeout"
    except BaseException:  # noqa: BLE001 - an exception escaping main is exactly what the tests look for
        code = "raised"
        err.write(traceback.format_exc())
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return Outcome(list(argv), code, out.getvalue(), err.getvalue(), time.monotonic() - start, label)


def _worker(conn: multiprocessing.connection.Connection, limit: float) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    run_cli(["nets"], limit=600)  # warm up: TensorFlow's import is not part of any case's time
    conn.send("ready")
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        label, argv = job
        conn.send(run_cli(argv, limit, label))


@dataclass
class _Slot:
    process: Any
    conn: Any
    job: tuple[str, list[str]] | None = None
    started: float = 0.0


@dataclass
class Pool:
    """A few worker processes that run CLI cases; `run(cases)` returns one `Outcome` per case, in order."""

    workers: int = 2
    limit: float = 30.0
    slots: list[_Slot] = field(default_factory=list)

    def _start(self) -> _Slot:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(target=_worker, args=(child, self.limit), daemon=True)
        process.start()
        if not parent.poll(600) or parent.recv() != "ready":
            raise RuntimeError("a CLI worker did not start")
        return _Slot(process, parent)

    def run(self, cases: list[tuple[str, list[str]]]) -> list[Outcome]:
        """Run `(label, argv)` cases; a case still running `limit` + 15 s after it started is killed."""
        pending = list(enumerate(cases))[::-1]
        results: dict[int, Outcome] = {}
        index_of: dict[int, int] = {}
        self.slots = [self._start() for _ in range(self.workers)]
        try:
            while pending or any(s.job for s in self.slots):
                for n, slot in enumerate(self.slots):
                    if slot.job is None and pending:
                        i, job = pending.pop()
                        slot.job, slot.started, index_of[n] = job, time.monotonic(), i
                        slot.conn.send(job)
                busy = [s.conn for s in self.slots if s.job]
                ready = multiprocessing.connection.wait(busy, timeout=1.0)
                for n, slot in enumerate(self.slots):
                    if slot.job is None:
                        continue
                    if slot.conn in ready:
                        try:
                            results[index_of[n]] = slot.conn.recv()
                        except EOFError:  # the worker died (a crash inside TensorFlow)
                            results[index_of[n]] = Outcome(slot.job[1], "killed", err="worker died", label=slot.job[0])
                            self._replace(n)
                            continue
                        slot.job = None
                    elif time.monotonic() - slot.started > self.limit + 15 or not slot.process.is_alive():
                        results[index_of[n]] = Outcome(slot.job[1], "killed", err="hang: killed after the limit",
                                                       seconds=time.monotonic() - slot.started, label=slot.job[0])
                        self._replace(n)
        finally:
            for slot in self.slots:
                with contextlib.suppress(Exception):
                    slot.conn.send(None)
                slot.process.join(timeout=5)
                if slot.process.is_alive():
                    slot.process.kill()
        return [results[i] for i in range(len(cases))]

    def _replace(self, n: int) -> None:
        old = self.slots[n]
        old.process.kill()
        old.process.join(timeout=5)
        self.slots[n] = self._start()
