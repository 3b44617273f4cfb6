"""`tf1tune inspect`: JSON keys and values for every source kind."""

from __future__ import annotations

import json

import pytest

from tf1tune.cli import main

KEYS = {"kind", "variables", "inputs", "outputs", "ops", "num_params", "tensorflow_version"}


def _inspect_json(capsys, source: str, *extra: str) -> dict:
    assert main(["inspect", source, "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("which,kind", [("ckpt_v2", "checkpoint"), ("meta", "meta"), ("frozen_binary", "frozen"),
                                        ("frozen_text", "frozen"), ("saved_model", "saved_model")])
def test_json_keys_for_each_kind(capsys, tiny, which, kind):
    summary = _inspect_json(capsys, getattr(tiny, which))
    assert KEYS <= set(summary) and summary["kind"] == kind
    for t in summary["inputs"] + summary["outputs"]:
        assert set(t) >= {"name", "shape", "dtype"}


def test_checkpoint_variables_and_params(capsys, tiny):
    summary = _inspect_json(capsys, tiny.ckpt_v2)
    by_name = {v["name"]: v for v in summary["variables"]}
    assert by_name["hidden/kernel"] == {"name": "hidden/kernel", "shape": [4, 3], "dtype": "float32", "trainable": True}
    assert by_name["hidden/kernel/Momentum"]["trainable"] is False
    assert summary["num_params"] == sum(
        __import__("math").prod(v["shape"]) for v in summary["variables"])


def test_meta_inputs_outputs_ops(capsys, tiny):
    summary = _inspect_json(capsys, tiny.meta)
    assert {"name": "x:0", "shape": [None, 4], "dtype": "float32"} in summary["inputs"]
    assert "probs:0" in [t["name"] for t in summary["outputs"]]
    assert summary["ops"]["MatMul"] >= 2
    assert summary["tensorflow_version"]


def test_slim_source(capsys):
    summary = _inspect_json(capsys, "slim:digits_cnn", "--num-classes", "3")
    assert summary["kind"] == "slim"
    assert summary["inputs"][0]["shape"] == [None, 8, 8, 1]
    logits = [v for v in summary["variables"] if v["name"].startswith("DigitsCNN/Logits") and v["name"].endswith("weights")]
    assert logits and logits[0]["shape"][-1] == 3


def test_human_output_has_summary_lines(capsys, tiny):
    assert main(["inspect", tiny.meta]) == 0
    out = capsys.readouterr().out
    assert "Total params:" in out and "Trainable params:" in out and "hidden/kernel" in out and "Ops (" in out
