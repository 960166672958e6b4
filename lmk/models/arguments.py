"""Range checks shared by every family's constructor-argument check: a value no model can be
made of (a 0 or 100000 px crop, 0 neighbours, 0 stacks) is refused in one line naming its flag
or checkpoint field, before any tracing or training."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lmk.core.errors import LmkError

INPUT_SIZES = (32, 2048)
"""Crop sizes lmk builds models for: below 32 a model sees nothing, above 2048 a trace or a
training batch runs out of memory long before it is useful."""
MAX_STACKS = 8
"""Most hourglass stacks, residual blocks or FAN modules a model may have."""

Label = Callable[[str], str]
"""Names a constructor argument in a message: its command-line flag or checkpoint field."""


def whole(value: Any, label: str) -> int:
    """``value`` as an int; a float, bool or string is an error naming ``label``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise LmkError(f"{label} must be a whole number, got {value!r}")
    return value


def in_range(value: Any, low: int, high: int, label: str) -> int:
    """``value`` as an int in ``[low, high]``, else an error naming ``label``."""
    value = whole(value, label)
    if not low <= value <= high:
        raise LmkError(f"{label} must be {low} to {high}, got {value}")
    return value


def check_input_size(size: Any, multiple: int, label: str) -> None:
    """The crop size: a multiple of what the architecture divides it by, within
    :data:`INPUT_SIZES`."""
    size = whole(size, label)
    low, high = max(INPUT_SIZES[0], multiple), INPUT_SIZES[1]
    if not low <= size <= high or size % multiple:
        raise LmkError(f"{label} must be a multiple of {multiple} from {low} to {high}, got {size}")
