"""Finding and reading checkpoints, in every form old TF1 code left them.

A checkpoint may be given as a prefix (`model.ckpt-1000`), as one of its files (`.index`, `.data-*`,
`.meta`), as a directory (its `checkpoint` state file is read; when that is stale or points elsewhere,
the newest prefix in the directory is used and a warning says so), or found next to a `.meta`. The
formats are V2 (`.index` + `.data-*`), V1 single file and V1 sharded (`name-00000-of-00002`).
"""

from __future__ import annotations

import glob
import os
import re
import warnings
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tf1tune.errors import BadSourceError, CheckpointWarning, SourceNotFoundError, first_line

_SHARD = re.compile(r"^(?P<prefix>.+)-\d{5}-of-(?P<n>\d{5})$")
_DATA = re.compile(r"^(?P<prefix>.+)\.data-\d{5}-of-\d{5}$")
_NOT_V1_SUFFIXES = (".index", ".meta", ".pb", ".pbtxt", ".json", ".txt", ".md", ".py", ".npz", ".npy", ".yaml",
                    ".tfevents", ".tmp")


@dataclass(frozen=True)
class CheckpointEntry:
    """One tensor stored in a checkpoint."""

    name: str
    shape: tuple[int, ...]
    dtype: str


def _strip_file_suffix(path: str) -> str:
    """`x.index`, `x.meta`, `x.data-00000-of-00001` -> `x`; anything else unchanged."""
    for suffix in (".index", ".meta"):
        if path.endswith(suffix):
            return path[: -len(suffix)]
    m = _DATA.match(path)
    return m.group("prefix") if m else path


def _prefix_form(prefix: str) -> str | None:
    """The form in which `prefix` exists on disk (`v2`, `v1`, `v1-sharded`), or None."""
    if os.path.isfile(prefix + ".index"):
        return "v2"
    if "-?????-of-" in prefix and glob.glob(prefix):  # the pattern form Saver writes for V1 sharded
        return "v1-pattern"
    m = _SHARD.match(prefix)
    if m and os.path.isfile(prefix):  # a shard file of a V1 sharded checkpoint
        return "v1-sharded"
    if glob.glob(glob.escape(prefix) + "-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9]"):
        return "v1-sharded"
    if os.path.isfile(prefix) and not prefix.endswith(_NOT_V1_SUFFIXES) and os.path.basename(prefix) != "checkpoint":
        return "v1"
    return None


def _restorable_path(prefix: str, form: str) -> str:
    """The path Saver.restore and the checkpoint reader accept for a prefix in `form`."""
    if form != "v1-sharded":  # v2, v1 and v1-pattern are used as they are
        return prefix
    m = _SHARD.match(prefix)
    if m and os.path.isfile(prefix):
        return f"{m.group('prefix')}-?????-of-{m.group('n')}"
    shard = sorted(glob.glob(glob.escape(prefix) + "-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9]"))[0]
    return f"{prefix}-?????-of-{_SHARD.match(shard).group('n')}"  # type: ignore[union-attr]


def _check_v2_data(prefix: str) -> None:
    data = glob.glob(glob.escape(prefix) + ".data-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9]")
    if not data:
        raise SourceNotFoundError(
            f"checkpoint '{prefix}' has its .index file but no data file ({os.path.basename(prefix)}.data-00000-of-00001); "
            "copy the .data-* file(s) next to the .index"
        )
    m = re.search(r"-of-(\d{5})$", data[0])
    expected = int(m.group(1)) if m else 1
    if len(data) < expected:
        raise SourceNotFoundError(
            f"checkpoint '{prefix}' has {len(data)} of its {expected} data shards; copy the missing .data-* files"
        )


