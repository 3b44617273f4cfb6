"""A seeded mutation fuzzer over every file kind tf1tune reads, through the real CLI.

Mutants of `.pb` (binary and text), `.meta`, `.index`, `.data`, V1 checkpoints, `checkpoint` state files and
YAML configurations are fed to the subcommands that read them (`inspect`, `freeze`, `diff`, `convert`, `rename`,
`finetune`), in-process through `tf1tune.cli.main` in two worker processes with a per-case time limit. Each must end
in success or one error line with exit 2: never a traceback, an internal error, a hang, or a write to a source.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time

import numpy as np
import pytest
import yaml

from tests import hostile_models, mutants
from tests.cli_harness import Pool

SEED = 15
MUTANTS = 300
LIMIT = 30.0  # seconds per case


def _digest(folder: str) -> dict[str, str]:
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[path] = hashlib.sha256(f.read()).hexdigest()
    return found


@pytest.fixture(scope="module")
def pristine(tiny, tmp_path_factory):
    """Clean copies of every file kind: the tiny model as .pb, .meta + V2 and V1 checkpoints; the image model, its
    data and a finetune config."""
    root = str(tmp_path_factory.mktemp("pristine"))
    shutil.copytree(os.path.dirname(tiny.ckpt_v2), os.path.join(root, "v2"))
    shutil.copytree(os.path.dirname(tiny.ckpt_v1), os.path.join(root, "v1"))
    shutil.copy(tiny.frozen_binary, os.path.join(root, "frozen.pb"))
    shutil.copy(tiny.frozen_text, os.path.join(root, "frozen_text.pb"))
    image = os.path.join(root, "image")
    hostile_models.write(image, None, os.path.join(root, "unused"))
    hostile_models.write_data(os.path.join(image, "data.npz"))
    config = {"meta": "model.ckpt.meta", "input": "input", "endpoint": "features", "num_classes": 2,
              "train_data": "data.npz", "val_data": "data.npz", "steps": 2, "batch_size": 4, "learning_rate": 0.1,
              "optimizer": "sgd", "seed": 3, "checkpoint_every": 1, "keep_checkpoints": 2, "log_every": 1,
              "trainable_scopes": ["finetune_head"], "out": "OUT"}
    with open(os.path.join(image, "config.yaml"), "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return root


_PROTO = [mutants.bit_flips, mutants.truncation, mutants.splice, "swap"]
_BYTES = [mutants.bit_flips, mutants.truncation, mutants.splice]


def _case(rng: np.random.Generator, pristine: str, folder: str) -> tuple[str, list[str], str]:
    """One mutant under `folder/src` and the command that reads it; returns (label, argv, source folder)."""
    src, out = os.path.join(folder, "src"), os.path.join(folder, "out")
    os.makedirs(out)
    target = str(rng.choice(["pb", "pb", "meta", "meta", "index", "data", "state", "v1", "yaml", "yaml"]))
    if target == "pb":
        shutil.copytree(pristine, src, ignore=shutil.ignore_patterns("v1", "v2", "image"))
        name = str(rng.choice(["frozen.pb", "frozen_text.pb"]))
        file, mutators, argvs = name, _PROTO, [["inspect", f"src/{name}"],
                                               ["freeze", f"src/{name}", "--outputs", "probs", "--out", "out/f.pb"]]
        kind = "graph"
    elif target == "v1":
        shutil.copytree(os.path.join(pristine, "v1"), src)
        file, mutators, kind = "model.ckpt", _BYTES, "bytes"
        argvs = [["inspect", "src/model.ckpt"], ["convert", "src/model.ckpt", "--out", "out/c"]]
    elif target == "yaml":
        shutil.copytree(os.path.join(pristine, "image"), src)
        file, kind = "config.yaml", "yaml"
        mutators = [mutants.yaml_fields, mutants.yaml_fields, mutants.yaml_fields, mutants.bit_flips,
                    mutants.truncation, mutants.alias_bomb]
        argvs = [["finetune", "--config", "src/config.yaml", "--no-progress"]]
    else:
        shutil.copytree(os.path.join(pristine, "v2"), src)
        file = {"meta": "model.ckpt.meta", "index": "model.ckpt.index", "data": "model.ckpt.data-00000-of-00001",
                "state": "checkpoint"}[target]
        kind = "meta" if target == "meta" else "bytes"
        mutators = _PROTO if target == "meta" else [mutants.state_file] if target == "state" else _BYTES
        clean = os.path.join(pristine, "v2", "model.ckpt")
        argvs = [["inspect", "src/model.ckpt"], ["inspect", "src"],
                 ["freeze", "--meta", "src/model.ckpt.meta", "--outputs", "probs", "--out", "out/f.pb"],
                 ["diff", "src/model.ckpt", clean], ["convert", "src/model.ckpt", "--out", "out/c"],
                 ["rename", "src/model.ckpt", "--map", "hidden=enc/hidden", "--out", "out/r"]]
    path = os.path.join(src, file)
    with open(path, "rb") as f:
        data = f.read()
    mutator = mutators[int(rng.integers(len(mutators)))]
    if mutator == "swap":
        new, what = mutants.proto_swap(data, rng, kind)
    else:
        new, what = mutator(data, rng)  # type: ignore[operator]
    if kind == "yaml":
        new = new.replace(b"OUT", os.path.join(out, "run").encode())
        for name in ("model.ckpt.meta", "data.npz"):
            new = new.replace(name.encode(), os.path.join(src, name).encode())
    with open(path, "wb") as f:
        f.write(new)
    argv = [a.replace("src/", src + "/").replace("out/", out + "/") if a != "src" else src
            for a in argvs[int(rng.integers(len(argvs)))]]
    return f"{target}/{file}: {what}", argv, src


def test_mutants_end_in_success_or_one_line(pristine, tmp_path):
    rng = np.random.default_rng(SEED)
    cases, sources = [], []
    for i in range(MUTANTS):
        label, argv, src = _case(rng, pristine, str(tmp_path / f"case{i:03d}"))
        cases.append((f"#{i} {label}", argv))
        sources.append((src, _digest(src)))
    start = time.monotonic()
    outcomes = Pool(workers=2, limit=LIMIT).run(cases)
    elapsed = time.monotonic() - start
    problems = []
    for outcome, (src, before) in zip(outcomes, sources):
        why = outcome.problem()
        after = _digest(src)
        changed = sorted(p for p in before if after.get(p) != before[p])
        if changed:
            why = f"source written: {changed}"
        if why:
            problems.append(f"{outcome.label} | {' '.join(outcome.argv[:2])}: {why}")
    ok = sum(o.code == 0 for o in outcomes)
    print(f"{len(outcomes)} mutants in {elapsed:.1f} s: {ok} succeeded, {len(outcomes) - ok} refused")
    assert not problems, f"{len(problems)} of {len(outcomes)} mutants broke the promise:\n" + "\n".join(problems[:40])
