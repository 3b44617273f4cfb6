"""Streamed batches: `tf.data` reads, decodes and resizes images in parallel and prefetches, never holding a
data set whole in memory; `load_dataset` decodes a small source into arrays through the same pipeline.

Why: a 30,000-photo folder at 224x224 is 18 GB as one float32 array. Here memory depends on the batch size
and the prefetch depth only. Training batch `step` holds the samples `BatchStream.indices(step)` (computed
from indices, the decoding stays lazy) augmented statelessly from `(seed, step)`, so a resumed run gets the
very batches an uninterrupted run would have. Images are converted to the net's channels and resized
(bilinear) to its input size; the net's own preprocessing runs in its graph.

An image that cannot be decoded stops the run with one line naming the file, or, with `skip_bad_images`,
is left out of every batch from then on (`Skipped` counts them; a skipped sample never contributes, so the
batches stay the same after a resume).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from tf1tune.data.augment import augment_batch
from tf1tune.data.batches import BatchStream, check_batch_size
from tf1tune.data.readers import open_source
from tf1tune.data.source import Dataset, Source, as_source
from tf1tune.errors import DataError

_AUTOTUNE = tf.data.AUTOTUNE
_PREFETCH = 2  # batches decoded ahead of the training step


@dataclass
class Skipped:
    """Undecodable images met so far: `allowed` says whether to skip them (else the first is an error).

    Attributes:
        allowed: Skip undecodable images instead of stopping.
        files: Where each skipped image lives (`Source.describe`) -> why it cannot be decoded.
    """

    allowed: bool = False
    files: dict[str, str] = field(default_factory=dict)

    def rows(self, source: Source) -> np.ndarray:
        """The rows of `source`'s full table that are skipped."""
        if not self.files:
            return np.zeros(0, np.int64)
        full = range(len(source.files) if source.kind == "folder" else
                     len(source.locations) if source.locations is not None else len(source.array))  # type: ignore[arg-type]
        plain = Source(kind=source.kind, labels=source.labels, class_names=source.class_names, name=source.name,
                       files=source.files, locations=source.locations, array=source.array,
                       image_key=source.image_key)
        return np.asarray([r for r in full if plain.describe(r) in self.files], np.int64)


