"""PIPNet (Jin et al. 2021): score map + x/y offsets + neighbour offsets on a stride-S grid.

Module and state_dict names follow the official release (``lib/networks.py``): the backbone's
modules sit at the top level (``conv1 bn1 layer1..4`` for ResNets, ``features`` for
MobileNetV2), the extra stride layers are ``layer5/bn5``, ``layer6/bn6`` (stride 64, 128) or
``deconv1/bn_deconv1`` (stride 16), and the heads are ``cls_layer x_layer y_layer nb_x_layer
nb_y_layer``. So the published checkpoints load with ``strict=True``.

One deliberate difference: the official ResNet-50/101 at stride 64/128 reduce to 512 channels
in ``layer5`` but build their heads for 2048 inputs, so that code cannot run a forward pass and
no such checkpoint exists; here the heads take the 512 channels they are actually given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from lmk.core.errors import LmkError
from lmk.models.arguments import Label, in_range, whole
from lmk.models.backbones import BACKBONES, build_backbone

NET_STRIDES = (16, 32, 64, 128)
_EXTRA_CHANNELS = 512


class PIPNet(nn.Module):
    """Returns ``(cls, x, y, nb_x, nb_y)``: [N, L, h, w] x3 and [N, L*K, h, w] x2, h = size/stride."""

    def __init__(
        self,
        backbone: str = "resnet18",
        num_lms: int = 98,
        num_nb: int = 10,
        input_size: int = 256,
        net_stride: int = 32,
    ):
        super().__init__()
        if net_stride not in NET_STRIDES:
            raise ValueError(f"net_stride must be one of {NET_STRIDES}, got {net_stride}")
        if input_size % net_stride:
            raise ValueError(
                f"input_size {input_size} is not a multiple of net_stride {net_stride}"
            )
        if net_stride == 16 and backbone != "resnet18":
            raise ValueError("net_stride 16 exists for resnet18 only (as in the official release)")
        if net_stride != 32 and backbone == "mobilenetv2":
            raise ValueError("mobilenetv2 PIPNet exists at net_stride 32 only")
        self.backbone = backbone
        self.num_lms = num_lms
        self.num_nb = num_nb
        self.input_size = input_size
        self.net_stride = net_stride

        trunk = build_backbone(backbone)
        self._trunk_names = [name for name, _ in trunk.trunk_modules()]
        for name, module in trunk.trunk_modules():
            self.add_module(name, module)
        channels = trunk.out_channels

        self._extra: list[tuple[str, str]] = []  # (conv, bn) pairs applied after the trunk
        if net_stride in (64, 128):
            self.layer5 = nn.Conv2d(channels, _EXTRA_CHANNELS, 3, stride=2, padding=1)
            self.bn5 = nn.BatchNorm2d(_EXTRA_CHANNELS)
            self._extra.append(("layer5", "bn5"))
            channels = _EXTRA_CHANNELS
        if net_stride == 128:
            self.layer6 = nn.Conv2d(channels, _EXTRA_CHANNELS, 3, stride=2, padding=1)
            self.bn6 = nn.BatchNorm2d(_EXTRA_CHANNELS)
            self._extra.append(("layer6", "bn6"))
        if net_stride == 16:
            self.deconv1 = nn.ConvTranspose2d(
                channels, channels, 4, stride=2, padding=1, bias=False
            )
            self.bn_deconv1 = nn.BatchNorm2d(channels)
            self._extra.append(("deconv1", "bn_deconv1"))

        self.cls_layer = nn.Conv2d(channels, num_lms, 1)
        self.x_layer = nn.Conv2d(channels, num_lms, 1)
        self.y_layer = nn.Conv2d(channels, num_lms, 1)
        self.nb_x_layer = nn.Conv2d(channels, num_nb * num_lms, 1)
        self.nb_y_layer = nn.Conv2d(channels, num_nb * num_lms, 1)

        # The official initialisation of everything that is not the pretrained backbone.
        for conv, bn in self._extra:
            nn.init.normal_(getattr(self, conv).weight, std=0.001)
            if getattr(self, conv).bias is not None:
                nn.init.zeros_(getattr(self, conv).bias)
            nn.init.ones_(getattr(self, bn).weight)
            nn.init.zeros_(getattr(self, bn).bias)
        for head in self.heads():
            nn.init.normal_(head.weight, std=0.001)
            nn.init.zeros_(head.bias)

    def heads(self) -> tuple[nn.Conv2d, ...]:
        return (self.cls_layer, self.x_layer, self.y_layer, self.nb_x_layer, self.nb_y_layer)

    @property
    def map_size(self) -> int:
        return self.input_size // self.net_stride

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        for name in self._trunk_names:
            x = getattr(self, name)(x)
        for conv, bn in self._extra:
            x = F.relu(getattr(self, bn)(getattr(self, conv)(x)))
        return tuple(head(x) for head in self.heads())  # type: ignore[return-value]


def check_args(full: Mapping[str, Any], label: Label) -> int:
    """Backbone, stride and neighbour count (at most the other points, when ``num_lms`` is
    known: not ``None``); returns what the crop size must be a multiple of: the stride."""
    if full["backbone"] not in BACKBONES:
        raise LmkError(
            f"{label('backbone')} must be one of {', '.join(BACKBONES)}, got {full['backbone']!r}"
        )
    if whole(full["net_stride"], label("net_stride")) not in NET_STRIDES:
        raise LmkError(
            f"{label('net_stride')} must be one of {', '.join(map(str, NET_STRIDES))}, "
            f"got {full['net_stride']}"
        )
    most = full["num_lms"] - 1 if full["num_lms"] is not None else 10000
    in_range(full["num_nb"], 1, max(most, 1), label("num_nb"))
    return int(full["net_stride"])
