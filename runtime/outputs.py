"""What lmk-run writes: an annotated video (or image), JSONL and CSV of the landmarks.

Every file is written under a temporary name beside its target and moved into place when the
run ends, also when it is interrupted, so a stopped run keeps what it did, and a user's file
is replaced only with ``--overwrite``. JSONL and CSV lines are flushed per frame.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from lmk.errors import LmkError
from lmk.fileio import check_output_path
from lmk.runtime.faces import Face
from lmk.runtime.sources import IMAGE_EXTENSIONS, Frame

VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}
_COLOURS = [(0, 255, 0), (255, 128, 0), (0, 200, 255), (255, 0, 255), (0, 0, 255), (255, 255, 0)]


def check_output(path: Path, overwrite: bool, inputs: list[Path]) -> None:
    """Refuse to clobber: lmk's usual output checks, and an input is never an output."""
    folder = check_output_path(path, overwrite)
    if any(p.exists() and path.exists() and path.samefile(p) for p in inputs):
        raise LmkError(f"{path} is the input; choose another output name")
    if not os.access(folder, os.W_OK):
        raise LmkError(f"cannot write to {folder}")


class _Partial:
    """A target file written as ``.NAME.partial.EXT`` and renamed on :meth:`finish`."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
        self.written = 0

    def finish(self, keep: bool = True) -> None:
        """Move the file into place if it holds anything (``keep``: the run did some work)."""
        if self.tmp.exists():
            if keep and self.written:
                os.replace(self.tmp, self.path)
            else:
                self.tmp.unlink()


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


class VideoSink(_Partial):
    """An annotated video; frames of another size than the first are resized to it."""

    def __init__(self, path: Path, fps: float):
        super().__init__(path)
        codec = VIDEO_CODECS.get(path.suffix.lower())
        if codec is None:
            raise LmkError(f"--out {path}: use .mp4, .avi or .mkv for video (or an image name)")
        self.fps, self.codec = fps, codec
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def write(self, image: np.ndarray) -> None:
        if self._writer is None:
            self._size = (image.shape[1], image.shape[0])
            fourcc = cv2.VideoWriter.fourcc(*self.codec)
            self._writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, self._size)
            if not self._writer.isOpened():
                raise LmkError(f"OpenCV cannot write {self.codec} video to {self.path}")
        if (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.written += 1

    def finish(self, keep: bool = True) -> None:
        if self._writer is not None:
            self._writer.release()
        super().finish(keep)


class ImageSink(_Partial):
    """One annotated image (a single-image input)."""

    def write(self, image: np.ndarray) -> None:
        if self.written:
            raise LmkError(f"--out {self.path} is one image but the input has several frames")
        if not cv2.imwrite(str(self.tmp), image):
            raise LmkError(f"OpenCV cannot write {self.path}")
        self.written += 1


def image_or_video_sink(path: Path, fps: float) -> VideoSink | ImageSink:
    return ImageSink(path) if path.suffix.lower() in IMAGE_EXTENSIONS else VideoSink(path, fps)


def face_record(face: Face, digits: int = 2) -> dict[str, Any]:
    return {
        "id": face.track_id,
        "score": round(face.score, 4),
        "box": [round(float(v), digits) for v in face.region.box],
        "angle": round(float(face.region.angle), 4),
        "landmarks": np.round(face.landmarks, digits).tolist(),
    }


class JsonlSink(_Partial):
    """One JSON object per frame: ``{"frame", "name", "time", "faces": [...]}``."""

    def __init__(self, path: Path):
        super().__init__(path)
        self._fh: IO[str] = self.tmp.open("w", encoding="utf-8")

    def write(self, frame: Frame, faces: list[Face]) -> None:
        record = {
            "frame": frame.index,
            "name": frame.name,
            "time": round(frame.time, 4),
            "faces": [face_record(f) for f in faces],
        }
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        self.written += 1

    def finish(self, keep: bool = True) -> None:
        self._fh.close()
        super().finish(keep)


class CsvSink(_Partial):
    """One row per face: frame, name, face id, score, box, then x0, y0, x1, y1, ..."""

    def __init__(self, path: Path, num_landmarks: int):
        super().__init__(path)
        self._fh: IO[str] = self.tmp.open("w", encoding="utf-8", newline="")
        self._csv = csv.writer(self._fh)
        coords = [f"{a}{i}" for i in range(num_landmarks) for a in ("x", "y")]
        self._csv.writerow(
            ["frame", "name", "face", "score", "box_x", "box_y", "box_w", "box_h", *coords]
        )
        self.written += 1

    def write(self, frame: Frame, faces: list[Face]) -> None:
        for face in faces:
            box = [f"{v:.2f}" for v in face.region.box]
            coords = [f"{v:.2f}" for v in face.landmarks.reshape(-1)]
            self._csv.writerow(
                [frame.index, frame.name, face.track_id, f"{face.score:.4f}", *box, *coords]
            )
        self._fh.flush()

    def finish(self, keep: bool = True) -> None:
        self._fh.close()
        super().finish(keep)
