"""Strict JSON for everything tf1tune prints with `--json` or writes as `.json`.

Python's `json.dumps` writes `NaN` and `Infinity` by default, which no strict parser (RFC 8259, JavaScript's
`JSON.parse`, `jq`) accepts. Here a non-finite float becomes `null`, numpy scalars and arrays become plain values,
and anything left over is an error instead of invalid output.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def _plain(value: Any) -> Any:
    """`value` with numpy types made plain and non-finite floats replaced by None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any) -> str:
    """Strict, indented JSON text of `value` (non-finite floats as `null`)."""
    return json.dumps(_plain(value), indent=2, allow_nan=False)
