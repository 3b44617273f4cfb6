"""Checkpoint surgery: rename/drop, convert, merge; results restore bit-identically, sources stay untouched."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import tensorflow as tf

import tf1tune
from tf1tune.checkpoints import checkpoint_values, resolve_checkpoint
from tf1tune.cli import main
from tf1tune.errors import SurgeryError
from tf1tune.surgery import convert_checkpoint, merge_checkpoints, rename_checkpoint

DIGITS = os.path.join(os.path.dirname(__file__), "..", "checkpoints", "digits_cnn")


def _write(prefix: str, values: dict[str, np.ndarray]) -> str:
    """A V2 checkpoint holding exactly `values`, written with plain TF."""
    graph = tf.Graph()
    with graph.as_default():
        var_list = {n: tf.compat.v1.Variable(v, name=f"v{i}") for i, (n, v) in enumerate(values.items())}
        saver = tf.compat.v1.train.Saver(var_list=var_list)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            return saver.save(sess, prefix, write_meta_graph=False)


def _snapshot(directory: str) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file in `directory`."""
    out = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        with open(path, "rb") as f:
            out[name] = (hashlib.sha256(f.read()).hexdigest(), os.stat(path).st_mtime_ns)
    return out


def _assert_bit_identical(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        assert a[name].tobytes() == b[name].tobytes(), name


def test_rename_scope_restores_into_net_built_under_new_scope(tmp_path):
    source = resolve_checkpoint(DIGITS)
    before = _snapshot(DIGITS)
    out = str(tmp_path / "out" / "model.ckpt")
    report = rename_checkpoint(DIGITS, out, {"DigitsCNN": "encoder/DigitsCNN"}, drop_optimizer_state=True)

    src = checkpoint_values(source)
    new = checkpoint_values(out)
    assert "global_step" in report.dropped and not any(n.endswith("/Momentum") for n in new)
    assert all(n.startswith("encoder/DigitsCNN/") for n in new)
    assert report.entries == len(new) == len([n for n in src if not n.endswith("/Momentum")]) - 1
    graph = tf.Graph()
    with graph.as_default():
        images = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 1])
        with tf.compat.v1.variable_scope("encoder"):
            tf1tune.build_net("digits_cnn", images, num_classes=10)
        variables = tf.compat.v1.global_variables()
        assert sorted(v.op.name for v in variables) == sorted(new)
        saver = tf.compat.v1.train.Saver(var_list=variables)
        with tf.compat.v1.Session(graph=graph) as sess:
            saver.restore(sess, out)
            restored = dict(zip([v.op.name for v in variables], sess.run(variables)))
    expected = {"encoder/" + n: v for n, v in src.items() if "encoder/" + n in restored}
    _assert_bit_identical(restored, expected)
    with open(tmp_path / "out" / "checkpoint") as f:
        assert f.read().startswith('model_checkpoint_path: "model.ckpt"\n')  # relative
    assert sorted(os.listdir(tmp_path / "out")) == ["checkpoint", "model.ckpt.data-00000-of-00001",
                                                    "model.ckpt.index"]  # no temporary directory left
    assert _snapshot(DIGITS) == before


def test_scopes_match_at_boundaries_longest_map_wins(tmp_path):
    values = {"logits/w": np.float32([1, 2]), "logits_new/w": np.float32([3]), "logits/aux/w": np.float32([4]),
              "body/w": np.arange(6, dtype=np.float32).reshape(2, 3), "drop/me": np.int64(7)}
    src = _write(str(tmp_path / "src" / "model.ckpt"), values)
    out = str(tmp_path / "out" / "model.ckpt")
    report = rename_checkpoint(src, out, [("logits", "head"), ("logits/aux", "aux"), ("body", "")], drop=["drop"])
    new = checkpoint_values(out)
    assert sorted(new) == ["aux/w", "head/w", "logits_new/w", "w"]
    assert report.dropped == ["drop/me"]
    assert ("logits/w", "head/w") in report.renamed and ("logits/aux/w", "aux/w") in report.renamed
    _assert_bit_identical({"head/w": new["head/w"], "w": new["w"]}, {"head/w": values["logits/w"],
                                                                     "w": values["body/w"]})


