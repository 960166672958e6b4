"""SynthFace image effects, applied after drawing: blur, lighting, white balance, noise."""

from __future__ import annotations

import math
from functools import cache

import cv2
import numpy as np

from lmk.synth.drawing import FIXED_ONE, SHIFT
from lmk.synth.params import FaceParams


def _motion_kernel(length: float, angle: float) -> np.ndarray:
    size = max(3, math.ceil(length) | 1)
    k = np.zeros((size, size), np.float32)
    c = (size - 1) / 2.0
    d = np.array([math.cos(math.radians(angle)), math.sin(math.radians(angle))]) * length / 2.0
    p0 = np.rint((np.array([c, c]) - d) * FIXED_ONE).astype(np.int32)
    p1 = np.rint((np.array([c, c]) + d) * FIXED_ONE).astype(np.int32)
    cv2.line(k, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), 1.0, 1, cv2.LINE_AA, SHIFT)
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
