"""The Python API: ``LandmarkSession(path, ep=...)``, ``predict(frame, boxes)``, ``track(video)``.

from lmk.runtime import LandmarkSession
session = LandmarkSession("model.onnx", ep="cuda")      # or LandmarkSession() for the bundled model
faces = session.predict(frame, [(x, y, w, h)])           # one batched inference for all boxes
for frame, faces in session.track("clip.mp4"):           # detect once, then follow
    ...
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from lmk.core.geometry import CropPolicy, crop_to_frame
from lmk.runtime.bundled import bundled_model
from lmk.runtime.detectors import Detector, make_detector
from lmk.runtime.faces import Face, FaceBox, crop_faces
from lmk.runtime.metadata import layout_of
from lmk.runtime.session import InferenceModel, RuntimeOptions
from lmk.runtime.sources import Frame, open_source
from lmk.runtime.tracking import Tracker, TrackerConfig
from lmk.runtime.validate import InputError, bgr_image, face_boxes, overlaps_frame


class StageTimes:
    """Seconds spent per named stage, and how often, for the per-stage summary."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] += seconds
        self.calls[stage] += 1


def _chunks(counts: list[int], limit: int | None) -> Iterator[list[int]]:
    """Consecutive requests (their crop ``counts``) grouped so a group holds at most
    ``limit`` crops, except one request alone, which is never split (None: one group)."""
    group: list[int] = []
    total = 0
    for i, count in enumerate(counts):
        if group and limit is not None and total + count > limit:
            yield group
            group, total = [], 0
        group.append(i)
        total += count
    if group:
        yield group


BoxLike = FaceBox | tuple[float, float, float, float] | list[float] | np.ndarray


