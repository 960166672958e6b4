"""The measurement plan of ``lmk-bench``: per model, trace once, build the backends, score
each on SynthFace's held-out faces (trained checkpoints), then per batch check each backend's
landmarks against PyTorch and time them all round-robin.

Every ratio in the report is taken between two backends timed in the same round-robin, on
the same crops, in the same process: a ratio is never between numbers from different runs.
Every ONNX Runtime session has spinning off and every backend's turn in a round starts with
an untimed call (:mod:`lmk.bench.timing`), so no backend is timed in another's wake.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from lmk.bench.backends import (
    BACKENDS,
    DESCRIPTIONS,
    GPU_BACKENDS,
    OV_BACKENDS,
    Backend,
    Unavailable,
    build_backend,
    first_line,
    gpu_provider_problem,
    openvino_problem,
    prepare,
    torch_landmarks,
)
from lmk.bench.machine import onnxruntime_providers
from lmk.bench.models import BENCH_MODELS, checkpoint_for
from lmk.bench.timing import measure
from lmk.core.errors import LmkError
from lmk.export.checks import is_random
from lmk.runtime.compare import compare, tolerance_for

# (candidate, baseline): the comparisons the report states, each from one round-robin.
COMPARISONS = (
    ("fused_fp32", "pytorch"),
    ("fused_fp32", "usual"),
    ("fused_fp32", "raw_fp32"),
    ("fused_int8", "fused_fp32"),
    ("fused_int8", "usual"),
    ("ov_fp32", "usual"),
    ("ov_bf16", "usual"),
    ("ov_int8", "usual"),
    ("cuda_fp32", "fused_fp32"),
    ("trt_fp32", "fused_fp32"),
    ("trt_fp16", "fused_fp32"),
)
MEASURE_SEED = 0  # the measured crops; INT8 calibration uses other ones
METHOD = (
    "ONNX Runtime spinning off (intra-op and inter-op) in every session; backends timed "
    "round-robin, each backend's turn in a round starting with an untimed warm-up call"
)


@dataclass
class BenchConfig:
    """What to measure and how long; the CLI's flags, resolved."""

    models: list[str]
    backends: list[str]
    batches: list[int]
    threads: int
    iterations: int = 50  # timed calls per backend at batch 1; batch B gets iterations / B
    min_seconds: float = 1.0  # and at least this much timed work per backend and batch
    rounds: int = 5
    warmup: int = 3
    calib: int = 32
    seed: int = 0
    quick: bool = False
    checkpoints: dict[str, Path] = field(default_factory=dict)
    nme_faces: int = 200  # held-out SynthFace faces scored per backend (trained checkpoints)

    def __post_init__(self) -> None:
        unknown = [m for m in self.models if m not in BENCH_MODELS]
        if unknown or not self.models:
            raise LmkError(
                f"unknown model(s) {', '.join(unknown) or '(none)'}; "
                f"choose from {', '.join(BENCH_MODELS)}"
            )
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown or not self.backends:
            raise LmkError(
                f"unknown backend(s) {', '.join(unknown) or '(none)'}; "
                f"choose from {', '.join(BACKENDS)}"
            )
        if not self.batches or min(self.batches) < 1:
            raise LmkError("--batches must be positive integers, e.g. 1,8,32")
        if self.threads < 1:
            raise LmkError(f"--threads must be >= 1, got {self.threads}")
        if self.iterations < 1 or self.rounds < 1 or self.warmup < 0 or self.min_seconds < 0:
            raise LmkError("--iterations and --rounds must be >= 1, --warmup, --min-seconds >= 0")
        if self.calib < 8:
            raise LmkError(f"--calib needs at least 8 crops, got {self.calib}")
        if self.nme_faces < 1:
            raise LmkError(f"--nme-faces must be >= 1, got {self.nme_faces}")
        extra = sorted(set(self.checkpoints) - set(self.models))
        if extra:
            raise LmkError(
                f"--checkpoint for {', '.join(extra)}, which is not among --models "
                f"({', '.join(self.models)})"
            )

    def calls(self, batch: int) -> int:
        """Timed calls per backend at ``batch``: a call holds ``batch`` faces, so fewer of them
        give the same number of faces; never fewer than one per round."""
        return max(self.rounds, math.ceil(self.iterations / batch))


