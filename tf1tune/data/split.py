"""The one stratified, seeded split of a data set into training and validation parts.

Why one: the shipped digits checkpoint was trained on scikit-learn's stratified `train_test_split` of the
digits (seed 0, 20%), and a run without `--val-data` splits its training data the same way. Both go through
`split_indices`, which works on labels alone, so a streamed source is split without decoding an image.
"""

from __future__ import annotations

import numpy as np

from tf1tune.data.source import Dataset, Source
from tf1tune.errors import DataError


def check_seed(seed: int) -> int:
    """`seed` as an int; a `DataError` unless it is an integer >= 0."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def split_indices(labels: np.ndarray, val_fraction: float, seed: int, name: str = "the data",
                  class_names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a stratified, seeded training/validation split of `labels`.

    It is scikit-learn's `train_test_split(arange(N), test_size=val_fraction, random_state=seed,
    stratify=labels)`: each class keeps its share in both parts, and the same seed gives the same split.

    Args:
        labels: int [N] class labels.
        val_fraction: Fraction held out for validation, strictly between 0 and 1.
        seed: Random seed, >= 0.
        name: The data's name, for messages.
        class_names: Names of the labels, for messages.

    Returns:
        `(train_indices, val_indices)`, int64, in the split's (shuffled) order.

    Raises:
        DataError: `val_fraction` is out of range, or a class has fewer than 2 samples.
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    small = [f"{class_names[c] if class_names else c} ({n})" for c, n in zip(classes, counts) if n < 2]
    if small:
        raise DataError(f"cannot split '{name}': class(es) {', '.join(small)} have fewer than 2 samples; "
                        "add samples or give separate validation data")
    if round(len(labels) * val_fraction) < len(classes) or len(labels) - round(len(labels) * val_fraction) < len(classes):
        raise DataError(f"cannot split '{name}': {len(labels)} samples of {len(classes)} classes leave too few for "
                        f"val_fraction {val_fraction} to hold one of each class in both parts; add samples, change "
                        "val_fraction or give separate validation data")
    train, val = train_test_split(np.arange(len(labels)), test_size=val_fraction, random_state=check_seed(seed),
                                  stratify=labels)
    return train.astype(np.int64), val.astype(np.int64)


def split(data: Dataset | Source, val_fraction: float, seed: int) -> tuple[Dataset | Source, Dataset | Source]:
    """Split a `Dataset` or `Source` into `(train, val)` with `split_indices` (stratified and seeded).

    Raises:
        DataError: See `split_indices`.
    """
    name = data.source if isinstance(data, Dataset) else data.name
    train, val = split_indices(data.labels, val_fraction, seed, name, data.class_names)
    if isinstance(data, Source):
        return data.subset(train, "train split"), data.subset(val, "val split")
    return _take(data, train, "train"), _take(data, val, "val")


def _take(data: Dataset, indices: np.ndarray, part: str) -> Dataset:
    images, labels = data.images[indices], data.labels[indices]
    images.flags.writeable = False
    labels.flags.writeable = False
    return Dataset(images=images, labels=labels, class_names=list(data.class_names),
                   source=f"{data.source} [{part} split]")
