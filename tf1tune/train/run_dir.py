"""A `tf1tune finetune` run directory, written by fine-tuning and read by export: one home for its format.

A run directory holds `config.yaml` (the run's full configuration), `metrics.json` (accuracy before and after,
parameter counts, the `input` / `probabilities` tensor names an export serves and the `inference_feed` of the
source's switches such as `is_training`), `events/` (TensorBoard) and
the `model.ckpt-STEP` checkpoints with their `checkpoint` state file. `config.yaml` and `metrics.json` are the
markers that say a directory is a run (`--overwrite` deletes nothing else).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf
import yaml

from tf1tune import _json
from tf1tune._fs import contains, write_atomic
from tf1tune.errors import BadSourceError, ConfigError, SourceNotFoundError
from tf1tune.handle import ModelHandle
from tf1tune.loaders import load_meta

CONFIG, METRICS, EVENTS, CHECKPOINT_PREFIX = "config.yaml", "metrics.json", "events", "model.ckpt"
RUN_MARKERS = (CONFIG, METRICS)  # files that say a directory is a tf1tune run


def check_run_dir(out: str | None, sources: Iterable[str], resume: bool, overwrite: bool) -> str:
    """The run directory's absolute path, after checking that a run may write (or replace) it.

    The run directory may not be, or contain, any source (checkpoint directory, graph, data); an existing run
    needs `resume` or `overwrite`, and `overwrite` only ever deletes a directory that holds a tf1tune run.
    """
    if not out:
        raise ConfigError("--out (the run directory) is required")
    run_dir = os.path.realpath(out)
    for source in sources:
        if contains(run_dir, source):
            raise ConfigError(f"--out '{out}' is or contains a source of this run ({os.path.realpath(source)}); "
                              "choose another run directory (sources are never written to)")
    has_run = os.path.isdir(run_dir) and tf.train.latest_checkpoint(run_dir) is not None
    if has_run and not (resume or overwrite):
        raise ConfigError(f"run directory '{out}' already holds a run; pass --resume to continue it "
                          "or --overwrite to start again")
    if overwrite and os.path.isdir(run_dir) and os.listdir(run_dir) \
            and not any(os.path.isfile(os.path.join(run_dir, m)) for m in RUN_MARKERS):
        raise ConfigError(f"--overwrite refuses to delete '{out}': it is not a tf1tune run directory "
                          f"(no {' or '.join(RUN_MARKERS)}); choose an empty or new --out")
    return run_dir


def start_run_dir(run_dir: str, overwrite: bool, resume: bool, config: dict[str, Any]) -> bool:
    """Create the run directory and mark it as a run from its first write; returns True for a fresh start.

    With `overwrite` (checked by `check_run_dir`) it is emptied first; so are the leftovers of a run that never
    saved a checkpoint (a failed or killed start), unless resuming. A fresh start writes `config.yaml` at once, so
    a directory tf1tune created is always recognisable as a run. Temporary files of writes that a kill cut short
    are removed (one warning).
    """
    holds_run = os.path.isdir(run_dir) and tf.train.latest_checkpoint(run_dir) is not None
    is_marked = any(os.path.isfile(os.path.join(run_dir, m)) for m in RUN_MARKERS)
    if os.path.isdir(run_dir) and (overwrite or (is_marked and not holds_run and not resume)):
        shutil.rmtree(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    removed = clean_partial_writes(run_dir)
    if removed:
        import warnings

        from tf1tune.errors import FinetuneWarning

        warnings.warn(f"removed {len(removed)} temporary file(s) of writes cut short in '{run_dir}': "
                      f"{', '.join(removed[:4])}{', ...' if len(removed) > 4 else ''}", FinetuneWarning, stacklevel=2)
    fresh = not (resume and tf.train.latest_checkpoint(run_dir) is not None)
    if fresh:
        write_config(run_dir, config)
    return fresh


# Temporary names of writes cut short: TensorFlow's SaveV2 (`.tempstate<N>`), its atomic writes of the .meta and
# the state file (`.tmp<32 hex>`), sharded saves (`_temp/` folders) and tf1tune's own (`.name.XXXX.tmp`).
_PARTIAL = re.compile(r"(.*\.tempstate\d*|.*\.tmp[0-9a-f]{32}|.*_temp(_[0-9a-f]{32})?|\..+\.tmp(-\w+)?)$")


def clean_partial_writes(run_dir: str) -> list[str]:
    """Remove the temporary files and folders that writes killed halfway left in `run_dir`; returns their names."""
    removed = []
    for name in sorted(os.listdir(run_dir)):
        if _PARTIAL.fullmatch(name):
            path = os.path.join(run_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)
            removed.append(name)
    return removed


def discard_failed_start(run_dir: str) -> None:
    """After a fresh run failed: remove its directory when it holds no checkpoint (nothing worth keeping), so that
    the rerun is not blocked; a directory with checkpoints stays for `--resume`."""
    if os.path.isdir(run_dir) and tf.train.latest_checkpoint(run_dir) is None:
        shutil.rmtree(run_dir, ignore_errors=True)


def read_metrics(run_dir: str) -> dict[str, Any]:
    """A run's `metrics.json` ({} when absent); a damaged one is a one-line error."""
    path = os.path.join(run_dir, METRICS)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise BadSourceError(f"'{path}' cannot be read ({e}); restore it or start the run again with --overwrite") from e
    if not isinstance(data, dict):
        raise BadSourceError(f"'{path}' does not hold a JSON object; restore it or start again with --overwrite")
    return data


