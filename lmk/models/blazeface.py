"""BlazeFace (Bazarevsky et al. 2019), the face detector of MediaPipe, as a PyTorch module.

Two variants share one head layout (a 16x16 map with 2 anchors per cell and an 8x8 map with
6, 896 anchors, each with 16 regressor values and one score logit):

- ``short_range`` (MediaPipe's "front"): 128 px input, faces within ~2 m of a selfie camera;
- ``back``: 256 px input, smaller faces (rear camera, group photos).

The module is written from the TFLite graphs' own structure (read with
:mod:`lmk.runtime.tflite_file`): a 5x5 stride-2 stem, then BlazeBlocks (3x3 depthwise +
1x1 pointwise, a residual that is max-pooled on stride 2 and zero-padded to the new channel
count, ReLU after the add). TFLite's ``SAME`` padding is asymmetric on stride 2 (the extra
row/column goes bottom/right), so the module pads explicitly to give the same numbers.
Its outputs keep TFLite's order (row, column, anchor), so anchors line up with MediaPipe's.
The weights come only from a ``.tflite`` file (:mod:`lmk.models.blazeface_import`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class BlazeVariant:
    """One published BlazeFace network: its input side and block list."""

    input_size: int
    # (in_channels, out_channels, stride) per BlazeBlock, in order.
    blocks: tuple[tuple[int, int, int], ...]
    # Blocks up to (exclusive) this index feed the 16x16 head; the rest the 8x8 head.
    split: int
    # The last block of ``back`` has no residual (a plain depthwise + pointwise + ReLU).
    last_plain: bool


def _chain(channels: int, *steps: tuple[int, int]) -> tuple[tuple[int, int, int], ...]:
    """BlazeBlocks from ``(out_channels, stride)`` steps, starting from ``channels``: each
    block takes the previous block's output, so only the widths and strides are data."""
    blocks = []
    for out_channels, stride in steps:
        blocks.append((channels, out_channels, stride))
        channels = out_channels
    return tuple(blocks)


# ``back`` repeats runs of seven stride-1 blocks that keep their width.
_SAME_24, _SAME_48, _SAME_96 = ((24, 1),) * 7, ((48, 1),) * 7, ((96, 1),) * 7
VARIANTS: dict[str, BlazeVariant] = {
    "short_range": BlazeVariant(
        input_size=128,
        blocks=_chain(
            24,
            (24, 1),
            (28, 1),
            (32, 2),
            (36, 1),
            (42, 1),
            (48, 2),
            (56, 1),
            (64, 1),
            (72, 1),
            (80, 1),
            (88, 1),
            (96, 2),
            *((96, 1),) * 4,
        ),
        split=11,
        last_plain=False,
    ),
    "back": BlazeVariant(
        input_size=256,
        blocks=_chain(
            24, *_SAME_24, (24, 2), *_SAME_24, (48, 2), *_SAME_48, (96, 2), *_SAME_96, (96, 2)
        ),
        split=31,
        last_plain=True,
    ),
}
NUM_KEYPOINTS = 6  # right eye, left eye, nose tip, mouth centre, right and left ear tragion
NUM_COORDS = 4 + 2 * NUM_KEYPOINTS
ANCHORS_PER_CELL = (2, 6)  # the 16x16 map, then the 8x8 map


def _same_pad(kernel: int, stride: int) -> tuple[int, int, int, int]:
    """TFLite ``SAME`` padding on an input whose side the stride divides: (l, r, t, b)."""
    total = max(kernel - stride, 0)
    before = total // 2
    return (before, total - before, before, total - before)


class BlazeBlock(nn.Module):
    """3x3 depthwise + 1x1 pointwise, plus (unless ``plain``) the pooled, padded residual."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, plain: bool = False):
        super().__init__()
        self.stride = stride
        self.plain = plain
        self.extra_channels = out_channels - in_channels
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, stride, groups=in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pointwise(self.depthwise(F.pad(x, _same_pad(3, self.stride))))
        if not self.plain:
            skip = F.max_pool2d(x, 2) if self.stride == 2 else x
            if self.extra_channels:
                skip = F.pad(skip, (0, 0, 0, 0, 0, self.extra_channels))
            y = y + skip
        return F.relu(y)


class BlazeFace(nn.Module):
    """``forward(x)`` takes float NCHW RGB in [-1, 1] (MediaPipe's input) and returns
    ``(regressors [N, 896, 16], logits [N, 896])`` in anchor order.

    ``input_size`` is fixed by the variant; it is an argument only so that a model spec
    states it like every other family's.
    """

    def __init__(self, variant: str = "back", input_size: int | None = None, num_lms: int = 6):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(
                f"unknown BlazeFace variant {variant!r}; choose from {', '.join(VARIANTS)}"
            )
        spec = VARIANTS[variant]
        if input_size not in (None, spec.input_size):
            raise ValueError(
                f"BlazeFace {variant} takes {spec.input_size} px input, not {input_size}"
            )
        if num_lms != NUM_KEYPOINTS:
            raise ValueError(f"BlazeFace has {NUM_KEYPOINTS} keypoints, not {num_lms}")
        self.variant = variant
        self.input_size = spec.input_size
        self.stem = nn.Conv2d(3, 24, 5, 2)
        last = len(spec.blocks) - 1
        self.blocks = nn.ModuleList(
            BlazeBlock(cin, cout, stride, plain=spec.last_plain and i == last)
            for i, (cin, cout, stride) in enumerate(spec.blocks)
        )
        self.split = spec.split
        c16 = spec.blocks[spec.split - 1][1]
        c8 = spec.blocks[-1][1]
        a16, a8 = ANCHORS_PER_CELL
        self.classifier_16 = nn.Conv2d(c16, a16, 1)
        self.classifier_8 = nn.Conv2d(c8, a8, 1)
        self.regressor_16 = nn.Conv2d(c16, a16 * NUM_COORDS, 1)
        self.regressor_8 = nn.Conv2d(c8, a8 * NUM_COORDS, 1)

    @staticmethod
    def _per_anchor(x: torch.Tensor, values: int) -> torch.Tensor:
        # NCHW -> N, (row, column, anchor), values: TFLite's NHWC reshape order.
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, values)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.stem(F.pad(x, _same_pad(5, 2))))
        for block in self.blocks[: self.split]:
            x = block(x)
        f16 = x
        for block in self.blocks[self.split :]:
            x = block(x)
        f8 = x
        regressors = torch.cat(
            [
                self._per_anchor(self.regressor_16(f16), NUM_COORDS),
                self._per_anchor(self.regressor_8(f8), NUM_COORDS),
            ],
            dim=1,
        )
        logits = torch.cat(
            [
                self._per_anchor(self.classifier_16(f16), 1),
                self._per_anchor(self.classifier_8(f8), 1),
            ],
            dim=1,
        )
        return regressors, logits[..., 0]
