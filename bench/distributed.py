"""Benchmark: the main job on a localhost cluster (1 ps + 2 workers) against one process on the same total work.

Each configuration is a whole `python -m tf1tune ...` command run from the repository root (run on demand; not a
test):

    python bench/distributed.py [--work /tmp/tf1tune-bench] [--rounds 2] [--steps 200] [--batch 64] [--workers 2]

For each variant (the main job as is: the new head only; and `--trainable-scopes DigitsCNN/Conv2d_3,DigitsCNN/Logits`,
which trains and so communicates more variables), three runs of `--steps` steps:

- single N*B: one process at batch N*B (`--no-feature-cache`: a cluster never trains from cached features), the
  baseline: the same images, the same effective batch and the same number of updates as the cluster;
- cluster: `tf1tune cluster --workers N -- finetune --batch-size B` (synchronous: every step averages the N workers'
  gradients, so the effective batch is N*B);
- single B: one process at batch B, what one worker computes per step.

Images/s = steps_this_session * effective batch / train_seconds, from the chief's metrics.json (the training loop
only: no start-up, restore or accuracy before); the wall time of every whole command is printed too. Communication
per step = cluster step - single B step: pushing gradients to the ps, pulling variables, waiting for the slowest
worker (and here the contention of N+1 processes for the machine's cores). Variants and configurations are
interleaved round by round, the order rotating, because the machine is shared; the figures are medians over the
rounds. Warnings and errors that the cluster's tasks print (and the single runs do not) are listed at the end.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = {"head": [], "conv3+head": ["--trainable-scopes", "DigitsCNN/Conv2d_3,DigitsCNN/Logits"]}
KINDS = ("single NB", "cluster", "single B")
NOTABLE = re.compile(r"error|warn|traceback|exception|never used|timed? ?out|deadline|cancel", re.IGNORECASE)
EXPECTED = ("classifier scopes DigitsCNN/Logits left out of the restore",)  # the main job's own note


def _command(kind: str, variant: str, args: argparse.Namespace, out: str) -> list[str]:
    common = ["--steps", str(args.steps), "--out", out, "--overwrite", "--no-progress", *VARIANTS[variant]]
    if kind == "cluster":
        return [sys.executable, "-m", "tf1tune", "cluster", "--workers", str(args.workers), "--",
                "finetune", "--batch-size", str(args.batch), *common]
    batch = args.batch * args.workers if kind == "single NB" else args.batch
    return [sys.executable, "-m", "tf1tune", "finetune", "--batch-size", str(batch), "--no-feature-cache", *common]


def _run(kind: str, variant: str, args: argparse.Namespace, index: int) -> dict:
    out = os.path.join(args.work, "distributed", f"{variant}-{kind.replace(' ', '_')}-{index}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)}
    began = time.perf_counter()
    try:
        done = subprocess.run(_command(kind, variant, args, out), cwd=ROOT, env=env, capture_output=True, text=True,
                              errors="replace", timeout=args.timeout)
    except subprocess.TimeoutExpired as e:
        raise SystemExit(f"{kind} {variant}: no end after {args.timeout:g} s (a hang?); its output:\n"
                         f"{e.stdout or ''}{e.stderr or ''}") from e
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{kind} {variant} exited with {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    with open(os.path.join(out, "metrics.json")) as f:
        m = json.load(f)
    batch = m["cluster"]["effective_batch"] if "cluster" in m else (
        args.batch * args.workers if kind == "single NB" else args.batch)
    steps, seconds = m["steps_this_session"], m["train_seconds"]
    notes = [re.sub(r"localhost:\d+", "localhost:PORT", line.strip())
             for line in (done.stdout + done.stderr).splitlines()
             if NOTABLE.search(line) and not any(x in line for x in EXPECTED)]
    return {"kind": kind, "variant": variant, "wall": wall, "train": seconds, "step": seconds / steps,
            "images_s": steps * batch / seconds, "params": m["trained_params"], "accuracy": m["accuracy_after"],
            "cluster": m.get("cluster"), "notes": notes}


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/tf1tune-bench")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64, help="batch per worker B (the single baseline: N*B)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before a command counts as hung")
    args = parser.parse_args()
    n, b = args.workers, args.batch
    print(f"{n} workers x batch {b} (effective {n * b}) vs one process at batch {n * b} and at {b}; {args.steps} "
          f"steps, {args.rounds} rounds; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    runs = []
    plan = [(v, k) for v in VARIANTS for k in KINDS]
    for r in range(args.rounds):
        shift = r % len(plan)
        for variant, kind in plan[shift:] + plan[:shift]:
            run = _run(kind, variant, args, len(runs))
            runs.append(run)
            print(f"round {r + 1} {variant:10s} {kind:9s}: wall {run['wall']:6.1f} s, train {run['train']:6.2f} s, "
                  f"step {run['step'] * 1000:6.1f} ms, {run['images_s']:7.0f} images/s, accuracy "
                  f"{run['accuracy']:.4f}", flush=True)
    load = os.getloadavg()[0]

    print(f"\nmedians over {args.rounds} rounds (load average at the end {load:.1f}):")
    head = (f"{'variant':10s} {'params':>7s} {'single NB img/s':>15s} {'cluster img/s':>13s} {'ratio':>6s} "
            f"{'single NB wall':>14s} {'cluster wall':>12s} {'ratio':>6s} {'step B':>7s} {'cluster step':>12s} "
            f"{'comm/step':>9s}")
    print(head)
    summary = {}
    for variant in VARIANTS:
        of = {k: [x for x in runs if x["variant"] == variant and x["kind"] == k] for k in KINDS}
        base, clus, one = (of[k] for k in KINDS)
        compute, step = _median(one, "step"), _median(clus, "step")
        comm = step - compute
        summary[variant] = (compute, comm, base[0]["params"])
        print(f"{variant:10s} {base[0]['params']:7,d} {_median(base, 'images_s'):15.0f} {_median(clus, 'images_s'):13.0f} "
              f"{_median(clus, 'images_s') / _median(base, 'images_s'):5.2f}x {_median(base, 'wall'):13.1f}s "
              f"{_median(clus, 'wall'):11.1f}s {_median(clus, 'wall') / _median(base, 'wall'):5.2f}x "
              f"{compute * 1000:5.1f}ms {step * 1000:10.1f}ms {comm * 1000:7.1f}ms")

    print(f"\nprediction for N machines, one worker each at batch {b} (assumes: a machine computes its batch in the "
          f"single-B step time measured here, and the communication per step stays the measured one; a real network "
          f"adds latency and moves 2 x 4 bytes x trained params per worker per step through the ps, while part of the "
          f"figure here is {n} + 1 processes sharing {os.cpu_count()} cores):")
    sizes = (1, 2, 4, 8, 16)
    print(f"{'variant':10s} " + " ".join(f"{f'N={k} img/s':>12s} {'speed-up':>8s}" for k in sizes))
    for variant, (compute, comm, params) in summary.items():
        cells = []
        for k in sizes:
            rate = k * b / (compute + (comm if k > 1 else 0.0))
            cells.append(f"{rate:12.0f} {rate * compute / b:7.2f}x")
        print(f"{variant:10s} " + " ".join(cells) + f"   ({params * 4 * 2 / 1024:.1f} KiB per worker per step)")
    print("speed-up: over one machine training at batch B alone (B / single-B step); images/s(N) = N*B / "
          "(compute(B) + comm)")

    seen_single = {note for x in runs if x["kind"] != "cluster" for note in x["notes"]}
    cluster_notes = collections.Counter(note for x in runs if x["kind"] == "cluster" for note in dict.fromkeys(x["notes"]))
    odd = [(note, c) for note, c in cluster_notes.items() if note not in seen_single]
    print(f"\nlines printed by the cluster's tasks that look like warnings or errors (not in the single runs; "
          f"in how many of {sum(1 for x in runs if x['kind'] == 'cluster')} cluster runs):")
    for note, c in odd or [("none", 0)]:
        print(f"  {c:3d}  {note}")
    if seen_single:
        print("and in the single runs: " + "; ".join(sorted(seen_single)))


if __name__ == "__main__":
    main()