def write_metrics(run_dir: str, metrics: dict[str, Any]) -> None:
    """Write the run's `metrics.json` atomically."""
    write_atomic(os.path.join(run_dir, METRICS), _json.dumps(metrics))


def write_config(run_dir: str, config: dict[str, Any]) -> None:
    """Write the run's `config.yaml` (its configuration as plain data) atomically."""
    write_atomic(os.path.join(run_dir, CONFIG), yaml.safe_dump(config, sort_keys=False))

VERIFY_IMAGES = 64  # validation images the export is verified on


@dataclass
class Run:
    """What an export needs from a fine-tuning run."""

    handle: ModelHandle
    input: str
    probabilities: str
    validation_images: np.ndarray
    settings: dict[str, Any]


def load_run(run_dir: str | os.PathLike[str]) -> Run:
    """The run's last checkpoint loaded through its `.meta`, with the tensor names from `metrics.json`.

    Raises:
        SourceNotFoundError: Not a finished run directory (no checkpoint or no `metrics.json` with the names).
    """
    run_dir = os.fspath(run_dir)
    latest = tf.train.latest_checkpoint(run_dir) if os.path.isdir(run_dir) else None
    metrics = read_metrics(run_dir)
    if latest is None or "probabilities" not in metrics:
        raise SourceNotFoundError(f"'{run_dir}' is not a finished `tf1tune finetune` run directory "
                                  "(it needs a checkpoint and metrics.json); run tf1tune finetune --out there first")
    handle = load_meta(latest + ".meta", checkpoint=latest)
    config = _read_config(os.path.join(run_dir, CONFIG))
    shape = handle.tensor(metrics["input"]).shape.as_list()
    images = _validation_images(config, (shape[1], shape[2]), shape[3])
    return Run(handle=handle, input=metrics["input"], probabilities=metrics["probabilities"], validation_images=images,
               settings=dict(metrics.get("inference_feed") or {}))


def _read_config(path: str) -> dict[str, Any]:
    from tf1tune._yaml import read_yaml
    from tf1tune.errors import YamlError

    try:
        config = read_yaml(path, "the run's config") or {}
    except YamlError as e:
        raise BadSourceError(f"{e}; it names the run's validation data") from e
    if not isinstance(config, dict):
        raise BadSourceError(f"the run's '{path}' does not hold a mapping")
    return config


def _validation_images(config: dict[str, Any], size: tuple[int, int], channels: int) -> np.ndarray:
    from tf1tune import data as data_lib

    name = config.get("val_data") or config.get("train_data")
    if not name:
        raise BadSourceError("the run's config.yaml names no val_data or train_data to verify the export on")
    source = data_lib.open_source(name)
    first = source.subset(np.arange(min(VERIFY_IMAGES, len(source))), "verification")  # decode only these
    return np.asarray(data_lib.load_dataset(first, size, channels).images)


def run_datasets(run_dir: str | os.PathLike[str], size: tuple[int, int], channels: int) -> tuple[Any, Any]:
    """The run's training and validation data sets, as the run used them (`val_data`, or its seeded split).

    Raises:
        BadSourceError: The run's `config.yaml` cannot be read or names no training data.
    """
    from tf1tune import data as data_lib

    config = _read_config(os.path.join(os.fspath(run_dir), CONFIG))
    if not config.get("train_data"):
        raise BadSourceError(f"the run '{os.fspath(run_dir)}' names no train_data in its config.yaml")
    train = data_lib.load_dataset(config["train_data"], size, channels)
    if config.get("val_data"):
        return train, data_lib.load_dataset(config["val_data"], size, channels)
    return data_lib.split(train, float(config.get("val_fraction", 0.2)), int(config.get("seed", 0)))
