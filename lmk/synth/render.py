"""SynthFace: procedural cartoon faces with exact WFLW-98 landmarks (numpy + OpenCV only).

Why it exists: the pipeline needs data it can always build (tests, the demo, a model's
smoke training) without downloading a face data set. Each sample is a posed 3D landmark
template with a random identity (``template``, ``params``), projected by a pinhole camera
(``geometry``), and drawn with OpenCV around the projected points (``drawing``, then
``effects``), so the landmarks are the exact positions of what is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lmk.core.errors import LmkError
from lmk.synth.drawing import background, draw_face, skin_outline
from lmk.synth.effects import apply_effects
from lmk.synth.geometry import FaceGeometry, detector_box, place_face, project_face
from lmk.synth.params import PARAM_NAMES, attributes_of, resolve_params
from lmk.synth.template import CONTOUR


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
    """[6] uint8 in ``lmk.core.layouts.WFLW_ATTRIBUTES`` order."""
    params: dict
    """The render parameters (``FaceParams`` fields) plus derived per-landmark facts."""


def _check_size(image_size: tuple[int, int] | int) -> tuple[int, int]:
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    w, h = (int(v) for v in image_size)
    if w < 16 or h < 16:
        raise LmkError(f"image size must be at least 16x16, got {w}x{h}")
    return w, h


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
    geo = place_face(project_face(p, p.yaw, p.pitch, p.roll, unit), p, width, height)
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
    info = {name: getattr(p, name) for name in PARAM_NAMES}
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
    hull = cv2.convexHull(skin_outline(geo).astype(np.float32))
    tol = 0.02 * geo.unit
    out = np.zeros(98, bool)
    for i in CONTOUR:
        out[i] = cv2.pointPolygonTest(hull, (float(lm[i, 0]), float(lm[i, 1])), True) > tol
    return out
