"""The one compatibility layer between tf-slim 1.1 and TensorFlow 2.16+ (2.21 included).

Why it exists: since TF 2.16 Keras 3 is the default `keras`, and TensorFlow's own
`tensorflow.python.layers.normalization` (which `slim.batch_norm` uses) lazily imports
`tf_keras.legacy_tf_layers.normalization`. The `tf-keras` releases 2.16 to 2.21 ship those modules as
`tf_keras.src.legacy_tf_layers` only, so every tf-slim net with batch norm fails with
`No module named 'tf_keras.legacy_tf_layers'`.

What it does, on `import tf1tune`: it puts an import hook at the front of `sys.meta_path` that answers
only for `tf_keras.legacy_tf_layers` and its submodules, and only when the installed tf-keras does not
ship that package itself; it then hands out the very module objects of `tf_keras.src.legacy_tf_layers`
(one copy of each class, so isinstance checks inside Keras keep working). Nothing is imported by the
hook until TensorFlow asks for those names.

It does not disable eager execution, switch to reference variables, set environment variables or
reset any default graph: tf1tune builds every graph inside its own `tf.Graph()`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType

_PUBLIC = "tf_keras.legacy_tf_layers"
_PRIVATE = "tf_keras.src.legacy_tf_layers"


def _tf_keras_ships_public_package() -> bool:
    spec = importlib.util.find_spec("tf_keras")
    if spec is None or not spec.submodule_search_locations:
        return False
    return any(os.path.isdir(os.path.join(loc, "legacy_tf_layers")) for loc in spec.submodule_search_locations)


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self._target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        try:
            return importlib.import_module(self._target)
        except ImportError as e:
            raise ImportError(
                f"tf1tune: tf-slim's batch_norm needs {self._target} from the 'tf-keras' package ({e}); "
                "install tf-keras with the same minor version as tensorflow (pip install 'tf-keras~=2.21.0')"
            ) from e

    def exec_module(self, module: ModuleType) -> None:
        """The target module is already executed; nothing to do."""


class _LegacyLayersAlias(importlib.abc.MetaPathFinder):
    """Resolves `tf_keras.legacy_tf_layers[.x]` to `tf_keras.src.legacy_tf_layers[.x]`."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != _PUBLIC and not fullname.startswith(_PUBLIC + "."):
            return None
        if _tf_keras_ships_public_package():
            return None
        real = _PRIVATE + fullname[len(_PUBLIC):]
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(real), is_package=fullname == _PUBLIC)


def install() -> None:
    """Apply the shim. Idempotent; called by `tf1tune/__init__.py`."""
    if not any(isinstance(f, _LegacyLayersAlias) for f in sys.meta_path):
        sys.meta_path.insert(0, _LegacyLayersAlias())
