"""The crop: one affine warp from a face box, and its inverse."""

from __future__ import annotations

import numpy as np
import pytest

from lmk.core.geometry import FAN_OFFICIAL_CROP, CropPolicy, apply_affine, invert_affine, warp_crop


def test_square_region_is_enlarged_about_the_shifted_centre():
    region = CropPolicy(enlarge=2.0, shift_y=-0.1).region((100, 50, 40, 60))
    # centre (120, 80 - 6), side 2 * (40 + 60) / 2 = 100
    np.testing.assert_allclose(region, [70, 24, 170, 124])
    stretched = CropPolicy(enlarge=1.5, square=False).region((0, 0, 40, 20))
    np.testing.assert_allclose(stretched, [-10, -5, 50, 25])


def test_fan_policy_is_face_alignments_rule():
    x, y, w, h = 10.0, 20.0, 100.0, 120.0
    region = FAN_OFFICIAL_CROP.region((x, y, w, h))
    side = 200.0 * (w + h) / 195.0
    np.testing.assert_allclose(region[2] - region[0], side)
    np.testing.assert_allclose((region[1] + region[3]) / 2, y + h / 2 - 0.12 * h)


@pytest.mark.parametrize("point", [(37.25, 81.5), (120.0, 70.75), (60.5, 130.25)])
def test_warp_puts_a_frame_point_where_the_matrix_says(point):
    frame = np.zeros((200, 160), np.float32)
    # A smooth blob centred on ``point`` (continuous coordinates: pixel i spans [i, i+1)).
    yy, xx = np.mgrid[0:200, 0:160] + 0.5
    frame = np.exp(-((xx - point[0]) ** 2 + (yy - point[1]) ** 2) / (2 * 6.0**2)).astype(np.float32)
    matrix = CropPolicy(enlarge=1.3).matrix((20, 30, 110, 120), 128)
    crop = warp_crop(frame, matrix, 128)
    expected = apply_affine(matrix, np.array(point))
    cy, cx = np.mgrid[0:128, 0:128] + 0.5
    weights = crop / crop.sum()
    found = np.array([(cx * weights).sum(), (cy * weights).sum()])
    assert np.all((expected > 20) & (expected < 108))  # the blob lies wholly inside the crop
    np.testing.assert_allclose(found, expected, atol=0.05)


def test_inverse_map_round_trips_rotated_and_off_frame_points():
    matrix = CropPolicy().matrix((-50, -30, 80, 90), 256)
    angle = np.deg2rad(25)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 10], [np.sin(angle), np.cos(angle), -20]])
    combined = np.vstack([matrix, [0, 0, 1]]) @ np.vstack([rotation, [0, 0, 1]])
    affine = combined[:2]
    points = np.array([[-100.0, -60.0], [0.0, 0.0], [300.0, 250.0]])
    back = apply_affine(invert_affine(affine), apply_affine(affine, points))
    np.testing.assert_allclose(back, points, atol=1e-9)
