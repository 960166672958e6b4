"""``lmk-export``: a checkpoint (or random weights) to a self-describing, checked ONNX file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from lmk.core.cli_util import exit_with
from lmk.core.errors import LmkError
from lmk.core.fileio import atomic_output, plan_output
from lmk.model_flags import architecture_options

if TYPE_CHECKING:
    from lmk.models.registry import Detector


def _parse_batch(value: str) -> int | None:
    if value == "dynamic":
        return None
    try:
        batch = int(value)
    except ValueError:
        raise LmkError(f"--batch must be 'dynamic' or a positive integer, got {value!r}") from None
    if batch < 1:
        raise LmkError(f"--batch must be >= 1, got {batch}")
    return batch


def _checkpoint_from_flags(model, checkpoint, layout, architecture, seed):
    """An lmk checkpoint, a family's published weights, or seeded random weights for
    latency/parity work.

    Every architecture flag is checked first (:func:`lmk.models.model_args`), so a value no
    model can be made of is one line naming the flag, not a failure inside the tracer."""
    from lmk.checkpoint import open_checkpoint
    from lmk.core.layouts import get_layout
    from lmk.models import get_family, model_args, random_checkpoint

    family = get_family(model)
    if checkpoint is not None:
        args = model_args(model, architecture)
        given = {key: args.get(key) for key in family.importer_args}
        return open_checkpoint(checkpoint, model=model, layout=layout, **given)
    layout_obj = get_layout(layout or family.default_layout)
    args = model_args(model, architecture, num_lms=layout_obj.num_points)
    click.echo(
        f"warning: no --checkpoint: {model} with random weights (seed {seed}); "
        "the file is for latency and parity checks only",
        err=True,
    )
    return random_checkpoint(model, args, seed, layout_obj)


def _inputs(checkpoint: Path | None, calib: str) -> list[Path]:
    """The files an export reads: none of them may be its output."""
    found = [checkpoint] if checkpoint is not None else []
    if calib != "synth" and Path(calib).is_dir():
        found += [p for p in Path(calib).rglob("*") if p.is_file()]
    return found


class _ModelOption(click.Option):
    """``--model``: its help lists the registry's families and detectors, read only when the
    help is shown (the registry imports torch; ``lmk-export`` with a wrong flag need not)."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        from lmk.models.registry import export_model_names

        self.help = export_model_names()
        return super().get_help_record(ctx)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", "model", required=True, cls=_ModelOption)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    help="lmk checkpoint, official PIPNet .pth, face-alignment 2DFAN4 .pth.tar or face-api.js "
    "face_landmark_68_model-weights_manifest.json",
)
@click.option("--layout", help="wflw98, 300w68, cofw29, aflw19 (default: from the checkpoint)")
@architecture_options
@click.option(
    "--decode",
    type=click.Choice(["fused", "none"]),
    default="fused",
    show_default=True,
    help="fused: landmarks+scores; none: raw heads",
)
@click.option(
    "--input",
    "input_format",
    type=click.Choice(["uint8-bgr", "float-rgb"]),
    default="uint8-bgr",
    show_default=True,
)
@click.option(
    "--batch", default="dynamic", show_default=True, help="'dynamic' or a fixed batch size"
)
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset, 13..20")
@click.option("--fp16", is_flag=True, help="FP16 weights and compute; IO and decode stay FP32")
@click.option(
    "--int8", is_flag=True, help="INT8 QDQ (ONNX Runtime static quantization, per-channel)"
)
@click.option(
    "--calib",
    default="synth",
    show_default=True,
    help="INT8 calibration: 'synth' or a folder of face crops",
)
@click.option(
    "--calib-size", type=int, default=64, show_default=True, help="INT8 calibration crops"
)
@click.option(
    "--int8-target",
    type=click.Choice(["cpu", "tensorrt", "openvino"]),
    help="INT8 layout for: cpu (ORT CPU EP, uint8 activations; the default), tensorrt "
    "(symmetric int8, zero point 0), openvino (OpenVINO EP); weights are always symmetric "
    "per-channel int8",
)
@click.option(
    "--int8-activations",
    type=click.Choice(["u8", "s8"]),
    help="INT8 activations: u8 (uint8 with a zero point) or s8 (symmetric int8); "
    "default: the target's (cpu u8, tensorrt s8, openvino s8: measured faster there)",
)
@click.option(
    "--int8-recipe",
    type=click.Choice(["auto", "full", "float-trunk"]),
    help="what INT8 quantizes: full (every op, min/max ranges) or float-trunk (the residual "
    "trunk's Adds and BatchNorms and the last stack's head block stay FP32, the rest "
    "99.9th-percentile ranges); auto (default): full for PIPNet, float-trunk for heatmap "
    "models, whose trunk has outlier activations",
)
@click.option(
    "--store-fp16",
    is_flag=True,
    help="store FP32 weights as FP16 (half the file); they are cast back when loaded",
)
@click.option("--simplify/--no-simplify", default=True, show_default=True)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="seed for random weights when no --checkpoint",
)
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="output .onnx (default: <model>.onnx)"
)
@click.option("--overwrite", is_flag=True, help="replace an existing output file")
def export_command(
    model,
    checkpoint,
    layout,
    architecture,
    decode,
    input_format,
    batch,
    opset,
    fp16,
    int8,
    calib,
    calib_size,
    int8_target,
    int8_activations,
    int8_recipe,
    store_fp16,
    simplify,
    seed,
    output,
    overwrite,
):
    """Export a landmark model to ONNX with the decode inside the graph."""
    from lmk.export.exporter import ExportOptions, export_to_file
    from lmk.models.registry import DETECTORS, check_export_model

    check_export_model(model)  # an unknown name lists the known ones, before any other check
    # A detector is imported from its published file straight into a detector file, not a
    # family of lmk.models.FAMILIES (see lmk/models/registry.py).
    if model in DETECTORS:
        _export_detector(
            DETECTORS[model],
            checkpoint,
            opset,
            batch,
            output,
            overwrite,
            fp16 or int8 or store_fp16,
            decode,
            input_format,
        )
        return
    if fp16 and int8:
        raise LmkError("--fp16 and --int8 are exclusive")
    if store_fp16 and (fp16 or int8):
        raise LmkError("--store-fp16 applies to FP32 exports (an --fp16 file already stores FP16)")
    given = [
        flag
        for flag, value in (
            ("--int8-target", int8_target),
            ("--int8-activations", int8_activations),
            ("--int8-recipe", int8_recipe),
        )
        if value is not None
    ]
    if given and not int8:
        verb = "applies" if len(given) == 1 else "apply"
        raise LmkError(f"{', '.join(given)} {verb} only with --int8")
    if int8:
        from lmk.export.quantize import int8_plan

        # Checked now, before any tracing; resolved again with the model's family below.
        int8_plan(int8_target or "cpu", int8_activations, int8_recipe or "auto")
    precision = "fp16" if fp16 else "int8" if int8 else "fp32"
    options = ExportOptions(
        opset=opset,
        decode=decode,
        input_format=input_format,
        batch=_parse_batch(batch),
        precision=precision,
    )
    output = output or Path(f"{model}.onnx")
    # The output is checked before any work (an input of the export is never its output);
    # the flags are checked before any tracing.
    target = plan_output(output, overwrite, inputs=_inputs(checkpoint, calib))
    ckpt = _checkpoint_from_flags(model, checkpoint, layout, architecture, seed)
    with atomic_output(target) as tmp:
        report = export_to_file(
            ckpt,
            options,
            tmp,
            simplify=simplify,
            calib=calib,
            calib_size=calib_size,
            int8_target=int8_target or "cpu",
            int8_activations=int8_activations,
            int8_recipe=int8_recipe or "auto",
            store_fp16=store_fp16,
        )
    report["file"] = str(output)
    _print_report(report)


