"""The feature cache: a frozen base's features computed once per image, so a head-only phase trains from them.

Why: a phase that trains only layers above an endpoint whose whole upstream is frozen recomputes the same
forward pass of the base over the same images on every step (TF Hub's `retrain.py` made this practical with
its bottleneck cache). When the endpoint's features are an exact function of the image (batch norm in
inference mode, no random op such as dropout upstream, no augmentation, no trained variable upstream), this
module computes them once per image, streamed to disk, and serves training batches of features; the training
step then feeds the endpoint tensor itself (a TF1 session runs only what lies downstream of a fed tensor), so
the train op, the loss and the head are the very ones of the uncached run.

The cache lives in a directory keyed by everything that determines the features: the graph upstream of the
endpoint (input size, preprocessing, the net), the values of the variables it reads (the checkpoint's
contents as restored), the decoding rules and the image files (path, size, modification time); a changed key
gives a new directory, so a stale cache is never reused. Files are written to a temporary directory and
renamed into place; they are read memory-mapped, so memory stays bounded however large the cache is.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from tf1tune.data.batches import BatchStream
from tf1tune.data.source import Source
from tf1tune.data.streaming import Batch, Skipped, eval_batches
from tf1tune.errors import DataError

FORMAT = 1  # bump when the decoding rules or the file layout change: older caches are then not reused
_RANDOM_OPS = {"RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal", "Multinomial",
               "RandomShuffle", "RandomGamma", "RandomPoisson", "RandomPoissonV2", "RandomCrop",
               "ParameterizedTruncatedNormal"}
_FUSED_BATCH_NORM = {"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"}
_VARIABLE_OPS = {"VariableV2", "VarHandleOp", "Variable"}


def upstream_ops(roots: Iterable[tf.Tensor | tf.Operation], stop: Sequence[tf.Tensor] = ()) -> list[tf.Operation]:
    """Every op that `roots` depend on (data and control inputs), not walking past the tensors in `stop`."""
    stop_names = {t.name for t in stop}
    seen: dict[str, tf.Operation] = {}
    todo = [r if isinstance(r, tf.Operation) else r.op for r in roots
            if isinstance(r, tf.Operation) or r.name not in stop_names]
    while todo:
        op = todo.pop()
        if op.name in seen:
            continue
        seen[op.name] = op
        todo += [t.op for t in op.inputs if t.name not in stop_names]
        todo += list(op.control_inputs)
    return list(seen.values())


def why_not_exact(endpoint: tf.Tensor, images: tf.Tensor, trained: Iterable[str],
                  feed: dict[tf.Tensor, Any]) -> str | None:
    """None when `endpoint` is an exact function of `images` and frozen values; else the reason it is not.

    Args:
        endpoint: The tensor whose values would be cached.
        images: The image input it is computed from.
        trained: Op names of the variables some phase of the run trains.
        feed: What the training step feeds besides the images (e.g. an `is_training` switch).
    """
    trained = set(trained)
    fed = {t.name for t in feed}
    ops = upstream_ops([endpoint])
    if images.op not in ops:
        return f"'{endpoint.name}' does not depend on the input '{images.name}'"
    for op in ops:
        if op.type in _RANDOM_OPS:
            return f"'{op.name}' ({op.type}) upstream of '{endpoint.name}' is random (e.g. dropout)"
        if op.type in _FUSED_BATCH_NORM and op.get_attr("is_training"):
            return f"batch norm '{op.name}' upstream of '{endpoint.name}' runs in training mode"
        if "/moments/" in op.name + "/":
            return f"'{op.name}' upstream of '{endpoint.name}' uses batch statistics"
        if op.type in _VARIABLE_OPS and op.name in trained:
            return f"variable '{op.name}' upstream of '{endpoint.name}' is trained"
        if any(out.name in fed for out in op.outputs):
            return f"'{op.name}' upstream of '{endpoint.name}' is fed during training"
    return None


def needs_only(fetches: Iterable[tf.Tensor | tf.Operation], endpoint: tf.Tensor, images: tf.Tensor) -> bool:
    """True when `fetches` reach `images` only through `endpoint` (so feeding the endpoint suffices)."""
    return all(op is not images.op for op in upstream_ops(fetches, stop=[endpoint]))


def cache_key(sess: tf.compat.v1.Session, endpoint: tf.Tensor, source: Source, size: tuple[int, int],
              channels: int) -> tuple[str, dict[str, Any]]:
    """The key of `source`'s features at `endpoint`: a sha256 hex digest, and what went into it (readable)."""
    graph = endpoint.graph
    sub = tf.compat.v1.graph_util.extract_sub_graph(graph.as_graph_def(), [endpoint.op.name])
    digest = hashlib.sha256()
    for node in sorted(sub.node, key=lambda n: n.name):
        node.ClearField("device")
        digest.update(node.SerializeToString(deterministic=True))
    graph_digest = digest.hexdigest()
    names = sorted(n.name for n in sub.node if n.op in _VARIABLE_OPS)
    by_name = {v.op.name: v for v in graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)}
    values = hashlib.sha256()
    read = [name for name in names if name in by_name]
    for name, value in zip(read, sess.run([by_name[name] for name in read])):  # one run for all of them
        values.update(name.encode())
        values.update(np.ascontiguousarray(value).tobytes())
    parts = {"format": FORMAT, "endpoint": endpoint.name, "graph_upstream": graph_digest,
             "variables": values.hexdigest(), "num_variables": len(names), "image_size": list(size),
             "channels": channels, "images": hashlib.sha256(json.dumps(source.fingerprint()).encode()).hexdigest(),
             "num_images": len(source)}
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return key, parts


