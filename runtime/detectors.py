"""Face detectors behind one small interface: ``detect(frame) -> list[FaceBox]``.

``frame`` treats the whole frame (or one fixed ``--box``) as the face, for pre-cropped video
and for tests; ``yunet`` is OpenCV's ``FaceDetectorYN``, whose model file users download once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Protocol

import numpy as np

from lmk.core.errors import LmkError
from lmk.runtime.faces import FaceBox
from lmk.runtime.validate import bgr_image, box_values, overlaps_frame

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
    ranks by the landmark model's own score, so faces are found offline, without YuNet.

    A fixed box lying entirely outside a frame finds no face there: a warning line on stderr
    (once per frame size), not an error, since other frames of a set may be larger."""

    name = "frame"
    SCALES = (1.0, 0.7, 0.5, 0.35)  # window side / the frame's short side

    def __init__(self, box: tuple[float, float, float, float] | None = None):
        self.box = None if box is None else tuple(float(v) for v in box_values(box, "--box"))
        self._warned: set[tuple[int, int]] = set()

    def detect(self, frame: np.ndarray) -> list[FaceBox]:
        h, w = frame.shape[:2]
        if self.box is not None:
            if not overlaps_frame(np.asarray(self.box), w, h):
                if (w, h) not in self._warned:
                    self._warned.add((w, h))
                    shown = ",".join(f"{v:g}" for v in self.box)
                    print(
                        f"warning: --box {shown} lies entirely outside the {w}x{h} frame",
                        file=sys.stderr,
                    )
                return []
            return [FaceBox(np.asarray(self.box, dtype=np.float64))]
        windows = [FaceBox(np.array([0.0, 0.0, float(w), float(h)]))]
        for scale in self.SCALES:
            side = scale * min(w, h)
            step = side / 2.0
            xs = np.arange(0.0, max(w - side, 0.0) + 1e-6, step)
            ys = np.arange(0.0, max(h - side, 0.0) + 1e-6, step)
            windows += [FaceBox(np.array([x, y, side, side])) for y in ys for x in xs]
        return windows


def _cv_reason(exc: Exception) -> str:
    """The reason of a ``cv2.error`` without OpenCV's source path and line."""
    reason = str(getattr(exc, "err", "") or exc).strip()
    return reason.splitlines()[0] if reason else type(exc).__name__


class YuNetDetector:
    """OpenCV's YuNet (``cv2.FaceDetectorYN``); its input size follows each frame's size.

    OpenCV loads any ONNX file it can parse, so a wrong file (an lmk landmark model, say)
    may fail only when run: the constructor runs it once on a blank frame, and a failure
    there or in :meth:`detect` is an :class:`LmkError`, not a ``cv2.error``."""

    name = "yunet"

    def __init__(self, model_path: str | Path, score_threshold: float = 0.6, max_faces: int = 50):
        import cv2

        path = Path(model_path)
        if not path.is_file():
            raise LmkError(f"YuNet model not found: {path}; download it from {YUNET_URL}")
        if not hasattr(cv2, "FaceDetectorYN"):
            raise LmkError("this OpenCV build has no FaceDetectorYN; install opencv-python>=4.8")
        self.path = path
        self._worked = False
        try:
            self._net = cv2.FaceDetectorYN.create(
                str(path), "", (320, 320), score_threshold, 0.3, max(1, max_faces) * 10
            )
        except cv2.error as exc:
            raise self._not_yunet("load", exc) from None
        self._size: tuple[int, int] | None = None
        self.detect(np.zeros((320, 320, 3), np.uint8))

    def _not_yunet(self, what: str, exc: Exception) -> LmkError:
        detail = _cv_reason(exc)
        return LmkError(
            f"{self.path} is not a YuNet face-detection model (OpenCV could not {what} it: "
            f"{detail}); download YuNet from {YUNET_URL}"
        )

    def detect(self, frame: np.ndarray) -> list[FaceBox]:
        import cv2

        frame = bgr_image(frame)
        h, w = frame.shape[:2]
        try:
            if self._size != (w, h):
                self._net.setInputSize((w, h))
                self._size = (w, h)
            _, found = self._net.detect(frame)
        except cv2.error as exc:
            if not self._worked:
                raise self._not_yunet("run", exc) from None
            raise LmkError(f"YuNet failed on a {w}x{h} frame: {_cv_reason(exc)}") from None
        self._worked = True
        if found is None:
            return []
        if found.ndim != 2 or found.shape[1] < 15:
            # YuNet rows: box (4), five landmarks (10), score.
            raise self._not_yunet("read the output of", ValueError(f"shape {found.shape}"))
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
