"""The one batch API: training batches addressed by step (`BatchStream`).

Why step-addressed: after `kill -9` at step k, `--resume` must continue with the very batches an
uninterrupted run would have used. The sample indices of batch `step` are a pure function of
`(seed, step, N, batch_size)`, computed from indices alone, so a streamed source decodes only what the
batch needs (`tf1tune.data.streaming`) and an in-memory `Dataset` gathers rows (`BatchStream.batch`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import tensorflow as tf

from tf1tune.data.augment import Augment, augment_batch
from tf1tune.data.source import Dataset, Source
from tf1tune.data.split import check_seed
from tf1tune.errors import DataError


def check_batch_size(batch_size: int) -> int:
    """`batch_size` as an int; a `DataError` unless it is an integer >= 1."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise DataError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return int(batch_size)


class BatchStream:
    """Training batches as a pure function of `(seed, step)`, so a resumed run gets the same batches.

    The stream is the concatenation of epochs; epoch `e` visits every sample once, in the order
    `numpy.random.default_rng([seed, e]).permutation(N)` (or in order when `shuffle=False`).
    Batch `step` holds stream positions `step * batch_size ... + batch_size - 1`, so every batch is
    full and, when `batch_size` does not divide N, one batch straddles two epochs. Augmentation of
    batch `step` is seeded from `(seed, step)` alone (`tf1tune.data.augment`).

    Args:
        data: The training data (a `Dataset` in memory, or a `Source` streamed by `tf1tune.data.streaming`).
        batch_size: Samples per batch, >= 1.
        seed: Seed of shuffling and augmentation, >= 0.
        augment: Augmentation to apply, or None for none.
        shuffle: Shuffle each epoch (True) or visit samples in order (False).

    Example:
        >>> stream = BatchStream(train, 32, seed=0, augment=Augment())
        >>> images, labels = stream.batch(0)
    """

    def __init__(self, data: Dataset | Source, batch_size: int, seed: int = 0, augment: Augment | None = None,
                 *, shuffle: bool = True) -> None:
        if augment is not None and not isinstance(augment, Augment):
            raise DataError(f"augment must be an Augment or None, got {type(augment).__name__}")
        self.data = data
        self.size = len(data)
        self.batch_size = check_batch_size(batch_size)
        self.seed = check_seed(seed)
        self.augment = augment if augment is not None and augment.active else None
        self.shuffle = bool(shuffle)
        self._orders: dict[int, np.ndarray] = {}
        self._augment_fn: Callable[[np.ndarray, int], np.ndarray] | None = None

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch, rounded up (`ceil(N / batch_size)`)."""
        return -(-self.size // self.batch_size)

    def epoch_of(self, step: int) -> int:
        """The epoch that the first sample of batch `step` belongs to."""
        return step * self.batch_size // self.size

    def _order(self, epoch: int) -> np.ndarray:
        order = self._orders.get(epoch)
        if order is None:
            n = self.size
            order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
            if len(self._orders) >= 4:
                self._orders.pop(next(iter(self._orders)))
            self._orders[epoch] = order
        return order

    def indices(self, step: int) -> np.ndarray:
        """The sample indices of batch `step`."""
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise DataError(f"step must be an integer >= 0, got {step!r}")
        positions = int(step) * self.batch_size + np.arange(self.batch_size)
        epochs, offsets = np.divmod(positions, self.size)
        out = np.empty(self.batch_size, dtype=np.int64)
        for epoch in np.unique(epochs):
            where = epochs == epoch
            out[where] = self._order(int(epoch))[offsets[where]]
        return out

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch `step` of an in-memory `Dataset`: `(images float32 [B, H, W, C] in [0, 255], labels int64 [B])`."""
        if not isinstance(self.data, Dataset):
            raise DataError("BatchStream.batch needs a Dataset in memory; stream a Source with "
                            "tf1tune.data.streaming.train_batches")
        index = self.indices(step)
        images = self.data.images[index]
        if self.augment is not None:
            images = self._augmenter()(images, int(step))
        return images, self.data.labels[index]

    def _augmenter(self) -> Callable[[np.ndarray, int], np.ndarray]:
        """`augment_batch` in a private graph and session (works whatever graph the caller has as default)."""
        if self._augment_fn is None:
            graph = tf.Graph()
            with graph.as_default():
                images = tf.compat.v1.placeholder(tf.float32, [None, None, None, None])
                step = tf.compat.v1.placeholder(tf.int64, [])
                out = augment_batch(images, self.augment, self.seed, step)  # type: ignore[arg-type]
            sess = tf.compat.v1.Session(graph=graph)
            self._augment_fn = lambda x, s: sess.run(out, {images: x, step: s})
        return self._augment_fn

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        step = 0
        while True:
            yield self.batch(step)
            step += 1

