"""What lmk-run writes: an annotated video (or image), JSONL and CSV of the landmarks.

Every output is planned before any work (:func:`plan_outputs`: lmk.core.fileio's checks, and no
output may be any file the run reads), written to a temporary file beside its target
(lmk.core.fileio's :class:`~lmk.core.fileio.PendingOutput`), and moved into place by
:func:`finish_outputs` when the run ends, also when it is interrupted, so a stopped run keeps
what it did. A device or FIFO is written through; ``-`` (JSONL or CSV) goes to standard output
as the run goes. JSONL and CSV lines are flushed per frame; a full disk is one
``disk full writing X`` error and every output of the run is discarded.
A video is reopened and its frames counted before it is moved into place
(:func:`lmk.core.fileio.check_video_frames`): OpenCV's writer does not report failed writes.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from lmk.core.cli_util import stdout_closed
from lmk.core.errors import LmkError
from lmk.core.fileio import (
    OutputTarget,
    PendingOutput,
    check_video_frames,
    disk_full,
    disk_full_error,
    plan_output,
)
from lmk.core.images import is_image_path
from lmk.runtime.faces import Face
from lmk.runtime.sources import Frame, display_name

VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}
_COLOURS = [(0, 255, 0), (255, 128, 0), (0, 200, 255), (255, 0, 255), (0, 0, 255), (255, 255, 0)]
_HELD = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block ends, then act as usual: for short steps that
    must not be cut in two (create a temporary file and remember it; fsync and rename).
    Outside the main thread signals cannot be handled and the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: caught.append(signum)) for s in _HELD}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        if caught:
            signal.raise_signal(caught[0])  # its own handler runs now (KeyboardInterrupt, ...)


STANDARD_OUTPUT = "-"
"""What ``--json`` or ``--csv`` takes for standard output (a file named ``-`` is ``./-``)."""
_STDOUT_TARGET = OutputTarget(Path("-"), Path("/dev/stdout"), special=True, stdout=True)


def plan_outputs(
    named: dict[str, str | Path | None], overwrite: bool, inputs: Iterable[str | Path]
) -> dict[str, OutputTarget]:
    """Check every output of a run before any work: ``named`` maps a flag (``--out``,
    ``--json``, ``--csv``) to its path or None. Each must pass :func:`lmk.core.fileio.plan_output`
    against every input file, ``--out`` must name a video or image format, and no two may be
    the same file. The text outputs may instead be :data:`STANDARD_OUTPUT` (one of them)."""
    inputs = list(inputs)
    if str(named.get("--out")) == STANDARD_OUTPUT:
        raise LmkError("--out -: an annotated video or image cannot go to standard output")
    to_stdout = [flag for flag, path in named.items() if path == STANDARD_OUTPUT]
    if len(to_stdout) > 1:
        raise LmkError(f"{' and '.join(to_stdout)} both name standard output (-); send one there")
    given = {
        flag: Path(path)
        for flag, path in named.items()
        if path is not None and flag not in to_stdout
    }
    out = given.get("--out")
    if out is not None and not is_image_path(out) and out.suffix.lower() not in VIDEO_CODECS:
        raise _not_a_video_name(out)
    seen: dict[str, str] = {}
    for flag, path in given.items():
        real = os.path.realpath(path)
        if real in seen:
            raise LmkError(f"{seen[real]} and {flag} name the same file; use different files")
        seen[real] = flag
    with held_signals():  # plan_output creates and removes a probe file
        targets = {flag: plan_output(path, overwrite, inputs) for flag, path in given.items()}
    return {**targets, **{flag: _STDOUT_TARGET for flag in to_stdout}}


def one_image_error(path: Path) -> LmkError:
    return LmkError(
        f"--out {display_name(path)} is one image but the input has several frames; "
        "name a video (.mp4, .avi or .mkv)"
    )


def _not_a_video_name(path: Path) -> LmkError:
    return LmkError(
        f"--out {display_name(path)}: use .mp4, .avi or .mkv for video (or an image name)"
    )


class _Sink:
    """An output written to a temporary file (:attr:`tmp`) and finished by
    :func:`finish_outputs`. ``target`` comes from :func:`plan_outputs`; a plain path is
    planned here and replaced if it exists (for callers that own their output folder).
    Standard output (text sinks only) has no temporary file: lines go out as they come."""

    def __init__(self, target: OutputTarget | str | Path):
        if not isinstance(target, OutputTarget):
            target = plan_output(target, overwrite=True)
        self.target = target
        self.path = target.requested
        self.name = "standard output" if target.stdout else display_name(self.path)
        self._pending: PendingOutput | None = None
        if not target.stdout:
            with held_signals():
                self._pending = PendingOutput(target)
            self.tmp = self._pending.tmp
        self.written = 0

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """An OSError while writing is one line naming the output."""
        try:
            yield
        except BrokenPipeError:
            if not self.target.stdout:
                raise
            raise stdout_closed("the run ended") from None
        except OSError as exc:
            if disk_full(exc):
                raise disk_full_error(self.name, exc) from None
            raise LmkError(f"cannot write {self.name}: {exc.strerror}") from None

    def close(self) -> None:
        """Flush and close the temporary file, and check it (raises :class:`LmkError`)."""

    def abandon(self) -> None:
        """Close without checking: the output is being discarded."""
        with contextlib.suppress(Exception):
            self.close()

    def commit(self) -> None:
        if self._pending is not None:
            self._pending.commit()

    def discard(self) -> None:
        if self._pending is not None:
            self._pending.discard()

    def finish(self, keep: bool = True) -> None:
        """:func:`finish_outputs` for this sink alone."""
        finish_outputs([self], keep)


def finish_outputs(sinks: Iterable[_Sink], keep: bool) -> None:
    """End a run's outputs together. With ``keep``, close and check every one, then move each
    that holds anything into place; otherwise, or when any fails its check (a full disk),
    discard them all: a failed run leaves no output and no temporary file.

    Ctrl-C or SIGTERM while a video is read back for its check keeps the outputs already
    checked, discards the rest and is then raised; while renaming it waits. Writing through
    to a device or FIFO (which may block until a reader comes) can be interrupted; what is
    not yet written is then discarded."""
    # Quick outputs first, so that an interrupted video check still keeps them.
    sinks = sorted(sinks, key=lambda sink: isinstance(sink, VideoSink))
    ready: list[_Sink] = []
    stopped: KeyboardInterrupt | None = None
    try:
        if keep:
            try:
                for sink in sinks:
                    sink.close()
                    ready.append(sink)
            except KeyboardInterrupt as exc:
                stopped = exc
        with held_signals():
            for sink in ready:
                if sink.written and not sink.target.special:
                    sink.commit()
        for sink in ready:
            if sink.written and sink.target.special:
                sink.commit()
    finally:
        for sink in sinks:  # whatever is not in place by now: closed and removed
            sink.abandon()
            sink.discard()
    if stopped is not None:
        raise stopped


def draw_faces(image: np.ndarray, faces: list[Face], indices: bool = False) -> np.ndarray:
    """A copy of ``image`` with each face's crop box and landmarks (and their numbers)."""
    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    scale = max(1.0, min(out.shape[:2]) / 480.0)
    for face in faces:
        colour = _COLOURS[face.track_id % len(_COLOURS)] if face.track_id >= 0 else _COLOURS[0]
        x, y, w, h = face.region.box
        c, s = np.cos(face.region.angle), np.sin(face.region.angle)
        cx, cy = x + w / 2, y + h / 2
        corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
        corners = corners @ np.array([[c, s], [-s, c]]) + [cx, cy]
        cv2.polylines(
            out, [np.round(corners * 16).astype(np.int32)], True, colour, 1, cv2.LINE_AA, 4
        )
        radius = max(1, round(1.5 * scale))
        for k, (px, py) in enumerate(face.landmarks):
            cv2.circle(
                out, (round(px * 16), round(py * 16)), radius * 16, colour, -1, cv2.LINE_AA, 4
            )
            if indices:
                cv2.putText(
                    out,
                    str(k),
                    (int(px) + 2, int(py) - 2),
                    cv2.FONT_HERSHEY_PLAIN,
                    0.6 * scale,
                    colour,
                    1,
                    cv2.LINE_AA,
                )
        label = f"#{face.track_id} {face.score:.2f}" if face.track_id >= 0 else f"{face.score:.2f}"
        cv2.putText(
            out,
            label,
            (int(x), max(12, int(y) - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45 * scale,
            colour,
            1,
            cv2.LINE_AA,
        )
    return out


class VideoSink(_Sink):
    """An annotated video; frames of another size than the first are resized to it. On
    :meth:`close` the file is reopened and must hold every frame written."""

    def __init__(self, target: OutputTarget | str | Path, fps: float):
        path = target.requested if isinstance(target, OutputTarget) else Path(target)
        codec = VIDEO_CODECS.get(path.suffix.lower())
        if codec is None:
            raise _not_a_video_name(path)
        super().__init__(target)
        self.fps, self.codec = fps, codec
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def write(self, image: np.ndarray) -> None:
        if self._writer is None:
            self._size = (image.shape[1], image.shape[0])
            fourcc = cv2.VideoWriter.fourcc(*self.codec)
            # The temporary name is ASCII: OpenCV crashes on names that are not UTF-8.
            self._writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, self._size)
            if not self._writer.isOpened():
                raise LmkError(
                    f"OpenCV cannot write {self.codec} video to {display_name(self.path)}"
                )
        if (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.written += 1

    def close(self) -> None:
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        check_video_frames(self.tmp, self.written, self.path)

    def abandon(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class ImageSink(_Sink):
    """One annotated image (a single-image input), encoded in memory and written by Python,
    so that a failed write is reported (OpenCV's ``imwrite`` only returns False)."""

    def write(self, image: np.ndarray) -> None:
        if self.written:
            raise one_image_error(self.path)
        ok, data = cv2.imencode(self.path.suffix.lower(), image)
        if not ok:
            raise LmkError(f"OpenCV cannot encode {display_name(self.path)}")
        with self._writing(), self.tmp.open("wb") as fh:
            fh.write(data.tobytes())
        self.written += 1


def image_or_video_sink(target: OutputTarget | str | Path, fps: float) -> VideoSink | ImageSink:
    path = target.requested if isinstance(target, OutputTarget) else Path(target)
    return ImageSink(target) if is_image_path(path) else VideoSink(target, fps)


def face_record(face: Face, digits: int = 2) -> dict[str, Any]:
    return {
        "id": face.track_id,
        "score": round(face.score, 4),
        "box": [round(float(v), digits) for v in face.region.box],
        "angle": round(float(face.region.angle), 4),
        "landmarks": np.round(face.landmarks, digits).tolist(),
    }


class _TextSink(_Sink):
    """A text output written line by line and flushed after each frame."""

    def __init__(self, target: OutputTarget | str | Path):
        super().__init__(target)
        if self.target.stdout:  # the same UTF-8 text as a file, whatever the locale says
            sys.stdout.flush()
            self._fh: IO[str] = open(1, "w", encoding="utf-8", newline="", closefd=False)  # noqa: SIM115
        else:
            self._fh = self.tmp.open("w", encoding="utf-8", newline="")

    def close(self) -> None:
        if not self._fh.closed:
            with self._writing():
                self._fh.close()

    def abandon(self) -> None:
        with contextlib.suppress(OSError):
            self._fh.close()  # a failed flush still closes the file


class JsonlSink(_TextSink):
    """One JSON object per frame: ``{"frame", "name", "time", "faces": [...]}``."""

    def write(self, frame: Frame, faces: list[Face]) -> None:
        record = {
            "frame": frame.index,
            "name": frame.name,
            "time": round(frame.time, 4),
            "faces": [face_record(f) for f in faces],
        }
        with self._writing():
            self._fh.write(json.dumps(record) + "\n")
            self._fh.flush()
        self.written += 1


class CsvSink(_TextSink):
    """One row per face: frame, name, face id, score, box, then x0, y0, x1, y1, ..."""

    def __init__(self, target: OutputTarget | str | Path, num_landmarks: int):
        super().__init__(target)
        self._csv = csv.writer(self._fh)
        coords = [f"{a}{i}" for i in range(num_landmarks) for a in ("x", "y")]
        with self._writing():
            self._csv.writerow(
                ["frame", "name", "face", "score", "box_x", "box_y", "box_w", "box_h", *coords]
            )
        self.written += 1

    def write(self, frame: Frame, faces: list[Face]) -> None:
        with self._writing():
            for face in faces:
                box = [f"{v:.2f}" for v in face.region.box]
                coords = [f"{v:.2f}" for v in face.landmarks.reshape(-1)]
                self._csv.writerow(
                    [frame.index, frame.name, face.track_id, f"{face.score:.4f}", *box, *coords]
                )
            self._fh.flush()
