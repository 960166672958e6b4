"""Tracking a model without per-point confidence (faceapi68): the detector confirms faces.

A scripted landmark model stands in for the network: it returns the true face when the face
lies in its crop and, like a regressor that lost the face, a face-shaped guess in the middle
of the crop otherwise, always with score 1.0. So only the detector can tell the tracker the
face is gone: these tests pin when it runs and what it drops.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from lmk.core.errors import LmkError
from lmk.core.layouts import get_layout
from lmk.runtime.api import StageTimes
from lmk.runtime.detectors import FrameDetector
from lmk.runtime.faces import Face, FaceBox
from lmk.runtime.tracking import Tracker, TrackerConfig

LAYOUT = get_layout("300w68")
FRAME = np.zeros((480, 640, 3), np.uint8)


def face_at(x: float, y: float, size: float) -> np.ndarray:
    """68 points of the layout's mean face filling the box (x, y, size, size)."""
    unit = LAYOUT.meanface - LAYOUT.meanface.min(0)
    return unit / unit.max() * size + np.array([x, y])


class ScriptedModel:
    """``predict_regions`` with the face at ``truth[frame]`` (None: no face in the frame)."""

    def __init__(self, truth: list[np.ndarray | None], guess: str = "shrink"):
        self.truth, self.frame, self.guess = truth, 0, guess
        self.last: np.ndarray | None = None
        self.info = SimpleNamespace(has_confidence=False, model="faceapi68")
        self.layout = LAYOUT
        self.stages = StageTimes()

    def predict_regions(self, image, regions):
        faces = []
        for region in regions:
            x, y, w, h = region.box
            face = self.truth[self.frame]
            centre = None if face is None else face.mean(0)
            inside = centre is not None and x <= centre[0] <= x + w and y <= centre[1] <= y + h
            if inside:
                points = face
            elif self.guess == "stay" and self.last is not None:
                points = self.last  # a regressor repeating its last answer
            else:
                points = face_at(x + w / 4, y + h / 4, min(w, h) / 2)
            self.last = points
            faces.append(Face(points.copy(), np.ones(68), region))
        return faces


class ScriptedDetector:
    name = "scripted"
    finds_faces = True

    def to_landmark_box(self, region):
        return region

    def __init__(self, model: ScriptedModel):
        self.model, self.runs = model, []

    def detect(self, frame):
        self.runs.append(self.model.frame)
        face = self.model.truth[self.model.frame]
        if face is None:
            return []
        lo, hi = face.min(0), face.max(0)
        return [FaceBox(np.r_[lo, hi - lo])]


def run(truth, guess="shrink", **config):
    model = ScriptedModel(truth, guess)
    detector = ScriptedDetector(model)
    tracker = Tracker(model, detector, TrackerConfig(refine=0, **config))
    found = []
    for index in range(len(truth)):
        model.frame = index
        found.append(tracker.step(FRAME))
    return found, detector.runs


def test_a_vanished_face_is_dropped_at_the_next_scheduled_detection():
    """Face still for 15 frames, then gone: a model repeating its last answer (score 1.0)
    keeps the face until the detector, due every 10 frames, finds nothing at frame 20."""
    still = face_at(200, 150, 120)
    found, runs = run([still] * 15 + [None] * 15, guess="stay", verify_every=10)
    assert [len(f) for f in found] == [1] * 20 + [0] * 10
    assert runs == [0, 10, *range(20, 30)]  # scheduled, then every frame while no face


def test_a_guess_that_jumps_is_dropped_on_the_next_frame():
    """A model that draws a smaller face-shaped guess once the face is gone: its landmark box
    jumps, so the detector runs on the next frame (16), not only at the schedule (20)."""
    still = face_at(200, 150, 120)
    found, runs = run([still] * 15 + [None] * 15, verify_every=10)
    assert [len(f) for f in found] == [1] * 16 + [0] * 14
    assert runs == [0, 10, *range(16, 30)]


def test_a_landmark_box_jump_makes_the_detector_confirm_the_face_next_frame():
    """A face that moves 40 % of its size in one frame (box IoU ~0.4 < max_jump 0.7) is
    checked by the detector on the next frame, and kept because the detector sees it."""
    truth = [face_at(200, 150, 120)] * 5 + [face_at(248, 150, 120)] * 10
    found, runs = run(truth, verify_every=0)
    assert runs == [0, 6]
    assert all(len(f) == 1 for f in found)
    np.testing.assert_allclose(found[-1][0].landmarks, truth[-1])


def test_without_a_jump_or_schedule_the_detector_runs_once():
    found, runs = run([face_at(200, 150, 120)] * 12, verify_every=0)
    assert runs == [0] and all(len(f) == 1 for f in found)


def test_the_frame_scan_needs_confidence_and_says_what_to_use_instead():
    model = ScriptedModel([None])
    with pytest.raises(LmkError, match=r"no per-point confidence.*give --box"):
        Tracker(model, FrameDetector(), TrackerConfig())
    Tracker(model, FrameDetector((1, 2, 30, 40)), TrackerConfig())  # a fixed box is fine
