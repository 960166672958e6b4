"""FP32, BF16 and INT8 on the CPU: accuracy and latency of every precision on ORT's CPU EP
and on OpenVINO, in one run, with the usual path as the yardstick.

Per model (the bundled PIPNet-MobileNetV2 and 2-stack hourglass, and any --checkpoint, e.g. a
trained PIPNet-R18):

  usual            numpy preprocessing + ORT CPU raw heads + numpy decode (the baseline)
  ort_fp32         lmk's fused FP32 file on the CPU EP
  ort_int8_cpu     the INT8 file for ORT's CPU EP (--int8-target cpu: uint8 activations)
  ort_int8_ov      the INT8 file for OpenVINO (--int8-target openvino), on the CPU EP
  ov_fp32          the fused FP32 file on the OpenVINO EP
  ov_bf16          the same file with OpenVINO's BF16 inference hint
  ov_int8_cpu      the --int8-target cpu file on OpenVINO
  ov_int8_ov_u8    --int8-target openvino --int8-activations u8, on OpenVINO
  ov_int8_ov_s8    --int8-target openvino --int8-activations s8, on OpenVINO

Every fused file runs through lmk.runtime's InferenceModel (spinning off, as users get it).
For each: NME on held-out SynthFace faces (lmk-eval's held-out set) and its change vs
PyTorch FP32 in NME points, the max landmark difference vs PyTorch on those faces, and
latency at each batch with the ratio to the usual path, all timed in one round-robin
(lmk.bench.timing: spinning off, each variant's turn after its own warm-up call). The u8 vs
s8 rows say which activation type OpenVINO runs faster: the default of --int8-target
openvino (lmk/export/quantize.py DEFAULT_ACTIVATIONS) should be that one.

For heatmap models it also runs the INT8 sensitivity study behind lmk-export's recipe for
them (--no-sensitivity skips it): NME on the CPU EP with every op quantized (min/max), only
the convolutions (min/max), the residual trunk's Adds and BatchNorms float and the rest with
99.9th-percentile ranges, the same with the last stack's head block FP32 too (the default),
and with --sensitivity-blocks one block at a time quantized (the rest FP32).

The OpenVINO rows need onnxruntime-openvino, which replaces onnxruntime; the script also
needs torch (PyTorch is the reference), so run it in a venv with both:

    python3 -m venv .venv-cpu-precision
    .venv-cpu-precision/bin/pip install torch==2.13.0
    .venv-cpu-precision/bin/pip install -e ".[export,bench,openvino]"
    .venv-cpu-precision/bin/python benchmarks/cpu_precision.py --threads 2 \\
        [--checkpoint pipnet_r18=runs/r18/best.pt]

Without the OpenVINO EP the ORT CPU rows are measured and the OpenVINO ones listed as skipped.
Writes cpu_precision.{json,md,png} under benchmarks/results/<machine>/. --quick (few faces,
short timing) is a smoke run, not numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from lmk.bench.accuracy import held_out, predict
from lmk.bench.backends import (
    CALIBRATION_SEED,
    Unavailable,
    build_usual,
    openvino_problem,
    prepare,
    runtime_backend,
    torch_landmarks,
)
from lmk.bench.machine import describe, machine_slug, onnxruntime_providers
from lmk.bench.models import BENCH_MODELS, checkpoint_for
from lmk.bench.timing import measure
from lmk.core.errors import LmkError
from lmk.core.fileio import atomic_output, filled_folder, plan_output
from lmk.runtime.bundled import bundled_model
from lmk.runtime.session import RuntimeOptions

# variant -> (fused file, EP, OpenVINO precision); "usual" is built apart.
VARIANTS: dict[str, tuple[str, str, str]] = {
    "ort_fp32": ("fp32", "cpu", "fp32"),
    "ort_int8_cpu": ("int8-cpu", "cpu", "fp32"),
    "ort_int8_ov": ("int8-openvino", "cpu", "fp32"),
    "ov_fp32": ("fp32", "openvino", "fp32"),
    "ov_bf16": ("fp32", "openvino", "bf16"),
    "ov_int8_cpu": ("int8-cpu", "openvino", "fp32"),
    "ov_int8_ov_u8": ("int8-openvino-u8", "openvino", "fp32"),
    "ov_int8_ov_s8": ("int8-openvino-s8", "openvino", "fp32"),
}
BUNDLED = {"pipnet_small": "pipnet", "hourglass": "hourglass"}
OUTPUTS = ("cpu_precision.json", "cpu_precision.md", "cpu_precision.png")


def _checkpoints(values: list[str]) -> dict[str, Path]:
    """The bundled checkpoints, plus (or replaced by) ``NAME=PATH`` ones."""
    found = {name: bundled_model(kind, "pt") for name, kind in BUNDLED.items()}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or name not in BENCH_MODELS or not Path(path).is_file():
            raise LmkError(
                f"--checkpoint takes NAME=PATH with NAME one of {', '.join(BENCH_MODELS)} "
                f"and an existing file, got {value!r}"
            )
        found[name] = Path(path)
    return found


def build_variants(prepared, threads: int, calib: int, ov_cache: Path, skipped: list) -> dict:
    """Every variant this machine can run: name -> crops -> landmarks."""
    providers = onnxruntime_providers()
    runs = {"usual": build_usual(prepared, threads).run}
    for name, (precision, ep, ov_precision) in VARIANTS.items():
        problem = None
        if ep == "openvino":
            problem = openvino_problem("ov_bf16" if ov_precision == "bf16" else name, providers)
        if problem:
            skipped.append({"model": prepared.name, "variant": name, "reason": problem})
            continue
        options = RuntimeOptions(ep=ep, threads=threads, spin=False)
        if ep == "openvino":
            options = RuntimeOptions(
                ep=ep, threads=threads, spin=False, ov_precision=ov_precision, ov_cache_dir=ov_cache
            )
        try:
            path = prepared.fused_file(precision, calib)
            runs[name] = runtime_backend(name, path, options).run
        except (Unavailable, LmkError) as exc:
            skipped.append({"model": prepared.name, "variant": name, "reason": str(exc)})
    return runs


def accuracy(prepared, runs: dict, faces, step: int) -> list[dict[str, Any]]:
    """NME (%) of every variant and of PyTorch FP32 on the same faces, the change in points,
    and the landmark difference from PyTorch (crop-normalised max, and mean in pixels)."""
    size = prepared.checkpoint.input_size
    truth = predict(partial(torch_landmarks, prepared), faces.crops, step)
    reference = 100.0 * faces.nme(truth)
    rows = [
        {
            "variant": "pytorch",
            "nme_percent": reference,
            "nme_change_points": 0.0,
            "max_abs_diff": 0.0,
            "mean_px_diff": 0.0,
        }
    ]
    for name, run in runs.items():
        landmarks = predict(run, faces.crops, step)
        diff = np.abs(landmarks.astype(np.float64) - truth)
        value = 100.0 * faces.nme(landmarks)
        rows.append(
            {
                "variant": name,
                "nme_percent": value,
                "nme_change_points": value - reference,
                "max_abs_diff": float(diff.max()),
                "mean_px_diff": float(np.linalg.norm(landmarks - truth, axis=-1).mean() * size),
            }
        )
    return rows


def latency(prepared, runs: dict, batches: list[int], args) -> list[dict[str, Any]]:
    """p50 per variant and batch, all variants in one round-robin per batch, and the ratio to
    the usual path timed in that same round-robin."""
    from lmk.synth import synth_crops

    checkpoint = prepared.checkpoint
    crops = synth_crops(max(batches), checkpoint.input_size, checkpoint.crop, seed=0)
    rows = []
    for batch in batches:
        images = np.ascontiguousarray(crops[:batch])
        timed = measure(
            {name: partial(run, images) for name, run in runs.items()},
            rounds=args.rounds,
            min_calls=max(args.rounds, args.calls // batch),
            warmup=args.warmup,
            min_seconds=args.min_seconds,
        )
        usual = timed["usual"]["p50_ms"]
        for name, row in timed.items():
            rows.append(
                {
                    "variant": name,
                    "batch": batch,
                    "p50_ms": row["p50_ms"],
                    "p90_ms": row["p90_ms"],
                    "ms_per_face": row["p50_ms"] / batch,
                    "ratio_vs_usual": row["p50_ms"] / usual,
                    "drift_pct": row["round_spread_pct"],
                }
            )
        print(
            f"{prepared.name} batch {batch}: "
            + ", ".join(f"{n} {r['p50_ms'] / batch:.2f}" for n, r in timed.items())
            + " ms/face",
            flush=True,
        )
    return rows


def sensitivity(
    prepared, faces, calib: int, threads: int, step: int, per_block: bool = False
) -> list[dict[str, Any]]:
    """Heatmap models: NME on the CPU EP under each INT8 recipe and with one block at a time
    quantized (convolutions, min/max ranges), to show where the INT8 loss comes from."""
    from lmk.export.exporter import ExportOptions, build_onnx
    from lmk.export.quantize import Int8Plan, quantize_network
    from lmk.synth import synth_crops

    checkpoint = prepared.checkpoint
    network = prepared.network
    calibration = checkpoint.normalisation.apply_bgr_nhwc(
        synth_crops(calib, checkpoint.input_size, checkpoint.crop, seed=CALIBRATION_SEED)
    )
    reference = 100.0 * faces.nme(predict(partial(torch_landmarks, prepared), faces.crops, step))
    convs = [n for n in network.graph.node if n.op_type == "Conv"]
    blocks: dict[str, list[str]] = {}
    for node in convs:  # weights are named after the module: model.hourglasses.1.up...
        parts = node.input[1].split(".")
        numbered = len(parts) > 3 and parts[2].isdigit() and parts[1] != "stem"
        block = ".".join(parts[1:3]) if numbered else parts[1]
        blocks.setdefault(block, []).append(node.name)
    cases: list[tuple[str, Any, list[str]]] = [
        ("every op, min/max (the old default)", Int8Plan("cpu", "u8", "full"), []),
        ("convolutions, min/max", Int8Plan("cpu", "u8", "conv-minmax"), []),
        (
            "float trunk, the rest 99.9th percentile",
            Int8Plan("cpu", "u8", "float-trunk", float_tail=False),
            [],
        ),
        (
            "float trunk and last head block, the rest 99.9th percentile (default)",
            Int8Plan("cpu", "u8", "float-trunk"),
            [],
        ),
    ]
    every_conv = [n.name for n in convs]
    for block, members in blocks.items() if per_block else ():
        others = [n for n in every_conv if n not in members]
        cases.append(
            (f"only {block} (convolutions, min/max)", Int8Plan("cpu", "u8", "conv-minmax"), others)
        )
    rows = []
    with tempfile.TemporaryDirectory(prefix="lmk-sensitivity-") as tmp:
        for label, plan, exclude in cases:
            model = build_onnx(
                checkpoint,
                ExportOptions(precision="int8"),
                quantize_network(network, calibration, plan, exclude=exclude),
            )
            path = Path(tmp) / "int8.onnx"
            import onnx

            onnx.save(model, str(path))
            run = runtime_backend("int8", path, RuntimeOptions(ep="cpu", threads=threads)).run
            value = 100.0 * faces.nme(predict(run, faces.crops, step))
            rows.append(
                {"case": label, "nme_percent": value, "nme_change_points": value - reference}
            )
            print(
                f"{prepared.name} sensitivity: {label}: {value - reference:+.3f} points", flush=True
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--models", help="comma-separated subset of the models measured")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--faces", type=int, default=300, help="held-out faces for NME")
    parser.add_argument("--calib", type=int, default=64, help="SynthFace calibration crops")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=30, help="timed calls at batch 1")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--no-sensitivity", action="store_true")
    parser.add_argument(
        "--sensitivity-blocks",
        action="store_true",
        help="also quantize one block at a time (a dozen more INT8 files: ~4 min on 2 cores)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: not numbers")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.faces, args.calib, args.rounds, args.calls = 16, 16, 1, 2
        args.warmup, args.min_seconds = 1, 0.0
    try:
        run(args)
    except LmkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def run(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    checkpoints = _checkpoints(args.checkpoint)
    if args.models:
        wanted = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in checkpoints]
        if unknown:
            raise LmkError(f"--models: no checkpoint for {', '.join(unknown)}")
        checkpoints = {m: checkpoints[m] for m in wanted}
    batches = sorted({int(b) for b in args.batches.split(",")})
    if args.faces < 1 or args.calib < 8 or min(batches) < 1:
        raise LmkError("--faces >= 1, --calib >= 8 and positive --batches, please")
    machine = describe()
    out = args.out or Path("benchmarks") / "results" / machine_slug(machine)
    with filled_folder(out, overwrite=True) as folder:
        targets = [
            plan_output(folder.add(folder.folder / name), args.overwrite, checkpoints.values())
            for name in OUTPUTS
        ]
        report = measure_all(args, checkpoints, batches, machine)
        with atomic_output(targets[0]) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        with atomic_output(targets[1]) as tmp:
            tmp.write_text(markdown(report), encoding="utf-8")
        with atomic_output(targets[2]) as tmp:
            plot(report, tmp)
    print(f"wrote {', '.join(str(t.requested) for t in targets)}")


def measure_all(args, checkpoints: dict[str, Path], batches: list[int], machine: dict) -> dict:
    models: dict[str, Any] = {}
    skipped: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lmk-cpu-precision-") as cache:
        for name, path in checkpoints.items():
            checkpoint, weights = checkpoint_for(BENCH_MODELS[name], path)
            workdir = Path(cache) / name
            workdir.mkdir()
            print(f"{name}: trace, quantize, build sessions", flush=True)
            prepared = prepare(name, checkpoint, weights, workdir=workdir)
            runs = build_variants(
                prepared, args.threads, args.calib, Path(cache) / "openvino", skipped
            )
            faces = held_out(checkpoint, args.faces)
            step = max(batches)
            entry: dict[str, Any] = {
                "weights": weights,
                "family": checkpoint.spec.name,
                "args": checkpoint.spec.full_args(),
                "input_size": checkpoint.input_size,
                "faces": len(faces),
                "accuracy": accuracy(prepared, runs, faces, step),
                "latency": latency(prepared, runs, batches, args),
            }
            if checkpoint.spec.decode.startswith("heatmap") and not args.no_sensitivity:
                entry["sensitivity"] = sensitivity(
                    prepared, faces, args.calib, args.threads, step, args.sensitivity_blocks
                )
            entry["openvino_activations"] = _faster_activations(entry["latency"])
            models[name] = entry
    return {
        "benchmark": "cpu_precision",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": {
            k: getattr(args, k)
            for k in ("threads", "faces", "calib", "rounds", "calls", "warmup", "min_seconds")
        }
        | {"batches": batches, "quick": args.quick},
        "method": "ONNX Runtime spinning off in every session (the runtime's default); "
        "variants timed round-robin, each variant's turn starting with an untimed call",
        "models": models,
        "skipped": skipped,
    }


def _faster_activations(rows: list[dict[str, Any]]) -> dict[str, str] | None:
    """Per batch, which of u8 / s8 activations OpenVINO ran faster (None: not measured)."""
    p50 = {(r["variant"], r["batch"]): r["p50_ms"] for r in rows}
    found = {}
    for (variant, batch), value in p50.items():
        if variant == "ov_int8_ov_u8" and ("ov_int8_ov_s8", batch) in p50:
            found[str(batch)] = "u8" if value <= p50[("ov_int8_ov_s8", batch)] else "s8"
    return found or None


def markdown(report: dict) -> str:
    m = report["machine"]
    s = report["settings"]
    lines = [
        "# FP32, BF16 and INT8 on the CPU: accuracy and latency",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable; "
        f"{', '.join(m['cpu_flags']) or 'flags unknown'}). Versions: "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + f". ONNX Runtime providers: {', '.join(m['onnxruntime_providers'])}.",
        f"Settings: {s['threads']} threads, NME on {s['faces']} held-out SynthFace faces, "
        f"INT8 calibrated on {s['calib']} other SynthFace faces, batches "
        f"{', '.join(map(str, s['batches']))}. Method: {report['method']}."
        + (" --quick: not numbers." if s["quick"] else ""),
        "",
        "NME change is in NME points vs PyTorch FP32 on the same faces; max diff is the "
        "largest landmark difference from PyTorch (crop-normalised), mean px the mean "
        "distance in crop pixels. Ratio = p50 / the usual path's p50 in the same round-robin "
        "(< 1 is faster).",
    ]
    for name, entry in report["models"].items():
        lat = {(r["variant"], r["batch"]): r for r in entry["latency"]}
        batches = s["batches"]
        head = " | ".join(f"b{b} ms/face | b{b} ratio" for b in batches)
        lines += [
            "",
            f"## {name} ({entry['family']}, {entry['input_size']} px): {entry['weights']}",
            "",
            f"| variant | NME % | change (points) | max diff | mean px | {head} |",
            "|---|---|---|---|---|" + "---|---|" * len(batches),
        ]
        for row in entry["accuracy"]:
            cells = []
            for b in batches:
                r = lat.get((row["variant"], b))
                cells += (
                    [f"{r['ms_per_face']:.2f}", f"{r['ratio_vs_usual']:.2f}x"] if r else ["-", "-"]
                )
            lines.append(
                f"| {row['variant']} | {row['nme_percent']:.3f} | {row['nme_change_points']:+.3f} "
                f"| {row['max_abs_diff']:.1e} | {row['mean_px_diff']:.3f} | "
                + " | ".join(cells)
                + " |"
            )
        if entry.get("openvino_activations"):
            choice = ", ".join(f"batch {b}: {a}" for b, a in entry["openvino_activations"].items())
            lines += ["", f"OpenVINO INT8 activations, the faster: {choice}."]
        if entry.get("sensitivity"):
            lines += [
                "",
                "INT8 sensitivity (ORT CPU EP; the heatmap head always FP32):",
                "",
                "| INT8 case | NME % | change (points) |",
                "|---|---|---|",
            ]
            lines += [
                f"| {r['case']} | {r['nme_percent']:.3f} | {r['nme_change_points']:+.3f} |"
                for r in entry["sensitivity"]
            ]
    if report["skipped"]:
        lines += ["", "## Skipped", ""]
        lines += [f"- `{e['variant']}` ({e['model']}): {e['reason']}" for e in report["skipped"]]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(report["models"]) or ["(nothing measured)"]
    batches = report["settings"]["batches"]
    fig, axes = plt.subplots(
        len(models),
        len(batches) + 1,
        figsize=(4.4 * (len(batches) + 1), 3.4 * len(models)),
        squeeze=False,
    )
    for i, name in enumerate(models):
        entry = report["models"].get(name, {"latency": [], "accuracy": []})
        for j, batch in enumerate(batches):
            rows = [r for r in entry["latency"] if r["batch"] == batch]
            ax = axes[i][j]
            ax.barh(
                [r["variant"] for r in rows], [r["ratio_vs_usual"] for r in rows], color="#2277aa"
            )
            ax.axvline(1.0, color="#cc5555", lw=1)
            ax.invert_yaxis()
            ax.set_title(f"{name}, batch {batch}", fontsize=9)
            ax.set_xlabel("p50 / usual path", fontsize=8)
            ax.tick_params(labelsize=7)
        ax = axes[i][-1]
        rows = [r for r in entry["accuracy"] if r["variant"] != "pytorch"]
        ax.barh(
            [r["variant"] for r in rows], [r["nme_change_points"] for r in rows], color="#22aa77"
        )
        ax.axvline(0.2, color="#cc5555", lw=1, ls="--")
        ax.invert_yaxis()
        ax.set_title(f"{name}: NME change vs PyTorch FP32", fontsize=9)
        ax.set_xlabel("NME points", fontsize=8)
        ax.tick_params(labelsize=7)
    m = report["machine"]
    fig.suptitle(
        f"{m['cpu']} ({', '.join(m['cpu_flags'])}), {report['settings']['threads']} threads",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


if __name__ == "__main__":
    main()
