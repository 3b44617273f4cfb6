"""Training and validation data for fine-tuning, as numpy arrays and reproducible numpy batches.

Why it exists: the fine-tuning engine feeds a `tf.compat.v1` placeholder (float32 NHWC in [0, 255],
integer labels), so it needs plain numpy batches, and after a crash (kill -9 at step k) it must resume
with exactly the batches an uninterrupted run would have used. This module therefore:

* loads every supported source into one in-memory `Dataset` (`load_dataset`): a folder with one
  subfolder per class, an `.npz` file, TFRecord files of `tf.train.Example` (slim keys), or a named
  built-in task (`digits`, `digits:train`, `digits-parity:val`, ...); decoding and resizing use
  TensorFlow eagerly, the caller needs no graph;
* splits a dataset into training and validation parts, stratified and seeded (`split`);
* serves training batches as a pure function of `(seed, step)` (`BatchStream.batch(step)`,
  `batch_at`, `batches`), with optional seeded numpy augmentation (`Augment`);
* serves validation batches in order and never augmented (`eval_batches` takes no augmentation).

Example:
    >>> import tf1tune
    >>> from tf1tune.data import Augment, BatchStream, eval_batches, load_dataset, split
    >>> data = load_dataset("photos/", image_size=(224, 224), channels=3)
    >>> train, val = split(data, val_fraction=0.2, seed=0)
    >>> stream = BatchStream(train, batch_size=32, seed=0, augment=Augment(flip=True))
    >>> images, labels = stream.batch(step=1234)       # same batch after a restart
    >>> for images, labels in eval_batches(val, 64): ...
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from tf1tune.errors import DataError
from tf1tune.names import closest

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
TFRECORD_EXTENSIONS = (".tfrecord", ".tfrecords")
_IMAGE_KEYS = ("image/encoded", "image")
_LABEL_KEYS = ("image/class/label", "label")
_GRAY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)  # as tf.image.rgb_to_grayscale
_RESIZE_CHUNK = 256


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


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation, applied in numpy and seeded from `(seed, step)`.

    Attributes:
        flip: Flip each image horizontally with probability 1/2. Off by default: wrong for digits
            and text-like data.
        pad: Pad each image by this many zero pixels on every side, then crop a random window of the
            original size (0 turns cropping off).
        brightness: Add to each image one random offset in `[-brightness, brightness] * 255`, then
            clip to [0, 255] (0 turns it off).
    """

    flip: bool = False
    pad: int = 2
    brightness: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.pad, (int, np.integer)) or isinstance(self.pad, bool) or self.pad < 0:
            raise DataError(f"Augment.pad must be an integer >= 0 (pixels), got {self.pad!r}")
        if not 0.0 <= float(self.brightness) <= 1.0:
            raise DataError(f"Augment.brightness must be in [0, 1] (a fraction of 255), got {self.brightness!r}")


# ----------------------------------------------------------------------------------------------
# Built-in tasks: one table. part = which rows of sklearn's digits; relabel maps digit -> label.


@dataclass(frozen=True)
class _Task:
    part: str  # "all", "train" or "val": the split of `load_digits_split(seed=0, val_fraction=0.2)`
    class_names: tuple[str, ...]
    relabel: Callable[[np.ndarray], np.ndarray]


_DIGIT_NAMES = tuple(str(d) for d in range(10))
_PARITY_NAMES = ("even", "odd")


def _same(y: np.ndarray) -> np.ndarray:
    return y


def _parity(y: np.ndarray) -> np.ndarray:
    return y % 2


TASKS: dict[str, _Task] = {
    "digits": _Task("all", _DIGIT_NAMES, _same),
    "digits:train": _Task("train", _DIGIT_NAMES, _same),
    "digits:val": _Task("val", _DIGIT_NAMES, _same),
    "digits-parity": _Task("all", _PARITY_NAMES, _parity),
    "digits-parity:train": _Task("train", _PARITY_NAMES, _parity),
    "digits-parity:val": _Task("val", _PARITY_NAMES, _parity),
}


def list_tasks() -> list[str]:
    """The names of the built-in data sets `load_dataset` accepts instead of a path."""
    return sorted(TASKS)


