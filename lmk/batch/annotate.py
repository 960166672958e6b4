"""One unit of lmk-batch work, without Ray: annotate its files with lmk-run's own engine
(:func:`lmk.runtime.pipeline.run_pipeline`, the same session, crop policy, detectors and
tracker) and write them as one shard.

Images go through the pipeline as one image set (each image on its own: ``still`` frames,
detected afresh), up to ``batch_size`` of them together with their crops pooled into one
inference (:meth:`lmk.runtime.tracking.Tracker.step_stills`, which lmk-run runs too); a video is tracked from its first frame to its last, as lmk-run does. A
file that cannot be read becomes a failure row with the reason; it never stops the unit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmk.batch.inputs import InputFile, Unit
from lmk.batch.shard import ShardRows, write_shard
from lmk.core.errors import LmkError
from lmk.runtime.api import LandmarkSession
from lmk.runtime.detectors import make_detector
from lmk.runtime.pipeline import RunSummary, Sinks, run_pipeline
from lmk.runtime.session import file_digest
from lmk.runtime.sources import Frame, Source, open_source


@dataclass
class AnnotatorConfig:
    """Everything a worker needs to build its session and trackers (sent to every actor)."""

    model: str
    ep: str = "cpu"
    threads: int | None = 1
    trt_fp16: bool = False
    trt_cache_dir: str | None = None
    detector: str = "auto"
    detector_model: str | None = None
    box: tuple[float, float, float, float] | None = None
    batch_size: int = 32
    """Still images: crops per inference, pooled across images (video frames: one frame)."""
    tracker: dict[str, Any] = field(default_factory=dict)
    """:class:`lmk.runtime.tracking.TrackerConfig` fields (detect_every, min_score, ...)."""

    def session(self) -> LandmarkSession:
        options: dict[str, Any] = {"threads": self.threads}
        if self.trt_fp16:
            options["trt_fp16"] = True
        if self.trt_cache_dir:
            options["trt_cache_dir"] = Path(self.trt_cache_dir)
        return LandmarkSession(self.model, ep=self.ep, **options)


@dataclass
class UnitResult:
    unit_id: str
    files: int
    faces: int
    failed: int
    frames: int
    seconds: float
    """Wall time the worker spent on the unit (annotating and writing its shard)."""
    stages: dict[str, float]


def _failure_reason(item: InputFile) -> str:
    if item.size < 0:
        return "file not found"
    if item.size == 0:
        return "empty file (0 bytes)"
    return "not an image OpenCV can decode"


class UnitAnnotator:
    """One ONNX Runtime session, created once, and the settings to track with it; call
    :meth:`run` for each unit."""

    def __init__(self, config: AnnotatorConfig):
        self.config = config
        self.session = config.session()
        self.digest = file_digest(Path(config.model))
        self.layout = self.session.info.layout
        make_detector(config.detector, config.detector_model, config.box)  # fail early

    def _tracker(self):
        return self.session.tracker(
            self.config.detector, self.config.detector_model, self.config.box, **self.config.tracker
        )

    def annotate(self, unit: Unit) -> tuple[ShardRows, list[dict], dict[str, float]]:
        """The unit's rows, one record per input (for the shard's footer) and stage seconds."""
        rows = ShardRows(self.session.info.num_landmarks, self.digest, self.layout)
        records: list[dict] = []
        stages: dict[str, float] = {}
        images = [item for item in unit.inputs if item.kind == "image"]
        if images:
            self._images(images, rows, records, stages)
        for item in unit.inputs:
            if item.kind == "video":
                self._video(item, rows, records, stages)
        return rows, records, stages

    def run(self, unit: Unit, shard: Path) -> UnitResult:
        """Annotate ``unit`` and write it to ``shard`` (atomically)."""
        began = time.perf_counter()
        rows, records, stages = self.annotate(unit)
        start = time.perf_counter()
        write_shard(shard, rows, records, stages)
        stages["write"] = stages.get("write", 0.0) + time.perf_counter() - start
        return UnitResult(
            unit.unit_id,
            files=len(records),
            faces=rows.faces,
            failed=sum(1 for r in records if r["status"] == "failed"),
            frames=sum(r["frames"] for r in records),
            seconds=time.perf_counter() - began,
            stages=stages,
        )

    def _pipeline(
        self,
        source: Source,
        rows: ShardRows,
        name_of: Callable[[Frame], str],
        stages: dict[str, float],
    ) -> tuple[RunSummary, dict[str, int]]:
        """lmk-run's engine over ``source``, a row per face added as each frame is done.
        Returns the run's summary and each input's face count (``name_of``: whose frame)."""
        faces: dict[str, int] = {}
        video = source.kind == "video"

        def on_frame(frame: Frame, found: list) -> None:
            name = name_of(frame)
            # An image's faces are numbered from 0: the tracker's ids run on across a set.
            rows.add_faces(name, frame.index if video else 0, frame.time, found, not video)
            faces[name] = faces.get(name, 0) + len(found)

        summary = run_pipeline(
            self.session,
            self._tracker(),
            source,
            Sinks(),
            on_frame=on_frame,
            batch_size=self.config.batch_size,
        )
        for key, value in summary.stage_seconds.items():
            stages[key] = stages.get(key, 0.0) + value
        return summary, faces

    def _images(
        self, items: list[InputFile], rows: ShardRows, records: list[dict], stages: dict
    ) -> None:
        """The images as one set through the pipeline. Should anything fail (a bug, an
        image OpenCV decodes but cannot warp), each image goes again on its own, so the one
        at fault becomes a failure row and the others are kept."""
        before = len(rows)
        try:
            self._image_set(items, rows, records, stages)
        except Exception:
            if len(items) == 1:
                raise
            rows.truncate(before)
            for item in items:
                before = len(rows)
                try:
                    self._image_set([item], rows, records, stages)
                except Exception as exc:
                    rows.truncate(before)
                    rows.add_failure(item.name, _reason(exc))
                    records.append(_record(item, "failed", _reason(exc)))

    def _image_set(
        self, items: list[InputFile], rows: ShardRows, records: list[dict], stages: dict
    ) -> None:
        paths = [Path(item.path) for item in items]
        source = Source("images", f"{len(items)} images", count=len(items), files=paths)
        _, faces = self._pipeline(source, rows, lambda frame: frame.name, stages)
        skipped = set(source.skipped)
        for item in items:
            if item.name in skipped:
                reason = _failure_reason(item)
                rows.add_failure(item.name, reason)
                records.append(_record(item, "failed", reason))
            else:
                records.append(_record(item, "ok", None, 1, faces.get(item.name, 0)))

    def _video(self, item: InputFile, rows: ShardRows, records: list[dict], stages: dict) -> None:
        """Track one video start to end; any failure (also halfway) leaves only its failure
        row, never part of its frames."""
        before = len(rows)
        try:
            if item.size < 0:
                raise LmkError("file not found")
            if item.size == 0:
                raise LmkError("empty file (0 bytes)")
            with open_source(Path(item.path)) as source:
                summary, faces = self._pipeline(source, rows, lambda _: item.name, stages)
                lost = source.lost
        except Exception as exc:  # one bad file must not stop the other million
            reason = _reason(exc)
            rows.truncate(before)
            rows.add_failure(item.name, reason)
            records.append(_record(item, "failed", reason))
            return
        record = _record(item, "ok", None, summary.frames, faces.get(item.name, 0))
        record["lost_frames"] = lost
        records.append(record)


def _reason(exc: Exception) -> str:
    """A failure row's reason: lmk's own message, or the exception's type and text."""
    return str(exc) if isinstance(exc, LmkError) else f"{type(exc).__name__}: {exc}"


def _record(
    item: InputFile,
    status: str,
    error: str | None,
    frames: int = 0,
    faces: int = 0,
) -> dict[str, Any]:
    """An input's entry in its shard's footer: its resume key, what was found, or why not."""
    return {
        "path": item.name,
        "size": item.size,
        "mtime_ns": item.mtime_ns,
        "kind": item.kind,
        "status": status,
        "error": error,
        "frames": frames,
        "faces": faces,
    }
