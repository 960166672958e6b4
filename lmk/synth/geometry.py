"""SynthFace geometry: a face's template deformed by its identity and expression, posed,
projected by a pinhole camera, and placed in the image (float pixels, exact landmarks).

Angles: positive yaw turns the nose toward image right, positive pitch lifts the nose (up
in the image), positive roll turns the face clockwise on screen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lmk.core.geometry import SYNTH_BOX_GROW
from lmk.synth.params import FaceParams
from lmk.synth.template import (
    CONTOUR,
    LEFT_BROW,
    LEFT_EYE,
    LEFT_PUPIL,
    NOSE_BOTTOM,
    OPEN_WEIGHT,
    OUTER_LIP,
    RIGHT_BROW,
    RIGHT_EYE,
    RIGHT_PUPIL,
    base_template,
    surface_depth,
)

_PIVOT = np.array([0.0, -0.05, -0.55])  # rotation centre: inside the head, behind the face


def _ellipse_ring(n: int) -> np.ndarray:
    a = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    return np.column_stack([np.cos(a), np.sin(a)])


_SKULL_DIRS = np.array(
    [
        (math.cos(el) * math.cos(az), -math.sin(el), math.cos(el) * math.sin(az))
        for el in np.radians([-35.0, 0.0, 30.0, 60.0, 90.0])
        for az in np.linspace(0.0, 2.0 * math.pi, 12, endpoint=False)
    ]
)


def _deformed(p: FaceParams) -> np.ndarray:
    """[98, 3] template with this identity and expression, as smooth group moves."""
    t = np.array(base_template())
    x, y = t[:, 0], t[:, 1]  # views: edits below write into t
    # eyes: size about each eye's centre, openness about the corner line, spacing
    for eye, pupil, side in ((LEFT_EYE, LEFT_PUPIL, -1.0), (RIGHT_EYE, RIGHT_PUPIL, 1.0)):
        c = t[eye, :2].mean(axis=0)
        idx = np.append(eye, pupil)
        t[idx, :2] = c + (t[idx, :2] - c) * p.eye_size
        corners = eye[[0, 4]]
        line_y = y[corners].mean()
        lids = eye[[1, 2, 3, 5, 6, 7]]
        y[lids] = line_y + (y[lids] - line_y) * p.eye_open
        eye_w = abs(x[corners[1]] - x[corners[0]])
        eye_h = (y[eye[6]] - y[eye[2]]) if p.eye_open > 0 else 0.0
        x[pupil] = c[0] + p.gaze[0] * eye_w
        y[pupil] = c[1] + p.gaze[1] * eye_h
        x[idx] += side * p.eye_spacing
    # brows: height, thickness (lower edge about the upper edge above it), spacing
    for lower, upper, brow, side in (
        ([38, 39, 40, 41], [37, 36, 35, 34], LEFT_BROW, -1.0),
        ([47, 48, 49, 50], [45, 44, 43, 42], RIGHT_BROW, 1.0),
    ):
        y[lower] = y[upper] + (y[lower] - y[upper]) * p.brow_thickness
        y[brow] -= p.brow_height
        x[brow] += side * 0.6 * p.eye_spacing
    # nose: length from the bridge root, width about the centre line; tip depth follows
    nose = np.arange(51, 60)
    y[nose] = y[51] + (y[nose] - y[51]) * p.nose_length
    x[NOSE_BOTTOM] = x[57] + (x[NOSE_BOTTOM] - x[57]) * p.nose_width
    t[nose, 2] += (t[nose, 2] - t[51, 2]) * (p.nose_length - 1.0) * 0.5
    # mouth: width, lip thickness, smile at the corners, opening
    mouth = np.arange(76, 96)
    cx = x[mouth].mean()
    x[mouth] = cx + (x[mouth] - cx) * p.mouth_width
    line_y = y[[89, 90, 91]].mean()
    for outer in ([77, 78, 79, 80, 81], [83, 84, 85, 86, 87]):
        y[outer] = line_y + (y[outer] - line_y) * p.lip_thickness
    for idx, k in (([76, 88], 1.0), ([82, 92], 1.0), ([77, 87], 0.45), ([81, 83], 0.45)):
        side = np.sign(x[idx] - cx)
        y[idx] -= k * p.smile * 0.035
        x[idx] += side * k * max(p.smile, 0.0) * 0.02
    y += OPEN_WEIGHT * p.mouth_open
    # jaw: lower contour follows the opening; width and chin length below the mouth
    c = CONTOUR
    y_eye, y_mouth, y_chin = y[60], y[76], y[16]
    below = np.clip((y[c] - y_mouth) / (y_chin - y_mouth), 0.0, 1.0)
    lower = np.clip((y[c] - y_eye) / (y_chin - y_eye), 0.0, 1.0)
    x[c] *= 1.0 + (p.jaw_width - 1.0) * lower
    y[c] += below * ((y[c] - y_mouth) * (p.chin_length - 1.0) + 0.85 * p.mouth_open)
    t[:, 0] *= p.width_scale
    t[:, 1] *= p.height_scale
    return t


def _aux_points(p: FaceParams, lm: np.ndarray) -> dict[str, np.ndarray]:
    """3D points that are drawn but not annotated: hairline, skull, ears, neck, body, nose."""
    sx, sy = p.width_scale, p.height_scale
    th = np.linspace(math.pi, 0.0, 11)[1:-1]
    temple_l, temple_r = lm[0], lm[32]
    half_w = (temple_r[0] - temple_l[0]) / 2.0
    y0 = (temple_l[1] + temple_r[1]) / 2.0
    hx = half_w * 0.98 * np.cos(th)
    hy = y0 - p.forehead_height * sy * np.sin(th) ** 0.8
    hairline = np.column_stack([hx, hy, surface_depth(hx / sx, hy / sy) + 0.03])
    r = np.array([0.6 * sx, 0.62 * sy * p.hair_volume, 0.62])
    skull = np.array([0.0, -0.3 * sy, -0.52]) + _SKULL_DIRS * r
    if p.hair_style == "long":
        long = [(0.62, 0.55, -0.55), (0.55, 0.75, -0.5), (0.35, 0.8, -0.75), (0.5, 0.3, -0.3)]
        skull = np.vstack([skull, [(s * a * sx, b * sy, c) for a, b, c in long for s in (-1, 1)]])
    ring = _ellipse_ring(10)
    ears = []
    for side in (-1.0, 1.0):
        ey = -0.08 * sy + 0.21 * sy * ring[:, 1]
        ez = -0.48 + 0.1 * ring[:, 0]
        ex = side * (0.5 * sx + 0.03 + 0.035 * (1.0 - ring[:, 0]))
        ears.append(np.column_stack([ex, ey, ez]))
    neck_top = np.array(
        [
            (-0.28 * sx, 0.2 * sy, -0.45),
            (0.28 * sx, 0.2 * sy, -0.45),
            (0.0, 0.45 * sy, -0.25),
            (0.0, 0.2 * sy, -0.8),
        ]
    )
    neck_base = np.array([(-0.3 * sx, 1.1 * sy, -0.45), (0.3 * sx, 1.1 * sy, -0.45)])
    mouth = lm[OUTER_LIP]
    centre = mouth.mean(axis=0)
    lip_skin = centre + (mouth - centre) * [1.2, 1.3, 1.0] - [0.0, 0.0, 0.01]
    torso_pts = [(0.3, 0.85, -0.5), (0.95, 1.05, -0.55), (1.25, 1.5, -0.55), (1.35, 2.8, -0.55)]
    torso = np.array([(s * a * sx, b * sy, c) for a, b, c in torso_pts for s in (-1, 1)])
    nw = 0.04 * p.nose_width * sx
    sides = []
    for side in (-1.0, 1.0):
        pts = lm[[51, 52, 53]] + [[side * nw, 0.0, -0.03]]
        pts[:, 0] += side * np.array([0.0, 0.005, 0.015])
        sides.append(pts)
    nose = np.vstack([sides[0], lm[51:60], sides[1][::-1]])
    return {
        "hairline": hairline,
        "skull": skull,
        "ear_l": ears[0],
        "ear_r": ears[1],
        "neck_top": neck_top,
        "neck_base": neck_base,
        "torso": torso,
        "nose": nose,
        "lip_skin": lip_skin,
    }


_BODY_KEYS = ("neck_base", "torso")
_BODY_PIVOT = np.array([0.0, 0.9, -0.5])
_HEAD_ON_BODY = (0.3, 0.15, 0.25)  # how much of the head's yaw, pitch, roll the body follows


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """3x3 rotation ``Rz(roll) @ Rx(pitch) @ Ry(yaw)`` (degrees) in the template's axes."""
    a, b, c = np.radians([yaw, pitch, roll])
    ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rz @ rx @ ry


