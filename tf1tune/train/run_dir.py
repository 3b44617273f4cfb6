"""Reading a `tf1tune finetune` run directory for export: last checkpoint, served tensors, validation data."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import yaml

from tf1tune.errors import BadSourceError, SourceNotFoundError, first_line
from tf1tune.finetune import read_metrics
from tf1tune.handle import ModelHandle
from tf1tune.loaders import load_meta

VERIFY_IMAGES = 64  # validation images the export is verified on


@dataclass
class Run:
    """What an export needs from a fine-tuning run."""

    handle: ModelHandle
    input: str
    probabilities: str
    validation_images: np.ndarray


def load_run(run_dir: str | os.PathLike[str]) -> Run:
    """The run's last checkpoint loaded through its `.meta`, with the tensor names from `metrics.json`.

    Raises:
        SourceNotFoundError: Not a finished run directory (no checkpoint or no `metrics.json` with the names).
    """
    run_dir = os.fspath(run_dir)
    metrics_path = os.path.join(run_dir, "metrics.json")
    latest = tf.train.latest_checkpoint(run_dir) if os.path.isdir(run_dir) else None
    metrics = read_metrics(metrics_path)
    if latest is None or "probabilities" not in metrics:
        raise SourceNotFoundError(f"'{run_dir}' is not a finished `tf1tune finetune` run directory "
                                  "(it needs a checkpoint and metrics.json); run tf1tune finetune --out there first")
    handle = load_meta(latest + ".meta", checkpoint=latest)
    config = _read_config(os.path.join(run_dir, "config.yaml"))
    shape = handle.tensor(metrics["input"]).shape.as_list()
    images = _validation_images(config, (shape[1], shape[2]), shape[3])
    return Run(handle=handle, input=metrics["input"], probabilities=metrics["probabilities"], validation_images=images)


def _read_config(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        raise BadSourceError(f"the run's '{path}' cannot be read ({first_line(e)}); it names the run's "
                             "validation data") from e
    if not isinstance(config, dict):
        raise BadSourceError(f"the run's '{path}' does not hold a mapping")
    return config


def _validation_images(config: dict, size: tuple[int, int], channels: int) -> np.ndarray:
    from tf1tune import data as data_lib

    source = config.get("val_data") or config.get("train_data")
    dataset = data_lib.load_dataset(source, size, channels)
    return np.asarray(dataset.images[:VERIFY_IMAGES])
