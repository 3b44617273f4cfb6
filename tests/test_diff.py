"""`tf1tune diff`: counts and sizes of changes between checkpoints built from known values."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tf1tune.cli import main
from tf1tune.diff import diff_checkpoints
from tf1tune.errors import BadSourceError

DIGITS = os.path.join(os.path.dirname(__file__), "..", "checkpoints", "digits_cnn")


def _save(prefix: str, values: dict[str, np.ndarray]) -> str:
    with tf.Graph().as_default():
        variables = {n: tf.compat.v1.get_variable(n, initializer=v) for n, v in values.items()}
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            return tf.compat.v1.train.Saver(variables).save(sess, prefix)


def test_diff_counts_changed_elements_and_largest_change(tmp_path, capsys):
    base = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(3, np.float32),
            "step": np.array(5, np.int64), "gone": np.ones(2, np.float32)}
    moved = {k: v.copy() for k, v in base.items() if k != "gone"}
    moved["w"][0, 1] += 0.5
    moved["w"][1, 2] -= 2.0
    moved["step"] = np.array(7, np.int64)
    moved["new"] = np.ones(1, np.float32)
    a, b = _save(str(tmp_path / "a"), base), _save(str(tmp_path / "b"), moved)
    result = diff_checkpoints(a, b)
    assert result.changed == {"w": {"count": 2, "max_abs": 2.0}, "step": {"count": 1, "max_abs": 2.0}}
    assert result.unchanged == ["b"] and result.only_in_a == ["gone"] and result.only_in_b == ["new"]
    assert main(["diff", a, b, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"changed", "unchanged", "only_in_a", "only_in_b"} <= set(data) and data["changed"]["w"]["count"] == 2


def test_tiny_float_changes_and_signed_zero_are_seen(tmp_path):
    x = np.array([1.0, 0.0], np.float32)
    y = np.array([np.nextafter(np.float32(1.0), np.float32(2.0)), -0.0], np.float32)
    result = diff_checkpoints(_save(str(tmp_path / "a"), {"v": x}), _save(str(tmp_path / "b"), {"v": y}))
    assert result.changed["v"]["count"] == 2  # bit-for-bit, not approximately


def test_same_checkpoint_is_all_unchanged(tmp_path):
    a = _save(str(tmp_path / "a"), {"v": np.ones(4, np.float32)})
    assert diff_checkpoints(a, a).changed == {}


def test_truncated_data_file_is_one_line_error(truncated_digits, capsys):
    bad = truncated_digits
    with pytest.raises(BadSourceError, match=r"cannot be read \(.*\): the data file may be truncated"):
        diff_checkpoints(bad, DIGITS)
    assert main(["diff", bad, DIGITS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tf1tune: error: checkpoint ") and "truncated" in err[0], err


def _strict_json(text: str):
    """Parse as strict JSON: NaN, Infinity and -Infinity are not JSON and fail the test."""
    def refuse(name: str):
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.complex64, np.int8, np.int32, np.int64,
                                   np.uint8, np.bool_, "bfloat16", "string"])
def test_scalars_and_tensors_of_every_dtype_compare(tmp_path, dtype):
    # Adam's beta1_power is a float scalar: every Adam-trained checkpoint has one that differs
    if dtype == "string":
        base, moved = {"s": np.array(b"abc"), "t": np.array([b"x", b"y"])}, {"s": np.array(b"abd"), "t": np.array([b"x", b"z"])}
    elif dtype == "bfloat16":
        cast = tf.bfloat16.as_numpy_dtype
        base = {"s": np.array(0.5, cast), "t": np.array([1.0, 2.0], cast)}
        moved = {"s": np.array(0.25, cast), "t": np.array([1.0, 3.0], cast)}
    else:
        base = {"s": np.array(1, dtype), "t": np.array([1, 0], dtype)}
        moved = {"s": np.array(0, dtype), "t": np.array([1, 1], dtype)}
    base["same"] = moved["same"] = base["s"].copy()
    a, b = _save(str(tmp_path / "a"), base), _save(str(tmp_path / "b"), moved)
    result = diff_checkpoints(a, b)
    assert result.changed["s"]["count"] == 1 and result.changed["t"]["count"] == 1 and result.unchanged == ["same"]
    if dtype not in ("string",):
        assert result.changed["s"]["max_abs"] > 0 and result.changed["t"]["max_abs"] > 0
    assert _strict_json(result.to_json())["changed"]["s"]["count"] == 1


def test_json_is_strict_and_reshaped_tensors_have_one_place(tmp_path, capsys):
    base = {"head/w": np.zeros((3, 10), np.float32), "cast": np.zeros(2, np.float32),
            "blown": np.ones(2, np.float32), "nan": np.ones(2, np.float32)}
    moved = {"head/w": np.zeros((3, 2), np.float32), "cast": np.zeros(2, np.float16),
             "blown": np.array([1.0, np.inf], np.float32), "nan": np.array([np.nan, 1.0], np.float32)}
    a, b = _save(str(tmp_path / "a"), base), _save(str(tmp_path / "b"), moved)
    assert main(["diff", a, b, "--json"]) == 0
    data = _strict_json(capsys.readouterr().out)
    assert set(data) == {"a", "b", "changed", "unchanged", "reshaped", "only_in_a", "only_in_b"}
    assert data["reshaped"] == {"head/w": {"shape_a": [3, 10], "shape_b": [3, 2], "dtype_a": "float32", "dtype_b": "float32"},
                                "cast": {"shape_a": [2], "shape_b": [2], "dtype_a": "float32", "dtype_b": "float16"}}
    assert data["changed"] == {"blown": {"count": 1, "max_abs": None}, "nan": {"count": 1, "max_abs": None}}
    assert main(["diff", a, b]) == 0
    text = capsys.readouterr().out
    assert "reshaped   head/w" in text and "(3, 10) -> (3, 2)" in text and "float32 -> float16" in text
    assert "2 changed, 0 bit-identical, 2 reshaped" in text


def test_every_json_command_prints_strict_json(tiny, capsys):
    for argv in (["nets", "--json"], ["inspect", tiny.frozen_binary, "--json"], ["inspect", tiny.meta, "--json"],
                 ["inspect", DIGITS, "--json"], ["inspect", tiny.meta, "--checkpoint", tiny.ckpt_v2, "--json"]):
        assert main(argv) == 0, argv
        _strict_json(capsys.readouterr().out)
