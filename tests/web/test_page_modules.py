"""The page's JS mirrors of lmk.runtime, called inside Chromium on the same inputs as the
Python functions they copy: crop matrices (square or stretched, shifted, rotated), landmark
boxes (upright and turned by the eye line), IoU, the frame detector's windows and the One
Euro filter. The page imports exactly these modules; they must agree to float rounding."""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import onnx
import pytest

from lmk.core.errors import LmkError
from lmk.core.geometry import FACEAPI_CROP, CropPolicy
from lmk.runtime.bundled import bundled_model
from lmk.runtime.detectors import FrameDetector
from lmk.runtime.faces import FaceBox, box_iou, crop_faces, region_from_landmarks
from lmk.runtime.metadata import layout_of, parse_metadata
from lmk.runtime.smoothing import OneEuroFilter
from lmk.runtime.tracking import TrackerConfig
from tests.web.conftest import b64

POLICIES = [
    CropPolicy(1.2),
    CropPolicy(1.2, square=False),
    CropPolicy(400 / 195, shift_y=-0.12),
    FACEAPI_CROP,  # side "max": padded to a square on the box's longer side
]


# JS: `frame`, an RGBA ImageData-like, from arg[0] (base64 of uint8 BGR), arg[1] (width), arg[2].
RGBA_FRAME = (
    "const bgr = Uint8Array.from(atob(arg[0]), (c) => c.charCodeAt(0));"
    "const [w, h] = [arg[1], arg[2]]; const data = new Uint8ClampedArray(w * h * 4);"
    "for (let p = 0; p < w * h; p++) { for (let c = 0; c < 3; c++) data[p * 4 + c] = bgr[p * 3 + 2 - c];"
    " data[p * 4 + 3] = 255; }"
    "const frame = { data, width: w, height: h };"
)


def call(page, module: str, code: str, arg):
    """Run ``code`` (a function body with ``m``, the imported module, and ``arg``) in the page."""
    return page.evaluate(f"async (arg) => {{ const m = await import('./{module}'); {code} }}", arg)


def test_crop_matrices_match_crop_policy(page):
    """Each policy on non-square boxes (width and height drawn apart), so a square crop's
    side rule (mean or longer side) decides the matrix."""
    rng = np.random.default_rng(0)
    for policy in POLICIES:
        js_policy = {
            "enlarge": policy.enlarge, "shiftY": policy.shift_y, "square": policy.square,
            "side": policy.side,
        }  # fmt: skip
        for _ in range(5):
            box = [*rng.uniform(-50, 400, 2), *rng.uniform(20, 300, 2)]
            assert abs(box[2] - box[3]) > 1.0
            angle = float(rng.uniform(-0.6, 0.6))
            got = call(page, "crop.js", "return m.policyMatrix(arg[0], arg[1], 128, arg[2]);",
                       [js_policy, box, angle])  # fmt: skip
            want = policy.matrix(np.array(box), 128, angle).ravel()
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_longer_side_crops_match_crop_faces_byte_for_byte(page):
    """faceapi68's policy (side "max") on tall and wide boxes, upright and rolled: the page's
    cropFaces (policy matrix, then its warp) gives OpenCV 5's bytes, as crop_faces does."""
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    regions = [FaceBox(np.array([30.0, 10.0, 40.0, 90.0]), 0.0),
               FaceBox(np.array([50.5, 40.25, 100.0, 45.0]), 0.35)]  # fmt: skip
    policy = {"enlarge": FACEAPI_CROP.enlarge, "shiftY": 0.0, "square": True, "side": "max"}
    got = call(page, "faces.js",
               RGBA_FRAME + "const out = m.cropFaces(frame, arg[3], arg[4], 112);"
               "return { crops: Array.from(out.crops), matrices: out.matrices };",
               [b64(frame), 160, 120, [{"box": r.box.tolist(), "angle": r.angle} for r in regions],
                policy])  # fmt: skip
    crops, matrices = crop_faces(frame, regions, FACEAPI_CROP, 112)
    np.testing.assert_allclose(np.asarray(got["matrices"]).reshape(-1, 2, 3), matrices, atol=1e-9)
    levels = np.abs(np.asarray(got["crops"], np.int64).reshape(crops.shape) - crops).max()
    assert levels <= (0 if int(cv2.__version__.split(".")[0]) >= 5 else 1), levels


def parse_in_page(page, props: dict[str, str]):
    """metadata.js's parseLmkMetadata on ``props``: its result, or its error's message."""
    return call(page, "metadata.js",
                "try { return m.parseLmkMetadata(new Map(Object.entries(arg)), 'f.onnx'); }"
                " catch (err) { return err.message; }", props)  # fmt: skip


