"""lmk-batch on this machine: faces/s with 1 and 2 Ray workers next to single-process lmk-run
on the same images, 1 worker with its crops pooled (--batch-size 32) vs one image an inference
(--batch-size 1), the scaling efficiency, where the workers' time goes, the output's size
per face, and from those the arithmetic of a 10-million-image job on a cluster.

Each configuration is the installed console script, run as a user runs it, in its own
process, on the same folder of SynthFace face photos (``lmk.synth.crops.synth_crop``: a face
filling a 112 px image, as in an aligned-face collection) with the frame detector on the
whole image (``--box``): three model runs per image (the box, then two refinements).

- lmk-run: ``lmk-run FOLDER --json`` with ORT's default threads (all cores), its own
  frames/s (after the model is loaded).
- lmk-batch: ``lmk-batch FOLDER --out DS --workers N`` (one ORT thread per worker, Ray
  started locally by the command); faces/s from its summary.json (from Ray being up: actor
  start-up included) and the wall time of the whole command (Ray's start-up included).
- lmk-batch ``--batch-size 1`` (1 worker): each image's crops in inferences of their own, as
  lmk-run runs them, against the default ``--batch-size 32`` (a unit's images pooled: a
  round of 32 images' crops in one inference), in the same run on the same images.

Writes batch.{json,md} under benchmarks/results/<machine>/.

    .venv/bin/python benchmarks/batch.py [--images 160] [--files-per-task 32]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

from lmk.bench.machine import describe, load_note, machine_slug
from lmk.core.geometry import CropPolicy
from lmk.synth.crops import synth_crop
from lmk.synth.params import sample_seed

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SIZE = 112
BOX = f"0,0,{SIZE},{SIZE}"
RUN_SUMMARY = re.compile(r"(\d+) frames, (\d+) faces, (\d+) detector runs, ([\d.]+) frames/s")
TARGET_IMAGES = 10_000_000
BATCH_SIZE = 32
"""lmk-batch's default --batch-size: crops an inference, pooled across a unit's images."""


def make_images(folder: Path, count: int) -> None:
    for i in range(count):
        image = synth_crop(sample_seed(11, i), SIZE, CropPolicy(), image_size=160)[0]
        cv2.imwrite(str(folder / f"{i:06d}.png"), image)


def _run(args: list[str]) -> tuple[str, float]:
    start = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stderr}")
    return result.stderr, wall


def run_lmk_run(folder: Path, work: Path) -> dict:
    err, wall = _run(
        [
            *(str(BIN / "lmk-run"), str(folder), "--detector", "frame", "--box", BOX),
            *("--json", str(work / "lmk-run.jsonl"), "--ep", "cpu", "--quiet", "--overwrite"),
        ]
    )
    match = RUN_SUMMARY.search(err)
    if not match:
        raise SystemExit(f"no summary in lmk-run's output:\n{err}")
    frames, faces, fps = int(match.group(1)), int(match.group(2)), float(match.group(4))
    return {
        "name": "lmk-run (1 process)",
        "workers": 1,
        "files": frames,
        "faces": faces,
        "faces_per_s": faces * fps / frames if frames else 0.0,
        "faces_per_worker_s": faces * fps / frames if frames else 0.0,
        "wall_s": wall,
        "wall_faces_per_s": faces / wall,
    }


def run_lmk_batch(
    folder: Path, work: Path, workers: int, files_per_task: int, batch_size: int
) -> dict:
    out = work / f"batch-{workers}w-{batch_size}b"
    _, wall = _run(
        [
            *(str(BIN / "lmk-batch"), str(folder), "--out", str(out)),
            *("--workers", str(workers), "--files-per-task", str(files_per_task)),
            *("--batch-size", str(batch_size)),
            *("--ep", "cpu", "--detector", "frame", "--box", BOX, "--quiet"),
        ]
    )
    summary = json.loads((out / "summary.json").read_text())
    run = summary["run"]
    shards = sorted((out / "shards").glob("part-*.parquet"))
    stages = run["worker_stage_seconds"]
    total = sum(stages.values())
    return {
        "name": f"lmk-batch, {workers} worker{'s' if workers > 1 else ''}, "
        f"--batch-size {batch_size}",
        "workers": workers,
        "batch_size": batch_size,
        "files": run["files"],
        "faces": run["faces"],
        "faces_per_s": run["faces_per_s"],
        "faces_per_worker_s": run["faces_per_worker_s"],
        "steady_faces_per_s": workers * run["faces_per_worker_s"],
        "run_s": run["seconds"],
        "wall_s": wall,
        "wall_faces_per_s": run["faces"] / wall,
        "startup_s": wall - run["seconds"],
        "stage_seconds": stages,
        "stage_share": {k: v / total for k, v in stages.items()} if total else {},
        "shards": len(shards),
        "bytes": sum(p.stat().st_size for p in shards),
        "bytes_one_file": _one_file_bytes(out, work),
    }


def _one_file_bytes(dataset: Path, work: Path) -> int:
    """The dataset's rows as one Parquet file (zstd): the size per face of large shards,
    where footers no longer count."""
    import pyarrow.parquet as pq

    from lmk.batch.dataset import read_dataset

    path = work / "one.parquet"
    pq.write_table(read_dataset(dataset).replace_schema_metadata(None), path, compression="zstd")
    return path.stat().st_size


def _pooled(rows: list[dict], workers: int) -> dict:
    """The lmk-batch row of ``workers`` at the default --batch-size."""
    return next(
        r for r in rows if r.get("workers") == workers and r.get("batch_size") == BATCH_SIZE
    )


def plan(results: dict) -> dict:
    """The 10-million-image job, from this run's per-worker rate and output size."""
    one, two = _pooled(results["rows"], 1), _pooled(results["rows"], 2)
    faces_per_image = one["faces"] / one["files"]
    per_worker = one["faces_per_worker_s"] / faces_per_image  # images/s, one 1-CPU worker
    efficiency = results["scaling_efficiency"]
    bytes_per_face = two["bytes_one_file"] / two["faces"]
    clusters = []
    for workers in (64, 320, 1024):
        rate = workers * per_worker * efficiency
        clusters.append(
            {"workers": workers, "images_per_s": rate, "hours": TARGET_IMAGES / rate / 3600}
        )
    return {
        "images": TARGET_IMAGES,
        "faces_per_image": faces_per_image,
        "images_per_s_per_worker": per_worker,
        "efficiency_assumed": efficiency,
        "bytes_per_face": bytes_per_face,
        "bytes_per_face_small_shards": two["bytes"] / two["faces"],
        "output_gb": TARGET_IMAGES * faces_per_image * bytes_per_face / 1e9,
        "clusters": clusters,
    }


