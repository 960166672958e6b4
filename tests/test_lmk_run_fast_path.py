"""lmk-run's per-frame fast path gives exactly what the general path gives, and its summary
separates the first frame (start-up, detection) from the frames tracked after it."""

from __future__ import annotations

import numpy as np
import pytest

from lmk.runtime.api import LandmarkSession
from lmk.runtime.cli import format_summary
from lmk.runtime.faces import FaceBox
from lmk.runtime.pipeline import RunSummary


@pytest.fixture(scope="module")
def session() -> LandmarkSession:
    return LandmarkSession(ep="cpu", threads=1)


def test_one_image_prediction_equals_the_pooled_path_bit_for_bit(session):
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    other = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    regions = [
        FaceBox(np.array([40.0, 30.0, 120.0, 130.0])),
        FaceBox(np.array([170.0, 60.0, 90.0, 95.0]), 0.2),
    ]
    alone = session.predict_batch([(frame, regions)])[0]  # one image: the fast path
    # Two images: the pooled path (crops concatenated, results sliced back per image).
    pooled = session.predict_batch(
        [(frame, regions), (other, [FaceBox(np.array([10.0, 10.0, 150.0, 150.0]))])]
    )[0]
    assert len(alone) == len(pooled) == 2
    for a, b in zip(alone, pooled, strict=True):
        assert np.array_equal(a.landmarks, b.landmarks) and a.landmarks.dtype == b.landmarks.dtype
        assert np.array_equal(a.scores, b.scores) and a.scores.dtype == b.scores.dtype
        assert a.region is b.region
    assert session.predict_batch([(frame, [])]) == [[]]


def test_summary_gives_the_first_frame_and_the_rate_after_it(session):
    summary = RunSummary(frames=101, faces=101, detections=1, seconds=0.7, first_seconds=0.3)
    text = format_summary(summary, session, 0, tracked=True)
    assert "144.3 frames/s on EP cpu" in text  # 101 frames in 0.7 s, the whole run
    assert text.endswith("first frame 300 ms (start-up and detection), then 250.0 frames/s")
    assert "first frame" not in format_summary(summary, session, 0, tracked=False)
