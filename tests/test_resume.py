"""Resume is exact: a run stopped (cleanly or by `kill -9` at seeded steps) and resumed ends bit-identical to the
uninterrupted run, for every source kind (`--net`, `--meta`, `--frozen`); and `--seed` makes runs reproducible.

The random ops of the training graph (dropout in the net and in the new head) are stateless in (seed, step), the
batches are addressed by step, so nothing depends on how many processes a run took.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests import hostile_models
from tests.cli_harness import run_cli
from tf1tune.checkpoints import checkpoint_values

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS = os.path.join(ROOT, "checkpoints", "digits_cnn")
STEPS = 30


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("image"))
    meta = hostile_models.write(os.path.join(root, "meta"), None, os.path.join(root, "unused"))
    frozen = hostile_models.write(os.path.join(root, "frozen"), None, os.path.join(root, "unused"), frozen=True)
    return {"meta": meta, "frozen": frozen, "data": hostile_models.write_data(os.path.join(root, "d.npz"), n=40)}


def _argv(kind: str, image: dict[str, str], out: str, steps: int = STEPS) -> list[str]:
    common = ["--steps", str(steps), "--batch-size", "8", "--checkpoint-every", "1", "--keep-checkpoints", "100",
              "--seed", "5", "--optimizer", "momentum", "--out", out, "--no-progress"]
    if kind == "net":  # digits_cnn has dropout before its logits
        return ["finetune", "--checkpoint", DIGITS, "--trainable-scopes", "DigitsCNN/Logits,DigitsCNN/Conv2d_3",
                "--learning-rate", "0.02", *common]
    source = ["--meta", image["meta"]] if kind == "meta" else ["--frozen", image["frozen"], "--trainable-scopes",
                                                               "conv,finetune_head"]
    return ["finetune", *source, "--input", "input", "--endpoint", "features", "--num-classes", "2",
            "--head", "global_pool, dropout(0.5), dense(2)", "--train-data", image["data"],
            "--learning-rate", "0.0005", *common]


def _run(argv: list[str]) -> None:
    outcome = run_cli(argv, limit=300)
    assert outcome.code == 0, outcome.err[-2000:]


def _final(out: str, steps: int = STEPS) -> dict[str, np.ndarray]:
    return checkpoint_values(os.path.join(out, f"model.ckpt-{steps}"))


def _assert_bit_identical(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    differ = [k for k in a if a[k].tobytes() != b[k].tobytes()]
    assert not differ, f"{len(differ)} of {len(a)} entries differ: {differ[:5]}"


@pytest.fixture(scope="module")
def uninterrupted(image, tmp_path_factory):
    """The uninterrupted run of each source kind."""
    root = tmp_path_factory.mktemp("uninterrupted")
    done = {}
    for kind in ("net", "meta", "frozen"):
        out = str(root / kind)
        _run(_argv(kind, image, out))
        done[kind] = out
    return done


@pytest.mark.parametrize("kind", ["net", "meta", "frozen"])
def test_stop_and_resume_is_bit_identical(image, uninterrupted, tmp_path, kind):
    """A clean stop at step 11, then --resume to the end."""
    out = str(tmp_path / "stopped")
    _run(_argv(kind, image, out, steps=11))
    _run(_argv(kind, image, out) + ["--resume"])
    _assert_bit_identical(_final(out), _final(uninterrupted[kind]))


@pytest.mark.parametrize("kind", ["net", "meta", "frozen"])
def test_kill_minus_nine_at_seeded_steps_then_resume_is_bit_identical(image, uninterrupted, tmp_path, kind):
    """`kill -9` at seeded steps (once that step's checkpoint exists; twice for `--meta`), each followed by
    --resume."""
    rng = np.random.default_rng({"net": 1, "meta": 2, "frozen": 3}[kind])
    kills = sorted(int(s) for s in rng.choice(np.arange(3, STEPS - 8), 2 if kind == "meta" else 1, replace=False))
    out = str(tmp_path / "killed")
    killed_at = []
    for n, step in enumerate(kills):
        argv = [sys.executable, "-m", "tf1tune", *_argv(kind, image, out)] + (["--resume"] if n else [])
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target = os.path.join(out, f"model.ckpt-{step}.index")
        deadline = time.time() + 300
        while proc.poll() is None and not os.path.exists(target) and time.time() < deadline:
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
        latest = tf.train.latest_checkpoint(out)
        killed_at.append(int(latest.rsplit("-", 1)[1]) if latest else 0)
        assert killed_at[-1] < STEPS
    _run(_argv(kind, image, out) + ["--resume"])
    _assert_bit_identical(_final(out), _final(uninterrupted[kind]))


@pytest.mark.parametrize("kind", ["meta", "frozen"])
def test_seed_makes_imported_graph_runs_reproducible(image, uninterrupted, tmp_path, kind):
    """Issue 13, item 6: two identical --meta / --frozen runs have the same head, accuracy and weights."""
    out = str(tmp_path / "again")
    _run(_argv(kind, image, out))
    _assert_bit_identical(_final(out), _final(uninterrupted[kind]))
    start_a = checkpoint_values(os.path.join(out, "model.ckpt-1"))
    start_b = checkpoint_values(os.path.join(uninterrupted[kind], "model.ckpt-1"))
    _assert_bit_identical(start_a, start_b)
