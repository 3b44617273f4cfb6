"""A graph is a program: tf1tune scans it before running it, and refuses ops that do more than compute.

Each hostile model (tests/hostile_models.py) has one op that would leave a trace (a file written or deleted);
every command that runs graphs must refuse it with one line naming the op type and node, and leave no trace.
"""

from __future__ import annotations

import glob
import json
import os
import shutil

import pytest
import tensorflow as tf
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import meta_graph_pb2

import tf1tune
from tests import hostile_models
from tf1tune import graph_safety
from tf1tune.cli import main

DIGITS = os.path.join(os.path.dirname(__file__), "..", "checkpoints", "digits_cnn")


def _one_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line]
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("tf1tune: error: "), err
    return err[0]


def _no_trace(trace: str) -> None:
    assert not glob.glob(glob.escape(trace) + "*"), "the graph's op ran"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """{(name, form): (path, trace)} for every hostile op, as .meta + checkpoint and as frozen .pb."""
    root = tmp_path_factory.mktemp("hostile")
    made = {}
    for name in hostile_models.HOSTILE:
        for form in ("meta", "frozen"):
            folder = str(root / f"{name}-{form}")
            trace = os.path.join(str(root), f"trace-{name}-{form}")
            made[name, form] = hostile_models.write(folder, name, trace, frozen=form == "frozen"), trace
    made["clean", "meta"] = hostile_models.write(str(root / "clean"), None, str(root / "none")), str(root / "none")
    return made


@pytest.mark.parametrize("name", sorted(hostile_models.HOSTILE))
@pytest.mark.parametrize("form", ["meta", "frozen"])
def test_freeze_refuses_and_runs_nothing(capsys, hostile, tmp_path, name, form):
    path, trace = hostile[name, form]
    op = hostile_models.HOSTILE[name][0]
    flag = ["--meta", path] if form == "meta" else [path]
    line = _one_error(capsys, ["freeze", *flag, "--outputs", "probs", "--out", str(tmp_path / "f.pb")])
    assert op in line and ("node '" in line)
    _no_trace(trace)
    assert not os.path.exists(tmp_path / "f.pb")


@pytest.mark.parametrize("name", ["write_file", "save_v2", "function_write"])
def test_export_savedmodel_and_python_session_refuse(capsys, hostile, tmp_path, name):
    path, trace = hostile[name, "meta"]
    line = _one_error(capsys, ["export-savedmodel", "--meta", path, "--outputs", "probs", "--out", str(tmp_path / "sm")])
    assert hostile_models.HOSTILE[name][0] in line
    handle = tf1tune.load(path)
    with pytest.raises(graph_safety.UnsafeGraphError, match=hostile_models.HOSTILE[name][0]):
        handle.session()
    _no_trace(trace)


def test_py_func_says_the_python_code_is_not_there(capsys, hostile, tmp_path):
    path, _ = hostile["py_func", "frozen"]
    for extra in ([], ["--allow-ops", "PyFunc"]):
        line = _one_error(capsys, ["freeze", path, "--outputs", "probs", "--out", str(tmp_path / "f.pb"), *extra])
        assert "PyFunc" in line and "evil_python" in line and "Python code that is not there" in line


def test_allow_ops_runs_them_with_a_warning(capsys, hostile, tmp_path):
    path, trace = hostile["write_file", "frozen"]
    assert main(["freeze", path, "--outputs", "probs", "--out", str(tmp_path / "f.pb"), "--allow-ops", "WriteFile"]) == 0
    assert "running WriteFile" in capsys.readouterr().err
    assert os.path.isfile(trace)  # the user allowed it, so it ran
    os.remove(trace)
    handle = tf1tune.load(path, allow_ops="WriteFile")
    with pytest.warns(graph_safety.AllowedOpsWarning):
        handle.session().close()


def test_inspect_reports_risks_and_runs_nothing(capsys, hostile):
    path, trace = hostile["read_file", "meta"]
    assert main(["inspect", path, "--json"]) == 0
    risks = json.loads(capsys.readouterr().out)["risks"]
    assert {(r["op"], r["node"]) for r in risks} == {("ReadFile", "evil_read"), ("WriteFile", "evil_leak")}
    assert all(r["allowable"] and not r["dormant"] for r in risks)
    _no_trace(trace)
    assert main(["inspect", path]) == 0
    assert "Risk: ReadFile (evil_read)" in capsys.readouterr().out


