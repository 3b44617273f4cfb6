"""Training-time augmentation, stateless in `(seed, step)` so that a resumed run augments exactly as before.

Why stateless: after `kill -9` at step k, `--resume` must feed batch k+1 exactly as an uninterrupted run
would. Every random number here comes from TensorFlow's stateless random ops seeded by `(seed, step)`, so
batch `step` is augmented the same way in any process, in the `tf.data` pipeline or eagerly. Validation
batches are never augmented (the pipelines in `tf1tune.data.streaming` only call this for training).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tf1tune.errors import DataError


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation, applied per image and seeded from `(seed, step)`.

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

    @property
    def active(self) -> bool:
        """True when this changes images at all."""
        return bool(self.flip or self.pad or self.brightness)


def augment_batch(images: tf.Tensor, augment: Augment, seed: int | tf.Tensor, step: int | tf.Tensor) -> tf.Tensor:
    """Augment a float32 [B, H, W, C] batch in [0, 255]; the result depends only on `(images, seed, step)`.

    Each image gets its own flip (p=1/2, when `flip`), crop offset in the zero-padded image and brightness
    offset; the result is clipped to [0, 255].
    """
    images = tf.convert_to_tensor(images, tf.float32)
    base = tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)])
    n = tf.shape(images)[0]
    height, width = tf.shape(images)[1], tf.shape(images)[2]

    def draw(salt: int, shape: tf.Tensor, **kwargs: object) -> tf.Tensor:
        seed_pair = tf.random.experimental.stateless_fold_in(base, salt)
        return tf.random.stateless_uniform(shape, seed=seed_pair, **kwargs)

    out = images
    if augment.flip:
        flips = draw(1, tf.reshape(n, [1])) < 0.5
        out = tf.where(flips[:, None, None, None], tf.reverse(out, axis=[2]), out)
    if augment.pad:
        p = int(augment.pad)
        padded = tf.pad(out, [[0, 0], [p, p], [p, p], [0, 0]])
        offsets = draw(2, tf.stack([n, 2]), minval=0, maxval=2 * p + 1, dtype=tf.int32)
        rows = offsets[:, :1] + tf.range(height)[None, :]  # [B, H]
        cols = offsets[:, 1:] + tf.range(width)[None, :]  # [B, W]
        out = tf.gather(padded, rows, axis=1, batch_dims=1)
        out = tf.gather(out, cols, axis=2, batch_dims=1)
    if augment.brightness:
        deltas = draw(3, tf.reshape(n, [1]), minval=-float(augment.brightness), maxval=float(augment.brightness))
        out = tf.clip_by_value(out + deltas[:, None, None, None] * 255.0, 0.0, 255.0)
    return out
