"""PIPNet-R18 at 256 on ONNX Runtime CPU: what the fused decode costs and what it saves.

Variants, each timed in the same run, round-robin (every session with ONNX Runtime's spinning
off, each variant's turn starting with an untimed call: lmk.bench.timing):
  fused_fp32   uint8 BGR in, landmarks out: preprocessing, network and decode in one graph
  raw_fp32     the same graph without the decode (raw heads out): fused/raw - 1 = decode cost
  usual_path   numpy preprocessing + ORT raw heads + numpy decode (what other tools ship)
  fused_int8   the fused graph with the network quantized to INT8 (QDQ, SynthFace calibration)
  pytorch      PyTorch eager + reference decode, for context

With ``--checkpoint`` (a trained model) it also measures NME of FP32 and INT8 on held-out
SynthFace crops. Writes JSON, markdown and a PNG under benchmarks/results/<machine>/.

    python benchmarks/export_latency.py [--checkpoint runs/r18/best.pt] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from lmk.bench.machine import describe, machine_slug
from lmk.bench.timing import measure
from lmk.checkpoint import Checkpoint, open_checkpoint
from lmk.export.exporter import ExportOptions, build_onnx, export_network
from lmk.export.quantize import quantize_network
from lmk.models import random_checkpoint
from lmk.runtime.session import RuntimeOptions, session_config
from lmk.synth import synth_crop, synth_crops

CALIBRATION_SEED = 1_000  # calibration crops never overlap the held-out NME crops
HELD_OUT_SEED = 2_000_000


def _session(model, threads: int) -> ort.InferenceSession:
    """A CPU session as lmk's runtime makes one: spinning off (a spinning idle session slows
    the one being timed; lmk.runtime.session.session_config is the one place that says so)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    for key, value in session_config(RuntimeOptions(spin=False), "cpu").items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def build_sessions(
    checkpoint: Checkpoint, threads: int, calib_count: int
) -> dict[str, ort.InferenceSession]:
    network = export_network(checkpoint.build_model(), checkpoint.spec, 17, None)
    calibration = synth_crops(
        calib_count, checkpoint.input_size, checkpoint.crop, seed=CALIBRATION_SEED
    )
    int8_network = quantize_network(
        network, checkpoint.normalisation.apply_bgr_nhwc(calibration), "cpu"
    )
    return {
        "fused_fp32": _session(build_onnx(checkpoint, ExportOptions(), network), threads),
        "raw_fp32": _session(
            build_onnx(checkpoint, ExportOptions(decode="none"), network), threads
        ),
        "raw_float_input": _session(
            build_onnx(checkpoint, ExportOptions(decode="none", input_format="float-rgb"), network),
            threads,
        ),
        "fused_int8": _session(
            build_onnx(checkpoint, ExportOptions(precision="int8"), int8_network), threads
        ),
    }


def variants(checkpoint: Checkpoint, sessions, images: np.ndarray, model: torch.nn.Module):
    spec = checkpoint.spec
    table = spec.neighbour_table(checkpoint.layout)
    normalisation = checkpoint.normalisation

    def usual_path():
        x = normalisation.apply_bgr_nhwc(images)
        heads = sessions["raw_float_input"].run(list(spec.decoder.heads), {"image": x})
        return spec.decoder.decode(heads, table)

    def pytorch():
        with torch.inference_mode():
            x = torch.from_numpy(normalisation.apply_bgr_nhwc(images))
            return spec.decode_outputs(model(x), table)

    return {
        "fused_fp32": lambda: sessions["fused_fp32"].run(None, {"image": images}),
        "raw_fp32": lambda: sessions["raw_fp32"].run(None, {"image": images}),
        "usual_path": usual_path,
        "fused_int8": lambda: sessions["fused_int8"].run(None, {"image": images}),
        "pytorch": pytorch,
    }


