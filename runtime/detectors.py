"""Face detectors behind one small interface: ``detect(frame) -> list[FaceBox]`` and
``to_landmark_box(box)``, how the detector's box becomes the box a landmark model crops.

``blazeface`` is MediaPipe's BlazeFace (``lmk models fetch blazeface``; the real-photo
detector); ``yunet`` is OpenCV's ``FaceDetectorYN``, whose model file users download once;
``frame`` is the SynthFace/demo detector: the whole frame (or one fixed ``--box``) and
windows over it, ranked by the landmark model's own score, for pre-cropped video and tests.
``auto`` takes the first available of blazeface, yunet, frame.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Protocol

import numpy as np

from lmk.core.errors import LmkError
from lmk.runtime.faces import FaceBox
from lmk.runtime.onnx_file import onnx_metadata
from lmk.runtime.validate import bgr_image, box_values, overlaps_frame

YUNET_ENV = "LMK_YUNET_MODEL"
YUNET_URL = (
    "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
    "face_detection_yunet_2023mar.onnx"
)
DETECTORS = ("auto", "blazeface", "yunet", "frame")


class Detector(Protocol):
    name: str
    describe: str
    finds_faces: bool
    """True for a real face detector; False where candidates need the landmark score to
    tell faces from background (the frame detector's windows)."""

    def detect(self, frame: np.ndarray) -> list[FaceBox]: ...

    def to_landmark_box(self, region: FaceBox) -> FaceBox: ...


def _same_box(region: FaceBox) -> FaceBox:
    return region


class FrameDetector:
    """No detector model: a fixed ``box`` is the face (pre-cropped video), or, without one,
    candidate windows over the frame at four scales (the whole frame first) that the tracker
    ranks by the landmark model's own score, so faces are found offline, without YuNet.

    A fixed box lying entirely outside a frame finds no face there: a warning line on stderr
    (once per frame size), not an error, since other frames of a set may be larger."""

    name = "frame"
    finds_faces = False
    describe = "frame (SynthFace/demo detector: whole frame, windows or --box)"
    SCALES = (1.0, 0.7, 0.5, 0.35)  # window side / the frame's short side

    def __init__(self, box: tuple[float, float, float, float] | None = None):
        self.box = None if box is None else tuple(float(v) for v in box_values(box, "--box"))
        self._warned: set[tuple[int, int]] = set()

    def to_landmark_box(self, region: FaceBox) -> FaceBox:
        """A window or ``--box`` is already the region to crop."""
        return _same_box(region)

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
    finds_faces = True

    def __init__(self, model_path: str | Path, score_threshold: float = 0.6, max_faces: int = 50):
        import cv2

        path = Path(model_path)
        if not path.is_file():
            raise LmkError(f"YuNet model not found: {path}; download it from {YUNET_URL}")
        if not hasattr(cv2, "FaceDetectorYN"):
            raise LmkError("this OpenCV build has no FaceDetectorYN; install opencv-python>=4.8")
        self.path = path
        self.describe = f"yunet ({path.name})"
        self._worked = False
        try:
            self._net = cv2.FaceDetectorYN.create(
                str(path), "", (320, 320), score_threshold, 0.3, max(1, max_faces) * 10
            )
        except cv2.error as exc:
            raise self._not_yunet("load", exc) from None
        self._size: tuple[int, int] | None = None
        self.detect(np.zeros((320, 320, 3), np.uint8))

    def to_landmark_box(self, region: FaceBox) -> FaceBox:
        """YuNet's box is a tight face box (forehead to chin): cropped as it is."""
        return _same_box(region)

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


def _is_blazeface_file(path: Path) -> bool:
    """A ``.tflite`` or an ONNX file whose metadata says it is an lmk detector."""
    if path.suffix.lower() == ".tflite":
        return True
    try:
        kind = onnx_metadata(path).get("lmk.kind", "")
    except (OSError, ValueError):  # not readable as ONNX: let the YuNet path report it
        return False
    return kind == '"detector"'


def open_blazeface(
    model_path: str | Path | None = None, min_score: float | None = None
) -> Detector:
    """BlazeFace from ``model_path`` (an lmk detector ``.onnx`` or MediaPipe's ``.tflite``) or
    from the cache: the lmk detector file when present, else the ``.tflite`` through OpenCV."""
    from lmk.runtime.blazeface_detector import BlazeFaceOnnxDetector, BlazeFaceTFLiteDetector
    from lmk.runtime.public_models import find_detector

    path = Path(model_path) if model_path else find_detector("blazeface")
    if path is None:
        raise LmkError("no BlazeFace model in the cache; run `lmk models fetch blazeface`")
    if not path.is_file():
        raise LmkError(f"BlazeFace model not found: {path}")
    if path.suffix.lower() == ".tflite":
        return BlazeFaceTFLiteDetector(path, min_score)
    return BlazeFaceOnnxDetector(path, min_score)


def make_detector(
    name: str,
    model_path: str | Path | None = None,
    box: tuple[float, float, float, float] | None = None,
    score_threshold: float = 0.6,
) -> Detector:
    """``auto``: with a model file, BlazeFace or YuNet by what the file is; without one,
    BlazeFace when cached, else YuNet when ``$LMK_YUNET_MODEL`` names it, else ``frame``.
    A ``box`` always means the ``frame`` detector."""
    if name not in DETECTORS:
        raise LmkError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")
    if box is not None and name not in ("auto", "frame"):
        raise LmkError(f"--box goes with --detector frame (a fixed face region), not {name}")
    if box is not None or name == "frame":
        return FrameDetector(box)
    if name == "blazeface":
        return open_blazeface(model_path)
    if name == "auto":
        from lmk.runtime.public_models import find_detector

        if model_path and _is_blazeface_file(Path(model_path)):
            return open_blazeface(model_path)
        if not model_path and find_detector("blazeface") is not None:
            return open_blazeface()
    model_path = model_path or os.environ.get(YUNET_ENV) or None
    if name == "yunet" or model_path:
        if not model_path:
            raise LmkError(
                f"--detector yunet needs its model file: pass --detector-model PATH or set "
                f"{YUNET_ENV}; download it from {YUNET_URL}"
            )
        return YuNetDetector(model_path, score_threshold)
    return FrameDetector(box)
