"""Face detectors behind one small interface: ``detect(frame) -> list[FaceBox]``.

``frame`` treats the whole frame (or one fixed ``--box``) as the face, for pre-cropped video
and for tests; ``yunet`` is OpenCV's ``FaceDetectorYN``, whose model file users download once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from lmk.errors import LmkError
from lmk.runtime.faces import FaceBox

YUNET_ENV = "LMK_YUNET_MODEL"
YUNET_URL = (
    "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
    "face_detection_yunet_2023mar.onnx"
)
DETECTORS = ("auto", "frame", "yunet")


class Detector(Protocol):
    name: str

    def detect(self, frame: np.ndarray) -> list[FaceBox]: ...


class FrameDetector:
    """No detector model: a fixed ``box`` is the face (pre-cropped video), or, without one,
    candidate windows over the frame at four scales (the whole frame first) that the tracker
    ranks by the landmark model's own score, so faces are found offline, without YuNet."""

    name = "frame"
    SCALES = (1.0, 0.7, 0.5, 0.35)  # window side / the frame's short side

    def __init__(self, box: tuple[float, float, float, float] | None = None):
        if box is not None and (box[2] <= 0 or box[3] <= 0):
            raise LmkError(f"--box needs a positive width and height, got {list(box)}")
        self.box = box

    def detect(self, frame: np.ndarray) -> list[FaceBox]:
        if self.box is not None:
            return [FaceBox(np.asarray(self.box, dtype=np.float64))]
        h, w = frame.shape[:2]
        windows = [FaceBox(np.array([0.0, 0.0, float(w), float(h)]))]
        for scale in self.SCALES:
            side = scale * min(w, h)
            step = side / 2.0
            xs = np.arange(0.0, max(w - side, 0.0) + 1e-6, step)
            ys = np.arange(0.0, max(h - side, 0.0) + 1e-6, step)
            windows += [FaceBox(np.array([x, y, side, side])) for y in ys for x in xs]
        return windows


class YuNetDetector:
    """OpenCV's YuNet (``cv2.FaceDetectorYN``); its input size follows each frame's size."""

    name = "yunet"

    def __init__(self, model_path: str | Path, score_threshold: float = 0.6, max_faces: int = 50):
        import cv2

        path = Path(model_path)
        if not path.is_file():
            raise LmkError(f"YuNet model not found: {path}; download it from {YUNET_URL}")
        if not hasattr(cv2, "FaceDetectorYN"):
            raise LmkError("this OpenCV build has no FaceDetectorYN; install opencv-python>=4.8")
        try:
            self._net = cv2.FaceDetectorYN.create(
                str(path), "", (320, 320), score_threshold, 0.3, max(1, max_faces) * 10
            )
        except cv2.error as exc:
            raise LmkError(
                f"OpenCV cannot load the YuNet model {path}: {exc.msg.strip()}"
            ) from None
        self._size: tuple[int, int] | None = None

    def detect(self, frame: np.ndarray) -> list[FaceBox]:
        h, w = frame.shape[:2]
        if self._size != (w, h):
            self._net.setInputSize((w, h))
            self._size = (w, h)
        if frame.ndim == 2:
            frame = np.repeat(frame[..., None], 3, axis=2)
        _, found = self._net.detect(np.ascontiguousarray(frame))
        if found is None:
            return []
        return [FaceBox(row[:4].astype(np.float64), 0.0, float(row[-1])) for row in found]


def make_detector(
    name: str,
    model_path: str | Path | None = None,
    box: tuple[float, float, float, float] | None = None,
    score_threshold: float = 0.6,
) -> Detector:
    """``auto``: YuNet when a model file is given (flag or ``$LMK_YUNET_MODEL``), else ``frame``."""
    if name not in DETECTORS:
        raise LmkError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")
    model_path = model_path or os.environ.get(YUNET_ENV) or None
    if box is not None and name == "yunet":
        raise LmkError("--box goes with --detector frame (a fixed face region), not yunet")
    if name == "yunet" or (name == "auto" and model_path and box is None):
        if not model_path:
            raise LmkError(
                f"--detector yunet needs its model file: pass --detector-model PATH or set "
                f"{YUNET_ENV}; download it from {YUNET_URL}"
            )
        return YuNetDetector(model_path, score_threshold)
    return FrameDetector(box)
