"""lmk-run's engine: read, track + infer, draw + write as three threads with bounded queues.

Tracking is sequential (a frame's crops come from the previous frame's landmarks), so the
model runs in one thread; reading (decode) and drawing/writing overlap with it. Each stage's
time is recorded for the summary.

Ctrl-C or SIGTERM (``KeyboardInterrupt`` in the main thread) ends a run cleanly: the reader
stops, the frames already tracked are still written, and the summary says ``interrupted``
(the caller keeps the outputs). A failure while writing (a full disk) ends the run at the
next frame and is raised after the threads have stopped; the caller discards the outputs.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmk.core.layouts import get_layout
from lmk.runtime.api import LandmarkSession, StageTimes
from lmk.runtime.faces import Face
from lmk.runtime.outputs import CsvSink, ImageSink, JsonlSink, VideoSink, draw_faces
from lmk.runtime.sources import Frame, Source, open_source
from lmk.runtime.tracking import Tracker

_END = object()
STAGES = ("read", "detect", "track", "preprocess", "infer", "draw", "write")


@dataclass
class Sinks:
    video: VideoSink | ImageSink | None = None
    jsonl: JsonlSink | None = None
    csv: CsvSink | None = None
    show: bool = False
    indices: bool = False

    def all(self) -> list[Any]:
        return [s for s in (self.video, self.jsonl, self.csv) if s is not None]


@dataclass
class RunSummary:
    frames: int = 0
    faces: int = 0
    detections: int = 0
    seconds: float = 0.0
    interruption: KeyboardInterrupt | None = None
    """What stopped the run early (Ctrl-C, or :class:`lmk.core.cli_util.Terminated` for SIGTERM);
    re-raise it once the outputs are finished."""
    stage_seconds: dict[str, float] = field(default_factory=dict)
    first_seconds: float = 0.0
    """Seconds until the first frame's faces were found: the start-up (threads, the first
    decode, the model's first runs) and the first detection, which every later frame skips
    while its faces are tracked."""

    @property
    def interrupted(self) -> bool:
        return self.interruption is not None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def tracking_fps(self) -> float:
        """frames/s after the first frame: what a long video converges to while its faces stay
        tracked (the first frame's detection and warm-up left out)."""
        rest = self.seconds - self.first_seconds
        return (self.frames - 1) / rest if self.frames > 1 and rest > 0 else 0.0

    def per_frame_ms(self) -> dict[str, float]:
        n = max(1, self.frames)
        return {k: 1000.0 * self.stage_seconds.get(k, 0.0) / n for k in STAGES}


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def _reader(
    source: Source, out: queue.Queue, stop: threading.Event, times: StageTimes, limit: int | None
) -> None:
    try:
        frames = iter(source)
        count = 0
        while not stop.is_set() and (limit is None or count < limit):
            start = time.perf_counter()
            frame = next(frames, None)
            if frame is None:
                break
            times.add("read", time.perf_counter() - start)
            out.put(frame)
            count += 1
    except BaseException as exc:  # handed to the main thread, which reports it
        out.put(_Failure(exc))
    finally:
        out.put(_END)


def _writer(
    sinks: Sinks,
    inbox: queue.Queue,
    times: StageTimes,
    failures: list[BaseException],
    hurry: threading.Event,
) -> None:
    import cv2

    while True:
        item = inbox.get()
        if item is _END:
            return
        if failures or hurry.is_set():
            continue  # keep draining so the producer never blocks
        frame, faces = item
        try:
            if sinks.video is not None or sinks.show:
                with times.time("draw"):
                    canvas = draw_faces(frame.image, faces, sinks.indices)
            with times.time("write"):
                if sinks.video is not None:
                    sinks.video.write(canvas)
                if sinks.jsonl is not None:
                    sinks.jsonl.write(frame, faces)
                if sinks.csv is not None:
                    sinks.csv.write(frame, faces)
                if sinks.show:
                    cv2.imshow("lmk-run", canvas)
                    cv2.waitKey(1)
        except BaseException as exc:
            failures.append(exc)


def _stop_threads(
    reader: threading.Thread,
    frames_in: queue.Queue,
    stop: threading.Event,
    writer: threading.Thread,
    results: queue.Queue,
) -> None:
    """Stop the reader (unblocking it if it waits on a full queue) and let the writer finish
    what is queued. Safe to call again after an interruption."""
    stop.set()
    while reader.is_alive():
        try:
            frames_in.get_nowait()
        except queue.Empty:
            reader.join(timeout=0.05)
    while writer.is_alive():
        try:
            results.put(_END, timeout=0.05)
            writer.join()
        except queue.Full:
            pass


def _next_frames(
    inbox: queue.Queue, count: int, error: BaseException | None
) -> tuple[list[Frame], bool, BaseException | None]:
    """Up to ``count`` frames from the reader (fewer at its end); whether it has ended; the
    reader's failure, if it sent one (the frames before it are still run)."""
    frames: list[Frame] = []
    while len(frames) < count:
        item = inbox.get()
        if item is _END:
            return frames, True, error
        if isinstance(item, _Failure):
            error = item.exc
        else:
            frames.append(item)
    return frames, False, error


def run_pipeline(
    session: LandmarkSession,
    tracker: Tracker,
    source: Source,
    sinks: Sinks,
    limit: int | None = None,
    on_frame: Callable[[Frame, list[Face]], None] | None = None,
    queue_size: int = 8,
    batch_size: int = 1,
) -> RunSummary:
    """Run every frame of ``source``; returns counts and per-stage times. Ctrl-C or SIGTERM
    stops the run cleanly (``interrupted``); the sinks are left for the caller to finish.
    ``batch_size``: an image set's images are run that many at a time, up to that many
    crops an inference (:meth:`Tracker.step_stills`); the faces are the same at any size."""
    summary = RunSummary()
    read_times, write_times = StageTimes(), StageTimes()
    frames_in: queue.Queue = queue.Queue(maxsize=queue_size)
    results: queue.Queue = queue.Queue(maxsize=queue_size)
    stop, hurry = threading.Event(), threading.Event()
    failures: list[BaseException] = []
    reader = threading.Thread(
        target=_reader, args=(source, frames_in, stop, read_times, limit), daemon=True
    )
    writer = threading.Thread(
        target=_writer, args=(sinks, results, write_times, failures, hurry), daemon=True
    )
    dt = 1.0 / (source.fps or 30.0)
    before = dict(session.stages.seconds)
    started = time.perf_counter()
    reader.start()
    writer.start()
    error: BaseException | None = None
    stepping = 0.0  # seconds in tracker.step: the session's stages plus the tracking itself
    # Still images are unrelated: up to batch_size of them are detected afresh together,
    # their crops pooled into shared inferences. Video frames are tracked one by one.
    gather = batch_size if source.kind == "images" else 1
    try:
        while not failures:
            frames, ended, error = _next_frames(frames_in, gather, error)
            if frames:
                step_start = time.perf_counter()
                if source.kind == "images":
                    found = tracker.step_stills([f.image for f in frames], batch_size, dt)
                else:
                    found = [tracker.step(frames[0].image, dt)]
                step_end = time.perf_counter()
                stepping += step_end - step_start
                if not summary.frames:
                    summary.first_seconds = step_end - started
                for frame, faces in zip(frames, found, strict=True):
                    results.put((frame, faces))
                    summary.frames += 1
                    summary.faces += len(faces)
                    if on_frame is not None:
                        on_frame(frame, faces)
            if ended:
                break
    except KeyboardInterrupt as exc:
        summary.interruption = exc
    finally:
        # The threads must be done before the caller finishes the sinks. A second Ctrl-C
        # while waiting only drops the frames not yet written.
        while True:
            try:
                _stop_threads(reader, frames_in, stop, writer, results)
                break
            except KeyboardInterrupt as exc:
                summary.interruption = summary.interruption or exc
                hurry.set()
    summary.seconds = time.perf_counter() - started
    for key, value in session.stages.seconds.items():
        summary.stage_seconds[key] = value - before.get(key, 0.0)
    summary.stage_seconds["track"] = max(0.0, stepping - sum(summary.stage_seconds.values()))
    for times in (read_times, write_times):
        for key, value in times.seconds.items():
            summary.stage_seconds[key] = summary.stage_seconds.get(key, 0.0) + value
    summary.detections = tracker.detections
    if failures:
        raise failures[0]
    if error is not None:
        raise error
    return summary


def track_clip(
    model: Path,
    clip: Path,
    truth: list[list[Any]],
    video: Path,
    jsonl: Path,
    threads: int | None = None,
) -> dict[str, Any]:
    """lmk-run's pipeline on a SynthFace clip (ORT CPU, frame detector + tracking, annotated
    ``video`` and ``jsonl`` written), each frame's first face scored against ``truth`` (the
    faces :func:`lmk.synth.video.write_clip` returned). A frame without a face scores inf."""
    from lmk.core.metrics import nme  # imports scipy (AUC); the runtime itself does not need it

    session = LandmarkSession(model, ep="cpu", threads=threads)
    tracker = session.tracker("frame")
    layout = get_layout(session.info.layout)
    errors: list[float] = []

    def score(frame, faces) -> None:
        gt = truth[frame.index][0].landmarks
        errors.append(float(nme(faces[0].landmarks, gt, layout)[0]) if faces else np.inf)

    with open_source(clip) as frames, contextlib.ExitStack() as finish:
        sinks = Sinks(video=VideoSink(video, frames.fps or 25.0), jsonl=JsonlSink(jsonl))
        for sink in sinks.all():  # every sink is finished, also when another one fails to
            finish.callback(sink.finish)
        summary = run_pipeline(session, tracker, frames, sinks, on_frame=score)
    found = np.isfinite(errors)
    return {
        "model": session.model.describe(),
        "frames": summary.frames,
        "frames_with_face": int(found.sum()),
        "mean_nme": float(np.mean(errors)),
        "mean_nme_found": float(np.mean(np.asarray(errors)[found])) if found.any() else np.nan,
        "max_nme": float(np.max(errors)),
        "fps": summary.fps,
        "stage_ms": summary.per_frame_ms(),
        "detections": summary.detections,
    }