class LandmarkSession:
    """An exported lmk model ready to run on frames. ``model`` defaults to the bundled one;
    ``options`` are :class:`RuntimeOptions` fields (``threads``, ``spin``, ``trt_fp16``,
    ``ov_precision``, ...)."""

    def __init__(self, model: str | Path | None = None, ep: str = "auto", **options: Any):
        self.model = InferenceModel(model or bundled_model(), RuntimeOptions(ep=ep, **options))
        self.info = self.model.info
        self.layout = layout_of(self.info)
        self.crop = CropPolicy.from_dict(self.info.crop)
        self.stages = StageTimes()

    @property
    def ep(self) -> str:
        return self.model.ep

    def predict(self, frame: np.ndarray, boxes: BoxLike | Iterable[BoxLike]) -> list[Face]:
        """Landmarks for each face box ``(x, y, w, h)`` of ``frame``, in frame pixels, all faces
        in one batched inference.

        ``frame``: uint8 BGR HxWx3, or gray HxW / HxWx1, or BGRA HxWx4 (converted to BGR).
        ``boxes``: one box or a list of them (tuples, [N, 4] array, :class:`FaceBox`).
        Anything else raises ``ValueError`` saying what is expected: float or uint16 images,
        channels-first arrays, empty images, boxes with NaN/inf or a width or height <= 0,
        and boxes lying entirely outside the frame (there is no face to find there; a
        tracker's fixed ``--box`` warns instead, see :class:`FrameDetector`).
        """
        image = bgr_image(frame)
        regions = face_boxes(boxes)
        height, width = image.shape[:2]
        for i, region in enumerate(regions):
            if not overlaps_frame(region.box, width, height):
                x, y, w, h = (f"{float(v):g}" for v in region.box)
                raise InputError(
                    f"box {i} ({x},{y},{w},{h}) lies entirely outside the {width}x{height} frame"
                )
        return self.predict_regions(image, regions)

    def predict_regions(self, image: np.ndarray, regions: list[FaceBox]) -> list[Face]:
        """:meth:`predict` without the checks, for callers whose image and regions already
        passed them (the tracker checks a frame once, then crops it several times)."""
        return self.predict_batch([(image, regions)])[0]

    def predict_batch(
        self, requests: list[tuple[np.ndarray, list[FaceBox]]], batch_size: int | None = None
    ) -> list[list[Face]]:
        """:meth:`predict_regions` for several images at once: their crops go through the
        model together, up to ``batch_size`` crops an inference (None: all in one), so many
        one-face images cost few calls. An image's crops always share one inference, so
        ``batch_size`` 1 is exactly one call per image, as :meth:`predict_regions` makes."""
        size = self.info.input_size
        if len(requests) == 1:
            return [self._predict_one(*requests[0])]
        with self.stages.time("preprocess"):
            cropped = [crop_faces(image, regions, self.crop, size) for image, regions in requests]
        landmarks = np.zeros((0, self.info.num_landmarks, 2), np.float32)
        scores = np.zeros((0, self.info.num_landmarks), np.float32)
        for chunk in _chunks([len(regions) for _, regions in requests], batch_size):
            crops = [cropped[i][0] for i in chunk]
            if sum(len(c) for c in crops):
                with self.stages.time("infer"):
                    points, confidence = self.model.infer(np.concatenate(crops))
                landmarks = np.concatenate([landmarks, points])
                scores = np.concatenate([scores, confidence])
        faces: list[list[Face]] = []
        start = 0
        with self.stages.time("preprocess"):
            for (_, regions), (_, matrices) in zip(requests, cropped, strict=True):
                end = start + len(regions)
                points = crop_to_frame(landmarks[start:end], matrices, size)
                faces.append(
                    [
                        Face(points[i], scores[start + i].astype(np.float64), region)
                        for i, region in enumerate(regions)
                    ]
                )
                start = end
        return faces

    def _predict_one(self, image: np.ndarray, regions: list[FaceBox]) -> list[Face]:
        """:meth:`predict_batch` for one image, the call tracking makes on every video frame:
        the same crops, one inference and the same inverse warp, without the pooling's
        concatenations and slicing (a test pins it to the pooled path)."""
        size = self.info.input_size
        clock = time.perf_counter
        start = clock()
        crops, matrices = crop_faces(image, regions, self.crop, size)
        cropped = clock()
        self.stages.add("preprocess", cropped - start)
        if not regions:
            return []
        landmarks, scores = self.model.infer(crops)
        inferred = clock()
        self.stages.add("infer", inferred - cropped)
        points = crop_to_frame(landmarks, matrices, size)
        faces = [
            Face(points[i], scores[i].astype(np.float64), region)
            for i, region in enumerate(regions)
        ]
        self.stages.add("preprocess", clock() - inferred)
        return faces

    @property
    def default_min_score(self) -> float:
        """The model's ``lmk.min_score`` (set at export from its validation scores), else
        :class:`TrackerConfig`'s default."""
        value = self.info.min_score  # range-checked by the metadata reader
        return value if value is not None else TrackerConfig.min_score

    def tracker(
        self,
        detector: str | Detector = "frame",
        detector_model: str | Path | None = None,
        box: tuple[float, float, float, float] | None = None,
        **config: Any,
    ) -> Tracker:
        """A :class:`Tracker` over this session; ``config`` are :class:`TrackerConfig` fields.
        Without ``min_score`` (or with None) the model's own ``lmk.min_score`` is used."""
        if config.get("min_score") is None:
            config["min_score"] = self.default_min_score
        if isinstance(detector, str):
            detector = make_detector(detector, detector_model, box)
        return Tracker(self, detector, TrackerConfig(**config))

    def track(
        self, source: str | Path | int, detector: str | Detector = "frame", **kwargs: Any
    ) -> Iterator[tuple[Frame, list[Face]]]:
        """Frames of a video, camera or image set with the faces found in each."""
        tracker = self.tracker(detector, **kwargs)
        with open_source(source) as frames:
            dt = 1.0 / (frames.fps or 30.0)
            for frame in frames:
                if frames.kind == "images":  # unrelated still images: no face carried over
                    yield frame, tracker.step_stills([frame.image], dt=dt)[0]
                else:
                    yield frame, tracker.step(frame.image, dt)