# ----------------------------------------------------------------------------------------------
# Loading


def load_dataset(source: str | os.PathLike, image_size: tuple[int, int], channels: int) -> Dataset:
    """Load a data set into memory, resized to `image_size` and converted to `channels`.

    `source` is one of:

    * a folder with one subfolder of JPEG/PNG images per class (class names are the sorted
      subfolder names, labels their indices);
    * an `.npz` file with `x` ([N, H, W, C] or [N, H, W], pixel values in [0, 255]), `y` ([N]
      integer labels) and optionally `class_names`;
    * TFRecord files of `tf.train.Example` with `image/encoded` and `image/class/label` (slim) or
      `image` and `label`: one file, a glob, or a folder of `*.tfrecord`/`*.tfrecords`; a slim
      `labels.txt` (`0:daisy` lines) beside them names the classes;
    * a built-in task name (see `list_tasks()`): `digits`, `digits:train`, `digits:val` (the split of
      `tf1tune.datasets.load_digits_split(seed=0, val_fraction=0.2)`), `digits-parity`,
      `digits-parity:train`, `digits-parity:val` (label = digit % 2).

    Images are resized with bilinear interpolation when their size differs from `image_size`;
    grayscale becomes RGB by repetition and RGB becomes grayscale with the ITU-R 601 weights.

    Args:
        source: A path, a glob of TFRecord files, or a built-in task name.
        image_size: `(height, width)` of the returned images.
        channels: 1 (grayscale) or 3 (RGB).

    Returns:
        The `Dataset`.

    Raises:
        DataError: The source does not exist, is empty, cannot be decoded, or its labels do not fit.

    Example:
        >>> data = load_dataset("digits:train", image_size=(8, 8), channels=1)
        >>> data.images.shape, data.labels.shape
        ((1437, 8, 8, 1), (1437,))
    """
    size = _check_size(image_size)
    if channels not in (1, 3) or isinstance(channels, bool):
        raise DataError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    name = os.fspath(source)
    if name in TASKS:
        return _load_task(name, size, channels)
    if any(c in name for c in "*?["):
        files = sorted(f for f in glob.glob(name) if os.path.isfile(f))
        if not files:
            raise DataError(f"no files match the pattern '{name}'; check the path and the pattern")
        return _load_tfrecords(files, name, size, channels)
    if not os.path.exists(name):
        hint = "give a class-folder tree, an .npz file, TFRecord files or a built-in name (" + ", ".join(
            list_tasks()) + ")"
        near = closest(name, TASKS)
        if near and not os.path.dirname(name):
            hint = f"did you mean {near[0]}? built-in data sets: " + ", ".join(list_tasks())
        raise DataError(f"data source '{name}' does not exist; {hint}")
    if os.path.isdir(name):
        subdirs = _visible(name, dirs=True)
        if subdirs:
            return _load_folder(name, subdirs, size, channels)
        records = [os.path.join(name, f) for f in _visible(name, dirs=False) if f.lower().endswith(TFRECORD_EXTENSIONS)]
        if records:
            return _load_tfrecords(records, name, size, channels)
        files = _visible(name, dirs=False)
        if any(f.lower().endswith(IMAGE_EXTENSIONS) for f in files):
            example = os.path.join(name, "cat", "1.jpg")
            raise DataError(f"folder '{name}' holds images but no class subfolders; put the images of each class "
                            f"in a subfolder named for the class (e.g. {example})")
        raise DataError(f"folder '{name}' is empty of data (no class subfolders, no *.tfrecord files); "
                        "give a folder with one subfolder of images per class")
    if name.lower().endswith(".npz"):
        return _load_npz(name, size, channels)
    if name.lower().endswith(IMAGE_EXTENSIONS):
        raise DataError(f"'{name}' is a single image; give the folder above the class folders (root/<class>/<image>)")
    return _load_tfrecords([name], name, size, channels)


def _check_size(image_size: tuple[int, int]) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in image_size)
        ok = height > 0 and width > 0 and all(float(v) == int(v) for v in image_size)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(f"image_size must be (height, width), two positive integers, got {image_size!r}")
    return height, width


