"""The model families (``pipnet``, ``hourglass``, ``fan``, ``faceapi68``): one registry entry
each in :mod:`lmk.models.registry`, one module per architecture beside it."""

from __future__ import annotations

from torch import nn

from lmk.models.faceapi import FaceLandmark68Net
from lmk.models.fan import FAN
from lmk.models.hourglass import StackedHourglass
from lmk.models.pipnet import PIPNet
from lmk.models.registry import (
    FAMILIES,
    Family,
    ModelSpec,
    check_model_args,
    flag_of,
    get_family,
    model_args,
    random_checkpoint,
    randomise_batchnorm,
)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (buffers such as BN running statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "FAMILIES",
    "FAN",
    "FaceLandmark68Net",
    "Family",
    "ModelSpec",
    "PIPNet",
    "StackedHourglass",
    "check_model_args",
    "count_parameters",
    "flag_of",
    "get_family",
    "model_args",
    "random_checkpoint",
    "randomise_batchnorm",
]
