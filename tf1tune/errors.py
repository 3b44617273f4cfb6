"""Exception and warning classes of tf1tune, all of them, and the one cleaner of TensorFlow's error text.

Every error the toolkit raises on bad input is a `Tf1tuneError`: its message is one line that says
what was received, what is valid and how to fix it. The CLI prints that line and exits with code 2.
Every warning is a `UserWarning` subclass below; the CLI prints it as one `tf1tune: warning:` line.
"""

from __future__ import annotations

import re


class Tf1tuneError(Exception):
    """Base class of every error tf1tune raises on purpose."""


class EnvironmentProblem(Tf1tuneError):
    """The installed packages cannot run tf1tune (a missing or incompatible dependency)."""


class SourceNotFoundError(Tf1tuneError):
    """A path given as a model, checkpoint or data source does not exist or holds nothing usable."""


class BadSourceError(Tf1tuneError):
    """A file exists but cannot be read as what it claims to be (truncated, garbage, wrong format)."""


class UnknownOpsError(BadSourceError):
    """A graph uses op types that this TensorFlow does not register."""


class NameNotFoundError(Tf1tuneError, KeyError):
    """A tensor, operation, endpoint, scope or net name does not exist; the message lists the closest ones."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointMismatchError(Tf1tuneError):
    """Graph variables and checkpoint entries do not fit together (missing keys, shapes, dtypes)."""


class SelectionError(Tf1tuneError):
    """A variable selector (scope, pattern, endpoint) matches nothing; the message lists the scopes that exist."""


class SurgeryError(Tf1tuneError):
    """A checkpoint rewrite (rename, convert, merge) cannot be done as asked; raised before anything is written."""


class ExportError(Tf1tuneError):
    """A model cannot be exported as asked (an output needs a training-only input, verification failed, ...)."""


class DataError(Tf1tuneError):
    """Training or validation data cannot be used as given (missing, empty, undecodable, labels that do not fit)."""


class GraftError(Tf1tuneError):
    """A head spec, endpoint or scope that cannot be grafted; the message says how to fix it."""


class NetRegistryError(Tf1tuneError):
    """A net cannot be registered as asked (a name registered twice)."""


class GraphRunError(Tf1tuneError):
    """TensorFlow failed while running a model's graph; the message names the tensor or op and how to fix it."""


class ConfigError(Tf1tuneError):
    """A fine-tuning key or value (of a run, or of one training step) that is not allowed; the message lists what is."""


class UnsafeGraphError(BadSourceError):
    """A graph holds ops that do more than compute (files, network, Python), or claims impossible memory."""


class YamlError(Tf1tuneError):
    """A YAML file that cannot be read, is not valid YAML, or expands beyond the limits."""


class TrainingError(Tf1tuneError):
    """Training cannot go on as asked (a non-finite loss or weights); the last good checkpoint is kept."""


class ClusterError(Tf1tuneError):
    """A distributed run cannot start or go on: a bad cluster description, a task that cannot be reached in time."""


class DataWarning(UserWarning):
    """Data that tf1tune converts to fit the net (RGB images for a grayscale net), with a loss the user should know."""


class AllowedOpsWarning(UserWarning):
    """A graph runs with ops the user allowed although they do more than compute."""


class GraphRepairError(Tf1tuneError):
    """A graph cannot be repaired as asked (unknown tensor, not an input pipeline tensor, bad output path, ...)."""


# Warnings: what tf1tune did differently from what was asked, or repaired; the CLI prints each as one line.


class CheckpointWarning(UserWarning):
    """A checkpoint was found, but not where the caller or the state file said."""


class GraphRepairWarning(UserWarning):
    """A source needed a repair to import on this TensorFlow; the message says which."""


class RestoreWarning(UserWarning):
    """Some variables were not restored because they do not fit the checkpoint (`on_mismatch="skip"`)."""


class TrainWarning(UserWarning):
    """A trained variable gets no gradient from the loss, so the step leaves it unchanged."""


class FinetuneWarning(UserWarning):
    """Something a fine-tuning run could not do exactly as asked; the message says what and why."""


# Framing lines of TensorFlow's error texts that say where, not what.
_TF_NOISE = ("Graph execution error", "Detected at node", "Node:", "[[", "File ", "Original stack trace")


