"""Training targets: PIPNet's score/offset/neighbour maps and Gaussian heatmaps.

Computed on the training device from a batch of normalised landmarks (x, y in [0, 1], 0 =
left edge of pixel 0), so the data workers only crop and augment. PIPNet targets follow the
official release's ``gen_target_pip`` semantics exactly; heatmaps use the pixel-centre
convention the heatmap decoder reads them back with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class PIPNetTargets:
    """Per landmark ``i`` of each face: one cell (its ground-truth cell) and what it must say.

    Maps are [N, L, H, W] (``cls``, ``x``, ``y``) and [N, L*K, H, W] (``nb_x``, ``nb_y``),
    zero outside the gt cell; ``cell`` [N, L] is that cell's flat index ``row * W + col``,
    which is how the loss reads the offset heads at the gt cell only.
    """

    cls: Tensor
    x: Tensor
    y: Tensor
    nb_x: Tensor
    nb_y: Tensor
    cell: Tensor

    @property
    def mask(self) -> Tensor:
        """[N, L, H, W] 1 at each landmark's gt cell (where the offset targets are defined)."""
        return self.cls


def pipnet_targets(
    landmarks: Tensor, nb: np.ndarray | Tensor, map_size: int | tuple[int, int]
) -> PIPNetTargets:
    """PIPNet targets for ``landmarks`` [N, L, 2] (or [L, 2]) on an H x W grid.

    Landmark ``i`` lives in cell ``col = floor(x * W)``, ``row = floor(y * H)`` clipped to the
    grid; that cell gets 1 in score map ``i`` and the offsets ``x * W - col``, ``y * H - row``;
    neighbour channel ``K*i + j`` gets ``(x_nb * W - col, y_nb * H - row)`` of landmark
    ``nb[i, j]``, measured from landmark ``i``'s cell. Points outside the crop keep their
    (clipped) edge cell and offsets outside [0, 1], as in the official code.
    """
    single = landmarks.dim() == 2
    lms = landmarks[None] if single else landmarks
    lms = lms.to(torch.float32)
    height, width = (map_size, map_size) if isinstance(map_size, int) else map_size
    n, num_lms, _ = lms.shape
    nb_t = torch.tensor(np.asarray(nb), dtype=torch.long, device=lms.device)
    if nb_t.shape[0] != num_lms:
        raise ValueError(f"neighbour table has {nb_t.shape[0]} rows for {num_lms} landmarks")
    k = nb_t.shape[1]

    gx = lms[..., 0] * width  # [N, L] in grid units
    gy = lms[..., 1] * height
    col = torch.floor(gx).clamp(0, width - 1)
    row = torch.floor(gy).clamp(0, height - 1)
    cell = (row * width + col).long()  # [N, L]

    own_x = gx - col
    own_y = gy - row
    nb_flat = nb_t.reshape(-1)  # [L*K]: channel K*i + j -> landmark nb[i, j]
    nbr_x = gx[:, nb_flat] - col.repeat_interleave(k, dim=1)  # [N, L*K]
    nbr_y = gy[:, nb_flat] - row.repeat_interleave(k, dim=1)
    cell_nb = cell.repeat_interleave(k, dim=1)

    def scatter(values: Tensor, cells: Tensor) -> Tensor:
        maps = torch.zeros(n, values.shape[1], height * width, device=lms.device)
        maps.scatter_(2, cells[..., None], values[..., None])
        return maps.reshape(n, values.shape[1], height, width)

    targets = PIPNetTargets(
        cls=scatter(torch.ones_like(own_x), cell),
        x=scatter(own_x, cell),
        y=scatter(own_y, cell),
        nb_x=scatter(nbr_x, cell_nb),
        nb_y=scatter(nbr_y, cell_nb),
        cell=cell,
    )
    if single:
        return PIPNetTargets(*(t[0] for t in vars(targets).values()))
    return targets


def heatmap_targets(
    landmarks: Tensor, map_size: int | tuple[int, int], sigma: float = 1.5
) -> Tensor:
    """Gaussian heatmaps [N, L, H, W] (or [L, H, W]) peaking at each landmark's exact position.

    Heatmap pixel ``(c, r)`` has its centre at ``((c + 0.5) / W, (r + 0.5) / H)``, so its value
    is ``exp(-d^2 / (2 sigma^2))`` with ``d`` the distance in heatmap pixels from that centre to
    ``(x * W, y * H)``; the peak value is 1 when a landmark sits on a pixel centre.
    """
    single = landmarks.dim() == 2
    lms = (landmarks[None] if single else landmarks).to(torch.float32)
    height, width = (map_size, map_size) if isinstance(map_size, int) else map_size
    cx = torch.arange(width, device=lms.device, dtype=torch.float32) + 0.5
    cy = torch.arange(height, device=lms.device, dtype=torch.float32) + 0.5
    dx2 = (cx - lms[..., 0:1] * width) ** 2  # [N, L, W]
    dy2 = (cy - lms[..., 1:2] * height) ** 2  # [N, L, H]
    maps = torch.exp(-(dy2[..., :, None] + dx2[..., None, :]) / (2.0 * sigma * sigma))
    return maps[0] if single else maps