@dataclass
class FaceGeometry:
    """Projected points of one face, in float pixels (landmarks exact, others for drawing)."""

    landmarks: np.ndarray
    aux: dict[str, np.ndarray]
    rot: np.ndarray
    unit: float  # pixels per face width at the pivot's depth

    def shifted(self, d: np.ndarray) -> FaceGeometry:
        return FaceGeometry(
            self.landmarks + d, {k: v + d for k, v in self.aux.items()}, self.rot, self.unit
        )


def project_face(p: FaceParams, yaw: float, pitch: float, roll: float, unit: float) -> FaceGeometry:
    """Pose and project a face about the origin; the caller translates it into place."""
    lm3 = _deformed(p)
    aux3 = _aux_points(p, lm3)
    rot = rotation(yaw, pitch, roll)
    k = _HEAD_ON_BODY
    body = rotation(yaw * k[0], pitch * k[1], roll * k[2])
    d = p.camera_distance

    def proj(pts: np.ndarray, r: np.ndarray = rot, pivot: np.ndarray = _PIVOT) -> np.ndarray:
        q = (pts - pivot) @ r.T + (pivot - _PIVOT)
        depth = np.maximum(d - q[:, 2], 0.2 * d)
        return q[:, :2] * (d / depth)[:, None] * unit

    aux = {
        key: proj(v, body, _BODY_PIVOT) if key in _BODY_KEYS else proj(v) for key, v in aux3.items()
    }
    return FaceGeometry(proj(lm3), aux, rot, unit)


