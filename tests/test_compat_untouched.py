"""`import tf1tune` changes nothing TensorFlow already had: every attribute (public and internal) of each module
whose tf-slim view it fixes is the same object after `import tf1tune` and real slim code as before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tf1tune import _compat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Each TensorFlow module tf-slim gets a view of; the test checks this list covers `_compat`'s tables.
VIEWED = sorted(set(_compat.MOVED) | {
    "tensorflow._api.v2.compat.v1", "tensorflow._api.v2.compat.v1.train",          # tf_slim.ops.variables: tf
    "tensorflow.python.training.supervisor", "tensorflow.python.training.coordinator",  # tf_slim.learning
    "tensorflow.python.layers.normalization",                                     # slim.batch_norm, via tf_keras
})

SCRIPT = """
    import importlib, json, sys
    import tensorflow as tf
    names = {names!r}
    modules = {{name: importlib.import_module(name) for name in names}}
    before = {{name: dict(vars(m)) for name, m in modules.items()}}
    before_sys = {{name: sys.modules[name] for name in names}}
    {after}
    from tests import slim_calls
    for call in ["batch_norm_updates_collections_none", "create_train_op_clip_gradient_norm", "local_variable",
                 "tfexample_decoder_image", "multiply_and_clip_sparse_gradients", "auc_using_histogram"]:
        slim_calls.CALLS[call]()
    from tf1tune import _compat
    import tf_slim.data.tfexample_decoder as decoder
    changed, added = [], []
    for name, module in modules.items():
        now = vars(module)
        changed += [f"{{name}}.{{k}}" for k, v in before[name].items() if now.get(k, changed) is not v]
        added += [f"{{name}}.{{k}}" for k in now if k not in before[name]]
    changed += [n for n in names if sys.modules[n] is not before_sys[n]]
    print(json.dumps({{"changed": changed, "added": added, "checked": sum(map(len, before.values())),
                      "viewed": isinstance(decoder.control_flow_ops, _compat.SlimView)}}))
"""


def _run(after_snapshot: str) -> dict:
    """Snapshot the modules, run `after_snapshot` (the imports), then real slim code, then compare."""
    code = textwrap.dedent(SCRIPT.format(names=VIEWED, after=after_snapshot))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_attribute_of_the_viewed_modules_is_the_same_object_after_import_tf1tune():
    result = _run("import tf1tune")
    assert result["viewed"]                  # tf-slim did get its view, so the comparison is not vacuous
    assert result["checked"] > 2000
    assert result["changed"] == [] and result["added"] == []


def test_nothing_changes_when_tf1tune_is_imported_after_tf_slim():
    result = _run("import tf_slim\n    import tf1tune")
    assert result["viewed"]                  # the tf-slim modules already imported were fixed too
    assert result["changed"] == [] and result["added"] == []


def test_the_list_covers_every_module_the_compat_layer_views():
    assert set(_compat.MOVED) <= set(VIEWED)