def _visible(folder: str, dirs: bool) -> list[str]:
    """Sorted names of the non-hidden subfolders (dirs=True) or files (dirs=False) of `folder`."""
    names = [n for n in os.listdir(folder) if not n.startswith(".")]
    return sorted(n for n in names if os.path.isdir(os.path.join(folder, n)) == dirs)


def _load_task(name: str, size: tuple[int, int], channels: int) -> Dataset:
    from tf1tune.datasets import digits_to_images, load_digits_split

    task = TASKS[name]
    if task.part == "all":
        from sklearn.datasets import load_digits

        digits = load_digits()
        images, labels = digits_to_images(digits.data), digits.target.astype(np.int64)
    else:
        x_train, y_train, x_val, y_val = load_digits_split(seed=0, val_fraction=0.2)
        images, labels = (x_train, y_train) if task.part == "train" else (x_val, y_val)
    labels = np.asarray(task.relabel(labels), dtype=np.int64)
    return _make(_fit(images, size, channels, name), labels, list(task.class_names), name)


def _load_folder(root: str, classes: list[str], size: tuple[int, int], channels: int) -> Dataset:
    images, labels = [], []
    for label, cls in enumerate(classes):
        folder = os.path.join(root, cls)
        files = [f for f in _visible(folder, dirs=False) if f.lower().endswith(IMAGE_EXTENSIONS)]
        if not files:
            raise DataError(f"class folder '{folder}' has no images (.jpg, .jpeg, .png); add images or remove "
                            "the folder")
        for f in files:
            path = os.path.join(folder, f)
            with open(path, "rb") as stream:
                images.append(_decode(stream.read(), path, size, channels))
            labels.append(label)
    return _make(np.stack(images), np.asarray(labels, dtype=np.int64), list(classes), root)


def _decode(data: bytes, where: str, size: tuple[int, int], channels: int) -> np.ndarray:
    """One encoded JPEG/PNG image -> float32 [H, W, channels] in [0, 255], resized to `size`."""
    import tensorflow as tf

    try:
        image = tf.io.decode_image(data, expand_animations=False).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError, ValueError) as e:
        raise DataError(f"cannot decode image {where}: {_tf_reason(e)}; replace or remove the file") from e
    return _fit(image[None].astype(np.float32), size, channels, where)[0]


