"""`verify`: the source model and its export run on the same inputs, compared within an explicit tolerance.

The difference is measured per output tensor, relative to that output's scale:

    max_abs = max |a - b|                  (a: source, b: export, over all elements)
    max_rel = max_abs / max |a|            (0 when both are all zeros)
    passes when max_abs <= atol + rtol * max |a|

so a value of 1e-9 next to values of 1.0 is judged against 1.0, not against itself (an element-wise relative
difference blows up on near-zero softmax entries and on values that cancel). Over several outputs the worst one
is reported. Inputs are the given data, or seeded random data of each input's shape (free dims get `batch`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import graph_pb2

from tf1tune.errors import ExportError, first_line
from tf1tune.graphdef import tensor_name
from tf1tune.handle import ModelHandle

Runner = Callable[[Mapping[str, np.ndarray]], list[np.ndarray]]


class Verification(NamedTuple):
    """The outcome of a passing `verify`: worst differences, and what they were judged against."""

    max_abs: float
    max_rel: float
    num_inputs: int
    rtol: float
    atol: float

    def line(self) -> str:
        """`verified on N inputs: max abs diff X, max rel diff Y (tolerance ...)`."""
        return (f"verified on {self.num_inputs} inputs: max abs diff {self.max_abs:.3g}, max rel diff "
                f"{self.max_rel:.3g} (tolerance: abs diff <= {self.atol:g} + {self.rtol:g} * max |source|)")


def run_graph_def(graph_def: graph_pb2.GraphDef, outputs: Sequence[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Run `graph_def`, imported into a fresh graph, on `feeds` (by tensor name); returns the `outputs`."""
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as sess:
            return sess.run([tensor_name(n) for n in outputs], {tensor_name(k): v for k, v in feeds.items()})


