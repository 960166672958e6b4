"""SynthFace drawing: the background and a posed face drawn with OpenCV around its points.

Pixel convention: landmarks are float pixels where pixel ``i`` covers ``[i, i + 1)``, so a
point at ``p`` is drawn centred at ``p``. OpenCV puts integer coordinates at pixel centres,
so drawing passes ``p - 0.5`` in fixed point with ``SHIFT`` fraction bits.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from lmk.synth.geometry import FaceGeometry
from lmk.synth.params import FaceParams, jittered_color
from lmk.synth.template import (
    CONTOUR,
    INNER_LIP,
    LEFT_BROW,
    LEFT_EYE,
    LEFT_PUPIL,
    OUTER_LIP,
    RIGHT_BROW,
    RIGHT_EYE,
    RIGHT_PUPIL,
)

SHIFT = 4
"""Fraction bits used with OpenCV drawing calls (1/16 pixel)."""
FIXED_ONE = 1 << SHIFT
"""1.0 pixel in OpenCV's fixed point."""

_AA = cv2.LINE_AA


def _fx(pts: np.ndarray, origin: np.ndarray | None = None) -> np.ndarray:
    """Float pixels (pixel-centre convention) -> OpenCV fixed-point int32 points."""
    q = np.asarray(pts, dtype=np.float64)
    if origin is not None:
        q = q - origin
    # projection keeps points within a few image sizes, far inside int32 at 4 fraction bits
    return np.rint((q - 0.5) * FIXED_ONE).astype(np.int32)


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
    ax = (max(1, round(axes[0] * FIXED_ONE)), max(1, round(axes[1] * FIXED_ONE)))
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


def _paint_inside(
    img: np.ndarray,
    outline: np.ndarray,
    fill: tuple,
    paint: Callable[[np.ndarray, np.ndarray], None],
) -> None:
    """Fill ``outline`` with ``fill`` and let ``paint(layer, origin)`` draw over it, all
    clipped to the outline with anti-aliased edges (an eye's iris, the teeth in a mouth);
    ``origin`` is the frame position of the layer's pixel 0."""
    win = _roi(img, outline)
    if win is None:
        return
    ys, xs, origin = win
    roi = img[ys, xs]
    layer = roi.copy()
    _poly(layer, outline, fill, origin)
    paint(layer, origin)
    mask = np.zeros(roi.shape[:2], np.uint8)
    _poly(mask, outline, 255, origin)
    _blend(roi, layer, mask)


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
        color = jittered_color(rng, tuple(base * 0.7), 20.0)
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


def skin_outline(geo: FaceGeometry) -> np.ndarray:
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

    def iris(layer: np.ndarray, origin: np.ndarray) -> None:
        r = 0.21 * eye_w
        rx = r * max(abs(math.cos(math.radians(p.yaw))), 0.35)
        ry = r * max(abs(math.cos(math.radians(p.pitch))), 0.35)
        c = pupil - origin
        _ellipse(layer, c, (rx, ry), p.roll, p.iris)
        _ellipse(layer, c, (rx, ry), p.roll, _scaled(p.iris, 0.6), max(1, round(r * 0.15)))
        _ellipse(layer, c, (rx * 0.42, ry * 0.42), p.roll, (12, 12, 14))
        _ellipse(layer, c + np.array([-0.13, -0.15]) * r, (r * 0.12, r * 0.12), 0, (250, 250, 250))

    _paint_inside(img, eye, (228.0, 232.0, 238.0), iris)
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

        def teeth(layer: np.ndarray, origin: np.ndarray) -> None:
            down = (inner[6] - inner[2]) / max(gap, 1e-6) * min(gap * 0.45, 0.035 * unit)
            upper = np.vstack([inner[[0, 1, 2, 3, 4]], inner[[3, 2, 1]] + down])
            _poly(layer, upper, (215, 225, 230), origin)

        _paint_inside(img, inner, (30, 25, 60), teeth)
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
    _draw_skin_region(img, skin_outline(geo), skin, edge=0.12 * fw)
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
