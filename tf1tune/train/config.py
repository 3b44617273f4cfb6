"""The configuration of a fine-tuning run: defaults, YAML files, command-line overrides, validation.

Keys are named as users know them from tf-slim's `train_image_classifier.py` (`--trainable-scopes`,
`--exclude-scopes`, ...), with dashes on the command line and underscores in YAML (both are accepted in
YAML). Flags override the file; the file overrides the defaults. When no source (net, meta, frozen) is
given, the defaults are the project's main job (`MAIN_JOB`): fine-tune the shipped `checkpoints/digits_cnn`
(10 digit classes) for the 2-class task "is the digit odd", training the new classifier only
(`configs/digits_parity.yaml` adds a second phase that also trains the last conv block at a tenth of the
learning rate).
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from tf1tune._yaml import read_yaml
from tf1tune.errors import ConfigError, YamlError
from tf1tune.limits import MAX_BATCH, MAX_CLASSES, MAX_SEED, MAX_STEPS, check_float, check_input_size, check_int
from tf1tune.names import closest
from tf1tune.train.train_op import OPTIMIZERS

__all__ = ["MAIN_JOB", "FinetuneConfig", "Phase", "check_runnable", "cli_flags", "make_config", "validate"]


def _flag(default: Any, help: str, flag: str | None = None, **argparse_options: Any) -> Any:
    """A config field that is also a `tf1tune finetune` flag (`--name-with-dashes`, or `flag`); `list`: an empty
    list."""
    metadata = {"help": help, "argparse": argparse_options, "flag": flag}
    if default is list:
        return field(default_factory=list, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class Phase:
    """One stage of training with its own trainable scopes, learning rate and optimizer state.

    Attributes:
        steps: Training steps of this phase.
        trainable_scopes: Scopes whose trainable variables this phase trains (empty: every trainable variable).
        learning_rate: Base learning rate of the phase.
        lr_multipliers: Scope (or regex with `regex_scopes`) to learning-rate multiplier; 0 freezes.
    """

    steps: int
    trainable_scopes: list[str] = field(default_factory=list)
    learning_rate: float = 0.01
    lr_multipliers: dict[str, float] = field(default_factory=dict)


@dataclass
class FinetuneConfig:
    """Everything a fine-tuning run needs; see README "Fine-tuning" for the meaning of each key."""

    net: str | None = _flag(None, "registered net name (tf1tune nets)")
    meta: str | None = _flag(None, ".meta graph to fine-tune (with --input and --endpoint)")
    frozen: str | None = _flag(None, "frozen .pb to fine-tune (with --input and --endpoint)")
    input: str | None = _flag(None, "input tensor name for --meta/--frozen")
    checkpoint: str | None = _flag(None, "checkpoint to start from (prefix, file or directory)")
    endpoint: str | None = _flag(None, "tensor to graft the new head on (--meta/--frozen)")
    head: str | None = _flag(None, "head spec for --meta/--frozen, e.g. 'global_pool, dropout(0.2), dense(5)'")
    input_size: list[int] | None = _flag(None, "--net only: input size (default: the net's)",
                                         type=int, nargs=2, metavar=("H", "W"))
    num_classes: int | None = _flag(None, "classes of the new task")
    exclude_scopes: list[str] = _flag(list, "comma-separated scopes left out of the restore")
    trainable_scopes: list[str] = _flag(list, "comma-separated scopes to train (default: the classifier or new head)")
    lr_multipliers: dict[str, float] = field(default_factory=dict)
    regex_scopes: bool = False
    masks: dict[str, Any] = field(default_factory=dict)
    phases: list[Phase] = field(default_factory=list)
    train_data: str | None = _flag(None, "class folders, .npz, TFRecords, or a named task (digits-parity:train)")
    val_data: str | None = _flag(None, "validation data (default: a split of the training data)")
    val_fraction: float = _flag(0.2, "validation split when no --val-data")
    steps: int = _flag(200, "training steps (single phase)")
    batch_size: int = _flag(64, "batch size")
    learning_rate: float = _flag(0.05, "learning rate (single phase)")
    optimizer: str = _flag("momentum", "the optimizer: " + ", ".join(OPTIMIZERS))
    clip_norm: float | None = _flag(None, "clip gradients to this global norm")
    weight_decay: float = _flag(0.0, "L2 weight decay of the trained weights (kernels), added to the graph's own "
                                     "regularization losses (as slim.l2_regularizer)")
    augment: dict[str, Any] = field(default_factory=dict)
    out: str | None = _flag(None, "run directory (checkpoints, events, metrics.json)")
    resume: bool = _flag(False, "continue from the run's last checkpoint")
    overwrite: bool = _flag(False, "delete an existing run directory first")
    seed: int = _flag(0, "seed of data order, augmentation and initialisation")
    checkpoint_every: int = _flag(50, "save every N steps")
    keep_checkpoints: int = _flag(3, "checkpoints kept in the run directory")
    log_every: int = 10
    histograms: list[str] = field(default_factory=list)
    feature_cache: bool = _flag(True, "run the whole graph on every step, also where cached features of the frozen "
                                "base would be exact", flag="--no-feature-cache", action="store_false")
    feature_cache_dir: str | None = _flag(None, "where head-only phases cache the frozen base's features "
                                          "(default: RUN/feature_cache)")
    skip_bad_images: bool = _flag(False, "leave undecodable images out (counted in metrics.json) instead of stopping")
    allow_ops: list[str] = _flag(list, "op types of a --meta/--frozen graph to run although they do more than "
                                       "compute (files, network, Python); `tf1tune inspect` lists them")
    ps_hosts: list[str] = _flag(list, "distributed: the parameter-server tasks, host:port,host:port")
    worker_hosts: list[str] = _flag(list, "distributed: the workers, host:port,...; worker 0 is the chief")
    job_name: str | None = _flag(None, "distributed: this task's job, ps or worker (default: TF_CONFIG's task)")
    task_index: int = _flag(0, "distributed: this task's index in its job")
    async_replicas: bool = _flag(False, "distributed: apply each worker's gradients as they come instead of "
                                        "averaging all workers' gradients every step")
    cluster_timeout: float = _flag(120.0, "distributed: seconds a task waits for the others before it gives up")
    set: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "feed a placeholder of a --meta/--frozen graph this value, e.g. keep_prob=1.0 (repeatable); "
                "boolean switches such as is_training are found and fed by themselves",
        "argparse": {"action": "append", "metavar": "NAME=VALUE"}})

    def resolved_phases(self) -> list[Phase]:
        """The phases to run: the `phases` list, or one phase made of `steps`, `learning_rate` and
        `trainable_scopes`. A phase without trainable scopes takes the run's `trainable_scopes`; empty
        there too means the new classifier or head only."""
        if not self.phases:
            return [Phase(steps=self.steps, trainable_scopes=list(self.trainable_scopes),
                          learning_rate=self.learning_rate, lr_multipliers=dict(self.lr_multipliers))]
        return [Phase(steps=p.steps, trainable_scopes=list(p.trainable_scopes or self.trainable_scopes),
                      learning_rate=p.learning_rate, lr_multipliers={**self.lr_multipliers, **p.lr_multipliers})
                for p in self.phases]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML/JSON."""
        return dataclasses.asdict(self)


