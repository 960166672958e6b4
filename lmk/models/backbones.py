"""Backbone choice and ImageNet weights (torchvision's files, loaded without torchvision)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from lmk.core.errors import LmkError
from lmk.models.mobilenetv2 import MobileNetV2
from lmk.models.resnet import ResNet

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "mobilenetv2")

# torchvision's IMAGENET1K_V1 files (the ones the official PIPNet release was trained from).
IMAGENET_URLS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
    "mobilenetv2": "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
}


def build_backbone(name: str, num_classes: int | None = None) -> ResNet | MobileNetV2:
    """A backbone by name; ``num_classes=None`` gives the trunk without its classifier."""
    if name == "mobilenetv2":
        return MobileNetV2(num_classes=num_classes)
    if name in BACKBONES:
        return ResNet(name, num_classes=num_classes)
    raise LmkError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}")


def imagenet_state_dict(name: str, path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights for ``name``: from ``path``, or downloaded (cached) if None."""
    if name not in IMAGENET_URLS:
        raise LmkError(f"no ImageNet weights known for backbone {name!r}")
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise LmkError(f"backbone weights file not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt file, wrong format: one line for the user
            raise LmkError(f"cannot read backbone weights {path}: {exc}") from None
    else:
        url = IMAGENET_URLS[name]
        try:
            state = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True)
        except Exception as exc:
            raise LmkError(
                f"cannot download {name} ImageNet weights ({exc.__class__.__name__}: {exc}); "
                f"fetch {url} on a machine with internet and pass --backbone-weights PATH"
            ) from None
    if not isinstance(state, Mapping):
        raise LmkError(f"backbone weights for {name} are not a state_dict")
    return dict(state)


def load_backbone_weights(model: nn.Module, name: str, state: Mapping[str, torch.Tensor]) -> int:
    """Copy a torchvision ImageNet state_dict into ``model``'s backbone; returns tensors loaded.

    Every backbone tensor of ``model`` must be present with the same shape (anything else
    means the file is for another architecture); the classifier (``fc``/``classifier``) is
    ignored since landmark models do not have one.
    """
    reference = build_backbone(name).state_dict()
    own = model.state_dict()
    missing = [k for k in reference if k not in state]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in reference.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or wrong:
        detail = (
            f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}"
            if missing
            else f"shape mismatch {wrong[:3]}"
        )
        raise LmkError(f"these are not {name} ImageNet weights: {detail}")
    absent = [k for k in reference if k not in own]
    if absent:
        raise LmkError(f"model has no {name} backbone (no {absent[0]})")
    with torch.no_grad():
        for key in reference:
            own[key].copy_(state[key])
    return len(reference)
