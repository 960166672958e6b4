"""Training augmentation (numpy + OpenCV): landmarks move with the pixels, one resampling.

The geometric part (rotation, scale, translation, horizontal flip) is a 2x3 affine in crop
pixel coordinates that is composed with the crop's own affine, so an image is resampled once
(:func:`lmk.crop.warp_crop`) however many transforms apply, and the landmarks go through the
very same matrix. Mirroring also renames the points: after a flip, new point ``i`` is old point
``layout.flip[i]``. The photometric part (occlusion, blur, grayscale, colour jitter) changes
pixels only. Every draw comes from the ``np.random.Generator`` passed in, so a sample is
reproducible from its seed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from lmk.crop import apply_affine, warp_crop


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges; the defaults follow the official PIPNet recipe in spirit."""

    rotation_deg: float = 30.0
    """Rotation drawn uniformly in ``[-rotation_deg, rotation_deg]``."""
    rotation_prob: float = 0.5
    scale: float = 0.1
    """Zoom factor drawn uniformly in ``[1 - scale, 1 + scale]``."""
    translate: float = 0.05
    """Shift per axis drawn uniformly in ``[-translate, translate]`` of the crop size."""
    flip_prob: float = 0.5
    occlusion_prob: float = 0.4
    occlusion_max: float = 0.4
    """Largest occluder side as a fraction of the crop."""
    blur_prob: float = 0.2
    blur_sigma: tuple[float, float] = (0.5, 2.0)
    grayscale_prob: float = 0.1
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.2
    jitter_prob: float = 0.8

    def to_dict(self) -> dict:
        return asdict(self)


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 affine ``outer(inner(p))``."""
    o = np.vstack([np.asarray(outer, np.float64), [0.0, 0.0, 1.0]])
    i = np.vstack([np.asarray(inner, np.float64), [0.0, 0.0, 1.0]])
    return (o @ i)[:2]


def flip_matrix(size: int) -> np.ndarray:
    """Horizontal mirror of a ``size``-wide crop in continuous coordinates: ``x -> size - x``."""
    return np.array([[-1.0, 0.0, float(size)], [0.0, 1.0, 0.0]])


def similarity_about_centre(
    size: int, angle_deg: float = 0.0, scale: float = 1.0, shift: tuple[float, float] = (0, 0)
) -> np.ndarray:
    """Rotate by ``angle_deg`` (counter-clockwise on screen) and zoom about the crop centre, then
    shift by ``shift`` pixels."""
    theta = math.radians(angle_deg)
    # Image y points down, so a counter-clockwise turn on screen uses -theta in these axes.
    cos, sin = math.cos(theta) * scale, math.sin(theta) * scale
    rot = np.array([[cos, sin], [-sin, cos]])
    centre = np.array([size / 2.0, size / 2.0])
    offset = centre - rot @ centre + np.asarray(shift, np.float64)
    return np.hstack([rot, offset[:, None]])


@dataclass(frozen=True)
class Geometry:
    """A drawn geometric augmentation: the crop-space affine and whether it mirrors."""

    matrix: np.ndarray
    flipped: bool


def sample_geometry(rng: np.random.Generator, size: int, config: AugmentConfig) -> Geometry:
    """Draw rotation, scale, shift and flip; the same number of draws whatever is enabled."""
    u = rng.random(7)
    angle = (2 * u[1] - 1) * config.rotation_deg if u[0] < config.rotation_prob else 0.0
    scale = 1.0 + (2 * u[2] - 1) * config.scale
    shift = ((2 * u[3] - 1) * config.translate * size, (2 * u[4] - 1) * config.translate * size)
    matrix = similarity_about_centre(size, angle, scale, shift)
    flipped = bool(u[5] < config.flip_prob)
    if flipped:
        matrix = compose(flip_matrix(size), matrix)
    return Geometry(matrix, flipped)


def flip_permutation(flip: tuple[int, ...] | np.ndarray | None, num_points: int) -> np.ndarray:
    """Index array ``perm`` with ``new = mirrored[perm]`` (the layout's flip table)."""
    if flip is None:
        raise ValueError("a horizontal flip needs the layout's flip table")
    perm = np.asarray(flip, dtype=np.int64)
    if perm.shape != (num_points,):
        raise ValueError(f"flip table has {perm.shape[0]} entries for {num_points} points")
    return perm


def warp_with_landmarks(
    image: np.ndarray,
    landmarks: np.ndarray,
    crop: np.ndarray,
    size: int,
    geometry: Geometry | None = None,
    flip: tuple[int, ...] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One warp of ``image`` through ``geometry ∘ crop``; landmarks through the same affine.

    Returns ``(crop image [S, S, 3] uint8, landmarks [L, 2] in crop pixels, the frame-to-crop
    matrix used, the landmark order)``: ``order`` is ``flip`` when mirrored (new point ``i`` is
    old point ``flip[i]``), else the identity.
    """
    matrix = crop if geometry is None else compose(geometry.matrix, crop)
    points = apply_affine(matrix, landmarks)
    order = np.arange(len(points))
    if geometry is not None and geometry.flipped:
        order = flip_permutation(flip, len(points))
        points = points[order]
    return warp_crop(image, matrix, size), points, matrix, order


def occlude(image: np.ndarray, rng: np.random.Generator, max_fraction: float) -> np.ndarray:
    """Paint a random rectangle (flat random colour) somewhere over the crop."""
    h, w = image.shape[:2]
    u = rng.random(4)
    rw = max(1, round(w * max_fraction * (0.25 + 0.75 * float(u[0]))))
    rh = max(1, round(h * max_fraction * (0.25 + 0.75 * float(u[1]))))
    x0 = int(u[2] * (w - rw + 1))
    y0 = int(u[3] * (h - rh + 1))
    out = image.copy()
    out[y0 : y0 + rh, x0 : x0 + rw] = rng.integers(0, 256, 3, dtype=np.uint8)
    return out


def colour_jitter(
    image: np.ndarray,
    rng: np.random.Generator,
    brightness: float,
    contrast: float,
    saturation: float,
) -> np.ndarray:
    """Scale brightness, contrast about the mean grey, and saturation about each pixel's grey."""
    u = rng.random(3)
    b = 1.0 + (2 * u[0] - 1) * brightness
    c = 1.0 + (2 * u[1] - 1) * contrast
    s = 1.0 + (2 * u[2] - 1) * saturation
    x = image.astype(np.float32) * b
    grey = x @ np.array([0.114, 0.587, 0.299], np.float32)  # BGR weights
    x = (x - grey.mean()) * c + grey.mean()
    grey = x @ np.array([0.114, 0.587, 0.299], np.float32)
    x = (x - grey[..., None]) * s + grey[..., None]
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def photometric(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Occlusion, blur, grayscale and colour jitter, each with its probability."""
    u = rng.random(5)
    sub = np.random.default_rng(rng.integers(0, 2**63))  # draws below never shift the rest
    out = image
    if u[0] < config.jitter_prob:
        out = colour_jitter(out, sub, config.brightness, config.contrast, config.saturation)
    if u[1] < config.grayscale_prob:
        grey = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
        out = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    if u[2] < config.blur_prob:
        lo, hi = config.blur_sigma
        sigma = lo + (hi - lo) * float(sub.random())
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=sigma)
    if u[3] < config.occlusion_prob:
        out = occlude(out, sub, config.occlusion_max)
    return out


def augment(
    image: np.ndarray,
    landmarks: np.ndarray,
    crop: np.ndarray,
    size: int,
    rng: np.random.Generator,
    config: AugmentConfig = AugmentConfig(),
    flip: tuple[int, ...] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Crop ``image`` with augmentation: ``(crop [S, S, 3], landmarks [L, 2] crop pixels,
    frame-to-crop matrix, landmark order)`` (see :func:`warp_with_landmarks`).

    ``crop`` is the frame-to-crop affine of the face box (``CropPolicy.matrix``); ``flip`` the
    layout's flip table (needed when ``config.flip_prob > 0``).
    """
    geometry = sample_geometry(rng, size, config)
    out, points, matrix, order = warp_with_landmarks(image, landmarks, crop, size, geometry, flip)
    return photometric(out, rng, config), points, matrix, order
