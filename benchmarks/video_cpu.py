"""lmk-run on the CPU EPs: frames/s by backend, ORT threads and spinning, ORT CPU vs OpenVINO.

Runs the installed console script as a user does (``lmk-run CLIP --detector frame --json
lm.jsonl [--out annotated.mp4] [--spin] --ep ...``): ORT's CPU EP from .venv, the OpenVINO
EP from .venv-ov (onnxruntime-openvino replaces onnxruntime, so it has its own venv: ``make
venv venv-ov``). Each configuration runs ``--repeats`` times, round-robin (every
configuration once per round, so a noisy neighbour hits all alike), and the median is kept.
Each run is its own process: no session's spinning threads meet another's, but within a run
ORT's threads meet lmk-run's reader and writer threads, which is what ``--spin`` is about.
frames/s and the per-stage times are lmk-run's own summary (after the model is loaded): the
whole run, and the rate after the first frame (whose start-up and detection, 40 windows and
two refinements of 16 candidates with the frame detector, a 150-frame clip cannot
amortise). Each backend runs at every ``--threads`` count with spinning off, and spinning on
at the largest count (with one thread ORT has no pool threads to spin). NME is against the
clip's ground truth. Writes video_cpu.{json,md,png} under benchmarks/results/<machine>/, with
the CPU named and a note when the machine was not quiet (load average above 1.5). The run
as benchmarks/cpu_suite.sh makes it (5 backends) takes about 3 minutes on a quiet 2-core
machine.

    .venv/bin/python benchmarks/video_cpu.py [--frames 150] [--size 640x480] [--repeats 3]
        [--int8 pipnet_int8.onnx] [--int8-ov pipnet_int8_ov.onnx] [--threads 1,2]
        [--outputs json,video]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lmk.bench.machine import describe, load_note, machine_slug
from lmk.core.layouts import get_layout
from lmk.core.metrics import nme
from lmk.runtime import cpu
from lmk.runtime.pipeline import STAGES

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = re.compile(
    r"(\d+) frames, (\d+) faces, (\d+) detector runs, ([\d.]+) frames/s on EP (\w+)"
)
AFTER_FIRST = re.compile(r"first frame (\d+) ms \(start-up and detection\), then ([\d.]+) frames/s")


def backends(
    venv: Path, venv_ov: Path, int8: Path | None, int8_ov: Path | None = None
) -> list[dict]:
    """(name, lmk-run of which venv, model, EP flags); OpenVINO rows only where .venv-ov is
    made, BF16 only where the CPU has it. OV int8 runs ``int8_ov`` (an ``--int8-target
    openvino`` file) where given, else the CPU-target file."""
    rows = [{"name": "ORT CPU fp32", "bin": venv, "model": None, "flags": ["--ep", "cpu"]}]
    if int8:
        rows.append({"name": "ORT CPU int8", "bin": venv, "model": int8, "flags": ["--ep", "cpu"]})
    if (venv_ov / "lmk-run").exists():
        ov = ["--ep", "openvino"]
        rows.append(
            {
                "name": "OV fp32",
                "bin": venv_ov,
                "model": None,
                "flags": [*ov, "--ov-precision", "fp32"],
            }
        )
        if cpu.has_bf16():
            rows.append(
                {
                    "name": "OV bf16",
                    "bin": venv_ov,
                    "model": None,
                    "flags": [*ov, "--ov-precision", "bf16"],
                }
            )
        if int8_ov or int8:
            rows.append({"name": "OV int8", "bin": venv_ov, "model": int8_ov or int8, "flags": ov})
    else:
        print(f"no {venv_ov}/lmk-run (make venv-ov): OpenVINO rows skipped", file=sys.stderr)
    return rows


def run_lmk(
    row: dict, clip: Path, folder: Path, spin: bool, video: bool, threads: int | None
) -> dict:
    """One lmk-run; its summary line parsed, its JSONL kept for scoring."""
    args = [str(row["bin"] / "lmk-run"), str(clip), "--detector", "frame", "--quiet", "--overwrite"]
    args += ["--json", str(folder / "lm.jsonl"), *row["flags"]]
    if row["model"]:
        args += ["--model", str(row["model"])]
    if video:
        args += ["--out", str(folder / "annotated.mp4")]
    if spin:
        args.append("--spin")
    if threads:
        args += ["--threads", str(threads)]
    env = {**os.environ, "LMK_CACHE_DIR": str(folder / "cache")}
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=1200)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stderr}")
    match = SUMMARY.search(result.stderr)
    stages_line = re.search(r"mean ms per frame: (.*)", result.stderr)
    after = AFTER_FIRST.search(result.stderr)
    if not match or not stages_line or not after:
        raise SystemExit(f"no summary in lmk-run's output:\n{result.stderr}")
    stage_ms = dict.fromkeys(STAGES, 0.0)
    for part in stages_line.group(1).split(", "):
        name, value = part.rsplit(" ", 1)
        stage_ms[name] = float(value)
    return {
        "frames": int(match.group(1)),
        "fps": float(match.group(4)),
        "first_ms": float(after.group(1)),
        "fps_after_first": float(after.group(2)),
        "ep": match.group(5),
        "stage_ms": stage_ms,
    }


def clip_nme(jsonl: Path, truth: list[dict]) -> float:
    """Mean NME of each frame's first face against the clip's truth (frames with a face)."""
    layout = get_layout("wflw98")
    errors = []
    for line, gt in zip(jsonl.read_text().splitlines(), truth, strict=True):
        faces = json.loads(line)["faces"]
        if faces:
            pred = np.array(faces[0]["landmarks"])
            errors.append(float(nme(pred, np.array(gt["faces"][0]["landmarks"]), layout)[0]))
    return float(np.mean(errors)) if errors else float("nan")


def _label(r: dict) -> str:
    return (
        f"{r['backend']}, {r['outputs']}, {r['threads']} thr, spin {'on' if r['spin'] else 'off'}"
    )


def markdown(results: list[dict], info: dict) -> str:
    m = info["machine"]
    load = info["load"]
    lines = [
        f"# lmk-run on the CPU EPs ({info['size']}, {info['frames']} frames)",
        "",
        f"CPU: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), flags "
        f"{', '.join(m['cpu_flags']) or 'unknown'}. onnxruntime {m['versions'].get('onnxruntime', '?')}, "
        f"onnxruntime-openvino {info['openvino_version'] or 'not installed'}. Bundled "
        f"PIPNet-MobileNetV2 (128 px), frame detector + tracking, ORT threads "
        f"{', '.join(map(str, info['threads']))}. Median of {info['repeats']} runs, round-robin; "
        f"the whole benchmark took {info['seconds']:.0f} s. "
        "frames/s is lmk-run's own figure for the whole run; *after first* leaves out the first "
        "frame (start-up and the frame detector's window scan with its refinements, *first ms*), "
        "which is what a long video converges to. Stage times are mean ms per frame over the "
        "whole run; reading and drawing/writing run in their own threads, overlapping inference.",
        "",
    ]
    lines += [load_note(load["start"], load["end"], "frames/s", own=max(info["threads"])), ""]
    lines += [
        "| backend | outputs | threads | spin | frames/s | after first | first ms | "
        + " | ".join(STAGES)
        + " | NME |",
        "|---|---|---|---|---|---|---|" + "---|" * len(STAGES) + "---|",
    ]
    for r in results:
        stages = " | ".join(f"{r['stage_ms'][s]:.1f}" for s in STAGES)
        lines.append(
            f"| {r['backend']} | {r['outputs']} | {r['threads']} | {'on' if r['spin'] else 'off'} "
            f"| {r['fps']:.1f} | {r['fps_after_first']:.1f} | {r['first_ms']:.0f} | {stages} "
            f"| {100 * r['nme']:.2f} % |"
        )
    by = {(r["backend"], r["outputs"], r["threads"], r["spin"]): r["fps"] for r in results}
    spin_lines, thread_lines = [], []
    for (backend, outputs, threads, spin), fps in by.items():
        if spin and (backend, outputs, threads, False) in by:
            off = by[(backend, outputs, threads, False)]
            spin_lines.append(f"- {backend}, {outputs}, {threads} threads: {fps / off:.2f}x")
        one = by.get((backend, outputs, 1, False))
        if not spin and threads != 1 and one:
            thread_lines.append(f"- {backend}, {outputs}: {threads} threads / 1 = {fps / one:.2f}x")
    if spin_lines:
        lines += ["", "Spinning on / off, frames/s in the same run:", "", *spin_lines]
    if thread_lines:
        lines += ["", "ORT threads (spinning off), frames/s in the same run:", "", *thread_lines]
    lines += ["", "![lmk-run on the CPU EPs](video_cpu.png)"]
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.45 * len(results) + 1.2))
    labels = [_label(r) for r in results]
    ax.barh(
        labels, [r["fps"] for r in results], color=["C1" if r["spin"] else "C0" for r in results]
    )
    for i, r in enumerate(results):
        ax.text(r["fps"], i, f" {r['fps']:.0f}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("lmk-run frames/s (median)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def openvino_version(venv_ov: Path) -> str | None:
    python = venv_ov / "python"
    if not python.exists():
        return None
    code = "import importlib.metadata as m; print(m.version('onnxruntime-openvino'))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return out.stdout.strip() or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", default="1,2", help="lmk-run --threads counts to run, comma-separated"
    )
    parser.add_argument("--int8", type=Path, help="an --int8 export of the bundled PIPNet")
    parser.add_argument(
        "--int8-ov", type=Path, help="an --int8 --int8-target openvino export, for OV int8"
    )
    parser.add_argument(
        "--outputs", default="json,video", help="json (JSONL only), video (+ --out)"
    )
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv")
    parser.add_argument("--venv-ov", type=Path, default=ROOT / ".venv-ov")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    machine = describe()
    out = args.out or ROOT / "benchmarks" / "results" / machine_slug(machine)
    out.mkdir(parents=True, exist_ok=True)
    rows = backends(args.venv / "bin", args.venv_ov / "bin", args.int8, args.int8_ov)
    kinds = [k for k in ("json", "video") if k in args.outputs.split(",")]
    counts = sorted({int(t) for t in args.threads.split(",")})
    # Spinning only means something with pool threads: on at the largest count only.
    modes = [(t, False) for t in counts] + ([(counts[-1], True)] if counts[-1] > 1 else [])
    configs = [(row, kind, t, spin) for row in rows for kind in kinds for t, spin in modes]
    runs: dict[int, list[dict]] = {i: [] for i in range(len(configs))}
    began, load_start = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clip = folder / "clip.mp4"
        synth = [str(args.venv / "bin" / "lmk-synth"), "video", str(clip), "--seed", "7"]
        synth += ["--frames", str(args.frames), "--size", args.size]
        subprocess.run(synth, check=True, capture_output=True)
        truth = [json.loads(line) for line in clip.with_suffix(".jsonl").read_text().splitlines()]
        # One untimed run per backend first: OpenVINO compiles into its cache, files get read.
        for row in rows:
            run_lmk(row, clip, folder, False, False, counts[-1])
        for round_ in range(args.repeats):
            for i, (row, kind, threads, spin) in enumerate(configs):
                result = run_lmk(row, clip, folder, spin, kind == "video", threads)
                result["nme"] = clip_nme(folder / "lm.jsonl", truth)
                runs[i].append(result)
                print(
                    f"round {round_ + 1}: {row['name']}, {kind}, {threads} threads, spin "
                    f"{'on' if spin else 'off'}: {result['fps']:.1f} frames/s "
                    f"({result['fps_after_first']:.1f} after the first frame)",
                    flush=True,
                )
    results = []
    for i, (row, kind, threads, spin) in enumerate(configs):
        done = runs[i]
        results.append(
            {
                "backend": row["name"],
                "outputs": "JSONL" if kind == "json" else "JSONL + video",
                "threads": threads,
                "spin": spin,
                "ep": done[0]["ep"],
                "fps": statistics.median(r["fps"] for r in done),
                "fps_runs": [r["fps"] for r in done],
                "fps_after_first": statistics.median(r["fps_after_first"] for r in done),
                "first_ms": statistics.median(r["first_ms"] for r in done),
                "stage_ms": {s: statistics.median(r["stage_ms"][s] for r in done) for s in STAGES},
                "nme": statistics.median(r["nme"] for r in done),
            }
        )
    info = {
        "machine": machine,
        "openvino_version": openvino_version(args.venv_ov / "bin"),
        "size": args.size,
        "frames": args.frames,
        "repeats": args.repeats,
        "threads": counts,
        "int8": str(args.int8) if args.int8 else None,
        "int8_ov": str(args.int8_ov) if args.int8_ov else None,
        "load": {"start": load_start, "end": os.getloadavg()[0]},
        "seconds": time.perf_counter() - began,
    }
    (out / "video_cpu.json").write_text(json.dumps({**info, "results": results}, indent=1))
    (out / "video_cpu.md").write_text(markdown(results, info))
    plot(results, out / "video_cpu.png")
    print(f"wrote {out}/video_cpu.{{md,json,png}}")


if __name__ == "__main__":
    main()
