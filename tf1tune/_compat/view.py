"""`SlimView`: what a tf-slim module sees as one TensorFlow module (the module, with some names laid over it)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

_VIEWS_OWN = ("_tf1tune_module", "_tf1tune_names")


class SlimView(ModuleType):
    """What a tf-slim module sees as one TensorFlow module: `module` itself, with `names` laid over it.

    Reading an attribute gives `names[attr]` if there is one, else the module's own attribute; setting or deleting an
    attribute (as `mock.patch.object` does) acts on the module itself, so patches behave as they did before.
    """

    def __init__(self, module: ModuleType, names: dict[str, Any]) -> None:
        super().__init__(module.__name__, module.__doc__)
        for own in ("__package__", "__loader__", "__spec__"):
            del self.__dict__[own]  # read them from the module itself
        self.__dict__.update(_tf1tune_module=module, _tf1tune_names=names)

    def __getattribute__(self, name: str) -> Any:
        if name in _VIEWS_OWN or name == "__dict__" or name == "__class__":
            return object.__getattribute__(self, name)
        names = object.__getattribute__(self, "_tf1tune_names")
        if name in names:
            return names[name]
        return getattr(object.__getattribute__(self, "_tf1tune_module"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._tf1tune_module, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._tf1tune_module, name)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self._tf1tune_module)) | set(self._tf1tune_names))

    def __repr__(self) -> str:
        return f"<tf-slim's view of {self._tf1tune_module!r} with {sorted(self._tf1tune_names)}>"
