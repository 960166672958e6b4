"""SynthFace clips: faces that move smoothly, for testing trackers and video runs end to end.

Each face keeps its identity and looks for the whole clip; its pose, position, size, mouth
and eyelids follow smooth random curves (sums of slow sinusoids), so consecutive frames'
landmarks move by small amounts. The background is drawn once and panned slowly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmk.core.errors import LmkError
from lmk.synth.drawing import background, draw_face
from lmk.synth.effects import apply_effects
from lmk.synth.geometry import detector_box, project_face
from lmk.synth.params import FaceParams, resolve_params


@dataclass
class ClipFace:
    """One face in one frame."""

    landmarks: np.ndarray
    """[98, 2] float64 pixels (WFLW-98), exact even when off-frame."""
    box: np.ndarray
    """[4] (x, y, w, h), detector-like (landmark box grown and jittered a little)."""
    visible: bool
    """At least half of the landmarks are inside the frame."""


@dataclass
class ClipFrame:
    """One frame of a clip: the BGR image and every face's state, in face order."""

    index: int
    image: np.ndarray
    faces: list[ClipFace]


def _wave(rng: np.random.Generator, amplitude: float, fmin: float, fmax: float) -> Callable:
    """A smooth random signal of time (seconds): three sinusoids, peak about ``amplitude``."""
    freqs = rng.uniform(fmin, fmax, 3)
    phases = rng.uniform(0.0, 2.0 * math.pi, 3)
    weights = rng.uniform(0.5, 1.0, 3)
    weights *= amplitude / weights.sum()

    def at(t: float) -> float:
        return float(np.sum(weights * np.sin(2.0 * math.pi * freqs * t + phases)))

    return at


def _hump(x: float) -> float:
    """0 outside [0, 1], rising smoothly to 1 at 0.5 (continuous slope)."""
    return math.sin(math.pi * x) ** 2 if 0.0 < x < 1.0 else 0.0


@dataclass
class _Track:
    params: FaceParams
    centre: np.ndarray  # base centre of the landmark box, pixels
    unit: float  # base pixels per face width
    yaw0: float
    waves: dict[str, Callable]
    blinks: np.ndarray  # blink start times, seconds
    excursion: tuple[float, float, float] | None  # (start s, end s, x distance px)


def _make_track(
    seed_seq: np.random.SeedSequence,
    k: int,
    num_faces: int,
    width: int,
    height: int,
    duration: float,
    leave: bool,
) -> _Track:
    rng = np.random.default_rng(seed_seq)
    p = resolve_params(rng, {})
    short = min(width, height)
    unit = short * rng.uniform(0.3, 0.45) / max(1.0, 0.8 * math.sqrt(num_faces))
    centre = np.array(
        [
            width * (k + 0.5) / num_faces + rng.uniform(-0.05, 0.05) * width,
            height * rng.uniform(0.4, 0.55),
        ]
    )
    waves = {
        "yaw": _wave(rng, 35.0, 0.05, 0.35),
        "pitch": _wave(rng, 12.0, 0.05, 0.3),
        "roll": _wave(rng, 12.0, 0.05, 0.3),
        "x": _wave(rng, 0.08 * width / num_faces, 0.03, 0.2),
        "y": _wave(rng, 0.05 * height, 0.03, 0.2),
        "scale": _wave(rng, 0.12, 0.03, 0.15),
        "mouth": _wave(rng, 0.12, 0.1, 0.5),
        "smile": _wave(rng, 0.5, 0.05, 0.2),
    }
    blinks = np.cumsum(rng.exponential(3.0, max(2, int(duration / 2.0) + 2)))
    excursion = None
    if leave:
        start, end = 0.25 * duration, 0.75 * duration
        right = centre[0] > width / 2.0
        distance = (width - centre[0] if right else -centre[0]) + math.copysign(
            1.5 * unit, 1.0 if right else -1.0
        )
        excursion = (start, end, distance)
    return _Track(
        p, centre, unit, float(np.clip(rng.normal(0.0, 10.0), -30, 30)), waves, blinks, excursion
    )


def _pose_at(
    track: _Track, t: float
) -> tuple[FaceParams, tuple[float, float, float], np.ndarray, float]:
    w = track.waves
    yaw = float(np.clip(track.yaw0 + w["yaw"](t), -60.0, 60.0))
    pitch = float(np.clip(w["pitch"](t), -30.0, 30.0))
    roll = float(np.clip(w["roll"](t), -30.0, 30.0))
    centre = track.centre + np.array([w["x"](t), w["y"](t)])
    if track.excursion is not None:
        start, end, distance = track.excursion
        centre[0] += distance * _hump((t - start) / (end - start))
    unit = track.unit * (1.0 + w["scale"](t))
    blink = max((_hump((t - b) / 0.3) for b in track.blinks), default=0.0)
    p = track.params
    p = dataclasses.replace(
        p,
        mouth_open=max(0.0, p.mouth_open * 0.5 + w["mouth"](t)),
        smile=float(np.clip(p.smile * 0.5 + w["smile"](t), -0.3, 1.0)),
        eye_open=max(0.05, p.eye_open * (1.0 - 0.95 * blink)),
    )
    return p, (yaw, pitch, roll), centre, unit


def check_clip_settings(
    frames: int, size: tuple[int, int], num_faces: int = 1, fps: float = 25.0
) -> None:
    """Refuse a clip that cannot be made, before a writer opens (OpenCV's writer fails on a
    0x0 size with a misleading question about FFmpeg)."""
    width, height = size
    if frames < 1:
        raise LmkError(f"a clip needs at least 1 frame, got {frames}")
    if not (32 <= width <= 8192 and 32 <= height <= 8192):
        raise LmkError(f"clip size must be 32x32 to 8192x8192, got {width}x{height}")
    if not 1 <= num_faces <= 8:
        raise LmkError(f"number of faces must be 1 to 8, got {num_faces}")
    if not 0 < fps <= 1000:
        raise LmkError(f"fps must be positive (at most 1000), got {fps}")


