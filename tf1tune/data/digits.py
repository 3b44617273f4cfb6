"""Small real data sets that ship inside packages, as NHWC image arrays tf1tune's nets take.

Why it exists: the shipped checkpoint `checkpoints/digits_cnn/` is trained, evaluated and tested on
scikit-learn's digits (1797 8x8 grayscale images, values 0..16, 10 classes), which needs no download.
tf1tune's nets take float images in [0, 255] (the preprocessing runs in the graph), so the digits'
0..16 scale is converted here, in one place, for the training script, the tests and the jobs alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tf1tune.data.split import split_indices
from tf1tune.errors import Tf1tuneError

DIGITS_MAX = 16.0  # sklearn's digits are counts of set pixels in 4x4 blocks: 0..16


def digits_to_images(data: np.ndarray) -> np.ndarray:
    """Convert sklearn digits rows (values 0..16) to float32 NHWC images [N, 8, 8, 1] in [0, 255].

    Args:
        data: `load_digits().data` ([N, 64]) or `.images` ([N, 8, 8]).

    Returns:
        The images, float32, scaled by 255 / 16.

    Raises:
        Tf1tuneError: `data` does not hold 64 values per image.
    """
    array = np.asarray(data, dtype=np.float32)
    if array.size % 64 or (array.ndim > 1 and array[0].size != 64):
        raise Tf1tuneError(f"digits data must hold 64 values (8x8) per image, got shape {array.shape}")
    return (array.reshape(-1, 8, 8, 1) * np.float32(255.0 / DIGITS_MAX)).astype(np.float32)


def load_digits_split(
    seed: int = 0, val_fraction: float = 0.2
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits, split into training and validation sets, stratified by class.

    The split depends only on `seed` and `val_fraction`, so the training script and the tests see
    the same validation images.

    Args:
        seed: Random seed of the split.
        val_fraction: Fraction of the images (of each class) held out for validation, in (0, 1).

    Returns:
        `(x_train, y_train, x_val, y_val)`: images float32 [N, 8, 8, 1] in [0, 255], labels int64 [N].

    Raises:
        DataError: `val_fraction` is not strictly between 0 and 1.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits_to_images(digits.data)
    labels = digits.target.astype(np.int64)
    train, val = split_indices(labels, val_fraction, seed, "digits")
    return images[train], labels[train], images[val], labels[val]


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


def task_arrays(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The built-in task `name`: `(images float32 [N, 8, 8, 1] in [0, 255], labels int64 [N], class names)`."""
    task = TASKS[name]
    if task.part == "all":
        from sklearn.datasets import load_digits

        digits = load_digits()
        images, labels = digits_to_images(digits.data), digits.target.astype(np.int64)
    else:
        x_train, y_train, x_val, y_val = load_digits_split(seed=0, val_fraction=0.2)
        images, labels = (x_train, y_train) if task.part == "train" else (x_val, y_val)
    return images, np.asarray(task.relabel(labels), dtype=np.int64), list(task.class_names)
