"""``lmk-run SOURCE``: landmarks for every face of a video, camera or image set.

lmk-run clip.mp4 --out annotated.mp4 --json landmarks.jsonl
lmk-run 0 --detector yunet --detector-model face_detection_yunet_2023mar.onnx --show
lmk-run "shots/*.jpg" --box 40,40,200,200 --csv points.csv
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from lmk.core.cli_util import exit_with, option_group
from lmk.core.errors import LmkError
from lmk.core.images import is_image_path
from lmk.runtime.api import LandmarkSession
from lmk.runtime.bundled import bundled_model
from lmk.runtime.detectors import DETECTORS, YUNET_ENV
from lmk.runtime.outputs import (
    CsvSink,
    JsonlSink,
    finish_outputs,
    held_signals,
    image_or_video_sink,
    one_image_error,
    plan_outputs,
)
from lmk.runtime.pipeline import STAGES, RunSummary, Sinks, run_pipeline
from lmk.runtime.public_models import resolve_model_arg
from lmk.runtime.session import EP_CHOICES, OV_PRECISIONS
from lmk.runtime.sources import Source, open_source
from lmk.runtime.tracking import TrackerConfig
from lmk.runtime.validate import box_values


def parse_box_option(_ctx: click.Context, _param: click.Parameter, value: str | None):
    """``--box x,y,w,h``, checked as the API checks a box (finite, w and h > 0)."""
    if value is None:
        return None
    try:
        parts: list[float] | str = [float(v) for v in value.split(",")]
    except ValueError:
        parts = value  # not numbers: box_values refuses it, quoting the user's text
    return tuple(box_values(parts, "--box", shown=value).tolist())


def _check_display(show: bool) -> None:
    if not show:
        return
    import cv2

    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        raise LmkError("--show needs a display (no DISPLAY or WAYLAND_DISPLAY is set)")
    try:
        cv2.namedWindow("lmk-run")
    except cv2.error:
        raise LmkError(
            "--show: this OpenCV has no GUI (opencv-python-headless); install opencv-python"
        ) from None


def format_summary(
    summary: RunSummary, session: LandmarkSession, skipped: int, tracked: bool = False
) -> str:
    """The end-of-run lines; ``tracked`` (a video or camera) adds the rate after the first
    frame, which a long video converges to (an image set detects every image afresh)."""
    stages = summary.per_frame_ms()
    parts = ", ".join(f"{k} {stages[k]:.1f}" for k in STAGES if stages[k] > 0)
    lines = [
        f"{'interrupted after' if summary.interrupted else 'done:'} {summary.frames} frames, "
        f"{summary.faces} faces, {summary.detections} detector runs, "
        f"{summary.fps:.1f} frames/s on EP {session.ep}"
        + (f", {skipped} unreadable images skipped" if skipped else ""),
        f"mean ms per frame: {parts}",
    ]
    if tracked and summary.frames > 1:
        lines.append(
            f"first frame {1000 * summary.first_seconds:.0f} ms (start-up and detection), "
            f"then {summary.tracking_fps:.1f} frames/s"
        )
    return "\n".join(lines)


# The execution-provider flags lmk-run and lmk-batch both take, defined once (lmk-batch takes
# only these three: its --threads mean per actor, and the rest are lmk-run's alone).
EP_OPTION = click.option("--ep", type=click.Choice(EP_CHOICES), default="auto", show_default=True)
TRT_FP16_OPTION = click.option("--trt-fp16", is_flag=True, help="TensorRT: build an FP16 engine")
TRT_CACHE_OPTION = click.option(
    "--trt-cache",
    "trt_cache_dir",
    type=click.Path(path_type=Path),
    help="TensorRT engine cache root",
)

RUNTIME_OPTIONS = [
    EP_OPTION,
    click.option("--threads", type=click.IntRange(min=1), help="CPU / OpenVINO EP threads"),
    click.option(
        "--spin",
        is_flag=True,
        help="CPU / OpenVINO EP: idle inference threads busy-wait (off: they leave the cores free)",
    ),
    TRT_FP16_OPTION,
    click.option(
        "--trt-int8", is_flag=True, help="TensorRT: INT8 (for files exported with --int8)"
    ),
    TRT_CACHE_OPTION,
    click.option(
        "--trt-workspace",
        "trt_workspace_gb",
        type=click.FloatRange(min=0.1),
        default=2.0,
        help="GiB",
    ),
    click.option("--max-batch", type=click.IntRange(min=1), default=16, help="TensorRT profile"),
    click.option(
        "--ov-precision",
        type=click.Choice(OV_PRECISIONS),
        default="fp32",
        show_default=True,
        help="OpenVINO: inference precision (bf16 needs AVX512_BF16 or AMX)",
    ),
    click.option(
        "--ov-cache",
        "ov_cache_dir",
        type=click.Path(path_type=Path),
        help="OpenVINO compiled-model cache root",
    ),
]
"""lmk-run's execution-provider flags, each named for its :class:`RuntimeOptions` field:
the command receives them as one dict, ``runtime``, that :class:`LandmarkSession` takes as is."""


@dataclass(frozen=True)
class TrackingFlags:
    """The detector and tracker options lmk-run and lmk-batch share, as given."""

    detector: str
    detector_model: Path | None
    box: tuple[float, float, float, float] | None
    detect_every: int
    min_score: float | None
    max_faces: int
    rotate: bool | None

    def tracker_config(self) -> dict[str, Any]:
        """The :class:`TrackerConfig` fields they set (``min_score`` and ``rotate`` None: the
        model's)."""
        return {
            "detect_every": self.detect_every,
            "min_score": self.min_score,
            "max_faces": self.max_faces,
            "rotate": self.rotate,
        }


TRACKING_OPTIONS = [
    click.option(
        "--detector",
        type=click.Choice(DETECTORS),
        default="auto",
        show_default=True,
        help="auto: blazeface when fetched (lmk models fetch blazeface), else yunet when its "
        "model file is known, else frame (the SynthFace/demo detector)",
    ),
    click.option(
        "--detector-model",
        type=click.Path(path_type=Path),
        help="BlazeFace .onnx/.tflite or YuNet .onnx (or set LMK_YUNET_MODEL)",
    ),
    click.option(
        "--box", callback=parse_box_option, help="frame detector: the face region x,y,w,h"
    ),
    click.option(
        "--detect-every",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="re-detect every N frames while tracking (0: only when a face is lost)",
    ),
    click.option(
        "--min-score",
        type=click.FloatRange(min=0),
        default=None,
        help="a face whose mean landmark score falls below this is lost (default: the model's "
        f"lmk.min_score, else {TrackerConfig.min_score})",
    ),
    click.option("--max-faces", type=click.IntRange(min=1), default=8, show_default=True),
    click.option(
        "--rotate/--no-rotate",
        default=None,
        help="turn tracked crops upright by the face's roll (default: the model's lmk.rotate, "
        "on for faceapi68)",
    ),
]
"""The detector and tracker options lmk-run and lmk-batch share: one definition and one help
text, so the two commands cannot drift apart."""

tracking_options = option_group("tracking", TRACKING_OPTIONS, TrackingFlags)
"""Adds :data:`TRACKING_OPTIONS` to a command, which receives them as one
:class:`TrackingFlags`, ``tracking``."""


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("source")
@click.option(
    "--model",
    type=click.Path(path_type=Path),
    help="exported lmk .onnx, or the name of a fetched public model (faceapi68) "
    "(default: the bundled PIPNet-MobileNetV2 SynthFace model)",
)
@tracking_options
@click.option("--smooth", is_flag=True, help="One Euro smoothing of the landmarks")
@click.option("--out", type=click.Path(path_type=Path), help="annotated video (.mp4/.avi) or image")
@click.option(
    "--json",
    "json_path",
    type=click.Path(allow_dash=True),
    help="landmarks, JSONL (- for standard output, a line per frame as it is done)",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(allow_dash=True),
    help="landmarks, CSV (- for standard output)",
)
@click.option("--indices", is_flag=True, help="draw landmark numbers")
@click.option("--show", is_flag=True, help="show frames in a window")
@click.option("--limit", type=click.IntRange(min=1), help="stop after N frames")
@option_group("runtime", RUNTIME_OPTIONS)
@click.option("--overwrite", is_flag=True, help="replace existing output files")
@click.option("--quiet", is_flag=True, help="no progress bar")
def run_command(
    source: str,
    model: Path | None,
    tracking: TrackingFlags,
    smooth: bool,
    out: Path | None,
    json_path: str | None,
    csv_path: str | None,
    indices: bool,
    show: bool,
    limit: int | None,
    runtime: dict[str, Any],
    overwrite: bool,
    quiet: bool,
) -> None:
    """Track faces in SOURCE (video file, camera index, image, folder or glob of images) and
    write their landmarks."""
    from tqdm import tqdm

    # FFmpeg's own complaints about a damaged video would flood the terminal; lmk-run says
    # itself how many frames could not be decoded.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    model = resolve_model_arg(model)  # a fetched public model by name (lmk models fetch)
    with open_source(source) as frames:
        # Every check before any work; no output may be a file the run reads.
        files = [model or bundled_model(), tracking.detector_model or os.environ.get(YUNET_ENV)]
        inputs = [*frames.files, *(f for f in files if f)]
        targets = plan_outputs(
            {"--out": out, "--json": json_path, "--csv": csv_path}, overwrite, inputs
        )
        if out is not None and is_image_path(out) and frames.count != 1:
            raise one_image_error(out)
        _check_display(show)
        session = LandmarkSession(model, **runtime)
        tracker = session.tracker(
            tracking.detector,
            tracking.detector_model,
            tracking.box,
            smooth=smooth,
            **tracking.tracker_config(),
        )
        click.echo(
            f"{session.model.describe()}; detector {tracker.detector.describe}; {frames.description}",
            err=True,
        )
        sinks = Sinks(show=show, indices=indices)
        summary: RunSummary | None = None
        try:
            with held_signals():
                if "--out" in targets:
                    sinks.video = image_or_video_sink(targets["--out"], frames.fps or 25.0)
                if "--json" in targets:
                    sinks.jsonl = JsonlSink(targets["--json"])
                if "--csv" in targets:
                    sinks.csv = CsvSink(targets["--csv"], session.info.num_landmarks)
            total = min(limit, frames.count) if limit and frames.count else limit or frames.count
            with tqdm(total=total, unit="frame", disable=quiet, dynamic_ncols=True) as bar:

                def tick(_frame, faces) -> None:
                    bar.update(1)
                    bar.set_postfix(faces=len(faces), refresh=False)

                summary = run_pipeline(session, tracker, frames, sinks, limit, tick)
        finally:
            # Kept when frames were done (also when interrupted); a failure discards all.
            finish_outputs(sinks.all(), keep=summary is not None and summary.frames > 0)
        _report(summary, session, frames)


def _report(summary: RunSummary, session: LandmarkSession, frames: Source) -> None:
    """The end of a run: the summary, then what went wrong, as warnings or the one error."""
    if summary.interruption is not None:
        if summary.frames:
            click.echo(format_summary(summary, session, len(frames.skipped)), err=True)
        raise summary.interruption  # run_cli: "interrupted" (130) or "terminated" (143)
    if summary.frames == 0:
        raise LmkError(
            f"no readable frame in {frames.description}"
            + (f" ({len(frames.skipped)} unreadable images skipped)" if frames.skipped else "")
        )
    for name in frames.skipped:
        click.echo(f"skipped unreadable image: {name}", err=True)
    tracked = frames.kind != "images"
    click.echo(format_summary(summary, session, len(frames.skipped), tracked), err=True)
    if frames.lost:
        expected = frames.decoded + frames.lost
        lost = (
            f"only {frames.decoded} of {expected} frames of {frames.description} could be decoded"
        )
        if 2 * frames.lost > expected:
            raise LmkError(f"{lost}; the outputs hold those {frames.decoded}")
        click.echo(f"warning: {lost}; the others are skipped in the outputs", err=True)


def main() -> None:
    exit_with(run_command)
