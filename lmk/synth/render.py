"""SynthFace: procedural cartoon faces with exact WFLW-98 landmarks (numpy + OpenCV only).

Why it exists: the pipeline needs data it can always build (tests, the demo, a model's
smoke training) without downloading a face data set. Each sample is a posed 3D landmark
template with a random identity, projected by a pinhole camera, and drawn with OpenCV around
the projected points, so the landmarks are the exact positions of what is drawn.

Conventions (DESIGN section 3): landmarks are float pixels where pixel ``i`` covers
``[i, i + 1)``; a point at ``p`` is drawn centred at ``p`` (OpenCV puts integer coordinates at
pixel centres, so drawing uses ``p - 0.5`` in fixed point with ``SHIFT`` fraction bits).
Template axes: x right, y down, z toward the camera; positive yaw turns the nose toward
image right, positive pitch lifts the nose (up in the image), positive roll turns the face
clockwise on screen. Units are face widths (the WFLW contour's horizontal extent).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from lmk.core.errors import LmkError
from lmk.core.geometry import SYNTH_BOX_GROW
from lmk.core.layouts import get_layout

SHIFT = 4
"""Fraction bits used with OpenCV drawing calls (1/16 pixel)."""
_ONE = 1 << SHIFT

WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "make-up", "occlusion", "blur")
"""WFLW's six attribute flags, in the order of its annotation files."""

# Attribute thresholds, applied to a sample's own render parameters.
POSE_YAW_DEG = 40.0
POSE_PITCH_DEG = 25.0
EXPRESSION_MOUTH_OPEN = 0.09  # face widths between the lips
EXPRESSION_SMILE = 0.65
ILLUMINATION_GRADIENT = 0.55  # gain change per face width
ILLUMINATION_DARK = 0.55  # overall brightness below this is "dark"
MAKEUP_STRENGTH = 0.5
OCCLUSION_FRACTION = 0.15  # of the in-image landmarks covered by an occluder
BLUR_FRACTION = 0.012  # blur sigma in face widths (motion: length / 4)

OCCLUDERS = ("none", "rect", "ellipse", "hand", "bar", "sunglasses")
BLURS = ("none", "gaussian", "motion")
HAIR_STYLES = ("bald", "short", "long")

# WFLW-98 index groups (checked against the mean face: 0 is the image-left contour end).
CONTOUR = np.arange(0, 33)
LEFT_BROW = np.arange(33, 42)  # 33-37 upper edge left to right, 38-41 lower edge back
RIGHT_BROW = np.arange(42, 51)  # 42-46 upper edge, 47-50 lower edge back
NOSE_BRIDGE = np.arange(51, 55)  # 54 = tip
NOSE_BOTTOM = np.arange(55, 60)
LEFT_EYE = np.arange(60, 68)  # 60 outer corner, 62 top, 64 inner corner, 66 bottom
RIGHT_EYE = np.arange(68, 76)  # 68 inner corner, 70 top, 72 outer corner, 74 bottom
OUTER_LIP = np.arange(76, 88)  # 76 left corner, 77-81 upper, 82 right corner, 83-87 lower
INNER_LIP = np.arange(88, 96)  # 88 left corner, 89-91 upper, 92 right corner, 93-95 lower
LEFT_PUPIL, RIGHT_PUPIL = 96, 97

WFLW_TO_300W = np.array(
    [
        *range(0, 33, 2),  # contour: every other point, 17
        *(33, 34, 35, 36, 37, 42, 43, 44, 45, 46),  # brows: upper edges, 10
        *range(51, 60),  # nose bridge 4 + bottom 5, 9
        *(60, 61, 63, 64, 65, 67, 68, 69, 71, 72, 73, 75),  # eyes, 6 + 6
        *range(76, 96),  # outer lip 12 + inner lip 8
    ],
    dtype=np.int64,
)
"""300W-68 point ``k`` is WFLW-98 point ``WFLW_TO_300W[k]``.

The usual WFLW->300W conversion: contour 0,2,...,32 -> 0-16; brow upper edges 33-37 ->
17-21 and 42-46 -> 22-26; nose 51-59 -> 27-35; eyes 60,61,63,64,65,67 -> 36-41 and
68,69,71,72,73,75 -> 42-47 (corners plus the points a third of the way along each lid);
outer lip 76-87 -> 48-59; inner lip 88-95 -> 60-67. 17 + 10 + 9 + 12 + 20 = 68, and the
map commutes with both layouts' flip tables.
"""


def wflw98_to_300w68(landmarks98: np.ndarray) -> np.ndarray:
    """300W-68 landmarks from WFLW-98 ones (``[..., 98, 2] -> [..., 68, 2]``), by ``WFLW_TO_300W``."""
    landmarks98 = np.asarray(landmarks98)
    if landmarks98.ndim < 2 or landmarks98.shape[-2] != 98:
        raise LmkError(f"expected [..., 98, 2] WFLW landmarks, got shape {landmarks98.shape}")
    return landmarks98[..., WFLW_TO_300W, :].copy()


def sample_seed(base: int, index: int) -> int:
    """Seed of sample ``index`` in a set made with seed ``base`` (non-overlapping across bases)."""
    state = np.random.SeedSequence([int(base) & 0xFFFFFFFF, int(index)]).generate_state(2)
    return int(state[0]) << 31 | int(state[1]) >> 1


# ------------------------------------------------------------------------------------------
# 3D template
# ------------------------------------------------------------------------------------------

