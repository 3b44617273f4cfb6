"""The one compatibility layer between tf-slim 1.1 and TensorFlow 2.16+ (2.21 included).

tf-slim 1.1.0 (2020, the last release) reaches into TensorFlow's internal modules, and TensorFlow has since moved
names out of them. `import tf1tune` makes old slim code run unchanged, with three fixes, each in its own part below:

1. **tf-slim's view of TensorFlow** (`MOVED`): tf-slim modules that did
   `from tensorflow.python.ops import control_flow_ops` get, in their own globals, a view of that module (a
   `SlimView`) that is the module itself plus the names TensorFlow moved elsewhere (`control_flow_ops.case` now
   lives in `control_flow_case`). TensorFlow's own modules are not touched: no attribute is added to or replaced in
   them, and code outside tf-slim sees TensorFlow exactly as it is.
2. **NumPy 1.23+ inside tf-slim**: `assign_from_checkpoint` of a partitioned variable indexes the checkpoint value
   with a list of slices, which NumPy 1.23 turned from a deprecation warning into an `IndexError`
   (numpy/numpy#21029). tf-slim's `tf_slim.ops.variables` sees a `tf.train.NewCheckpointReader` whose values take
   such a list as the tuple it always meant.
3. **Keras 3 (TF 2.16)**: TensorFlow's `tensorflow.python.layers.normalization` (behind `slim.batch_norm`) imports
   `tf_keras.legacy_tf_layers`, which tf-keras 2.16-2.21 ships as `tf_keras.src.legacy_tf_layers` only. An import
   hook answers for exactly those module names, with the very module objects of the private package, and only
   when tf-keras does not ship the public one itself. This adds a module name tf-keras lacks; it replaces nothing.

How: `install()` puts two import hooks at the front of `sys.meta_path` and fixes the tf-slim modules already
imported. The tf-slim hook lets the normal finders load each `tf_slim.*` module, then swaps the module's globals for
views. Nothing is imported until tf-slim or TensorFlow asks, so `import tf1tune` still does not import TensorFlow.
It does not disable eager execution, switch to reference variables, set environment variables or reset any default
graph: tf1tune builds every graph inside its own `tf.Graph()`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any, Callable, NamedTuple


class Moved(NamedTuple):
    """A name tf-slim uses on `module` that TensorFlow removed in `removed_in`; it now lives at `home`.`name`."""

    home: str
    name: str
    removed_in: str


# TensorFlow-internal module -> {name tf-slim 1.1 uses there: where TensorFlow keeps it now}. Each `removed_in` is
# the first TensorFlow release whose module lacks the name (checked in the 2.12.1-2.16.1 wheels). The names marked
# "tests" appear only in tf-slim's own test files.
MOVED: dict[str, dict[str, Moved]] = {
    "tensorflow.python.framework.ops": {
        "Tensor": Moved("tensorflow.python.framework.tensor", "Tensor", "2.15"),
        "IndexedSlices": Moved("tensorflow.python.framework.indexed_slices", "IndexedSlices", "2.13"),
    },
    "tensorflow.python.ops.array_ops": {
        "stack": Moved("tensorflow.python.ops.array_ops_stack", "stack", "2.13"),
        "unstack": Moved("tensorflow.python.ops.array_ops_stack", "unstack", "2.13"),
    },
    "tensorflow.python.ops.control_flow_ops": {
        "cond": Moved("tensorflow.python.ops.cond", "cond", "2.14"),
        "case": Moved("tensorflow.python.ops.control_flow_case", "case", "2.14"),
        "Assert": Moved("tensorflow.python.ops.control_flow_assert", "Assert", "2.14"),
        "while_loop": Moved("tensorflow.python.ops.while_loop", "while_loop", "2.14"),
    },
    "tensorflow.python.ops.variable_scope": {
        # TF 2.12-2.13 had `variable = VariableV1` here; tf-slim's local_variable/global_variable call it.
        "variable": Moved("tensorflow.python.ops.variable_v1", "VariableV1", "2.14"),
        "enable_resource_variables": Moved("tensorflow.python.ops.resource_variables_toggle",  # tests
                                           "enable_resource_variables", "2.16"),
        "disable_resource_variables": Moved("tensorflow.python.ops.resource_variables_toggle",  # tests
                                            "disable_resource_variables", "2.16"),
        "resource_variables_enabled": Moved("tensorflow.python.ops.resource_variables_toggle",  # tests
                                            "resource_variables_enabled", "2.16"),
    },
    "tensorflow.python.ops.variables": {
        "VariableV1": Moved("tensorflow.python.ops.variable_v1", "VariableV1", "2.13"),  # tests
    },
}

_SLIM = "tf_slim"
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


def _moved_names(module: ModuleType) -> dict[str, Any]:
    """The names of MOVED[module] that this TensorFlow's module lacks, looked up where TensorFlow keeps them now."""
    found = {}
    for name, moved in MOVED.get(module.__name__, {}).items():
        if name in vars(module):
            continue  # this TensorFlow still has it: never replaced
        try:
            found[name] = getattr(importlib.import_module(moved.home), moved.name)
        except (ImportError, AttributeError):
            continue  # moved again; tests/test_compat_scan.py names it
    return found


