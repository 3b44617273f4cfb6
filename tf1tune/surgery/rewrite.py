"""rename_checkpoint, convert_checkpoint, merge_checkpoints: plan the whole result, then write it (`write`).

Every function plans the whole result first (names, dtypes, values) and raises `SurgeryError` on any problem
before a byte is written; `tf1tune.surgery.write` then writes and checks it. Scopes match at `/` boundaries:
`logits` matches `logits` and `logits/w`, not `logits_new/w`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from tf1tune.checkpoints import read_checkpoint, read_tensor, resolve_checkpoint
from tf1tune.errors import SurgeryError
from tf1tune.names import capped
from tf1tune.selection import scope_matches
from tf1tune.surgery.optimizer_state import optimizer_state_names
from tf1tune.surgery.write import check_output_prefix, same_value, write_checkpoint

__all__ = [
    "CastLoss",
    "SurgeryReport",
    "convert_checkpoint",
    "merge_checkpoints",
    "rename_checkpoint",
]

_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


@dataclass(frozen=True)
class CastLoss:
    """What casting one tensor to another dtype lost.

    Attributes:
        name: The entry's name in the output.
        source_dtype: Its dtype in the source.
        target_dtype: Its dtype in the output.
        max_abs_error: Largest |cast - original| over the finite values that stayed finite.
        max_rel_error: Largest |cast - original| / |original| over the same values, originals != 0.
        overflowed: Finite values that became +-inf.
        underflowed: Non-zero values that became 0 (their relative error is 1).
    """

    name: str
    source_dtype: str
    target_dtype: str
    max_abs_error: float
    max_rel_error: float
    overflowed: int
    underflowed: int = 0


@dataclass
class SurgeryReport:
    """What a surgery function wrote.

    Attributes:
        output: The prefix of the checkpoint written.
        entries: Number of tensors in it.
        renamed: (old, new) for every renamed entry.
        dropped: Names of the source entries left out.
        casts: One `CastLoss` per cast tensor.
        resolved: Names that differed between merged inputs and were taken from the preferred one.
        notes: Short lines of what else happened (e.g. which variable was taken for the global step).
    """

    output: str
    entries: int = 0
    renamed: list[tuple[str, str]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    casts: list[CastLoss] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary_lines(self) -> list[str]:
        """A few lines for a terminal: cast losses by dtype pair, notes, then what was written."""
        lines = list(self.notes)
        pairs: dict[tuple[str, str], list[CastLoss]] = {}
        for c in self.casts:
            pairs.setdefault((c.source_dtype, c.target_dtype), []).append(c)
        for (src, dst), losses in pairs.items():
            lines.append(
                f"cast {len(losses)} tensors {src} -> {dst}: max abs error {max(c.max_abs_error for c in losses):.3g}, "
                f"max rel error {max(c.max_rel_error for c in losses):.3g}, "
                f"overflowed to inf {sum(c.overflowed for c in losses)}, "
                f"flushed to zero {sum(c.underflowed for c in losses)}"
            )
        if self.resolved:
            lines.append(f"took {len(self.resolved)} differing entries from the preferred input: "
                         + capped(self.resolved))
        lines.append(f"wrote {self.output} ({self.entries} entries)")
        return lines


# ----------------------------------------------------------------------------------------------------------------
# Public functions


def rename_checkpoint(
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str],
    mapping: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    drop: Sequence[str] = (),
    drop_optimizer_state: bool = False,
    overwrite: bool = False,
) -> SurgeryReport:
    """Write a V2 copy of `checkpoint` with scopes renamed and dropped.

    Args:
        checkpoint: Source prefix, file or directory (V1 or V2).
        output: Prefix of the checkpoint to write, e.g. `out/model.ckpt`.
        mapping: OLD scope -> NEW scope. A name matched by several OLD scopes takes the longest. An empty NEW
            removes the scope (`encoder=` turns `encoder/w` into `w`).
        drop: Scopes to leave out (matched on the source names, before renaming).
        drop_optimizer_state: Also leave out optimizer slots (see `optimizer_state_names`) and the global step.
        overwrite: Replace an existing checkpoint at `output`.

    Returns:
        What was renamed and dropped.

    Raises:
        SurgeryError: A map or drop scope matches nothing, two entries would get the same name, an entry would
            get an empty name, or `output` exists (without `overwrite`) or is the source. Nothing is written then.

    Example:
        >>> rename_checkpoint("ckpt/model.ckpt-1500", "out/model.ckpt", {"DigitsCNN": "encoder/DigitsCNN"},
        ...                   drop_optimizer_state=True)
    """
    pairs = list(mapping.items()) if isinstance(mapping, Mapping) else [tuple(p) for p in mapping]
    if not pairs and not drop and not drop_optimizer_state:
        raise SurgeryError("nothing to do: give at least one --map OLD=NEW, --drop SCOPE or --drop-optimizer-state")
    for old, new in pairs:
        _check_scope(old, "map")
        if new:
            _check_scope(new, "map")
    for scope in drop:
        _check_scope(scope, "drop")
    prefix = resolve_checkpoint(checkpoint)
    reader = read_checkpoint(prefix)
    names = sorted(reader.get_variable_to_shape_map())
    out = check_output_prefix(output, [prefix], overwrite)
    report = SurgeryReport(output=out)

    dropped: set[str] = set()
    for scope in drop:
        hit = [n for n in names if scope_matches(n, scope)]
        if not hit:
            raise _no_match("--drop", scope, names)
        dropped.update(hit)
        report.notes.append(f"dropped scope {scope} ({len(hit)} entries)")
    if drop_optimizer_state:
        slots, steps, how = optimizer_state_names(prefix, names)
        dropped.update(slots)
        dropped.update(steps)
        step_note = f" and the global step {', '.join(steps)} ({how})" if steps else "; no global step found"
        report.notes.append(f"dropped {len(slots)} optimizer slots{step_note}")
    kept = [n for n in names if n not in dropped]

    used = {old: 0 for old, _ in pairs}
    new_names: dict[str, str] = {}
    for n in kept:
        best = max((p for p in pairs if scope_matches(n, p[0])), key=lambda p: len(p[0]), default=None)
        if best is None:
            new_names[n] = n
            continue
        old, new = best
        used[old] += 1
        rest = n[len(old):].lstrip("/")
        renamed = "/".join(part for part in (new, rest) if part)
        if not renamed:
            raise SurgeryError(f"--map {old}={new} would give entry '{n}' an empty name; map it to a scope name")
        new_names[n] = renamed
    for old, new in pairs:
        if not used[old] and any(scope_matches(n, old) for n in dropped):
            raise SurgeryError(f"--map {old}={new} matches only entries that are dropped; remove the map or the drop")
        if not used[old]:
            raise _no_match("--map", old, kept, f"{old}={new}")
    _check_collisions(new_names)
    for old, new in pairs:
        if used[old]:
            report.notes.append(f"renamed {old} -> {new or '(root)'} ({used[old]} entries)")

    dtypes = reader.get_variable_to_dtype_map()
    plan = {new_names[n]: _Source(reader, n, dtypes[n], prefix) for n in kept}
    report.renamed = [(n, new_names[n]) for n in kept if new_names[n] != n]
    report.dropped = sorted(dropped)
    report.entries = write_checkpoint(_load(plan), out, [prefix])
    return report


def convert_checkpoint(
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str],
    dtype: str | None = None,
    allow_overflow: bool = False,
    overwrite: bool = False,
) -> SurgeryReport:
    """Write `checkpoint` (V1 single file, V1 sharded or V2) as a V2 checkpoint, optionally casting floats.

    Args:
        checkpoint: Source prefix, file or directory.
        output: Prefix of the checkpoint to write.
        dtype: `float16`, `float32` or `float64`: every floating entry is cast to it; None keeps every dtype.
            Integer, boolean and string entries are never cast.
        allow_overflow: Accept finite values that become inf in `float16` (otherwise an error).
        overwrite: Replace an existing checkpoint at `output`.

    Returns:
        The report, with one `CastLoss` per cast tensor.

    Raises:
        SurgeryError: Unknown `dtype`, overflow without `allow_overflow`, or a bad `output`; nothing is written.
    """
    if dtype is not None and dtype not in ("float16", "float32", "float64"):
        raise SurgeryError(f"unknown --dtype '{dtype}'; use float16, float32 or float64")
    prefix = resolve_checkpoint(checkpoint)
    reader = read_checkpoint(prefix)
    out = check_output_prefix(output, [prefix], overwrite)
    dtypes = reader.get_variable_to_dtype_map()
    values = _load({n: _Source(reader, n, dtypes[n], prefix) for n in sorted(dtypes)})
    report = SurgeryReport(output=out)
    if dtype is not None:
        target = tf.as_dtype(dtype)
        for name, (value, src_dtype) in list(values.items()):
            if src_dtype.name not in _FLOAT_DTYPES or src_dtype == target:
                continue
            cast, loss = _cast(name, value, src_dtype, target)
            values[name] = (cast, target)
            report.casts.append(loss)
        overflowed = [c for c in report.casts if c.overflowed]
        if overflowed and not allow_overflow:
            raise SurgeryError(
                f"{sum(c.overflowed for c in overflowed)} finite values overflow to inf in {dtype} (in "
                f"{capped([c.name for c in overflowed])}); keep a wider dtype or pass --allow-overflow"
            )
    report.entries = write_checkpoint(values, out, [prefix])
    return report


def merge_checkpoints(
    checkpoints: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    prefer: int | None = None,
    overwrite: bool = False,
) -> SurgeryReport:
    """Write the union of several checkpoints' entries as one V2 checkpoint.

    An entry in several inputs with the same dtype, shape and bytes is written once. One that differs is a
    conflict, unless `prefer` names an input that holds it: then that input's value is taken.

    Args:
        checkpoints: Two or more source prefixes, files or directories.
        output: Prefix of the checkpoint to write.
        prefer: Position (0-based) in `checkpoints` of the input whose value wins a conflict.
        overwrite: Replace an existing checkpoint at `output`.

    Returns:
        The report; `resolved` lists the conflicts decided by `prefer`.

    Raises:
        SurgeryError: Fewer than two inputs, a bad `prefer`, conflicts not decided by `prefer` (counted, first ones named), or a
            bad `output`; nothing is written.
    """
    if len(checkpoints) < 2:
        raise SurgeryError(f"merge needs at least two checkpoints, got {len(checkpoints)}")
    if prefer is not None and not 0 <= prefer < len(checkpoints):
        raise SurgeryError(f"--prefer {prefer} is not an input position; use 0 to {len(checkpoints) - 1}")
    prefixes = [resolve_checkpoint(c) for c in checkpoints]
    out = check_output_prefix(output, prefixes, overwrite)
    per_input = []
    for prefix in prefixes:
        reader = read_checkpoint(prefix)
        dtypes = reader.get_variable_to_dtype_map()
        per_input.append(_load({n: _Source(reader, n, dtypes[n], prefix) for n in dtypes}))
    merged: dict[str, tuple[np.ndarray, tf.DType]] = {}
    origin: dict[str, list[int]] = {}
    conflicts: list[str] = []
    report = SurgeryReport(output=out)
    for name in sorted(set().union(*per_input)):
        holders = [i for i, values in enumerate(per_input) if name in values]
        origin[name] = holders
        first = per_input[holders[0]][name]
        differs = any(not same_value(first, per_input[i][name]) for i in holders[1:])
        if not differs:
            merged[name] = first
        elif prefer is not None and prefer in holders:
            merged[name] = per_input[prefer][name]
            report.resolved.append(name)
        else:
            conflicts.append(name)
    if conflicts:
        hint = ("pass --prefer N to take input N's values" if prefer is None
                else f"input {prefer} does not hold them; prefer an input that does")
        raise SurgeryError(f"{len(conflicts)} entries differ between the inputs: {capped(conflicts)}; {hint}")
    for i, prefix in enumerate(prefixes):
        only = sum(1 for holders in origin.values() if holders == [i])
        report.notes.append(f"input {i} {prefix}: {len(per_input[i])} entries, {only} only there")
    report.entries = write_checkpoint(merged, out, prefixes)
    return report


# ----------------------------------------------------------------------------------------------------------------
# Planning helpers


@dataclass(frozen=True)
class _Source:
    reader: tf.train.CheckpointReader
    name: str
    dtype: tf.DType
    prefix: str


def _load(plan: Mapping[str, _Source]) -> dict[str, tuple[np.ndarray, tf.DType]]:
    """Read every planned entry: output name -> (value, dtype)."""
    values = {}
    for new, src in plan.items():
        value = read_tensor(src.reader, src.name, src.prefix)
        values[new] = (np.asarray(value), src.dtype)
    return values


def _check_scope(scope: str, flag: str) -> None:
    if not scope or scope.startswith("/") or scope.endswith("/") or "//" in scope:
        raise SurgeryError(f"--{flag} scope '{scope}' is not a scope name; give it without leading or trailing '/', "
                           "e.g. DigitsCNN or encoder/DigitsCNN")


def _no_match(flag: str, scope: str, names: Sequence[str], shown: str | None = None) -> SurgeryError:
    from tf1tune.names import closest

    tops = sorted({n.split("/")[0] for n in names})
    near = closest(scope, tops + list(names), n=3)
    listed = f"closest: {', '.join(near)}" if near else f"top-level scopes: {capped(tops)}"
    return SurgeryError(f"{flag} {shown or scope} matches no checkpoint entry ({listed}); scopes match whole "
                        "'/'-separated parts, see `tf1tune inspect CKPT`")


def _check_collisions(new_names: Mapping[str, str]) -> None:
    by_new: dict[str, list[str]] = {}
    for old, new in new_names.items():
        by_new.setdefault(new, []).append(old)
    clashes = {new: olds for new, olds in by_new.items() if len(olds) > 1}
    if clashes:
        shown = "; ".join(f"{' and '.join(olds)} -> {new}" for new, olds in sorted(clashes.items())[:3])
        raise SurgeryError(f"after renaming, {len(clashes)} names would each be given to several entries ({shown}); "
                           "change the --map or --drop one side")


def _cast(name: str, value: np.ndarray, src: tf.DType, dst: tf.DType) -> tuple[np.ndarray, CastLoss]:
    with np.errstate(over="ignore"):  # overflow is counted below
        cast = value.astype(dst.as_numpy_dtype)
    orig = value.astype(np.float64)
    back = cast.astype(np.float64)
    finite = np.isfinite(orig)
    overflow = finite & ~np.isfinite(back)
    ok = finite & np.isfinite(back)
    err = np.abs(back - orig)[ok]
    nonzero = ok & (orig != 0)
    rel = (np.abs(back - orig)[nonzero] / np.abs(orig[nonzero]))
    return cast, CastLoss(name=name, source_dtype=src.name, target_dtype=dst.name,
                          max_abs_error=float(err.max()) if err.size else 0.0,
                          max_rel_error=float(rel.max()) if rel.size else 0.0,
                          overflowed=int(overflow.sum()), underflowed=int((nonzero & (back == 0)).sum()))


