"""The models ``lmk-bench`` measures, by name, and how each becomes a checkpoint.

Each entry fixes an architecture (so numbers from two machines compare like with like) and the
preprocessing of its origin. ``pipnet_small`` and ``hourglass`` are the architectures of the
bundled models; ``pipnet_r18`` and ``fan4`` are the published PIPNet and face-alignment ones,
whose official weights can be measured with ``--checkpoint NAME=PATH``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BenchModel:
    """One benchmark slot: a model family, its constructor arguments, layout and origin."""

    name: str
    family: str  # a name in lmk.models.FAMILIES: its preprocessing comes from there
    args: dict[str, Any]
    layout: str
    description: str


BENCH_MODELS: dict[str, BenchModel] = {
    m.name: m
    for m in (
        BenchModel(
            "pipnet_r18",
            "pipnet",
            {"backbone": "resnet18", "num_lms": 98, "input_size": 256},
            "wflw98",
            "PIPNet ResNet-18, 256 px, WFLW-98 (the published PIPNet)",
        ),
        BenchModel(
            "pipnet_small",
            "pipnet",
            {"backbone": "mobilenetv2", "num_lms": 98, "input_size": 128, "num_nb": 4},
            "wflw98",
            "PIPNet MobileNetV2, 128 px, 4 neighbours, WFLW-98 (the bundled small model)",
        ),
        BenchModel(
            "hourglass",
            "hourglass",
            {"num_lms": 98, "num_stacks": 2, "num_features": 128, "input_size": 128},
            "wflw98",
            "stacked hourglass, 2 stacks x 128 features, 128 px, WFLW-98 (bundled architecture)",
        ),
        BenchModel(
            "fan4",
            "fan",
            {"num_modules": 4, "num_lms": 68, "input_size": 256},
            "300w68",
            "FAN, 4 modules, 256 px, 300W-68 (face-alignment's 2DFAN4)",
        ),
    )
}


def checkpoint_for(model: BenchModel, path: Path | None, seed: int = 0):
    """The slot's checkpoint: from ``path`` (lmk, official PIPNet or face-alignment file) or
    random weights seeded by ``seed``. Returns ``(checkpoint, weights description)``.

    A checkpoint of another family than the slot's is an error: its numbers would be filed
    under the wrong name.
    """
    from lmk.checkpoint import open_checkpoint
    from lmk.models import get_family, random_checkpoint

    if path is not None:
        family = get_family(model.family)
        # Used only when the file is a bare state_dict of the family's published weights.
        given = {k: model.args[k] for k in family.importer_args if k == "input_size"}
        checkpoint = open_checkpoint(path, model=model.family, **given)
        return checkpoint, f"checkpoint {path}"
    checkpoint = random_checkpoint(
        model.family, model.args, seed, model.layout, batchnorm_statistics=True
    )
    return checkpoint, (
        f"random weights (seed {seed}, BN statistics rescaled): latency and parity only, "
        "landmarks meaningless"
    )
