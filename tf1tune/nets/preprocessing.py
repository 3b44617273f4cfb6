"""Input preprocessing the published checkpoints expect. Every function takes float images in [0, 255]."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from tf1tune.names import not_found

_VGG_MEANS = (123.68, 116.78, 103.94)


def inception(images: tf.Tensor) -> tf.Tensor:
    """Scale to [-1, 1] (Inception, ResNet V2, MobileNet checkpoints)."""
    return images / 127.5 - 1.0


def vgg(images: tf.Tensor) -> tf.Tensor:
    """Subtract the ImageNet RGB means (VGG and ResNet V1 checkpoints)."""
    return images - tf.constant(_VGG_MEANS, dtype=images.dtype)


def unit(images: tf.Tensor) -> tf.Tensor:
    """Scale to [0, 1] (the small nets trained by tf1tune's own scripts)."""
    return images / 255.0


PREPROCESSING: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {"inception": inception, "vgg": vgg, "unit": unit}


def get_preprocessing(name: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """The preprocessing function called `name`."""
    try:
        return PREPROCESSING[name]
    except KeyError:
        raise not_found("preprocessing", name, PREPROCESSING) from None