def markdown(results: dict) -> str:
    m, p = results["machine"], results["plan"]
    lines = [
        f"# lmk-batch: Ray Data workers vs single-process lmk-run ({results['images']} images)",
        "",
        f"CPU: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), flags "
        f"{', '.join(m['cpu_flags']) or 'unknown'}; onnxruntime "
        f"{m['versions'].get('onnxruntime', '?')}, ray {results['ray']}. Bundled "
        "PIPNet-MobileNetV2 (128 px), ORT CPU EP, SynthFace face photos of 112 px, frame "
        f"detector on the whole image (4 model runs an image: the box, two refinements, the "
        f"final pass), {results['files_per_task']} images per shard.",
        "",
        load_note(results["load_before"], results["load_after"], "rates", own=m["usable_cores"])
        + " The ratios come from the same run.",
        "",
        "Three rates per run: **steady** (faces over the seconds the workers spent on units, "
        "times the workers: what a long job gets), **from Ray up** (actor start-up and "
        "Ray Data's scheduling included) and **wall** (the whole command, Ray's own "
        "start-up included). lmk-run's steady rate is its frames/s after loading the model.",
        "",
        "| run | files | faces | steady faces/s | per worker | faces/s from Ray up "
        "| wall s | faces/s (wall) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['name']} | {r['files']} | {r['faces']} | "
            f"{r.get('steady_faces_per_s', r['faces_per_s']):.1f} | "
            f"{r['faces_per_worker_s']:.1f} | {r['faces_per_s']:.1f} | "
            f"{r['wall_s']:.1f} | {r['wall_faces_per_s']:.1f} |"
        )
    lines += [
        "",
        f"- Scaling efficiency, 2 workers vs 1 (steady faces/s): "
        f"**{results['scaling_efficiency']:.2f}** (1.00 = twice the rate; on 2 cores the "
        "second worker competes with the first, with the driver and Ray's own processes).",
        f"- lmk-batch with 2 workers vs lmk-run (2 ORT threads, one process), steady: "
        f"{results['batch2_vs_run']:.2f}x its faces/s.",
        f"- Crops pooled across images, 1 worker, --batch-size {BATCH_SIZE} vs 1 (steady "
        f"faces/s, same run, same images): **{results['pooled_vs_single']:.2f}x** "
        f"({results['infer_pooled_vs_single']:.2f}x less time in inference). The faces are "
        "the same (tests/batch/test_batch_pooled_crops.py: within 1e-5 of the crop).",
        "",
        "Where the workers' time goes (seconds summed over workers; reading runs in its own "
        "thread and overlaps inference):",
        "",
        "| run | start-up s (Ray + actors) | " + " | ".join(results["stages"]) + " |",
        "|---|---|" + "---|" * len(results["stages"]),
    ]
    for r in results["rows"]:
        if "stage_seconds" not in r:
            continue
        shares = " | ".join(
            f"{r['stage_seconds'].get(s, 0.0):.1f} ({100 * r['stage_share'].get(s, 0.0):.0f} %)"
            for s in results["stages"]
        )
        lines.append(f"| {r['name']} | {r['startup_s']:.1f} | {shares} |")
    lines += [
        "",
        "## Plan: 10 million images on a cluster",
        "",
        "Arithmetic from this run (CPU workers of 1 core, 1 ORT thread each):",
        "",
        f"- One worker: {p['images_per_s_per_worker']:.1f} images/s "
        f"({p['faces_per_image']:.2f} faces per image here).",
        f"- Scaling assumed from the measured 2-worker efficiency: {p['efficiency_assumed']:.2f}"
        " (workers share nothing but the input store and the output folder; Ray Data "
        "streams units to them).",
        "",
        "| workers (1 CPU each) | images/s | hours for 10 M images |",
        "|---|---|---|",
    ]
    for c in p["clusters"]:
        lines.append(f"| {c['workers']} | {c['images_per_s']:.0f} | {c['hours']:.1f} |")
    lines += [
        "",
        f"- Time = 10,000,000 / (workers x {p['images_per_s_per_worker']:.1f} x "
        f"{p['efficiency_assumed']:.2f}) s. Photos that need the scanning frame detector "
        "(no `--box`, ~35 model runs an image instead of 4) cost about 10x more; YuNet "
        "costs one detector run plus 4 model runs.",
        f"- Output: {p['bytes_per_face']:.0f} bytes a face in Parquet with large shards "
        f"(zstd; 98 float32 points = 784 bytes raw, plus box, score, ids; this run's small "
        f"shards of {results['files_per_task']} images took "
        f"{p['bytes_per_face_small_shards']:.0f}, their footers counting) -> "
        f"{p['output_gb']:.1f} GB for {p['images'] * p['faces_per_image'] / 1e6:.1f} M faces.",
        "- Shards: use `--files-per-task 1000` at this scale: 10,000 shards of ~"
        f"{1000 * p['faces_per_image'] * p['bytes_per_face'] / 1e6:.1f} MB, each written "
        "whole; a rerun reads only their footers to know what is done.",
        "- Input: give a Parquet list file (`path` column) on shared storage; listing 10 M "
        "files through a folder walk on a network file system is slow. The driver holds the "
        "list (about 200 bytes an input as unit JSON: ~2 GB for 10 M): give it a node with "
        "memory to match, or split the list into several runs on one --out.",
        "- GPU workers (`--ep cuda --gpus-per-worker 0.25`) were not measured here (no GPU on "
        "this machine); measure a few thousand images first and redo this arithmetic.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--files-per-task", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    info = describe()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="lmk-batch-bench-") as tmp:
        work = Path(tmp)
        folder = work / "images"
        folder.mkdir()
        make_images(folder, args.images)
        rows = [run_lmk_run(folder, work)]
        for workers, batch_size in ((1, 1), (1, BATCH_SIZE), (2, BATCH_SIZE)):
            rows.append(run_lmk_batch(folder, work, workers, args.files_per_task, batch_size))
    single, one, two = rows[1], _pooled(rows, 1), _pooled(rows, 2)
    stages = sorted({s for r in rows[1:] for s in r["stage_seconds"]})
    results = {
        "machine": info,
        "ray": ray.__version__,
        "images": args.images,
        "files_per_task": args.files_per_task,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "rows": rows,
        "stages": stages,
        "scaling_efficiency": two["steady_faces_per_s"] / (2 * one["steady_faces_per_s"]),
        "batch2_vs_run": two["steady_faces_per_s"] / rows[0]["faces_per_s"],
        "pooled_vs_single": one["steady_faces_per_s"] / single["steady_faces_per_s"],
        "infer_pooled_vs_single": single["stage_seconds"]["infer"] / one["stage_seconds"]["infer"],
    }
    results["plan"] = plan(results)
    out = ROOT / "benchmarks" / "results" / machine_slug(info)
    out.mkdir(parents=True, exist_ok=True)
    (out / "batch.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "batch.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