# --- NumPy 1.23+: partitioned assign_from_checkpoint -------------------------------------------------------------

def _numpy_refuses_slice_lists() -> bool:
    import numpy as np
    return np.lib.NumpyVersion(np.__version__) >= "1.23.0"


def _slice_list_array() -> type:
    import numpy as np

    class _SliceListArray(np.ndarray):
        """An array that reads `value[[slice, slice]]` as `value[(slice, slice)]`, as NumPy < 1.23 did."""

        def __getitem__(self, key: Any) -> Any:
            if isinstance(key, list) and key and all(isinstance(k, slice) for k in key):
                key = tuple(key)
            return np.asarray(self)[key]

    return _SliceListArray


class _CheckpointReader:
    """`tf.train.NewCheckpointReader(path)` whose `get_tensor` values take a list of slices as NumPy < 1.23 did."""

    _array_type: type | None = None

    def __init__(self, reader: Any) -> None:
        self._reader = reader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)

    def get_tensor(self, name: str) -> Any:
        import numpy as np
        if _CheckpointReader._array_type is None:
            _CheckpointReader._array_type = _slice_list_array()
        return np.asarray(self._reader.get_tensor(name)).view(_CheckpointReader._array_type)


def _tf_with_old_numpy_reader(tf: ModuleType) -> SlimView:
    train = tf.train
    reader = train.NewCheckpointReader
    train_view = SlimView(train, {"NewCheckpointReader": lambda path: _CheckpointReader(reader(path))})
    return SlimView(tf, {"train": train_view})


# --- TF 2.0, eager by default: the Supervisor threads of slim.learning.train ---------------------------------------

def _eager_by_default() -> bool:
    from tensorflow.python import tf2
    return tf2.enabled()


def _supervisor_with_graph_mode_threads(supervisor_module: ModuleType) -> SlimView:
    """`slim.learning.train` inside `with tf.Graph().as_default():` starts Supervisor threads (summaries, step
    counter, checkpoints, queue runners); a new thread does not inherit the default graph, runs eagerly under TF 2
    and fails on the graph's global step. This Supervisor runs each thread it registers inside its own graph."""
    from tensorflow.python.training import coordinator

    class _GraphModeCoordinator(coordinator.Coordinator):
        def __init__(self, graph: Any) -> None:
            super().__init__()
            self._tf1tune_graph = graph

        def register_thread(self, thread: Any) -> None:
            run, graph = thread.run, self._tf1tune_graph

            def run_in_graph() -> None:
                with graph.as_default():
                    run()

            thread.run = run_in_graph
            super().register_thread(thread)

    class Supervisor(supervisor_module.Supervisor):  # type: ignore[name-defined]
        __doc__ = supervisor_module.Supervisor.__doc__

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._coord = _GraphModeCoordinator(self._graph)

    return SlimView(supervisor_module, {"Supervisor": Supervisor})


class _Replaced(NamedTuple):
    needed: Callable[[], bool]
    view: Callable[[ModuleType], SlimView]


# tf-slim module -> {global name: the view it gets instead, when needed} for the fixes that are not moved names.
_REPLACED: dict[str, dict[str, _Replaced]] = {
    "tf_slim.ops.variables": {"tf": _Replaced(_numpy_refuses_slice_lists, _tf_with_old_numpy_reader)},
    "tf_slim.learning": {"supervisor": _Replaced(_eager_by_default, _supervisor_with_graph_mode_threads)},
}


def fix_slim_module(module: ModuleType) -> None:
    """Give one tf-slim module its view of TensorFlow: each global that is a TensorFlow module lacking names that
    tf-slim uses there becomes a `SlimView`. Idempotent; modules that need nothing are left as they are."""
    namespace = vars(module)
    for global_name, value in list(namespace.items()):
        if isinstance(value, ModuleType) and not isinstance(value, SlimView) and value.__name__ in MOVED:
            names = _moved_names(value)
            if names:
                namespace[global_name] = SlimView(value, names)
    for global_name, replaced in _REPLACED.get(module.__name__, {}).items():
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


class _SlimModules(importlib.abc.MetaPathFinder):
    """Finds `tf_slim` and its submodules with the finders after it, and wraps their loaders."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != _SLIM and not fullname.startswith(_SLIM + "."):
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


# --- Keras 3 (TF 2.16): tf_keras.legacy_tf_layers ---------------------------------------------------------------

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
    """Apply every fix. Idempotent; called by `tf1tune/__init__.py`. Imports neither TensorFlow nor tf-slim."""
    for hook in (_LegacyLayersAlias, _SlimModules):
        if not any(isinstance(f, hook) for f in sys.meta_path):
            sys.meta_path.insert(0, hook())
    for name, module in list(sys.modules.items()):  # tf-slim imported before tf1tune
        if module is not None and (name == _SLIM or name.startswith(_SLIM + ".")):
            fix_slim_module(module)