def _tf_reason(error: Exception) -> str:
    """The first line of a TensorFlow error without its `{{function_node ...}}` and `[Op:...]` decorations."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    line = re.sub(r"\{\{[^}]*\}\}\s*", "", line)
    return re.sub(r"\s*\[Op:[^\]]*\]", "", line).strip() or type(error).__name__


def _fit(images: np.ndarray, size: tuple[int, int], channels: int, where: str) -> np.ndarray:
    """float [N, H, W, C] -> float32 [N, size..., channels] in [0, 255] (bilinear resize, channel conversion)."""
    images = _convert_channels(np.asarray(images, dtype=np.float32), channels, where)
    if images.shape[1:3] != size:
        import tensorflow as tf

        chunks = [tf.image.resize(images[i:i + _RESIZE_CHUNK], size, method="bilinear").numpy()
                  for i in range(0, len(images), _RESIZE_CHUNK)]
        images = np.concatenate(chunks) if chunks else np.zeros((0, *size, channels), np.float32)
    return np.clip(images, 0.0, 255.0).astype(np.float32)


def _convert_channels(images: np.ndarray, channels: int, where: str) -> np.ndarray:
    have = images.shape[-1]
    if have == 4:  # RGBA: drop alpha
        images, have = images[..., :3], 3
    elif have == 2:  # gray + alpha
        images, have = images[..., :1], 1
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return np.repeat(images, 3, axis=-1)
    if have == 3 and channels == 1:
        return (images @ _GRAY_WEIGHTS)[..., None]
    raise DataError(f"{where}: images have {images.shape[-1]} channels, cannot convert to {channels}; "
                    "use 1 (grayscale), 3 (RGB) or 4 (RGBA) channel images")


def _load_npz(path: str, size: tuple[int, int], channels: int) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except Exception as e:  # zipfile.BadZipFile, ValueError (object arrays), OSError ...
        raise DataError(f"cannot read '{path}' as an .npz file ({type(e).__name__}: {e}); save it with "
                        "numpy.savez(path, x=images, y=labels)") from e
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        have = ", ".join(sorted(arrays)) or "none"
        raise DataError(f"'{path}' has no array {' or '.join(missing)} (it has: {have}); "
                        "save it with numpy.savez(path, x=images, y=labels)")
    x, y = arrays["x"], arrays["y"]
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise DataError(f"'{path}': x must be [N, H, W, C] or [N, H, W], got shape {x.shape}")
    if y.ndim != 1:
        raise DataError(f"'{path}': y must be [N] integer labels, got shape {y.shape}")
    if len(x) != len(y):
        raise DataError(f"'{path}': x has {len(x)} images but y has {len(y)} labels; they must have the same length")
    if y.dtype.kind not in "iu":
        raise DataError(f"'{path}': y must hold integer labels, got dtype {y.dtype}; save y.astype('int64')")
    if x.dtype.kind not in "iuf" or x.dtype.kind == "b":
        raise DataError(f"'{path}': x must be numeric pixel values in [0, 255], got dtype {x.dtype}")
    if len(x):
        low, high = float(x.min()), float(x.max())
        if low < 0 or high > 255:
            raise DataError(f"'{path}': x values must be in [0, 255], got [{low:g}, {high:g}]; rescale the images")
        if x.dtype.kind == "f" and 0 < high <= 1.0:
            raise DataError(f"'{path}': x looks scaled to [0, 1] (max {high:g}) but tf1tune expects pixel values "
                            "in [0, 255]; save x * 255")
    names = None
    if "class_names" in arrays:
        names = [str(n) for n in np.asarray(arrays["class_names"]).reshape(-1)]
    images = _fit(x, size, channels, path)
    return _make(images, y.astype(np.int64), names, path)


def _load_tfrecords(files: list[str], source: str, size: tuple[int, int], channels: int) -> Dataset:
    import tensorflow as tf

    images, labels = [], []
    for path in files:
        try:
            for i, raw in enumerate(tf.data.TFRecordDataset(path)):
                where = f"record {i} of {path}"
                try:
                    example = tf.train.Example.FromString(raw.numpy())
                except Exception as e:  # google.protobuf.message.DecodeError
                    raise DataError(f"{where} is not a tf.train.Example ({e}); write records with "
                                    "tf.train.Example(...).SerializeToString()") from e
                feature = example.features.feature
                image_key = next((k for k in _IMAGE_KEYS if k in feature), None)
                label_key = next((k for k in _LABEL_KEYS if k in feature), None)
                if image_key is None or label_key is None:
                    raise DataError(f"{where} has no {'image' if image_key is None else 'label'} feature (it has: "
                                    f"{', '.join(sorted(feature)) or 'none'}); expected "
                                    f"{' or '.join(_IMAGE_KEYS)} and {' or '.join(_LABEL_KEYS)}")
                encoded = feature[image_key].bytes_list.value
                value = feature[label_key].int64_list.value
                if len(encoded) != 1 or len(value) != 1:
                    raise DataError(f"{where}: '{image_key}' must hold one encoded image (bytes) and '{label_key}' "
                                    "one int64 label")
                images.append(_decode(encoded[0], where, size, channels))
                labels.append(int(value[0]))
        except (tf.errors.DataLossError, tf.errors.NotFoundError) as e:
            raise DataError(f"cannot read '{path}' as a TFRecord file ({_tf_reason(e)}); give an .npz file, a "
                            "class-folder tree or TFRecord files of tf.train.Example") from e
    if not images:
        raise DataError(f"'{source}' holds no records; write tf.train.Example records with image/encoded and "
                        "image/class/label")
    names = _slim_label_file(os.path.dirname(os.path.abspath(files[0])))
    return _make(np.stack(images), np.asarray(labels, dtype=np.int64), names, source)


def _slim_label_file(folder: str) -> list[str] | None:
    """Class names from slim's `labels.txt` (`<label>:<name>` lines) in `folder`, if there is one."""
    path = os.path.join(folder, "labels.txt")
    if not os.path.isfile(path):
        return None
    table = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            label, sep, name = line.strip().partition(":")
            if sep and label.strip().isdigit():
                table[int(label)] = name.strip()
    if not table:
        return None
    return [table.get(i, str(i)) for i in range(max(table) + 1)]


