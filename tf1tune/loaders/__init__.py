"""One loader per source format, all returning a `ModelHandle`, and `load()` which picks the loader.

| source                                   | loader             | kind          |
|------------------------------------------|--------------------|---------------|
| `slim:NAME`                              | `load_slim`        | `slim`        |
| a directory with `saved_model.pb[txt]`   | `load_saved_model` | `saved_model` |
| a `.meta` file, or a checkpoint with one | `load_meta`        | `meta`        |
| any other file (`.pb`, `.pbtxt`, ...)    | `load_frozen`      | `frozen`      |
"""

from __future__ import annotations

import glob
import inspect
import os
from collections.abc import Callable
from typing import Any

from tf1tune.checkpoints import _strip_file_suffix, resolve_checkpoint
from tf1tune.errors import SourceNotFoundError, Tf1tuneError
from tf1tune.graph_safety import parse_allow_ops
from tf1tune.handle import ModelHandle
from tf1tune.loaders.frozen import load_frozen
from tf1tune.loaders.meta import load_meta
from tf1tune.loaders.saved_model import load_saved_model, saved_model_file
from tf1tune.loaders.slim import PUBLISHED, load_slim

__all__ = ["PUBLISHED", "detect_kind", "find_meta", "load", "load_frozen", "load_meta", "load_saved_model", "load_slim"]

SLIM_PREFIX = "slim:"


def find_meta(checkpoint_prefix: str) -> str | None:
    """The `.meta` that belongs to a checkpoint: `PREFIX.meta`, else the only `.meta` in its directory."""
    base = checkpoint_prefix.split("-?????-of-")[0]
    if os.path.isfile(base + ".meta"):
        return base + ".meta"
    metas = glob.glob(os.path.join(glob.escape(os.path.dirname(base) or "."), "*.meta"))
    return metas[0] if len(metas) == 1 else None


def _is_v1_checkpoint_file(path: str) -> bool:
    """True when the V1 checkpoint reader opens `path` (a single-file or sharded V1 checkpoint)."""
    import tensorflow as tf

    try:
        tf.train.load_checkpoint(resolve_checkpoint(path))
        return True
    except Exception:  # noqa: BLE001  (not a checkpoint: any reader or resolution failure means "some other file")
        return False


def detect_kind(source: str | os.PathLike[str]) -> str:
    """`slim`, `saved_model`, `meta`, `frozen` or `checkpoint`, judged from what the path is."""
    text = os.fspath(source)
    if text.startswith(SLIM_PREFIX):
        return "slim"
    if os.path.isdir(text):
        return "saved_model" if saved_model_file(text) else "checkpoint"
    if text.endswith(".meta"):
        return "meta"
    if os.path.basename(text) in ("saved_model.pb", "saved_model.pbtxt"):
        return "saved_model"
    if text.endswith(".index") or ".data-" in os.path.basename(text):
        return "checkpoint"
    if os.path.isfile(text):
        return "checkpoint" if _is_v1_checkpoint_file(text) else "frozen"
    if os.path.isfile(_strip_file_suffix(text) + ".index") or glob.glob(glob.escape(text) + "-?????-of-?????"):
        return "checkpoint"
    raise SourceNotFoundError(f"no model at '{text}': the path does not exist (give a .meta, .pb, SavedModel directory, "
                              "checkpoint prefix or slim:NAME)")


_LOADERS: dict[str, Callable[..., ModelHandle]] = {"slim": load_slim, "saved_model": load_saved_model, "meta": load_meta, "frozen": load_frozen,
            "checkpoint": load_meta}


def _check_options(kind: str, options: dict[str, Any]) -> None:
    """Options that the loader of `kind` does not take are a one-line error naming the ones it does."""
    allowed = [p for p in inspect.signature(_LOADERS[kind]).parameters][1:]
    unknown = [k for k in options if k not in allowed]
    if unknown:
        raise Tf1tuneError(f"option {', '.join(repr(k) for k in unknown)} does not apply to a {kind} source; "
                           f"its options are: {', '.join(allowed) or 'none'}")


def load(source: str | os.PathLike[str], **options: Any) -> ModelHandle:
    """Load any source with the loader its kind calls for (see the module table).

    A checkpoint prefix or directory loads through its `.meta`. Keyword options go to that loader.
    Nothing of the graph runs here; `handle.session()` refuses a graph that holds ops which do more than compute
    (files, network, Python; listed in `handle.risks`) unless their types are in `allow_ops` (a warning each).

    Example:
        >>> handle = tf1tune.load("slim:resnet_v1_50", num_classes=5)
    """
    allow_ops = options.pop("allow_ops", None)
    handle = _load(os.fspath(source), options)
    handle.allowed_ops = parse_allow_ops(allow_ops)
    return handle


def _load(text: str, options: dict[str, Any]) -> ModelHandle:
    kind = detect_kind(text)
    _check_options(kind, options)
    if kind == "slim":
        return load_slim(text[len(SLIM_PREFIX):], **options)
    if kind == "saved_model":
        return load_saved_model(os.path.dirname(text) if os.path.isfile(text) else text, **options)
    if kind == "meta":
        return load_meta(text, **options)
    if kind == "frozen":
        return load_frozen(text, **options)
    prefix = resolve_checkpoint(text)
    meta = find_meta(prefix)
    if meta is None:
        raise SourceNotFoundError(
            f"'{text}' is a checkpoint without a .meta graph; load it with the net that wrote it "
            "(slim:NAME with checkpoint=...) or inspect it with `tf1tune inspect`"
        )
    return load_meta(meta, checkpoint=prefix, **options)
