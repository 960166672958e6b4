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
    family: str  # pipnet | hourglass | fan
    args: dict[str, Any]
    layout: str
    description: str

    @property
    def unit_range(self) -> bool:
        """face-alignment's FAN takes RGB / 255 without mean/std; the others ImageNet's."""
        return self.family == "fan"


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
    import torch

    from lmk.checkpoint import Checkpoint, open_checkpoint
    from lmk.core.layouts import get_layout
    from lmk.core.normalise import IMAGENET, UNIT_RANGE
    from lmk.models import ModelSpec

    if path is not None:
        extra: dict[str, Any] = {}
        if model.family == "pipnet":  # only used when the file is an official bare state_dict
            extra = {"input_size": model.args["input_size"]}
        checkpoint = open_checkpoint(path, model=model.family, **extra)
        return checkpoint, f"checkpoint {path}"
    spec = ModelSpec(model.family, dict(model.args))
    torch.manual_seed(seed)
    network = spec.build().eval()
    rescale_batchnorm(network, seed)
    checkpoint = Checkpoint.from_model(
        network,
        spec,
        get_layout(model.layout),
        UNIT_RANGE if model.unit_range else IMAGENET,
        provenance={"weights": f"random, seed {seed}, BN statistics rescaled"},
    )
    return checkpoint, (
        f"random weights (seed {seed}, BN statistics rescaled): latency and parity only, "
        "landmarks meaningless"
    )


def rescale_batchnorm(network, seed: int) -> None:
    """Give every BatchNorm random running statistics (mean ~ N(0, 0.1), var in [0.5, 1]).

    Freshly initialised BN layers are identities in eval mode, and through the random
    PIPNet-MobileNetV2 the activations then shrink to ~1e-10: every offset is ~0 and the parity
    column would compare zeros. With these statistics every bench model's heads come out at
    0.02-15 (PIPNet-MobileNetV2 the lowest, FAN's last stack the highest), so the arithmetic
    the parity column checks is real, and no model is pushed toward overflow.
    """
    import torch

    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.0, generator=generator)
