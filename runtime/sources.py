"""Where frames come from: a video file, a camera index, an image, a folder or glob of images.

An unreadable image in a set is skipped and counted (``skipped``), never fatal; a video that
cannot be opened or has no frame is a one-line error before any work starts.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from lmk.errors import LmkError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


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
    skipped: list[str] = field(default_factory=list)
    _capture: cv2.VideoCapture | None = None
    _first: np.ndarray | None = None
    _paths: list[Path] = field(default_factory=list)

    def __iter__(self) -> Iterator[Frame]:
        if self.kind == "images":
            yield from self._images()
            return
        capture, index = self._capture, 0
        image = self._first
        fps = self.fps or 30.0
        while image is not None:
            yield Frame(index, image, f"frame {index}", index / fps)
            index += 1
            ok, image = capture.read() if capture is not None else (False, None)
            if not ok:
                image = None

    def _images(self) -> Iterator[Frame]:
        index = 0
        for path in self._paths:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                self.skipped.append(str(path))
                continue
            yield Frame(index, image, str(path), 0.0)
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


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


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
    if any(ch in text for ch in "*?[") and not path.exists():
        paths = sorted(Path(p) for p in glob.glob(text) if _is_image(Path(p)))
        if not paths:
            raise LmkError(f"no image matches {text}")
        return Source(
            "images", f"{len(paths)} images matching {text}", count=len(paths), _paths=paths
        )
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.is_file() and _is_image(p))
        if not paths:
            raise LmkError(f"no image ({', '.join(IMAGE_EXTENSIONS)}) in folder {path}")
        return Source("images", f"{len(paths)} images in {path}", count=len(paths), _paths=paths)
    if not path.is_file():
        raise LmkError(f"input not found: {path}")
    if _is_image(path):
        return Source("images", str(path), count=1, _paths=[path])
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise LmkError(f"cannot read {path}: not a video OpenCV can open")
    return _capture_source(capture, "video", str(path))
