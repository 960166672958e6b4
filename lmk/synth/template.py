"""SynthFace's 3D face template: the WFLW-98 mean face given depth and a closed mouth.

Every rendered face starts from this template (``geometry`` deforms, poses and projects it).
Axes: x right, y down, z toward the camera; units are face widths (the WFLW contour's
horizontal extent), origin at the nose tip.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from lmk.core.layouts import get_layout

# WFLW-98 index groups (checked against the mean face: 0 is the image-left contour end).
CONTOUR = np.arange(0, 33)
LEFT_BROW = np.arange(33, 42)  # 33-37 upper edge left to right, 38-41 lower edge back
RIGHT_BROW = np.arange(42, 51)  # 42-46 upper edge, 47-50 lower edge back
NOSE_BOTTOM = np.arange(55, 60)
LEFT_EYE = np.arange(60, 68)  # 60 outer corner, 62 top, 64 inner corner, 66 bottom
RIGHT_EYE = np.arange(68, 76)  # 68 inner corner, 70 top, 72 outer corner, 74 bottom
OUTER_LIP = np.arange(76, 88)  # 76 left corner, 77-81 upper, 82 right corner, 83-87 lower
INNER_LIP = np.arange(88, 96)  # 88 left corner, 89-91 upper, 92 right corner, 93-95 lower
LEFT_PUPIL, RIGHT_PUPIL = 96, 97

# How far each point moves down (face widths per unit of ``mouth_open``): lower lip most at
# the centre, mouth corners a little.
OPEN_WEIGHT = np.zeros(98)
OPEN_WEIGHT[[83, 84, 85, 86, 87]] = [0.55, 0.9, 1.0, 0.9, 0.55]
OPEN_WEIGHT[[93, 94, 95]] = [0.85, 1.0, 0.85]
OPEN_WEIGHT[[76, 82, 88, 92]] = 0.15

_NOSE_DZ = {51: 0.04, 52: 0.075, 53: 0.12, 54: 0.17, 55: 0.045, 56: 0.075, 57: 0.1, 58: 0.075}
_NOSE_DZ[59] = 0.045
_LIP_DZ = dict(
    zip(
        range(76, 96),
        # outer lip 76-87 (corners flush with the cheek, centre forward), inner lip 88-95
        (
            *(0.0, 0.05, 0.075, 0.08, 0.075, 0.05, 0.0, 0.04, 0.06, 0.07, 0.06, 0.04),
            *(0.01, 0.06, 0.07, 0.06, 0.01, 0.055, 0.065, 0.055),
        ),
        strict=True,
    )
)


def surface_depth(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Depth of a smooth head-like surface: cheeks curve back, forehead and chin recede."""
    across = np.sqrt(np.clip(1.0 - (x / 0.56) ** 2, 0.0, 1.0))
    return -0.55 * (1.0 - across) - 0.3 * (y + 0.05) ** 2


@cache
def base_template() -> np.ndarray:
    """[98, 3] WFLW-98 template: mean face centred on the nose tip, closed mouth, with depth."""
    mean = np.asarray(get_layout("wflw98").meanface, dtype=np.float64)
    xs = mean[CONTOUR, 0]
    width = xs.max() - xs.min()
    xy = (mean - [(xs.max() + xs.min()) / 2.0, mean[54, 1]]) / width
    # The mean face's mouth is slightly open (an average over open and closed mouths):
    # close it so that ``mouth_open`` starts from touching lips.
    gap = xy[94, 1] - xy[90, 1]
    xy[:, 1] -= gap * OPEN_WEIGHT
    xy[[93, 94, 95], 1] = xy[[91, 90, 89], 1]
    z = surface_depth(xy[:, 0], xy[:, 1])
    z[33:51] += 0.045
    z[60:76] -= 0.02
    z[[96, 97]] -= 0.01
    z[13:20] += 0.03
    for i, dz in (_NOSE_DZ | _LIP_DZ).items():
        z[i] += dz
    out = np.column_stack([xy, z])
    out.setflags(write=False)
    return out
