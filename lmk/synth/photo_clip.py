"""A clip made from one real annotated photo, with exact ground truth in every frame.

Why: SynthFace clips test the tracker on cartoon faces only. Moving a real photo with known
landmarks through a scripted camera gives real texture, and the truth follows exactly,
because every frame is one similarity warp of the photo (landmarks go through the same
matrix). The script runs in fractions of the clip, so any length works:

==========  =====================================================================
``still``   0.00-0.15 and 0.85-1.00: nothing moves (the tracker's jitter is measured here)
``pan``     0.15-0.35: the face drifts across the frame while zooming in and out
``roll``    0.35-0.50: the face rolls to +-25 degrees while the light dims and brightens
``occlude`` 0.50-0.60: a grey bar passes across the face (the truth stays the true face)
``blur``    0.60-0.70: a fast pan with matching motion blur
``leave``   0.70-0.85: the face slides out of the frame, stays out, and comes back
==========  =====================================================================
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from lmk.core.errors import LmkError
from lmk.core.geometry import apply_affine, warp_image
from lmk.synth.video import ClipFace, ClipFrame, check_clip_settings

SEGMENTS = (
    ("still", 0.0, 0.15),
    ("pan", 0.15, 0.35),
    ("roll", 0.35, 0.50),
    ("occlude", 0.50, 0.60),
    ("blur", 0.60, 0.70),
    ("leave", 0.70, 0.85),
    ("still", 0.85, 1.0),
)
FACE_HEIGHT = 0.35
"""The face's landmark box height as a fraction of the frame height at zoom 1."""


@dataclass(frozen=True)
class Camera:
    """Where the face is in one frame: its centre (fraction of the frame), zoom, roll
    (radians), brightness gain, how far the occluder has travelled (None: no occluder)
    and the motion blur length along x (a fraction of the frame width)."""

    centre: tuple[float, float]
    zoom: float = 1.0
    roll: float = 0.0
    gain: float = 1.0
    occluder: float | None = None
    blur: float = 0.0


def segment_at(u: float) -> tuple[str, float]:
    """The segment at clip fraction ``u`` and how far through it (0..1)."""
    for name, start, end in SEGMENTS:
        if u < end or end == 1.0:
            return name, min(max((u - start) / (end - start), 0.0), 1.0)
    raise AssertionError("unreachable")


def _ease(v: float) -> float:
    return 0.5 - 0.5 * math.cos(math.pi * v)


def camera_at(u: float, frames: int) -> Camera:
    """The scripted camera at clip fraction ``u`` (``frames`` sets the blur's pixel speed)."""
    name, v = segment_at(u)
    wave = math.sin(2.0 * math.pi * v)
    if name == "pan":
        return Camera((0.5 + 0.2 * wave, 0.5 + 0.08 * math.sin(4 * math.pi * v)), 1.0 + 0.3 * wave)
    if name == "roll":
        return Camera((0.5, 0.5), roll=math.radians(25.0) * wave, gain=1.0 - 0.45 * wave * wave)
    if name == "occlude":
        return Camera((0.5, 0.5), occluder=v)
    if name == "blur":
        # Left and back in one segment: x = 0.5 - 0.25 sin(2 pi v); speed in frame widths
        # per frame; the blur is half of each frame's travel (a 180-degree shutter).
        speed = 0.25 * 2.0 * math.pi * math.cos(2.0 * math.pi * v) / (0.10 * frames)
        return Camera((0.5 - 0.25 * wave, 0.5), blur=0.5 * speed)
    if name == "leave":
        # Out to the right (centre 1.0 + 0.6 face heights) over the first third, out for the
        # middle third, back over the last.
        out = _ease(min(v * 3.0, 1.0)) if v < 2 / 3 else _ease(3.0 - v * 3.0)
        return Camera((0.5 + out * (0.5 + 0.6 * FACE_HEIGHT), 0.5))
    return Camera((0.5, 0.5))


def photo_clip(
    photo: np.ndarray,
    landmarks: np.ndarray,
    frames: int = 150,
    size: tuple[int, int] = (640, 480),
    fps: float = 25.0,
) -> Iterator[ClipFrame]:
    """Yield the frames of the scripted clip of ``photo`` (BGR) whose face has ``landmarks``
    ([L, 2], lmk pixel convention), with the truth warped alongside."""
    width, height = (int(v) for v in size)
    check_clip_settings(frames, (width, height), 1, fps)
    landmarks = np.asarray(landmarks, dtype=np.float64)
    lo, hi = landmarks.min(axis=0), landmarks.max(axis=0)
    if not np.all(hi - lo > 1.0):
        raise LmkError("the annotation's landmarks span no area")
    face_centre = (lo + hi) / 2.0
    base = FACE_HEIGHT * height / float(hi[1] - lo[1])
    for index in range(frames):
        cam = camera_at(index / max(frames - 1, 1), frames)
        scale = base * cam.zoom
        c, s = math.cos(cam.roll) * scale, math.sin(cam.roll) * scale
        target = np.array([cam.centre[0] * width, cam.centre[1] * height])
        linear = np.array([[c, -s], [s, c]])
        matrix = np.hstack([linear, (target - linear @ face_centre)[:, None]])
        # Replicated edges, not reflected ones: a mirror would add unannotated faces.
        image = warp_image(photo, matrix, (width, height), cv2.BORDER_REPLICATE)
        truth = apply_affine(matrix, landmarks)
        image = _effects(image, cam, truth, width)
        inside = (
            (truth[:, 0] >= 0) & (truth[:, 0] < width) & (truth[:, 1] >= 0) & (truth[:, 1] < height)
        )
        box_lo, box_hi = truth.min(axis=0), truth.max(axis=0)
        face = ClipFace(truth, np.r_[box_lo, box_hi - box_lo], bool(inside.mean() >= 0.5))
        yield ClipFrame(index, image, [face])


def _effects(image: np.ndarray, cam: Camera, truth: np.ndarray, width: int) -> np.ndarray:
    """Brightness, the occluder and motion blur, in that order (blur smears the occluder)."""
    if cam.gain != 1.0:
        image = np.clip(image.astype(np.float32) * cam.gain, 0, 255).astype(np.uint8)
    if cam.occluder is not None:
        lo, hi = truth.min(axis=0), truth.max(axis=0)
        bar = 0.35 * (hi[0] - lo[0])
        x = lo[0] - bar + cam.occluder * (hi[0] - lo[0] + 2 * bar)
        top, bottom = lo[1] - 0.2 * (hi[1] - lo[1]), hi[1] + 0.2 * (hi[1] - lo[1])
        corners = np.array([[x, top], [x + bar, top], [x + bar, bottom], [x, bottom]])
        cv2.fillPoly(image, [np.round(corners).astype(np.int32)], (90, 90, 90), cv2.LINE_AA)
    length = round(abs(cam.blur) * width)
    if length >= 2:
        kernel = np.full((1, length), 1.0 / length, np.float32)
        image = cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    return image


def photo_clip_record(frame: ClipFrame, frames: int) -> dict:
    """:func:`lmk.synth.video.clip_record` plus the frame's segment name (``still``...)."""
    from lmk.synth.video import clip_record

    record = clip_record(frame)
    record["segment"] = segment_at(frame.index / max(frames - 1, 1))[0]
    return record
