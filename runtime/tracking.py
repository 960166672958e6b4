"""Detect-then-track, as MediaPipe's face mesh does it.

The detector runs only when needed: no face tracked, a face lost (its landmark score under
``min_score`` or most of it off-frame) on the previous frame, or every ``detect_every``
frames. Otherwise each face's next crop is the box (and roll) of its current landmarks.
A fresh detection is refined: landmarks on the detector's box give a landmark box, and the
face is run again on that, so a detector whose boxes differ from the training boxes (YuNet,
a whole frame) still lands on the crop the model was trained for.

A model without per-point confidence (``lmk.confidence`` false: faceapi68) cannot say it lost
a face, so the detector confirms its faces instead: every ``verify_every`` frames, and on the
frame after a face's landmark box jumped (overlapping its previous box by IoU under
``max_jump``; a face moves far less between frames, while a regressor that lost it draws a
face-shaped guess elsewhere). A tracked face that no detection overlaps is dropped; one that
a detection overlaps restarts from that detection (as a new face would), so drift is undone.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from lmk.core.errors import LmkError
from lmk.runtime.detectors import Detector, FrameDetector
from lmk.runtime.faces import Face, FaceBox, box_iou, fraction_inside, region_from_landmarks
from lmk.runtime.smoothing import OneEuroFilter
from lmk.runtime.validate import bgr_image, face_boxes

if TYPE_CHECKING:
    from lmk.runtime.api import LandmarkSession


@dataclass
class TrackerConfig:
    detect_every: int = 0
    """Re-run the detector every N frames even while tracking (0: only when needed)."""
    min_score: float = 0.7
    """A face whose mean landmark score falls below this is lost."""
    max_faces: int = 8
    refine: int = 2
    """Landmark-box passes after a detection (0: trust the detector's box)."""
    min_inside: float = 0.5
    """A face with fewer of its landmarks inside the frame is lost."""
    rotate: bool = False
    """Turn each crop upright by the eye line's roll. Off by default: models trained with
    rotation augmentation (all lmk models) track better on axis-aligned landmark boxes (on a
    SynthFace clip the bundled PIPNet's mean NME was 4.85 % without, 5.09 % with); a file's
    ``lmk.rotate`` turns it on (faceapi68)."""
    smooth: bool = False
    min_cutoff: float = 1.0
    beta: float = 0.05
    verify_every: int = 10
    """Models without confidence: confirm tracked faces with the detector every N frames."""
    max_jump: float = 0.7
    """Models without confidence: a landmark box overlapping the previous one by IoU under
    this has jumped, and the detector confirms the face on the next frame."""


@dataclass
class _Track:
    track_id: int
    region: FaceBox
    smoother: OneEuroFilter | None = None
    age: int = 0


@dataclass
class Tracker:
    """Feeds frames one by one (``step``); keeps face identities across frames."""

    session: LandmarkSession
    detector: Detector
    config: TrackerConfig = field(default_factory=TrackerConfig)

    def __post_init__(self) -> None:
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._frame_count = 0
        self._lost = False
        self.detections = 0
        pair = self.session.layout.nme_norm
        self._eyes = pair if isinstance(pair, tuple) and self.config.rotate else None
        self._confidence = self.session.info.has_confidence
        self._jumped = False
        scan = isinstance(self.detector, FrameDetector) and self.detector.box is None
        if scan and not self._confidence:
            raise LmkError(
                f"{self.session.info.model} has no per-point confidence, which the frame "
                "detector's window scan ranks by: give --box, or use a face detector "
                "(--detector blazeface or yunet)"
            )

    def reset(self) -> None:
        self._tracks, self._lost, self._jumped = [], False, False

    def _region(self, face: Face) -> FaceBox:
        return region_from_landmarks(face.landmarks, self._eyes)

    def step(self, frame: np.ndarray, dt: float = 1.0 / 30.0) -> list[Face]:
        """Landmarks of every tracked face in ``frame`` (frame pixels). ``frame`` is checked
        and converted as :meth:`LandmarkSession.predict` does (uint8 BGR, gray or BGRA)."""
        frame = bgr_image(frame)
        steps = self._step(frame, dt)
        regions = next(steps)
        while True:
            try:
                regions = steps.send(self.session.predict_regions(frame, regions))
            except StopIteration as done:
                return done.value

    def step_stills(
        self, frames: list[np.ndarray], batch_size: int | None = None, dt: float = 1.0 / 30.0
    ) -> list[list[Face]]:
        """Unrelated still images, each as :meth:`reset` then :meth:`step` would do it (the
        same faces, ids running on as they would), but their crops pooled: each round of
        every image's model calls (candidates, refinements, the final pass) goes through
        :meth:`LandmarkSession.predict_batch` together, up to ``batch_size`` crops an
        inference. Images are independent, so only the order of the calls changes."""
        images = [bgr_image(frame) for frame in frames]
        stills = [Tracker(self.session, self.detector, self.config) for _ in images]
        steps = [still._step(image, dt) for still, image in zip(stills, images, strict=True)]
        found: list[list[Face]] = [[] for _ in images]
        asked: dict[int, list[FaceBox]] = {}
        for i, still_step in enumerate(steps):
            asked[i] = next(still_step)
        while asked:
            order = list(asked)
            answers = self.session.predict_batch([(images[i], asked[i]) for i in order], batch_size)
            asked = {}
            for i, faces in zip(order, answers, strict=True):
                try:
                    asked[i] = steps[i].send(faces)
                except StopIteration as done:
                    found[i] = done.value
        for still, faces in zip(stills, found, strict=True):
            self._adopt(still, faces)
        return found

    def _adopt(self, still: Tracker, faces: list[Face]) -> None:
        """Take over the state of ``still``, a fresh tracker that ran one image and found
        ``faces``, as if this tracker had been reset and run on it: ids follow on from ours."""
        for face in faces:
            face.track_id += self._next_id
        for track in still._tracks:
            track.track_id += self._next_id
        self._tracks, self._lost, self._jumped = still._tracks, still._lost, still._jumped
        self._next_id += still._next_id
        self._frame_count += 1
        self.detections += still.detections

    def _step(
        self, frame: np.ndarray, dt: float
    ) -> Generator[list[FaceBox], list[Face], list[Face]]:
        """:meth:`step` as a coroutine: it yields the regions of ``frame`` it needs landmarks
        for and is sent their faces, so a caller can pool the model calls of many frames."""
        cfg = self.config
        height, width = frame.shape[:2]
        due = cfg.detect_every > 0 and self._frame_count % cfg.detect_every == 0
        if not self._confidence:
            verify = cfg.verify_every > 0 and self._frame_count % cfg.verify_every == 0
            due = due or verify or self._jumped
        self._frame_count += 1
        fresh: list[FaceBox] = []
        if not self._tracks or self._lost or due:
            found = self._run_detector(frame)
            if not self._confidence:  # only the detector can say a face is gone
                yield from self._reseed(found)
            fresh = yield from self._new_faces(found)
        regions = [t.region for t in self._tracks] + fresh
        faces = yield regions
        for region in fresh:
            self._tracks.append(_Track(self._next_id, region))
            self._next_id += 1
        kept: list[tuple[_Track, Face]] = []
        self._lost = self._jumped = False
        for track, face in zip(self._tracks, faces, strict=True):
            if (
                face.score < cfg.min_score
                or fraction_inside(face.landmarks, width, height) < cfg.min_inside
            ):
                self._lost = True
                continue
            region = self._region(face)  # where this face is cropped next frame
            if (
                not self._confidence
                and track.age
                and box_iou(region.box, track.region.box) < cfg.max_jump
            ):
                self._jumped = True
            track.region = region
            kept.append((track, face))
        kept = self._deduplicate(kept)
        self._tracks = []
        out = []
        for track, face in kept:
            track.age += 1
            face.track_id = track.track_id
            if cfg.smooth:
                track.smoother = track.smoother or OneEuroFilter(cfg.min_cutoff, cfg.beta)
                scale = float(np.sqrt(track.region.box[2] * track.region.box[3])) / 100.0
                face.landmarks = track.smoother(face.landmarks, dt, scale)
            self._tracks.append(track)
            out.append(face)
        return out

    def _reseed(self, found: list[FaceBox]) -> Generator[list[FaceBox], list[Face], None]:
        """No confidence: keep the tracks a detection overlaps (IoU >= 0.3) and restart each
        from its detection, refined as a new one is, so a drifted track is pulled back; drop
        the others."""
        kept, seeds = [], []
        for track in self._tracks:
            overlaps = [box_iou(track.region.box, f.box) for f in found]
            if overlaps and max(overlaps) >= 0.3:
                kept.append(track)
                seeds.append(found[int(np.argmax(overlaps))])
        self._tracks = kept
        if not kept:
            return
        faces = yield seeds
        for _ in range(self.config.refine):
            faces = yield [self._region(f) for f in faces]
        for track, face in zip(kept, faces, strict=True):
            track.region = self._region(face)

    def _run_detector(self, frame: np.ndarray) -> list[FaceBox]:
        with self.session.stages.time("detect"):
            found = face_boxes(self.detector.detect(frame), "detector box")
        # Each detector says how its box becomes the box a landmark model crops.
        found = [self.detector.to_landmark_box(r) for r in found]
        if not self.config.rotate:  # a detector's roll (BlazeFace's eye line) turns crops
            found = [FaceBox(r.box, 0.0, r.score) for r in found]  # only with --rotate
        self.detections += 1
        return found

    def _new_faces(
        self, found: list[FaceBox]
    ) -> Generator[list[FaceBox], list[Face], list[FaceBox]]:
        """New faces: detector boxes that overlap no tracked face, ranked by the landmark
        model's score in one batch, the best refined on their landmark boxes, then kept if
        still confident and not a duplicate."""
        cfg = self.config
        room = cfg.max_faces - len(self._tracks)
        candidates = [
            r for r in found if all(box_iou(r.box, t.region.box) < 0.3 for t in self._tracks)
        ]
        if room <= 0 or not candidates:
            return []
        faces = yield candidates
        best = sorted(faces, key=lambda f: -f.score)[: max(2 * room, 4)]
        for _ in range(cfg.refine):
            best = yield [self._region(f) for f in best]
        fresh: list[FaceBox] = []
        for face in sorted(best, key=lambda f: -f.score):
            region = self._region(face)
            # A face detector's box is a face even where a landmark model trained elsewhere
            # scores it low (SynthFace models on photos); the frame detector's windows are not.
            if face.score < cfg.min_score and not self.detector.finds_faces:
                continue
            if any(box_iou(region.box, r.box) > 0.3 for r in fresh):
                continue
            if any(box_iou(region.box, t.region.box) > 0.3 for t in self._tracks):
                continue
            fresh.append(region)
        return fresh[:room]

    @staticmethod
    def _deduplicate(pairs: list[tuple[_Track, Face]]) -> list[tuple[_Track, Face]]:
        """Two tracks that converged on one face: keep the older (then the surer) one."""
        order = sorted(pairs, key=lambda p: (-p[0].age, -p[1].score))
        kept: list[tuple[_Track, Face]] = []
        for track, face in order:
            if all(box_iou(track.region.box, t.region.box) < 0.5 for t, _ in kept):
                kept.append((track, face))
        return sorted(kept, key=lambda p: p[0].track_id)
