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

import ast
import importlib
from typing import TYPE_CHECKING, Any

from tf1tune import _compat

_compat.install()

__version__ = "0.1.0"

if TYPE_CHECKING:  # the one export list: type checkers read these imports, `__getattr__` imports each on first use
    from tf1tune.checkpoints import resolve_checkpoint
    from tf1tune.data import load_dataset
    from tf1tune.errors import (
        AllowedOpsWarning,
        BadSourceError,
        CheckpointMismatchError,
        CheckpointWarning,
        ClusterError,
        ConfigError,
        DataError,
        DataWarning,
        EnvironmentProblem,
        ExportError,
        FinetuneWarning,
        GraftError,
        GraphRepairError,
        GraphRepairWarning,
        GraphRunError,
        NameNotFoundError,
        NetRegistryError,
        RestoreWarning,
        SelectionError,
        SourceNotFoundError,
        SurgeryError,
        Tf1tuneError,
        TrainingError,
        TrainWarning,
        UnknownOpsError,
        UnsafeGraphError,
        YamlError,
    )
    from tf1tune.export.freeze import freeze
    from tf1tune.export.optimize import optimize
    from tf1tune.export.pipeline import export_model
    from tf1tune.export.saved_model import export_saved_model
    from tf1tune.export.tf2 import export_tf2
    from tf1tune.export.verify import verify
    from tf1tune.handle import ModelHandle
    from tf1tune.inspection import inspect_source
    from tf1tune.loaders import load, load_frozen, load_meta, load_saved_model, load_slim
    from tf1tune.nets.build import build_net
    from tf1tune.nets.registry import NetConfig, get_net, list_nets, register_net
    from tf1tune.repair import replace_input
    from tf1tune.restore import RestorePlan, plan_restore, restore
    from tf1tune.selection import select
    from tf1tune.surgery import convert_checkpoint, merge_checkpoints, rename_checkpoint
    from tf1tune.tf2_optimizer import convert_to_tf2


def _exports() -> dict[str, str]:
    """Public name -> the module that defines it, read from the `if TYPE_CHECKING:` imports above."""
    with open(__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    block = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    return {alias.asname or alias.name: str(imp.module) for imp in block.body if isinstance(imp, ast.ImportFrom)
            for alias in imp.names}


_EXPORTS = _exports()
__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tf1tune' has no attribute '{name}'")


def __dir__() -> list[str]:
    return __all__
