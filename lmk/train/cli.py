"""``lmk-train``: train PIPNet, a stacked hourglass or FAN on SynthFace or annotation files.

Single process by default; under ``torchrun --nproc_per_node=N`` it trains with
DistributedDataParallel (gloo on the CPU, nccl on CUDA). See :mod:`lmk.train.trainer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from lmk.core.cli_util import exit_with
from lmk.core.errors import LmkError
from lmk.core.geometry import CropPolicy
from lmk.model_flags import ARCHITECTURE_PARAMS, architecture_options, flag_name
from lmk.models import FAMILIES, ModelSpec, flag_of, model_args
from lmk.train.data import SYNTH_LAYOUTS, parse_data_spec, parse_flip

LANDMARK_FAMILIES = tuple(
    name for name, f in FAMILIES.items() if f.kind == "landmarks" and f.trainable
)


class RecordingCommand(click.Command):
    """Keeps the raw arguments in ``ctx.meta["lmk.args"]``, so provenance has the exact command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["lmk.args"] = list(args)
        return super().parse_args(ctx, args)


def recorded_command(prog: str) -> str:
    """The command line of the running click command, quoted so a shell re-runs it."""
    from lmk.train.trainer import command_line

    ctx = click.get_current_context()
    return command_line(prog, ctx.meta.get("lmk.args", []))


