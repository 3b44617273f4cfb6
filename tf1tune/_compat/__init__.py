"""The one compatibility layer between tf-slim 1.1 and TensorFlow 2.16+ (2.21 included), NumPy 1.23+ included.

tf-slim 1.1.0 (2020, the last release) reaches into TensorFlow's internal modules, and TensorFlow has since moved
names out of them. `import tf1tune` makes old slim code run unchanged, with these fixes:

1. **tf-slim's view of TensorFlow** (`moved.py`, `view.py`, `slim_modules.py`): tf-slim modules that did
   `from tensorflow.python.ops import control_flow_ops` get, in their own globals, a view of that module (a
   `SlimView`) that is the module itself plus the names TensorFlow 2.13-2.16 moved elsewhere
   (`control_flow_ops.case` now lives in `control_flow_case`). TensorFlow's own modules are not touched: no
   attribute is added to or replaced in them, and code outside tf-slim sees TensorFlow exactly as it is.
2. **NumPy 1.23** (`replaced.py`): `assign_from_checkpoint` of a partitioned variable indexes the checkpoint value
   with a list of slices, which NumPy 1.23 turned from a deprecation warning into an `IndexError`
   (numpy/numpy#21029). `tf_slim.ops.variables` sees a `tf.train.NewCheckpointReader` whose values take such a
   list as the tuple it always meant.
3. **TF 2.0, eager by default** (`replaced.py`): `slim.learning.train` inside a `tf.Graph()` starts Supervisor
   threads, which run eagerly; `tf_slim.learning` sees a Supervisor that runs its threads in its graph.
4. **Keras 3, TF 2.16** (`legacy_layers.py`): TensorFlow's `tensorflow.python.layers.normalization` (behind
   `slim.batch_norm`) imports `tf_keras.legacy_tf_layers`, which tf-keras 2.16-2.21 ships as
   `tf_keras.src.legacy_tf_layers` only. An import hook answers for exactly those module names, with the very
   module objects of the private package, and only when tf-keras does not ship the public one itself. This adds a
   module name tf-keras lacks; it replaces nothing.

How: `install()` puts two import hooks at the front of `sys.meta_path` and fixes the tf-slim modules already
imported. The tf-slim hook lets the normal finders load each `tf_slim.*` module, then swaps the module's globals for
views. Nothing is imported until tf-slim or TensorFlow asks, so `import tf1tune` still does not import TensorFlow.
It does not disable eager execution, switch to reference variables, set environment variables or reset any default
graph: tf1tune builds every graph inside its own `tf.Graph()`.
"""

from __future__ import annotations

import sys

from tf1tune._compat.legacy_layers import LegacyLayersAlias
from tf1tune._compat.moved import MOVED, Moved
from tf1tune._compat.replaced import REPLACED
from tf1tune._compat.slim_modules import SLIM, SlimModules, fix_slim_module
from tf1tune._compat.view import SlimView

__all__ = ["MOVED", "REPLACED", "Moved", "SlimView", "fix_slim_module", "install"]


def install() -> None:
    """Apply every fix. Idempotent; called by `tf1tune/__init__.py`. Imports neither TensorFlow nor tf-slim."""
    for hook in (LegacyLayersAlias, SlimModules):
        if not any(isinstance(f, hook) for f in sys.meta_path):
            sys.meta_path.insert(0, hook())
    for name, module in list(sys.modules.items()):  # tf-slim imported before tf1tune
        if module is not None and (name == SLIM or name.startswith(SLIM + ".")):
            fix_slim_module(module)