def test_metadata_reader_takes_crop_side_rotate_and_confidence_as_parse_metadata(page):
    """faceapi68's keys (lmk.crop.side, lmk.rotate, lmk.confidence, the eye pair in
    lmk.nme_norm) read as the runtime reads them; absent, the runtime's defaults; a wrong
    value one error naming the key, where parse_metadata refuses it too."""
    props = {p.key: p.value for p in onnx.load(str(bundled_model("pipnet"))).metadata_props}
    plain = parse_in_page(page, props)
    assert (plain["crop"]["side"], plain["rotate"], plain["confidence"]) == ("mean", False, True)
    faceapi = {**props, "lmk.crop": json.dumps(FACEAPI_CROP.to_dict()),
               "lmk.rotate": "true", "lmk.confidence": "false"}  # fmt: skip
    got, want = parse_in_page(page, faceapi), parse_metadata(faceapi)
    assert got["crop"]["side"] == CropPolicy.from_dict(want.crop).side == "max"
    assert (got["rotate"], got["confidence"]) == (want.rotate, want.has_confidence) == (True, False)
    assert tuple(got["eyePair"]) == layout_of(want).nme_norm
    bad = {
        "lmk.crop.side": {"lmk.crop": json.dumps({"enlarge": 1.2, "side": "widest"})},
        "lmk.rotate": {"lmk.rotate": '"yes"'},
        "lmk.confidence": {"lmk.confidence": "1"},
        "lmk.nme_norm": {"lmk.nme_norm": "[0, 999]"},
    }
    for key, change in bad.items():
        message = parse_in_page(page, {**props, **change})
        assert isinstance(message, str) and f"lmk metadata {key} must be" in message, message
        with pytest.raises(LmkError):
            parse_metadata({**props, **change})
    # The page has no table of public layouts: a rotating file must name its eye pair.
    unnamed = {k: v for k, v in faceapi.items() if k != "lmk.nme_norm"}
    assert "lmk.rotate needs lmk.nme_norm" in parse_in_page(page, unnamed)


def test_tracker_defaults_are_tracker_configs(page):
    """tracking.js's defaults are TrackerConfig's, field by field (camelCase there); rotate
    null there means the model's lmk.rotate, as LandmarkSession.tracker fills it in."""
    got = call(page, "tracking.js", "return m.TRACKER_DEFAULTS;", None)
    want = {
        "".join(w.title() if i else w for i, w in enumerate(f.name.split("_"))): f.default
        for f in dataclasses.fields(TrackerConfig)
    }
    assert got.pop("rotate") is None and want.pop("rotate") is False
    assert got == want


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


# Frame sizes for the letterbox and the levels the page's square may differ by: shrinks by a
# fractional factor (OpenCV's float32 area weights) and by whole factors 2, 3 and 4 (its
# integer averages) are the same bytes; a frame the square's size is copied; a frame smaller
# than the square is enlarged in float where OpenCV's INTER_LINEAR uses fixed point (1 level).
LETTERBOX_CASES = [
    ((320, 240), 0), ((256, 192), 0), ((384, 288), 0), ((512, 384), 0), ((97, 301), 0),
    ((128, 96), 0), ((100, 60), 1),
]  # fmt: skip


def test_letterbox_matches_blazeface_detectors_byte_for_byte(page):
    """The detector's input square and frame box: the page's letterbox.js against
    lmk.runtime.blazeface_detector.letterbox (cv2.resize) on noise frames, the hardest case
    for the resize's float sums: the levels of LETTERBOX_CASES, the same frame box."""
    from lmk.runtime.blazeface_detector import letterbox

    rng = np.random.default_rng(3)
    for (width, height), allowed in LETTERBOX_CASES:
        frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        got = call(page, "letterbox.js",
                   RGBA_FRAME + "const out = m.letterbox(frame, 128);"
                   "return { square: Array.from(out.square), frameBox: Array.from(out.frameBox) };",
                   [b64(frame), width, height])  # fmt: skip
        square, frame_box = letterbox(frame, 128)
        got_square = np.asarray(got["square"], np.uint8).reshape(square.shape)
        levels = int(np.abs(got_square.astype(int) - square).max())
        assert levels <= allowed, f"{width}x{height}: squares differ by {levels} levels"
        np.testing.assert_array_equal(np.asarray(got["frameBox"], np.float32), frame_box)


def test_weighted_nms_matches_blazeface_py(page):
    """MediaPipe's weighted NMS: nms.js against lmk.runtime.blazeface.weighted_nms on
    candidates like a detector's (clusters of jittered boxes about three faces, two of them
    overlapping, and stray boxes; float32). Same faces in the same order, same scores;
    boxes and keypoints within 1e-4 px (float32 rounding of ~300 px values: 3e-5)."""
    from lmk.runtime.blazeface import weighted_nms

    rng = np.random.default_rng(4)
    faces = np.array([[40, 50, 90, 90], [100, 70, 80, 85], [250, 30, 60, 60]], np.float64)
    boxes = np.concatenate([
        np.repeat(faces, 9, axis=0) + rng.normal(0, 4, (27, 4)),
        np.column_stack([rng.uniform(0, 300, (12, 2)), rng.uniform(10, 60, (12, 2))]),
    ]).astype(np.float32)  # fmt: skip
    keypoints = boxes[:, None, :2] + rng.uniform(0, 1, (len(boxes), 6, 2)) * boxes[:, None, 2:]
    keypoints = keypoints.astype(np.float32)
    scores = rng.uniform(0.2, 1.0, len(boxes)).astype(np.float32)
    for min_score, iou in ((0.5, 0.3), (0.3, 0.1), (0.75, 0.5)):
        got = call(page, "nms.js", "return m.weightedNms(arg[0], arg[1], arg[2], arg[3], arg[4]);",
                   [boxes.tolist(), keypoints.reshape(len(boxes), -1).tolist(), scores.tolist(),
                    min_score, iou])  # fmt: skip
        want_boxes, want_points, want_scores = weighted_nms(
            boxes, keypoints, scores, min_score, iou
        )
        assert len(got) == len(want_scores) >= 3, (len(got), len(want_scores))
        np.testing.assert_array_equal([f["score"] for f in got], want_scores)
        np.testing.assert_allclose([f["box"] for f in got], want_boxes, rtol=0, atol=1e-4)
        np.testing.assert_allclose([f["keypoints"] for f in got],
                                   want_points.reshape(len(got), -1), rtol=0, atol=1e-4)  # fmt: skip
