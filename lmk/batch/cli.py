"""``lmk-batch SOURCE --out DATASET/``: landmarks for every face of a collection of images and
videos, on Ray Data, written as a Parquet dataset (see README, "Large collections").

lmk-batch photos/ --out faces/                          # a folder, on this machine's CPUs
lmk-batch list.parquet --out faces/ --ray auto          # a list file, on a running cluster
lmk-batch "clips/**/*.mp4" --out faces/ --ep cuda --gpus-per-worker 0.5
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from lmk.batch.annotate import AnnotatorConfig
from lmk.batch.dataset import Dataset, DatasetModel
from lmk.batch.inputs import list_inputs, make_units
from lmk.batch.summary import RunStats, build_summary
from lmk.core.errors import LmkError
from lmk.runtime import available_providers
from lmk.runtime.bundled import bundled_model
from lmk.runtime.cli import (
    EP_OPTION,
    TRT_CACHE_OPTION,
    TRT_FP16_OPTION,
    TrackingFlags,
    tracking_options,
)
from lmk.runtime.detectors import YUNET_ENV, make_detector
from lmk.runtime.session import InferenceModel, RuntimeOptions, candidate_eps, file_digest
from lmk.runtime.sources import display_name

GPU_EPS = ("cuda", "tensorrt")


def _model_facts(model: Path) -> DatasetModel:
    """Load the model once on the driver (CPU EP) to check it and read what the dataset
    records; the workers load it again with the EP asked for."""
    info = InferenceModel(model, RuntimeOptions(ep="cpu", threads=1)).info
    return DatasetModel(file_digest(model), info.layout, info.num_landmarks, model.name)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("source")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="dataset folder: new, empty, or one lmk-batch made (then only what is missing is done)",
)
@click.option(
    "--model",
    type=click.Path(path_type=Path),
    help="exported lmk .onnx (default: the bundled PIPNet-MobileNetV2 SynthFace model)",
)
@EP_OPTION
@tracking_options
@click.option(
    "--ray",
    "address",
    metavar="ADDRESS",
    help="join the Ray cluster at ADDRESS, or 'auto' (default: start Ray on this machine)",
)
@click.option(
    "--workers", type=click.IntRange(min=1), help="actors (default: as many as the cluster holds)"
)
@click.option("--cpus-per-worker", type=click.FloatRange(min=0.1), default=1.0, show_default=True)
@click.option(
    "--gpus-per-worker",
    type=click.FloatRange(min=0.0),
    default=0.0,
    show_default=True,
    help="GPUs each actor reserves (with --ep cuda or tensorrt; fractions share a GPU)",
)
@click.option(
    "--files-per-task",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="images per unit of work (one shard each); a video is a unit of its own",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="still images: crops per inference, pooled across the unit's images (1: each image "
    "on its own, as lmk-run); the faces are the same at any size",
)
@click.option("--threads", type=click.IntRange(min=1), help="ORT threads per actor")
@TRT_FP16_OPTION
@TRT_CACHE_OPTION
@click.option("--quiet", is_flag=True, help="no progress bar")
def batch_command(
    source: str,
    out: Path,
    model: Path | None,
    ep: str,
    tracking: TrackingFlags,
    address: str | None,
    workers: int | None,
    cpus_per_worker: float,
    gpus_per_worker: float,
    files_per_task: int,
    batch_size: int,
    threads: int | None,
    trt_fp16: bool,
    trt_cache_dir: Path | None,
    quiet: bool,
) -> None:
    """Annotate every image and video of SOURCE (a folder, a glob, or a .txt/.csv/.parquet
    list with a `path` column) into the Parquet dataset --out, on Ray Data."""
    from tqdm import tqdm

    from lmk.batch.engine import annotate_units, cluster_workers, connect

    if gpus_per_worker and ep not in (*GPU_EPS, "auto"):
        raise LmkError(f"--gpus-per-worker goes with --ep cuda or tensorrt, not --ep {ep}")
    if trt_fp16 and ep != "tensorrt":
        raise LmkError("--trt-fp16 applies only to --ep tensorrt")
    if not address:  # the workers run here: an EP this machine lacks is an error now
        candidate_eps(ep, available_providers())
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # lmk counts bad frames itself
    model = (model or bundled_model()).resolve()
    detector_model = tracking.detector_model or os.environ.get(YUNET_ENV) or None
    make_detector(tracking.detector, detector_model, tracking.box)  # no YuNet file: an error now
    inputs = list_inputs(source)
    dataset = Dataset.open(out, _model_facts(model))
    dataset.remove_temporaries()
    pending = dataset.pending(inputs)
    units = make_units(pending, files_per_task)
    config = AnnotatorConfig(
        model=str(model),
        ep=ep,
        threads=threads or max(1, round(cpus_per_worker)),
        trt_fp16=trt_fp16,
        trt_cache_dir=str(trt_cache_dir) if trt_cache_dir else None,
        detector=tracking.detector,
        detector_model=str(Path(detector_model).resolve()) if detector_model else None,
        box=tracking.box,
        batch_size=batch_size,
        tracker=tracking.tracker_config(),
    )
    shown = display_name(out)
    click.echo(
        f"{len(inputs)} files in {display_name(source)}: {len(inputs) - len(pending)} already "
        f"in {shown}, {len(pending)} to do",
        err=True,
    )
    stats = RunStats(workers=0, engine=address or "local", planned_files=len(pending))
    interruption: KeyboardInterrupt | None = None
    failure: LmkError | None = None
    if units:
        stop = connect(address)
        try:
            stats.workers = min(
                workers or cluster_workers(cpus_per_worker, gpus_per_worker), len(units)
            )
            stats.started = time.perf_counter()  # from here: Ray is up, actors start
            with tqdm(total=len(pending), unit="file", disable=quiet, dynamic_ncols=True) as bar:
                rows = annotate_units(
                    units,
                    config,
                    str(out.resolve()),
                    stats.workers,
                    cpus_per_worker,
                    gpus_per_worker,
                )
                for row in rows:
                    stats.add(row)
                    bar.update(int(row["files"]))
                    bar.set_postfix(faces=stats.faces, faces_s=f"{stats.rate(stats.faces):.1f}")
        except KeyboardInterrupt as exc:
            interruption = exc
            stats.interrupted = True
        except LmkError as exc:  # the Ray job failed: the shards written so far still count
            failure = exc
        finally:
            stop()
    if not address:
        dataset.remove_temporaries()  # local actors are gone: what they left half-written
    dataset.remove_duplicates()
    summary = build_summary(dataset, inputs, stats)
    dataset.write_summary(summary)
    _report(summary, shown, failed=failure is not None)
    if failure is not None:
        raise failure
    if interruption is not None:
        raise interruption  # run_cli: "interrupted" (130) or "terminated" (143)


def _report(summary: dict, shown: str, failed: bool = False) -> None:
    run, held = summary["run"], summary["dataset"]
    state = "stopped" if failed else "interrupted" if run["interrupted"] else "done"
    click.echo(
        f"{state}: {run['files']} files, {run['faces']} faces, {run['failed']} failed in "
        f"{run['seconds']:.1f} s ({run['faces_per_s']:.1f} faces/s, {run['workers']} workers); "
        f"{shown} holds {held['files']} files, {held['faces']} faces, {held['failed']} failures"
        + ("" if summary["complete"] else " (incomplete: run again to finish)"),
        err=True,
    )
    for failure in summary["failures"][:10]:
        click.echo(f"failed: {failure['path']}: {failure['reason']}", err=True)
    if len(summary["failures"]) > 10:
        click.echo(f"... {len(summary['failures']) - 10} more in summary.json", err=True)