def test_clean_sources_have_no_risks(tiny, hostile, legacy_dir):
    sources = [tiny.meta, tiny.ckpt_v1 + ".meta", tiny.frozen_binary, tiny.frozen_text, tiny.saved_model, DIGITS,
               hostile["clean", "meta"][0]]
    sources += glob.glob(os.path.join(legacy_dir, "*", "*.meta")) + glob.glob(os.path.join(legacy_dir, "*", "*.pb"))
    for source in sources:
        handle = tf1tune.load(source)
        assert [r for r in handle.risks if not r.dormant] == [], source
        handle.check_safe()


def test_input_pipeline_readers_are_dormant(legacy_dir):
    """PNet's TFRecord reader runs only from its queue runners, which tf1tune never starts: reported, not refused."""
    handle = tf1tune.load(os.path.join(legacy_dir, "mtcnn-pnet-tf1.8", "PNet-18.meta"))
    assert {r.op for r in handle.risks} == {"TFRecordReaderV2", "ReaderReadV2"}
    assert all(r.dormant for r in handle.risks)
    handle.session().close()


def _clean_meta(hostile) -> meta_graph_pb2.MetaGraphDef:
    meta = meta_graph_pb2.MetaGraphDef()
    with open(hostile["clean", "meta"][0], "rb") as f:
        meta.ParseFromString(f.read())
    return meta


def _write_meta(meta: meta_graph_pb2.MetaGraphDef, hostile, folder) -> str:
    """`meta` saved next to a copy of the clean model's checkpoint."""
    source = os.path.dirname(hostile["clean", "meta"][0])
    shutil.copytree(source, folder)
    path = os.path.join(str(folder), "model.ckpt.meta")
    with open(path, "wb") as f:
        f.write(meta.SerializeToString())
    return path


def test_saver_restoring_from_a_path_the_graph_chose_is_refused(hostile, tmp_path):
    """The .meta's own RestoreV2 reads a checkpoint in another folder: that restore op is a risk."""
    meta = _clean_meta(hostile)
    node = meta.graph_def.node.add()
    node.CopyFrom(next(n for n in meta.graph_def.node if n.name == "save/RestoreV2/tensor_names"))
    node.name = "elsewhere"
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto("/somewhere/else/model.ckpt"))
    restore = next(n for n in meta.graph_def.node if n.name == "save/RestoreV2")
    restore.input[0] = "elsewhere"
    handle = tf1tune.load(_write_meta(meta, hostile, tmp_path / "m"))
    assert [(r.op, r.node) for r in handle.risks] == [("RestoreV2", "save/RestoreV2")]
    with pytest.raises(graph_safety.UnsafeGraphError, match="RestoreV2"):
        handle.session()


def test_saver_def_naming_missing_ops_is_one_line(capsys, hostile, tmp_path):
    meta = _clean_meta(hostile)
    meta.saver_def.restore_op_name = "save/no_such_op"
    path = _write_meta(meta, hostile, tmp_path / "m")
    for argv in (["inspect", path], ["freeze", "--meta", path, "--outputs", "probs", "--out", str(tmp_path / "f.pb")]):
        assert "saver_def names 'save/no_such_op'" in _one_error(capsys, argv)


def test_debug_ops_with_urls_are_refused(capsys, hostile, tmp_path):
    graph_def = graph_pb2.GraphDef()
    with open(hostile["write_file", "frozen"][0], "rb") as f:
        graph_def.ParseFromString(f.read())
    graph_def = _without(graph_def, "evil_write")
    node = next(n for n in graph_def.node if n.name == "features")
    node.op = "DebugIdentity"
    node.attr["debug_urls"].list.s.append(f"file://{tmp_path}/dump".encode())
    path = tmp_path / "debug.pb"
    path.write_bytes(graph_def.SerializeToString())
    line = _one_error(capsys, ["freeze", str(path), "--outputs", "probs", "--out", str(tmp_path / "f.pb")])
    assert "DebugIdentity (node 'features': sends tensors to debug URLs)" in line
    assert not os.path.exists(tmp_path / "dump")