# How far each point moves down (face widths per unit of ``mouth_open``): lower lip most at
# the centre, mouth corners a little.
_OPEN_WEIGHT = np.zeros(98)
_OPEN_WEIGHT[[83, 84, 85, 86, 87]] = [0.55, 0.9, 1.0, 0.9, 0.55]
_OPEN_WEIGHT[[93, 94, 95]] = [0.85, 1.0, 0.85]
_OPEN_WEIGHT[[76, 82, 88, 92]] = 0.15

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


def _surface_z(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Depth of a smooth head-like surface: cheeks curve back, forehead and chin recede."""
    across = np.sqrt(np.clip(1.0 - (x / 0.56) ** 2, 0.0, 1.0))
    return -0.55 * (1.0 - across) - 0.3 * (y + 0.05) ** 2


@cache
def _template() -> np.ndarray:
    """[98, 3] WFLW-98 template: mean face centred on the nose tip, closed mouth, with depth."""
    mean = np.asarray(get_layout("wflw98").meanface, dtype=np.float64)
    xs = mean[CONTOUR, 0]
    width = xs.max() - xs.min()
    xy = (mean - [(xs.max() + xs.min()) / 2.0, mean[54, 1]]) / width
    # The mean face's mouth is slightly open (an average over open and closed mouths):
    # close it so that ``mouth_open`` starts from touching lips.
    gap = xy[94, 1] - xy[90, 1]
    xy[:, 1] -= gap * _OPEN_WEIGHT
    xy[[93, 94, 95], 1] = xy[[91, 90, 89], 1]
    z = _surface_z(xy[:, 0], xy[:, 1])
    z[33:51] += 0.045
    z[60:76] -= 0.02
    z[[96, 97]] -= 0.01
    z[13:20] += 0.03
    for i, dz in (_NOSE_DZ | _LIP_DZ).items():
        z[i] += dz
    out = np.column_stack([xy, z])
    out.setflags(write=False)
    return out


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


# ------------------------------------------------------------------------------------------
# Parameters
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceParams:
    """Everything random about one face; ``render_face(**overrides)`` can force any field.

    Lengths are in face widths unless named otherwise; colours are BGR 0-255 floats.
    """

    # identity
    width_scale: float
    height_scale: float
    eye_spacing: float
    eye_size: float
    eye_open: float
    gaze: tuple[float, float]
    brow_height: float
    brow_thickness: float
    nose_length: float
    nose_width: float
    mouth_width: float
    lip_thickness: float
    mouth_open: float
    smile: float
    jaw_width: float
    chin_length: float
    forehead_height: float
    # pose and camera
    yaw: float
    pitch: float
    roll: float
    camera_distance: float
    # placement: face width / image width; position in the allowed range (0..1 each axis);
    # off_frame > 0 lets the landmark box leave the image by that fraction of its size
    face_width: float
    position: tuple[float, float]
    off_frame: float
    # appearance
    skin: tuple[float, float, float]
    hair_style: str
    hair: tuple[float, float, float]
    hair_volume: float
    brow_color: tuple[float, float, float]
    iris: tuple[float, float, float]
    lips: tuple[float, float, float]
    makeup: float
    eyeshadow: tuple[float, float, float]
    clothes: tuple[float, float, float]
    glasses: bool
    glasses_color: tuple[float, float, float]
    # occluder, placed relative to one landmark
    occluder: str
    occluder_anchor: int
    occluder_offset: tuple[float, float]
    occluder_size: float
    occluder_aspect: float
    occluder_angle: float
    occluder_color: tuple[float, float, float]
    occluder_stripes: bool
    # image effects
    light_angle: float
    light_strength: float
    brightness: float
    white_balance: tuple[float, float, float]
    blur: str
    blur_amount: float
    blur_angle: float
    noise: float


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(FaceParams))
_FIELDS = frozenset(_FIELD_NAMES)


def _color(rng: np.random.Generator, base: tuple[float, float, float], spread: float) -> tuple:
    noise = rng.normal(0.0, spread, 3)
    return tuple(_clamp(float(b + n), 0.0, 255.0) for b, n in zip(base, noise, strict=True))


def _clamp(v: float, lo: float, hi: float) -> float:
    return lo if v < lo else hi if v > hi else v


def _skin_tone(rng: np.random.Generator) -> tuple[float, float, float]:
    if rng.random() < 0.04:  # the odd cartoon colour keeps the model from keying on skin hue
        return tuple(float(v) for v in rng.uniform(40, 230, 3))
    t = rng.random()
    light, mid, dark = np.array([175, 200, 238]), np.array([110, 150, 205]), np.array([50, 75, 115])
    base = light + (mid - light) * (t / 0.6) if t < 0.6 else mid + (dark - mid) * ((t - 0.6) / 0.4)
    return _color(rng, tuple(base), 10.0)


_HAIR = [(20, 20, 25), (25, 40, 70), (40, 70, 120), (80, 140, 200), (30, 50, 150), (150, 150, 155)]
_IRIS = [(30, 50, 90), (20, 35, 60), (140, 110, 60), (90, 120, 70), (110, 110, 110)]


def sample_params(rng: np.random.Generator) -> FaceParams:
    """Draw one face's parameters (identity, pose, looks, occluder, image effects)."""
    u = rng.uniform

    def near_frontal(limit: float, sd: float) -> float:
        if rng.random() < 0.2:
            return float(u(-limit, limit))
        return _clamp(float(rng.normal(0.0, sd)), -limit, limit)

    skin = _skin_tone(rng)
    hair_base = _HAIR[rng.integers(len(_HAIR))]
    hair = _color(rng, hair_base, 12.0) if rng.random() > 0.05 else _color(rng, (128,) * 3, 70)
    makeup = float(u(0.0, 1.0)) if rng.random() < 0.3 else 0.0
    if makeup > 0.3:
        lip_base = [(40, 30, 190), (90, 40, 150), (110, 90, 220), (30, 20, 90)][rng.integers(4)]
        lips = _color(rng, lip_base, 15.0)
    else:
        lips = _color(rng, (skin[0] * 0.75, skin[1] * 0.7, min(255.0, skin[2] * 1.0)), 8.0)
    occluder = "none"
    if rng.random() < 0.3:
        occluder = str(rng.choice(OCCLUDERS[1:], p=[0.3, 0.2, 0.3, 0.1, 0.1]))
    blur_pick = rng.random()
    blur = "none" if blur_pick < 0.55 else "gaussian" if blur_pick < 0.85 else "motion"
    blink = rng.random() < 0.06
    return FaceParams(
        width_scale=float(u(0.88, 1.1)),
        height_scale=float(u(0.9, 1.12)),
        eye_spacing=_clamp(float(rng.normal(0.0, 0.015)), -0.035, 0.035),
        eye_size=float(u(0.85, 1.2)),
        eye_open=float(u(0.0, 0.3)) if blink else float(u(0.75, 1.3)),
        gaze=(float(u(-0.13, 0.13)), float(u(-0.12, 0.12))),
        brow_height=float(u(-0.025, 0.05)),
        brow_thickness=float(u(0.6, 1.4)),
        nose_length=float(u(0.85, 1.2)),
        nose_width=float(u(0.85, 1.25)),
        mouth_width=float(u(0.85, 1.2)),
        lip_thickness=float(u(0.7, 1.4)),
        mouth_open=0.0 if rng.random() < 0.5 else float(u(0.0, 1.0) ** 1.5 * 0.18),
        smile=float(u(-0.3, 0.3)) if rng.random() < 0.6 else float(u(0.0, 1.0)),
        jaw_width=float(u(0.85, 1.12)),
        chin_length=float(u(0.9, 1.15)),
        forehead_height=float(u(0.32, 0.46)),
        yaw=near_frontal(60.0, 20.0),
        pitch=near_frontal(30.0, 9.0),
        roll=near_frontal(30.0, 9.0),
        camera_distance=float(1.0 / u(0.1, 0.4)),
        face_width=float(u(0.35, 0.7)),
        position=(float(u(0.0, 1.0)), float(u(0.0, 1.0))),
        off_frame=float(u(0.05, 0.3)) if rng.random() < 0.05 else 0.0,
        skin=skin,
        hair_style=str(rng.choice(HAIR_STYLES, p=[0.15, 0.55, 0.3])),
        hair=hair,
        hair_volume=float(u(0.8, 1.25)),
        brow_color=_color(rng, tuple(np.asarray(hair) * 0.7), 8.0),
        iris=_color(rng, _IRIS[rng.integers(len(_IRIS))], 12.0),
        lips=lips,
        makeup=makeup,
        eyeshadow=_color(rng, (float(u(40, 200)), float(u(20, 120)), float(u(40, 200))), 10.0),
        clothes=tuple(float(v) for v in rng.uniform(0, 255, 3)),
        glasses=bool(rng.random() < 0.12),
        glasses_color=_color(rng, (40, 40, 40), 30.0),
        occluder=occluder,
        occluder_anchor=int(rng.integers(98)),
        occluder_offset=(float(u(-0.15, 0.15)), float(u(-0.15, 0.15))),
        occluder_size=float(u(0.25, 0.6)),
        occluder_aspect=float(u(0.4, 1.0)),
        occluder_angle=float(u(0.0, 180.0)),
        occluder_color=tuple(float(v) for v in rng.uniform(0, 255, 3)),
        occluder_stripes=bool(rng.random() < 0.3),
        light_angle=float(u(0.0, 360.0)),
        light_strength=float(u(0.0, 0.3)) if rng.random() < 0.75 else float(u(0.3, 1.0)),
        brightness=float(u(0.85, 1.15)) if rng.random() < 0.85 else float(u(0.3, 0.85)),
        white_balance=(float(u(0.88, 1.12)), 1.0, float(u(0.88, 1.12))),
        blur=blur,
        blur_amount=float(u(0.0, 1.0) ** 2 * 0.03),
        blur_angle=float(u(0.0, 180.0)),
        noise=float(u(0.0, 4.0)) if rng.random() < 0.7 else float(u(4.0, 14.0)),
    )


def attributes_of(params: FaceParams, occluded_fraction: float) -> np.ndarray:
    """WFLW's six flags (pose, expression, illumination, make-up, occlusion, blur) as uint8."""
    return np.array(
        [
            abs(params.yaw) > POSE_YAW_DEG or abs(params.pitch) > POSE_PITCH_DEG,
            params.mouth_open > EXPRESSION_MOUTH_OPEN or params.smile > EXPRESSION_SMILE,
            params.light_strength > ILLUMINATION_GRADIENT or params.brightness < ILLUMINATION_DARK,
            params.makeup > MAKEUP_STRENGTH,
            occluded_fraction >= OCCLUSION_FRACTION,
            params.blur != "none" and _blur_sigma_fraction(params) > BLUR_FRACTION,
        ],
        dtype=np.uint8,
    )


def _blur_sigma_fraction(params: FaceParams) -> float:
    return params.blur_amount / 4.0 if params.blur == "motion" else params.blur_amount


# ------------------------------------------------------------------------------------------
# Geometry
# ------------------------------------------------------------------------------------------


def _deformed(p: FaceParams) -> np.ndarray:
    """[98, 3] template with this identity and expression, as smooth group moves."""
    t = np.array(_template())
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
    y += _OPEN_WEIGHT * p.mouth_open
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
    hairline = np.column_stack([hx, hy, _surface_z(hx / sx, hy / sy) + 0.03])
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


def _place(geo: FaceGeometry, p: FaceParams, width: int, height: int) -> FaceGeometry:
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


# ------------------------------------------------------------------------------------------
# Drawing
# ------------------------------------------------------------------------------------------

_AA = cv2.LINE_AA


def _fx(pts: np.ndarray, origin: np.ndarray | None = None) -> np.ndarray:
    """Float pixels (pixel-centre convention) -> OpenCV fixed-point int32 points."""
    q = np.asarray(pts, dtype=np.float64)
    if origin is not None:
        q = q - origin
    # projection keeps points within a few image sizes, far inside int32 at 4 fraction bits
    return np.rint((q - 0.5) * _ONE).astype(np.int32)


def _poly(img: np.ndarray, pts: np.ndarray, color: tuple, origin: np.ndarray | None = None) -> None:
    cv2.fillPoly(img, [_fx(pts, origin)], color, _AA, SHIFT)


def _hull(img: np.ndarray, pts: np.ndarray, color: tuple) -> None:
    cv2.fillConvexPoly(img, cv2.convexHull(_fx(pts)), color, _AA, SHIFT)


def _line(
    img: np.ndarray, pts: np.ndarray, color: tuple, thick: float, closed: bool = False
) -> None:
    cv2.polylines(img, [_fx(pts)], closed, color, max(1, round(thick)), _AA, SHIFT)


def _ellipse(
    img: np.ndarray,
    centre: np.ndarray,
    axes: tuple[float, float],
    angle: float,
    color: tuple,
    thick: int = -1,
) -> None:
    c = _fx(centre)
    ax = (max(1, round(axes[0] * _ONE)), max(1, round(axes[1] * _ONE)))
    cv2.ellipse(img, (int(c[0]), int(c[1])), ax, angle, 0, 360, color, thick, _AA, SHIFT)


def _scaled(color: tuple, k: float | tuple) -> tuple:
    ks = k if isinstance(k, tuple) else (k, k, k)
    return tuple(float(min(255.0, c * f)) for c, f in zip(color, ks, strict=True))


def _roi(img: np.ndarray, pts: np.ndarray, pad: int = 2) -> tuple[slice, slice, np.ndarray] | None:
    """Integer window around ``pts`` clipped to the image, or None when it misses the image."""
    h, w = img.shape[:2]
    x0 = max(math.floor(pts[:, 0].min()) - pad, 0)
    y0 = max(math.floor(pts[:, 1].min()) - pad, 0)
    x1 = min(math.ceil(pts[:, 0].max()) + pad, w)
    y1 = min(math.ceil(pts[:, 1].max()) + pad, h)
    if x1 <= x0 or y1 <= y0:
        return None
    return slice(y0, y1), slice(x0, x1), np.array([x0, y0], dtype=np.float64)


def _blend(dst: np.ndarray, src: np.ndarray, mask: np.ndarray) -> None:
    """dst = dst + (src - dst) * mask / 255, in place (uint8 images, mask uint8 HxW)."""
    a = mask.astype(np.float32) * np.float32(1.0 / 255.0)
    dst[:] = cv2.blendLinear(src, dst, a, np.float32(1.0) - a)


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A cluttered BGR background: smooth colour field, optional texture, shapes and text."""
    grid = int(rng.integers(2, 7))
    base = rng.uniform(0, 255, 3)
    small = np.clip(base + rng.normal(0, 55, (grid, grid, 3)), 0, 255).astype(np.uint8)
    # cubic to a coarse size then linear: as smooth as one cubic resize, 20x cheaper
    mid = cv2.resize(
        small, (max(width // 8, grid), max(height // 8, grid)), interpolation=cv2.INTER_CUBIC
    )
    img = cv2.resize(mid, (width, height), interpolation=cv2.INTER_LINEAR)
    scale = max(width, height) / 256.0
    kind = rng.random()
    if kind < 0.35:  # blocky or smooth noise texture
        cells = int(rng.integers(8, 48))
        tex = rng.normal(0, rng.uniform(8, 30), (cells, cells * width // height + 1))
        interp = cv2.INTER_NEAREST if rng.random() < 0.5 else cv2.INTER_LINEAR
        tex = cv2.resize(tex.astype(np.float32), (width, height), interpolation=interp)
        img = cv2.add(img, cv2.merge([tex, tex, tex]), dtype=cv2.CV_8U)
    elif kind < 0.55:  # stripes / planks
        period = rng.uniform(6, 40) * scale
        color = _color(rng, tuple(base * 0.7), 20.0)
        vertical = rng.random() < 0.5
        extent = width if vertical else height
        for k in range(int(extent / period) + 1):
            a = k * period
            p1, p2 = ((a, 0), (a, height)) if vertical else ((0, a), (width, a))
            cv2.line(img, (int(p1[0]), int(p1[1])), (int(p2[0]), int(p2[1])), color, 1, _AA)
    for _ in range(int(rng.integers(3, 16))):
        color = tuple(float(v) for v in rng.uniform(0, 255, 3))
        c = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
        size = rng.uniform(0.03, 0.35) * max(width, height)
        thick = -1 if rng.random() < 0.6 else int(rng.integers(1, 4))
        shape = rng.random()
        if shape < 0.3:
            cv2.rectangle(
                img, c, (int(c[0] + size), int(c[1] + size * rng.uniform(0.3, 2))), color, thick
            )
        elif shape < 0.5:
            axes = (int(size / 2), int(size / 2 * rng.uniform(0.3, 1.0)))
            cv2.ellipse(img, c, axes, float(rng.uniform(0, 180)), 0, 360, color, thick, _AA)
        elif shape < 0.7:
            pts = (np.array(c) + rng.normal(0, size / 2, (int(rng.integers(3, 7)), 2))).astype(
                np.int32
            )
            cv2.fillPoly(img, [pts], color, _AA)
        elif shape < 0.88:
            end = (int(c[0] + rng.normal(0, size)), int(c[1] + rng.normal(0, size)))
            cv2.line(img, c, end, color, int(rng.integers(1, 6)), _AA)
        else:
            text = "".join(chr(int(v)) for v in rng.integers(65, 91, int(rng.integers(2, 8))))
            font_scale = float(rng.uniform(0.4, 1.6) * scale)
            cv2.putText(img, text, c, cv2.FONT_HERSHEY_SIMPLEX, font_scale, color, 2, _AA)
    return img


def _skin_outline(geo: FaceGeometry) -> np.ndarray:
    """Points whose convex hull is the face's skin: contour, hairline, brows, nose base, lips."""
    lm, aux = geo.landmarks, geo.aux
    return np.vstack([lm[CONTOUR], aux["hairline"], lm[33:51], lm[55:60], aux["lip_skin"]])


def _draw_skin_region(img: np.ndarray, pts: np.ndarray, skin: tuple, edge: float) -> None:
    """Fill the convex hull of ``pts`` with skin, darkening softly toward its outline."""
    win = _roi(img, pts)
    if win is None:
        return
    ys, xs, origin = win
    roi = img[ys, xs]
    mask = np.zeros(roi.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(_fx(pts, origin)), 255, _AA, SHIFT)
    inside = cv2.distanceTransform(mask, cv2.DIST_L2, 3)  # any nonzero pixel is inside
    g = np.sqrt(np.minimum(inside * np.float32(1.0 / max(edge, 1.0)), np.float32(1.0)))
    full = np.empty_like(roi)
    full[:] = np.rint(skin).astype(np.uint8)
    dark = np.empty_like(roi)
    dark[:] = np.rint(_scaled(skin, 0.72)).astype(np.uint8)
    _blend(roi, cv2.blendLinear(full, dark, g, np.float32(1.0) - g), mask)


def _draw_eye(img: np.ndarray, eye: np.ndarray, pupil: np.ndarray, p: FaceParams) -> None:
    eye_w = float(np.linalg.norm(eye[4] - eye[0]))
    eye_h = float(np.linalg.norm(eye[6] - eye[2]))
    thick = max(1.0, eye_w * 0.09)
    lid_color = _scaled(p.brow_color, 0.6)
    if eye_h < eye_w * 0.12:  # closed: just the lid line with lashes
        _line(img, eye[[0, 1, 2, 3, 4]], lid_color, thick)
        return
    win = _roi(img, eye)
    if win is not None:
        ys, xs, origin = win
        roi = img[ys, xs]
        layer = roi.copy()
        _poly(layer, eye, (228.0, 232.0, 238.0), origin)
        r = 0.21 * eye_w
        rx = r * max(abs(math.cos(math.radians(p.yaw))), 0.35)
        ry = r * max(abs(math.cos(math.radians(p.pitch))), 0.35)
        c = pupil - origin
        _ellipse(layer, c, (rx, ry), p.roll, p.iris)
        _ellipse(layer, c, (rx, ry), p.roll, _scaled(p.iris, 0.6), max(1, round(r * 0.15)))
        _ellipse(layer, c, (rx * 0.42, ry * 0.42), p.roll, (12, 12, 14))
        _ellipse(layer, c + np.array([-0.13, -0.15]) * r, (r * 0.12, r * 0.12), 0, (250, 250, 250))
        mask = np.zeros(roi.shape[:2], np.uint8)
        _poly(mask, eye, 255, origin)
        _blend(roi, layer, mask)
    _line(img, eye[[0, 1, 2, 3, 4]], lid_color, thick * (1.0 + 1.5 * (p.makeup > 0.3)))
    _line(img, eye[[4, 5, 6, 7, 0]], _scaled(p.skin, 0.55), max(1.0, thick * 0.5))


def _draw_mouth(img: np.ndarray, lm: np.ndarray, p: FaceParams, unit: float) -> None:
    outer, inner = lm[OUTER_LIP], lm[INNER_LIP]
    _poly(img, outer, p.lips)
    # lower lip catches more light than the upper one
    _poly(
        img,
        np.vstack([inner[[4, 5, 6, 7, 0]], outer[[0, 11, 10, 9, 8, 7, 6]]]),
        _scaled(p.lips, 1.12),
    )
    gap = float(np.linalg.norm(inner[6] - inner[2]))
    line_color = _scaled(p.lips, 0.45)
    if gap > 0.012 * unit:
        win = _roi(img, inner)
        if win is not None:
            ys, xs, origin = win
            roi = img[ys, xs]
            layer = roi.copy()
            _poly(layer, inner, (30, 25, 60), origin)
            down = (inner[6] - inner[2]) / max(gap, 1e-6) * min(gap * 0.45, 0.035 * unit)
            teeth = np.vstack([inner[[0, 1, 2, 3, 4]], inner[[3, 2, 1]] + down])
            _poly(layer, teeth, (215, 225, 230), origin)
            mask = np.zeros(roi.shape[:2], np.uint8)
            _poly(mask, inner, 255, origin)
            _blend(roi, layer, mask)
        _line(img, inner, line_color, max(1.0, unit * 0.006), closed=True)
    else:
        _line(img, inner[[0, 1, 2, 3, 4]], line_color, max(1.0, unit * 0.01))


def _draw_occluder(img: np.ndarray, mask: np.ndarray, p: FaceParams, geo: FaceGeometry) -> None:
    lm, unit = geo.landmarks, geo.unit
    centre = lm[p.occluder_anchor] + np.asarray(p.occluder_offset) * unit
    size = p.occluder_size * unit
    color = p.occluder_color
    targets = (img, mask)
    if p.occluder in ("rect", "ellipse", "bar"):
        aspect = 0.18 if p.occluder == "bar" else p.occluder_aspect
        axes = (size / 2.0, size * aspect / 2.0)
        if p.occluder == "ellipse":
            for t, col in zip(targets, (color, 255), strict=True):
                _ellipse(t, centre, axes, p.occluder_angle, col)
        else:
            length = 3.0 * size if p.occluder == "bar" else size
            box = cv2.boxPoints(((0.0, 0.0), (length, size * aspect), p.occluder_angle)) + centre
            for t, col in zip(targets, (color, 255), strict=True):
                _poly(t, box, col)
        if p.occluder_stripes:
            win = _roi(img, centre[None] + np.array([[-size, -size], [size, size]]) * 1.5)
            if win is not None:
                ys, xs, origin = win
                layer = img[ys, xs].copy()
                step = max(3.0, size / 6.0)
                a = math.radians(p.occluder_angle + 90)
                direction = np.array([math.cos(a), math.sin(a)])
                normal = np.array([-direction[1], direction[0]])
                for k in np.arange(-2 * size, 2 * size, step):
                    seg = centre + normal * k + np.outer([-2 * size, 2 * size], direction)
                    _line(layer, seg - origin, _scaled(color, 0.55), step * 0.4)
                _blend(img[ys, xs], layer, mask[ys, xs])
    elif p.occluder == "hand":
        # the person's own hand, or a gloved one when the occluder is patterned
        skin = _scaled(p.occluder_color, 0.8) if p.occluder_stripes else _scaled(p.skin, 0.95)
        a = math.radians(p.occluder_angle)
        direction = np.array([math.cos(a), math.sin(a)])
        normal = np.array([-direction[1], direction[0]])
        palm = (size * 0.5, size * 0.42)
        finger_w = size * 0.17
        fingers = []
        for k, length in zip((-1.5, -0.5, 0.5, 1.5), (0.75, 0.9, 0.85, 0.65), strict=True):
            base = centre + direction * palm[0] * 0.6 + normal * k * finger_w * 1.05
            fingers.append((base, base + direction * size * length))
        thumb_base = centre + normal * palm[1] * 0.7
        fingers.append((thumb_base, thumb_base + (normal * 0.8 + direction * 0.5) * size * 0.5))
        outline = _scaled(skin, 0.6)
        for t, col, edge in ((img, skin, outline), (mask, 255, 255)):
            _ellipse(t, centre, palm, p.occluder_angle, edge)
            for b, e in fingers:
                _line(t, np.array([b, e]), edge, finger_w + 2)
            _ellipse(t, centre, (palm[0] - 1, palm[1] - 1), p.occluder_angle, col)
            for b, e in fingers:
                _line(t, np.array([b, e]), col, finger_w)
    elif p.occluder == "sunglasses":
        frame = p.glasses_color
        lens = _scaled(p.occluder_color, 0.25)
        ends = []
        for eye in (LEFT_EYE, RIGHT_EYE):
            c = lm[eye].mean(axis=0)
            vec = lm[eye[4]] - lm[eye[0]]
            ew = max(float(np.linalg.norm(vec)), 2.0)
            angle = math.degrees(math.atan2(vec[1], vec[0]))
            for t, col in ((img, lens), (mask, 255)):
                _ellipse(t, c, (0.8 * ew, 0.62 * ew), angle, col)
            _ellipse(img, c, (0.8 * ew, 0.62 * ew), angle, frame, max(1, round(ew * 0.1)))
            ends.append(c)
        _line(img, np.array(ends), frame, max(1.0, unit * 0.02))


def _draw_glasses(img: np.ndarray, p: FaceParams, geo: FaceGeometry) -> None:
    lm = geo.landmarks
    thick = max(1.0, geo.unit * 0.012)
    inner_edges, outer_edges = [], []
    for eye, temple in ((LEFT_EYE, 0), (RIGHT_EYE, 32)):
        c = lm[eye].mean(axis=0)
        vec = lm[eye[4]] - lm[eye[0]]  # outer -> inner corner for the left eye
        ew = max(float(np.linalg.norm(vec)), 2.0)
        angle = math.degrees(math.atan2(vec[1], vec[0]))
        _ellipse(img, c, (0.85 * ew, 0.65 * ew), angle, p.glasses_color, max(1, round(ew * 0.08)))
        toward_nose = (lm[57] - c) * [1.0, 0.0]
        toward_nose /= max(float(np.linalg.norm(toward_nose)), 1e-6)
        inner_edges.append(c + toward_nose * 0.85 * ew)
        outer_edges.append(c - toward_nose * 0.85 * ew)
        _line(img, np.array([outer_edges[-1], lm[temple]]), p.glasses_color, thick)
    _line(img, np.array(inner_edges), p.glasses_color, thick)


def draw_face(img: np.ndarray, p: FaceParams, geo: FaceGeometry) -> np.ndarray:
    """Draw one posed face into ``img`` (in place); return the occluder's uint8 mask."""
    lm, aux, unit = geo.landmarks, geo.aux, geo.unit
    fw = unit * p.width_scale
    skin = p.skin
    _hull(img, aux["torso"], p.clothes)
    if p.hair_style != "bald":
        _hull(img, aux["skull"], p.hair)
    else:
        _hull(img, aux["skull"], _scaled(skin, 0.92))
    _hull(img, np.vstack([aux["neck_top"], aux["neck_base"]]), _scaled(skin, 0.78))
    for key, side in (("ear_l", -1.0), ("ear_r", 1.0)):
        if (geo.rot @ np.array([side, 0.0, 0.0]))[2] > -0.25:
            ear = aux[key]
            _hull(img, ear, _scaled(skin, 0.85))
            inner = ear.mean(axis=0) + (ear - ear.mean(axis=0)) * 0.55
            _line(img, inner, _scaled(skin, 0.65), max(1.0, fw * 0.01), closed=True)
    _draw_skin_region(img, _skin_outline(geo), skin, edge=0.12 * fw)
    if p.hair_style != "bald":  # hair is drawn above the hairline, and a fringe line
        _line(img, aux["hairline"], _scaled(p.hair, 0.9), max(1.0, fw * 0.015))
    # cheeks
    for a, b in ((3, 55), (29, 59)):
        c = lm[a] * 0.45 + lm[b] * 0.55
        blush = _scaled(skin, (0.92, 0.9, 1.04))
        _ellipse(img, c, (fw * 0.09, fw * 0.06), p.roll, blush)
    # make-up: eye shadow between the upper lid and the brow
    if p.makeup > 0.3:
        for eye, brow in ((LEFT_EYE, [41, 40, 39, 38]), (RIGHT_EYE, [50, 49, 48, 47])):
            # brow lower edges run inner-to-outer for the left eye and outer-to-inner for
            # the right, matching the lid points taken back in the order 4, 3, 1, 0
            lid = lm[eye[[0, 1, 2, 3, 4]]]
            shadow = np.vstack([lid, lm[brow] * 0.4 + lid[[4, 3, 1, 0]] * 0.6])
            _poly(img, shadow, p.eyeshadow)
    # brows
    for brow in (LEFT_BROW, RIGHT_BROW):
        _poly(img, lm[brow], p.brow_color)
    # eyes
    _draw_eye(img, lm[LEFT_EYE], lm[LEFT_PUPIL], p)
    _draw_eye(img, lm[RIGHT_EYE], lm[RIGHT_PUPIL], p)
    # nose: a shaded wedge (its hull protrudes past the cheek in profile), nostrils, tip light
    nose = aux["nose"]
    turn = math.sin(math.radians(p.yaw))
    _hull(img, nose, _scaled(skin, 0.97 - 0.08 * abs(turn)))
    shade = _scaled(skin, 0.7)
    # aux nose = left side (3 points), 51-59, right side (3 points, bottom up)
    left_side, right_side = nose[[0, 1, 2, 7]], nose[[14, 13, 12, 11]]
    far, near = (right_side, left_side) if turn > 0 else (left_side, right_side)
    _line(img, far, shade, max(1.0, fw * (0.008 + 0.02 * abs(turn))))
    _line(img, near, _scaled(skin, 0.85), max(1.0, fw * 0.006))
    _line(img, lm[[55, 56, 57, 58, 59]], shade, max(1.0, fw * 0.012))
    for a, b in ((55, 56), (58, 59)):
        c = (lm[a] + lm[b]) / 2.0 + (lm[51] - lm[57]) * 0.06
        _ellipse(img, c, (fw * 0.022, fw * 0.011), p.roll, _scaled(skin, 0.35))
    _ellipse(img, lm[54] * 0.7 + lm[52] * 0.3, (fw * 0.022, fw * 0.018), p.roll, _scaled(skin, 1.1))
    # smile lines
    if p.smile > 0.4:
        for a, b in ((55, 76), (59, 82)):
            fold = np.array([lm[a] + (lm[a] - lm[57]) * 0.25, lm[b] + (lm[b] - lm[57]) * 0.15])
            _line(img, fold, _scaled(skin, 0.75), max(1.0, fw * 0.008))
    _draw_mouth(img, lm, p, fw)
    if p.glasses:
        _draw_glasses(img, p, geo)
    mask = np.zeros(img.shape[:2], np.uint8)
    if p.occluder != "none":
        _draw_occluder(img, mask, p, geo)
    return mask


def _motion_kernel(length: float, angle: float) -> np.ndarray:
    size = max(3, math.ceil(length) | 1)
    k = np.zeros((size, size), np.float32)
    c = (size - 1) / 2.0
    d = np.array([math.cos(math.radians(angle)), math.sin(math.radians(angle))]) * length / 2.0
    p0 = np.rint((np.array([c, c]) - d) * _ONE).astype(np.int32)
    p1 = np.rint((np.array([c, c]) + d) * _ONE).astype(np.int32)
    cv2.line(k, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), 1.0, 1, _AA, SHIFT)
    return k / max(float(k.sum()), 1e-6)


