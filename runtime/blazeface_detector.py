"""BlazeFace in the runtime: from an lmk detector file (ONNX Runtime) or, on an install
without the export extra, straight from MediaPipe's ``.tflite`` through OpenCV DNN.

Both letterbox the frame the same way (:func:`letterbox`: a centred square, padded black,
resized with area averaging) and finish with MediaPipe's weighted NMS on the host; they
differ only in who runs the network and the anchor decode.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from lmk.core.errors import LmkError
from lmk.runtime import blazeface as host
from lmk.runtime.faces import FaceBox
from lmk.runtime.tflite_file import read_tflite
from lmk.runtime.validate import bgr_image


def letterbox(frame: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``frame`` fitted into a ``size`` square (aspect kept, centred, black padding) and the
    ``(x0, y0, w, h)`` in frame pixels that the square shows."""
    height, width = frame.shape[:2]
    scale = size / max(width, height)
    new_w = max(1, min(size, round(width * scale)))
    new_h = max(1, min(size, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(frame, (new_w, new_h), interpolation=interpolation)
    left, top = (size - new_w) // 2, (size - new_h) // 2
    square = cv2.copyMakeBorder(
        resized, top, size - new_h - top, left, size - new_w - left, cv2.BORDER_CONSTANT, value=0
    )
    sx, sy = new_w / width, new_h / height
    frame_box = np.array([-left / sx, -top / sy, size / sx, size / sy], np.float32)
    return square, frame_box


def eye_line_roll(keypoints: np.ndarray) -> float:
    """A detection's roll (radians, image axes) from its keypoints: the line from the right
    eye (keypoint 0, on the image's left) to the left eye (keypoint 1), as MediaPipe turns
    its face-mesh crop. The box stays axis-aligned; a tracker that turns crops upright
    (``--rotate``) uses this angle for a new face's first crop."""
    dx, dy = (float(v) for v in np.asarray(keypoints[1], np.float64) - keypoints[0])
    return float(np.arctan2(dy, dx)) if np.hypot(dx, dy) > 1e-6 else 0.0


class _BlazeFaceBase:
    name = "blazeface"
    finds_faces = True
    input_size: int
    min_score: float
    iou: float = host.NMS_IOU
    landmark_box: dict

    def _run(self, square: np.ndarray, frame_box: np.ndarray):
        raise NotImplementedError

    def detect(self, frame: np.ndarray) -> list[FaceBox]:
        frame = bgr_image(frame)
        square, frame_box = letterbox(frame, self.input_size)
        boxes, keypoints, scores = self._run(square, frame_box)
        boxes, keypoints, scores = host.weighted_nms(
            boxes, keypoints, scores, self.min_score, self.iou
        )
        self.last_keypoints = keypoints
        return [
            FaceBox(box.astype(np.float64), eye_line_roll(points), float(s))
            for box, points, s in zip(boxes, keypoints, scores, strict=True)
        ]

    def to_landmark_box(self, region: FaceBox) -> FaceBox:
        """The box a landmark model should crop for a BlazeFace box: BlazeFace's box runs from
        the brows to the chin; ``lmk.landmark_box`` grows it about its centre and shifts it."""
        x, y, w, h = region.box
        grow, shift = float(self.landmark_box["grow"]), float(self.landmark_box["shift_y"])
        cx, cy = x + w / 2.0, y + h / 2.0 + shift * h
        w, h = w * grow, h * grow
        return FaceBox(np.array([cx - w / 2.0, cy - h / 2.0, w, h]), region.angle, region.score)


class BlazeFaceOnnxDetector(_BlazeFaceBase):
    """An lmk BlazeFace detector file (``lmk-export --model blazeface``) on ONNX Runtime CPU."""

    def __init__(self, path: str | Path, min_score: float | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own exception types for unreadable files
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LmkError(f"cannot load detector {self.path}: {reason}") from None
        meta = {
            k: json.loads(v)
            for k, v in self._session.get_modelmeta().custom_metadata_map.items()
            if k.startswith("lmk.")
        }
        if meta.get("lmk.kind") != "detector" or meta.get("lmk.model") != "blazeface":
            raise LmkError(
                f"{self.path} is not an lmk BlazeFace detector file (lmk.kind={meta.get('lmk.kind')!r}); "
                "make one with `lmk models fetch blazeface`"
            )
        self.input_size = int(meta["lmk.input_size"])
        self.min_score = float(meta["lmk.min_score"] if min_score is None else min_score)
        self.iou = float(meta.get("lmk.nms", {}).get("iou", host.NMS_IOU))
        self.landmark_box = dict(meta.get("lmk.landmark_box", host.LANDMARK_BOX))
        self.describe = f"blazeface ({self.path.name}, lmk detector file on ONNX Runtime)"

    def _run(self, square: np.ndarray, frame_box: np.ndarray):
        boxes, keypoints, scores = self._session.run(
            ["boxes", "keypoints", "scores"], {"image": square[None], "frame_box": frame_box[None]}
        )
        return boxes[0], keypoints[0], scores[0]


class BlazeFaceTFLiteDetector(_BlazeFaceBase):
    """MediaPipe's ``.tflite`` run by OpenCV DNN, decoded by :mod:`lmk.runtime.blazeface`:
    the fallback of an install without the export extra (no lmk detector file)."""

    def __init__(self, path: str | Path, min_score: float | None = None):
        self.path = Path(path)
        if not hasattr(cv2.dnn, "readNetFromTFLite"):
            raise LmkError(
                f"OpenCV {cv2.__version__} cannot read {self.path.name}; install opencv>=5"
            )
        self.input_size = self._input_side()  # lmk's own read first: clearer refusals
        engine = getattr(cv2.dnn, "ENGINE_CLASSIC", None)
        try:
            net = (
                cv2.dnn.readNetFromTFLite(str(self.path), engine=engine)
                if engine is not None
                else cv2.dnn.readNetFromTFLite(str(self.path))
            )
        except cv2.error as exc:
            raise LmkError(f"OpenCV could not read {self.path} as a TFLite model") from exc
        self._net = net
        self._names = net.getUnconnectedOutLayersNames()
        self.min_score = host.MEDIAPIPE_MIN_SCORE if min_score is None else float(min_score)
        self.landmark_box = dict(host.LANDMARK_BOX)
        self.describe = f"blazeface ({self.path.name} through OpenCV DNN; no lmk detector file)"

    def _input_side(self) -> int:
        """The square input side, from the file; a file lmk has no anchors for is refused."""
        graph = read_tflite(self.path)
        if any(op.op == "DENSIFY" for op in graph.operators):
            raise LmkError(f"{self.path.name} is a sparse model (DENSIFY); use face_detection_back")
        shape = graph.tensors[graph.inputs[0]].shape if graph.inputs else ()
        side = shape[1] if len(shape) == 4 else 0
        if side not in host.INPUT_SIDES:
            raise LmkError(f"{self.path.name} is not a BlazeFace short-range or back model")
        return side

    def _run(self, square: np.ndarray, frame_box: np.ndarray):
        rgb = square[..., ::-1].astype(np.float32) / 127.5 - 1.0
        self._net.setInput(np.ascontiguousarray(rgb.transpose(2, 0, 1))[None])
        outputs = self._net.forward(self._names)
        regressors = next(o for o in outputs if o.shape[-1] == 16).reshape(1, -1, 16)
        logits = next(o for o in outputs if o.shape[-1] != 16).reshape(1, -1)
        boxes, keypoints, scores = host.decode_reference(regressors, logits, self.input_size)
        boxes, keypoints = host.to_frame(boxes, keypoints, frame_box[None])
        return boxes[0], keypoints[0], scores[0]
