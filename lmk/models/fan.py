"""FAN (Bulat & Tzimiropoulos 2017) with the module tree of the ``face-alignment`` package.

Module and state_dict names (``conv1 bn1 conv2..4 m{i} top_m_{i} conv_last{i} bn_end{i} l{i}
bl{i} al{i}``, blocks ``b1_{level} b2_{level} b2_plus_{level} b3_{level}``) match that
package's ``FAN(num_modules)`` so its released ``2DFAN4`` weights load with ``strict=True``.
Its inputs are RGB/255 without mean/std; a 256 input gives 64x64 heatmaps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmk.models.arguments import MAX_STACKS, Label, in_range


def _conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=1, padding=1, bias=False)


class ConvBlock(nn.Module):
    """FAN's hierarchical block: three pre-activated 3x3 convs (out/2, out/4, out/4), concatenated."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = _conv3x3(in_ch, out_ch // 2)
        self.bn2 = nn.BatchNorm2d(out_ch // 2)
        self.conv2 = _conv3x3(out_ch // 2, out_ch // 4)
        self.bn3 = nn.BatchNorm2d(out_ch // 4)
        self.conv3 = _conv3x3(out_ch // 4, out_ch // 4)
        self.downsample = (
            nn.Sequential(
                nn.BatchNorm2d(in_ch),
                nn.ReLU(inplace=True),
                nn.Conv2d(in_ch, out_ch, 1, bias=False),
            )
            if in_ch != out_ch
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out1 = self.conv1(F.relu(self.bn1(x)))
        out2 = self.conv2(F.relu(self.bn2(out1)))
        out3 = self.conv3(F.relu(self.bn3(out2)))
        residual = x if self.downsample is None else self.downsample(x)
        return torch.cat((out1, out2, out3), 1) + residual


class FANHourglass(nn.Module):
    """face-alignment's ``HourGlass``: recursive, average-pool down, nearest up, flat names."""

    def __init__(self, depth: int = 4, channels: int = 256):
        super().__init__()
        self.depth = depth
        self._build(depth, channels)

    def _build(self, level: int, channels: int) -> None:
        self.add_module(f"b1_{level}", ConvBlock(channels, channels))
        self.add_module(f"b2_{level}", ConvBlock(channels, channels))
        if level > 1:
            self._build(level - 1, channels)
        else:
            self.add_module(f"b2_plus_{level}", ConvBlock(channels, channels))
        self.add_module(f"b3_{level}", ConvBlock(channels, channels))

    def _level(self, level: int, x: Tensor) -> Tensor:
        up = getattr(self, f"b1_{level}")(x)
        low = getattr(self, f"b2_{level}")(F.avg_pool2d(x, 2, stride=2))
        if level > 1:
            low = self._level(level - 1, low)
        else:
            low = getattr(self, f"b2_plus_{level}")(low)
        low = getattr(self, f"b3_{level}")(low)
        return up + F.interpolate(low, scale_factor=2, mode="nearest")

    def forward(self, x: Tensor) -> Tensor:
        return self._level(self.depth, x)


class FAN(nn.Module):
    """``num_modules`` stacked hourglasses; returns every stack's [N, L, 64, 64] heatmaps."""

    def __init__(self, num_modules: int = 4, num_lms: int = 68, input_size: int = 256):
        super().__init__()
        if input_size % 64:
            raise ValueError(f"input_size {input_size} must be divisible by 64")
        self.num_modules = num_modules
        self.num_lms = num_lms
        self.input_size = input_size
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, 256)
        for i in range(num_modules):
            self.add_module(f"m{i}", FANHourglass(4, 256))
            self.add_module(f"top_m_{i}", ConvBlock(256, 256))
            self.add_module(f"conv_last{i}", nn.Conv2d(256, 256, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(256))
            self.add_module(f"l{i}", nn.Conv2d(256, num_lms, 1))
            if i < num_modules - 1:
                self.add_module(f"bl{i}", nn.Conv2d(256, 256, 1))
                self.add_module(f"al{i}", nn.Conv2d(num_lms, 256, 1))

    @property
    def map_size(self) -> int:
        return self.input_size // 4

    def forward(self, x: Tensor) -> list[Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.avg_pool2d(self.conv2(x), 2, stride=2)
        x = self.conv4(self.conv3(x))
        previous = x
        outputs = []
        for i in range(self.num_modules):
            features = getattr(self, f"top_m_{i}")(getattr(self, f"m{i}")(previous))
            features = F.relu(getattr(self, f"bn_end{i}")(getattr(self, f"conv_last{i}")(features)))
            heatmaps = getattr(self, f"l{i}")(features)
            outputs.append(heatmaps)
            if i < self.num_modules - 1:
                previous = (
                    previous + getattr(self, f"bl{i}")(features) + getattr(self, f"al{i}")(heatmaps)
                )
        return outputs


def check_args(full: Mapping[str, Any], label: Label) -> int:
    """The number of hourglass modules; FAN's crops are multiples of 64 (4 x 2^4)."""
    in_range(full["num_modules"], 1, MAX_STACKS, label("num_modules"))
    return 64