def held_out_nme(checkpoint: Checkpoint, sessions, count: int) -> dict[str, float]:
    """Mean inter-ocular NME (%) of FP32 and INT8 fused files on held-out SynthFace crops."""
    from lmk.core.metrics import nme

    size = checkpoint.input_size
    crops, truth = [], []
    for i in range(count):
        crop, landmarks, _ = synth_crop(HELD_OUT_SEED + i, size, checkpoint.crop)
        crops.append(crop)
        truth.append(landmarks / size)
    crops, truth = np.stack(crops), np.stack(truth)
    layout = checkpoint.layout
    result = {}
    for name in ("fused_fp32", "fused_int8"):
        predicted = np.concatenate(
            [
                sessions[name].run(["landmarks"], {"image": crops[i : i + 32]})[0]
                for i in range(0, count, 32)
            ]
        )
        result[name] = float(np.mean(nme(predicted, truth, layout)) * 100.0)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", help="trained lmk checkpoint (PIPNet-R18); random weights if omitted"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--min-calls", type=int, default=40, help="timed calls per variant at batch 1"
    )
    parser.add_argument(
        "--calib", type=int, default=128, help="SynthFace calibration crops for INT8"
    )
    parser.add_argument("--nme-samples", type=int, default=500)
    parser.add_argument("--out", help="results folder (default benchmarks/results/<machine>)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    info = describe()
    if args.checkpoint:
        checkpoint = open_checkpoint(args.checkpoint)
        weights = f"trained: {args.checkpoint}"
    else:
        checkpoint = random_checkpoint(
            "pipnet", {"backbone": "resnet18", "input_size": 256}, 0, "wflw98"
        )
        weights = "random (seed 0): latency only"
    model = checkpoint.build_model()
    sessions = build_sessions(checkpoint, args.threads, args.calib)
    results = {}
    for batch in (int(b) for b in args.batches.split(",")):
        images = synth_crops(batch, checkpoint.input_size, checkpoint.crop, seed=HELD_OUT_SEED)
        calls = max(5, args.min_calls // batch)
        timed = measure(
            variants(checkpoint, sessions, images, model), rounds=args.rounds, min_calls=calls
        )
        fused = timed["fused_fp32"]["p50_ms"]
        for row in timed.values():
            row["images_per_s"] = batch * 1000.0 / row["p50_ms"]
        results[str(batch)] = {
            "timings": timed,
            "ratios": {
                "decode_overhead_pct": (fused / timed["raw_fp32"]["p50_ms"] - 1.0) * 100.0,
                "usual_path_over_fused": timed["usual_path"]["p50_ms"] / fused,
                "int8_over_fp32": timed["fused_int8"]["p50_ms"] / fused,
                "pytorch_over_fused": timed["pytorch"]["p50_ms"] / fused,
            },
        }
        print(
            f"batch {batch}: " + ", ".join(f"{k} {v['p50_ms']:.2f} ms" for k, v in timed.items()),
            flush=True,
        )
    nme = held_out_nme(checkpoint, sessions, args.nme_samples) if args.checkpoint else None
    report = {
        "benchmark": "export_latency",
        "model": (
            f"PIPNet-{checkpoint.spec.full_args()['backbone']}, {checkpoint.layout.name}, "
            f"{checkpoint.input_size}x{checkpoint.input_size}"
        ),
        "weights": weights,
        "threads": args.threads,
        "method": "spinning off; round-robin, each turn after an untimed warm-up call",
        "machine": info,
        "results": results,
        "nme_percent": nme,
    }
    out = Path(args.out or Path(__file__).parent / "results" / machine_slug(info))
    out.mkdir(parents=True, exist_ok=True)
    # A trained checkpoint's run (its own input size, plus NME) never overwrites the
    # random-weight 256 run.
    stem = "export_latency_trained" if args.checkpoint else "export_latency"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown(report))
    plot(report, out / f"{stem}.png")
    print(f"wrote {out}/{stem}.{{json,md,png}}")


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"# {report['model']} on ONNX Runtime CPU",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({', '.join(m['cpu_flags']) or 'flags unknown'}); "
        f"{report['threads']} threads; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        f"Weights: {report['weights']}. Median (p50) latency per call, p90 in brackets; "
        f"every ratio is taken within this one run. Method: {report['method']}.",
        "",
        "| batch | variant | p50 ms (p90) | images/s |",
        "|---|---|---|---|",
    ]
    for batch, entry in report["results"].items():
        for name, row in entry["timings"].items():
            lines.append(
                f"| {batch} | {name} | {row['p50_ms']:.2f} ({row['p90_ms']:.2f}) | {row['images_per_s']:.1f} |"
            )
    lines += [
        "",
        "| batch | decode cost (fused vs raw) | usual path / fused | INT8 / FP32 | PyTorch / fused |",
        "|---|---|---|---|---|",
    ]
    for batch, entry in report["results"].items():
        r = entry["ratios"]
        lines.append(
            f"| {batch} | {r['decode_overhead_pct']:+.2f}% | {r['usual_path_over_fused']:.2f}x | "
            f"{r['int8_over_fp32']:.2f}x | {r['pytorch_over_fused']:.2f}x |"
        )
    if report["nme_percent"]:
        n = report["nme_percent"]
        lines += [
            "",
            f"Held-out SynthFace NME: FP32 {n['fused_fp32']:.3f}%, INT8 {n['fused_int8']:.3f}% "
            f"({n['fused_int8'] - n['fused_fp32']:+.3f} points).",
        ]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = list(report["results"])
    fig, axes = plt.subplots(1, len(batches), figsize=(5 * len(batches), 3.6))
    for ax, batch in zip(np.atleast_1d(axes), batches, strict=True):
        timings = report["results"][batch]["timings"]
        names = list(timings)
        values = [timings[n]["p50_ms"] / int(batch) for n in names]
        ax.barh(names, values, color=["#2a7", "#7a7", "#c55", "#27a", "#999"][: len(names)])
        ax.set_xlabel("ms per image (p50)")
        ax.set_title(f"batch {batch}")
        ax.invert_yaxis()
    fig.suptitle(f"{report['model']}, ORT CPU, {report['threads']} threads")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
