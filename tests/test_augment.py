"""Augmentation moves landmarks with the pixels, renames them on a flip, and is reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from lmk.augment import (
    AugmentConfig,
    Geometry,
    augment,
    flip_matrix,
    sample_geometry,
    warp_with_landmarks,
)
from lmk.core.geometry import CropPolicy, compose_affine

SIZE = 128
# Six points of a face: eyes (0 left, 1 right), mouth corners (2, 3), nose (4), chin (5).
POINTS = np.array(
    [[70.0, 80.0], [130.0, 82.0], [80.0, 150.0], [122.0, 148.0], [101.0, 115.0], [100.0, 185.0]]
)
FLIP = (1, 0, 3, 2, 4, 5)
COLOURS = np.array(
    [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255], [0, 255, 255]], float
)
CROP = CropPolicy().matrix(np.array([50.0, 50.0, 100.0, 160.0]), SIZE)  # dots well inside


def dots_image() -> np.ndarray:
    """Black 240 x 200 frame with a Gaussian dot of a distinct colour at each point."""
    h, w = 240, 200
    yy, xx = np.mgrid[0:h, 0:w] + 0.5  # pixel centres
    image = np.zeros((h, w, 3))
    for (x, y), colour in zip(POINTS, COLOURS, strict=True):
        blob = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.5**2))
        image += blob[..., None] * colour
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def find_dots(image: np.ndarray) -> np.ndarray:
    """Intensity-weighted centroid (continuous coordinates) of each colour's dot."""
    pixels = image.astype(float)
    brightness = pixels.max(axis=-1)
    pattern = pixels / np.maximum(brightness, 1e-9)[..., None]
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]] + 0.5
    found = []
    for colour in COLOURS:
        match = (np.abs(pattern - colour / 255).max(axis=-1) < 0.25) & (brightness > 20)
        weight = brightness * match
        found.append([(xx * weight).sum() / weight.sum(), (yy * weight).sum() / weight.sum()])
    return np.array(found)


def test_dots_are_found_where_the_crop_puts_them_without_augmentation():
    crop, points, _, order = warp_with_landmarks(dots_image(), POINTS, CROP, SIZE)
    assert order.tolist() == list(range(6))
    np.testing.assert_allclose(find_dots(crop), points, atol=0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flipped_rotated_scaled_landmarks_land_on_the_mirrored_features(seed):
    config = AugmentConfig(
        rotation_deg=25,
        rotation_prob=1.0,
        scale=0.15,
        translate=0.05,
        flip_prob=1.0,
        occlusion_prob=0,
        blur_prob=0,
        grayscale_prob=0,
        jitter_prob=0,
    )
    rng = np.random.default_rng(seed)
    crop, points, matrix, order = augment(dots_image(), POINTS, CROP, SIZE, rng, config, FLIP)
    assert order.tolist() == list(FLIP)
    # new point i is old point FLIP[i]: e.g. the new left eye is the dot drawn as the right eye
    found = find_dots(crop)[list(FLIP)]
    np.testing.assert_allclose(found, points, atol=0.25)
    assert points[0, 0] < points[1, 0]  # after mirroring, the "left eye" is on the left again
    # the returned matrix is the one affine the pixels and points went through
    np.testing.assert_allclose(
        (POINTS[list(FLIP)] @ matrix[:, :2].T + matrix[:, 2]), points, atol=1e-9
    )


def test_flipping_twice_is_the_identity():
    flip = Geometry(flip_matrix(SIZE), True)
    base, base_points, _, _ = warp_with_landmarks(dots_image(), POINTS, CROP, SIZE)
    once, once_points, _, _ = warp_with_landmarks(dots_image(), POINTS, CROP, SIZE, flip, FLIP)
    twice, twice_points, _, _ = warp_with_landmarks(
        once, once_points, np.eye(2, 3), SIZE, flip, FLIP
    )
    np.testing.assert_array_equal(twice, base)
    np.testing.assert_allclose(twice_points, base_points, atol=1e-9)
    np.testing.assert_allclose(compose_affine(flip_matrix(SIZE), flip_matrix(SIZE)), np.eye(2, 3))
    # pixel i goes to pixel S - 1 - i
    np.testing.assert_array_equal(once, base[:, ::-1])


def test_augmentation_is_reproducible_from_the_generator():
    config = AugmentConfig(occlusion_prob=1.0, blur_prob=1.0, grayscale_prob=0.5, jitter_prob=1.0)
    a = augment(dots_image(), POINTS, CROP, SIZE, np.random.default_rng(7), config, FLIP)
    b = augment(dots_image(), POINTS, CROP, SIZE, np.random.default_rng(7), config, FLIP)
    c = augment(dots_image(), POINTS, CROP, SIZE, np.random.default_rng(8), config, FLIP)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_no_augment_config_draws_the_identity_geometry():
    # every geometric draw switched off (the photometric ones do not touch the geometry)
    no_augment = AugmentConfig(
        **dict.fromkeys(("rotation_prob", "scale", "translate", "flip_prob"), 0.0)
    )
    geometry = sample_geometry(np.random.default_rng(3), SIZE, no_augment)
    assert not geometry.flipped
    np.testing.assert_allclose(geometry.matrix, np.eye(2, 3), atol=1e-12)


def test_photometric_changes_leave_landmarks_and_shape_alone():
    config = AugmentConfig(
        rotation_prob=0, scale=0, translate=0, flip_prob=0, occlusion_prob=0, blur_prob=1.0,
        grayscale_prob=1.0, jitter_prob=1.0,
    )  # fmt: skip
    crop, points, _, _ = augment(
        dots_image(), POINTS, CROP, SIZE, np.random.default_rng(0), config, FLIP
    )
    base, base_points, _, _ = warp_with_landmarks(dots_image(), POINTS, CROP, SIZE)
    assert crop.shape == base.shape and crop.dtype == np.uint8
    np.testing.assert_allclose(points, base_points, atol=1e-9)
    assert (crop[..., 0] == crop[..., 1]).all() and (crop[..., 1] == crop[..., 2]).all()
    occluded = augment(
        dots_image(), POINTS, CROP, SIZE, np.random.default_rng(0),
        AugmentConfig(rotation_prob=0, scale=0, translate=0, flip_prob=0, occlusion_prob=1.0,
                      blur_prob=0, grayscale_prob=0, jitter_prob=0),
        FLIP,
    )[0]  # fmt: skip
    changed = np.any(occluded != base, axis=-1)
    ys, xs = np.nonzero(changed)
    assert changed.sum() == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)  # a rectangle