def first_line(error: BaseException, telling: bool = False) -> str:
    """The first non-empty line of an exception's message (its type name when the message is empty).

    TensorFlow's errors carry long multi-line texts; tf1tune's messages quote only their first line. With
    `telling`, TensorFlow's framing lines (`Graph execution error:`, `Detected at node ...`) are skipped and the
    `{{function_node ...}}` and `[Op:...]` decorations removed, leaving the line that says what went wrong.
    """
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if telling:
        lines = [line for line in lines if not line.startswith(_TF_NOISE)] or lines
        lines = [re.sub(r"\s*\[Op:[^\]]*\]", "", re.sub(r"\{\{[^}]*\}\}\s*", "", line)).strip() for line in lines]
        lines = [line for line in lines if line]
    return lines[0] if lines else type(error).__name__


_ERRNO_TEXT = {
    "ENOSPC": "the disk is full",
    "EDQUOT": "the disk quota is exceeded",
    "EROFS": "the file system is read-only",
    "EACCES": "permission denied",
    "EPERM": "operation not permitted",
    "ENOTDIR": "a component of the path is a file, not a directory",
    "EISDIR": "it is a directory",
    "ENOENT": "no such file or directory",
    "ENAMETOOLONG": "the name is too long",
    "EEXIST": "it already exists",
    "ELOOP": "too many symbolic links",
    "EMFILE": "too many open files",
    "EFBIG": "the file is too large",
}
# Fragments of TensorFlow's file-system error texts, and what they mean.
_TF_TEXT = (("No space left on device", "the disk is full"), ("Read-only file system", "the file system is read-only"),
            ("Permission denied", "permission denied"), ("Not a directory", "a component of the path is a file"),
            ("Disk quota exceeded", "the disk quota is exceeded"))


def describe_os_error(error: BaseException) -> str | None:
    """One line for a failure of the file system or the machine (disk full, read-only, permissions, a path component
    that is a file, out of memory), naming the path when known; None for any other error.

    These are bad input (where the user pointed tf1tune), not bugs: the CLI prints the line and exits 2.
    """
    import errno as errno_lib
    import os

    if isinstance(error, MemoryError):
        return "out of memory; use a smaller batch size or input size"
    if isinstance(error, OSError) and error.errno is not None:
        name = errno_lib.errorcode.get(error.errno, "")
        path = os.fspath(error.filename) if error.filename is not None else ""
        if name in ("EEXIST", "ENOTDIR") and path:
            from tf1tune._fs import missing_folder

            reason = missing_folder(path)
            if "is a file" in reason:
                return f"cannot use '{path}': {reason}"
        what = _ERRNO_TEXT.get(name, error.strerror or name)
        where = f"'{path}'" + (f" -> '{os.fspath(error.filename2)}'" if error.filename2 else "") if path else "a file"
        return f"cannot use {where}: {what}"
    try:
        import tensorflow as tf
    except ImportError:  # pragma: no cover
        return None
    if isinstance(error, tf.errors.OpError):
        text = str(error)
        for fragment, meaning in _TF_TEXT:
            if fragment in text:
                return f"{meaning}{_tf_path(text, fragment)}"
        if isinstance(error, tf.errors.ResourceExhaustedError):
            return (f"out of memory ({first_line(error)}); use a smaller batch size or input size")
    return None


def _tf_path(text: str, fragment: str) -> str:
    """`: cannot write 'FOLDER'` for the path a TensorFlow file-system error names before `fragment`."""
    import os
    import re

    m = re.search(r"(/[^\s;:'\"]+)[;:,]?\s*" + re.escape(fragment), text)
    if not m:
        return ""
    path = m.group(1)
    parts = path.split(os.sep)
    for i, part in enumerate(parts):  # a staging folder or temp file of an atomic write: name what the user gave
        if part.startswith(".") and (".tmp" in part or part.count(".") >= 2) or ".tempstate" in part:
            path = os.sep.join(parts[:i]) or os.sep
            break
    return f": cannot write to '{path}'"


def run_error_text(error: BaseException) -> str:
    """One line for a TensorFlow error raised while running a graph: the node and what it said.

    TensorFlow's text starts with `Graph execution error:` and buries the cause among stack traces.
    """
    node = getattr(getattr(error, "op", None), "name", None)
    text = first_line(error, telling=True)
    return f"at node '{node}': {text}" if node else text
