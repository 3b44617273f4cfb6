"""Where a run trains from cached features: the per-phase choice and the extraction (`tf1tune.data.feature_cache`).

A phase trains from the frozen base's cached features when that is exact (see `cached_phases`) and the run
has `feature_cache` on (the default; `--no-feature-cache` turns it off). The features are computed once,
after the restore, for the training and the validation data, into `feature_cache_dir` (default
`RUN/feature_cache`); `metrics.json` records what was used, the extraction time and why a phase was not cached.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import tensorflow as tf

from tf1tune.data import Augment, feature_cache
from tf1tune.data.feeding import RunFeeder, cached_phases
from tf1tune.train.config import FinetuneConfig
from tf1tune.train.task import TaskModel, Training


def cache_plan(model: TaskModel, config: FinetuneConfig, training: Training,
               augment: Augment | None) -> tuple[list[bool], str | None]:
    """Which phases train from cached features, and why the first one that does not, does not."""
    phases = config.resolved_phases()
    if not config.feature_cache:
        return [False] * len(phases), "turned off (--no-feature-cache)"
    variables = [[name for _, names in op.groups for name in names] for op in training.train_ops]
    fetches = [[op.op, training.loss, model.train_logits] for op in training.train_ops]
    return cached_phases(model.train_endpoint, model.eval_endpoint, model.images, variables, fetches,
                         # the source's switches and `set` values: fixed, and frozen layers' conds already sent to
                         # inference (a trained layer's training branch is refused on its own)
                         {t: v for t, v in model.train_feed.items() if t not in model.eval_feed}, augment)


def prepare_cache(sess: tf.compat.v1.Session, model: TaskModel, config: FinetuneConfig, feeder: RunFeeder,
                  cached: list[bool], reason: str | None, start: int, run_dir: str) -> dict[str, Any]:
    """Compute (or reuse) the features when a phase still to run trains from them; what metrics.json records."""
    bounds = np.cumsum([p.steps for p in config.resolved_phases()])
    if not any(cached):
        return {"used": False, "reason": reason}
    if not [i for i, c in enumerate(cached) if c and bounds[i] > start]:
        return {"used": True}  # a resumed run past its cached phases
    assert model.train_endpoint is not None and model.eval_endpoint is not None  # cached_phases
    cache_dir = config.feature_cache_dir or os.path.join(run_dir, "feature_cache")
    size, channels, batch, skipped = model.image_size, model.channels, config.batch_size, feeder.data.skipped
    train = feature_cache.features(sess, model.train_endpoint, model.images, feeder.data.train, size, channels,
                                   cache_dir, batch, feed=model.train_feed, skipped=skipped)
    val = feature_cache.features(sess, model.eval_endpoint, model.images, feeder.data.val, size, channels,
                                 cache_dir, batch, feed=model.eval_feed, skipped=skipped)
    feeder.use_features(train, val, model.train_endpoint, model.eval_endpoint)
    return {"used": True, "endpoint": model.train_endpoint.name, "dir": os.path.abspath(cache_dir),
            "keys": [train.key, val.key], "reused": train.reused and val.reused,
            "extraction_seconds": round(train.seconds + val.seconds, 3),
            "feature_shape": list(train.features.shape[1:]),
            **({"reason_later_phases_not_cached": reason} if reason else {})}