def apply_effects(
    img: np.ndarray,
    p: FaceParams,
    centre: np.ndarray,
    face_px: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Blur, lighting gradient with brightness and white balance, then sensor noise."""
    if p.blur == "gaussian" and p.blur_amount * face_px > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), p.blur_amount * face_px)
    elif p.blur == "motion" and p.blur_amount * face_px > 1.0:
        img = cv2.filter2D(img, -1, _motion_kernel(p.blur_amount * face_px, p.blur_angle))
    h, w = img.shape[:2]
    a = math.radians(p.light_angle)
    k = p.light_strength / max(face_px, 1.0)
    gx = ((np.arange(w, dtype=np.float32) + 0.5 - centre[0]) * (k * math.cos(a)))[None, :]
    gy = ((np.arange(h, dtype=np.float32) + 0.5 - centre[1]) * (k * math.sin(a)))[:, None]
    gain = np.clip(1.0 + gx + gy, 0.25, 1.8).astype(np.float32) * np.float32(p.brightness)
    gain3 = cv2.merge([gain * np.float32(b) for b in p.white_balance])
    if p.noise <= 0.0:
        return cv2.multiply(img, gain3, dtype=cv2.CV_8U)
    out = cv2.multiply(img, gain3, dtype=cv2.CV_32F)
    return cv2.addWeighted(
        out, 1.0, _noise(rng, h, w), p.noise / _NOISE_SCALE, 0.0, dtype=cv2.CV_8U
    )


_NOISE_BANK = 1024
_NOISE_SCALE = 20.0


@cache
def _noise_bank() -> np.ndarray:
    noise = np.random.default_rng(0).standard_normal((_NOISE_BANK, _NOISE_BANK, 3), np.float32)
    return np.clip(np.rint(noise * _NOISE_SCALE), -127, 127).astype(np.int8)


def _noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """int8 Gaussian noise [h, w, 3], sigma ``_NOISE_SCALE``: a random window of a fixed bank
    (fresh draws per image cost more than the rest of the effects together)."""
    if h > _NOISE_BANK or w > _NOISE_BANK:
        fresh = rng.standard_normal((h, w, 3), np.float32) * np.float32(_NOISE_SCALE)
        return np.clip(np.rint(fresh), -127, 127).astype(np.int8)
    y, x = (int(v) for v in rng.integers(0, [_NOISE_BANK - h + 1, _NOISE_BANK - w + 1]))
    return _noise_bank()[y : y + h, x : x + w]


# ------------------------------------------------------------------------------------------
# Public entry point
# ------------------------------------------------------------------------------------------


@dataclass
class SynthSample:
    """One rendered face: image, exact landmarks (float pixels), detector-like box, WFLW flags."""

    image: np.ndarray
    """H x W x 3 uint8 BGR."""
    landmarks: np.ndarray
    """[98, 2] float64 pixels, WFLW-98 order."""
    box: np.ndarray
    """[4] float64 (x, y, w, h)."""
    attributes: np.ndarray
    """[6] uint8 in ``WFLW_ATTRIBUTES`` order."""
    params: dict
    """The render parameters (``FaceParams`` fields) plus derived per-landmark facts."""


def _check_size(image_size: tuple[int, int] | int) -> tuple[int, int]:
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    w, h = (int(v) for v in image_size)
    if w < 16 or h < 16:
        raise LmkError(f"image size must be at least 16x16, got {w}x{h}")
    return w, h


def resolve_params(rng: np.random.Generator, overrides: dict) -> FaceParams:
    """Random parameters with ``overrides`` forced; unknown names are an error."""
    unknown = sorted(set(overrides) - _FIELDS)
    if unknown:
        raise LmkError(f"unknown render parameter(s): {', '.join(unknown)}")
    params = dataclasses.replace(sample_params(rng), **overrides)
    if params.occluder not in OCCLUDERS:
        raise LmkError(f"occluder must be one of {', '.join(OCCLUDERS)}")
    if params.blur not in BLURS:
        raise LmkError(f"blur must be one of {', '.join(BLURS)}")
    if params.hair_style not in HAIR_STYLES:
        raise LmkError(f"hair_style must be one of {', '.join(HAIR_STYLES)}")
    return params


def render_face(
    seed: int, image_size: tuple[int, int] | int = (256, 256), **overrides
) -> SynthSample:
    """Render one SynthFace sample; the same seed (and overrides) gives the same bytes.

    ``overrides`` force any ``FaceParams`` field (e.g. ``yaw=55``, ``occluder="none"``)
    without changing the other random draws.
    """
    width, height = _check_size(image_size)
    seq = np.random.SeedSequence(int(seed) & (2**63 - 1))
    param_seq, draw_seq, noise_seq = seq.spawn(3)
    p = resolve_params(np.random.default_rng(param_seq), overrides)
    draw_rng = np.random.default_rng(draw_seq)
    unit = p.face_width * width
    geo = _place(project_face(p, p.yaw, p.pitch, p.roll, unit), p, width, height)
    img = background(draw_rng, width, height)
    occ_mask = draw_face(img, p, geo)
    lm = geo.landmarks
    centre = (lm.min(axis=0) + lm.max(axis=0)) / 2.0
    face_px = unit * p.width_scale
    img = apply_effects(img, p, centre, face_px, np.random.default_rng(noise_seq))
    inside = (lm[:, 0] >= 0) & (lm[:, 0] < width) & (lm[:, 1] >= 0) & (lm[:, 1] < height)
    occluded = np.zeros(98, bool)
    ij = np.floor(lm[inside]).astype(np.int64)
    occluded[inside] = occ_mask[ij[:, 1], ij[:, 0]] > 127
    fraction = float(occluded.sum()) / max(int(inside.sum()), 1)
    info = {name: getattr(p, name) for name in _FIELD_NAMES}
    info.update(
        occluded=occluded,
        occluded_fraction=fraction,
        in_image=inside,
        self_occluded=_self_occluded(geo),
        face_width_px=face_px,
    )
    return SynthSample(
        image=img,
        landmarks=lm,
        box=detector_box(lm, draw_rng),
        attributes=attributes_of(p, fraction),
        params=info,
    )


def _self_occluded(geo: FaceGeometry) -> np.ndarray:
    """Contour points that the pose has turned behind the cheek (inside the face's outline)."""
    lm = geo.landmarks
    hull = cv2.convexHull(_skin_outline(geo).astype(np.float32))
    tol = 0.02 * geo.unit
    out = np.zeros(98, bool)
    for i in CONTOUR:
        out[i] = cv2.pointPolygonTest(hull, (float(lm[i, 0]), float(lm[i, 1])), True) > tol
    return out
