"""Where lmk-run's time per frame goes, each part measured alone: the floor under frames/s.

lmk-run's tracking thread runs, per frame, the crop (one affine warp of the 640x480 frame),
the model at batch 1, the inverse warp and the tracker; the reader thread decodes the next
frame and the writer formats the JSONL line, both overlapping it. The first frame also runs
the frame detector's window scan (tens of crops) and two refinements. This script times each
of those alone on the bundled PIPNet-MobileNetV2 and a 640x480 SynthFace clip, as wall time
(median, and 10th percentile: the best the machine gave) and as CPU time of the calling
process, which a loaded machine inflates far less than wall time. Model rows: ORT CPU FP32 and
(``--int8``) INT8 at 1 and 2 intra-op threads, spinning off and on; with ``--venv-ov`` also
OpenVINO BF16 and (``--int8-ov``) INT8, run by this same script in that venv (``--model-only``).
Writes video_cpu_parts.{json,md} under benchmarks/results/<machine>/.

    .venv/bin/python benchmarks/video_cpu_parts.py [--int8 pipnet_int8.onnx]
        [--int8-ov pipnet_int8_ov.onnx] [--venv-ov .venv-ov] [--calls 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
QUIET_LOAD = 1.5


def timed(fn: Callable[[], object], calls: int, warm: int = 10) -> dict:
    """Wall ms per call (median, 10th percentile) and process CPU ms per call."""
    for _ in range(warm):
        fn()
    walls = []
    cpu = time.process_time()
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - start)
    cpu = time.process_time() - cpu
    return {
        "wall_ms": 1000 * statistics.median(walls),
        "wall_p10_ms": 1000 * float(np.percentile(walls, 10)),
        "cpu_ms": 1000 * cpu / calls,
    }


def model_rows(model: Path | None, ep: str, name: str, calls: int, **extra: object) -> list[dict]:
    """The bare model call at batch 1 (a uint8 crop through InferenceModel.infer)."""
    from lmk.runtime.bundled import bundled_model
    from lmk.runtime.session import InferenceModel, RuntimeOptions

    crop = np.random.default_rng(0).integers(0, 256, (1, 128, 128, 3), dtype=np.uint8)
    rows = []
    for threads in (1, 2):
        for spin in (False, True):
            options = RuntimeOptions(ep=ep, threads=threads, spin=spin, **extra)  # type: ignore[arg-type]
            session = InferenceModel(model or bundled_model(), options)
            rows.append(
                {
                    "part": f"model call, {name}",
                    "threads": threads,
                    "spin": spin,
                    **timed(lambda s=session: s.infer(crop), calls),
                }
            )
            del session
    return rows


def pipeline_rows(clip: Path, model: Path | None, calls: int) -> list[dict]:
    """The other parts of a frame, on the clip's decoded frames (ORT CPU, 1 thread)."""
    from lmk.runtime.api import LandmarkSession
    from lmk.runtime.faces import crop_faces
    from lmk.runtime.outputs import face_record
    from lmk.runtime.sources import open_source

    rows = []
    which = "ORT CPU int8" if model else "ORT CPU fp32"
    for threads in (None, 1):
        params = [] if threads is None else [cv2.CAP_PROP_N_THREADS, threads]
        capture = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG, params)
        frames = []

        def read(capture: cv2.VideoCapture = capture, frames: list = frames) -> None:
            ok, image = capture.read()
            if ok:
                frames.append(image)

        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        label = "FFmpeg's default threads" if threads is None else f"{threads} FFmpeg thread"
        rows.append({"part": f"decode a frame ({label})", **timed(read, count - 1, warm=1)})
        capture.release()
    with open_source(clip) as source:
        frames = [frame.image for frame in source]
    session = LandmarkSession(model, ep="cpu", threads=1)
    tracker = session.tracker("frame")
    start, cpu = time.perf_counter(), time.process_time()
    tracker.step(frames[0])
    rows.append(
        {
            "part": f"first frame: window scan + 2 refinements, {which}",
            "wall_ms": 1000 * (time.perf_counter() - start),
            "wall_p10_ms": float("nan"),
            "cpu_ms": 1000 * (time.process_time() - cpu),
        }
    )
    faces = tracker.step(frames[1])
    region = faces[0].region
    turn = iter(range(10**9))

    def next_frame() -> np.ndarray:
        return frames[1 + next(turn) % (len(frames) - 1)]

    rows.append(
        {
            "part": "crop (one warp of the frame)",
            **timed(lambda: crop_faces(next_frame(), [region], session.crop, 128), calls),
        }
    )
    rows.append(
        {
            "part": f"tracker.step (crop + model + tracking), {which}",
            **timed(lambda: tracker.step(next_frame()), calls),
        }
    )
    record = {"frame": 1, "name": "frame 1", "time": 0.04}
    rows.append(
        {
            "part": "JSONL line (writer thread)",
            **timed(
                lambda: json.dumps({**record, "faces": [face_record(f) for f in faces]}), calls
            ),
        }
    )
    return rows


