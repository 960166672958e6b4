"""``lmk-eval``: NME / FR / AUC of an lmk checkpoint or an exported ONNX file on a data set.

Both kinds of model see the crops the training code makes (same data set class, no
augmentation) and are scored by the same function (:func:`lmk.train.engine.score`), so a
checkpoint and the ONNX file exported from it give the same numbers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import numpy as np

from lmk.core.cli_util import exit_with, stdout_closed
from lmk.core.errors import LmkError
from lmk.core.fileio import atomic_output, plan_output
from lmk.core.geometry import CropPolicy
from lmk.core.layouts import Layout
from lmk.core.metrics import format_results
from lmk.core.normalise import Normalisation
from lmk.train.data import (
    SYNTH_LAYOUTS,
    SYNTH_VAL_BASE,
    AnnotationSource,
    DataSpec,
    LandmarkDataset,
    SubsetSource,
    SynthSource,
    file_source,
    first,
    parse_data_spec,
    synth_image_size,
)


class ModelUnderTest:
    """What evaluation needs from a model, whichever kind of file it came from."""

    def __init__(
        self,
        kind: str,
        layout: Layout,
        input_size: int,
        crop: CropPolicy,
        normalisation: Normalisation,
        predict: Callable[[dict[str, Any]], np.ndarray],
        needs_crop: bool = False,
    ) -> None:
        self.kind = kind
        self.layout = layout
        self.input_size = input_size
        self.crop = crop
        self.normalisation = normalisation
        self.predict = predict
        self.needs_crop = needs_crop


def open_torch_model(path: Path, device: str | None) -> ModelUnderTest:
    """An lmk checkpoint, run with PyTorch and the reference decoder."""
    import torch

    from lmk.checkpoint import load_checkpoint
    from lmk.train.engine import torch_predictor

    ckpt = load_checkpoint(path)
    name = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise LmkError("--device cuda: no CUDA device is available to torch here")
    model = ckpt.build_model().to(name)
    return ModelUnderTest(
        "checkpoint",
        ckpt.layout,
        ckpt.input_size,
        ckpt.crop,
        ckpt.normalisation,
        torch_predictor(model, ckpt.spec, ckpt.layout, name),
    )


def open_onnx_model(path: Path) -> ModelUnderTest:
    """An exported file run by ONNX Runtime on the CPU through lmk.runtime's session: the
    same feeding, fixed-batch chunking and host decode (``--decode none``) as lmk-run."""
    from lmk.runtime.metadata import layout_of
    from lmk.runtime.session import InferenceModel, RuntimeOptions

    model = InferenceModel(path, RuntimeOptions(ep="cpu"))

    def predict(batch: dict[str, Any]) -> np.ndarray:
        return model.infer(np.ascontiguousarray(batch["crop"].numpy()))[0]

    return ModelUnderTest(
        "onnx",
        layout_of(model.info),
        model.input_size,
        CropPolicy.from_dict(model.info.crop),
        model.normalisation,
        predict,
        needs_crop=True,
    )


def open_model(path: Path, device: str | None = None) -> ModelUnderTest:
    """An lmk checkpoint (.pt) or an exported file (.onnx), by its suffix."""
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return open_onnx_model(path)
    if suffix in (".pt", ".pth"):
        return open_torch_model(path, device)
    raise LmkError(f"MODEL must be an lmk checkpoint (.pt) or an ONNX file, got {path}")


def score_file(path: Path, data: str = "synth", size: int | None = None) -> dict[str, Any]:
    """``lmk-eval PATH --data DATA --size SIZE`` as a function (for scripts): the metrics."""
    model = open_model(Path(path))
    dataset = eval_dataset(
        model, parse_data_spec(data), size=size, split="val", seed=0, images=None
    )
    results = evaluate_model(model, dataset, 32, 0, 0.1)
    results.pop("per_face")
    return results


def eval_dataset(
    model: ModelUnderTest,
    spec: DataSpec,
    *,
    size: int | None,
    split: str,
    seed: int,
    images: Path | None,
) -> LandmarkDataset:
    """The crops to score: the model's crop policy, input size and normalisation; no augment."""
    layout = model.layout
    if spec.kind == "synth":
        if layout.name not in SYNTH_LAYOUTS:
            raise LmkError(
                f"SynthFace comes as {' or '.join(SYNTH_LAYOUTS)}; the model's layout is "
                f"{layout.name!r}"
            )
        base = SYNTH_VAL_BASE if split == "val" else seed
        source: Any = SynthSource(
            size or 200, base, layout.name, synth_image_size(model.input_size)
        )
    else:
        if split != "val":
            raise LmkError("--split applies to synth data only")
        source = first(file_source(spec, images, layout.name), size)
    return LandmarkDataset(
        source,
        layout,
        model.input_size,
        model.crop,
        model.normalisation,
        augment=None,
        return_crop=model.needs_crop,
    )


