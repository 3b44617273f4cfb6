"""Atomic file writes: every output tf1tune writes appears whole or not at all."""

from __future__ import annotations

import os
import tempfile


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> str:
    """Write `data` to `path` through a temp file in the same directory and `os.replace`; returns the absolute path.

    A crash or an error leaves the old file (if any) as it was and no temp file behind. The directory must exist.
    """
    target = os.path.abspath(os.fspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=os.path.dirname(target))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return target