@click.command(cls=RecordingCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", type=click.Choice(LANDMARK_FAMILIES), default="pipnet", show_default=True)
@architecture_options
@click.option(
    "--data",
    "data",
    default="synth",
    show_default=True,
    help="synth, wflw:LIST.txt, 300w:FOLDER, csv:FILE.csv or json:FILE.json",
)
@click.option(
    "--val-data", help="held-out annotation file (default: --val-fraction of --data; synth: own)"
)
@click.option("--val-fraction", type=float, default=0.1, show_default=True)
@click.option(
    "--images",
    type=click.Path(path_type=Path),
    help="folder the annotation's image paths are relative to (default: images/ beside it)",
)
@click.option("--layout", help="wflw98 or 300w68 (synth, wflw); default wflw98")
@click.option(
    "--flip", help="CSV/JSON layouts: flip table i0,i1,... (else from the FILE.layout.json sidecar)"
)
@click.option(
    "--train-size", type=click.IntRange(min=1), help="faces to train on (synth default 2000)"
)
@click.option("--val-size", type=click.IntRange(min=1), help="held-out faces (synth default 200)")
@click.option("--epochs", type=click.IntRange(min=1), default=60, show_default=True)
@click.option(
    "--steps-per-epoch",
    type=click.IntRange(min=1),
    help="steps per epoch (default one pass over the data; fewer cap it, more repeat it)",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True)
@click.option(
    "--lr-schedule", type=click.Choice(["cosine", "step"]), default="cosine", show_default=True
)
@click.option("--weight-decay", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="default: cuda if available")
@click.option(
    "--backbone-weights",
    type=click.Path(path_type=Path),
    help="torchvision ImageNet .pth for the PIPNet backbone (default: none, offline)",
)
@click.option("--augment/--no-augment", default=True, show_default=True)
@click.option("--cache", is_flag=True, help="keep source images in memory (small sets)")
@click.option(
    "--heatmap-loss", type=click.Choice(["mse", "awing"]), default="mse", show_default=True
)
@click.option("--sigma", type=click.FloatRange(min=0.1), default=1.5, show_default=True)
@click.option("--crop-enlarge", type=click.FloatRange(min=0.5), default=1.2, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), help="run folder (best.pt, last.pt, log)")
@click.option(
    "--resume",
    type=click.Path(path_type=Path),
    help="continue the run of DIR/last.pt, with the settings it holds",
)
@click.option("--overwrite", is_flag=True, help="replace a run already in --out")
def train_command(
    model: str,
    architecture: dict[str, Any],
    data: str,
    val_data: str | None,
    val_fraction: float,
    images: Path | None,
    layout: str | None,
    flip: str | None,
    train_size: int | None,
    val_size: int | None,
    epochs: int,
    steps_per_epoch: int | None,
    batch_size: int,
    lr: float,
    lr_schedule: str,
    weight_decay: float,
    workers: int,
    seed: int,
    device: str | None,
    backbone_weights: Path | None,
    augment: bool,
    cache: bool,
    heatmap_loss: str,
    sigma: float,
    crop_enlarge: float,
    out: Path | None,
    resume: Path | None,
    overwrite: bool,
) -> None:
    """Train a landmark model; writes OUT/best.pt, OUT/last.pt and OUT/log.jsonl.

    best.pt has the lowest held-out NME so far. Ctrl-C (or SIGTERM) saves last.pt at the last
    finished step; --resume OUT/last.pt continues with the very next batch, taking the model,
    data and every training setting from the checkpoint (give only what may change: --epochs,
    --workers, --device, --cache, --out).
    """
    from lmk.train.resume import resume_checkpoint, run_settings
    from lmk.train.trainer import TrainConfig, train

    ctx = click.get_current_context()
    given = {
        name
        for name in ctx.params
        if ctx.get_parameter_source(name)
        in (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
    }
    taken: dict[str, Any] = {}
    if resume is not None:
        checkpoint = resume_checkpoint(resume)
        taken = run_settings(checkpoint, resume)
        planned = checkpoint.provenance.get("epochs_planned")
        if "epochs" not in given and isinstance(planned, int):
            epochs = planned  # --epochs may change on resume; unsaid, the run keeps its plan
        if "model" in given and model != taken["model"]:
            raise _contradiction(resume, f"--model {model}", taken["model"])
        model = taken["model"]
    arch = model_args(model, architecture)
    spec = parse_data_spec(data)
    fields: dict[str, Any] = {
        "model": model,
        "model_args": arch,
        "data": spec,
        "layout": layout,
        "val_data": parse_data_spec(val_data) if val_data else None,
        "val_fraction": val_fraction,
        "images": images,
        "flip": parse_flip(flip) if flip else None,
        "train_size": train_size,
        "val_size": val_size,
        "steps_per_epoch": steps_per_epoch,
        "batch_size": batch_size,
        "lr": lr,
        "lr_schedule": lr_schedule,
        "weight_decay": weight_decay,
        "seed": seed,
        "backbone_weights": backbone_weights,
        "augment": augment,
        "heatmap_loss": heatmap_loss,
        "sigma": sigma,
        "crop": CropPolicy(enlarge=crop_enlarge),
    }
    if resume is not None:
        _refuse_contradictions(resume, taken, fields, ctx.params, given)
        fields.update(taken)
    elif layout is not None and spec.kind == "synth" and layout not in SYNTH_LAYOUTS:
        raise LmkError(f"--layout for synth data is {' or '.join(SYNTH_LAYOUTS)}, not {layout}")
    config = TrainConfig(
        **fields,
        epochs=epochs,
        workers=workers,
        device=device,
        cache=cache,
        out=out,
        resume=resume,
        overwrite=overwrite,
        command=recorded_command("lmk-train"),
    )
    result = train(config)
    if result.best_nme is not None:
        click.echo(
            f"done: {result.epochs} epochs, best val NME {100 * result.best_nme:.2f}% -> "
            f"{result.out / 'best.pt'}",
            err=True,
        )


def _contradiction(resume: Path, flag: str, held: Any) -> LmkError:
    return LmkError(
        f"cannot resume {resume}: {flag}, but the checkpoint has {held} (leave the flag out "
        "to continue the run as it was)"
    )


def _refuse_contradictions(
    resume: Path,
    taken: dict[str, Any],
    fields: dict[str, Any],
    params: dict[str, Any],
    given: set[str],
) -> None:
    """A flag given with --resume must agree with what the checkpoint holds: its model and
    architecture, layout and crop, and the recorded training settings (data, sizes, batch,
    learning rate and schedule, seed, augmentation, loss). Paths compare as absolute."""
    from lmk.train.resume import RECORDED, plain_setting

    model = taken["model"]
    full = ModelSpec(model, taken["model_args"]).full_args()
    arg_of = {flag_of(model, arg): arg for arg in full}
    for name in ARCHITECTURE_PARAMS:  # the family's registry entry maps flag to argument
        held = full.get(arg_of.get(flag_name(name), name))
        if name in given and params[name] != held:
            raise _contradiction(resume, f"{flag_name(name)} {params[name]}", held)
    if "layout" in given and params["layout"] != taken["layout"]:
        raise _contradiction(resume, f"--layout {params['layout']}", taken["layout"])
    enlarge = taken["crop"].enlarge
    if "crop_enlarge" in given and params["crop_enlarge"] != enlarge:
        raise _contradiction(resume, f"--crop-enlarge {params['crop_enlarge']}", enlarge)
    for key in RECORDED:
        if key not in given or key not in taken:
            continue
        mine, theirs = plain_setting(fields[key]), plain_setting(taken[key])
        if mine == theirs:
            continue
        if key == "augment":  # a switch: --augment, but the checkpoint has --no-augment
            flags = ("--no-augment", "--augment")
            raise _contradiction(resume, flags[bool(mine)], flags[bool(theirs)])
        raise _contradiction(resume, f"{flag_name(key)} {params[key]}", theirs)


def main() -> None:
    """Console entry point ``lmk-train``."""
    exit_with(train_command)


if __name__ == "__main__":
    main()
