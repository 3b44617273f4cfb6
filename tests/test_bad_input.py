"""Bad input: one clear error line, exit code 2, no traceback; and the repairs old files need."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import meta_graph_pb2

import tf1tune
from tf1tune.cli import main
from tf1tune.errors import GraphRepairWarning

DIGITS = os.path.join(os.path.dirname(__file__), "..", "checkpoints", "digits_cnn")


def _cli_error(capsys, *argv: str) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("tf1tune: error: "), err
    return err[0]


def test_missing_path(capsys, tmp_path):
    assert "does not exist" in _cli_error(capsys, "inspect", str(tmp_path / "nope.meta"))


def test_truncated_pb(capsys, tiny, tmp_path):
    data = open(tiny.frozen_binary, "rb").read()
    bad = tmp_path / "truncated.pb"
    bad.write_bytes(data[: len(data) // 2])
    assert "not a valid GraphDef" in _cli_error(capsys, "inspect", str(bad))


def test_garbage_pb(capsys, tmp_path):
    bad = tmp_path / "garbage.pb"
    bad.write_bytes(os.urandom(2000))
    assert "not a valid GraphDef" in _cli_error(capsys, "inspect", str(bad))


def test_index_without_data(capsys, tiny, tmp_path):
    d = tmp_path / "ck"
    shutil.copytree(os.path.dirname(tiny.ckpt_v2), d)
    os.remove(d / "model.ckpt.data-00000-of-00001")
    msg = _cli_error(capsys, "inspect", str(d / "model.ckpt"))
    assert "no data file" in msg and "copy the .data-*" in msg


def test_directory_without_checkpoint(capsys, tmp_path):
    assert "no checkpoint in directory" in _cli_error(capsys, "inspect", str(tmp_path))


def test_unknown_net(capsys):
    assert "closest: resnet_v1_50" in _cli_error(capsys, "inspect", "slim:resnet_v1_05")


def test_unknown_ops_listed_with_their_nodes(tiny, tmp_path):
    graph_def = graph_pb2.GraphDef()
    graph_def.ParseFromString(open(tiny.frozen_binary, "rb").read())
    node = graph_def.node.add(name="custom_a", op="MyCustomOp")
    node.input.append("probs")
    graph_def.node.add(name="custom_b", op="MyCustomOp")
    path = tmp_path / "custom.pb"
    path.write_bytes(graph_def.SerializeToString())
    with pytest.raises(tf1tune.UnknownOpsError, match=r"MyCustomOp \(used by custom_a, custom_b\)"):
        tf1tune.load(str(path))


def test_invalid_version_string_is_repaired_with_one_warning(tiny, tmp_path):
    meta = meta_graph_pb2.MetaGraphDef()
    meta.ParseFromString(open(tiny.meta, "rb").read())
    meta.meta_info_def.tensorflow_version = "0.12.head"
    path = tmp_path / "old.meta"
    path.write_bytes(meta.SerializeToString())
    with pytest.warns(GraphRepairWarning, match="'0.12.head' is not a valid version string") as record:
        handle = tf1tune.load_meta(str(path), checkpoint=tiny.ckpt_v2)
    assert len([w for w in record if issubclass(w.category, GraphRepairWarning)]) == 1
    assert handle.tensorflow_version == "0.12.head"


def test_cli_subprocess_has_no_traceback_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tf1tune", "inspect", str(tmp_path / "missing.pb")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "Traceback" not in proc.stderr


def test_inconsistent_output_shapes_are_stripped_with_a_warning(tiny, tmp_path):
    from tensorflow.core.framework import tensor_shape_pb2

    meta = meta_graph_pb2.MetaGraphDef()
    meta.ParseFromString(open(tiny.meta, "rb").read())
    wrong = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=9)] * 3)
    for node in meta.graph_def.node:
        if node.name in ("x", "MatMul"):
            node.attr["_output_shapes"].list.shape[0].CopyFrom(wrong)
    path = tmp_path / "bad_shapes.meta"
    path.write_bytes(meta.SerializeToString())
    with pytest.warns(GraphRepairWarning, match="removed inconsistent _output_shapes"):
        handle = tf1tune.load_meta(str(path), checkpoint=tiny.ckpt_v2)
    assert handle.tensor("x:0").shape.as_list() == [None, 4]


def test_options_that_do_not_apply_and_impossible_input_sizes(capsys, tiny):
    with pytest.raises(tf1tune.Tf1tuneError, match="option 'checkpoint' does not apply to a frozen source"):
        tf1tune.load(tiny.frozen_binary, checkpoint=tiny.ckpt_v2)
    assert "cannot be built on inputs of shape [None, 1, 1, 1]" in _cli_error(
        capsys, "inspect", "slim:digits_cnn", "--input-size", "1", "1")
    assert "input size height must be from 1 to 8,192, got 0" in _cli_error(
        capsys, "inspect", "slim:digits_cnn", "--input-size", "0", "0")


def test_truncated_checkpoint_data_is_one_line_error(capsys, tmp_path, truncated_digits):
    bad = truncated_digits
    message = _cli_error(capsys, "freeze", bad, "--inputs", "input", "--outputs", "DigitsCNN/Predictions/Softmax",
                         "--out", str(tmp_path / "x.pb"))
    assert "cannot be read" in message and "the data file may be truncated" in message
    assert not (tmp_path / "x.pb").exists()
    message = _cli_error(capsys, "diff", bad, DIGITS)
    assert "cannot be read" in message and "the data file may be truncated" in message
