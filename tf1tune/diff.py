"""Comparing two checkpoints variable by variable: the proof that frozen weights did not move.

Either side may be a TF2 object-based checkpoint (or a TF2 SavedModel directory): its entries are compared under
the variables' own names (`tf1tune.tf2_checkpoints.entry_keys`), so a TF2 run can be checked against its TF1 source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tf1tune import _json
from tf1tune.checkpoints import read_checkpoint, read_tensor
from tf1tune.tf2_checkpoints import entry_keys, resolve_any_checkpoint


@dataclass
class CheckpointDiff:
    """Per-variable differences between checkpoint A and checkpoint B; every common name is in exactly one of
    `changed`, `unchanged` and `reshaped`.

    Attributes:
        changed: name -> {"count": elements that differ, "max_abs": largest absolute change, None when a changed
            element is or becomes inf or NaN}, for tensors of the same shape and dtype.
        unchanged: names whose values are bit-identical.
        reshaped: name -> {"shape_a", "shape_b", "dtype_a", "dtype_b"}, for tensors whose shape or dtype differ
            (a new classifier head, a cast checkpoint); their values are not compared.
        only_in_a, only_in_b: names present in one checkpoint only.
    """

    a: str
    b: str
    changed: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    reshaped: dict[str, dict[str, Any]] = field(default_factory=dict)
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: keys `a`, `b`, `changed`, `unchanged`, `reshaped`, `only_in_a`, `only_in_b`."""
        return {"a": self.a, "b": self.b, "changed": self.changed, "unchanged": self.unchanged,
                "reshaped": self.reshaped, "only_in_a": self.only_in_a, "only_in_b": self.only_in_b}

    def to_json(self) -> str:
        """`to_dict()` as strict JSON (what `tf1tune diff --json` prints)."""
        return _json.dumps(self.to_dict())

    def format(self) -> str:
        """Human-readable report: changed, reshaped, identical, then names in one checkpoint only."""
        lines = [f"A: {self.a}", f"B: {self.b}",
                 f"{len(self.changed)} changed, {len(self.unchanged)} bit-identical, {len(self.reshaped)} reshaped, "
                 f"{len(self.only_in_a)} only in A, {len(self.only_in_b)} only in B"]
        width = max([len(n) for n in [*self.changed, *self.reshaped]] + [10])
        for name, d in sorted(self.changed.items()):
            size = "not finite" if d["max_abs"] is None else f"{d['max_abs']:.3g}"
            lines.append(f"  changed    {name:<{width}}  {d['count']:>9,} elements  max |change| {size}")
        for name, r in sorted(self.reshaped.items()):
            dtypes = f"  {r['dtype_a']} -> {r['dtype_b']}" if r["dtype_a"] != r["dtype_b"] else ""
            lines.append(f"  reshaped   {name:<{width}}  {tuple(r['shape_a'])} -> {tuple(r['shape_b'])}{dtypes}")
        lines += [f"  identical  {name}" for name in self.unchanged]
        lines += [f"  only in A  {name}" for name in self.only_in_a]
        lines += [f"  only in B  {name}" for name in self.only_in_b]
        return "\n".join(lines)


_STRING_KINDS = "OSU"  # numpy kinds of the arrays the checkpoint reader returns for tf.string


def _differing(va: np.ndarray, vb: np.ndarray) -> np.ndarray:
    """Which elements of two same-shape, same-dtype tensors differ, flattened (0-d tensors give one element).

    Fixed-size values are compared by their bytes: -0.0 != 0.0 and a NaN equals the same NaN. Strings (object or
    fixed-width bytes arrays, whose widths may differ) are compared by value.
    """
    fa, fb = va.reshape(-1), vb.reshape(-1)
    if fa.dtype.kind in _STRING_KINDS:
        return np.asarray(fa != fb, dtype=bool).reshape(-1)
    return (fa.view(np.uint8).reshape(fa.size, -1) != fb.view(np.uint8).reshape(fb.size, -1)).any(axis=1)


def _max_abs(va: np.ndarray, vb: np.ndarray, differ: np.ndarray) -> float | None:
    """Largest |a - b| over the differing elements in float64 (complex128 for complex); 0.0 for strings;
    None when it is not finite."""
    if va.dtype.kind in _STRING_KINDS:
        return 0.0
    wide = np.complex128 if va.dtype.kind == "c" else np.float64
    change = np.abs(va.reshape(-1)[differ].astype(wide) - vb.reshape(-1)[differ].astype(wide))
    largest = float(np.max(change))
    return largest if np.isfinite(largest) else None


def diff_checkpoints(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> CheckpointDiff:
    """Compare every tensor of two checkpoints (prefixes, files or directories; TF1 or TF2 object-based), scalars
    included, any dtype.

    Values are compared bit for bit (see `CheckpointDiff` for where each name goes).

    Example:
        >>> diff_checkpoints("checkpoints/digits_cnn", "runs/digits-parity").reshaped  # doctest: +SKIP
        {'DigitsCNN/Logits/Conv2d_1x1/weights': {'shape_a': [1, 1, 64, 10], 'shape_b': [1, 1, 64, 2], ...}, ...}

    Raises:
        SourceNotFoundError: No checkpoint at `a` or `b`.
        BadSourceError: A checkpoint cannot be read (e.g. a truncated data file).
    """
    pa, pb = resolve_any_checkpoint(a), resolve_any_checkpoint(b)
    ra, rb = read_checkpoint(pa), read_checkpoint(pb)
    keys_a, keys_b = entry_keys(ra, pa), entry_keys(rb, pb)  # variable name -> checkpoint key
    dtypes_a, dtypes_b = ra.get_variable_to_dtype_map(), rb.get_variable_to_dtype_map()
    names_a, names_b = set(keys_a), set(keys_b)
    result = CheckpointDiff(a=pa, b=pb, only_in_a=sorted(names_a - names_b), only_in_b=sorted(names_b - names_a))
    for name in sorted(names_a & names_b):
        va, vb = np.asarray(read_tensor(ra, keys_a[name], pa)), np.asarray(read_tensor(rb, keys_b[name], pb))
        dtype_a, dtype_b = dtypes_a[keys_a[name]], dtypes_b[keys_b[name]]
        if va.shape != vb.shape or dtype_a != dtype_b:
            result.reshaped[name] = {"shape_a": list(va.shape), "shape_b": list(vb.shape),
                                     "dtype_a": dtype_a.name, "dtype_b": dtype_b.name}
            continue
        differ = _differing(va, vb)
        count = int(np.count_nonzero(differ))
        if count == 0:
            result.unchanged.append(name)
        else:
            result.changed[name] = {"count": count, "max_abs": _max_abs(va, vb, differ)}
    return result
