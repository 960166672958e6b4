"""``lmk-bench``: latency of lmk's fused ONNX files against PyTorch and the usual path.

The same code runs as ``lmk-bench`` and ``python benchmarks/latency.py``. Heavy imports
(torch, onnx) wait until the flags and the output folder have been checked, so a mistake
costs a second, not a trace.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from lmk.bench.backends import BACKENDS
from lmk.bench.models import BENCH_MODELS
from lmk.core.cli_util import exit_with
from lmk.core.errors import LmkError
from lmk.core.fileio import filled_folder

# --quick: just enough calls to exercise every path (tests, smoke runs); not for numbers.
QUICK = {
    "iterations": 2,
    "min_seconds": 0.0,
    "rounds": 1,
    "warmup": 1,
    "calib": 8,
    "nme_faces": 16,
}
NORMAL = {
    "iterations": 50,
    "min_seconds": 1.0,
    "rounds": 5,
    "warmup": 3,
    "calib": 32,
    "nme_faces": 200,
}


def _names(value: str, known, flag: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    if names == ["all"]:
        return list(known)
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise LmkError(
            f"{flag}: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(known)}"
        )
    return list(dict.fromkeys(names))


def _batches(value: str) -> list[int]:
    try:
        batches = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise LmkError(f"--batches must be positive integers like 1,8,32, got {value!r}") from None
    if not batches or min(batches) < 1:
        raise LmkError(f"--batches must be positive integers like 1,8,32, got {value!r}")
    return sorted(set(batches))


def _checkpoints(values: tuple[str, ...]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not path:
            raise LmkError(f"--checkpoint takes NAME=PATH, got {value!r}")
        if name not in BENCH_MODELS:
            raise LmkError(
                f"--checkpoint {name}: unknown model; choose from {', '.join(BENCH_MODELS)}"
            )
        if not Path(path).is_file():
            raise LmkError(f"--checkpoint {name}: file not found: {path}")
        found[name] = Path(path)
    return found


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--models",
    default="all",
    show_default=True,
    help=f"comma-separated: {', '.join(BENCH_MODELS)}",
)
@click.option(
    "--backends",
    default="all",
    show_default=True,
    help=f"comma-separated: {', '.join(BACKENDS)} (OpenVINO and GPU ones are skipped, with "
    "the reason, where they cannot run)",
)
@click.option("--batches", default="1,8,32", show_default=True, help="batch sizes")
@click.option(
    "--threads", type=int, help="CPU threads for PyTorch and ONNX Runtime (default: all cores)"
)
@click.option(
    "--iterations",
    type=int,
    help=f"timed calls per backend at batch 1; batch B gets iterations/B (default {NORMAL['iterations']})",
)
@click.option(
    "--min-seconds",
    type=float,
    help=f"at least this much timed work per backend and batch (default {NORMAL['min_seconds']:g})",
)
@click.option(
    "--rounds", type=int, help=f"round-robin rounds over the backends (default {NORMAL['rounds']})"
)
@click.option("--warmup", type=int, help=f"untimed calls first (default {NORMAL['warmup']})")
@click.option("--calib", type=int, help=f"INT8 calibration crops (default {NORMAL['calib']})")
@click.option(
    "--nme-faces",
    type=int,
    help="held-out SynthFace faces each backend is scored on (NME) for models given a "
    f"--checkpoint (default {NORMAL['nme_faces']}, --quick {QUICK['nme_faces']})",
)
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    metavar="NAME=PATH",
    help="weights for a model (lmk checkpoint, official PIPNet .pth or 2DFAN4 file); "
    "without it, random weights (latency only)",
)
@click.option("--seed", type=int, default=0, show_default=True, help="seed of random weights")
@click.option("--quick", is_flag=True, help="tiny iteration counts: a smoke run, not numbers")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="results folder (default: benchmarks/results/<machine>/ under the current folder)",
)
@click.option("--overwrite", is_flag=True, help="replace existing latency.{json,md,png}")
@click.option("--no-progress", is_flag=True, help="no progress bar")
def bench_command(
    models,
    backends,
    batches,
    threads,
    iterations,
    min_seconds,
    rounds,
    warmup,
    calib,
    nme_faces,
    checkpoints,
    seed,
    quick,
    out,
    overwrite,
    no_progress,
):
    """Measure landmark latency: PyTorch, the usual path, lmk's fused ONNX (FP32, INT8) on the
    CPU, OpenVINO (FP32, BF16, INT8), CUDA / TensorRT where this machine has them, and with a
    --checkpoint each backend's NME on held-out SynthFace faces. Writes latency.{json,md,png}."""
    from lmk.bench.machine import describe, machine_slug, usable_cores
    from lmk.bench.report import plan_outputs, write_report
    from lmk.bench.runner import BenchConfig

    defaults = QUICK if quick else NORMAL
    given = {
        "iterations": iterations,
        "min_seconds": min_seconds,
        "rounds": rounds,
        "warmup": warmup,
        "calib": calib,
        "nme_faces": nme_faces,
    }
    config = BenchConfig(
        models=_names(models, BENCH_MODELS, "--models"),
        backends=_names(backends, BACKENDS, "--backends"),
        batches=_batches(batches),
        threads=threads if threads is not None else usable_cores(),
        seed=seed,
        quick=quick,
        checkpoints=_checkpoints(checkpoints),
        **{k: v if v is not None else defaults[k] for k, v in given.items()},
    )
    machine = describe()
    out = out or Path("benchmarks") / "results" / machine_slug(machine)
    try:
        import matplotlib  # noqa: F401  (the chart is part of the result: fail before the work)
    except ImportError:
        raise LmkError("the chart needs matplotlib: pip install 'lmk[bench]'") from None
    # The results folder may hold other files; only the three results need --overwrite. A
    # folder this run creates is removed again if the run fails.
    with filled_folder(out, overwrite=True) as run:
        targets = plan_outputs(run, overwrite, inputs=config.checkpoints.values())
        busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        if busy > 0.5 * usable_cores():
            click.echo(
                f"warning: load average {busy:.1f} on {usable_cores()} cores: other work competes "
                "for the CPU and skews the numbers",
                err=True,
            )
        for name in config.models:
            if name not in config.checkpoints:
                click.echo(
                    f"note: {name}: no --checkpoint, random weights (seed {seed}): latency and "
                    "parity only, no NME",
                    err=True,
                )
        from lmk.bench.runner import run_benchmark

        report = run_benchmark(config, progress=not no_progress)
        report = {"machine": machine, **report}
        for entry in report["skipped"]:
            where = entry["model"] or "all models"
            click.echo(f"skipped {entry['backend']} ({where}): {entry['reason']}", err=True)
        paths = write_report(report, targets)
        click.echo(f"wrote {', '.join(str(p) for p in paths)}")


def main() -> None:
    exit_with(bench_command)
