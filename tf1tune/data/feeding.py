"""What a fine-tuning run feeds: streamed images, or a frozen base's cached features, step by step.

Why one place: the training loop asks for the feed of step `s` and for the validation batches, and does not
care whether they come from the `tf.data` pipeline (`tf1tune.data.streaming`) or from the feature cache
(`tf1tune.data.feature_cache`); `RunFeeder` decides per phase, keeps the streamed iterator running across
steps, and rebuilds it only when a run jumps (a resume, a phase that leaves the cache).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from tf1tune.data.augment import Augment
from tf1tune.data.batches import BatchStream
from tf1tune.data.feature_cache import FeatureSet, needs_only, why_not_exact
from tf1tune.data.readers import open_source
from tf1tune.data.source import Source
from tf1tune.data.split import split
from tf1tune.data.streaming import Batch, Skipped, eval_batches, train_batches
from tf1tune.errors import DataError


@dataclass
class RunData:
    """A run's training and validation sources (indexed, nothing decoded) and its undecodable images."""

    train: Source
    val: Source
    skipped: Skipped = field(default_factory=Skipped)


def open_run_data(train_data: str, val_data: str | None, val_fraction: float, seed: int,
                  skip_bad_images: bool = False) -> RunData:
    """Index the training data and the validation data (or split `val_fraction` of the training data off)."""
    train = open_source(train_data)
    if val_data:
        val = open_source(val_data)
    else:
        train, val = split(train, val_fraction, seed)  # type: ignore[assignment]
    return RunData(train=train, val=val, skipped=Skipped(allowed=skip_bad_images))


def channel_notes(data: RunData, channels: int) -> list[str]:
    """Check the channels of array data (`.npz`, named tasks) against the net's; return one note per conversion.

    Image files are decoded to the net's channels as photos always are (gray <-> RGB, alpha dropped), so only
    arrays are checked: 1, 3 or 4 (RGBA) channels are converted with a note, any other count is an error,
    since no conversion of it is the image the user meant.

    Raises:
        DataError: an array whose channel count is not 1, 3 or 4.
    """
    notes: list[str] = []
    for role, source in (("training", data.train), ("validation", data.val)):
        if source.kind != "array" or source.array is None:
            continue
        have = int(source.array.shape[-1])
        if have not in (1, 3, 4):
            raise DataError(f"{role} data '{source.name}': x has {have} channels but the net takes {channels}; "
                            "give images with 1 (gray), 3 (RGB) or 4 (RGBA) channels")
        if have != channels:
            what = {1: "grayscale", 3: "RGB"}[channels] if channels in (1, 3) else f"{channels} channels"
            kind = {1: "gray", 3: "RGB", 4: "RGBA"}[have]
            notes.append(f"{role} data '{source.name}': x has {have} channels ({kind}) but the net takes "
                         f"{channels}; converting to {what}")
    return notes


def cached_phases(train_endpoint: tf.Tensor | None, eval_endpoint: tf.Tensor | None, images: tf.Tensor,
                  phase_variables: Sequence[Sequence[str]], phase_fetches: Sequence[Sequence[Any]],
                  feed: dict[tf.Tensor, Any], augment: Augment | None) -> tuple[list[bool], str | None]:
    """Which phases can train from cached features, and why the first one that cannot, cannot.

    Phase `p` can when the endpoint's features are exact (`why_not_exact`) with the variables of phases
    1..p trained, no augmentation is on, and the phase's fetches reach the input only through the endpoint.
    Once a phase cannot, no later phase can (the base may have moved).
    """
    flags: list[bool] = []
    reason = None
    if train_endpoint is None or eval_endpoint is None:
        reason = "the model has no endpoint below its head"
    elif augment is not None and augment.active:
        reason = "augmentation is on (the features would differ on every step)"
    trained: set[str] = set()
    for variables, fetches in zip(phase_variables, phase_fetches):
        trained |= set(variables)
        if reason is None:
            reason = why_not_exact(train_endpoint, images, trained, feed) or \
                why_not_exact(eval_endpoint, images, trained, {})
        if reason is None and not needs_only(fetches, train_endpoint, images):
            reason = f"the training step reaches the input other than through '{train_endpoint.name}'"  # type: ignore[union-attr]
        flags.append(reason is None)
    return flags, reason


class RunFeeder:
    """The feeds of a run's training steps and validation passes.

    Args:
        data: The run's sources.
        stream: The step-addressed training order (batch size, seed, augmentation).
        size: `(height, width)` of the images.
        channels: 1 or 3.
        images: The image input tensor.
        labels: The label input tensor.
        train_feed: What every training step feeds besides images and labels.
        eval_feed: What every validation pass feeds besides the images (an imported graph's `is_training`
            switches False, its `set` placeholders).
    """

    def __init__(self, data: RunData, stream: BatchStream, size: tuple[int, int], channels: int,
                 images: tf.Tensor, labels: tf.Tensor, train_feed: dict[tf.Tensor, Any],
                 eval_feed: dict[tf.Tensor, Any] | None = None) -> None:
        self.data, self.stream, self.size, self.channels = data, stream, size, channels
        self.images, self.labels, self.extra = images, labels, dict(train_feed)
        self.eval_extra = dict(eval_feed or {})
        self.train_features: FeatureSet | None = None
        self.val_features: FeatureSet | None = None
        self.train_endpoint: tf.Tensor | None = None
        self.eval_endpoint: tf.Tensor | None = None
        self._iterator: Iterator[Batch] | None = None
        self._next_step = -1

    def use_features(self, train: FeatureSet, val: FeatureSet, train_endpoint: tf.Tensor,
                     eval_endpoint: tf.Tensor) -> None:
        """Serve cached features (for the steps and validation passes asked with `cached=True`)."""
        self.train_features, self.val_features = train, val
        self.train_endpoint, self.eval_endpoint = train_endpoint, eval_endpoint

    def train(self, step: int, cached: bool) -> tuple[dict[tf.Tensor, Any], np.ndarray]:
        """The feed of training step `step` and its labels."""
        if cached:
            batch = self.train_features.batch(self.stream, step)  # type: ignore[union-attr]
            inputs = self.train_endpoint
        else:
            if self._iterator is None or step != self._next_step:
                self._iterator = train_batches(self.data.train, self.stream, self.size, self.channels, start=step,
                                               skipped=self.data.skipped)
            batch = next(self._iterator)
            self._next_step = step + 1
            inputs = self.images
        if not len(batch.labels):
            raise DataError(f"every image of training batch {step} is undecodable; check '{self.data.train.name}'")
        return {inputs: batch.images, self.labels: batch.labels, **self.extra}, batch.labels

    def validation(self, batch_size: int, cached: bool) -> Iterator[tuple[dict[tf.Tensor, Any], np.ndarray]]:
        """Feeds of the validation batches (in order, never augmented) and their labels."""
        if cached:
            for batch in self.val_features.eval(batch_size):  # type: ignore[union-attr]
                yield {self.eval_endpoint: batch.images, **self.eval_extra}, batch.labels
            return
        for batch in eval_batches(self.data.val, batch_size, self.size, self.channels, self.data.skipped):
            yield {self.images: batch.images, **self.eval_extra}, batch.labels

    def close(self) -> None:
        """Stop the streamed pipeline (its session closes)."""
        if self._iterator is not None:
            self._iterator.close()  # type: ignore[attr-defined]
            self._iterator = None
