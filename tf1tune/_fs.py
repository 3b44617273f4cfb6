"""The one output policy of every tf1tune writer: sources are never written to, outputs appear whole or not at all.

- `check_output`: an output may not be a source file or lie inside a source directory, and an existing output is
  replaced only when the caller passed `--overwrite` (each writer words the errors for what it writes).
- `write_atomic` / `atomic_file`: a file is written as a temp file in its own directory, then `os.replace`d.
- `staged_dir`: a directory (a SavedModel, a checkpoint's files) is built in a temp directory next to its target
  and moved into place only once it is complete and checked; a failure leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator

from tf1tune.errors import Tf1tuneError


def contains(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> bool:
    """True when `path` is `root` or lies inside it (real paths, so links and `..` do not hide it)."""
    root_real, path_real = os.path.realpath(root), os.path.realpath(path)
    return os.path.commonpath([root_real, path_real]) == root_real


def check_output(
    path: str | os.PathLike[str],
    sources: Iterable[str | os.PathLike[str]],
    overwrite: bool | None,
    *,
    is_source: str,
    exists: str,
    error: type[Tf1tuneError] = Tf1tuneError,
    existing: bool | None = None,
) -> str:
    """Check `path` against the policy; returns its absolute path.

    Args:
        path: The output the user asked for.
        sources: Source files and directories: `path` may not be one of them or lie inside one.
        overwrite: False: an existing output is refused; True: it may be replaced; None: the caller checks.
        is_source: The error when `path` is a source, formatted with `path` and `source`.
        exists: The error when `path` exists and `overwrite` is False, formatted with `path`.
        error: The exception class to raise.
        existing: Whether the output exists (default: `os.path.exists(path)`; a checkpoint prefix is no file).

    Raises:
        error: `path` is or lies inside a source, or exists without `overwrite`.
    """
    text = os.fspath(path)
    reason = missing_folder(os.path.dirname(os.path.abspath(text)))
    if "is a file" in reason:  # a path below a regular file (which may be a source, but is not written to)
        raise error(f"cannot write '{text}': {reason}")
    for source in sources:
        if contains(source, text):
            raise error(is_source.format(path=text, source=os.fspath(source)))
    if overwrite is False and (os.path.exists(text) if existing is None else existing):
        raise error(exists.format(path=text))
    return os.path.abspath(text)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temp path next to `path`; when the block ends without error it replaces `path`, else it is removed.

    The directory must exist. A crash leaves the old file (if any) as it was.
    """
    target = os.path.abspath(os.fspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=os.path.dirname(target))
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> str:
    """Write `data` to `path` through `atomic_file`; returns the absolute path."""
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return os.path.abspath(os.fspath(path))


@contextlib.contextmanager
def staged_dir(target: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a fresh temp directory next to `target` (which need not exist yet) to build an output in.

    The caller moves what it built into place (`os.replace`) inside the block, once it is checked; whatever is
    left of the temp directory is removed when the block ends, error or not.
    """
    folder = os.path.dirname(os.path.abspath(os.fspath(target)))
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.fspath(target))}.tmp-", dir=folder)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def require_folder(path: str | os.PathLike[str], error: type[Tf1tuneError] = Tf1tuneError) -> str:
    """The absolute path of `path`, after checking that its directory exists (outputs never create parents)."""
    target = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise error(f"cannot write '{os.fspath(path)}': {missing_folder(folder)}")
    return target


def missing_folder(folder: str | os.PathLike[str]) -> str:
    """Why `folder` cannot hold an output: the first component of it that is a file, or that it does not exist."""
    text = os.path.abspath(os.fspath(folder))
    probe = text
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if os.path.exists(probe) and not os.path.isdir(probe):
        return f"'{probe}' is a file, not a directory"
    return f"directory '{text}' does not exist; create it first"


@contextlib.contextmanager
def stderr_to_devnull() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block: C++ code (TensorFlow's start-up, the TFLite converter)
    writes there directly, past Python's `sys.stderr`."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