def _prefixes_in(directory: str) -> list[str]:
    """Every checkpoint prefix in `directory`, newest (by modification time, then step) last."""
    found: dict[str, float] = {}
    for entry in os.listdir(directory):
        path = os.path.join(directory, entry)
        prefix = _strip_file_suffix(path)
        m = _SHARD.match(prefix)
        if m and not entry.endswith(".index"):
            prefix = m.group("prefix")
        if path.endswith(".meta"):
            continue
        if _prefix_form(prefix) is not None or _prefix_form(path) is not None:
            key = prefix if _prefix_form(prefix) else path
            found[key] = max(found.get(key, 0.0), os.path.getmtime(path))

    def order(p: str) -> tuple[float, int]:
        step = re.search(r"-(\d+)$", p)
        return found[p], int(step.group(1)) if step else -1

    return sorted(found, key=order)


def _from_directory(directory: str) -> str:
    prefixes = _prefixes_in(directory)
    state_path = os.path.join(directory, "checkpoint")
    if os.path.isfile(state_path):
        try:
            state = tf.train.get_checkpoint_state(directory)
        except Exception:  # noqa: BLE001  (a garbled state file, of any kind, is treated like a stale one)
            state = None
        named = state.model_checkpoint_path if state else ""
        named = "" if "\x00" in named else named  # a garbled state file: like a stale one
        named = os.path.join(directory, named) if named and not os.path.isabs(named) else named
        own = os.path.join(directory, os.path.basename(named)) if named else ""
        if named and _inside(named, directory) and _prefix_form(named):
            return named
        if own and _prefix_form(own):  # a state file written elsewhere (absolute paths of another machine)
            return own
        if prefixes:
            why = "a checkpoint outside this directory" if named and _prefix_form(named) else "one that does not exist"
            warnings.warn(
                f"the state file {state_path} names '{named}', {why}; "
                f"using the newest checkpoint in the directory, '{os.path.basename(prefixes[-1])}'",
                CheckpointWarning,
                stacklevel=3,
            )
            return prefixes[-1]
        if named and _prefix_form(named):
            raise SourceNotFoundError(
                f"no checkpoint in directory '{directory}': its state file names '{named}', outside the directory, "
                "which tf1tune does not follow; give that checkpoint's prefix if you mean it")
    elif prefixes:
        return prefixes[-1]
    raise SourceNotFoundError(
        f"no checkpoint in directory '{directory}' (expected PREFIX.index + PREFIX.data-*, or a V1 checkpoint file); "
        "give the checkpoint prefix or the directory that holds it"
    )


def _inside(path: str, directory: str) -> bool:
    """True when `path` (a prefix) lies in `directory` itself, symbolic links resolved."""
    return os.path.dirname(os.path.realpath(path)) == os.path.realpath(directory)


