"""Face crops and the way back: one affine warp in, its exact inverse out, rotation included."""

from __future__ import annotations

import numpy as np
import pytest

from lmk.core.geometry import CropPolicy, apply_affine, crop_to_frame
from lmk.core.layouts import get_layout
from lmk.runtime.faces import (
    FaceBox,
    box_iou,
    crop_faces,
    region_from_landmarks,
)

POLICY = CropPolicy(enlarge=1.2)


@pytest.mark.parametrize(
    ("box", "angle"),
    [
        ((100.0, 80.0, 120.0, 140.0), 0.0),
        ((100.0, 80.0, 120.0, 140.0), np.deg2rad(35.0)),
        ((-60.0, -40.0, 150.0, 130.0), np.deg2rad(-50.0)),  # mostly off the frame
        ((580.0, 400.0, 200.0, 220.0), np.deg2rad(170.0)),  # past the far corner, upside down
    ],
)
def test_crop_and_inverse_map_round_trip_to_a_thousandth_of_a_pixel(box, angle):
    frame = np.zeros((480, 640, 3), np.uint8)
    regions = [FaceBox(np.array(box), angle)]
    crops, matrices = crop_faces(frame, regions, POLICY, 128)
    assert crops.shape == (1, 128, 128, 3)
    rng = np.random.default_rng(0)
    points = np.array(box[:2]) + rng.uniform(-0.2, 1.2, (50, 2)) * np.array(box[2:])
    normalised = apply_affine(matrices[0], points) / 128.0
    back = crop_to_frame(normalised[None].astype(np.float32), matrices, 128)[0]
    assert np.abs(back - points).max() <= 1e-3 * 4  # float32 landmarks: 1e-3 px within 4 ulp-ish
    back64 = crop_to_frame(normalised[None], matrices, 128)[0]
    assert np.abs(back64 - points).max() <= 1e-9


def test_rotated_crop_puts_a_frame_dot_where_the_matrix_says():
    frame = np.zeros((300, 300, 3), np.uint8)
    dot = np.array([170.3, 121.7])
    yy, xx = np.mgrid[0:300, 0:300] + 0.5
    blob = np.exp(-((xx - dot[0]) ** 2 + (yy - dot[1]) ** 2) / (2 * 3.0**2))
    frame[..., 1] = np.round(255 * blob).astype(np.uint8)
    region = FaceBox(np.array([100.0, 90.0, 110.0, 100.0]), np.deg2rad(30.0))
    crops, matrices = crop_faces(frame, [region], POLICY, 160)
    weights = crops[0, ..., 1].astype(np.float64)
    cy, cx = np.mgrid[0:160, 0:160] + 0.5
    found = np.array([(cx * weights).sum(), (cy * weights).sum()]) / weights.sum()
    expected = apply_affine(matrices[0], dot)
    np.testing.assert_allclose(found, expected, atol=0.1)


def test_landmark_region_turns_a_rolled_face_upright():
    layout = get_layout("wflw98")
    face = layout.meanface * 200.0 + 50.0  # mean face, 200 px
    roll = np.deg2rad(40.0)
    c, s = np.cos(roll), np.sin(roll)
    centre = face.mean(axis=0)
    rolled = (face - centre) @ np.array([[c, s], [-s, c]]) + centre + [300.0, 120.0]
    region = region_from_landmarks(rolled, layout.nme_norm)
    upright = region_from_landmarks(face, layout.nme_norm)
    assert region.angle - upright.angle == pytest.approx(roll, abs=1e-9)
    # Same box size and the same crop of the face, only turned.
    np.testing.assert_allclose(region.box[2:], upright.box[2:], atol=1e-6)
    _, m_rolled = crop_faces(np.zeros((10, 10, 3), np.uint8), [region], POLICY, 128)
    _, m_upright = crop_faces(np.zeros((10, 10, 3), np.uint8), [upright], POLICY, 128)
    np.testing.assert_allclose(
        apply_affine(m_rolled[0], rolled), apply_affine(m_upright[0], face), atol=1e-6
    )


def test_box_iou_of_identical_disjoint_and_half_overlapping_boxes():
    a = np.array([0.0, 0.0, 10.0, 10.0])
    assert box_iou(a, a) == pytest.approx(1.0)
    assert box_iou(a, np.array([20.0, 0.0, 10.0, 10.0])) == 0.0
    assert box_iou(a, np.array([5.0, 0.0, 10.0, 10.0])) == pytest.approx(50.0 / 150.0)