def place_face(geo: FaceGeometry, p: FaceParams, width: int, height: int) -> FaceGeometry:
    """Translate so the landmark box sits at ``position`` in the range that keeps it inside."""
    lo, hi = geo.landmarks.min(axis=0), geo.landmarks.max(axis=0)
    size = hi - lo
    target = []
    for axis, extent in ((0, width), (1, height)):
        margin = -p.off_frame * size[axis]
        first = margin - lo[axis]
        last = extent - margin - hi[axis]
        if last < first:  # face larger than the image on this axis: centre it
            first = last = (first + last) / 2.0
        target.append(first + (last - first) * p.position[axis])
    return geo.shifted(np.array(target))


def detector_box(
    landmarks: np.ndarray, rng: np.random.Generator, jitter: float = 1.0
) -> np.ndarray:
    """A face-detector-like box (x, y, w, h): the landmark box grown a little and jittered."""
    lo, hi = landmarks.min(axis=0), landmarks.max(axis=0)
    size = np.maximum(hi - lo, 1.0)
    centre = (lo + hi) / 2.0 + rng.uniform(-0.04, 0.04, 2) * size * jitter
    grow = 1.0 + rng.uniform(*SYNTH_BOX_GROW) * jitter + rng.uniform(-0.03, 0.03, 2) * jitter
    wh = size * grow
    return np.array([centre[0] - wh[0] / 2, centre[1] - wh[1] / 2, wh[0], wh[1]])
