"""Faces in a frame: boxes to model crops (one affine warp each) and landmarks back again.

Every face of a frame goes through the network in one batch; the crop matrices are kept so
the crop-normalised landmarks map back to frame pixels with the exact inverse warp.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lmk.core.geometry import LANDMARK_BOX_GROW, CropPolicy, warp_crop


@dataclass
class FaceBox:
    """A face region in frame pixels: ``(x, y, w, h)`` in the face-upright frame turned by
    ``angle`` radians about the box centre (``angle`` 0: an ordinary axis-aligned box)."""

    box: np.ndarray
    angle: float = 0.0
    score: float = 1.0

    @property
    def centre(self) -> np.ndarray:
        x, y, w, h = self.box
        return np.array([x + w / 2.0, y + h / 2.0])


@dataclass
class Face:
    """One face's result: landmarks [L, 2] and per-landmark scores in frame pixels."""

    landmarks: np.ndarray
    scores: np.ndarray
    region: FaceBox
    track_id: int = -1
    extra: dict = field(default_factory=dict)

    @property
    def score(self) -> float:
        """The face's confidence: the mean landmark score."""
        return float(np.mean(self.scores)) if self.scores.size else 0.0


def crop_faces(
    frame: np.ndarray, regions: list[FaceBox], policy: CropPolicy, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 crops [N, size, size, 3] of a uint8 BGR ``frame`` (what
    :func:`lmk.runtime.validate.bgr_image` gives) and their frame->crop matrices [N, 2, 3]."""
    crops = np.empty((len(regions), size, size, 3), np.uint8)
    matrices = np.empty((len(regions), 2, 3), np.float64)
    for i, region in enumerate(regions):
        matrices[i] = policy.matrix(region.box, size, region.angle)
        crops[i] = warp_crop(frame, matrices[i], size)
    return crops, matrices


def region_from_landmarks(
    landmarks: np.ndarray,
    eye_pair: tuple[int, int] | None = None,
    grow: float = LANDMARK_BOX_GROW,
) -> FaceBox:
    """The box a tracker crops next: the landmarks' bounds grown by ``grow``, measured in the
    frame turned upright by the eye line's roll when ``eye_pair`` is given."""
    pts = np.asarray(landmarks, dtype=np.float64)
    angle = 0.0
    if eye_pair is not None:
        d = pts[eye_pair[1]] - pts[eye_pair[0]]
        if np.hypot(*d) > 1e-6:
            angle = float(np.arctan2(d[1], d[0]))
    centre = (pts.min(axis=0) + pts.max(axis=0)) / 2.0
    if angle:
        c, s = np.cos(-angle), np.sin(-angle)
        upright = (pts - centre) @ np.array([[c, s], [-s, c]]) + centre
    else:
        upright = pts
    lo, hi = upright.min(axis=0), upright.max(axis=0)
    mid = (lo + hi) / 2.0
    # The upright box's centre, turned back into the frame: the crop rotates about it.
    if angle:
        c, s = np.cos(angle), np.sin(angle)
        mid = (mid - centre) @ np.array([[c, s], [-s, c]]) + centre
    wh = np.maximum(hi - lo, 1.0) * grow
    return FaceBox(np.array([mid[0] - wh[0] / 2, mid[1] - wh[1] / 2, wh[0], wh[1]]), angle)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x, y, w, h) boxes (angles ignored)."""
    ax1, ay1, ax2, ay2 = a[0], a[1], a[0] + a[2], a[1] + a[3]
    bx1, by1, bx2, by2 = b[0], b[1], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def fraction_inside(landmarks: np.ndarray, width: int, height: int) -> float:
    """Share of the landmarks inside the frame."""
    x, y = landmarks[:, 0], landmarks[:, 1]
    return float(np.mean((x >= 0) & (x < width) & (y >= 0) & (y < height)))
