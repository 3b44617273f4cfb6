"""Every subcommand against a table of bad inputs: each ends in one line on stderr and exit code 2.

Each row is `(id, argv, expected)`: `argv` names paths by placeholders (`{pb}`, `{ro}`, `{full}`, ...) that the
`paths` fixture fills in, and `expected` is a fragment the error line must contain (None: any one line). Rows run
in-process through `tf1tune.cli.main` with a time limit (a row that hangs fails). No row may write to a source.
Rows marked `FS` need a small read-only and a full file system (tmpfs mounts): they skip where mounting is not
allowed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import numpy as np
import pytest
import yaml

from tests import hostile_models
from tests.cli_harness import run_cli

DIGITS = os.path.join(os.path.dirname(__file__), "..", "checkpoints", "digits_cnn")
SOFTMAX = "DigitsCNN/Predictions/Softmax"
FS = "needs-mounts"

# A fine-tuning run on the tiny image model: `finetune` rows add one bad flag or YAML key to it.
_RUN = ["finetune", "--meta", "{img_meta}", "--input", "input", "--endpoint", "features", "--num-classes", "2",
        "--train-data", "{img_data}", "--val-data", "{img_data}", "--steps", "2", "--batch-size", "4", "--no-progress"]


def _ft(*extra: str, out: str = "{out}/run") -> list[str]:
    return [*_RUN, "--out", out, *extra]


def _yaml(name: str) -> list[str]:
    return ["finetune", "--config", "{yamls}/" + name + ".yaml", "--no-progress"]


# YAML files for the `finetune --config` rows: name -> (text, or a dict merged into the tiny run's config).
YAMLS: dict[str, str | dict] = {
    "not_utf8": "net: digits_cnn\nout: \xff\xfe\n",
    "syntax": "net: [digits_cnn\n",
    "top_list": "- net\n- digits_cnn\n",
    "unknown_key": {"learning_rat": 0.1},
    "bomb": "",  # filled in below
    "self_alias": "phases: &p [{steps: 1, trainable_scopes: *p}]\n",
    "steps_list": {"steps": [1]},
    "steps_huge": {"steps": 2 ** 64},
    "steps_float": {"steps": 1.5},
    "batch_zero": {"batch_size": 0},
    "batch_huge": {"batch_size": 10 ** 12},
    "lr_inf": {"learning_rate": float("inf")},
    "lr_nan": {"learning_rate": float("nan")},
    "lr_string": {"learning_rate": "fast"},
    "val_fraction_big": {"val_fraction": 1.5, "val_data": None},
    "val_fraction_nan": {"val_fraction": float("nan"), "val_data": None},
    "clip_negative": {"clip_norm": -1.0},
    "clip_inf": {"clip_norm": float("inf")},
    "classes_one": {"num_classes": 1},
    "classes_huge": {"num_classes": 10 ** 12},
    "input_size_int": {"input_size": 64},
    "phases_int": {"phases": 5},
    "phases_items": {"phases": [5]},
    "phase_negative": {"phases": [{"steps": -1}]},
    "phase_lr_inf": {"phases": [{"steps": 1, "learning_rate": float("inf")}]},
    "phase_unknown": {"phases": [{"steps": 1, "lr": 0.1}]},
    "phase_scopes_int": {"phases": [{"steps": 1, "trainable_scopes": 5}]},
    "multiplier_negative": {"lr_multipliers": {"finetune_head": -1}},
    "multiplier_nan": {"lr_multipliers": {"finetune_head": float("nan")}},
    "multiplier_text": {"lr_multipliers": {"finetune_head": "fast"}},
    "multipliers_list": {"lr_multipliers": [1, 2]},
    "augment_list": {"augment": [1]},
    "augment_pad": {"augment": {"pad": -1}},
    "augment_brightness": {"augment": {"brightness": float("inf")}},
    "augment_unknown": {"augment": {"rotate": 10}},
    "masks_int": {"masks": 5},
    "masks_list": {"masks": [1]},
    "mask_missing_var": {"masks": {"no/such/var": {"rows": [0]}}},
    "exclude_int": {"exclude_scopes": 5},
    "trainable_int": {"trainable_scopes": 7},
    "histograms_int": {"histograms": 3},
    "optimizer_bad": {"optimizer": "lbfgs"},
    "optimizer_int": {"optimizer": 3},
    "seed_negative": {"seed": -1},
    "seed_huge": {"seed": 2 ** 70},
    "out_list": {"out": ["x"]},
    "out_number": {"out": 1e308},
    "input_int": {"input": -1},
    "meta_list": {"meta": ["a", "b"]},
    "train_data_list": {"train_data": ["a"]},
    "resume_string": {"resume": "yes"},
    "checkpoint_every_zero": {"checkpoint_every": 0},
    "keep_zero": {"keep_checkpoints": 0},
    "keep_huge": {"keep_checkpoints": 10 ** 30},
    "log_every_negative": {"log_every": -1},
    "head_bad": {"head": "bogus(1)"},
    "endpoint_missing": {"endpoint": "no_such_tensor"},
}


def _bomb() -> str:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * 9) + "]" for k in range(1, 9)]
    return "\n".join(lines) + "\ntrainable_scopes: *a8\n"


CASES: list[tuple[str, list[str], str | None]] = [
    # ---- inspect ---------------------------------------------------------------------------------------
    ("inspect-missing", ["inspect", "{tmp}/nope.meta"], "does not exist"),
    ("inspect-empty-pb", ["inspect", "{empty}"], "is empty"),
    ("inspect-garbage-pb", ["inspect", "{garbage}"], "not a valid GraphDef"),
    ("inspect-truncated-pb", ["inspect", "{truncated_pb}"], "not a valid GraphDef"),
    ("inspect-dir-no-ckpt", ["inspect", "{tmp}"], "no checkpoint in directory"),
    ("inspect-unknown-net", ["inspect", "slim:resnet_v1_05"], "closest: resnet_v1_50"),
    ("inspect-empty-net", ["inspect", "slim:"], None),
    ("inspect-net-classes-negative", ["inspect", "slim:digits_cnn", "--num-classes", "-3"], "num_classes"),
    ("inspect-net-size-zero", ["inspect", "slim:digits_cnn", "--input-size", "0", "0"], None),
    ("inspect-net-size-huge", ["inspect", "slim:digits_cnn", "--input-size", "100000", "100000"], "input size"),
    ("inspect-net-size-text", ["inspect", "slim:digits_cnn", "--input-size", "a", "b"], "invalid int value"),
    ("inspect-selectors-no-ckpt", ["inspect", "{pb}", "--exclude-scopes", "x"], "need --checkpoint"),
    ("inspect-up-to-unknown", ["inspect", "slim:digits_cnn", "--checkpoint", "{digits}", "--up-to", "nope"], "nope"),
    ("inspect-checkpoint-missing", ["inspect", "{meta}", "--checkpoint", "{tmp}/none"], None),
    ("inspect-index-no-data", ["inspect", "{no_data}/model.ckpt"], "no data file"),
    ("inspect-fifo", ["inspect", "{fifo}"], None),
    ("inspect-dev-zero", ["inspect", "/dev/zero"], None),
    ("inspect-pb-as-meta", ["inspect", "{pb_as_meta}"], None),
    ("inspect-state-outside", ["inspect", "{state_outside}"], "outside the directory"),
    ("inspect-saver-def-missing", ["inspect", "{bad_saver}"], "saver_def names"),
    ("inspect-path-under-file", ["inspect", "{pb}/model.pb"], None),
    ("inspect-unknown-flag", ["inspect", "{pb}", "--bogus"], "unrecognized arguments"),
    ("inspect-max-rows-text", ["inspect", "{pb}", "--max-rows", "many"], "invalid int value"),
    # ---- nets ------------------------------------------------------------------------------------------
    ("nets-unknown-flag", ["nets", "--bogus"], "unrecognized arguments"),
    ("no-command", [], "required"),
    ("unknown-command", ["frobnicate"], "invalid choice"),
    # ---- diff ------------------------------------------------------------------------------------------
    ("diff-missing-a", ["diff", "{tmp}/none", "{v2}"], None),
    ("diff-missing-b", ["diff", "{v2}", "{tmp}/none"], None),
    ("diff-pb-not-ckpt", ["diff", "{pb}", "{v2}"], None),
    ("diff-truncated-data", ["diff", "{truncated_digits}", "{digits}"], "cannot be read"),
    ("diff-empty-dir", ["diff", "{tmp}", "{v2}"], "no checkpoint in directory"),
    ("diff-one-arg", ["diff", "{v2}"], "required"),
    # ---- rename ----------------------------------------------------------------------------------------
    ("rename-map-no-equals", ["rename", "{v2}", "--map", "hidden", "--out", "{out}/r"], None),
    ("rename-map-nothing", ["rename", "{v2}", "--map", "nope=x", "--out", "{out}/r"], "nope"),
    ("rename-collision", ["rename", "{v2}", "--map", "hidden=logits", "--out", "{out}/r"], None),
    ("rename-drop-nothing", ["rename", "{v2}", "--drop", "nope", "--out", "{out}/r"], "nope"),
    ("rename-onto-source", ["rename", "{v2}", "--map", "hidden=h", "--out", "{v2}"], None),
    ("rename-out-under-file", ["rename", "{v2}", "--map", "hidden=h", "--out", "{pb}/r"], "is a file"),
    ("rename-missing", ["rename", "{tmp}/none", "--map", "a=b", "--out", "{out}/r"], None),
    ("rename-read-only", ["rename", "{v2}", "--map", "hidden=h", "--out", "{ro}/r"], "read-only", FS),
    ("rename-disk-full", ["rename", "{v2}", "--map", "hidden=h", "--out", "{full}/r"], "disk is full", FS),
    ("rename-no-out", ["rename", "{v2}", "--map", "a=b"], "required"),
    # ---- convert ---------------------------------------------------------------------------------------
    ("convert-dtype-int8", ["convert", "{v2}", "--dtype", "int8", "--out", "{out}/c"], "invalid choice"),
    ("convert-onto-source", ["convert", "{v2}", "--out", "{v2}"], None),
    ("convert-out-exists", ["convert", "{v2}", "--out", "{v2_other}"], "exists"),
    ("convert-out-under-file", ["convert", "{v2}", "--out", "{pb}/c"], "is a file"),
    ("convert-read-only", ["convert", "{v2}", "--out", "{ro}/c"], "read-only", FS),
    ("convert-disk-full", ["convert", "{v1}", "--out", "{full}/c"], "disk is full", FS),
    ("convert-garbage", ["convert", "{garbage}", "--out", "{out}/c"], None),
    ("convert-truncated", ["convert", "{truncated_digits}", "--out", "{out}/c"], "cannot be read"),
    ("convert-overflow", ["convert", "{big_values}", "--dtype", "float16", "--out", "{out}/c"], "overflow"),
    # ---- merge -----------------------------------------------------------------------------------------
    ("merge-one-input", ["merge", "{v2}", "--out", "{out}/m"], None),
    ("merge-conflict", ["merge", "{v2}", "{v2_other}", "--out", "{out}/m"], "prefer"),
    ("merge-prefer-range", ["merge", "{v2}", "{v2_other}", "--prefer", "5", "--out", "{out}/m"], None),
    ("merge-prefer-unknown", ["merge", "{v2}", "{v2_other}", "--prefer", "x", "--out", "{out}/m"], "neither"),
    ("merge-missing", ["merge", "{v2}", "{tmp}/none", "--out", "{out}/m"], None),
    ("merge-out-under-file", ["merge", "{v2}", "{v2_other}", "--prefer", "0", "--out", "{pb}/m"], "is a file"),
    ("merge-disk-full", ["merge", "{v2}", "{v2_other}", "--prefer", "0", "--out", "{full}/m"], "disk is full", FS),
    # ---- freeze ----------------------------------------------------------------------------------------
    ("freeze-no-source", ["freeze", "--outputs", "probs", "--out", "{out}/f.pb"], "exactly one"),
    ("freeze-two-sources", ["freeze", "{pb}", "--meta", "{meta}", "--outputs", "probs", "--out", "{out}/f.pb"],
     "exactly one"),
    ("freeze-no-outputs", ["freeze", "{pb}", "--out", "{out}/f.pb"], "--outputs"),
    ("freeze-unknown-output", ["freeze", "{pb}", "--outputs", "prob", "--out", "{out}/f.pb"], "probs"),
    ("freeze-input-not-placeholder", ["freeze", "{pb}", "--inputs", "probs", "--outputs", "probs", "--out",
                                      "{out}/f.pb"], "not a placeholder"),
    ("freeze-set-syntax", ["freeze", "{digits}", "--outputs", SOFTMAX, "--set", "is_training", "--out", "{out}/f.pb"],
     "NAME=VALUE"),
    ("freeze-set-type", ["freeze", "{digits}", "--outputs", SOFTMAX, "--set", "is_training=maybe", "--out",
                         "{out}/f.pb"], "cannot set"),
    ("freeze-onto-source", ["freeze", "{pb}", "--outputs", "probs", "--out", "{pb}"], "file of the source"),
    ("freeze-out-exists", ["freeze", "{pb}", "--outputs", "probs", "--out", "{existing}"], "exists"),
    ("freeze-out-under-file", ["freeze", "{pb}", "--outputs", "probs", "--out", "{pb}/f.pb"], "is a file"),
    ("freeze-out-dir-missing", ["freeze", "{pb}", "--outputs", "probs", "--out", "{tmp}/no/such/dir/f.pb"], None),
    ("freeze-read-only", ["freeze", "{pb}", "--outputs", "probs", "--out", "{ro}/f.pb"], "read-only", FS),
    ("freeze-disk-full", ["freeze", "{pb}", "--outputs", "probs", "--out", "{full}/f.pb"], "disk is full", FS),
    ("freeze-overwrite-disk-full", ["freeze", "{pb}", "--outputs", "probs", "--out", "{full}/keep.pb", "--overwrite"],
     "disk is full", FS),
    ("freeze-rtol-nan", ["freeze", "{pb}", "--outputs", "probs", "--rtol", "nan", "--out", "{out}/f.pb"], "rtol"),
    ("freeze-rtol-negative", ["freeze", "{pb}", "--outputs", "probs", "--rtol", "-1", "--out", "{out}/f.pb"], "rtol"),
    ("freeze-atol-inf", ["freeze", "{pb}", "--outputs", "probs", "--atol", "inf", "--out", "{out}/f.pb"], "atol"),
    ("freeze-seed-negative", ["freeze", "{pb}", "--outputs", "probs", "--seed", "-1", "--out", "{out}/f.pb"], "seed"),
    ("freeze-classes-no-net", ["freeze", "{pb}", "--num-classes", "3", "--outputs", "probs", "--out", "{out}/f.pb"],
     "--num-classes"),
    ("freeze-run-dir-not-run", ["freeze", "--run-dir", "{tmp}", "--out", "{out}/f.pb"], "not a finished"),
    ("freeze-run-dir-and-source", ["freeze", "{pb}", "--run-dir", "{tmp}", "--out", "{out}/f.pb"], None),
    ("freeze-onnx-same-as-out", ["freeze", "{pb}", "--outputs", "probs", "--out", "{out}/f.pb", "--onnx",
                                 "{out}/f.pb"], "same file"),
    ("freeze-hostile-write", ["freeze", "{hostile_pb}", "--outputs", "probs", "--out", "{out}/f.pb"], "WriteFile"),
    ("freeze-hostile-meta", ["freeze", "--meta", "{hostile_meta}", "--outputs", "probs", "--out", "{out}/f.pb"],
     "WriteFile"),
    ("freeze-pyfunc", ["freeze", "{pyfunc_pb}", "--outputs", "probs", "--out", "{out}/f.pb"], "Python code"),
    ("freeze-net-unknown", ["freeze", "--net", "resnet_v1_05", "--outputs", "x", "--out", "{out}/f.pb"], "closest"),
    ("freeze-meta-is-pb", ["freeze", "--meta", "{pb}", "--outputs", "probs", "--out", "{out}/f.pb"], None),
    ("freeze-needs-labels", ["freeze", "{meta}", "--outputs", "sparse_softmax_cross_entropy_loss/value", "--out",
                             "{out}/f.pb"], None),
    ("freeze-truncated-data", ["freeze", "{truncated_digits}", "--outputs", SOFTMAX, "--out", "{out}/f.pb"],
     "cannot be read"),
    # ---- export-savedmodel -----------------------------------------------------------------------------
    ("export-out-not-empty", ["export-savedmodel", "{pb}", "--outputs", "probs", "--out", "{not_a_run}"],
     "not an empty directory"),
    ("export-out-under-file", ["export-savedmodel", "{pb}", "--outputs", "probs", "--out", "{pb}/sm"], "is a file"),
    ("export-hostile", ["export-savedmodel", "--meta", "{hostile_meta}", "--outputs", "probs", "--out", "{out}/sm"],
     "WriteFile"),
    ("export-no-outputs", ["export-savedmodel", "{pb}", "--out", "{out}/sm"], "--outputs"),
    ("export-read-only", ["export-savedmodel", "{pb}", "--outputs", "probs", "--out", "{ro}/sm"], "read-only", FS),
    ("export-disk-full", ["export-savedmodel", "{pb}", "--outputs", "probs", "--out", "{full}/sm"], "disk is full", FS),
    ("export-into-source", ["export-savedmodel", "{saved_model}", "--outputs", "probs", "--out",
                            "{saved_model}/again"], "inside the source"),
    # ---- repair ----------------------------------------------------------------------------------------
    ("repair-unknown-tensor", ["repair", "{meta}", "--replace-input", "nope:0=x", "--out", "{out}/r.meta"], "nope"),
    ("repair-bad-shape", ["repair", "{meta}", "--replace-input", "x:0=x:float32:a,b", "--out", "{out}/r.meta"],
     "comma-separated"),
    ("repair-twice", ["repair", "{meta}", "--replace-input", "x:0", "--replace-input", "x:0", "--out",
                      "{out}/r.meta"], "twice"),
    ("repair-out-exists", ["repair", "{pb}", "--strip-devices", "--out", "{existing}"], None),
    ("repair-garbage", ["repair", "{garbage}", "--strip-devices", "--out", "{out}/r.pb"], None),
    ("repair-out-under-file", ["repair", "{pb}", "--strip-devices", "--out", "{pb}/r.pb"], "is a file"),
    ("repair-read-only", ["repair", "{pb}", "--strip-devices", "--out", "{ro}/r.pb"], "read-only", FS),
    ("repair-disk-full", ["repair", "{pb}", "--strip-devices", "--out", "{full}/r.pb"], "disk is full", FS),
    ("repair-not-pipeline", ["repair", "{meta}", "--replace-input", "probs:0=p", "--out", "{out}/r.meta"], None),
    # ---- finetune: flags --------------------------------------------------------------------------------
    ("ft-config-missing", ["finetune", "--config", "{tmp}/none.yaml"], "does not exist"),
    ("ft-two-sources", _ft("--net", "digits_cnn"), "exactly one"),
    ("ft-steps-int64", _ft("--steps", "99999999999999999999"), "steps"),
    ("ft-steps-negative", _ft("--steps", "-5"), "steps"),
    ("ft-batch-zero", _ft("--batch-size", "0"), "batch_size"),
    ("ft-batch-huge", _ft("--batch-size", "1000000000000"), "batch"),
    ("ft-lr-nan", _ft("--learning-rate", "nan"), "learning_rate"),
    ("ft-lr-inf", _ft("--learning-rate", "inf"), "learning_rate"),
    ("ft-lr-negative", _ft("--learning-rate", "-0.1"), "learning_rate"),
    ("ft-lr-text", _ft("--learning-rate", "fast"), "invalid float value"),
    ("ft-val-fraction-one", _ft("--val-fraction", "1"), "val_fraction"),
    ("ft-clip-nan", _ft("--clip-norm", "nan"), "clip_norm"),
    ("ft-seed-negative", _ft("--seed", "-1"), "seed"),
    ("ft-seed-huge", _ft("--seed", str(2 ** 70)), "seed"),
    ("ft-input-size-negative", ["finetune", "--net", "digits_cnn", "--checkpoint", "{digits}", "--num-classes", "2",
                                "--train-data", "{img_data}", "--input-size", "-5", "8", "--out", "{out}/run"],
     "input_size"),
    ("ft-input-size-huge", ["finetune", "--net", "digits_cnn", "--checkpoint", "{digits}", "--num-classes", "2",
                            "--train-data", "{img_data}", "--input-size", "100000", "100000", "--out", "{out}/run"],
     "input_size"),
    ("ft-checkpoint-every-zero", _ft("--checkpoint-every", "0"), "checkpoint_every"),
    ("ft-keep-zero", _ft("--keep-checkpoints", "0"), "keep_checkpoints"),
    ("ft-optimizer", _ft("--optimizer", "lbfgs"), "optimizer"),
    ("ft-classes-one", [*_RUN[:7], "--num-classes", "1", *_RUN[9:], "--out", "{out}/run"], "num_classes"),
    ("ft-resume-and-overwrite", _ft("--resume", "--overwrite"), "exclude each other"),
    ("ft-no-out", _RUN, "--out"),
    ("ft-out-is-file", _ft(out="{pb}"), None),
    ("ft-out-under-file", _ft(out="{pb}/run"), "is a file"),
    ("ft-out-read-only", _ft(out="{ro}/run"), "read-only", FS),
    ("ft-out-disk-full", _ft(out="{full}/run"), "disk is full", FS),
    ("ft-out-is-source-dir", _ft(out="{img_dir}"), "source"),
    ("ft-out-not-a-run", _ft("--overwrite", out="{not_a_run}"), "not a tf1tune run"),
    ("ft-train-data-missing", [*_RUN[:9], "--train-data", "{tmp}/none.npz", *_RUN[11:], "--out", "{out}/run"],
     "does not exist"),
    ("ft-four-channels", [*_RUN[:9], "--train-data", "{rgba5_data}", "--val-data", "{rgba5_data}", *_RUN[13:],
                          "--out", "{out}/run"], "channels"),
    ("ft-nan-pixels", [*_RUN[:9], "--train-data", "{nan_data}", "--val-data", "{nan_data}", *_RUN[13:],
                       "--out", "{out}/run"], "the loss is nan"),
    ("ft-rank-three", [*_RUN[:9], "--train-data", "{rank5_data}", "--val-data", "{rank5_data}", *_RUN[13:],
                       "--out", "{out}/run"], "shape"),
    ("ft-no-labels", [*_RUN[:9], "--train-data", "{no_y_data}", "--val-data", "{no_y_data}", *_RUN[13:],
                      "--out", "{out}/run"], "no array"),
    ("ft-labels-too-big", [*_RUN[:9], "--train-data", "{five_class_data}", "--val-data", "{five_class_data}",
                           *_RUN[13:], "--out", "{out}/run"], "num-classes"),
    ("ft-hostile-meta", ["finetune", "--meta", "{hostile_meta}", *_RUN[3:], "--out", "{out}/run"], "WriteFile"),
    ("ft-hostile-frozen", ["finetune", "--frozen", "{hostile_pb}", *_RUN[3:], "--out", "{out}/run"], "WriteFile"),
    ("ft-endpoint-unknown", [*_RUN[:5], "--endpoint", "nope", *_RUN[7:], "--out", "{out}/run"], "nope"),
    ("ft-input-not-image", [*_RUN[:3], "--input", "probs", *_RUN[5:], "--out", "{out}/run"], None),
    ("ft-head-bad", _ft("--head", "bogus(1)"), "bogus"),
    ("ft-checkpoint-missing", _ft("--checkpoint", "{tmp}/none"), None),
    ("ft-unknown-flag", _ft("--bogus-flag", "0.1"), "unrecognized arguments"),
    # ---- finetune: YAML ---------------------------------------------------------------------------------
    *[(f"ft-yaml-{name}", _yaml(name), None) for name in YAMLS],
]


def _write_yamls(folder: str, paths: dict[str, str]) -> None:
    os.makedirs(folder)
    base = {"meta": paths["img_meta"], "input": "input", "endpoint": "features", "num_classes": 2,
            "train_data": paths["img_data"], "val_data": paths["img_data"], "steps": 2, "batch_size": 4,
            "out": os.path.join(paths["out"], "yaml-run")}
    for name, content in {**YAMLS, "bomb": _bomb()}.items():
        if isinstance(content, dict):
            text = yaml.safe_dump({**base, **content}, sort_keys=False, allow_unicode=True)
        else:
            text = content
        with open(os.path.join(folder, f"{name}.yaml"), "wb") as f:
            f.write(text.encode("latin-1") if name == "not_utf8" else text.encode("utf-8"))


def _mount(folder: str, size: str) -> bool:
    os.makedirs(folder, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder],
                          capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def paths(tiny, tmp_path_factory, truncated_digits_module):
    root = str(tmp_path_factory.mktemp("table"))
    p = {"tmp": os.path.join(root, "empty_dir"), "out": os.path.join(root, "out"), "digits": DIGITS,
         "pb": tiny.frozen_binary, "meta": tiny.meta, "v2": tiny.ckpt_v2, "v1": tiny.ckpt_v1,
         "saved_model": tiny.saved_model, "truncated_digits": truncated_digits_module}
    os.makedirs(p["tmp"])
    os.makedirs(p["out"])
    data = open(tiny.frozen_binary, "rb").read()
    for name, content in (("empty", b""), ("garbage", bytes(np.random.default_rng(0).integers(0, 256, 2000,
                                                                                                dtype=np.uint8))),
                          ("truncated_pb", data[: len(data) // 2])):
        p[name] = os.path.join(root, f"{name}.pb")
        with open(p[name], "wb") as f:
            f.write(content)
    p["pb_as_meta"] = os.path.join(root, "graph.meta")
    shutil.copy(tiny.frozen_binary, p["pb_as_meta"])
    p["existing"] = os.path.join(root, "existing.pb")
    shutil.copy(tiny.frozen_binary, p["existing"])
    p["fifo"] = os.path.join(root, "pipe.pb")
    os.mkfifo(p["fifo"])
    no_data = os.path.join(root, "no_data")
    shutil.copytree(os.path.dirname(tiny.ckpt_v2), no_data)
    os.remove(os.path.join(no_data, "model.ckpt.data-00000-of-00001"))
    p["no_data"] = no_data
    outside = os.path.join(root, "state_outside")
    os.makedirs(outside)
    with open(os.path.join(outside, "checkpoint"), "w") as f:
        f.write(f'model_checkpoint_path: "{tiny.ckpt_v2}"\n')
    p["state_outside"] = outside
    other = os.path.join(root, "v2_other")
    _scaled_copy(tiny.ckpt_v2, other, 2.0)
    p["v2_other"] = os.path.join(other, "model.ckpt")
    big = os.path.join(root, "big")
    _scaled_copy(tiny.ckpt_v2, big, 1e6)
    p["big_values"] = os.path.join(big, "model.ckpt")
    p["bad_saver"] = _bad_saver(tiny, os.path.join(root, "bad_saver"))
    img = os.path.join(root, "img")
    p["img_meta"] = hostile_models.write(img, None, os.path.join(root, "unused"))
    p["img_dir"] = img
    p["img_data"] = hostile_models.write_data(os.path.join(root, "img.npz"))
    rng = np.random.default_rng(1)
    nan = rng.uniform(0, 255, (8, 8, 8, 1))
    nan[0, 0, 0, 0] = np.nan
    for name, x, y in (("rgb_data", rng.uniform(0, 255, (8, 8, 8, 3)), np.arange(8) % 2),
                       ("rgba5_data", rng.uniform(0, 255, (8, 8, 8, 5)), np.arange(8) % 2),
                       ("nan_data", nan, np.arange(8) % 2),
                       ("rank5_data", rng.uniform(0, 255, (8, 8, 8, 1, 1)), np.arange(8) % 2),
                       ("five_class_data", rng.uniform(0, 255, (10, 8, 8, 1)), np.arange(10) % 5)):
        p[name] = os.path.join(root, f"{name}.npz")
        np.savez(p[name], x=x.astype(np.float32), y=y)
    p["no_y_data"] = os.path.join(root, "no_y.npz")
    np.savez(p["no_y_data"], x=np.zeros((4, 8, 8, 1), np.float32))
    trace = os.path.join(root, "trace")
    p["hostile_meta"] = hostile_models.write(os.path.join(root, "hostile_meta"), "write_file", trace)
    p["hostile_pb"] = hostile_models.write(os.path.join(root, "hostile_pb"), "write_file", trace, frozen=True)
    p["pyfunc_pb"] = hostile_models.write(os.path.join(root, "pyfunc"), "py_func", trace, frozen=True)
    p["not_a_run"] = os.path.join(root, "not_a_run")
    os.makedirs(p["not_a_run"])
    with open(os.path.join(p["not_a_run"], "precious.txt"), "w") as f:
        f.write("keep me")
    p["yamls"] = os.path.join(root, "yamls")
    _write_yamls(p["yamls"], p)
    p["ro"], p["full"] = os.path.join(root, "ro"), os.path.join(root, "full")
    mounted = []
    if _mount(p["ro"], "64k") and subprocess.run(["mount", "-o", "remount,ro", p["ro"]]).returncode == 0:
        mounted.append(p["ro"])
    if _mount(p["full"], "64k"):
        mounted.append(p["full"])
        with open(os.path.join(p["full"], "keep.pb"), "wb") as f:  # an earlier output a failed write must keep
            f.write(b"previous output")
        fd = os.open(os.path.join(p["full"], "filler"), os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, bytes(4096)):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
    p["mounted"] = "yes" if len(mounted) == 2 else ""
    p["trace"] = trace
    try:
        yield p
    finally:
        for folder in mounted:
            subprocess.run(["umount", "-l", folder], capture_output=True)


@pytest.fixture(scope="module")
def truncated_digits_module(tmp_path_factory):
    import glob

    bad = os.path.join(str(tmp_path_factory.mktemp("trunc")), "truncated_digits")
    shutil.copytree(DIGITS, bad)
    with open(glob.glob(os.path.join(bad, "*.data-00000-of-00001"))[0], "r+b") as f:
        f.truncate(1000)
    return bad


def _scaled_copy(prefix: str, folder: str, factor: float) -> None:
    """A copy of a checkpoint with every float entry multiplied by `factor`."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf.compat.v1.Variable(reader.get_tensor(n) * (factor if reader.get_tensor(n).dtype.kind == "f"
                                                                    else 1), name=n)
                     for n in sorted(reader.get_variable_to_shape_map())]
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver(variables).save(sess, os.path.join(folder, "model.ckpt"), write_meta_graph=False)


