"""Class names inside a TFLite model: the flatbuffer's own `metadata` table, entry `labels`, one name a line.

Why here and not TFLite Support's associated files: those need the `tflite-support` package, which has no wheels
for the Python versions tf1tune supports; the metadata table is part of the TFLite schema that TensorFlow ships.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

LABELS_METADATA = "labels"


def add_labels(model: bytes, labels: Sequence[str]) -> bytes:
    """`model` with the class names in its metadata entry `labels` (one per line); replaces an older entry."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    parsed = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(("\n".join(labels) + "\n").encode("utf-8"), dtype=np.uint8)
    parsed.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = LABELS_METADATA
    entry.buffer = len(parsed.buffers) - 1
    parsed.metadata = [m for m in (parsed.metadata or []) if _text(m.name) != LABELS_METADATA] + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(parsed))


def _text(name: Any) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


def read_labels(model: bytes) -> list[str] | None:
    """The class names stored by `add_labels`, or None when the model has none."""
    from tensorflow.lite.tools import flatbuffer_utils

    parsed = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    for entry in parsed.metadata or []:
        if _text(entry.name) == LABELS_METADATA:
            data = parsed.buffers[entry.buffer].data
            return bytes(np.asarray(data, dtype=np.uint8)).decode("utf-8").splitlines()
    return None