def session_runner(handle: ModelHandle, outputs: Sequence[str], settings: Mapping[str, Any] | None = None) -> Runner:
    """A function running `handle`'s restored checkpoint on feeds, with `settings` (`is_training=False`) fed too."""
    def run(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        full = {handle.tensor(k): v for k, v in {**(settings or {}), **feeds}.items()}
        with handle.session() as sess:
            return sess.run([handle.tensor(n) for n in outputs], full)
    return run


def source_batch(handle: ModelHandle, inputs: Sequence[str], default: int = 4) -> int:
    """The batch size the source accepts: the first input's fixed first dimension, else `default`."""
    for name in inputs:
        shape = handle.tensor(name).shape
        if shape.rank and shape[0] is not None:
            return int(shape[0])
    return default


def random_feeds(graph_def: graph_pb2.GraphDef, inputs: Sequence[str], batch: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random data for each input placeholder of `graph_def`, of its dtype and shape (free dims: `batch`).

    An input of unknown rank gets shape `[batch]`. Floats are standard normal, integers in [0, 10), bools False.
    """
    rng = np.random.default_rng(seed)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    feeds = {}
    for name in inputs:
        try:
            tensor = graph.get_tensor_by_name(tensor_name(name))
        except (KeyError, ValueError):
            raise ExportError(f"input '{name}' is not in the exported graph; name one of its placeholders") from None
        dtype = tensor.dtype
        shape = [batch] if tensor.shape.rank is None else [batch if d is None else d for d in tensor.shape.as_list()]
        if dtype.is_floating:
            value = rng.standard_normal(shape).astype(dtype.as_numpy_dtype)
        elif dtype.is_integer:
            value = rng.integers(0, 10, size=shape).astype(dtype.as_numpy_dtype)
        elif dtype == tf.bool:
            value = np.zeros(shape, dtype=bool)
        else:
            raise ExportError(f"cannot make random data for input '{name}' of dtype {dtype.name}; give the data")
        feeds[tensor_name(name)] = value
    return feeds


def compare(expected: Sequence[np.ndarray], got: Sequence[np.ndarray], names: Sequence[str], rtol: float,
            atol: float) -> tuple[float, float, list[str]]:
    """Worst `(max_abs, max_rel)` over the outputs (see the module docstring), and one line per failing output."""
    worst_abs = worst_rel = 0.0
    failures = []
    for name, a, b in zip(names, expected, got):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            failures.append(f"{name}: shape {b.shape} instead of {a.shape}")
            continue
        if a.dtype.kind in "OSUb" or b.dtype.kind in "OSUb":  # strings (label names), bools: exactly equal
            if not np.array_equal(a, b):
                failures.append(f"{name}: {int(np.sum(a != b))} of {a.size} values differ")
            continue
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        if not np.array_equal(np.isnan(a64), np.isnan(b64)):
            failures.append(f"{name}: NaN in different places")
            continue
        a64, b64 = np.nan_to_num(a64), np.nan_to_num(b64)
        diff = float(np.max(np.abs(a64 - b64))) if a.size else 0.0
        scale = float(np.max(np.abs(a64))) if a.size else 0.0
        rel = diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))
        worst_abs, worst_rel = max(worst_abs, diff), max(worst_rel, rel)
        if diff > atol + rtol * scale:
            failures.append(f"{name}: max abs diff {diff:.3g}, max rel diff {rel:.3g}")
    return worst_abs, worst_rel, failures


def verify(
    source_fn: Runner,
    exported_graph_def: graph_pb2.GraphDef,
    inputs: Sequence[str],
    outputs: Sequence[str],
    feeds: Mapping[str, np.ndarray] | None = None,
    rtol: float = 1e-5,
    atol: float = 0.0,
    batch: int = 4,
    seed: int = 0,
) -> Verification:
    """Check that `exported_graph_def` computes what `source_fn` computes.

    Args:
        source_fn: Runs the source on feeds by input name and returns the outputs (`session_runner(handle, ...)`).
        exported_graph_def: The export to check.
        inputs: Input tensor names, the same in source and export.
        outputs: Output tensor names, the same in source and export.
        feeds: Input data by name; by default `random_feeds(exported_graph_def, inputs, batch, seed)`.
        rtol: Relative tolerance, against each output's largest magnitude.
        atol: Absolute tolerance added to it.
        batch: Batch size of random inputs (not the source's own, to check the batch dimension is free).
        seed: Seed of random inputs.

    Returns:
        The worst differences; unpack the first two as `(max_abs, max_rel)`.

    Raises:
        ExportError: An output differs beyond the tolerance, or the export fails to run.
    """
    feeds = {tensor_name(k): v for k, v in (feeds or random_feeds(exported_graph_def, inputs, batch, seed)).items()}
    try:
        expected = source_fn(feeds)
    except tf.errors.OpError as e:
        from tf1tune.errors import run_error_text

        raise ExportError(f"the source model does not run on the verification inputs "
                          f"({', '.join(feeds)}): {run_error_text(e)}; give the data it expects (--run-dir) or "
                          "export an inference output") from e
    try:
        got = run_graph_def(exported_graph_def, outputs, feeds)
    except (ValueError, tf.errors.OpError) as e:
        from tf1tune.errors import run_error_text

        first = run_error_text(e) if isinstance(e, tf.errors.OpError) else first_line(e)
        raise ExportError(f"the exported graph does not run on inputs of shape "
                          f"{[list(np.shape(v)) for v in feeds.values()]}: {first}") from e
    max_abs, max_rel, failures = compare(expected, got, outputs, rtol, atol)
    if failures:
        raise ExportError(f"verification failed (tolerance: abs diff <= {atol:g} + {rtol:g} * max |source|): "
                          + "; ".join(failures) + "; nothing was written")
    n = len(next(iter(feeds.values()))) if feeds and np.ndim(next(iter(feeds.values()))) else 1
    return Verification(max_abs, max_rel, n, rtol, atol)