def run_benchmark(config: BenchConfig, progress: bool = True) -> dict[str, Any]:
    """Run the plan and return the report (results, ratios, skipped backends, settings)."""
    import torch

    # PyTorch runs even without the pytorch backend: it computes every parity column's truth.
    # The caller's thread count comes back afterwards (run_benchmark may run inside a test).
    previous = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _run(config, progress)
    finally:
        torch.set_num_threads(previous)


def _run(config: BenchConfig, progress: bool) -> dict[str, Any]:
    from tqdm import tqdm

    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    providers = onnxruntime_providers()
    skipped: list[dict[str, Any]] = []
    backends = []
    for name in config.backends:
        problem = None
        if name in GPU_BACKENDS:
            problem = gpu_provider_problem(name, providers)
        elif name in OV_BACKENDS:
            problem = openvino_problem(name, providers)
        if problem:
            skipped.append({"model": None, "backend": name, "batch": None, "reason": problem})
        else:
            backends.append(name)
    results: list[dict[str, Any]] = []
    ratios: list[dict[str, Any]] = []
    accuracy: list[dict[str, Any]] = []
    models: dict[str, Any] = {}
    steps = len(config.models) * (1 + len(config.batches)) if backends else 0
    with (
        tempfile.TemporaryDirectory(prefix="lmk-bench-") as cache,
        tqdm(total=steps, unit="step", file=sys.stderr, disable=not progress) as bar,
    ):
        for model_name in config.models if backends else []:
            bar.set_description(f"{model_name}: trace, build backends")
            slot = BENCH_MODELS[model_name]
            checkpoint, weights = checkpoint_for(
                slot, config.checkpoints.get(model_name), config.seed
            )
            workdir = Path(cache) / model_name
            workdir.mkdir()
            prepared = prepare(model_name, checkpoint, weights, workdir=workdir)
            models[model_name] = {
                "description": slot.description,
                "family": checkpoint.spec.name,
                "args": checkpoint.spec.full_args(),
                "layout": checkpoint.layout.name,
                "input_size": checkpoint.input_size,
                "weights": weights,
            }
            built: dict[str, Backend] = {}
            for name in backends:
                try:
                    built[name] = build_backend(
                        name,
                        prepared,
                        config.threads,
                        calib=config.calib,
                        max_batch=max(config.batches),
                        cache_dir=Path(cache) / f"{model_name}-{name}",
                        ov_cache=Path(cache) / "openvino",
                    )
                except (Unavailable, LmkError) as exc:
                    skipped.append(
                        {"model": model_name, "backend": name, "batch": None, "reason": str(exc)}
                    )
            if model_name in config.checkpoints and built:
                bar.set_description(f"{model_name}: NME on {config.nme_faces} held-out faces")
                scored = _accuracy(prepared, built, config, skipped)
                accuracy += scored
                models[model_name]["nme_faces"] = config.nme_faces if scored else None
            bar.update(1)
            from lmk.synth import synth_crops

            crops = synth_crops(
                max(config.batches), checkpoint.input_size, checkpoint.crop, seed=MEASURE_SEED
            )
            for batch in config.batches:
                bar.set_description(f"{model_name}: batch {batch}")
                rows = _measure_batch(prepared, built, crops[:batch], config, skipped)
                for row in rows:
                    row.update(_nme_columns(accuracy, model_name, row["backend"]))
                results += rows
                ratios += _ratios(model_name, batch, rows)
                bar.update(1)
                bar.write(
                    f"{model_name} batch {batch}: "
                    + ", ".join(f"{r['backend']} {r['p50_ms']:.2f} ms" for r in rows)
                )
    return {
        "benchmark": "lmk-bench latency",
        "format": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load_average": list(load),  # other work on the machine skews every number
        "settings": {
            "threads": config.threads,
            "batches": config.batches,
            "iterations": config.iterations,
            "min_seconds": config.min_seconds,
            "rounds": config.rounds,
            "warmup": config.warmup,
            "calib": config.calib,
            "quick": config.quick,
            "models": config.models,
            "backends": config.backends,
            "nme_faces": config.nme_faces,
            "method": METHOD,
        },
        "models": models,
        "backends": {name: DESCRIPTIONS[name] for name in config.backends},
        "results": results,
        "ratios": ratios,
        "accuracy": accuracy,
        "skipped": skipped,
    }