def render_clip(
    seed: int,
    frames: int,
    size: tuple[int, int] = (640, 480),
    num_faces: int = 1,
    fps: float = 25.0,
    leave_frame: bool = False,
    pan: bool = True,
) -> Iterator[ClipFrame]:
    """Yield ``frames`` frames of a deterministic SynthFace clip.

    ``leave_frame``: the first face slides out of the frame over the middle half of the clip
    and comes back (its ``visible`` flag goes False, then True again). ``pan``: the
    background drifts slowly; otherwise it is fixed.
    """
    width, height = (int(v) for v in size)
    check_clip_settings(frames, (width, height), num_faces, fps)
    root = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x5F1C])
    bg_seq, fx_seq, box_seq, *face_seqs = root.spawn(3 + num_faces)
    duration = frames / fps
    tracks = [
        _make_track(s, k, num_faces, width, height, duration, leave_frame and k == 0)
        for k, s in enumerate(face_seqs)
    ]
    effects = resolve_params(np.random.default_rng(fx_seq), {})
    if effects.blur == "motion":
        effects = dataclasses.replace(effects, blur="gaussian")
    effects = dataclasses.replace(effects, blur_amount=effects.blur_amount * 0.5)
    pad = int(0.08 * max(width, height)) if pan else 0
    bg_rng = np.random.default_rng(bg_seq)
    canvas = background(bg_rng, width + 2 * pad, height + 2 * pad)
    pan_x, pan_y = _wave(bg_rng, 1.0, 0.01, 0.05), _wave(bg_rng, 1.0, 0.01, 0.05)
    box_rng = np.random.default_rng(box_seq)
    frame_centre = np.array([width / 2.0, height / 2.0])
    for index in range(frames):
        t = index / fps
        ox = pad + round(pad * 0.9 * pan_x(t))
        oy = pad + round(pad * 0.9 * pan_y(t))
        img = canvas[oy : oy + height, ox : ox + width].copy()
        states = []
        for track in tracks:
            p, (yaw, pitch, roll), centre, unit = _pose_at(track, t)
            geo = project_face(p, yaw, pitch, roll, unit)
            lm = geo.landmarks
            geo = geo.shifted(centre - (lm.min(axis=0) + lm.max(axis=0)) / 2.0)
            states.append((unit, p, geo))
        faces = []
        for _, p, geo in sorted(states, key=lambda s: s[0]):  # far (small) faces first
            draw_face(img, p, geo)
        for _, _, geo in states:
            lm = geo.landmarks
            inside = (lm[:, 0] >= 0) & (lm[:, 0] < width) & (lm[:, 1] >= 0) & (lm[:, 1] < height)
            faces.append(
                ClipFace(lm, detector_box(lm, box_rng, jitter=0.3), bool(inside.mean() >= 0.5))
            )
        noise_rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5F1C, index])
        img = apply_effects(img, effects, frame_centre, 0.5 * min(width, height), noise_rng)
        yield ClipFrame(index, img, faces)


def clip_record(frame: ClipFrame) -> dict:
    """A frame's ground truth as one JSONL line: landmarks, box (pixels) and visibility."""
    return {
        "frame": frame.index,
        "faces": [
            {
                "landmarks": [[round(float(x), 4), round(float(y), 4)] for x, y in f.landmarks],
                "box": [round(float(v), 4) for v in f.box],
                "visible": f.visible,
            }
            for f in frame.faces
        ],
    }


def write_clip(
    path: str | Path,
    seed: int,
    frames: int,
    size: tuple[int, int] = (640, 480),
    fps: float = 25.0,
    jsonl: str | Path | None = None,
    progress: bool = False,
    shown: str | Path | None = None,
    frames_from: Iterator[ClipFrame] | None = None,
    record: Callable[[ClipFrame], dict] = clip_record,
    **clip_args: Any,
) -> list[list[ClipFace]]:
    """Render a clip into ``path`` (mp4v; the name must end in .mp4) and, with ``jsonl``, its
    ground truth one line per frame; returns every frame's faces (without the images).

    The finished video is reopened and its frames counted (a full disk otherwise leaves an
    unplayable file without a word); ``shown`` is the name errors give (``path`` is usually
    a temporary name beside it). ``frames_from`` replaces the SynthFace clip by other frames
    (a real photo's, :mod:`lmk.synth.photo_clip`), ``record`` the JSONL line of a frame."""
    import cv2
    from tqdm import tqdm

    from lmk.core.fileio import check_video_frames

    size = (int(size[0]), int(size[1]))
    check_clip_settings(frames, size, clip_args.get("num_faces", 1), fps)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise LmkError("OpenCV cannot write mp4v video here (was it built without FFmpeg?)")
    truth = []
    with contextlib.ExitStack() as stack:
        stack.callback(writer.release)
        fh = stack.enter_context(Path(jsonl).open("w", encoding="utf-8")) if jsonl else None
        clip = frames_from or render_clip(seed, frames, size, fps=fps, **clip_args)
        bar = tqdm(
            clip,
            total=frames,
            desc="lmk-synth video",
            unit="frame",
            disable=None if progress else True,
        )
        for frame in bar:
            writer.write(frame.image)
            truth.append(frame.faces)
            if fh is not None:
                fh.write(json.dumps(record(frame)) + "\n")
    check_video_frames(Path(path), frames, Path(shown if shown is not None else path))
    return truth
