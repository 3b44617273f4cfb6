"""Small real data sets that ship inside packages, as NHWC image arrays tf1tune's nets take.

Why it exists: the shipped checkpoint `checkpoints/digits_cnn/` is trained, evaluated and tested on
scikit-learn's digits (1797 8x8 grayscale images, values 0..16, 10 classes), which needs no download.
tf1tune's nets take float images in [0, 255] (the preprocessing runs in the graph), so the digits'
0..16 scale is converted here, in one place, for the training script, the tests and the jobs alike.
"""

from __future__ import annotations

import numpy as np

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
        Tf1tuneError: `val_fraction` is not strictly between 0 and 1.
    """
    if not 0.0 < val_fraction < 1.0:
        raise Tf1tuneError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits_to_images(digits.data)
    labels = digits.target.astype(np.int64)
    x_train, x_val, y_train, y_val = train_test_split(
        images, labels, test_size=val_fraction, random_state=seed, stratify=labels
    )
    return x_train, y_train, x_val, y_val
