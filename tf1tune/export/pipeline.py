"""`export_model`: the whole export of a model, as `tf1tune freeze` and `export-savedmodel` run it.

Load the source (a path, a `.meta`, a registered net or a fine-tuning run directory), check that no output would
write over a source file, freeze it (`freeze_model`), optionally optimize it, verify it against the live session,
then write what was asked: a frozen `.pb`, an ONNX model (verified with onnxruntime), a SavedModel (verified again
after loading it in TF2). Nothing is written before its verification passes, and every output is written atomically.

Example:
    >>> result = export_model("checkpoints/digits_cnn", outputs=["DigitsCNN/Predictions/Softmax"],
    ...                       inputs=["input"], optimize=True, pb="digits.pb")
    >>> result.check.max_abs
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tf1tune._fs import check_output
from tf1tune.errors import ExportError
from tf1tune.export._io import write_graph_def
from tf1tune.export.freeze import FrozenModel, freeze_model
from tf1tune.export.optimize import optimize as optimize_graph
from tf1tune.export.verify import Verification, session_runner, source_batch, verify
from tf1tune.graph_safety import parse_allow_ops
from tf1tune.handle import ModelHandle
from tf1tune.limits import MAX_SEED, check_float, check_int

if TYPE_CHECKING:
    from tf1tune.export.tflite import TfliteCheck, TfliteOptions

__all__ = ["ExportResult", "check_outputs", "export_model", "freeze_and_verify", "load_source", "source_files"]


def load_source(source: str | None = None, *, meta: str | None = None, net: str | None = None,
                num_classes: int | None = None, input_size: tuple[int, int] | None = None,
                checkpoint: str | None = None) -> ModelHandle:
    """The handle picked by `source`, `meta` or `net` (exactly one), with its weights from `checkpoint`.

    A checkpoint `source` with another `checkpoint` names the graph (the `.meta` next to it); the weights come
    from `checkpoint`.

    Raises:
        ExportError: Not exactly one of the three, or `num_classes` or `input_size` without `net`.
    """
    from tf1tune.checkpoints import resolve_checkpoint
    from tf1tune.loaders import detect_kind, find_meta, load, load_meta, load_slim

    given = [x for x in (source, meta, net) if x]
    if len(given) != 1:
        raise ExportError(f"give exactly one of SOURCE, --meta PATH, --net NAME or --run-dir RUN (got {len(given)}); "
                           "e.g. tf1tune freeze checkpoints/digits_cnn --outputs DigitsCNN/Predictions/Softmax --out m.pb")
    if num_classes is not None and not net:
        raise ExportError("--num-classes only applies to --net NAME")
    if input_size is not None and not net:
        raise ExportError("--input-size only applies to --net NAME (a graph's input size is in the graph)")
    options: dict[str, Any] = {"checkpoint": checkpoint} if checkpoint else {}
    if net:
        if num_classes is not None:
            options["num_classes"] = num_classes or None
        if input_size is not None:
            options["input_size"] = tuple(input_size)
        return load_slim(net, **options)
    if meta:
        return load_meta(meta, **options)
    assert source is not None  # exactly one was given
    if checkpoint and detect_kind(source) == "checkpoint":  # the source names the graph, --checkpoint the weights
        graph = find_meta(resolve_checkpoint(source))
        if graph is None:
            raise ExportError(f"'{source}' has no .meta graph next to it; give the graph with --meta PATH")
        return load_meta(graph, **options)
    return load(source, **options)


def source_files(handle: ModelHandle) -> list[str]:
    """Every file the handle was loaded from, as real paths: never to be written to.

    That is the source file (or every file under a SavedModel directory), every file of its checkpoint
    (`tf1tune.checkpoints.checkpoint_files`: `.index`, `.data-*` shards, V1 files, `.meta`) and the `checkpoint`
    state file of the checkpoint's directory.

    Returns:
        Sorted real paths of the files that exist.
    """
    from tf1tune.checkpoints import checkpoint_files

    found: set[str] = set()
    source = handle.source
    if os.path.isdir(source):
        for folder, _, names in os.walk(source):
            found.update(os.path.join(folder, n) for n in names)
    elif os.path.isfile(source):
        found.add(source)
    if handle.checkpoint:
        found.update(checkpoint_files(handle.checkpoint))
        found.add(os.path.join(os.path.dirname(handle.checkpoint) or ".", "checkpoint"))
    return sorted(os.path.realpath(f) for f in found if os.path.isfile(f))


def check_outputs(handle: ModelHandle, outputs: Mapping[str, str | None], overwrite: bool | None) -> None:
    """Refuse output paths that would write over the source (sources are never written to).

    Args:
        handle: The loaded source.
        outputs: Flag (`--out`, `--onnx`) -> path given, None when not given.
        overwrite: None: existing outputs are the caller's concern; False: refuse an existing output file;
            True: allow replacing it.
    """
    own = source_files(handle)
    saved_model = [handle.source] if handle.kind == "saved_model" and os.path.isdir(handle.source) else []
    given = {flag: path for flag, path in outputs.items() if path}
    for flag, path in given.items():
        check_output(path, own, None, error=ExportError, is_source=f"{flag} '{{path}}' is a file of the source; write the export "
                     "somewhere else", exists="")
        check_output(path, saved_model, overwrite, error=ExportError,
                     is_source=f"{flag} '{{path}}' is inside the source SavedModel '{{source}}'; write the export "
                     "somewhere else", exists=f"{flag} '{{path}}' exists; choose another {flag} or pass --overwrite")
    targets = [os.path.realpath(p) for p in given.values()]
    if len(set(targets)) < len(targets):
        raise ExportError("--out and --onnx are the same file; give them different paths")


def freeze_and_verify(
    handle: ModelHandle,
    outputs: Sequence[str],
    inputs: Sequence[str] | None = None,
    settings: Mapping[str, Any] | None = None,
    optimize: bool = False,
    feeds: Mapping[str, np.ndarray] | None = None,
    rtol: float = 1e-5,
    atol: float = 0.0,
    seed: int = 0,
) -> tuple[FrozenModel, Verification]:
    """Freeze `handle`, optionally optimize, and verify the frozen graph against the live session.

    Raises:
        ExportError: Freezing or optimizing fails, or the frozen graph differs beyond the tolerance.
    """
    frozen = freeze_model(handle, outputs, inputs, settings)
    if optimize:
        frozen.graph_def = optimize_graph(frozen.graph_def, frozen.inputs, frozen.outputs)
    check = verify(session_runner(handle, frozen.outputs, frozen.settings), frozen.graph_def, frozen.inputs,
                   frozen.outputs, feeds=feeds, rtol=rtol, atol=atol, batch=source_batch(handle, frozen.inputs),
                   seed=seed)
    return frozen, check


@dataclass
class ExportResult:
    """What `export_model` verified and wrote.

    Attributes:
        handle: The loaded source.
        frozen: The frozen (optionally optimized) graph with its inputs, outputs, settings and notes.
        check: The frozen graph against the live session.
        onnx_check: onnxruntime against the frozen graph (when `onnx` was given).
        saved_model_check: The reloaded SavedModel against the frozen graph (when `saved_model` was given).
        serving_check: The serving graph (JPEG input, label output) against the frozen graph, when asked for.
        served_inputs: The serving graph's inputs (`image_bytes:0` for JPEG), when asked for.
        served_outputs: The serving graph's outputs (the frozen outputs, then `label:0`), when asked for.
        served_nodes: The serving graph's node count, when asked for.
        tflite_check: The TFLite model against the frozen graph (when `tflite` was given).
        written: Absolute paths written, in order.
    """

    handle: ModelHandle
    frozen: FrozenModel
    check: Verification
    onnx_check: Verification | None = None
    saved_model_check: Verification | None = None
    serving_check: Verification | None = None
    served_inputs: list[str] = field(default_factory=list)
    served_outputs: list[str] = field(default_factory=list)
    served_nodes: int = 0
    tflite_check: TfliteCheck | None = None
    written: list[str] = field(default_factory=list)


def export_model(
    source: str | None = None,
    *,
    meta: str | None = None,
    net: str | None = None,
    num_classes: int | None = None,
    input_size: tuple[int, int] | None = None,
    checkpoint: str | None = None,
    run_dir: str | None = None,
    outputs: Sequence[str] | None = None,
    inputs: Sequence[str] | None = None,
    settings: Mapping[str, Any] | None = None,
    optimize: bool = False,
    rtol: float = 1e-5,
    atol: float = 0.0,
    seed: int = 0,
    pb: str | None = None,
    onnx: str | None = None,
    opset: int | None = None,
    saved_model: str | None = None,
    overwrite: bool | None = None,
    input_format: str = "tensor",
    labels: Sequence[str] | None = None,
    tflite: TfliteOptions | None = None,
    allow_ops: Sequence[str] | str | None = None,
) -> ExportResult:
    """Load, freeze, verify and write a model; see the module docstring.

    Args:
        source: A checkpoint, `.meta`, frozen `.pb` or SavedModel path (or give `meta`, `net` or `run_dir`).
        meta: A `.meta` training graph.
        net: A registered slim net, with `num_classes` and `checkpoint`.
        num_classes: `net` only: classifier outputs.
        input_size: `net` only: (height, width) of the input (default: the net's).
        checkpoint: The checkpoint holding the weights (default: the one next to the graph).
        run_dir: A `tf1tune finetune` run directory: its last checkpoint, input and probabilities, verified on
            the run's validation data.
        outputs: Output tensor or op names (default with `run_dir`: the head's probabilities).
        inputs: Input placeholders (default: every placeholder without a default that the outputs need).
        settings: Placeholders to replace by constants (`{"is_training": "false"}`).
        optimize: Fold batch norm and constants, remove identities.
        rtol: Verification: allowed max |diff| relative to each output's max |value|.
        atol: Verification: absolute tolerance added.
        seed: Seed of the random verification inputs.
        pb: Where to write the frozen graph.
        onnx: Where to write an ONNX model (needs the `onnx` extra).
        opset: `onnx` only: the ONNX opset.
        saved_model: A new or empty directory to write a SavedModel to.
        overwrite: Replace an existing `pb` / `onnx` / `tflite` (None: leave that check to the writer).
        input_format: `pb` and `saved_model`: `jpeg` takes encoded JPEG bytes (`tf1tune.export.serving`).
        labels: `pb` and `saved_model`: class names, a `label` string output beside the probabilities.
        tflite: A TFLite model to write, float or quantized (`tf1tune.export.tflite.TfliteOptions`).
        allow_ops: Op types to run although they do more than compute (`tf1tune.graph_safety`; a warning each).

    Returns:
        What was verified and written.

    Raises:
        Tf1tuneError: Bad source or names (`ExportError`: an output that is a source file, a failed verification).
    """
    if not (pb or onnx or saved_model or tflite):
        raise ExportError("nothing to write: give pb, onnx, saved_model or tflite")
    serving = input_format != "tensor" or labels is not None
    if serving and (onnx or tflite):
        raise ExportError("--input-format and --labels apply to the .pb and the SavedModel; export ONNX without "
                          "them (TFLite stores labels with export-tflite --labels)")
    if serving:
        from tf1tune.export.serving import INPUT_FORMATS

        if input_format not in INPUT_FORMATS:
            raise ExportError(f"unknown input format '{input_format}'; use one of {', '.join(INPUT_FORMATS)}")
    if tflite:
        tflite.validate(run_dir)
    check_float("--rtol", rtol, 0.0, error=ExportError)
    check_float("--atol", atol, 0.0, error=ExportError)
    check_int("--seed", seed, 0, MAX_SEED, error=ExportError)
    feeds = None
    if run_dir:
        from tf1tune.train.run_dir import load_run

        if source or meta or net:
            raise ExportError("--run-dir replaces SOURCE, --meta and --net; give only one of them")
        run = load_run(run_dir)
        handle = run.handle
        inputs, outputs = list(inputs or [run.input]), list(outputs or [run.probabilities])
        feeds = {inputs[0]: run.validation_images}
        settings = {**run.settings, **(settings or {})}  # the source's is_training switches: False
    else:
        handle = load_source(source, meta=meta, net=net, num_classes=num_classes, input_size=input_size,
                             checkpoint=checkpoint)
    handle.allowed_ops = parse_allow_ops(allow_ops)
    handle.check_safe()  # before anything runs the graph
    check_outputs(handle, {"--out": pb or saved_model or (tflite.path if tflite else None), "--onnx": onnx},
                  overwrite)
    if not outputs:
        raise ExportError("--outputs is required (except with --run-dir); e.g. --outputs DigitsCNN/Predictions/Softmax")
    frozen, check = freeze_and_verify(handle, outputs, inputs, settings, optimize, feeds, rtol, atol, seed)
    result = ExportResult(handle=handle, frozen=frozen, check=check)
    graph_def, served_inputs, served_outputs, served_feeds = frozen.graph_def, frozen.inputs, frozen.outputs, None
    if serving:  # checked before anything is written
        from tf1tune.export.serving import wrap_for_serving

        wrapped, result.serving_check, served_feeds = wrap_for_serving(
            frozen.graph_def, frozen.inputs, frozen.outputs, input_format, labels,
            images=next(iter(feeds.values()))[:16] if feeds else None, seed=seed)
        graph_def, served_inputs, served_outputs = wrapped.graph_def, wrapped.inputs, wrapped.outputs
        result.served_inputs, result.served_outputs = served_inputs, served_outputs
        result.served_nodes = len(graph_def.node)
    if tflite:
        from tf1tune.export.tflite import tflite_from_frozen
        from tf1tune.export.verify import random_feeds

        random = random_feeds(frozen.graph_def, frozen.inputs, batch=source_batch(handle, frozen.inputs), seed=seed)
        result.tflite_check = tflite_from_frozen(frozen.graph_def, frozen.inputs, frozen.outputs, tflite,
                                                 run_dir=run_dir, random_feeds=random, atol=atol)
        result.written.append(os.path.abspath(tflite.path))
    if onnx:  # checked before anything is written
        from tf1tune.export.onnx_export import export_onnx

        result.onnx_check = export_onnx(frozen.graph_def, frozen.inputs, frozen.outputs, onnx, opset=opset,
                                        rtol=rtol, atol=atol)
    if pb:
        result.written.append(write_graph_def(graph_def, pb))
    if onnx:
        result.written.append(os.path.abspath(onnx))
    if saved_model:
        from tf1tune.export.saved_model import export_saved_model

        result.saved_model_check = export_saved_model(graph_def, served_inputs, served_outputs, saved_model,
                                                      feeds=served_feeds, rtol=rtol, atol=atol)
        result.written.append(os.path.abspath(saved_model))
    return result