def _without(graph_def: graph_pb2.GraphDef, name: str) -> graph_pb2.GraphDef:
    kept = graph_pb2.GraphDef()
    kept.CopyFrom(graph_def)
    del kept.node[:]
    for node in graph_def.node:
        if node.name != name:
            copy = kept.node.add()
            copy.CopyFrom(node)
            del copy.input[:]
            copy.input.extend(i for i in node.input if i.lstrip("^") != name)
    return kept


def test_merge_checkpoints_that_would_delete_another_checkpoint_is_refused(capsys, tiny, tmp_path):
    victim = tmp_path / "victim"
    shutil.copytree(os.path.dirname(tiny.ckpt_v2), victim)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 2], name="x")
        merge = tf.raw_ops.MergeV2Checkpoints(checkpoint_prefixes=[str(victim / "model.ckpt")],
                                              destination_prefix=str(tmp_path / "merged"), delete_old_dirs=True,
                                              name="evil_merge")
        with tf.control_dependencies([merge]):
            tf.identity(x * 2.0, name="y")
    path = tmp_path / "merge.pb"
    path.write_bytes(graph.as_graph_def().SerializeToString())
    line = _one_error(capsys, ["freeze", str(path), "--outputs", "y", "--out", str(tmp_path / "f.pb")])
    assert "MergeV2Checkpoints (node 'evil_merge'" in line
    assert os.path.isfile(victim / "model.ckpt.index") and not glob.glob(str(tmp_path / "merged*"))


@pytest.mark.parametrize("kind", ["const", "fill", "variable"])
def test_huge_memory_claims_are_refused_before_allocation(capsys, tmp_path, kind):
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 2], name="x")
        if kind == "const":
            big = tf.constant(1.0, shape=[2, 2], name="big")
        elif kind == "fill":
            big = tf.fill(tf.constant([2, 2], tf.int64, name="dims"), 1.0, name="big")
        else:
            big = tf.compat.v1.placeholder_with_default(tf.zeros([2, 2]), [2, 2], name="big")
        tf.identity(tf.matmul(x, big), name="y")
    graph_def = graph.as_graph_def()
    for node in graph_def.node:
        if kind == "const" and node.name == "big":
            node.attr["value"].tensor.tensor_shape.dim[1].size = 5 * 10 ** 13
        if kind == "fill" and node.name == "dims":
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto([2, 5 * 10 ** 13], dtype=tf.int64))
    if kind == "variable":  # a variable node claiming 400 TB
        node = graph_def.node.add()
        node.name, node.op = "huge_var", "VariableV2"
        node.attr["dtype"].type = tf.float32.as_datatype_enum
        node.attr["shape"].shape.dim.add().size = 2
        node.attr["shape"].shape.dim.add().size = 5 * 10 ** 13
    path = tmp_path / "big.pb"
    path.write_bytes(graph_def.SerializeToString())
    line = _one_error(capsys, ["freeze", str(path), "--outputs", "y", "--out", str(tmp_path / "f.pb"),
                               "--allow-ops", "Const,Fill,VariableV2"])
    assert "claims 363.8 TB" in line and "damaged or hostile" in line
    assert main(["inspect", str(path), "--json"]) == 0
    risks = json.loads(capsys.readouterr().out)["risks"]
    assert risks and not risks[0]["allowable"]


def test_state_file_pointing_outside_its_folder(tiny, tmp_path):
    """The folder's own checkpoint is used (with a warning), never the other folder's weights."""
    other = tmp_path / "other"
    shutil.copytree(os.path.dirname(tiny.ckpt_v2), other)
    mine = tmp_path / "mine"
    shutil.copytree(os.path.dirname(tiny.ckpt_v2), mine)
    os.rename(mine / "model.ckpt.index", mine / "own.ckpt.index")
    os.rename(mine / "model.ckpt.data-00000-of-00001", mine / "own.ckpt.data-00000-of-00001")
    (mine / "checkpoint").write_text(f'model_checkpoint_path: "{other}/model.ckpt"\n')
    with pytest.warns(tf1tune.checkpoints.CheckpointWarning, match="outside this directory"):
        assert tf1tune.resolve_checkpoint(str(mine)) == str(mine / "own.ckpt")
    for name in ("own.ckpt.index", "own.ckpt.data-00000-of-00001"):
        os.remove(mine / name)
    with pytest.raises(tf1tune.SourceNotFoundError, match="outside the directory"):
        tf1tune.resolve_checkpoint(str(mine))