def test_mtcnn_drop_optimizer_state_restores_into_its_graph(tmp_path, legacy_dir, capsys):
    folder = os.path.join(legacy_dir, "mtcnn-pnet-tf1.8")
    before = _snapshot(folder)
    source = os.path.join(folder, "PNet-18")
    out = str(tmp_path / "slim" / "PNet")
    assert main(["rename", source, "--drop-optimizer-state", "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "dropped 15 optimizer slots and the global step Variable" in printed

    src = checkpoint_values(source)
    new = checkpoint_values(out)
    assert sorted(new) == sorted(n for n in src if not n.endswith("/Momentum") and n != "Variable")
    handle = tf1tune.load_meta(os.path.join(folder, "PNet-18.meta"), checkpoint=out)
    with handle.graph.as_default():
        variables = tf.compat.v1.global_variables()
        present = [v for v in variables if v.op.name in new]
        rest = [v for v in variables if v.op.name not in new]
        assert {v.op.name for v in rest} >= {"Variable", "conv1/weights/Momentum"}
        saver = tf.compat.v1.train.Saver(var_list=present)
        with tf.compat.v1.Session(graph=handle.graph) as sess:
            saver.restore(sess, handle.checkpoint)
            sess.run(tf.compat.v1.variables_initializer(rest))
            restored = dict(zip([v.op.name for v in present], sess.run(present)))
            assert sess.run(tf.compat.v1.report_uninitialized_variables()).size == 0
    _assert_bit_identical(restored, {n: src[n] for n in new})
    assert _snapshot(folder) == before


def test_convert_v1_to_v2_keeps_values(tmp_path, legacy_dir, tiny):
    folder = os.path.join(legacy_dir, "half_plus_two-v1-single-file")
    before = _snapshot(folder)
    source = os.path.join(folder, "export")
    out = str(tmp_path / "v2" / "half")
    report = convert_checkpoint(source, out)
    assert report.casts == [] and os.path.isfile(out + ".index")
    _assert_bit_identical(checkpoint_values(out), checkpoint_values(source))
    assert _snapshot(folder) == before

    sharded = resolve_checkpoint(tiny.ckpt_v1_sharded)
    convert_checkpoint(tiny.ckpt_v1_sharded, str(tmp_path / "v2" / "tiny"))
    _assert_bit_identical(checkpoint_values(str(tmp_path / "v2" / "tiny")), checkpoint_values(sharded))


def test_float16_round_trip_reports_loss_and_overflow(tmp_path):
    w = np.float32([1 / 3, 1e-3, -2.5, 1e-9])
    src = _write(str(tmp_path / "src" / "m"), {"w": w, "step": np.int64(5)})
    half = str(tmp_path / "half" / "m")
    report = convert_checkpoint(src, half, dtype="float16")
    (loss,) = report.casts
    w16 = w.astype(np.float16)
    err = np.abs(w16.astype(np.float64) - w.astype(np.float64))
    assert loss.max_abs_error == pytest.approx(err.max()) and loss.max_abs_error > 0
    assert loss.max_rel_error == 1.0 and loss.underflowed == 1 and loss.overflowed == 0  # 1e-9 -> 0
    values = checkpoint_values(half)
    assert values["w"].dtype == np.float16 and values["step"].dtype == np.int64  # ints are not cast
    back = str(tmp_path / "back" / "m")
    report = convert_checkpoint(half, back, dtype="float32")
    assert report.casts[0].max_abs_error == 0.0  # widening is exact
    assert checkpoint_values(back)["w"].tobytes() == w16.astype(np.float32).tobytes()
    assert any("float32 -> float16" in line for line in convert_checkpoint(src, str(tmp_path / "h2" / "m"),
                                                                           "float16").summary_lines())

    big = _write(str(tmp_path / "big" / "m"), {"w": np.float32([1e6, 1.0])})
    with pytest.raises(SurgeryError, match="1 finite values overflow to inf in float16.*--allow-overflow"):
        convert_checkpoint(big, str(tmp_path / "no" / "m"), dtype="float16")
    assert not (tmp_path / "no").exists()
    report = convert_checkpoint(big, str(tmp_path / "yes" / "m"), dtype="float16", allow_overflow=True)
    assert report.casts[0].overflowed == 1


def test_merge_union_conflict_and_prefer(tmp_path):
    a = _write(str(tmp_path / "a" / "m"), {"a": np.float32([1]), "shared": np.float32([5])})
    b = _write(str(tmp_path / "b" / "m"), {"b": np.int32([2]), "shared": np.float32([5])})
    c = _write(str(tmp_path / "c" / "m"), {"a": np.float32([9]), "shared": np.float32([6])})
    merge_checkpoints([a, b], str(tmp_path / "ab" / "m"))
    assert sorted(checkpoint_values(str(tmp_path / "ab" / "m"))) == ["a", "b", "shared"]

    with pytest.raises(SurgeryError, match=r"2 entries differ between the inputs: a, shared; pass --prefer"):
        merge_checkpoints([a, c], str(tmp_path / "ac" / "m"))
    assert not (tmp_path / "ac").exists()
    report = merge_checkpoints([a, c], str(tmp_path / "ac" / "m"), prefer=1)
    assert report.resolved == ["a", "shared"]
    values = checkpoint_values(str(tmp_path / "ac" / "m"))
    assert values["a"][0] == 9 and values["shared"][0] == 6
    with pytest.raises(SurgeryError, match="--prefer 2 is not an input position"):
        merge_checkpoints([a, c], str(tmp_path / "x" / "m"), prefer=2)
    assert main(["merge", a, c, "--prefer", c, "--out", str(tmp_path / "cli" / "m")]) == 0
    assert checkpoint_values(str(tmp_path / "cli" / "m"))["a"][0] == 9
    assert main(["merge", a, c, "--out", str(tmp_path / "cli2" / "m")]) == 2
    assert not (tmp_path / "cli2").exists()


def test_bad_map_and_collision_fail_before_writing(tmp_path):
    src = _write(str(tmp_path / "src" / "m"), {"net/a/w": np.float32([1]), "net/b/w": np.float32([2]),
                                               "net/logits_new/w": np.float32([3])})
    before = _snapshot(str(tmp_path / "src"))
    out = str(tmp_path / "out" / "m")
    with pytest.raises(SurgeryError, match=r"--map net/logits=head matches no checkpoint entry"):
        rename_checkpoint(src, out, {"net/logits": "head"})
    with pytest.raises(SurgeryError, match=r"--drop nope matches no checkpoint entry"):
        rename_checkpoint(src, out, drop=["nope"])
    with pytest.raises(SurgeryError, match=r"1 names would each be given to several entries \(net/a/w and net/b/w -> net/b/w\)"):
        rename_checkpoint(src, out, {"net/a": "net/b"})
    with pytest.raises(SurgeryError, match="is not a scope name"):
        rename_checkpoint(src, out, {"net/": "x"})
    assert not (tmp_path / "out").exists()
    assert _snapshot(str(tmp_path / "src")) == before


def test_output_checks_and_overwrite(tmp_path, capsys):
    src = _write(str(tmp_path / "src" / "m"), {"net/w": np.float32([1])})
    with pytest.raises(SurgeryError, match="is the source checkpoint"):
        convert_checkpoint(src, src, overwrite=True)
    with pytest.raises(SurgeryError, match="is a directory; give a checkpoint prefix in it"):
        convert_checkpoint(src, str(tmp_path / "new") + "/")
    out = str(tmp_path / "out" / "m")
    convert_checkpoint(src, out)
    assert main(["rename", src, "--map", "net=body", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tf1tune: error: a checkpoint exists at") and "--overwrite" in err
    assert err.count("\n") == 1
    assert main(["rename", src, "--map", "net=body", "--out", out, "--overwrite"]) == 0
    assert sorted(checkpoint_values(out)) == ["body/w"]
    assert main(["merge", src, out, "--out", str(tmp_path / "mm" / "m")]) == 0
    assert "wrote" in capsys.readouterr().out


def test_state_file_and_writing_next_to_the_source(tmp_path):
    values = {"net/w": np.float32([1, 2]), "net/name": np.array(b"pnet", dtype=object), "other/b": np.int32(3)}
    src = _write(str(tmp_path / "src" / "m"), values)
    out_dir = tmp_path / "out"
    rename_checkpoint(src, str(out_dir / "a"), {"net": "x"})
    rename_checkpoint(src, str(out_dir / "b"), drop=["other"])
    state = tf.train.get_checkpoint_state(str(out_dir))
    assert state.model_checkpoint_path.endswith("b") and [os.path.basename(p) for p in
                                                          state.all_model_checkpoint_paths] == ["a", "b"]
    assert checkpoint_values(str(out_dir / "a"))["x/name"] == b"pnet"  # strings survive

    before = _snapshot(str(tmp_path / "src"))
    with pytest.warns(UserWarning, match="state file is left as it is"):
        rename_checkpoint(src, str(tmp_path / "src" / "renamed"), {"net": "y"})
    after = _snapshot(str(tmp_path / "src"))
    assert {k: after[k] for k in before} == before
    with pytest.raises(SurgeryError, match="--map other=z matches only entries that are dropped"):
        rename_checkpoint(src, str(tmp_path / "n" / "m"), {"other": "z"}, drop=["other"])


def test_drop_optimizer_state_agrees_with_select(tmp_path, capsys):
    """Adagrad slots, numbered slots and train_op's frozen snapshots are optimizer state for surgery and select."""
    values = {"w": np.float32([1, 2]), "w/Adagrad": np.float32([3, 4]), "w/Momentum_1": np.float32([5, 6]),
              "w/Adam_2": np.float32([7, 8]), "w/frozen_snapshot": np.float32([9, 10]), "b/weights": np.float32([0])}
    src = _write(str(tmp_path / "src" / "m"), values)
    out = str(tmp_path / "out" / "m")
    assert main(["rename", src, "--drop-optimizer-state", "--out", out]) == 0
    assert "dropped 4 optimizer slots" in capsys.readouterr().out
    _assert_bit_identical(checkpoint_values(out), {"w": values["w"], "b/weights": values["b/weights"]})
    from tf1tune.selection import is_optimizer_state_name

    assert [n for n in values if is_optimizer_state_name(n)] == ["w/Adagrad", "w/Momentum_1", "w/Adam_2",
                                                                 "w/frozen_snapshot"]


def test_overwrite_moves_new_files_in_before_deleting_stale_shards(tmp_path, monkeypatch):
    """An old checkpoint with more data shards is replaced: data first, .index last, stale shards deleted after."""
    src = _write(str(tmp_path / "src" / "m"), {"net/w": np.float32([1, 2])})
    out = str(tmp_path / "out" / "m")
    convert_checkpoint(src, out)
    os.replace(out + ".data-00000-of-00001", out + ".data-00000-of-00002")  # pretend an old 2-shard checkpoint
    with open(out + ".data-00001-of-00002", "wb") as f:
        f.write(b"old shard")
    events: list[tuple[str, str]] = []
    real_replace, real_remove = os.replace, os.remove
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", os.path.basename(b))),
                                                              real_replace(a, b))[-1])
    monkeypatch.setattr(os, "remove", lambda p: (events.append(("remove", os.path.basename(p))),
                                                          real_remove(p))[-1])
    rename_checkpoint(src, out, {"net": "body"}, overwrite=True)
    moves = [e for e in events if e[1] != "checkpoint"]
    assert moves == [("replace", "m.data-00000-of-00001"), ("replace", "m.index"),
                     ("remove", "m.data-00000-of-00002"), ("remove", "m.data-00001-of-00002")]
    assert sorted(f for f in os.listdir(tmp_path / "out") if f.startswith("m.")) == ["m.data-00000-of-00001",
                                                                                     "m.index"]
    _assert_bit_identical(checkpoint_values(out), {"body/w": np.float32([1, 2])})


def test_truncated_source_is_a_bad_source_not_an_internal_error(tmp_path):
    from tf1tune.errors import BadSourceError

    src = _write(str(tmp_path / "src" / "m"), {"net/w": np.arange(4096, dtype=np.float32)})
    with open(src + ".data-00000-of-00001", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(BadSourceError, match=r"checkpoint '.*m' cannot be read \(.*\): the data file may be truncated"):
        convert_checkpoint(src, str(tmp_path / "out" / "m"))
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")
