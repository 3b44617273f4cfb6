"""The fixes that are not moved names: each gives one global of one tf-slim module a view that behaves as
tf-slim expected, under the NumPy or TensorFlow change named in its section."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

from tf1tune._compat.view import SlimView

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
REPLACED: dict[str, dict[str, _Replaced]] = {
    "tf_slim.ops.variables": {"tf": _Replaced(_numpy_refuses_slice_lists, _tf_with_old_numpy_reader)},
    "tf_slim.learning": {"supervisor": _Replaced(_eager_by_default, _supervisor_with_graph_mode_threads)},
}
