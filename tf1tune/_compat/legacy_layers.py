"""Keras 3 (TF 2.16): `tf_keras.legacy_tf_layers`, which TensorFlow's layers (behind `slim.batch_norm`) import,
answered with the very modules of `tf_keras.src.legacy_tf_layers` that tf-keras 2.16-2.21 ships instead."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
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


class LegacyLayersAlias(importlib.abc.MetaPathFinder):
    """Resolves `tf_keras.legacy_tf_layers[.x]` to `tf_keras.src.legacy_tf_layers[.x]`."""

    def find_spec(self, fullname: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != _PUBLIC and not fullname.startswith(_PUBLIC + "."):
            return None
        if _tf_keras_ships_public_package():
            return None
        real = _PRIVATE + fullname[len(_PUBLIC):]
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(real), is_package=fullname == _PUBLIC)