def resolve_checkpoint(path: str | os.PathLike[str]) -> str:
    """The path of a checkpoint that `Saver.restore` and `tf.train.load_checkpoint` accept.

    Args:
        path: A prefix, one of the checkpoint's files, a `.meta` next to its checkpoint, or a directory.

    Returns:
        The prefix (for V1 sharded checkpoints the `name-?????-of-NNNNN` pattern).

    Raises:
        SourceNotFoundError: Nothing usable at `path` (the message says what was expected).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        prefix = _from_directory(path)
    else:
        prefix = _strip_file_suffix(path)
        if _prefix_form(prefix) is None and _prefix_form(path) is not None:
            prefix = path
        if _prefix_form(prefix) is None:
            directory = os.path.dirname(prefix) or "."
            if path.endswith(".meta") and os.path.isdir(directory):
                prefix = _from_directory(directory)
            elif not os.path.exists(path) and not glob.glob(glob.escape(prefix) + "*"):
                raise SourceNotFoundError(f"no checkpoint at '{path}': the path does not exist")
            else:
                raise SourceNotFoundError(
                    f"'{path}' is not a checkpoint (expected PREFIX.index + PREFIX.data-*, or a V1 checkpoint file); "
                    "give the checkpoint prefix, e.g. model.ckpt-1000"
                )
    form = _prefix_form(prefix)
    if form == "v2":
        _check_v2_data(prefix)
    return _restorable_path(prefix, form or "v2")


def read_checkpoint(prefix: str) -> tf.train.CheckpointReader:
    """A reader for a resolved checkpoint prefix; unreadable files raise `BadSourceError`."""
    try:
        return tf.train.load_checkpoint(prefix)
    except Exception as e:  # DataLossError, NotFoundError, ... from the C++ reader
        first = first_line(e)
        raise BadSourceError(
            f"checkpoint '{prefix}' cannot be read ({first}); the files may be truncated or not a checkpoint"
        ) from e


def checkpoint_entries(prefix: str) -> list[CheckpointEntry]:
    """Every tensor in the checkpoint, sorted by name."""
    reader = read_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    return [CheckpointEntry(n, tuple(shapes[n]), dtypes[n].name) for n in sorted(shapes)]


def checkpoint_values(prefix: str) -> dict[str, np.ndarray]:
    """Every tensor in the checkpoint as a numpy array (for tests and small checkpoints)."""
    reader = read_checkpoint(prefix)
    return {n: read_tensor(reader, n, prefix) for n in reader.get_variable_to_shape_map()}


def _unreadable(prefix: str, e: BaseException) -> BadSourceError:
    """The one-line error for a checkpoint whose values cannot be read; keeps the first telling line of `e`."""
    first = first_line(e, telling=True)
    if len(first) > 200:
        first = first[:200] + "..."
    return BadSourceError(
        f"checkpoint '{prefix}' cannot be read ({type(e).__name__}: {first}): the data file may be truncated; "
        "copy the checkpoint's .index and .data-* files again from where they came from"
    )


def read_tensor(reader: tf.train.CheckpointReader, name: str, prefix: str) -> np.ndarray:
    """The value of entry `name`, read with `reader` (from `read_checkpoint(prefix)`).

    Args:
        reader: A reader of the checkpoint.
        name: An entry name of the checkpoint.
        prefix: The checkpoint prefix, for the error message.

    Returns:
        The entry's value.

    Raises:
        BadSourceError: The value cannot be read (a truncated or corrupt data file).
    """
    try:
        return reader.get_tensor(name)
    except (tf.errors.OpError, IndexError, ValueError) as e:
        raise _unreadable(prefix, e) from e


def saver_restore(saver: tf.compat.v1.train.Saver, sess: tf.compat.v1.Session, prefix: str) -> None:
    """`saver.restore(sess, prefix)` in `sess.graph`, with unreadable checkpoints raised as `BadSourceError`.

    Args:
        saver: A Saver built in `sess.graph`.
        sess: The session to restore into.
        prefix: A resolved checkpoint prefix.

    Raises:
        BadSourceError: The checkpoint's values cannot be read (a truncated or corrupt data file).
    """
    try:
        with sess.graph.as_default():  # Saver.restore takes an eager code path outside a graph context
            saver.restore(sess, prefix)
    except (tf.errors.OpError, ValueError) as e:
        raise _unreadable(prefix, e) from e


def checkpoint_files(prefix: str) -> list[str]:
    """Every file of the checkpoint at `prefix` that exists, sorted.

    Covers the V2 `.index` and all `.data-*` shards, a V1 single file, all V1 shards (for `prefix` given as a
    shard, as the `name-?????-of-NNNNN` pattern or as the bare name), and the `.meta` next to the checkpoint.

    Args:
        prefix: A checkpoint prefix in any form `resolve_checkpoint` returns (or one not yet written).

    Returns:
        Absolute-or-as-given paths of the files that exist (empty when there is no checkpoint at `prefix`).
    """
    prefix = os.fspath(prefix)
    m = _SHARD.match(prefix)
    if "-?????-of-" in prefix:
        base = prefix.split("-?????-of-")[0]
    elif m and os.path.isfile(prefix):
        base = m.group("prefix")
    else:
        base = prefix
    esc = glob.escape(base)
    digits = "[0-9][0-9][0-9][0-9][0-9]"
    files = set(glob.glob(f"{esc}.index") + glob.glob(f"{esc}.data-{digits}-of-{digits}")
                + glob.glob(f"{esc}-{digits}-of-{digits}") + glob.glob(f"{esc}.meta"))
    if os.path.isfile(base) and not base.endswith(_NOT_V1_SUFFIXES) and os.path.basename(base) != "checkpoint":
        files.add(base)
    return sorted(files)
