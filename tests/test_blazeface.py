"""BlazeFace's host math and graph decode, without any downloaded weights: anchors,
the weighted NMS, the fused decode graph against the numpy reference, the TFLite reader's
refusals. (The real-weights and real-photo tests are in test_blazeface_real.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from lmk.core.errors import LmkError
from lmk.runtime import blazeface as host
from lmk.runtime.blazeface_detector import letterbox
from lmk.runtime.tflite_file import read_tflite


@pytest.mark.parametrize("size", [128, 256])
def test_anchor_table_follows_mediapipe_rules(size):
    anchors = host.anchor_centres(size)
    assert anchors.shape == (896, 2)
    # 16x16 map, 2 anchors per cell, in (row, column, anchor) order; centres at (i + 0.5)/16.
    assert np.allclose(anchors[0], anchors[1]) and np.allclose(anchors[0], [0.5 / 16, 0.5 / 16])
    assert np.allclose(anchors[2], [1.5 / 16, 0.5 / 16])
    assert np.allclose(anchors[32], [0.5 / 16, 1.5 / 16])
    # then the 8x8 map with 6 anchors per cell
    assert np.allclose(anchors[512:518], [0.5 / 8, 0.5 / 8])
    assert np.allclose(anchors[-1], [7.5 / 8, 7.5 / 8])


def test_decode_reference_reads_values_relative_to_the_anchor_in_input_pixels():
    regressors = np.zeros((1, 896, 16), np.float32)
    regressors[0, 0, :4] = [12.8, -6.4, 25.6, 51.2]  # dx, dy, w, h in 128 px input pixels
    regressors[0, 0, 4:6] = [1.28, 0.0]
    logits = np.zeros((1, 896), np.float32)
    logits[0, 0] = 200.0  # clipped to 100 before the sigmoid
    boxes, points, scores = host.decode_reference(regressors, logits, 128)
    centre = np.array([0.5 / 16 + 0.1, 0.5 / 16 - 0.05])
    assert np.allclose(boxes[0, 0], [centre[0] - 0.1, centre[1] - 0.2, 0.2, 0.4], atol=1e-6)
    assert np.allclose(points[0, 0, 0], [0.5 / 16 + 0.01, 0.5 / 16], atol=1e-6)
    assert scores[0, 0] == pytest.approx(1.0) and scores[0, 1] == pytest.approx(0.5)


def test_weighted_nms_merges_a_cluster_by_score_and_keeps_the_best_score():
    boxes = np.array(
        [[0, 0, 10, 10], [1, 1, 10, 10], [100, 100, 10, 10], [0, 0, 10, 10]], np.float32
    )
    points = np.zeros((4, 6, 2), np.float32)
    points[1] += 3.0
    scores = np.array([0.9, 0.6, 0.7, 0.2], np.float32)  # the last is under min_score
    out_boxes, out_points, out_scores = host.weighted_nms(boxes, points, scores, min_score=0.5)
    assert out_scores.tolist() == pytest.approx([0.9, 0.7])
    assert np.allclose(out_boxes[0], [0.4, 0.4, 10, 10])  # (0.9*0 + 0.6*1) / 1.5
    assert np.allclose(out_points[0], 1.2)  # (0.9*0 + 0.6*3) / 1.5
    assert np.allclose(out_boxes[1], [100, 100, 10, 10])


def test_weighted_nms_of_nothing_is_nothing():
    boxes, points, scores = host.weighted_nms(
        np.zeros((3, 4), np.float32), np.zeros((3, 6, 2), np.float32), np.zeros(3, np.float32), 0.5
    )
    assert boxes.shape == (0, 4) and points.shape == (0, 6, 2) and scores.shape == (0,)


def test_fused_decode_graph_equals_the_numpy_reference_in_frame_pixels():
    ort = pytest.importorskip("onnxruntime")
    from lmk.export.blazeface import compare_top_k, decode_model
    from lmk.export.checks import tensorrt_check

    model = decode_model(256, 100, 17, 8, "batch")
    assert tensorrt_check(model).ok, tensorrt_check(model).problems
    rng = np.random.default_rng(0)
    regressors = rng.normal(0, 40, (2, 896, 16)).astype(np.float32)
    logits = rng.normal(0, 8, (2, 896)).astype(np.float32)  # some saturate: tied scores 1.0
    frame_box = np.array([[-80, 0, 1920, 1920], [10, -5, 300, 300]], np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    boxes, points, scores = session.run(
        ["boxes", "keypoints", "scores"],
        {"regressors": regressors, "logits": logits, "frame_box": frame_box},
    )
    ref_boxes, ref_points, ref_scores = host.decode_reference(regressors, logits, 256)
    ref_boxes, ref_points = host.to_frame(ref_boxes, ref_points, frame_box)
    gaps = compare_top_k((boxes, points, scores), (ref_boxes, ref_points, ref_scores))
    # float32 on a 1920 px frame: 1e-3 px is ~5e-7 relative.
    assert gaps["scores_vs_numpy"] < 1e-6
    assert gaps["boxes_vs_numpy_px"] < 1e-3 and gaps["keypoints_vs_numpy_px"] < 1e-3
    # The top-K really is the K best: the smallest kept score beats every anchor left out.
    assert np.all(scores[:, -1] >= np.sort(ref_scores, axis=1)[:, -100] - 1e-6)


def test_letterbox_centres_the_frame_and_says_what_the_square_shows():
    frame = np.full((100, 200, 3), 255, np.uint8)
    square, frame_box = letterbox(frame, 128)
    assert square.shape == (128, 128, 3)
    assert square[:32].max() == 0 and square[96:].max() == 0 and square[32:96].min() == 255
    assert np.allclose(frame_box, [0, -50, 200, 200])


def test_tflite_reader_names_a_file_that_is_not_tflite(tmp_path):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(LmkError, match="not a TFLite model"):
        read_tflite(bad)
    with pytest.raises(LmkError, match="cannot read"):
        read_tflite(tmp_path / "missing.tflite")
    damaged = tmp_path / "cut.tflite"
    damaged.write_bytes(b"\x10\x00\x00\x00TFL3" + b"\xff" * 8)
    with pytest.raises(LmkError, match="damaged TFLite"):
        read_tflite(damaged)


def test_lmk_run_model_names_resolve_to_fetched_files_or_say_how_to_fetch(tmp_path, monkeypatch):
    from pathlib import Path

    from lmk.runtime.public_models import resolve_model_arg

    monkeypatch.setenv("LMK_CACHE_DIR", str(tmp_path))
    with pytest.raises(LmkError, match="run `lmk models fetch faceapi68`"):
        resolve_model_arg(Path("faceapi68"))
    with pytest.raises(LmkError, match="pass it as --detector blazeface"):
        resolve_model_arg(Path("blazeface"))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "faceapi68.onnx").write_bytes(b"x")
    assert resolve_model_arg(Path("faceapi68")) == tmp_path / "models" / "faceapi68.onnx"
    assert resolve_model_arg(Path("my.onnx")) == Path("my.onnx")  # paths pass through


def test_auto_detector_takes_blazeface_only_when_it_is_cached(tmp_path, monkeypatch):
    from lmk.runtime.detectors import make_detector

    monkeypatch.setenv("LMK_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("LMK_YUNET_MODEL", raising=False)
    assert make_detector("auto").name == "frame"
    with pytest.raises(LmkError, match="lmk models fetch blazeface"):
        make_detector("blazeface")


def test_a_wrong_blazeface_model_file_is_one_clear_error(tmp_path):
    from lmk.runtime.bundled import bundled_model
    from lmk.runtime.detectors import make_detector

    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"junk")
    with pytest.raises(LmkError, match="not a TFLite model"):
        make_detector("blazeface", junk)
    with pytest.raises(LmkError, match="not an lmk BlazeFace detector file"):
        make_detector("blazeface", bundled_model())  # a landmark model, not a detector
    with pytest.raises(LmkError, match="BlazeFace model not found"):
        make_detector("blazeface", tmp_path / "missing.onnx")


def test_a_detections_roll_is_its_eye_line_and_turns_crops_only_with_rotate():
    """Keypoint 0 (right eye, on the image's left) to keypoint 1: a face tilted 30 degrees
    clockwise in the image has roll +30 degrees; the tracker keeps that angle for the first
    crop only when it turns crops upright."""
    from types import SimpleNamespace

    from lmk.runtime.blazeface_detector import eye_line_roll
    from lmk.runtime.faces import FaceBox
    from lmk.runtime.tracking import Tracker, TrackerConfig

    eyes = np.array([[10.0, 10.0], [10.0 + np.sqrt(3.0), 11.0], [0, 0], [0, 0], [0, 0], [0, 0]])
    assert eye_line_roll(eyes) == pytest.approx(np.radians(30.0))
    assert eye_line_roll(np.zeros((6, 2))) == 0.0

    class Rolled:
        name, describe, finds_faces = "rolled", "rolled", True

        def detect(self, frame):
            return [FaceBox(np.array([1.0, 2.0, 30.0, 40.0]), 0.5, 0.9)]

        def to_landmark_box(self, region):
            return region

    session = SimpleNamespace(
        layout=SimpleNamespace(nme_norm=(36, 45)),
        info=SimpleNamespace(has_confidence=True),
        stages=SimpleNamespace(time=lambda stage: __import__("contextlib").nullcontext()),
    )
    frame = np.zeros((64, 64, 3), np.uint8)
    for rotate, angle in ((True, 0.5), (False, 0.0)):
        tracker = Tracker(session, Rolled(), TrackerConfig(rotate=rotate))
        (found,) = tracker._run_detector(frame)
        assert found.angle == angle and found.score == 0.9
