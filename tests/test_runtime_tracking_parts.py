"""The parts tracking is built from: One Euro smoothing and the detectors' contracts."""

from __future__ import annotations

import numpy as np
import pytest

from lmk.core.errors import LmkError
from lmk.runtime.detectors import YUNET_URL, FrameDetector, make_detector
from lmk.runtime.smoothing import OneEuroFilter


def test_one_euro_damps_jitter_on_a_still_point_and_follows_a_fast_move():
    rng = np.random.default_rng(0)
    still = 100.0 + rng.normal(0.0, 1.0, (200, 3, 2))
    f = OneEuroFilter(min_cutoff=1.0, beta=0.05)
    out = np.array([f(x, 1 / 30) for x in still])
    assert out[50:].std() < 0.4 * still[50:].std()  # jitter cut by more than half
    np.testing.assert_array_equal(out[0], still[0])  # the first sample passes unchanged
    f.reset()
    ramp = np.linspace(0.0, 300.0, 31)[:, None, None] * np.ones((1, 3, 2))  # 300 px in 1 s
    lag = [abs(f(x, 1 / 30) - x).max() for x in ramp][-1]
    slow = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    slow_lag = [abs(slow(x, 1 / 30) - x).max() for x in ramp][-1]
    assert lag < 0.5 * slow_lag  # speed raises the cutoff: much less lag than a fixed low-pass


def test_frame_detector_gives_the_fixed_box_or_windows_over_the_whole_frame():
    frame = np.zeros((240, 320, 3), np.uint8)
    whole, *windows = FrameDetector().detect(frame)
    np.testing.assert_array_equal(whole.box, [0, 0, 320, 240])
    boxes = np.array([w.box for w in windows])
    assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 1] >= 0)
    assert np.all(boxes[:, 0] + boxes[:, 2] <= 320 + 1e-6)
    assert np.all(boxes[:, 1] + boxes[:, 3] <= 240 + 1e-6)
    sides = sorted({round(b, 6) for b in boxes[:, 2]})
    assert sides == sorted(round(s * 240, 6) for s in FrameDetector.SCALES)
    # Half-window steps: every point of the frame lies in a window of the smallest scale.
    small = boxes[np.isclose(boxes[:, 2], min(sides))]
    assert small[:, 0].max() + small[0, 2] >= 320 - small[0, 2] / 2
    (fixed,) = FrameDetector((10, 20, 30, 40)).detect(frame)
    np.testing.assert_array_equal(fixed.box, [10, 20, 30, 40])


def test_yunet_without_its_model_file_says_where_to_get_it(monkeypatch, tmp_path):
    monkeypatch.delenv("LMK_YUNET_MODEL", raising=False)
    with pytest.raises(LmkError, match="--detector-model PATH or set LMK_YUNET_MODEL"):
        make_detector("yunet")
    with pytest.raises(LmkError, match=f"YuNet model not found: .*download it from {YUNET_URL}"):
        make_detector("yunet", tmp_path / "nope.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(
        LmkError, match=r"junk\.onnx is not a YuNet face-detection model \(OpenCV could not load"
    ):
        make_detector("yunet", tmp_path / "junk.onnx")
    assert make_detector("auto").name == "frame"  # no model file known: the frame detector


def test_box_goes_with_the_frame_detector_only():
    with pytest.raises(LmkError, match="--box goes with --detector frame"):
        make_detector("yunet", "x.onnx", box=(0, 0, 10, 10))