def evaluate_model(
    model: ModelUnderTest, dataset: LandmarkDataset, batch_size: int, workers: int, threshold: float
) -> dict[str, Any]:
    """Predict every crop and score it; returns the metrics dict (plus per-face NMEs)."""
    from torch.utils.data import DataLoader

    from lmk.train.engine import collect, loader_batches, score

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    predictions = collect(loader_batches(loader), model.predict)
    results, nmes = score(predictions, model.layout, model.input_size, threshold)
    results["per_face"] = [
        {"index": int(i), "nme": float(v)} for i, v in zip(predictions.index, nmes, strict=True)
    ]
    return results


def _data_files(spec: DataSpec, images: Path | None) -> Iterator[Path]:
    """The annotation file (or every file of a 300W folder) and ``--images``' files."""
    for path in (spec.path, images):
        if path is not None:
            yield path
            if path.is_dir():
                yield from (p for p in path.rglob("*") if p.is_file())


def _image_files(source: Any) -> Iterator[Path]:
    """The image of every face an annotation source lists."""
    while isinstance(source, SubsetSource):
        source = source.source
    if isinstance(source, AnnotationSource):
        yield from (source.images_root / ann.image for ann in source.annotations)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.option(
    "--data",
    default="synth",
    show_default=True,
    help="synth, wflw:LIST.txt, 300w:FOLDER, csv:FILE.csv, json:FILE.json, menpo:FOLDER "
    "(.pts/.ljson beside their photos) or dlib:FILE.xml (imglab XML with 68 parts a box)",
)
@click.option("--images", type=click.Path(path_type=Path), help="folder of the annotation's images")
@click.option("--size", type=click.IntRange(min=1), help="faces to score (synth default 200)")
@click.option(
    "--split",
    type=click.Choice(["val", "train"]),
    default="val",
    show_default=True,
    help="synth: the held-out faces, or the training faces of --seed",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--threshold",
    type=click.FloatRange(min=0, min_open=True),
    default=0.1,
    show_default=True,
    help="NME above which a face fails; the AUC's upper limit",
)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="checkpoints: torch device")
@click.option(
    "--json",
    "json_out",
    type=click.Path(allow_dash=True),
    help="write the results (- for standard output; the table then goes to standard error)",
)
@click.option("--overwrite", is_flag=True, help="replace an existing --json file")
def eval_command(
    model_path: Path,
    data: str,
    images: Path | None,
    size: int | None,
    split: str,
    seed: int,
    batch_size: int,
    workers: int,
    threshold: float,
    device: str | None,
    json_out: str | None,
    overwrite: bool,
) -> None:
    """Score MODEL (an lmk .pt checkpoint or an exported .onnx) on a data set."""
    spec = parse_data_spec(data)
    to_stdout = json_out == "-"  # a file named "-" is ./-
    to_file = json_out is not None and not to_stdout
    if to_file:  # before any work; an input is never the output
        plan_output(json_out, overwrite, inputs=[model_path, *_data_files(spec, images)])
    model = open_model(model_path, device)
    dataset = eval_dataset(model, spec, size=size, split=split, seed=seed, images=images)
    if to_file:  # again, with the data set's images now that they are known
        json_target = plan_output(json_out, overwrite, inputs=_image_files(dataset.source))
    results = evaluate_model(model, dataset, batch_size, workers, threshold)
    click.echo(f"{model_path} ({model.kind}) on {spec}, {len(dataset)} faces", err=to_stdout)
    skipped = getattr(dataset.source, "skipped", [])
    if skipped:
        click.echo(f"skipped: {', '.join(skipped)}", err=to_stdout)
    click.echo(format_results(results), err=to_stdout)
    if json_out is not None:
        payload = {"model": str(model_path), "kind": model.kind, "data": str(spec), **results}
        text = json.dumps(payload, indent=1) + "\n"
        if to_stdout:
            try:
                click.echo(text, nl=False)  # writes and flushes
            except BrokenPipeError:
                raise stdout_closed("the results were written") from None
        else:
            with atomic_output(json_target) as tmp:
                tmp.write_text(text, encoding="utf-8")


def main() -> None:
    """Console entry point ``lmk-eval``."""
    exit_with(eval_command)


if __name__ == "__main__":
    main()
