"""Loader for a TF1 SavedModel directory (`saved_model.pb` + `variables/`)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from tensorflow.core.protobuf import saved_model_pb2

from tf1tune.errors import SourceNotFoundError
from tf1tune.graph_safety import scan_meta
from tf1tune.handle import ModelHandle, candidate_inputs, candidate_outputs, named_endpoints
from tf1tune.loaders._graph_import import import_meta_graph_def, warn_repairs
from tf1tune.names import not_found
from tf1tune.repair.graph import read_proto


def saved_model_file(export_dir: str) -> str | None:
    """The `saved_model.pb` or `saved_model.pbtxt` of `export_dir`, if there is one."""
    for name in ("saved_model.pb", "saved_model.pbtxt"):
        path = os.path.join(export_dir, name)
        if os.path.isfile(path):
            return path
    return None


def load_saved_model(export_dir: str | os.PathLike[str], tags: Sequence[str] | None = None) -> ModelHandle:
    """Import the meta graph of a TF1 SavedModel chosen by `tags` into its own graph.

    Args:
        export_dir: The SavedModel directory.
        tags: Tag set of the meta graph; None takes `["serve"]` when present, else the first meta graph.

    Returns:
        A handle with `signatures` (name to input/output tensor names) and the `variables/` checkpoint.

    Raises:
        SourceNotFoundError, BadSourceError, NameNotFoundError: no SavedModel, unreadable, or no such tags.
    """
    source = os.fspath(export_dir)
    path = saved_model_file(source)
    if path is None:
        raise SourceNotFoundError(f"no saved_model.pb or saved_model.pbtxt in '{source}'; give a SavedModel directory")
    saved = saved_model_pb2.SavedModel()
    read_proto(path, saved, "SavedModel")
    available = {",".join(sorted(m.meta_info_def.tags)): m for m in saved.meta_graphs}
    if tags is None:
        key = "serve" if "serve" in available else next(iter(available))
    else:
        key = ",".join(sorted(tags))
    if key not in available:
        raise not_found("meta graph with tags", key, available, hint="pass one of these tag sets")
    meta = available[key]
    written_by = meta.meta_info_def.tensorflow_version or None
    risks = scan_meta(meta, source)
    graph, saver, repairs = import_meta_graph_def(meta, source)
    warn_repairs(source, repairs)
    prefix = os.path.join(source, "variables", "variables")
    checkpoint = prefix if os.path.isfile(prefix + ".index") else None
    outputs = candidate_outputs(graph)
    signatures = {
        name: {
            "inputs": {k: v.name for k, v in sig.inputs.items()},
            "outputs": {k: v.name for k, v in sig.outputs.items()},
            "method": sig.method_name,
        }
        for name, sig in meta.signature_def.items()
    }
    sig_inputs = [graph.get_tensor_by_name(n) for s in signatures.values() for n in s["inputs"].values() if n]
    sig_outputs = [graph.get_tensor_by_name(n) for s in signatures.values() for n in s["outputs"].values() if n]
    inputs = list(dict.fromkeys(sig_inputs or candidate_inputs(graph)))
    return ModelHandle(
        kind="saved_model",
        source=source,
        graph=graph,
        endpoints=named_endpoints(outputs + sig_outputs),
        inputs=inputs,
        outputs=list(dict.fromkeys(sig_outputs or outputs)),
        checkpoint=checkpoint,
        tensorflow_version=written_by,
        saver=saver if checkpoint else None,
        signatures=signatures,
        repairs=repairs,
        risks=risks,
        extra={"tags": key.split(","), "tag_sets": list(available)},
    )