_FIELDS = {f.name: f for f in dataclasses.fields(FinetuneConfig)}
_PHASE_FIELDS = {f.name for f in dataclasses.fields(Phase)}

# The main job: used when no source (net, meta, frozen) is given anywhere. A run on another source states its own
# checkpoint, data and run directory, so that nothing of the digits job slips into it.
MAIN_JOB = {"net": "digits_cnn", "checkpoint": "checkpoints/digits_cnn", "num_classes": 2,
            "train_data": "digits-parity:train", "val_data": "digits-parity:val", "out": "runs/digits-parity"}


def _plain(hint: Any) -> Any:
    """The plain type a field's values take: `int` for `int | None`, `list` for `list[str]`, `dict` for `dict[...]`."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint


_HINTS = {**typing.get_type_hints(Phase), **typing.get_type_hints(FinetuneConfig)}
_KINDS = {name: _plain(hint) for name, hint in _HINTS.items()}
_FLOATS = {k for k, t in _KINDS.items() if t is float}
_INTS = {k for k, t in _KINDS.items() if t is int}
_BOOLS = {k for k, t in _KINDS.items() if t is bool}
_MAPPINGS = {k for k, t in _KINDS.items() if t is dict}
_SCOPE_LISTS = {name for name in _FIELDS if _HINTS[name] == list[str]}  # also given as "a, b"
_STRINGS = {name for name, kind in _KINDS.items() if kind is str}


def cli_flags() -> list[tuple[str, str, dict[str, Any]]]:
    """`(flag, field name, argparse options)` of every config field that is a `tf1tune finetune` flag.

    Flags, types and defaults come from the fields themselves: `--batch-size` is `batch_size: int = 64`. Every
    flag defaults to None (not given), so that the config file and then the field's default apply.
    """
    flags = []
    for f in dataclasses.fields(FinetuneConfig):
        if "help" not in f.metadata:
            continue
        options = dict(f.metadata["argparse"])
        shown = f.default if f.default is not dataclasses.MISSING else None
        help_text = f.metadata["help"] + (f" (default {shown})" if shown is not None and shown is not False else "")
        if _KINDS[f.name] is bool:
            options.setdefault("action", "store_true")
        elif _KINDS[f.name] in (int, float):
            options.setdefault("type", _KINDS[f.name])
        if options.get("action") == "store_false":
            help_text = f.metadata["help"]
        flag = f.metadata.get("flag") or f"--{f.name.replace('_', '-')}"
        flags.append((flag, f.name, {"default": None, "help": help_text, **options}))
    return flags


def _coerce(key: str, value: Any, where: str = "") -> Any:
    """`value` as the type `key` takes (YAML reads `1e-3` as a string); a clear error naming the key and the type
    wanted when it is not one. `null` for a list or mapping means an empty one."""
    label = f"{where}{key}"
    if value is None:
        return {} if key in _MAPPINGS else [] if key in _SCOPE_LISTS else None
    if key in _STRINGS and not isinstance(value, str):
        raise ConfigError(f"{label} must be a string (a name or path), got {type(value).__name__} {value!r:.60}")
    if key in _SCOPE_LISTS and not (isinstance(value, str) or (isinstance(value, list)
                                                              and all(isinstance(v, str) for v in value))):
        raise ConfigError(f"{label} must be a list of names (or one string 'a, b'), got {value!r:.60}")
    if key in _FLOATS:
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{label} must be a number, got {value!r:.60}") from None
    if key in _INTS:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())):
            raise ConfigError(f"{label} must be a whole number, got {value!r:.60}")
        return int(value)
    if key in _BOOLS and not isinstance(value, bool):
        raise ConfigError(f"{label} must be true or false, got {value!r:.60}")
    if key == "set" and isinstance(value, list):  # --set NAME=VALUE, repeated
        return dict(_setting(v) for v in value)
    if key in _MAPPINGS and not isinstance(value, dict):
        raise ConfigError(f"{label} must be a mapping (key: value), got {value!r:.60}")
    if key == "input_size":
        return list(check_input_size(label, value, ConfigError))
    if key == "phases" and not isinstance(value, list):
        raise ConfigError(f"{label} must be a list of mappings (steps, trainable_scopes, learning_rate, "
                          f"lr_multipliers), got {value!r:.60}")
    return value


def _setting(text: Any) -> tuple[str, str]:
    name, sep, value = str(text).partition("=")
    if not sep or not name.strip() or not value.strip():
        raise ConfigError(f"bad --set '{text}': write NAME=VALUE, e.g. --set keep_prob=1.0")
    return name.strip(), value.strip()


def _bad_key(key: str, allowed: list[str], where: str) -> ConfigError:
    near = closest(key, allowed, n=3)
    hint = f"did you mean {', '.join(near)}? " if near else ""
    return ConfigError(f"unknown key '{key}' in {where}; {hint}allowed keys: {', '.join(sorted(allowed))}")


def _phase(raw: Any, index: int) -> Phase:
    if not isinstance(raw, dict):
        raise ConfigError(f"phases[{index}] must be a mapping with keys {', '.join(sorted(_PHASE_FIELDS))}")
    clean = {k.replace("-", "_"): v for k, v in raw.items()}
    for key in clean:
        if key not in _PHASE_FIELDS:
            raise _bad_key(key, sorted(_PHASE_FIELDS), f"phases[{index}]")
    if "steps" not in clean:
        raise ConfigError(f"phases[{index}] needs 'steps'")
    clean = {k: _coerce(k, v, f"phases[{index}].") for k, v in clean.items()}
    if "trainable_scopes" in clean:
        clean["trainable_scopes"] = _as_list(clean["trainable_scopes"])
    return Phase(**clean)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [s.strip() for s in value.split(",") if s.strip()]
    return [str(v) for v in value]


def make_config(file: str | os.PathLike[str] | None = None, **overrides: Any) -> FinetuneConfig:
    """Defaults, then the YAML `file`, then `overrides` (None values are ignored); validated.

    Raises:
        ConfigError: An unknown key (with the closest allowed ones) or a bad value (with what is allowed).
    """
    values: dict[str, Any] = {}
    if file is not None:
        if not os.path.isfile(file):
            raise ConfigError(f"config file '{file}' does not exist")
        try:
            loaded = read_yaml(file, "config file") or {}
        except YamlError as e:
            raise ConfigError(str(e)) from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file '{file}' must hold a mapping of keys to values")
        for key, value in loaded.items():
            name = str(key).replace("-", "_")
            if name not in _FIELDS:
                raise _bad_key(str(key), sorted(_FIELDS), f"config file '{file}'")
            values[name] = value
    for key, value in overrides.items():
        if key not in _FIELDS:
            raise _bad_key(key, sorted(_FIELDS), "the arguments")
        if value is not None:
            values[key] = value
    if not any(values.get(k) for k in ("net", "meta", "frozen")):
        values = {**MAIN_JOB, **values}
    values = {k: _coerce(k, v) for k, v in values.items()}
    for key in _SCOPE_LISTS:
        if key in values:
            values[key] = _as_list(values[key])
    if "phases" in values:
        raw = values["phases"] or []
        if not isinstance(raw, list):
            raise ConfigError("phases must be a list of mappings (steps, trainable_scopes, learning_rate, lr_multipliers)")
        values["phases"] = [_phase(p, i) for i, p in enumerate(raw)]
    config = FinetuneConfig(**values)
    validate(config)
    return config


def validate(config: FinetuneConfig) -> None:
    """Check values; raise `ConfigError` naming the key, what it got and what is allowed.

    Numbers are bounded (`tf1tune.limits`): no NaN or infinity, no steps beyond a billion, no batch beyond 65536.
    """
    sources = [k for k in ("net", "meta", "frozen") if getattr(config, k)]
    if len(sources) != 1:
        raise ConfigError(f"give exactly one source of --net, --meta, --frozen (got {', '.join(sources) or 'none'})")
    if config.optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer '{config.optimizer}' is not supported; choose one of {', '.join(OPTIMIZERS)}")
    if config.net is None and not config.input:
        raise ConfigError(f"--input (the input tensor name) is required with --{sources[0]}")
    if config.input_size is not None:
        check_input_size("input_size", config.input_size, ConfigError)
    if config.num_classes is not None:
        check_int("num_classes", config.num_classes, 2, MAX_CLASSES, ConfigError)
    bounds = {"batch_size": MAX_BATCH, "checkpoint_every": MAX_STEPS, "keep_checkpoints": 10_000,
              "log_every": MAX_STEPS}
    for key, high in bounds.items():
        check_int(key, getattr(config, key), 1, high, ConfigError)
    check_int("seed", config.seed, 0, MAX_SEED, ConfigError)
    check_float("val_fraction", config.val_fraction, 0.0, 1.0, ConfigError, low_open=True, high_open=True)
    if config.clip_norm is not None:
        check_float("clip_norm", config.clip_norm, 0.0, error=ConfigError, low_open=True)
    check_float("weight_decay", config.weight_decay, 0.0, error=ConfigError)
    total = 0
    for i, phase in enumerate(config.resolved_phases()):
        where = f"phase {i + 1}: " if config.phases else ""
        total += check_int(f"{where}steps", phase.steps, 0, MAX_STEPS, ConfigError)
        check_float(f"{where}learning_rate", phase.learning_rate, 0.0, error=ConfigError, low_open=True)
        _check_multipliers(phase.lr_multipliers)
    if total > MAX_STEPS:
        raise ConfigError(f"the phases add up to {total:,} steps, more than {MAX_STEPS:,}")
    from tf1tune.data import Augment
    from tf1tune.errors import DataError

    allowed = [f.name for f in dataclasses.fields(Augment)]
    for key in config.augment:
        if key not in allowed:
            raise _bad_key(str(key), allowed, "augment")
    if config.augment:
        flip, brightness = config.augment.get("flip", False), config.augment.get("brightness", 0.0)
        if not isinstance(flip, bool):
            raise ConfigError(f"augment.flip must be true or false, got {flip!r:.60}")
        check_float("augment.brightness", brightness, 0.0, 1.0, ConfigError)
        try:
            Augment(**config.augment)
        except (DataError, TypeError, ValueError) as e:
            raise ConfigError(f"augment: {e}") from e
    _check_multipliers(config.lr_multipliers)
    for name, spec in config.masks.items():
        if not isinstance(spec, (dict, str)):
            raise ConfigError(f"masks.{name} must be a mapping (rows, columns or indices) or a .npy path, got "
                              f"{spec!r:.60}")
    if config.job_name not in (None, "ps", "worker"):
        raise ConfigError(f"job_name must be ps or worker, got {config.job_name!r:.60}")
    check_int("task_index", config.task_index, 0, 10_000, ConfigError)
    check_float("cluster_timeout", config.cluster_timeout, 0.0, 7 * 24 * 3600.0, ConfigError, low_open=True)
    if config.resume and config.overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: resume continues the run, overwrite deletes it")


def _check_multipliers(multipliers: dict[str, Any]) -> None:
    for scope, m in multipliers.items():
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m) or m < 0:
            raise ConfigError(f"lr multiplier of '{scope}' must be a finite number >= 0 (0 freezes), got {m!r}")


def check_runnable(config: FinetuneConfig) -> None:
    """What a run needs beyond valid values: the new head's endpoint and class count for an imported graph,
    training data and a run directory (a config without them is valid, e.g. to inspect a net's defaults)."""
    if config.net is None and not config.endpoint:
        raise ConfigError("--endpoint (the tensor to graft the new head on) is required with --meta or --frozen")
    if config.net is None and not config.num_classes:
        raise ConfigError("--num-classes is required with --meta or --frozen (the new head's outputs)")
    if not config.train_data:
        raise ConfigError("--train-data is required (class folders, .npz, TFRecords or a named task)")
    if not config.out:
        raise ConfigError("--out (the run directory) is required")
