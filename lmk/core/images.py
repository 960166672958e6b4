"""Which files are images: one list for every reader (lmk-run sources and outputs, the
annotation readers, INT8 calibration folders), so a folder that one command accepts another
does not silently skip."""

from __future__ import annotations

from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
"""Suffixes (lower case) OpenCV's ``imread``/``imwrite`` handle in every opencv-python build."""


def is_image_path(path: Path | str) -> bool:
    """Does the name end in one of :data:`IMAGE_EXTENSIONS` (any case)?"""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS
