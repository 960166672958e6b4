"""What comes into the runtime from a user: images and face boxes, checked in one place.

The Python API (:meth:`LandmarkSession.predict`, :meth:`Tracker.step`) and lmk-run's ``--box``
call these functions, so both accept and refuse the same things with the same words. A bad
value raises :class:`InputError`: a ``ValueError`` for Python callers (what they expect from a
bad argument) and an :class:`~lmk.core.errors.LmkError` for the command-line tools (one ``error:``
line, exit 2).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

from lmk.core.errors import LmkError
from lmk.runtime.faces import FaceBox

IMAGE_EXPECTED = "expected a uint8 BGR image HxWx3 (or gray HxW, HxWx1, BGRA HxWx4)"


class InputError(LmkError, ValueError):
    """A bad image or box handed to the runtime."""


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__


def bgr_image(frame: Any) -> np.ndarray:
    """``frame`` as a C-contiguous uint8 BGR HxWx3 array: gray HxW / HxWx1 is repeated into
    three channels and BGRA loses its alpha; anything else is refused rather than guessed at
    (a float image in 0..1, uint16, a CHW tensor give silently wrong landmarks)."""
    if not isinstance(frame, np.ndarray):
        raise InputError(f"{IMAGE_EXPECTED}, got {_describe(frame)}")
    shape = frame.shape
    channels = shape[2] if frame.ndim == 3 else 1
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or channels not in (1, 3, 4):
        hint = ""
        if frame.ndim == 3 and shape[0] in (1, 3, 4) and shape[2] not in (1, 3, 4):
            hint = " (channels first? transpose it to HxWxC)"
        elif frame.dtype.kind == "f":
            hint = " (convert with (image * 255).clip(0, 255).astype(np.uint8) if it is in 0..1)"
        raise InputError(f"{IMAGE_EXPECTED}, got {_describe(frame)}{hint}")
    if frame.size == 0:
        raise InputError(f"{IMAGE_EXPECTED}, got an empty image of shape {shape}")
    if channels == 1:
        gray = frame.reshape(shape[0], shape[1])
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if channels == 4:
        return np.ascontiguousarray(frame[..., :3])
    return np.ascontiguousarray(frame)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real | np.number) and not isinstance(value, bool | np.bool_)


def _shown(values: Any) -> str:
    try:
        return ",".join(f"{float(v):g}" for v in values)
    except (TypeError, ValueError):
        return repr(values)


# Beyond these a box is no face: its crop would be degenerate (zero width in float64) or
# overflow to infinity; a box in 0..1 coordinates (not pixels) fails the minimum side too.
MAX_COORDINATE = 1e9
MIN_SIDE = 1e-3


def box_values(values: Any, label: str = "box", shown: str | None = None) -> np.ndarray:
    """One face box ``(x, y, w, h)`` in pixels as float64 [4]: four finite numbers, ``w`` and
    ``h`` > 0 (a NaN box gives NaN landmarks, a zero-size one a division by zero; see
    :data:`MAX_COORDINATE` and :data:`MIN_SIDE` for the bounds). ``label`` names the box in
    the error (``box 2``, ``--box``); ``shown`` is how the user wrote it."""
    try:
        box = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        box = None
    if box is None or box.shape != (4,) or isinstance(values, str | bytes):
        raise InputError(f"{label}: expected x,y,w,h (4 numbers), got {shown or repr(values)}")
    shown = shown or _shown(box)
    if not np.isfinite(box).all():
        raise InputError(f"{label} {shown}: x, y, w, h must be finite numbers")
    if box[2] <= 0 or box[3] <= 0:
        raise InputError(f"{label} {shown}: width and height must be > 0")
    if np.abs(box).max() > MAX_COORDINATE:
        raise InputError(
            f"{label} {shown}: x, y, w, h must lie within -{MAX_COORDINATE:g}..{MAX_COORDINATE:g} px"
        )
    if min(box[2], box[3]) < MIN_SIDE:
        raise InputError(f"{label} {shown}: width and height must be at least {MIN_SIDE:g} px")
    return box


def overlaps_frame(box: np.ndarray, width: int, height: int) -> bool:
    """Whether an (x, y, w, h) box shares any area with a width x height frame."""
    x, y, w, h = (float(v) for v in box)
    return x < width and y < height and x + w > 0 and y + h > 0


def face_boxes(boxes: Any, label: str = "box") -> list[FaceBox]:
    """The boxes of a ``predict`` call as :class:`FaceBox` objects: a single box ``(x, y, w,
    h)`` or :class:`FaceBox`, or a list / [N, 4] array / iterable of them. Each is checked with
    :func:`box_values`; errors name the box by ``label`` and its index."""
    if isinstance(boxes, FaceBox):
        items: list[Any] = [boxes]
    elif isinstance(boxes, str | bytes) or not isinstance(boxes, Iterable):
        raise InputError(
            f"{label}es: expected a box (x, y, w, h) or a list of boxes, got {_describe(boxes)}"
        )
    elif isinstance(boxes, np.ndarray):
        if boxes.ndim == 1:
            items = [boxes]
        elif boxes.ndim == 2:
            items = list(boxes)
        else:
            raise InputError(f"{label}es: expected a [4] or [N, 4] array, got shape {boxes.shape}")
    else:
        items = list(boxes)
        if items and all(_is_number(v) for v in items):
            items = [items]  # one box, not wrapped in a list
    regions = []
    for i, item in enumerate(items):
        if isinstance(item, FaceBox):
            box_values(item.box, f"{label} {i}")
            if not np.isfinite(item.angle):
                raise InputError(f"{label} {i}: angle must be finite, got {item.angle}")
            regions.append(item)
        else:
            regions.append(FaceBox(box_values(item, f"{label} {i}")))
    return regions
