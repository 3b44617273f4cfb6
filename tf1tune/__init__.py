"""tf1tune: load, fine-tune and export TensorFlow 1 models on the TensorFlow of today.

Importing tf1tune applies the one compatibility shim that tf-slim needs on TF 2.16+ (see `_compat`).
The public names below are imported on first use, so `import tf1tune` itself does not import
TensorFlow (the CLI uses that to keep TensorFlow's start-up chatter off the terminal).

Example:
    >>> import tf1tune
    >>> handle = tf1tune.load("model.meta")            # or a .pb, a SavedModel dir, "slim:resnet_v1_50"
    >>> logits = handle.tensor("logits:0")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tf1tune import _compat

_compat.install()

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "Tf1tuneError": "tf1tune.errors",
    "EnvironmentProblem": "tf1tune.errors",
    "SourceNotFoundError": "tf1tune.errors",
    "BadSourceError": "tf1tune.errors",
    "UnknownOpsError": "tf1tune.errors",
    "NameNotFoundError": "tf1tune.errors",
    "CheckpointMismatchError": "tf1tune.errors",
    "SurgeryError": "tf1tune.errors",
    "SelectionError": "tf1tune.errors",
    "DataError": "tf1tune.errors",
    "load_dataset": "tf1tune.data",
    "ExportError": "tf1tune.errors",
    "ModelHandle": "tf1tune.handle",
    "NetConfig": "tf1tune.nets.registry",
    "register_net": "tf1tune.nets.registry",
    "get_net": "tf1tune.nets.registry",
    "list_nets": "tf1tune.nets.registry",
    "build_net": "tf1tune.nets.build",
    "load": "tf1tune.loaders",
    "load_meta": "tf1tune.loaders",
    "load_slim": "tf1tune.loaders",
    "load_frozen": "tf1tune.loaders",
    "load_saved_model": "tf1tune.loaders",
    "resolve_checkpoint": "tf1tune.checkpoints",
    "inspect_source": "tf1tune.inspection",
    "rename_checkpoint": "tf1tune.surgery",
    "convert_checkpoint": "tf1tune.surgery",
    "merge_checkpoints": "tf1tune.surgery",
    "select": "tf1tune.selection",
    "plan_restore": "tf1tune.restore",
    "restore": "tf1tune.restore",
    "RestorePlan": "tf1tune.restore",
    "freeze": "tf1tune.export",
    "optimize": "tf1tune.export",
    "verify": "tf1tune.export",
    "export_saved_model": "tf1tune.export",
    "replace_input": "tf1tune.pipeline_repair",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tf1tune' has no attribute '{name}'")


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from tf1tune.checkpoints import resolve_checkpoint
    from tf1tune.errors import (BadSourceError, CheckpointMismatchError, EnvironmentProblem, NameNotFoundError,
                                SelectionError, SourceNotFoundError, SurgeryError, Tf1tuneError, UnknownOpsError)
    from tf1tune.handle import ModelHandle
    from tf1tune.inspection import inspect_source
    from tf1tune.loaders import load, load_frozen, load_meta, load_saved_model, load_slim
    from tf1tune.nets.build import build_net
    from tf1tune.nets.registry import NetConfig, get_net, list_nets, register_net
    from tf1tune.surgery import convert_checkpoint, merge_checkpoints, rename_checkpoint
    from tf1tune.restore import RestorePlan, plan_restore, restore
    from tf1tune.selection import select
    from tf1tune.errors import DataError
    from tf1tune.data import load_dataset
    from tf1tune.errors import ExportError
    from tf1tune.export import export_saved_model, freeze, optimize, verify
    from tf1tune.pipeline_repair import replace_input
