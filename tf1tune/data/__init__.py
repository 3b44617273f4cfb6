"""Training and validation data for fine-tuning: indexed sources, streamed batches, the feature cache.

* `open_source` indexes a class-folder tree, TFRecord shards, an `.npz` file or a built-in task
  (`tf1tune.data.readers`) into a `Source` without decoding an image;
* `split` makes the one stratified, seeded training/validation split (`tf1tune.data.split`);
* `BatchStream` addresses training batches by step (`tf1tune.data.batches`), `Augment` augments them
  statelessly in `(seed, step)` (`tf1tune.data.augment`);
* `train_batches` / `eval_batches` stream them through `tf.data` (`tf1tune.data.streaming`), `load_dataset`
  decodes a small source into memory;
* `tf1tune.data.feature_cache` computes a frozen base's features once per image.

Example:
    >>> from tf1tune.data import Augment, BatchStream, open_source, split, train_batches
    >>> train, val = split(open_source("photos/"), val_fraction=0.2, seed=0)
    >>> stream = BatchStream(train, 32, seed=0, augment=Augment(flip=True))
    >>> for batch in train_batches(train, stream, (224, 224), 3, start=1234, stop=1240): ...
"""

from tf1tune.data.augment import Augment, augment_batch
from tf1tune.data.batches import BatchStream
from tf1tune.data.digits import digits_to_images, list_tasks, load_digits_split
from tf1tune.data.feeding import RunData, RunFeeder, open_run_data
from tf1tune.data.readers import open_source
from tf1tune.data.source import Dataset, Source, as_source
from tf1tune.data.split import split, split_indices
from tf1tune.data.streaming import Batch, Skipped, eval_batches, load_dataset, train_batches

__all__ = ["Augment", "Batch", "BatchStream", "Dataset", "RunData", "RunFeeder", "Skipped", "Source", "as_source",
           "augment_batch", "digits_to_images", "eval_batches", "list_tasks", "load_dataset", "load_digits_split",
           "open_run_data", "open_source", "split", "split_indices", "train_batches"]