def _bad_saver(tiny, folder: str) -> str:
    from tensorflow.core.protobuf import meta_graph_pb2

    shutil.copytree(os.path.dirname(tiny.ckpt_v2), folder)
    meta = meta_graph_pb2.MetaGraphDef()
    path = os.path.join(folder, "model.ckpt.meta")
    with open(path, "rb") as f:
        meta.ParseFromString(f.read())
    meta.saver_def.restore_op_name = "save/gone"
    with open(path, "wb") as f:
        f.write(meta.SerializeToString())
    return path


def _digest(paths: dict[str, str]) -> dict[str, str]:
    """Hashes of every source file the table reads (files, checkpoint files by prefix, and source folders)."""
    import glob

    files = []
    for key in ("pb", "meta", "existing", "img_meta", "img_data", "hostile_meta", "hostile_pb", "empty", "garbage"):
        files.append(paths[key])
    for key in ("v2", "v1", "v2_other", "big_values"):
        files += glob.glob(glob.escape(paths[key]) + "*")
    for key in ("digits", "not_a_run", "saved_model", "no_data", "state_outside", "truncated_digits", "yamls"):
        for root, _, names in os.walk(paths[key]):
            files += [os.path.join(root, n) for n in names]
    found = {}
    for path in files:
        if os.path.isfile(path):
            with open(path, "rb") as f:
                found[path] = hashlib.sha256(f.read()).hexdigest()
    return found


