"""The page's JS mirrors of lmk.runtime, called inside Chromium on the same inputs as the
Python functions they copy: crop matrices (square or stretched, shifted, rotated), landmark
boxes (upright and turned by the eye line), IoU, the frame detector's windows and the One
Euro filter. The page imports exactly these modules; they must agree to float rounding."""

from __future__ import annotations

import numpy as np

from lmk.core.geometry import CropPolicy
from lmk.runtime.detectors import FrameDetector
from lmk.runtime.faces import box_iou, region_from_landmarks
from lmk.runtime.smoothing import OneEuroFilter

POLICIES = [CropPolicy(1.2), CropPolicy(1.2, square=False), CropPolicy(400 / 195, shift_y=-0.12)]


def call(page, module: str, code: str, arg):
    """Run ``code`` (a function body with ``m``, the imported module, and ``arg``) in the page."""
    return page.evaluate(f"async (arg) => {{ const m = await import('./{module}'); {code} }}", arg)


def test_crop_matrices_match_crop_policy(page):
    rng = np.random.default_rng(0)
    for policy in POLICIES:
        js_policy = {"enlarge": policy.enlarge, "shiftY": policy.shift_y, "square": policy.square}
        for _ in range(5):
            box = [*rng.uniform(-50, 400, 2), *rng.uniform(20, 300, 2)]
            angle = float(rng.uniform(-0.6, 0.6))
            got = call(page, "crop.js", "return m.policyMatrix(arg[0], arg[1], 128, arg[2]);",
                       [js_policy, box, angle])  # fmt: skip
            want = policy.matrix(np.array(box), 128, angle).ravel()
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_landmark_boxes_and_iou_match_faces_py(page):
    rng = np.random.default_rng(1)
    for eyes in (None, [0, 1]):
        points = rng.uniform(50, 250, (98, 2))
        got = call(page, "faces.js", "return m.regionFromLandmarks(arg[0], arg[1]);",
                   [points.tolist(), eyes])  # fmt: skip
        want = region_from_landmarks(points, None if eyes is None else tuple(eyes))
        np.testing.assert_allclose(got["box"], want.box, rtol=0, atol=1e-9)
        assert abs(got["angle"] - want.angle) <= 1e-12
    a, b = [10.0, 20.0, 100.0, 80.0], [50.5, 30.25, 90.0, 120.0]
    assert abs(call(page, "faces.js", "return m.boxIou(arg[0], arg[1]);", [a, b])
               - box_iou(np.array(a), np.array(b))) <= 1e-15  # fmt: skip


def test_frame_detector_windows_match_detectors_py(page):
    for width, height in ((640, 480), (320, 240), (97, 301)):
        got = call(page, "detectors.js",
                   "return new m.FrameDetector().detect({width: arg[0], height: arg[1]}).map(r => r.box);",
                   [width, height])  # fmt: skip
        frame = np.zeros((height, width, 3), np.uint8)
        want = [r.box for r in FrameDetector().detect(frame)]
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-9)


def test_one_euro_filter_matches_smoothing_py(page):
    rng = np.random.default_rng(2)
    sequence = np.cumsum(rng.normal(0, 3, (12, 98, 2)), axis=0) + 200
    dts = rng.uniform(0.02, 0.05, 12)
    got = call(page, "smoothing.js",
               "const f = new m.OneEuroFilter(1.0, 0.05);"
               "return arg[0].map((pts, i) => f.filter(pts, arg[1][i], 1.3));",
               [sequence.tolist(), dts.tolist()])  # fmt: skip
    smoother = OneEuroFilter(1.0, 0.05)
    want = [smoother(points, float(dt), 1.3) for points, dt in zip(sequence, dts, strict=True)]
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-9)
