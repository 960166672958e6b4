"""Per-face latency of lmk files in the browser (onnxruntime-web in the system Chromium)
against ONNX Runtime CPU in Python, on the same machine, in the same run.

Models: the bundled PIPNet-MobileNetV2 and hourglass (128 px) and PIPNet-R18 (256 px,
random weights: latency does not depend on them), exported here with lmk-export. Browser
backends: the WASM EP with 1 thread and with every core (``lmk web`` sends the COOP/COEP
headers threads need), and WebGPU where the browser offers an adapter (headless Chromium
with ``--disable-gpu`` does not: the row says so). Each page load is one EP and thread
count. Python: ``InferenceModel`` on the CPU EP with the same thread counts.

Rounds are round-robin (every configuration once per round, so a noisy neighbour hits all
alike); each configuration's number is the median over all its timed runs. Per-face
latency is the batch's time over its size (batch 1 and 8). Also writes a screenshot of the
page tracking a SynthFace frame (web_page.png). Results: web_latency.{json,md} under
benchmarks/results/<machine>/.

    .venv/bin/python benchmarks/web_latency.py [--runs 20] [--rounds 3] [--batches 1,8]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from lmk.bench.machine import describe, load_note, machine_slug, usable_cores
from lmk.runtime.bundled import bundled_model
from lmk.runtime.session import InferenceModel, RuntimeOptions
from lmk.synth import synth_crops
from lmk.synth.video import render_clip
from lmk.web.browser import chromium, open_page, serve_page

ROOT = Path(__file__).resolve().parent.parent


def export_r18(folder: Path) -> Path:
    path = folder / "pipnet_r18_256.onnx"
    command = [str(Path(sys.executable).parent / "lmk-export"), "--model", "pipnet",
               "--backbone", "resnet18", "--input-size", "256", "-o", str(path)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    return path


def browser_times(context, url: str, query: str, model: Path, crop: np.ndarray, batch: int,
                  runs: int) -> tuple[list[float], dict]:  # fmt: skip
    page = open_page(context, f"{url}?{query}")
    try:
        page.evaluate("(name) => window.lmk.load(name)", model.name)
        crop_b64 = base64.b64encode(crop.tobytes()).decode()
        times = page.evaluate(
            "([c, b, r]) => window.lmk.timeInfer(c, b, r)", [crop_b64, batch, runs]
        )
        return times, page.evaluate("window.lmk.info()")
    finally:
        page.close()


def python_times(model: InferenceModel, crop: np.ndarray, batch: int, runs: int) -> list[float]:
    crops = np.repeat(crop[None], batch, axis=0)
    for _ in range(5):
        model.infer(crops)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.infer(crops)
        times.append(1000.0 * (time.perf_counter() - start))
    return times


def screenshot(context, url: str, out: Path) -> None:
    """The page tracking a 640x480 SynthFace clip (two faces) with the bundled PIPNet; 40
    frames, so the numbers on screen (the last 30 frames) are tracking, not the first
    frame's whole-frame search."""
    with tempfile.TemporaryDirectory() as tmp:
        frames = list(render_clip(3, 40, (640, 480), num_faces=2))
        for f in frames:
            cv2.imwrite(f"{tmp}/f{f.index}.png", f.image)
        context.route(
            "**/shot/*", lambda r: r.fulfill(path=f"{tmp}/{r.request.url.rsplit('/', 1)[-1]}")
        )
        page = open_page(context, url)
        page.set_viewport_size({"width": 1280, "height": 720})
        page.evaluate("(u) => window.lmk.track(u)", [f"shot/f{i}.png" for i in range(len(frames))])
        page.screenshot(path=str(out), full_page=True)
        page.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--screenshot-only", action="store_true", help="only web_page.png")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    machine = describe()
    out = args.out or ROOT / "benchmarks" / "results" / machine_slug(machine)
    out.mkdir(parents=True, exist_ok=True)
    cores = usable_cores()
    threads = sorted({1, cores})
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        models = {
            "PIPNet-MobileNetV2 128 (bundled)": bundled_model("pipnet"),
            "Hourglass 2x128 128 (bundled)": bundled_model("hourglass"),
        }
        if not args.screenshot_only:
            models["PIPNet-R18 256 (random weights)"] = export_r18(Path(tmp))
        with serve_page(list(models.values())) as url, chromium() as context:
            screenshot(context, url, out / "web_page.png")
            if args.screenshot_only:
                return
            webgpu = open_page(context, f"{url}?ep=auto").evaluate("window.lmk.info()")["ep"]
            times: dict[tuple, list[float]] = {}
            for _ in range(args.rounds):
                for label, path in models.items():
                    size = InferenceModel(path, RuntimeOptions(ep="cpu", threads=1)).input_size
                    crop = synth_crops(1, size, seed=7)[0]
                    for t in threads:
                        cpu = InferenceModel(path, RuntimeOptions(ep="cpu", threads=t))
                        for batch in batches:
                            key = (label, batch, t)
                            got, info = browser_times(
                                context, url, f"ep=wasm&threads={t}", path, crop, batch, args.runs
                            )
                            assert info["threads"] == t, info
                            times.setdefault(("wasm", *key), []).extend(got)
                            times.setdefault(("cpu", *key), []).extend(
                                python_times(cpu, crop, batch, args.runs)
                            )
    rows = []
    for label in models:
        for batch in batches:
            for t in threads:
                web = statistics.median(times[("wasm", label, batch, t)]) / batch
                cpu = statistics.median(times[("cpu", label, batch, t)]) / batch
                rows.append({"model": label, "batch": batch, "threads": t,
                             "wasm_ms_per_face": web, "ort_cpu_ms_per_face": cpu,
                             "wasm_over_cpu": web / cpu})  # fmt: skip
    load_after = os.getloadavg()
    result = {
        "machine": machine,
        "load_note": load_note(load_before[0], load_after[0], own=max(threads)),
        "chromium": subprocess.run(
            ["chromium", "--version"], capture_output=True, text=True
        ).stdout.strip(),
        "webgpu": "available"
        if webgpu == "webgpu"
        else "not offered (headless Chromium with --disable-gpu, no GPU)",
        "load_average": {"before": load_before, "after": load_after},
        "runs": args.runs,
        "rounds": args.rounds,
        "rows": rows,
    }
    (out / "web_latency.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        "# Browser latency: onnxruntime-web (WASM EP) vs ORT CPU in Python",
        "",
        f"Machine: {machine.get('cpu')} ({cores} cores), flags {', '.join(machine.get('cpu_flags', []))}.",
        f"Browser: {result['chromium']}, headless. WebGPU: {result['webgpu']}.",
        f"Median of {args.rounds} rounds x {args.runs} runs; per face = batch time / batch.",
        f"{result['load_note']} Ratios are taken within one run.",
        "",
        "| model | batch | threads | WASM ms/face | ORT CPU ms/face | WASM / CPU |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['batch']} | {r['threads']} | {r['wasm_ms_per_face']:.2f} | "
                     f"{r['ort_cpu_ms_per_face']:.2f} | {r['wasm_over_cpu']:.2f}x |")  # fmt: skip
    (out / "web_latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
