"""The feature cache: the same trained head as the full graph, used only where exact, keyed so a stale cache never serves."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

import tf1tune
from tf1tune.train.config import make_config
from tf1tune.train.loop import FinetuneResult, run_finetune

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "checkpoints", "digits_cnn")
HEAD = ("DigitsCNN/Logits/Conv2d_1x1/weights", "DigitsCNN/Logits/Conv2d_1x1/biases")


def _run(out: str, **overrides) -> FinetuneResult:
    values = {"net": "digits_cnn", "checkpoint": SOURCE, "num_classes": 2, "train_data": "digits-parity:train",
              "val_data": "digits-parity:val", "steps": 300, "learning_rate": 0.05, "checkpoint_every": 1000,
              "out": out, "overwrite": True}
    values.update(overrides)
    return run_finetune(make_config(**values), progress=False)


def _values(checkpoint: str, names=HEAD) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(checkpoint)
    return {n: reader.get_tensor(n) for n in names}


def test_cached_head_equals_the_full_graph_after_300_steps(tmp_path):
    cached = _run(str(tmp_path / "cached"))
    full = _run(str(tmp_path / "full"), feature_cache=False)
    info = cached.metrics["feature_cache"]
    assert info["used"] and not info["reused"] and info["extraction_seconds"] > 0
    assert info["endpoint"] == "DigitsCNN/global_pool:0" and info["dir"] == str(tmp_path / "cached" / "feature_cache")
    assert cached.metrics["phases"][0]["feature_cache"] and cached.metrics["phases"][0]["epoch_seconds"] > 0
    assert full.metrics["feature_cache"] == {"used": False, "reason": "turned off (--no-feature-cache)"}
    a, b = _values(cached.checkpoint), _values(full.checkpoint)
    for name in HEAD:  # max relative difference <= 1e-3 (reached here: bit-identical)
        assert np.max(np.abs(a[name] - b[name])) <= 1e-3 * np.max(np.abs(b[name])), name
    assert cached.accuracy_before == full.accuracy_before and abs(cached.accuracy_after - full.accuracy_after) < 1e-9


def test_shared_cache_reused_only_while_its_key_holds(tmp_path):
    folder = tmp_path / "digits"
    images, labels, _ = tf1tune.data.digits.task_arrays("digits-parity")
    for i in range(120):
        path = folder / str(labels[i]) / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tf.io.encode_png(images[i].round().astype(np.uint8)).numpy())
    shared = str(tmp_path / "shared")
    kwargs = {"train_data": str(folder), "val_data": None, "steps": 20, "feature_cache_dir": shared}
    first = _run(str(tmp_path / "r1"), **kwargs)
    second = _run(str(tmp_path / "r2"), **kwargs)
    assert not first.metrics["feature_cache"]["reused"] and second.metrics["feature_cache"]["reused"]
    assert second.metrics["feature_cache"]["keys"] == first.metrics["feature_cache"]["keys"]
    np.testing.assert_array_equal(_values(first.checkpoint)[HEAD[0]], _values(second.checkpoint)[HEAD[0]])
    changed = folder / str(labels[0]) / "0.png"
    changed.write_bytes(tf.io.encode_png(np.zeros((8, 8, 1), np.uint8)).numpy())
    os.utime(changed, ns=(1, 1))
    third = _run(str(tmp_path / "r3"), **kwargs)  # one image changed: a new key, computed again
    assert not third.metrics["feature_cache"]["reused"]
    assert set(third.metrics["feature_cache"]["keys"]).isdisjoint(first.metrics["feature_cache"]["keys"])
    # the key holds the values of the variables upstream of the endpoint: a checkpoint whose base is the same
    # (only the head trained) reuses the cache, one whose base moved does not
    same_base = _run(str(tmp_path / "r4"), **kwargs, checkpoint=third.checkpoint)
    assert same_base.metrics["feature_cache"]["reused"]
    moved = _run(str(tmp_path / "r5"), **{**kwargs, "steps": 3}, trainable_scopes=["DigitsCNN/Logits", "DigitsCNN/Conv2d_3"])
    other_base = _run(str(tmp_path / "r6"), **kwargs, checkpoint=moved.checkpoint)
    assert other_base.metrics["feature_cache"]["used"] and not other_base.metrics["feature_cache"]["reused"]


def test_cache_only_where_exact(tmp_path):
    phases = [{"steps": 10, "trainable_scopes": ["DigitsCNN/Logits"]},
              {"steps": 10, "trainable_scopes": ["DigitsCNN/Logits", "DigitsCNN/Conv2d_3"], "learning_rate": 0.005}]
    # a later phase trains Conv2d_3, so its batch norm runs in training mode from step 0: no phase is exact
    two = _run(str(tmp_path / "two"), phases=phases)
    assert [p["feature_cache"] for p in two.metrics["phases"]] == [False, False]
    assert "Conv2d_3/BatchNorm" in two.metrics["feature_cache"]["reason"]
    assert "training mode" in two.metrics["feature_cache"]["reason"]
    # a .meta graph in inference mode: phase 1 (head only) trains from the cache, phase 2 unfreezes the base
    phases = [{"steps": 10, "trainable_scopes": ["finetune_head"]},
              {"steps": 10, "trainable_scopes": ["finetune_head", "DigitsCNN/Conv2d_3"], "learning_rate": 0.005}]
    meta = _run(str(tmp_path / "meta"), net=None, meta=os.path.join(SOURCE, "model.ckpt-1500.meta"),
                input="input:0", endpoint="DigitsCNN/global_pool:0", phases=phases)
    assert [p["feature_cache"] for p in meta.metrics["phases"]] == [True, False]
    assert "Conv2d_3" in meta.metrics["feature_cache"]["reason_later_phases_not_cached"]
    augmented = _run(str(tmp_path / "aug"), steps=10, augment={"pad": 1})
    assert augmented.metrics["feature_cache"] == {
        "used": False, "reason": "augmentation is on (the features would differ on every step)"}


def test_meta_graph_and_frozen_graph_cut_at_an_endpoint_use_the_cache(tmp_path):
    meta = _run(str(tmp_path / "meta"), net=None, meta=os.path.join(SOURCE, "model.ckpt-1500.meta"), input="input:0",
                endpoint="DigitsCNN/global_pool:0", steps=60)
    assert meta.metrics["feature_cache"]["used"] and meta.accuracy_after >= 0.9  # dropout in the head is fine
    handle = tf1tune.load("slim:digits_cnn", num_classes=10, checkpoint=SOURCE)
    with handle.session() as sess, handle.graph.as_default():
        graph_def = tf.compat.v1.graph_util.convert_variables_to_constants(
            sess, handle.graph.as_graph_def(), ["DigitsCNN/Predictions/Softmax"])
    frozen = tmp_path / "digits_frozen.pb"
    frozen.write_bytes(graph_def.SerializeToString())
    run = _run(str(tmp_path / "frozen"), net=None, frozen=str(frozen), input="input:0", checkpoint=None,
               endpoint="DigitsCNN/global_pool:0", steps=60)
    assert run.metrics["feature_cache"]["used"] and run.accuracy_after >= 0.9


def test_each_training_step_is_one_session_run(tmp_path, monkeypatch):
    calls = []
    original = tf.compat.v1.Session.run

    def counting(self, fetches, feed_dict=None, **kwargs):
        calls.append(sorted(t.name for t in (feed_dict or {}) if hasattr(t, "name")))
        return original(self, fetches, feed_dict, **kwargs)

    monkeypatch.setattr(tf.compat.v1.Session, "run", counting)
    result = _run(str(tmp_path / "log"), steps=20, log_every=1, feature_cache=False)
    with_images = [c for c in calls if "input:0" in c]
    steps = [c for c in with_images if "labels:0" in c]
    validation_batches = 2 * -(-result.metrics["validation_size"] // 64)  # before and after
    assert len(steps) == 20 and len(with_images) == 20 + validation_batches  # no second pass for the batch accuracy


def test_undecodable_training_image_skipped_and_counted_in_metrics(tmp_path):
    folder = tmp_path / "data"
    images, labels, _ = tf1tune.data.digits.task_arrays("digits-parity")
    for i in range(60):
        path = folder / str(labels[i]) / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tf.io.encode_png(images[i].round().astype(np.uint8)).numpy())
    broken = folder / "1" / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(tf1tune.DataError, match=r"cannot decode image .*broken\.png"):
        _run(str(tmp_path / "stop"), train_data=str(folder), val_data=None, steps=5, feature_cache=False)
    result = _run(str(tmp_path / "skip"), train_data=str(folder), val_data=None, steps=20, skip_bad_images=True)
    assert result.metrics["skipped_images"] == {"count": 1, "files": [str(broken)]}


@pytest.mark.parametrize("cache", [True, False])
def test_resume_ends_with_the_uninterrupted_head_streamed_or_cached(tmp_path, cache):
    # a head without dropout (the graph's own random ops are not stateless yet), so that resume can be exact
    meta = {"net": None, "meta": os.path.join(SOURCE, "model.ckpt-1500.meta"), "input": "input:0",
            "endpoint": "DigitsCNN/global_pool:0", "head": "global_pool, dense(2)", "steps": 40, "checkpoint_every": 20,
            "feature_cache": cache}
    whole = _run(str(tmp_path / "whole"), **meta)
    out = str(tmp_path / "cut")
    _run(out, **meta)
    for name in os.listdir(out):  # as if killed right after the checkpoint at step 20
        if name.startswith("model.ckpt-40"):
            os.remove(os.path.join(out, name))
    tf.compat.v1.train.update_checkpoint_state(out, os.path.join(out, "model.ckpt-20"))
    resumed = _run(out, **meta, resume=True, overwrite=False)
    if cache:
        assert whole.metrics["feature_cache"]["used"] and resumed.metrics["feature_cache"]["reused"]  # its own cache
    names = [n for n, _ in tf.train.list_variables(whole.checkpoint) if n.startswith("finetune_head/")]
    assert names
    a, b = _values(whole.checkpoint, names), _values(resumed.checkpoint, names)
    for name in names:
        np.testing.assert_array_equal(a[name], b[name])


def test_cli_flags_turn_the_cache_off_and_name_its_directory(tmp_path, capsys):
    from tf1tune.cli import main

    common = ["finetune", "--net", "digits_cnn", "--checkpoint", SOURCE, "--num-classes", "2", "--steps", "5",
              "--train-data", "digits-parity:train", "--val-data", "digits-parity:val", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "off"), "--no-feature-cache"]) == 0
    assert main([*common, "--out", str(tmp_path / "on"), "--feature-cache-dir", str(tmp_path / "shared")]) == 0
    import json

    off = json.loads((tmp_path / "off" / "metrics.json").read_text())["feature_cache"]
    on = json.loads((tmp_path / "on" / "metrics.json").read_text())["feature_cache"]
    assert off == {"used": False, "reason": "turned off (--no-feature-cache)"}
    assert on["used"] and on["dir"] == str(tmp_path / "shared") and os.listdir(tmp_path / "shared")
