"""Every TensorFlow or NumPy name tf-slim's library code uses exists, as tf-slim sees it, after `import tf1tune`.

The scan reads tf-slim's installed sources (ast), finds each attribute chain rooted at a name that a
`tensorflow...` or `numpy` import bound (`control_flow_ops.case`, `tf.train.NewCheckpointReader`, `np.finfo`) and
each `from tensorflow... import name`, and looks each up through the module's own globals. The next TensorFlow
release that moves a name fails here, naming the attribute and the tf-slim file, instead of in a user's script.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import tf_slim

import tf1tune  # noqa: F401  (applies the compatibility layer)
from tf1tune import _compat

SLIM_ROOT = Path(tf_slim.__file__).parent


class Use(NamedTuple):
    file: str          # relative to site-packages, e.g. tf_slim/data/tfexample_decoder.py
    line: int
    global_name: str   # the name in the tf-slim module's globals, e.g. control_flow_ops
    chain: tuple[str, ...]  # attributes read from it, e.g. ("case",)


def library_files() -> list[Path]:
    return sorted(p for p in SLIM_ROOT.rglob("*.py") if not p.name.endswith("_test.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SLIM_ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_scanned(module: str) -> bool:
    return module.split(".")[0] in ("tensorflow", "numpy")


def _chain(node: ast.Attribute) -> tuple[str, tuple[str, ...]] | None:
    attrs = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    return (node.id, tuple(reversed(attrs))) if isinstance(node, ast.Name) else None


def uses(path: Path) -> tuple[list[Use], list[tuple[int, str, str]]]:
    """The attribute chains on TensorFlow/NumPy module names in one file, and its `from tensorflow... import x`."""
    tree = ast.parse(path.read_text())
    rel = str(path.relative_to(SLIM_ROOT.parent))
    bound: set[str] = set()
    from_imports = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bound.update(a.asname or a.name.split(".")[0] for a in node.names if _is_scanned(a.name))
        elif isinstance(node, ast.ImportFrom) and node.module and _is_scanned(node.module):
            bound.update(a.asname or a.name for a in node.names)
            from_imports += [(node.lineno, node.module, a.name) for a in node.names]
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner:  # `a.b.c` is one use, not two
            chain = _chain(node)
            if chain and chain[0] in bound:
                found.append(Use(rel, node.lineno, chain[0], chain[1]))
    return found, from_imports


def missing(lookup: Callable[[ModuleType, str], object]) -> list[str]:
    """Every use that fails, as `file:line: name.attr (what is missing)`; `lookup` reads a module's global."""
    problems = []
    for path in library_files():
        module = importlib.import_module(module_name(path))
        found, from_imports = uses(path)
        rel = str(path.relative_to(SLIM_ROOT.parent))
        for use in found:
            obj = lookup(module, use.global_name)
            for depth, attr in enumerate(use.chain):
                if not isinstance(obj, (ModuleType, type)):
                    break  # an instance (FLAGS, a logger): its attributes are not the module's business
                try:
                    obj = getattr(obj, attr)
                except (AttributeError, ImportError):  # a lazy TF module that cannot load counts too
                    owner = ".".join((use.global_name,) + use.chain[:depth])
                    real = getattr(lookup(module, use.global_name), "__name__", use.global_name)
                    problems.append(f"{use.file}:{use.line}: {owner}.{attr} ({real} has no {attr!r})")
                    break
        for line, source, name in from_imports:
            try:
                importlib.import_module(f"{source}.{name}")
            except ImportError:
                if not hasattr(importlib.import_module(source), name):
                    problems.append(f"{rel}:{line}: from {source} import {name}")
    return sorted(set(problems))


def _as_slim_sees_it(module: ModuleType, name: str) -> object:
    return getattr(module, name)


def _as_tensorflow_has_it(module: ModuleType, name: str) -> object:
    value = getattr(module, name)
    return value._tf1tune_module if isinstance(value, _compat.SlimView) else value


def test_the_scan_finds_the_names_tensorflow_moved():
    """Without tf-slim's view the scan reports the moves of TF 2.13-2.15, so it is not passing by seeing nothing."""
    problems = "\n".join(missing(_as_tensorflow_has_it))
    for expected in ["tf_slim/data/tfexample_decoder.py:453: control_flow_ops.case",
                     "tf_slim/ops/variables.py:149: variable_scope.variable",
                     "tf_slim/learning.py:300: ops.IndexedSlices",
                     "tf_slim/layers/utils.py:163: ops.Tensor",
                     "tf_slim/layers/layers.py:3325: array_ops.unstack"]:
        assert expected in problems


def test_tf_slim_library_code_uses_no_name_missing_after_import_tf1tune():
    problems = missing(_as_slim_sees_it)
    assert not problems, "tf-slim uses names this TensorFlow lacks:\n" + "\n".join(problems)


def test_the_scan_covers_every_library_file_and_the_moved_names():
    files = library_files()
    assert len(files) > 40
    scanned = {(u.global_name, u.chain[0]) for p in files for u in uses(p)[0] if u.chain}
    assert {("control_flow_ops", "case"), ("array_ops", "stack"), ("tf", "train"), ("np", "finfo")} <= scanned
