"""Where frames come from: a video file, a camera index, an image, a folder or glob of images.

An unreadable image in a set is skipped and counted (``skipped``), never fatal; a video that
cannot be opened or has no frame is a one-line error before any work starts. A video frame
that fails to decode before the container's frame count is reached is skipped too (the
reader goes on past it) and counted in ``lost``, so the caller can say how much was lost.

File names that are not UTF-8 (Python hands them over as surrogate-escaped ``str``) crash
OpenCV's path functions, so images are read as bytes (``np.fromfile`` + ``cv2.imdecode``) and
such a video is opened through an ASCII-named symbolic link.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from lmk.core.errors import LmkError
from lmk.core.images import IMAGE_EXTENSIONS, is_image_path

MAX_BAD_RUN = 30
"""Consecutive undecodable video frames after which the rest of the video counts as lost."""


def display_name(path: str | Path) -> str:
    """``path`` as text that can always be printed and written to JSON or CSV: bytes that
    are not UTF-8 are shown as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def opencv_safe(path: str | Path) -> bool:
    """Can OpenCV's path functions take this name? (Surrogate-escaped bytes crash them.)"""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_image(path: str | Path) -> np.ndarray | None:
    """A BGR image, or None when the file cannot be read or decoded; works for any name."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except (OSError, ValueError):
        return None
    if data.size == 0:
        return None
    try:
        return cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error:
        return None


@dataclass
class Frame:
    index: int
    image: np.ndarray
    name: str
    """The image's path, or ``frame N`` of a video/camera."""
    time: float
    """Seconds from the start (video/camera: index / fps; images: 0)."""


@dataclass
class Source:
    """An open frame source; iterate it for :class:`Frame` objects, close it when done."""

    kind: str  # video | camera | images
    description: str
    fps: float | None = None
    size: tuple[int, int] | None = None
    count: int | None = None
    """Frames expected (video: the container's count, which may be approximate)."""
    files: list[Path] = field(default_factory=list)
    """Every file this source reads (the video, or each image): no output may be one."""
    skipped: list[str] = field(default_factory=list)
    """Images of a set that could not be read."""
    decoded: int = 0
    """Frames handed out so far."""
    lost: int = 0
    """Video frames that could not be decoded (before the container's count was reached)."""
    _capture: cv2.VideoCapture | None = None
    _first: np.ndarray | None = None

    def __iter__(self) -> Iterator[Frame]:
        frames = self._images() if self.kind == "images" else self._video()
        for frame in frames:
            self.decoded += 1
            yield frame

    def _video(self) -> Iterator[Frame]:
        """Frames in stream order; a frame that fails to decode keeps its index (so JSONL
        frame numbers stay those of the video) and is skipped, up to :data:`MAX_BAD_RUN` in
        a row."""
        capture, image = self._capture, self._first
        fps = self.fps or 30.0
        position, bad_run = 0, 0  # position: the stream index of ``image``
        while True:
            if image is not None:
                yield Frame(position, image, f"frame {position}", position / fps)
                bad_run = 0
            else:
                self.lost += 1
                bad_run += 1
                if bad_run >= MAX_BAD_RUN:
                    self.lost += max(0, (self.count or 0) - position - 1)
                    return
            position += 1
            if capture is None:
                return
            ok, image = capture.read()
            if not ok or image is None:
                image = None
                if self.count is None or position >= self.count:
                    return  # the end of the stream (or of a camera)

    def _images(self) -> Iterator[Frame]:
        index = 0
        for path in self.files:
            image = read_image(path)
            if image is None:
                self.skipped.append(display_name(path))
                continue
            yield Frame(index, image, display_name(path), 0.0)
            index += 1

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _capture_source(capture: cv2.VideoCapture, kind: str, description: str) -> Source:
    ok, first = capture.read()
    if not ok or first is None:
        capture.release()
        what = "has no frame OpenCV can decode" if kind == "video" else "gives no frame"
        raise LmkError(f"{description} {what}")
    fps = capture.get(cv2.CAP_PROP_FPS) or None
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if kind == "video" else None
    return Source(
        kind,
        description,
        fps=float(fps) if fps and fps > 0 else None,
        size=(first.shape[1], first.shape[0]),
        count=count if count and count > 0 else None,
        _capture=capture,
        _first=first,
    )


def open_video(path: Path) -> cv2.VideoCapture:
    """``cv2.VideoCapture`` for any file name: a name OpenCV cannot take is opened through
    an ASCII-named symbolic link in a private temporary folder, removed again at once (the
    open capture keeps the file itself open)."""
    if opencv_safe(path):
        return cv2.VideoCapture(str(path))
    folder = tempfile.mkdtemp(prefix="lmk-video-")
    try:
        suffix = path.suffix if opencv_safe(path.suffix) else ""
        link = os.path.join(folder, f"video{suffix}")
        os.symlink(os.path.abspath(path), link)
        return cv2.VideoCapture(link)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def open_source(spec: str | Path | int) -> Source:
    """Open ``spec``: an int or digits = camera index; a folder or glob = its images (sorted);
    an image file; otherwise a video file."""
    text = str(spec)
    if isinstance(spec, int) or text.isdigit():
        capture = cv2.VideoCapture(int(text))
        if not capture.isOpened():
            raise LmkError(f"cannot open camera {text}")
        return _capture_source(capture, "camera", f"camera {text}")
    path = Path(text)
    shown = display_name(path)
    if any(ch in text for ch in "*?[") and not path.exists():
        paths = sorted(Path(p) for p in glob.glob(text) if is_image_path(Path(p)))
        if not paths:
            raise LmkError(f"no image matches {shown}")
        return Source(
            "images", f"{len(paths)} images matching {shown}", count=len(paths), files=paths
        )
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.is_file() and is_image_path(p))
        if not paths:
            raise LmkError(f"no image ({', '.join(IMAGE_EXTENSIONS)}) in folder {shown}")
        return Source("images", f"{len(paths)} images in {shown}", count=len(paths), files=paths)
    if not path.is_file():
        raise LmkError(f"input not found: {shown}")
    if is_image_path(path):
        return Source("images", shown, count=1, files=[path])
    capture = open_video(path)
    if not capture.isOpened():
        raise LmkError(f"cannot read {shown}: not a video OpenCV can open")
    source = _capture_source(capture, "video", shown)
    source.files = [path]
    return source
