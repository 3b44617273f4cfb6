"""The two shapes a data set takes: `Source` (indexed, decoded lazily) and `Dataset` (decoded, in memory).

Why both: fine-tuning streams every source through `tf.data` and never holds the images whole in memory
(`Source`: labels and where each image lives, nothing decoded), while small data, tests and export
verification want plain arrays (`Dataset`, made by `tf1tune.data.load_dataset`). A `Dataset` turns into an
array-backed `Source` with `as_source`, so every consumer of data takes a `Source`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import numpy as np

from tf1tune.errors import DataError


@dataclass(frozen=True, eq=False)
class Dataset:
    """An image classification data set held in memory.

    The arrays are read-only, so no batch function can alter the data in place.

    Attributes:
        images: float32 [N, H, W, C], values in [0, 255].
        labels: int64 [N], each in `range(len(class_names))`.
        class_names: The name of each label.
        source: Where the data came from (for messages and logs).
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    source: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        """The number of classes (`len(class_names)`)."""
        return len(self.class_names)

    @property
    def image_size(self) -> tuple[int, int]:
        """`(height, width)` of the images."""
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def channels(self) -> int:
        """The number of channels of the images."""
        return int(self.images.shape[3])


@dataclass(frozen=True, eq=False)
class Source:
    """An indexed data set: every label is known, every image is read and decoded only when a batch needs it.

    Attributes:
        kind: "folder" (image files), "tfrecord" (records of `tf.train.Example` in shards) or "array"
            (rows of a numpy array, memory-mapped for `.npz` files).
        labels: int64 [N].
        class_names: The name of each label.
        name: Where the data came from (for messages and logs).
        files: folder: the image path of each sample; tfrecord: the shard paths; array: the backing file, if any.
        locations: tfrecord only: int64 [N, 3] of (shard, byte offset of the record data, length).
        array: array only: [N, H, W, C] pixel values in [0, 255] (a `numpy.memmap` for `.npz` files).
        image_key: tfrecord only: the feature holding the encoded image.
        rows: The sample indices of the full source that this one holds (a split keeps the file tables whole).
    """

    kind: str
    labels: np.ndarray
    class_names: list[str]
    name: str
    files: tuple[str, ...] = ()
    locations: np.ndarray | None = None
    array: np.ndarray | None = None
    image_key: str | None = None
    rows: np.ndarray | None = field(default=None)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        """The number of classes (`len(class_names)`)."""
        return len(self.class_names)

    def row(self, index: int) -> int:
        """The row of the full source that sample `index` of this one is."""
        return int(self.rows[index]) if self.rows is not None else int(index)

    def describe(self, index: int) -> str:
        """Where sample `index` lives, for messages: a file path, `record K of SHARD` or `row K of FILE`."""
        row = self.row(index)
        if self.kind == "folder":
            return self.files[row]
        if self.kind == "tfrecord":
            shard = int(self.locations[row, 0])  # type: ignore[index]
            first = int(np.searchsorted(self.locations[:, 0], shard))  # type: ignore[index]
            return f"record {row - first} of {self.files[shard]}"
        return f"row {row} of {self.files[0] if self.files else self.name}"

    def subset(self, indices: np.ndarray, part: str) -> Source:
        """The samples `indices` (in that order) as a new source named `NAME [part]`."""
        indices = np.asarray(indices, dtype=np.int64)
        rows = self.rows[indices] if self.rows is not None else indices
        labels = self.labels[indices]
        labels.flags.writeable = False
        return replace(self, labels=labels, rows=rows, name=f"{self.name} [{part}]")

    def fingerprint(self) -> list[object]:
        """What identifies the images of this source, cheaply: each backing file's path, size and mtime, and
        the rows used (a feature cache is keyed by it; rewriting a file changes it)."""
        stats = []
        for path in self.files:
            info = os.stat(path)
            stats.append([os.path.abspath(path), info.st_size, info.st_mtime_ns])
        if self.kind == "array" and not self.files:
            import hashlib

            digest = hashlib.sha256()
            for start in range(0, len(self.array), 4096):  # type: ignore[arg-type]
                digest.update(np.ascontiguousarray(self.array[start:start + 4096]).tobytes())  # type: ignore[index]
            stats.append(["array", digest.hexdigest()])
        rows = self.rows if self.rows is not None else np.arange(len(self))
        return [self.kind, self.image_key, stats, np.asarray(rows, np.int64).tobytes().hex()]


def as_source(data: Source | Dataset) -> Source:
    """`data` as a `Source` (a `Dataset` becomes an array-backed one; no copy)."""
    if isinstance(data, Source):
        return data
    if isinstance(data, Dataset):
        return Source(kind="array", labels=data.labels, class_names=list(data.class_names), name=data.source,
                      array=data.images)
    raise DataError(f"expected a tf1tune.data Source or Dataset, got {type(data).__name__}")


def check_labels(labels: np.ndarray, class_names: list[str] | None, name: str) -> tuple[np.ndarray, list[str]]:
    """Check labels against class names (making names `0..max` when there are none); read-only int64 labels."""
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    if len(labels) == 0:
        raise DataError(f"'{name}' holds no samples; give a data set with at least one image per class")
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise DataError(f"'{name}': labels must be >= 0, found {low}; use labels 0..num_classes-1")
    if class_names is None:
        class_names = [str(i) for i in range(high + 1)]
    elif high >= len(class_names):
        raise DataError(f"'{name}': label {high} is out of range for {len(class_names)} class names; use labels "
                        f"0..{len(class_names) - 1} or add class names")
    labels.flags.writeable = False
    return labels, list(class_names)