def _export_detector(
    detector: Detector, checkpoint, opset, batch, output, overwrite, reduced, decode, input_format
):
    """``--model blazeface``: a detector's published file (MediaPipe's ``.tflite``) to an lmk
    detector file (FP32, fused), by the exporter its registry entry names."""
    if checkpoint is None:
        raise LmkError(
            f"--model {detector.name} needs --checkpoint: {detector.checkpoint}; "
            f"`lmk models fetch {detector.name}` downloads it"
        )
    if reduced or decode != "fused" or input_format != "uint8-bgr":
        raise LmkError(
            f"--model {detector.name} exports FP32 with the fused decode and uint8 BGR input only"
        )
    output = output or Path(f"{detector.name}.onnx")
    target = plan_output(output, overwrite, inputs=[checkpoint])
    exporter = detector.load_exporter()
    started = time.perf_counter()
    with atomic_output(target) as tmp:
        report = exporter(checkpoint, tmp, opset, _parse_batch(batch))
    lines = [f"wrote {output} in {time.perf_counter() - started:.1f} s: {report.pop('model')}"]
    lines += [f"  {key}: {value}" for key, value in report.items()]
    click.echo("\n".join(lines))


def _print_report(report: dict) -> None:
    parity = ", ".join(f"{k} {v:.2e}" for k, v in report["parity"].items())
    pixels = (
        f" ({report['parity_pixels']:.2e} px of the crop)"
        if report["parity_pixels"] is not None
        else ""
    )
    lines = [
        f"wrote {report['file']} ({report['size_mb']:.1f} MB, opset {report['opset']}, {report['precision']}) in {report['seconds']:.1f} s",
        f"  inputs:   {'; '.join(report['inputs'])}",
        f"  outputs:  {'; '.join(report['outputs'])}",
        f"  ops:      {', '.join(report['ops'])}",
        f"  tensorrt: {report['tensorrt']}",
        *([f"  int8:     {report['int8']}"] if report.get("int8") else []),
        f"  parity:   max |diff| vs PyTorch + reference decode: {parity}{pixels}",
        f"  limits:   {report['parity_limits']}",
        f"  latency:  {report['latency_ms']:.2f} ms median on ORT CPU (batch {report['latency_batch']})",
        f"  graph:    {report['simplify']}",
        *(
            [
                f"  min_score: {report['min_score']} (10th percentile of 16 held-out SynthFace faces' mean score)"
            ]
            if report.get("min_score") is not None
            else []
        ),
    ]
    click.echo("\n".join(lines))


def main() -> None:
    exit_with(export_command)
