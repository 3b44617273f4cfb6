"""Comparing two checkpoints variable by variable: the proof that frozen weights did not move.

Either side may be a TF2 object-based checkpoint (or a TF2 SavedModel directory): its entries are compared under
the variables' own names (`tf1tune.tf2_checkpoints.entry_keys`), so a TF2 run can be checked against its TF1 source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tf1tune.checkpoints import read_checkpoint, read_tensor
from tf1tune.tf2_checkpoints import entry_keys, resolve_any_checkpoint


@dataclass
class CheckpointDiff:
    """Per-variable differences between checkpoint A and checkpoint B.

    Attributes:
        changed: name -> {"count": elements that differ, "max_abs": largest absolute change}.
        unchanged: names whose values are bit-identical.
        only_in_a, only_in_b: names present in one checkpoint only.
        shape_changed: name -> {"a": shape, "b": shape} (also listed in `changed`, every element counted).
    """

    a: str
    b: str
    changed: dict[str, dict[str, float | int]] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)
    shape_changed: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: keys `changed`, `unchanged`, `only_in_a`, `only_in_b` (and `a`, `b`, `shape_changed`)."""
        return {"a": self.a, "b": self.b, "changed": self.changed, "unchanged": self.unchanged,
                "only_in_a": self.only_in_a, "only_in_b": self.only_in_b, "shape_changed": self.shape_changed}

    def format(self) -> str:
        """Human-readable report, changed variables first."""
        lines = [f"A: {self.a}", f"B: {self.b}",
                 f"{len(self.changed)} changed, {len(self.unchanged)} bit-identical, "
                 f"{len(self.only_in_a)} only in A, {len(self.only_in_b)} only in B"]
        width = max([len(n) for n in self.changed] + [10])
        for name, d in sorted(self.changed.items()):
            if name in self.shape_changed:
                shapes = self.shape_changed[name]
                lines.append(f"  reshaped   {name:<{width}}  {tuple(shapes['a'])} -> {tuple(shapes['b'])}")
            else:
                lines.append(f"  changed    {name:<{width}}  {d['count']:>9,} elements  max |change| {d['max_abs']:.3g}")
        lines += [f"  identical  {name}" for name in self.unchanged]
        lines += [f"  only in A  {name}" for name in self.only_in_a]
        lines += [f"  only in B  {name}" for name in self.only_in_b]
        return "\n".join(lines)


def diff_checkpoints(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> CheckpointDiff:
    """Compare every tensor of two checkpoints (prefixes, files or directories; TF1 or TF2 object-based).

    Values are compared bit for bit (NaN equals NaN when the bits agree); `max_abs` is computed in
    float64 for numeric tensors and is 0 for non-numeric ones that differ.

    Raises:
        SourceNotFoundError: No checkpoint at `a` or `b`.
        BadSourceError: A checkpoint cannot be read (e.g. a truncated data file).
    """
    pa, pb = resolve_any_checkpoint(a), resolve_any_checkpoint(b)
    ra, rb = read_checkpoint(pa), read_checkpoint(pb)
    keys_a, keys_b = entry_keys(ra, pa), entry_keys(rb, pb)
    names_a, names_b = set(keys_a), set(keys_b)
    result = CheckpointDiff(a=pa, b=pb, only_in_a=sorted(names_a - names_b), only_in_b=sorted(names_b - names_a))
    for name in sorted(names_a & names_b):
        va, vb = np.asarray(read_tensor(ra, keys_a[name], pa)), np.asarray(read_tensor(rb, keys_b[name], pb))
        if va.shape != vb.shape or va.dtype != vb.dtype:
            result.shape_changed[name] = {"a": list(va.shape), "b": list(vb.shape)}
            result.changed[name] = {"count": int(max(va.size, vb.size)), "max_abs": float("inf")}
            continue
        if va.dtype.kind in "fc":  # compare the bytes of each element: -0.0 != 0.0, NaN == same NaN
            as_bytes = (va.view(np.uint8).reshape(va.shape + (-1,)), vb.view(np.uint8).reshape(vb.shape + (-1,)))
            differ = (as_bytes[0] != as_bytes[1]).any(axis=-1)
        else:
            differ = va != vb
        count = int(np.count_nonzero(differ))
        if count == 0:
            result.unchanged.append(name)
            continue
        numeric = va.dtype.kind in "fciub"
        max_abs = float(np.max(np.abs(va.astype(np.float64) - vb.astype(np.float64)))) if numeric else 0.0
        result.changed[name] = {"count": count, "max_abs": max_abs}
    return result
