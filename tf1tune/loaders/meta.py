"""Loader for a `.meta` graph with its checkpoint (what `tf.compat.v1.train.Saver.save` wrote)."""

from __future__ import annotations

import os

from tensorflow.core.protobuf import meta_graph_pb2

from tf1tune.checkpoints import resolve_checkpoint
from tf1tune.errors import SourceNotFoundError
from tf1tune.graph_safety import scan_meta
from tf1tune.handle import ModelHandle
from tf1tune.loaders._graph_import import import_meta_graph_def, warn_repairs
from tf1tune.repair.graph import read_proto


def load_meta(meta_path: str | os.PathLike[str], checkpoint: str | os.PathLike[str] | None = None) -> ModelHandle:
    """Import a `.meta` graph (binary or text) into its own graph and find its checkpoint.

    Args:
        meta_path: The MetaGraphDef file.
        checkpoint: Prefix, file or directory of the checkpoint; None looks next to the `.meta`
            (same prefix, then the directory's `checkpoint` state file, then the newest prefix there).

    Returns:
        A handle whose `session()` restores the checkpoint (when one was found).

    Raises:
        SourceNotFoundError, BadSourceError, UnknownOpsError: the file is missing, unreadable,
            or uses ops this TensorFlow lacks.

    Example:
        >>> handle = load_meta("PNet-18.meta")
        >>> with handle.session() as sess:
        ...     sess.run(handle.outputs[0], {handle.inputs[0]: batch})
    """
    source = os.fspath(meta_path)
    meta = meta_graph_pb2.MetaGraphDef()
    read_proto(source, meta, "MetaGraphDef (.meta)")
    written_by = meta.meta_info_def.tensorflow_version or None
    risks = scan_meta(meta, source)
    graph, saver, repairs = import_meta_graph_def(meta, source)
    warn_repairs(source, repairs)
    if checkpoint is not None:
        prefix: str | None = resolve_checkpoint(checkpoint)
    else:
        try:
            prefix = resolve_checkpoint(source)
        except SourceNotFoundError:
            prefix = None
    return ModelHandle.from_graph(
        "meta",
        source,
        graph,
        checkpoint=prefix,
        tensorflow_version=written_by,
        saver=saver,
        repairs=repairs,
        risks=risks,
    )
