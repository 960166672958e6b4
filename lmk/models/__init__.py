"""The model families by name: ``pipnet``, ``hourglass`` (stacked, Newell), ``fan`` and
``faceapi68`` (face-api.js's 68-point net, imported only).

A :class:`ModelSpec` (name + constructor arguments) is what checkpoints store, so a model is
rebuilt from plain data and never from pickled code.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from lmk.errors import LmkError
from lmk.models.faceapi import FaceLandmark68Net
from lmk.models.fan import FAN
from lmk.models.hourglass import StackedHourglass
from lmk.models.pipnet import PIPNet

MODELS: dict[str, type[nn.Module]] = {"pipnet": PIPNet, "hourglass": StackedHourglass, "fan": FAN}
MODELS["faceapi68"] = FaceLandmark68Net  # imported only (lmk.faceapi_weights): no training

# Which decode turns a family's raw outputs into landmarks (docs/design.md section 3).
DECODERS = {"pipnet": "pipnet_nrm", "hourglass": "heatmap_quarter", "fan": "heatmap_quarter"}
DECODERS["faceapi68"] = "regression"  # coordinates straight out of a fully connected layer


@dataclass(frozen=True)
class ModelSpec:
    """A model family and the constructor arguments that differ from its defaults."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in MODELS:
            raise LmkError(f"unknown model {self.name!r}; choose from {', '.join(MODELS)}")
        allowed = set(inspect.signature(MODELS[self.name]).parameters)
        unknown = sorted(set(self.args) - allowed)
        if unknown:
            raise LmkError(
                f"model {self.name!r} has no argument(s) {', '.join(unknown)}; "
                f"it takes {', '.join(sorted(allowed))}"
            )

    def full_args(self) -> dict[str, Any]:
        """Every constructor argument, defaults filled in."""
        params = inspect.signature(MODELS[self.name]).parameters
        return {k: self.args.get(k, p.default) for k, p in params.items()}

    @property
    def decode(self) -> str:
        return DECODERS[self.name]

    @property
    def input_size(self) -> int:
        return int(self.full_args()["input_size"])

    @property
    def num_lms(self) -> int:
        return int(self.full_args()["num_lms"])

    def build(self) -> nn.Module:
        try:
            return MODELS[self.name](**self.args)
        except ValueError as exc:  # constructor argument checks: a user error
            raise LmkError(f"cannot build {self.name}: {exc}") from None


def build_model(name: str, **args: Any) -> nn.Module:
    """Build a model by family name, e.g. ``build_model("pipnet", backbone="resnet18")``."""
    return ModelSpec(name, args).build()


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (buffers such as BN running statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "DECODERS",
    "FAN",
    "MODELS",
    "ModelSpec",
    "PIPNet",
    "StackedHourglass",
    "build_model",
    "count_parameters",
]
