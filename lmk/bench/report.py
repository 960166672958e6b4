"""Writing a ``lmk-bench`` report: JSON (everything), markdown (for the README and reviews) and
a PNG chart, each written to a temporary name and moved into place."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lmk.core.fileio import (
    FolderRun,
    OutputTarget,
    atomic_output,
    disk_full,
    disk_full_error,
    plan_output,
)

OUTPUTS = ("latency.json", "latency.md", "latency.png")


def plan_outputs(
    run: FolderRun, overwrite: bool, inputs: Iterable[Path] = ()
) -> list[OutputTarget]:
    """Check the three results before any work, in the (now existing) results folder: one
    that exists needs ``overwrite`` and must not be one of ``inputs`` (the checkpoints), and
    a folder that cannot be written to (read-only, /proc) is refused now rather than after
    the whole benchmark."""
    inputs = list(inputs)
    return [plan_output(run.add(run.folder / name), overwrite, inputs) for name in OUTPUTS]


def write_report(report: dict[str, Any], targets: list[OutputTarget]) -> list[Path]:
    """Write latency.json/.md/.png: all three, or (a full disk, an error) none of them, so a
    previous set is never left half replaced. Returns the paths."""
    writers = (
        lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8"),
        lambda tmp: tmp.write_text(markdown(report), encoding="utf-8"),
        lambda tmp: plot(report, tmp),
    )
    with contextlib.ExitStack() as stack:  # every file renamed into place only at the end
        temps = [stack.enter_context(atomic_output(target)) for target in targets]
        for target, tmp, write in zip(targets, temps, writers, strict=True):
            try:
                write(tmp)
            except (OSError, RuntimeError) as exc:
                if disk_full(exc):
                    raise disk_full_error(target.requested, exc) from None
                raise
    return [target.requested for target in targets]


def _diff(row: dict[str, Any]) -> str:
    """The parity cell: max |diff| vs PyTorch, marked where it is outside the backend's row
    of the tolerance table (lmk.runtime.compare)."""
    if row["backend"] == "pytorch":
        return "reference"
    value = row["max_abs_diff_vs_pytorch"]
    if value is None:
        return "-"
    outside = row.get("parity") not in (None, "ok")
    return f"{value:.1e}" + (" (outside tolerance)" if outside else "")


def _nme(row: dict[str, Any]) -> tuple[str, str]:
    """The NME cells: NME % and its change vs PyTorch FP32 in points ('-' without a score)."""
    value = row.get("nme_percent")
    if value is None:
        return "-", "-"
    change = row["nme_change_vs_pytorch_points"]
    return f"{value:.3f}", "reference" if row["backend"] == "pytorch" else f"{change:+.3f}"


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    s = report["settings"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    gpu = f"; GPU: {m['gpu']} (driver {m['gpu_driver']}, {m['gpu_memory']})" if m["gpu"] else ""
    flags = ", ".join(m["cpu_flags"]) or "unknown"
    lines = [
        "# lmk-bench: landmark latency",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable; {flags}){gpu}.",
        f"Versions: {versions}. ONNX Runtime providers: {', '.join(m['onnxruntime_providers'])}.",
        f"Settings: {s['threads']} thread{'s' if s['threads'] != 1 else ''} (PyTorch and "
        f"ONNX Runtime intra-op), batches "
        f"{', '.join(map(str, s['batches']))}, {s['rounds']} round-robin rounds after "
        f"{s['warmup']} warm-up calls, >= {s['iterations']} calls at batch 1 and "
        f">= {s['min_seconds']:g} s per backend and batch"
        + (" (--quick: numbers are not stable)" if s["quick"] else "")
        + f". Load average before the run: {report['load_average'][0]:.2f}. "
        f"Created {report['created']}.",
        "",
        f"Method: {s.get('method', 'round-robin')}.",
        "",
        "Every backend takes uint8 BGR crops and returns landmarks, preprocessing and decode "
        "included. Latency is per call (one batch); faces/s = batch / p50; drift is the "
        "spread of the per-round medians over p50 (how much the machine's speed wandered). "
        "The last column is "
        "the largest landmark difference from PyTorch + reference decode on the same crops "
        "(normalised crop units; 1e-3 is 0.26 px of a 256 crop), checked by lmk.runtime.compare "
        "against the backend's row of the tolerance table and marked where it is outside it. "
        "For a model given a trained "
        "--checkpoint, NME is the mean inter-ocular NME (%) on "
        f"{s.get('nme_faces', '?')} held-out SynthFace faces (lmk-eval's held-out set, never "
        "used for INT8 calibration), and the change is that backend's NME minus PyTorch FP32's "
        "in NME points. Every ratio is taken within this one run.",
        "",
        "Backends: "
        + "; ".join(f"`{name}` {text}" for name, text in report["backends"].items())
        + ".",
    ]
    for model, info in report["models"].items():
        lines += [
            "",
            f"## {model}: {info['description']}",
            "",
            f"Weights: {info['weights']}."
            + (
                " Random score maps have near-ties, so INT8/FP16 differences here are argmax "
                "flips, not accuracy."
                if info["weights"].startswith("random")
                else ""
            ),
            "",
            "| backend | batch | p50 ms | p90 ms | p99 ms | faces/s | drift | max diff vs PyTorch "
            "| NME % | NME change (points) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        rows = [r for r in report["results"] if r["model"] == model]
        for r in sorted(
            rows, key=lambda r: (r["batch"], list(report["backends"]).index(r["backend"]))
        ):
            lines.append(
                f"| {r['backend']} | {r['batch']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
                f"{r['p99_ms']:.2f} | {r['faces_per_s']:.1f} | {r['round_spread_pct']:.0f}% | "
                f"{_diff(r)} | " + " | ".join(_nme(r)) + " |"
            )
    if report["ratios"]:
        pairs = list(dict.fromkeys((r["candidate"], r["baseline"]) for r in report["ratios"]))
        lines += [
            "",
            "## Ratios",
            "",
            "Speedup = baseline p50 / candidate p50 (> 1: the candidate is faster), "
            "both timed in the same round-robin.",
            "",
            "| model | batch | " + " | ".join(f"{c} vs {b}" for c, b in pairs) + " |",
            "|---|---|" + "---|" * len(pairs),
        ]
        cells: dict[tuple, dict] = {}
        for r in report["ratios"]:
            cells.setdefault((r["model"], r["batch"]), {})[(r["candidate"], r["baseline"])] = r
        for (model, batch), found in cells.items():
            values = [f"{found[p]['speedup']:.2f}x" if p in found else "-" for p in pairs]
            lines.append(f"| {model} | {batch} | " + " | ".join(values) + " |")
        decode = [
            r
            for r in report["ratios"]
            if (r["candidate"], r["baseline"]) == ("fused_fp32", "raw_fp32")
        ]
        if decode:
            lines += [
                "",
                "What the in-graph decode costs (fused_fp32 p50 / raw_fp32 p50 - 1, the same "
                "graph with and without the decode):",
                "",
                "| model | batch | decode cost |",
                "|---|---|---|",
            ]
            lines += [
                f"| {r['model']} | {r['batch']} | {100.0 * (r['latency_ratio'] - 1.0):+.2f}% |"
                for r in decode
            ]
        usual = [r for r in report["ratios"] if r["baseline"] == "usual"]
        if usual:
            candidates = list(dict.fromkeys(r["candidate"] for r in usual))
            lines += [
                "",
                "Latency relative to the usual path (candidate p50 / usual p50; < 1 is faster):",
                "",
                "| model | batch | " + " | ".join(candidates) + " |",
                "|---|---|" + "---|" * len(candidates),
            ]
            rows: dict[tuple, dict] = {}
            for r in usual:
                rows.setdefault((r["model"], r["batch"]), {})[r["candidate"]] = r
            for (model, batch), found in rows.items():
                values = [
                    f"{found[c]['latency_ratio']:.2f}x" if c in found else "-" for c in candidates
                ]
                lines.append(f"| {model} | {batch} | " + " | ".join(values) + " |")
    if report["skipped"]:
        lines += ["", "## Skipped", ""]
        for entry in report["skipped"]:
            where = ", ".join(
                part
                for part in (
                    entry["model"] or "all models",
                    f"batch {entry['batch']}" if entry["batch"] else "",
                )
                if part
            )
            lines.append(f"- `{entry['backend']}` ({where}): {entry['reason']}")
    return "\n".join(lines) + "\n"


COLOURS = {
    "pytorch": "#999999",
    "usual": "#cc5555",
    "fused_fp32": "#22aa77",
    "raw_fp32": "#77aa77",
    "fused_int8": "#2277aa",
    "ov_fp32": "#55bbdd",
    "ov_bf16": "#3399bb",
    "ov_int8": "#116688",
    "cuda_fp32": "#aa8822",
    "trt_fp32": "#8844aa",
    "trt_fp16": "#dd66aa",
}


def plot(report: dict[str, Any], path: Path) -> None:
    """Bars of p50 ms per face, one panel per (model, batch); log scale when they span 30x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(report["models"]) or ["(nothing measured)"]
    batches = report["settings"]["batches"]
    fig, axes = plt.subplots(
        len(models),
        len(batches),
        figsize=(4.2 * len(batches), 0.45 * len(report["backends"]) * len(models) + 1.4),
        squeeze=False,
    )
    for i, model in enumerate(models):
        for j, batch in enumerate(batches):
            ax = axes[i][j]
            rows = [r for r in report["results"] if r["model"] == model and r["batch"] == batch]
            names = [r["backend"] for r in rows]
            values = [r["p50_ms"] / batch for r in rows]
            ax.barh(names, values, color=[COLOURS.get(n, "#555555") for n in names])
            log = bool(values) and max(values) / max(min(values), 1e-9) > 30
            if log:
                ax.set_xscale("log")
            if values:  # room for the value labels right of the longest bar
                ax.set_xlim(right=max(values) * (4.0 if log else 1.25))
            for y, v in enumerate(values):
                ax.text(v, y, f" {v:.0f}" if v >= 100 else f" {v:.3g}", va="center", fontsize=7)
            ax.invert_yaxis()
            ax.set_title(f"{model}, batch {batch}", fontsize=9)
            ax.tick_params(labelsize=8)
            if i == len(models) - 1:
                ax.set_xlabel("ms per face (p50 / batch)", fontsize=8)
    m = report["machine"]
    where = m["gpu"] or f"{m['cpu']}"
    fig.suptitle(f"lmk-bench on {where}, {report['settings']['threads']} CPU threads", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
