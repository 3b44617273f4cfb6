"""Gives each tf-slim module its view of TensorFlow: after it is loaded (an import hook), or at `install()`
for modules imported before tf1tune."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

from tf1tune._compat.moved import MOVED
from tf1tune._compat.replaced import REPLACED
from tf1tune._compat.view import SlimView

SLIM = "tf_slim"


def _moved_names(module: ModuleType) -> dict[str, Any]:
    """The names of MOVED[module] that this TensorFlow's module lacks, looked up where TensorFlow keeps them now."""
    found = {}
    for name, moved in MOVED.get(module.__name__, {}).items():
        if hasattr(module, name):
            continue  # this TensorFlow still has it: never replaced
        try:
            found[name] = getattr(importlib.import_module(moved.home), moved.name)
        except (ImportError, AttributeError):
            continue  # moved again; tests/test_compat_scan.py names it
    return found


def fix_slim_module(module: ModuleType) -> None:
    """Give one tf-slim module its view of TensorFlow: each global that is a TensorFlow module lacking names that
    tf-slim uses there becomes a `SlimView`. Idempotent; modules that need nothing are left as they are."""
    namespace = vars(module)
    for global_name, value in list(namespace.items()):
        if isinstance(value, ModuleType) and not isinstance(value, SlimView) and value.__name__ in MOVED:
            names = _moved_names(value)
            if names:
                namespace[global_name] = SlimView(value, names)
    for global_name, replaced in REPLACED.get(module.__name__, {}).items():
        value = namespace.get(global_name)
        if isinstance(value, ModuleType) and not isinstance(value, SlimView) and replaced.needed():
            namespace[global_name] = replaced.view(value)


class _FixAfterLoading(importlib.abc.Loader):
    """Wraps the loader the normal finders chose for a tf-slim module; fixes the module once it has run."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def __getattr__(self, name: str) -> Any:  # get_source, get_resource_reader, ... of the real loader
        return getattr(self._loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        fix_slim_module(module)


class SlimModules(importlib.abc.MetaPathFinder):
    """Finds `tf_slim` and its submodules with the finders after it, and wraps their loaders."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != SLIM and not fullname.startswith(SLIM + "."):
            return None
        finders = sys.meta_path[sys.meta_path.index(self) + 1:] if self in sys.meta_path else []
        for finder in finders:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _FixAfterLoading(spec.loader)
                return spec
        return None