def _make(images: np.ndarray, labels: np.ndarray, class_names: list[str] | None, source: str) -> Dataset:
    """Check labels against class names and freeze the arrays."""
    if len(images) == 0:
        raise DataError(f"'{source}' holds no samples; give a data set with at least one image per class")
    if len(images) != len(labels):
        raise DataError(f"'{source}': {len(images)} images but {len(labels)} labels; they must have the same length")
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise DataError(f"'{source}': labels must be >= 0, found {low}; use labels 0..num_classes-1")
    if class_names is None:
        class_names = [str(i) for i in range(high + 1)]
    elif high >= len(class_names):
        raise DataError(f"'{source}': label {high} is out of range for {len(class_names)} class names; use labels "
                        f"0..{len(class_names) - 1} or add class names")
    images = np.ascontiguousarray(images, dtype=np.float32)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return Dataset(images=images, labels=labels, class_names=list(class_names), source=str(source))


# ----------------------------------------------------------------------------------------------
# Splitting


def split(dataset: Dataset, val_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Split `dataset` into training and validation parts, stratified by class and seeded.

    Each class present puts `round(n * val_fraction)` of its `n` samples into validation, at least
    one and at most `n - 1`. Both parts keep the original sample order.

    Args:
        dataset: The data set to split.
        val_fraction: Fraction of each class held out for validation, strictly between 0 and 1.
        seed: Random seed; the same seed gives the same split.

    Returns:
        `(train, val)`.

    Raises:
        DataError: `val_fraction` is out of range, or a class has fewer than 2 samples.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    classes, counts = np.unique(dataset.labels, return_counts=True)
    small = [f"{dataset.class_names[c]} ({n})" for c, n in zip(classes, counts) if n < 2]
    if small:
        raise DataError(f"cannot split '{dataset.source}': class(es) {', '.join(small)} have fewer than 2 samples; "
                        "add samples or give separate validation data")
    rng = np.random.default_rng([_check_seed(seed), 0x5B117])
    val_mask = np.zeros(len(dataset), dtype=bool)
    for c, n in zip(classes, counts):
        members = np.flatnonzero(dataset.labels == c)
        n_val = min(max(int(round(n * val_fraction)), 1), n - 1)
        val_mask[rng.permutation(members)[:n_val]] = True
    return _subset(dataset, ~val_mask, "train"), _subset(dataset, val_mask, "val")


def _subset(dataset: Dataset, mask: np.ndarray, part: str) -> Dataset:
    images, labels = dataset.images[mask], dataset.labels[mask]
    images.flags.writeable = False
    labels.flags.writeable = False
    return dataclasses.replace(dataset, images=images, labels=labels, source=f"{dataset.source} [{part} split]")


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


# ----------------------------------------------------------------------------------------------
# Batches


class BatchStream:
    """Training batches as a pure function of `(seed, step)`, so a resumed run gets the same batches.

    The stream is the concatenation of epochs; epoch `e` visits every sample once, in the order
    `numpy.random.default_rng([seed, e]).permutation(N)` (or in order when `shuffle=False`).
    Batch `step` holds stream positions `step * batch_size ... + batch_size - 1`, so every batch is
    full and, when `batch_size` does not divide N, one batch straddles two epochs. Augmentation of
    batch `step` is seeded from `(seed, step)` alone.

    Args:
        dataset: The training data.
        batch_size: Samples per batch, >= 1.
        seed: Seed of shuffling and augmentation, >= 0.
        augment: Augmentation to apply, or None for none.
        shuffle: Shuffle each epoch (True) or visit samples in order (False).

    Example:
        >>> stream = BatchStream(train, 32, seed=0, augment=Augment())
        >>> images, labels = stream.batch(0)
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int = 0, augment: Augment | None = None,
                 *, shuffle: bool = True) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise DataError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if augment is not None and not isinstance(augment, Augment):
            raise DataError(f"augment must be an Augment or None, got {type(augment).__name__}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.seed = _check_seed(seed)
        self.augment = augment
        self.shuffle = bool(shuffle)
        self._orders: dict[int, np.ndarray] = {}

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch, rounded up (`ceil(N / batch_size)`)."""
        return -(-len(self.dataset) // self.batch_size)

    def epoch_of(self, step: int) -> int:
        """The epoch that the first sample of batch `step` belongs to."""
        return step * self.batch_size // len(self.dataset)

    def _order(self, epoch: int) -> np.ndarray:
        order = self._orders.get(epoch)
        if order is None:
            n = len(self.dataset)
            order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
            if len(self._orders) >= 4:
                self._orders.pop(next(iter(self._orders)))
            self._orders[epoch] = order
        return order

    def indices(self, step: int) -> np.ndarray:
        """The dataset indices of batch `step`."""
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise DataError(f"step must be an integer >= 0, got {step!r}")
        n = len(self.dataset)
        positions = int(step) * self.batch_size + np.arange(self.batch_size)
        epochs, offsets = np.divmod(positions, n)
        out = np.empty(self.batch_size, dtype=np.int64)
        for epoch in np.unique(epochs):
            where = epochs == epoch
            out[where] = self._order(int(epoch))[offsets[where]]
        return out

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch `step`: `(images float32 [B, H, W, C] in [0, 255], labels int64 [B])`, new arrays."""
        index = self.indices(step)
        images = self.dataset.images[index]
        if self.augment is not None:
            images = _augment(images, self.augment, np.random.default_rng([self.seed, int(step), 0xA06]))
        return images, self.dataset.labels[index]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        step = 0
        while True:
            yield self.batch(step)
            step += 1


def batch_at(dataset: Dataset, step: int, batch_size: int, seed: int,
             augment: Augment | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The shuffled training batch for global step `step` (`BatchStream(...).batch(step)`)."""
    return BatchStream(dataset, batch_size, seed, augment).batch(step)


def batches(dataset: Dataset, batch_size: int, *, shuffle: bool = True, seed: int = 0,
            augment: Augment | None = None, start_step: int = 0,
            num_steps: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Training batches from global step `start_step` on: those of `BatchStream` (see there).

    Args:
        dataset: The training data.
        batch_size: Samples per batch.
        shuffle: Shuffle each epoch (seeded by `(seed, epoch)`).
        seed: Seed of shuffling and augmentation.
        augment: Augmentation, or None.
        start_step: The first global step to yield (to resume a run).
        num_steps: How many batches to yield; None for no end.

    Yields:
        `(images, labels)` numpy batches.
    """
    stream = BatchStream(dataset, batch_size, seed, augment, shuffle=shuffle)
    step = start_step
    while num_steps is None or step < start_step + num_steps:
        yield stream.batch(step)
        step += 1


def eval_batches(dataset: Dataset, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Validation batches: in order, never shuffled, never augmented, the last partial batch included.

    Args:
        dataset: The validation data.
        batch_size: Samples per batch (the last batch may be smaller).

    Yields:
        `(images, labels)` copies of consecutive slices of the data.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise DataError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    for start in range(0, len(dataset), batch_size):
        yield dataset.images[start:start + batch_size].copy(), dataset.labels[start:start + batch_size].copy()


def _augment(images: np.ndarray, augment: Augment, rng: np.random.Generator) -> np.ndarray:
    """Flip / pad-and-crop / brightness, per image, in numpy; returns a new float32 array in [0, 255]."""
    n, height, width, _ = images.shape
    flips = rng.random(n) < 0.5
    offsets = rng.integers(0, 2 * augment.pad + 1, size=(n, 2))
    deltas = np.asarray(rng.uniform(-augment.brightness, augment.brightness, size=n), np.float32) * np.float32(255.0)
    out = images.copy()
    if augment.flip:
        out[flips] = out[flips, :, ::-1, :]
    if augment.pad:
        p = augment.pad
        padded = np.pad(out, ((0, 0), (p, p), (p, p), (0, 0)))
        for i, (dy, dx) in enumerate(offsets):
            out[i] = padded[i, dy:dy + height, dx:dx + width]
    if augment.brightness:
        out += deltas[:, None, None, None]
        np.clip(out, 0.0, 255.0, out=out)
    return out
