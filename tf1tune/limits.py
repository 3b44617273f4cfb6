"""Bounds on the numbers users give (steps, batch size, input size, rates, fractions), checked before anything runs.

Out-of-range numbers otherwise surface late and badly: steps beyond int64 loop until killed, a batch of 10^12 images
or a 10^5 x 10^5 input dies inside TensorFlow with an out-of-memory error, a NaN or infinite learning rate trains
NaN weights. Each check raises the caller's error class with one line naming the key, the value and the range.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

from tf1tune.errors import Tf1tuneError

MAX_STEPS = 10 ** 9              # a billion steps: far beyond any fine-tuning run, well inside int64
MAX_BATCH = 1 << 16
MAX_INPUT_SIDE = 8192            # pixels per side of a net's input
MAX_CLASSES = 1_000_000
MAX_SEED = 2 ** 63 - 1


@functools.lru_cache(maxsize=1)
def memory_limit() -> int:
    """Bytes of physical memory of this machine (what no single tensor may claim)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not POSIX: a generous fixed bound
        return 64 << 30


def check_int(label: str, value: Any, low: int, high: int, error: type[Tf1tuneError] = Tf1tuneError) -> int:
    """`value` as an int in [low, high]; else `error` naming `label`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{label} must be a whole number from {low:,} to {high:,}, got {value!r}")
    if not low <= value <= high:
        raise error(f"{label} must be from {low:,} to {high:,}, got {value:,}")
    return value


def check_float(label: str, value: Any, low: float, high: float = math.inf, error: type[Tf1tuneError] = Tf1tuneError,
                low_open: bool = False, high_open: bool = False) -> float:
    """`value` as a finite float in the range (open ends as asked); NaN and infinity are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"{label} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise error(f"{label} must be a finite number, got {number}")
    if number < low or (low_open and number == low) or number > high or (high_open and number == high):
        left, right = "(" if low_open else "[", ")" if high_open or high == math.inf else "]"
        raise error(f"{label} must be in {left}{low:g}, {high:g}{right}, got {number:g}")
    return number


def check_input_size(label: str, size: Any, error: type[Tf1tuneError] = Tf1tuneError) -> tuple[int, int]:
    """(height, width), each from 1 to `MAX_INPUT_SIDE`."""
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise error(f"{label} must be [height, width], two whole numbers, got {size!r}")
    return (check_int(f"{label} height", size[0], 1, MAX_INPUT_SIDE, error),
            check_int(f"{label} width", size[1], 1, MAX_INPUT_SIDE, error))


def check_batch_memory(batch: int, size: tuple[int, int], channels: int,
                       error: type[Tf1tuneError] = Tf1tuneError) -> None:
    """Refuse a batch whose float32 input alone takes more than a quarter of this machine's memory."""
    need = batch * size[0] * size[1] * channels * 4
    if need > memory_limit() // 4:
        raise error(f"a batch of {batch:,} images of {size[0]}x{size[1]}x{channels} takes {need / 2 ** 30:.1f} GB as "
                    f"float32, more than a quarter of this machine's {memory_limit() / 2 ** 30:.1f} GB; use a smaller "
                    "batch_size or input_size")
