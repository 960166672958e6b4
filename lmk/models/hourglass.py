"""Stacked hourglass (Newell, Yang & Deng 2016) for heatmap landmarks.

Pre-activation bottleneck residuals, a recursive hourglass (max-pool down, nearest-neighbour
up, a residual skip branch at every scale), intermediate supervision: every stack emits
heatmaps, which are remapped by 1x1 convs and added back into the trunk for the next stack.
A 256 input gives 64x64 heatmaps (stride 4).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from lmk.core.errors import LmkError
from lmk.models.arguments import MAX_STACKS, Label, in_range


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv 1x1 (half), BN-ReLU-conv 3x3 (half), BN-ReLU-conv 1x1 (out), plus a skip."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        mid = out_ch // 2
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, mid, 1)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_ch, 1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + (x if self.skip is None else self.skip(x))


def _residuals(channels: int, count: int) -> nn.Sequential:
    return nn.Sequential(*[PreActBottleneck(channels, channels) for _ in range(count)])


class Hourglass(nn.Module):
    """One hourglass of ``depth`` levels; spatial size must be divisible by 2**depth."""

    def __init__(self, depth: int, channels: int, num_blocks: int = 1):
        super().__init__()
        self.skip = _residuals(channels, num_blocks)
        self.down = _residuals(channels, num_blocks)
        self.inner = (
            Hourglass(depth - 1, channels, num_blocks)
            if depth > 1
            else _residuals(channels, num_blocks)
        )
        self.up = _residuals(channels, num_blocks)

    def forward(self, x: Tensor) -> Tensor:
        low = self.down(F.max_pool2d(x, 2, stride=2))
        low = self.up(self.inner(low))
        return self.skip(x) + F.interpolate(low, scale_factor=2, mode="nearest")


class StackedHourglass(nn.Module):
    """``num_stacks`` hourglasses; ``forward`` returns every stack's [N, L, S/4, S/4] heatmaps."""

    def __init__(
        self,
        num_lms: int = 98,
        num_stacks: int = 2,
        num_features: int = 256,
        num_blocks: int = 1,
        depth: int = 4,
        input_size: int = 256,
    ):
        super().__init__()
        if input_size % (4 * 2**depth):
            raise ValueError(f"input_size {input_size} must be divisible by {4 * 2**depth}")
        self.num_lms = num_lms
        self.num_stacks = num_stacks
        self.input_size = input_size
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, stride=2, padding=3),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            PreActBottleneck(64, 128),
            nn.MaxPool2d(2, stride=2),
            PreActBottleneck(128, 128),
            PreActBottleneck(128, num_features),
        )
        self.hourglasses = nn.ModuleList(
            Hourglass(depth, num_features, num_blocks) for _ in range(num_stacks)
        )
        self.features = nn.ModuleList(
            nn.Sequential(
                _residuals(num_features, num_blocks),
                nn.Conv2d(num_features, num_features, 1),
                nn.BatchNorm2d(num_features),
                nn.ReLU(inplace=True),
            )
            for _ in range(num_stacks)
        )
        self.heads = nn.ModuleList(nn.Conv2d(num_features, num_lms, 1) for _ in range(num_stacks))
        # Intermediate supervision: features and heatmaps are mapped back into the trunk.
        self.remap_features = nn.ModuleList(
            nn.Conv2d(num_features, num_features, 1) for _ in range(num_stacks - 1)
        )
        self.remap_heatmaps = nn.ModuleList(
            nn.Conv2d(num_lms, num_features, 1) for _ in range(num_stacks - 1)
        )

    @property
    def map_size(self) -> int:
        return self.input_size // 4

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        outputs = []
        for i in range(self.num_stacks):
            features = self.features[i](self.hourglasses[i](x))
            heatmaps = self.heads[i](features)
            outputs.append(heatmaps)
            if i < self.num_stacks - 1:
                x = x + self.remap_features[i](features) + self.remap_heatmaps[i](heatmaps)
        return outputs


FEATURES = (16, 1024)
"""Feature channels a stacked hourglass may have (even: the residuals halve them)."""


def check_args(full: Mapping[str, Any], label: Label) -> int:
    """Stacks, features, blocks and depth; returns what the crop size must be a multiple of:
    4 (the stem) times 2 per hourglass level."""
    in_range(full["num_stacks"], 1, MAX_STACKS, label("num_stacks"))
    if in_range(full["num_features"], *FEATURES, label("num_features")) % 2:
        raise LmkError(f"{label('num_features')} must be even, got {full['num_features']}")
    in_range(full["num_blocks"], 1, MAX_STACKS, label("num_blocks"))
    return 4 * 2 ** in_range(full["depth"], 1, 6, label("depth"))