@pytest.fixture(scope="module")
def before(paths):
    return _digest(paths)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(paths, before, case):
    name, argv, expected, *marks = case
    if FS in marks and not paths["mounted"]:
        pytest.skip("needs tmpfs mounts (read-only and full file systems)")
    out = os.path.join(paths["out"], name)
    os.makedirs(out, exist_ok=True)
    filled = [a.format(**{**paths, "out": out}) for a in argv]
    outcome = run_cli(filled, limit=60)
    assert outcome.code == 2, f"{name}: exit {outcome.code}: {outcome.err[-800:]}"
    assert outcome.problem() is None, f"{name}: {outcome.problem()}"
    if expected:
        assert expected in outcome.error_lines[0], outcome.error_lines[0]
    assert not os.path.exists(paths["trace"]), "a hostile op ran"
    if FS in marks:  # nothing half-done: no partial output, the previous output intact, no run directory left
        assert sorted(os.listdir(paths["full"])) == ["filler", "keep.pb"], os.listdir(paths["full"])
        assert open(os.path.join(paths["full"], "keep.pb"), "rb").read() == b"previous output"
        assert os.listdir(paths["ro"]) == []
    assert _digest(paths) == before, "a source was written"


def test_the_table_has_at_least_100_cases():
    assert len(CASES) >= 100