def tf_reason(error: BaseException) -> str:
    """The first line of a TensorFlow error without its `{{function_node ...}}` and `[Op:...]` decorations."""
    text = str(getattr(error, "message", None) or error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    line = re.sub(r"\{\{[^}]*\}\}\s*", "", line)
    return re.sub(r"\s*\[Op:[^\]]*\]", "", line).strip() or type(error).__name__


def _fit(image: tf.Tensor, size: tuple[int, int], channels: int) -> tf.Tensor:
    """float32 [h, w, c] -> [size..., channels] in [0, 255]: alpha dropped, gray <-> RGB, bilinear resize."""
    known = image.shape[-1]
    if known is None:  # decoded files: 1 to 4 channels, known when the graph runs
        have = tf.shape(image)[-1]
        image = tf.cond(have >= 3, lambda: image[..., :3], lambda: image[..., :1])
        if channels == 3:
            image = tf.cond(tf.equal(tf.shape(image)[-1], 1), lambda: tf.tile(image, [1, 1, 3]), lambda: image)
        else:
            image = tf.cond(tf.equal(tf.shape(image)[-1], 3), lambda: tf.image.rgb_to_grayscale(image), lambda: image)
    else:
        image = image[..., :3] if known >= 3 else image[..., :1]
        if channels == 3 and image.shape[-1] == 1:
            image = tf.tile(image, [1, 1, 3])
        elif channels == 1 and image.shape[-1] == 3:
            image = tf.image.rgb_to_grayscale(image)
    image.set_shape([None, None, channels])
    same = tf.reduce_all(tf.equal(tf.shape(image)[:2], tf.constant(size)))
    image = tf.cond(same, lambda: image, lambda: tf.image.resize(image, size, method="bilinear"))
    image.set_shape([*size, channels])
    return tf.clip_by_value(image, 0.0, 255.0)


def _decode(encoded: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.io.decode_image(encoded, expand_animations=False), tf.float32)


def image_loader(source: Source, size: tuple[int, int], channels: int) -> Callable[[tf.Tensor], tf.Tensor]:
    """A function from a row of `source`'s full table (int64 scalar tensor) to its image, float32
    [size..., channels] in [0, 255], usable inside `tf.data` (reading and decoding run in parallel)."""
    if source.kind == "folder":
        paths = tf.constant(list(source.files))
        return lambda row: _fit(_decode(tf.io.read_file(tf.gather(paths, row))), size, channels)
    if source.kind == "tfrecord":
        files, locations, key = list(source.files), source.locations, source.image_key

        def read(row: np.ndarray) -> bytes:
            shard, offset, length = (int(v) for v in locations[int(row)])  # type: ignore[index]
            fd = os.open(files[shard], os.O_RDONLY)
            try:
                return os.pread(fd, length, offset)
            finally:
                os.close(fd)

        def load_record(row: tf.Tensor) -> tf.Tensor:
            raw = tf.numpy_function(read, [row], tf.string, stateful=False)
            raw.set_shape([])
            parsed = tf.io.parse_single_example(raw, {key: tf.io.FixedLenFeature([], tf.string)})
            return _fit(_decode(parsed[key]), size, channels)

        return load_record
    array = source.array

    def take(row: np.ndarray) -> np.ndarray:
        return np.asarray(array[int(row)], dtype=np.float32)  # type: ignore[index]

    def load_row(row: tf.Tensor) -> tf.Tensor:
        image = tf.numpy_function(take, [row], tf.float32, stateful=False)
        image.set_shape(array.shape[1:])  # type: ignore[union-attr]
        return _fit(image, size, channels)

    return load_row


def _samples(source: Source, indices: tf.data.Dataset, size: tuple[int, int], channels: int,
             bad_rows: np.ndarray) -> tf.data.Dataset:
    """`indices` (sample indices of `source`) -> `(image, label, valid)`; a skipped row gives zeros, valid False."""
    load = image_loader(source, size, channels)
    rows = tf.constant(source.rows if source.rows is not None else np.arange(len(source), dtype=np.int64))
    labels = tf.constant(np.asarray(source.labels))
    bad = tf.constant(bad_rows, tf.int64)

    def one(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        row = tf.gather(rows, index)
        skip = tf.reduce_any(tf.equal(bad, row))
        image = tf.cond(skip, lambda: tf.zeros([*size, channels], tf.float32), lambda: load(row))
        return image, tf.gather(labels, index), tf.logical_not(skip)

    return indices.map(one, num_parallel_calls=_AUTOTUNE, deterministic=True)


def _find_bad(source: Source, indices: np.ndarray, size: tuple[int, int], channels: int,
              error: BaseException) -> list[tuple[str, str]]:
    """Decode `indices` one by one; `(where, why)` of each that fails (the batch's error when none does alone)."""
    graph = tf.Graph()
    with graph.as_default():
        row = tf.compat.v1.placeholder(tf.int64, [])
        image = image_loader(source, size, channels)(row)
    found = []
    with tf.compat.v1.Session(graph=graph) as sess:
        for index in dict.fromkeys(int(i) for i in indices):
            try:
                sess.run(image, {row: source.row(index)})
            except (tf.errors.OpError, ValueError) as e:
                found.append((source.describe(index), tf_reason(e)))
    if not found:
        raise DataError(f"cannot read a batch of '{source.name}': {tf_reason(error)}") from error
    return found


def _handle_bad(source: Source, indices: np.ndarray, size: tuple[int, int], channels: int,
                skipped: Skipped, error: BaseException) -> None:
    found = _find_bad(source, indices, size, channels, error)
    if not skipped.allowed:
        where, why = found[0]
        raise DataError(f"cannot decode image {where}: {why} (--skip-bad-images skips such files); "
                        "replace or remove the file") from error
    skipped.files.update(found)


@dataclass
class Batch:
    """One batch as numpy arrays, undecodable (skipped) samples left out."""

    step: int
    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray


def _batches(make: Callable[[int, np.ndarray], tf.data.Dataset], source: Source, start: int, stop: int,
             indices_of: Callable[[int], np.ndarray], size: tuple[int, int], channels: int,
             skipped: Skipped) -> Iterator[Batch]:
    """Iterate `make(first, bad_rows)` from batch `start` to `stop`; on an undecodable image find it, then
    stop (or skip it and rebuild the pipeline at the same batch)."""
    step = start
    while step < stop:
        graph = tf.Graph()  # its own graph and session: works whatever graph or mode the caller is in
        with graph.as_default():
            iterator = tf.compat.v1.data.make_initializable_iterator(make(step, skipped.rows(source)))
            next_batch = iterator.get_next()
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(iterator.initializer)
            while step < stop:
                try:
                    images, labels, valid = sess.run(next_batch)
                except tf.errors.OutOfRangeError:
                    return
                except tf.errors.OpError as e:
                    _handle_bad(source, indices_of(step), size, channels, skipped, e)
                    break
                keep = valid if not valid.all() else slice(None)
                yield Batch(step, images[keep], labels[keep], indices_of(step)[keep])
                step += 1


def train_batches(data: Source | Dataset, stream: BatchStream, size: tuple[int, int] | None = None,
                  channels: int | None = None, start: int = 0, stop: int | None = None,
                  skipped: Skipped | None = None) -> Iterator[Batch]:
    """Training batches `start .. stop-1` of `stream`, streamed: the samples of `stream.indices(step)`,
    decoded and resized in parallel, augmented with `stream.augment` seeded from `(stream.seed, step)`.

    Args:
        data: The training data (`stream` was made for it).
        stream: The step-addressed order, batch size, seed and augmentation.
        size: `(height, width)` of the batches (default: a `Dataset`'s own).
        channels: 1 or 3 (default: a `Dataset`'s own).
        start: The first step (a resumed run's global step).
        stop: One past the last step; None for no end.
        skipped: Undecodable images met so far and whether to skip them (default: stop at the first).

    Yields:
        `Batch(step, images float32 [B, H, W, C] in [0, 255], labels int64 [B], indices)`.
    """
    source, size, channels = _shape(data, size, channels)
    skipped = skipped if skipped is not None else Skipped()
    augment, seed, batch_size = stream.augment, stream.seed, stream.batch_size
    end = stop if stop is not None else 2 ** 62

    def make(first: int, bad_rows: np.ndarray) -> tf.data.Dataset:
        steps = tf.data.Dataset.range(first, end)
        indices = steps.map(lambda s: tf.ensure_shape(tf.numpy_function(
            lambda v: stream.indices(int(v)), [s], tf.int64, stateful=False), [batch_size]))
        samples = _samples(source, indices.unbatch(), size, channels, bad_rows).batch(batch_size)
        if augment is not None:
            samples = tf.data.Dataset.zip((steps, samples)).map(
                lambda s, batch: (augment_batch(batch[0], augment, seed, s), batch[1], batch[2]),
                num_parallel_calls=_AUTOTUNE, deterministic=True)
        return samples.prefetch(_PREFETCH)

    return _batches(make, source, start, end, stream.indices, size, channels, skipped)


def eval_batches(data: Source | Dataset, batch_size: int, size: tuple[int, int] | None = None,
                 channels: int | None = None, skipped: Skipped | None = None) -> Iterator[Batch]:
    """Validation batches, streamed: in order, never shuffled, never augmented, the last partial batch included.

    Arguments as for `train_batches`; yields `Batch(k, images, labels, indices)` for batch `k`.
    """
    source, size, channels = _shape(data, size, channels)
    skipped = skipped if skipped is not None else Skipped()
    batch_size = check_batch_size(batch_size)
    n = len(source)

    def indices_of(k: int) -> np.ndarray:
        return np.arange(k * batch_size, min((k + 1) * batch_size, n), dtype=np.int64)

    def make(first: int, bad_rows: np.ndarray) -> tf.data.Dataset:
        indices = tf.data.Dataset.range(first * batch_size, n)
        return _samples(source, indices, size, channels, bad_rows).batch(batch_size).prefetch(_PREFETCH)

    return _batches(make, source, 0, -(-n // batch_size), indices_of, size, channels, skipped)


def _shape(data: Source | Dataset, size: tuple[int, int] | None,
           channels: int | None) -> tuple[Source, tuple[int, int], int]:
    if isinstance(data, Dataset):
        size, channels = size or data.image_size, channels or data.channels
    if size is None or channels is None:
        raise DataError("streaming a Source needs the image size and channels of the batches")
    return as_source(data), check_size(size), check_channels(channels)


def check_size(image_size: tuple[int, int]) -> tuple[int, int]:
    """`(height, width)` as ints; a `DataError` unless both are positive integers."""
    try:
        height, width = (int(v) for v in image_size)
        ok = height > 0 and width > 0 and all(float(v) == int(v) for v in image_size)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(f"image_size must be (height, width), two positive integers, got {image_size!r}")
    return height, width


def check_channels(channels: int) -> int:
    """`channels` unless it is not 1 or 3 (a `DataError`)."""
    if channels not in (1, 3) or isinstance(channels, bool):
        raise DataError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    return int(channels)


def load_dataset(source: str | os.PathLike[str] | Source, image_size: tuple[int, int], channels: int) -> Dataset:
    """Decode a whole data set into memory, resized to `image_size` and converted to `channels`.

    For small data, tests and export verification; fine-tuning streams instead (`train_batches`). `source` is
    anything `tf1tune.data.open_source` reads: a class-folder tree, an `.npz` file, TFRecord files (one file, a
    glob or a folder), or a built-in task (`digits`, `digits:train`, `digits-parity:val`, ...).

    Raises:
        DataError: The source does not exist, is empty, cannot be decoded, or its labels do not fit.

    Example:
        >>> data = load_dataset("digits:train", image_size=(8, 8), channels=1)
        >>> data.images.shape, data.labels.shape
        ((1437, 8, 8, 1), (1437,))
    """
    size = check_size(image_size)
    channels = check_channels(channels)
    indexed = source if isinstance(source, Source) else open_source(source)
    images = np.empty((len(indexed), *size, channels), np.float32)
    for k, batch in enumerate(eval_batches(indexed, 256, size, channels)):
        images[k * 256:k * 256 + len(batch.labels)] = batch.images
    images.flags.writeable = False
    labels = np.array(indexed.labels)
    labels.flags.writeable = False
    return Dataset(images=images, labels=labels, class_names=list(indexed.class_names), source=indexed.name)