@dataclass
class FeatureSet:
    """Cached features of one source: `features` [N, ...] and `valid` [N] (False: an undecodable image)."""

    path: str
    features: np.ndarray
    valid: np.ndarray
    labels: np.ndarray
    reused: bool
    seconds: float
    key: str

    def batch(self, stream: BatchStream, step: int) -> Batch:
        """Training batch `step` of `stream` as features (the samples of `stream.indices(step)`)."""
        return self.take(stream.indices(step), step)

    def take(self, indices: np.ndarray, step: int) -> Batch:
        """The features and labels of `indices`, undecodable images left out."""
        keep = indices[self.valid[indices]]
        return Batch(step, np.asarray(self.features[keep]), self.labels[keep], keep)

    def eval(self, batch_size: int) -> Iterable[Batch]:
        """Every sample in order, in batches of `batch_size`."""
        for k, start in enumerate(range(0, len(self.labels), batch_size)):
            yield self.take(np.arange(start, min(start + batch_size, len(self.labels))), k)


def features(sess: tf.compat.v1.Session, endpoint: tf.Tensor, images: tf.Tensor, source: Source,
             size: tuple[int, int], channels: int, cache_dir: str, batch_size: int = 64,
             feed: dict[tf.Tensor, Any] | None = None, skipped: Skipped | None = None) -> FeatureSet:
    """The features of every image of `source` at `endpoint`: read from `cache_dir` when a cache with the
    same key is there, else computed (streamed, one batch at a time) and written there.

    Args:
        sess: A session of `endpoint`'s graph, variables restored.
        endpoint: The tensor to cache (an exact function of `images`: check `why_not_exact` first).
        images: The image input placeholder.
        source: The images.
        size: `(height, width)` the images are resized to.
        channels: 1 or 3.
        cache_dir: The directory holding caches (one subdirectory per key).
        batch_size: Images per forward pass.
        feed: More feeds of the forward pass (e.g. an `is_training` switch).
        skipped: Undecodable images: skip them (their `valid` is False) or stop (the default).

    Returns:
        The `FeatureSet` (memory-mapped).
    """
    key, parts = cache_key(sess, endpoint, source, size, channels)
    folder = os.path.join(cache_dir, key[:24])
    meta_path = os.path.join(folder, "meta.json")
    if os.path.isfile(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("key") == key:
            if skipped is not None:
                skipped.files.update(meta.get("skipped", {}))
            return _open(folder, key, source, reused=True, seconds=0.0)
        shutil.rmtree(folder)  # a different key under the same prefix: never reused
    os.makedirs(cache_dir, exist_ok=True)
    start = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix=f".{key[:24]}.", dir=cache_dir)
    try:
        skipped = skipped if skipped is not None else Skipped()
        before = set(skipped.files)
        valid = np.zeros(len(source), bool)
        shape = endpoint.shape.as_list()[1:]
        with open(os.path.join(tmp, "features.npy"), "wb") as out:
            started = False
            for batch in eval_batches(source, batch_size, size, channels, skipped):
                low, high = batch.step * batch_size, min((batch.step + 1) * batch_size, len(source))
                values = sess.run(endpoint, {images: batch.images, **(feed or {})}) if len(batch.labels) else None
                if not started:
                    shape = list(values.shape[1:]) if values is not None else shape
                    if None in shape:
                        raise DataError(f"cannot cache features of '{endpoint.name}': its shape {shape} is not known "
                                        "and the first batch holds no decodable image")
                    np.lib.format.write_array_header_1_0(out, {"descr": np.dtype(np.float32).str,
                                                               "fortran_order": False,
                                                               "shape": (len(source), *shape)})
                    started = True
                chunk = np.zeros((high - low, *shape), np.float32)
                if values is not None:
                    chunk[batch.indices - low] = values
                    valid[batch.indices] = True
                out.write(chunk.tobytes())
        np.save(os.path.join(tmp, "valid.npy"), valid)
        meta = {"key": key, "parts": parts, "shape": [len(source), *shape],
                "skipped": {k: v for k, v in skipped.files.items() if k not in before}}
        with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _open(folder, key, source, reused=False, seconds=time.perf_counter() - start)


def _open(folder: str, key: str, source: Source, reused: bool, seconds: float) -> FeatureSet:
    values = np.load(os.path.join(folder, "features.npy"), mmap_mode="r")
    valid = np.load(os.path.join(folder, "valid.npy"))
    return FeatureSet(path=folder, features=values, valid=valid, labels=np.asarray(source.labels), reused=reused,
                      seconds=seconds, key=key)
