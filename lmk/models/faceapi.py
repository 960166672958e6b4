"""face-api.js ``FaceLandmark68Net`` (MIT): a small dense-block CNN that regresses 68 points.

Module names follow the TF.js weight names (``dense0.conv0``... ``fc``), so the importer in
:mod:`lmk.faceapi_weights` maps ``dense0/conv1/depthwise_filter`` to
``dense0.conv1.depthwise.weight`` by rule. The network (face-api.js
``src/faceFeatureExtractor``): four dense blocks, each a stride-2 convolution (a plain 3x3
conv in the first block, depthwise-separable after) and three depthwise-separable 3x3
convolutions whose inputs are the ReLU of the running sum of the block's earlier outputs;
then a 7x7 average pool and one fully connected layer to 136 values, the x, y of each point
interleaved and normalised to the 112 px input. No per-point confidence comes out.

TF.js ``'same'`` padding with stride 2 on an even size pads one pixel on the bottom and right
only (PyTorch's ``padding=1`` would pad both sides and shift the grid by one pixel), so the
stride-2 convolutions pad explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from lmk.core.errors import LmkError
from lmk.models.arguments import Label, whole

INPUT_SIZE = 112
"""The net ends in a 7x7 pool over the 7x7 map of a 112 px input: no other size fits the fc."""
NUM_POINTS = 68
CHANNELS = (32, 64, 128, 256)


class SeparableConv(nn.Module):
    """TF's ``separableConv2d`` + bias: a 3x3 depthwise conv (no bias), a 1x1 pointwise conv."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.stride = stride
        self.depthwise = nn.Conv2d(in_ch, in_ch, 3, stride, 0, groups=in_ch, bias=False)
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(same_pad(x, self.stride)))


class FirstConv(nn.Module):
    """The first block's plain 3x3 stride-2 convolution with bias."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, 2, 0, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(same_pad(x, 2))


def same_pad(x: Tensor, stride: int) -> Tensor:
    """TF ``'same'`` padding for a 3x3 kernel on an even-sized map: (1, 1) at stride 1,
    (0, 1) at stride 2."""
    return F.pad(x, (1, 1, 1, 1) if stride == 1 else (0, 1, 0, 1))


class DenseBlock(nn.Module):
    """face-api.js ``denseBlock4``: out_k = conv_k(relu(out_1 + ... + out_{k-1}))."""

    def __init__(self, in_ch: int, out_ch: int, first: bool):
        super().__init__()
        self.conv0 = FirstConv(in_ch, out_ch) if first else SeparableConv(in_ch, out_ch, 2)
        self.conv1 = SeparableConv(out_ch, out_ch, 1)
        self.conv2 = SeparableConv(out_ch, out_ch, 1)
        self.conv3 = SeparableConv(out_ch, out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        total = F.relu(self.conv0(x))
        for conv in (self.conv1, self.conv2, self.conv3):
            total = total + conv(F.relu(total) if conv is not self.conv1 else total)
        return F.relu(total)


class FaceLandmark68Net(nn.Module):
    """Crop [N, 3, 112, 112] (RGB minus face-api's mean, / 255) -> ``[coords [N, 136]]``.

    ``forward`` returns a one-element list so the exporter treats it like the other
    families' head lists. ``input_size`` and ``num_lms`` are fixed by the weights; they are
    arguments only so checkpoints and metadata name them like every other family.
    """

    def __init__(self, input_size: int = INPUT_SIZE, num_lms: int = NUM_POINTS):
        super().__init__()
        if input_size != INPUT_SIZE:
            raise ValueError(f"faceapi68 takes a {INPUT_SIZE} px input only, not {input_size}")
        if num_lms != NUM_POINTS:
            raise ValueError(f"faceapi68 predicts {NUM_POINTS} points only, not {num_lms}")
        self.input_size, self.num_lms = input_size, num_lms
        widths = (3, *CHANNELS)
        for i in range(len(CHANNELS)):
            setattr(self, f"dense{i}", DenseBlock(widths[i], widths[i + 1], first=i == 0))
        self.fc = nn.Linear(CHANNELS[-1], 2 * NUM_POINTS)

    def forward(self, x: Tensor) -> list[Tensor]:
        for i in range(len(CHANNELS)):
            x = getattr(self, f"dense{i}")(x)
        x = F.avg_pool2d(x, 7, 2)  # TF 'valid' pool: the 7x7 map becomes 1x1
        return [self.fc(x.flatten(1))]


def check_args(full: Mapping[str, Any], label: Label) -> int:
    """The weights fix the crop (112 px) and the points (68); returns 112, since no other crop
    size fits the final pool."""
    if whole(full["input_size"], label("input_size")) != INPUT_SIZE:
        raise LmkError(f"{label('input_size')} must be {INPUT_SIZE} for faceapi68")
    if full["num_lms"] is not None and full["num_lms"] != NUM_POINTS:
        raise LmkError(f"faceapi68 predicts {NUM_POINTS} points (a 300w68 layout)")
    return INPUT_SIZE
