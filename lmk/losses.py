"""Training losses: PIPNet's (official weighting) and the heatmap losses (MSE, Adaptive Wing).

PIPNet: ``10 * MSE(score maps) + L1(x) + L1(y) + L1(nb_x) + L1(nb_y)``, where the offset terms
are read at each landmark's ground-truth cell only (the official ``compute_loss_pip``: every
other cell of an offset map has no target). Heatmap models sum their loss over every stack,
which is the intermediate supervision of the stacked hourglass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lmk.targets import PIPNetTargets

CLS_WEIGHT = 10.0
REG_WEIGHT = 1.0


def _at_cells(maps: Tensor, cells: Tensor) -> Tensor:
    """Values of [N, C, H, W] maps at flat cell indices [N, C]: [N, C]."""
    return maps.flatten(2).gather(2, cells[..., None]).squeeze(2)


def pipnet_loss(
    outputs: Sequence[Tensor],
    targets: PIPNetTargets,
    cls_weight: float = CLS_WEIGHT,
    reg_weight: float = REG_WEIGHT,
) -> tuple[Tensor, dict[str, float]]:
    """Total loss and its parts (``cls x y nb_x nb_y``, as floats for logging).

    ``outputs`` = the model's ``(cls, x, y, nb_x, nb_y)``. MSE is the mean over every score
    map pixel; each L1 is the mean over the N * L (or N * L * K) gt-cell values.
    """
    cls, x, y, nb_x, nb_y = outputs
    k = nb_x.shape[1] // cls.shape[1]
    cells = targets.cell
    cells_nb = cells.repeat_interleave(k, dim=1)
    parts = {
        "cls": F.mse_loss(cls, targets.cls),
        "x": F.l1_loss(_at_cells(x, cells), _at_cells(targets.x, cells)),
        "y": F.l1_loss(_at_cells(y, cells), _at_cells(targets.y, cells)),
        "nb_x": F.l1_loss(_at_cells(nb_x, cells_nb), _at_cells(targets.nb_x, cells_nb)),
        "nb_y": F.l1_loss(_at_cells(nb_y, cells_nb), _at_cells(targets.nb_y, cells_nb)),
    }
    total = cls_weight * parts["cls"] + reg_weight * (
        parts["x"] + parts["y"] + parts["nb_x"] + parts["nb_y"]
    )
    return total, {name: float(value.detach()) for name, value in parts.items()}


def adaptive_wing_loss(
    pred: Tensor,
    target: Tensor,
    omega: float = 14.0,
    theta: float = 0.5,
    epsilon: float = 1.0,
    alpha: float = 2.1,
    weight: float = 10.0,
    threshold: float = 0.2,
) -> Tensor:
    """Adaptive Wing loss (Wang, Bo & Fuxin 2019) with its weighted loss map, mean over pixels.

    Per pixel, with ``d = |pred - target|`` and exponent ``p = alpha - target``:
    ``omega * ln(1 + (d / epsilon)^p)`` for ``d < theta``, else ``A * d - C`` (the linear
    continuation that keeps value and slope continuous at ``theta``). The map ``M`` is the
    target dilated by a 3x3 grey dilation and thresholded at ``threshold``; the loss is
    weighted by ``weight * M + 1`` so foreground pixels near landmarks count more.
    """
    diff = (pred - target).abs()
    power = alpha - target
    ratio = theta / epsilon
    a = omega * (1.0 / (1.0 + ratio**power)) * power * ratio ** (power - 1.0) / epsilon
    c = theta * a - omega * torch.log1p(ratio**power)
    small = omega * torch.log1p((diff / epsilon) ** power)
    large = a * diff - c
    loss = torch.where(diff < theta, small, large)
    dilated = F.max_pool2d(target, 3, stride=1, padding=1)
    loss_map = weight * (dilated >= threshold).to(loss.dtype) + 1.0
    return (loss * loss_map).mean()


HEATMAP_LOSSES = ("mse", "awing")


def heatmap_loss(
    outputs: Sequence[Tensor] | Tensor, target: Tensor, kind: str = "mse"
) -> tuple[Tensor, dict[str, float]]:
    """Sum over stacks of the per-stack loss (``mse`` or ``awing``); parts are per stack."""
    stacks = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    if kind == "mse":
        per_stack = [F.mse_loss(h, target) for h in stacks]
    elif kind == "awing":
        per_stack = [adaptive_wing_loss(h, target) for h in stacks]
    else:
        raise ValueError(f"unknown heatmap loss {kind!r}; choose from {', '.join(HEATMAP_LOSSES)}")
    total = torch.stack(per_stack).sum()
    return total, {f"stack{i}": float(v.detach()) for i, v in enumerate(per_stack)}