def markdown(info: dict, rows: list[dict]) -> str:
    m = info["machine"]
    lines = [
        "# lmk-run's parts, each alone (bundled PIPNet-MobileNetV2 128 px, 640x480 clip)",
        "",
        f"CPU: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), flags "
        f"{', '.join(m['cpu_flags']) or 'unknown'}. Wall: median and 10th percentile of "
        f"{info['calls']} calls; CPU: process CPU time per call (all threads).",
        "",
    ]
    if max(info["load"].values()) > QUIET_LOAD:
        lines += [
            f"**Not a quiet machine**: load average {info['load']['start']:.1f} at the start, "
            f"{info['load']['end']:.1f} at the end: wall times are inflated (single-threaded "
            "loops most, as the scheduler shares the cores out); CPU times much less so.",
            "",
        ]
    lines += [
        "| part | threads | spin | wall ms | wall p10 ms | CPU ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        threads = r.get("threads", "")
        spin = "" if "spin" not in r else ("on" if r["spin"] else "off")
        lines.append(
            f"| {r['part']} | {threads} | {spin} | {r['wall_ms']:.2f} | {r['wall_p10_ms']:.2f} "
            f"| {r['cpu_ms']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--int8", type=Path, help="an --int8 export of the bundled PIPNet")
    parser.add_argument("--int8-ov", type=Path, help="an --int8-target openvino export")
    parser.add_argument("--venv-ov", type=Path, default=ROOT / ".venv-ov")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--model-only", choices=["openvino"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model_only:  # the OpenVINO rows, run in .venv-ov by the main invocation
        rows = model_rows(None, "openvino", "OV bf16", args.calls, ov_precision="bf16")
        if args.int8_ov:
            rows += model_rows(args.int8_ov, "openvino", "OV int8", args.calls)
        print(json.dumps(rows))
        return
    from lmk.bench.machine import describe, machine_slug

    machine = describe()
    load_start = os.getloadavg()[0]
    rows = model_rows(None, "cpu", "ORT CPU fp32", args.calls)
    if args.int8:
        rows += model_rows(args.int8, "cpu", "ORT CPU int8", args.calls)
    python_ov = args.venv_ov / "bin" / "python"
    if python_ov.exists():
        command = [str(python_ov), __file__, "--model-only", "openvino", "--calls", str(args.calls)]
        if args.int8_ov:
            command += ["--int8-ov", str(args.int8_ov)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows += json.loads(done.stdout.strip().splitlines()[-1])
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        synth = [str(Path(sys.executable).parent / "lmk-synth"), "video", str(clip)]
        synth += ["--seed", "7", "--frames", "150", "--size", "640x480"]
        subprocess.run(synth, check=True, capture_output=True)
        rows += pipeline_rows(clip, args.int8, args.calls)
    info = {
        "machine": machine,
        "calls": args.calls,
        "int8": str(args.int8) if args.int8 else None,
        "int8_ov": str(args.int8_ov) if args.int8_ov else None,
        "load": {"start": load_start, "end": os.getloadavg()[0]},
    }
    out = args.out or ROOT / "benchmarks" / "results" / machine_slug(machine)
    out.mkdir(parents=True, exist_ok=True)
    (out / "video_cpu_parts.json").write_text(json.dumps({**info, "rows": rows}, indent=1))
    (out / "video_cpu_parts.md").write_text(markdown(info, rows))
    print(markdown(info, rows))


if __name__ == "__main__":
    main()
