"""Writing a V2 checkpoint safely: staged next to the output, read back bit for bit, moved into place.

The values are saved with plain `tf.compat.v1.train.Saver` into a temporary directory next to the output
(`tf1tune._fs.staged_dir`), read back and compared bit for bit with what was intended, and only then moved into
place: data shards first, the `.index` last, stale shards of a replaced checkpoint deleted after. The directory's
`checkpoint` state file is written with TF's own `update_checkpoint_state` (relative paths). Values reach the
graph through placeholders, never as constants, so checkpoints over 2 GB work.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from tf1tune._fs import check_output, staged_dir
from tf1tune.checkpoints import checkpoint_files
from tf1tune.errors import SurgeryError
from tf1tune.names import capped

__all__ = ["check_output_prefix", "same_value", "write_checkpoint"]


def same_value(a: tuple[np.ndarray, tf.DType], b: tuple[np.ndarray, tf.DType]) -> bool:
    """Same dtype, shape and bytes (NaNs with the same bits are the same)."""
    (va, da), (vb, db) = a, b
    if da != db or va.shape != vb.shape:
        return False
    if va.dtype == object or vb.dtype == object:
        return va.tolist() == vb.tolist()
    return va.tobytes() == vb.tobytes()


def _data_files(prefix: str) -> list[str]:
    """The checkpoint's own files at `prefix`, without the `.meta` (which surgery neither writes nor replaces)."""
    return [f for f in checkpoint_files(prefix) if not f.endswith(".meta")]


def check_output_prefix(output: str | os.PathLike[str], sources: Sequence[str], overwrite: bool) -> str:
    """The output prefix, checked: not a directory, not a source, not an existing checkpoint unless `overwrite`."""
    text = os.fspath(output)
    out = os.path.abspath(text)
    if os.path.isdir(out) or text.endswith(("/", os.sep)):
        raise SurgeryError(f"--out '{output}' is a directory; give a checkpoint prefix in it, e.g. {output}/model.ckpt")
    bases = [s.split("-?????-of-")[0] for s in sources]
    source_files = {os.path.realpath(f) for s in sources for f in _data_files(s)}
    existing = _data_files(out)
    shown = os.path.basename(existing[0]) if existing else ""
    overwrites_source = any(os.path.realpath(f) in source_files for f in existing)  # another name, the same files
    return check_output(text, bases + ([text] if overwrites_source else []), overwrite,
                        error=SurgeryError, existing=bool(existing),
                        is_source="--out '{path}' is the source checkpoint; write to another prefix",
                        exists=f"a checkpoint exists at '{{path}}' ({shown}); choose another --out or pass --overwrite")


def write_checkpoint(values: Mapping[str, tuple[np.ndarray, tf.DType]], out: str, sources: Sequence[str]) -> int:
    """Save `values` as a V2 checkpoint at `out`, verified, then moved into place; returns the entry count."""
    directory, base = os.path.split(out)
    os.makedirs(directory, exist_ok=True)
    with staged_dir(out) as tmp:
        tmp_prefix = os.path.join(tmp, base)
        _save(values, tmp_prefix)
        _verify(values, tmp_prefix)
        replaced = _data_files(out)  # only non-empty with overwrite (checked before)
        # Data shards first, the .index last: until the new .index is in place, the old one still names data
        # that exists; stale old files are deleted only once the new checkpoint is complete.
        new_files = sorted(os.listdir(tmp), key=lambda name: (name.endswith(".index"), name))
        for name in new_files:
            os.replace(os.path.join(tmp, name), os.path.join(directory, name))
        written = {os.path.realpath(os.path.join(directory, name)) for name in new_files}
        for stale in replaced:
            if os.path.realpath(stale) not in written:
                os.remove(stale)
        if replaced and os.path.isfile(out + ".meta"):
            warnings.warn(f"{out}.meta belongs to the checkpoint that was replaced; delete or regenerate it",
                          stacklevel=3)
    source_dirs = {os.path.realpath(os.path.dirname(os.path.abspath(s))) for s in sources}
    if os.path.realpath(directory) in source_dirs:
        warnings.warn(f"wrote {base} next to its source; the directory's checkpoint state file is left as it is, "
                      "so load the new checkpoint by its prefix", stacklevel=3)
    else:
        _write_state(directory, base)
    return len(values)


def _save(values: Mapping[str, tuple[np.ndarray, tf.DType]], prefix: str) -> None:
    graph = tf.Graph()
    with graph.as_default():
        feeds, var_list = {}, {}
        for i, (name, (value, dtype)) in enumerate(sorted(values.items())):
            ph = tf.compat.v1.placeholder(dtype, shape=value.shape, name=f"value_{i}")
            var_list[name] = tf.compat.v1.Variable(ph, name=f"entry_{i}", trainable=False, collections=[],
                                                   use_resource=False)
            feeds[ph] = value
        saver = tf.compat.v1.train.Saver(var_list=var_list, write_version=tf.compat.v1.train.SaverDef.V2,
                                         sharded=False, save_relative_paths=True)
        with tf.compat.v1.Session(graph=graph) as sess:
            if var_list:
                sess.run([v.initializer for v in var_list.values()], feed_dict=feeds)
            saver.save(sess, prefix, write_meta_graph=False, write_state=False)


def _verify(values: Mapping[str, tuple[np.ndarray, tf.DType]], prefix: str) -> None:
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    bad = sorted(set(shapes) ^ set(values))
    for name, (value, dtype) in values.items():
        if name not in shapes:
            continue
        read = np.asarray(reader.get_tensor(name))
        if tuple(shapes[name]) != value.shape or dtypes[name] != dtype or not same_value((read, dtype), (value, dtype)):
            bad.append(name)
    if bad:
        raise SurgeryError(f"the checkpoint written does not read back as intended ({capped(bad)}); "
                           "nothing was moved into place; rerun with --debug and report it")


def _write_state(directory: str, base: str) -> None:
    """Make `base` the directory's latest checkpoint in its `checkpoint` state file (relative paths), with TF's own
    writer (`update_checkpoint_state`, atomic); checkpoints it listed that still exist stay listed."""
    listed: list[str] = []
    if os.path.isfile(os.path.join(directory, "checkpoint")):
        try:
            state = tf.train.get_checkpoint_state(directory)
        except Exception:  # noqa: BLE001  (a garbled state file of any kind is replaced)
            state = None
        if state:
            listed = [os.path.basename(p) for p in state.all_model_checkpoint_paths
                      if _data_files(os.path.join(directory, os.path.basename(p)))]
    listed = [p for p in listed if p != base] + [base]
    tf.compat.v1.train.update_checkpoint_state(directory, base, all_model_checkpoint_paths=listed)