def _accuracy(
    prepared, built: dict[str, Backend], config: BenchConfig, skipped: list
) -> list[dict[str, Any]]:
    """NME (%) of every built backend and of PyTorch FP32 on the same held-out SynthFace
    faces, and each backend's change vs PyTorch in NME points. Nothing for a layout
    SynthFace does not come in (the report says why)."""
    from lmk.bench.accuracy import held_out, predict
    from lmk.train.data import SYNTH_LAYOUTS

    checkpoint = prepared.checkpoint
    if checkpoint.layout.name not in SYNTH_LAYOUTS:
        skipped.append(
            {
                "model": prepared.name,
                "backend": "accuracy",
                "batch": None,
                "reason": f"no NME: SynthFace has no {checkpoint.layout.name} faces",
            }
        )
        return []
    faces = held_out(checkpoint, config.nme_faces)
    step = max(config.batches)
    reference = 100.0 * faces.nme(predict(partial(torch_landmarks, prepared), faces.crops, step))
    rows = []
    for name, backend in built.items():
        try:
            value = (
                reference
                if name == "pytorch"
                else 100.0 * faces.nme(predict(backend.landmarks, faces.crops, step))
            )
        except Exception as exc:
            if name not in GPU_BACKENDS:
                raise
            skipped.append(
                {"model": prepared.name, "backend": name, "batch": step, "reason": first_line(exc)}
            )
            continue
        rows.append(
            {
                "model": prepared.name,
                "backend": name,
                "faces": len(faces),
                "nme_percent": value,
                "nme_change_vs_pytorch_points": value - reference,
            }
        )
    return rows


def _nme_columns(accuracy: list[dict[str, Any]], model: str, backend: str) -> dict[str, Any]:
    found = next((a for a in accuracy if a["model"] == model and a["backend"] == backend), None)
    return {
        "nme_percent": found["nme_percent"] if found else None,
        "nme_change_vs_pytorch_points": found["nme_change_vs_pytorch_points"] if found else None,
    }


def _measure_batch(
    prepared, built: dict[str, Backend], images: np.ndarray, config: BenchConfig, skipped: list
) -> list[dict[str, Any]]:
    """Parity against PyTorch (outside the clock), then every backend timed round-robin."""
    images = np.ascontiguousarray(images)
    batch = len(images)
    truth = {"landmarks": torch_landmarks(prepared, images)}
    random_weights = is_random(prepared.checkpoint)
    variants, diffs, parity = {}, {}, {}
    for name, backend in built.items():
        try:
            landmarks = backend.landmarks(images)
        except Exception as exc:
            if name not in GPU_BACKENDS:  # a CPU backend failing is a bug: let it show
                raise
            # e.g. out of GPU memory at the largest batch: the rest of the run still counts
            skipped.append(
                {"model": prepared.name, "backend": name, "batch": batch, "reason": first_line(exc)}
            )
            continue
        if name != "pytorch":
            tolerance = tolerance_for(
                backend.precision, backend.ep, prepared.checkpoint.spec.decode, random_weights
            )
            result = compare(truth, {"landmarks": landmarks}, tolerance)
            diffs[name] = result.max_abs["landmarks"]
            parity[name] = (
                "ok" if result.ok else f"outside {backend.precision} tolerance: {result.summary()}"
            )
        else:
            diffs[name], parity[name] = 0.0, None
        variants[name] = partial(backend.run, images)
    if not variants:
        return []
    timed = measure(
        variants,
        rounds=config.rounds,
        min_calls=config.calls(batch),
        warmup=config.warmup,
        min_seconds=config.min_seconds,
    )
    return [
        {
            "model": prepared.name,
            "backend": name,
            "batch": batch,
            **row,
            "faces_per_s": batch * 1000.0 / row["p50_ms"],
            "max_abs_diff_vs_pytorch": diffs[name],
            "parity": parity[name],
            "providers": built[name].providers,
        }
        for name, row in timed.items()
    ]


def _ratios(model: str, batch: int, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    p50 = {r["backend"]: r["p50_ms"] for r in rows}
    return [
        {
            "model": model,
            "batch": batch,
            "candidate": candidate,
            "baseline": baseline,
            "speedup": p50[baseline] / p50[candidate],  # > 1: the candidate is faster
            "latency_ratio": p50[candidate] / p50[baseline],
        }
        for candidate, baseline in COMPARISONS
        if candidate in p50 and baseline in p50
    ]
