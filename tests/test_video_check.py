"""check_video_frames: a video whose writing the disk cut short never moves into place."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from lmk.core.errors import LmkError
from lmk.core.fileio import check_video_frames

FRAMES = 10
WRITER = f"""
import resource, signal, sys
import cv2, numpy as np
path, limit = sys.argv[1], int(sys.argv[2])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.endswith(".avi") else "mp4v"))
writer = cv2.VideoWriter(path, fourcc, 25, (320, 240))
rng = np.random.default_rng(1)
for _ in range({FRAMES}):  # noise: every frame is about 27 kB of JPEG
    writer.write(rng.integers(60, 124, (240, 320, 3), dtype=np.uint8))
writer.release()
"""


def _write(path: Path, limit: int = 10**9) -> int:
    """Write the clip as OpenCV's writer does under a disk that is full after ``limit``
    bytes; returns the file's size."""
    subprocess.run(
        [sys.executable, "-c", WRITER, str(path), str(limit)], check=True, capture_output=True
    )
    return os.path.getsize(path)


@pytest.mark.parametrize("suffix", [".avi", ".mp4", ".mkv"])
def test_a_whole_video_passes_and_a_wrong_count_does_not(tmp_path, suffix):
    path = tmp_path / f"v{suffix}"
    _write(path)
    check_video_frames(path, FRAMES, path)
    for wrong in (FRAMES - 1, FRAMES + 1):
        with pytest.raises(LmkError, match=f"only {FRAMES} of {wrong} frames"):
            check_video_frames(path, wrong, path)


def test_an_avi_cut_inside_its_last_frame_is_refused(tmp_path):
    """Every packet is there, the last one short: counting packets (or decoding, which
    accepts a cut JPEG) says 10 of 10; the missing JPEG end marker gives it away."""
    whole = _write(tmp_path / "whole.avi")
    cut = tmp_path / "cut.avi"
    assert _write(cut, whole - 2000) == whole - 2000  # inside the ~27 kB last frame
    capture = cv2.VideoCapture(str(cut))
    count = 0
    while capture.grab():
        count += 1
    assert count == FRAMES  # what a frame count alone sees
    with pytest.raises(LmkError, match=rf"disk full writing .*cut\.avi \(only 9 of {FRAMES}"):
        check_video_frames(cut, FRAMES, cut)


def test_an_avi_whose_index_alone_was_cut_keeps_every_frame(tmp_path):
    """The index comes after the frames; without its end every frame still reads."""
    whole = _write(tmp_path / "whole.avi")
    cut = tmp_path / "cut.avi"
    _write(cut, whole - 20)
    check_video_frames(cut, FRAMES, cut)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_video_cut_short_is_refused(tmp_path, suffix):
    whole = _write(tmp_path / f"whole{suffix}")
    cut = tmp_path / f"cut{suffix}"
    _write(cut, whole // 2)
    with pytest.raises(LmkError, match=f"disk full writing .* of {FRAMES} frames"):
        check_video_frames(cut, FRAMES, cut)


def test_a_packet_without_jpeg_data_is_taken_as_whole():
    from lmk.core.fileio import _whole_packet

    assert _whole_packet(np.frombuffer(b"\x00\x00\x01\xb6abc", np.uint8))  # MPEG-4 part 2
    assert _whole_packet(np.frombuffer(b"\xff\xd8abc\xff\xd9", np.uint8))
    assert not _whole_packet(np.frombuffer(b"\xff\xd8abc", np.uint8))
