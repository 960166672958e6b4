"""Reference decoders (torch, batched): the truth the ONNX decode graphs are tested against.

Both follow docs/design.md section 3 exactly and return ``(landmarks [N, L, 2], scores [N, L])`` with
landmarks normalised to the input crop (0 = left edge of pixel 0, 1 = right edge of the last).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lmk.layouts import NeighbourTable


def _flat_argmax(maps: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-channel first maximum of [N, C, H, W]: (flat index, row, col, value), each [N, C]."""
    width = maps.shape[-1]
    flat = maps.flatten(2)
    index = flat.argmax(dim=2)  # torch documents the first maximal index on ties
    scores = flat.gather(2, index.unsqueeze(2)).squeeze(2)
    return index, torch.div(index, width, rounding_mode="floor"), index % width, scores


def pipnet_candidates(
    cls: Tensor, x: Tensor, y: Tensor, nb_x: Tensor, nb_y: Tensor
) -> tuple[Tensor, Tensor]:
    """Every PIPNet prediction before the merge: ``[N, L + L*K, 2]`` candidates and scores.

    ``cls, x, y``: [N, L, H, W]; ``nb_x, nb_y``: [N, L*K, H, W]. Candidate ``i`` is landmark
    ``i``'s own prediction; candidate ``L + K*i + j`` is neighbour channel ``K*i + j``, read at
    landmark ``i``'s peak cell (it predicts landmark ``nb[i, j]``).
    """
    n, num_lms, height, width = cls.shape
    if nb_x.shape[1] % num_lms:
        raise ValueError(f"{nb_x.shape[1]} neighbour channels for {num_lms} landmarks")
    k = nb_x.shape[1] // num_lms
    index, row, col, scores = _flat_argmax(cls)
    row, col = row.to(cls.dtype), col.to(cls.dtype)

    def at_peak(maps: Tensor, per_landmark: int) -> Tensor:
        flat = maps.reshape(n, num_lms, per_landmark, height * width)
        idx = index[:, :, None, None].expand(n, num_lms, per_landmark, 1)
        return flat.gather(3, idx).squeeze(3)  # [N, L, per_landmark]

    own_x = (col + at_peak(x, 1)[..., 0]) / width
    own_y = (row + at_peak(y, 1)[..., 0]) / height
    nbr_x = ((col[..., None] + at_peak(nb_x, k)) / width).reshape(n, num_lms * k)
    nbr_y = ((row[..., None] + at_peak(nb_y, k)) / height).reshape(n, num_lms * k)
    candidates = torch.stack([torch.cat([own_x, nbr_x], 1), torch.cat([own_y, nbr_y], 1)], -1)
    return candidates, scores


def decode_pipnet(
    cls: Tensor, x: Tensor, y: Tensor, nb_x: Tensor, nb_y: Tensor, table: NeighbourTable
) -> tuple[Tensor, Tensor]:
    """PIPNet heads -> landmarks merged by neighbour regression (NRM), and scores.

    Merged landmark ``m`` is the mean of the candidates ``table.gather[m]`` lists: its own
    prediction and every neighbour prediction of it, cyclically padded to ``max_len``.
    """
    num_lms = cls.shape[1]
    if table.num_points != num_lms or nb_x.shape[1] != num_lms * table.num_nb:
        raise ValueError(
            f"heads have {num_lms} landmarks and {nb_x.shape[1]} neighbour channels; "
            f"the table has {table.num_points} x {table.num_nb}"
        )
    candidates, scores = pipnet_candidates(cls, x, y, nb_x, nb_y)
    gather = torch.tensor(table.gather, device=cls.device)  # [L, 1 + max_len] (a copy)
    return candidates[:, gather].mean(dim=2), scores


def decode_heatmap(heatmaps: Tensor) -> tuple[Tensor, Tensor]:
    """Heatmaps [N, L, H, W] -> landmarks with face-alignment's quarter-pixel shift, and scores.

    Peak = first flat maximum. If it is strictly inside on both axes, it moves 0.25 px toward
    the larger neighbour on each axis (0 on ties); coordinate ``(col + 0.5 + dx) / W``.
    """
    height, width = heatmaps.shape[-2:]
    _, row, col, scores = _flat_argmax(heatmaps)
    flat = heatmaps.flatten(2)

    def value(r: Tensor, c: Tensor) -> Tensor:
        idx = (r.clamp(0, height - 1) * width + c.clamp(0, width - 1)).unsqueeze(-1)
        return flat.gather(2, idx).squeeze(-1)

    inside = (col > 0) & (col < width - 1) & (row > 0) & (row < height - 1)
    dx = torch.sign(value(row, col + 1) - value(row, col - 1)) * 0.25
    dy = torch.sign(value(row + 1, col) - value(row - 1, col)) * 0.25
    zero = torch.zeros_like(dx)
    dx = torch.where(inside, dx, zero)
    dy = torch.where(inside, dy, zero)
    lx = (col.to(heatmaps.dtype) + 0.5 + dx) / width
    ly = (row.to(heatmaps.dtype) + 0.5 + dy) / height
    return torch.stack([lx, ly], dim=-1), scores


def decode_regression(coords: Tensor) -> tuple[Tensor, Tensor]:
    """Interleaved ``x0 y0 x1 y1 ...`` [N, 2L], already normalised to the crop -> [N, L, 2].

    A regression net has no per-point confidence: the scores are 1.0 everywhere, only so every
    lmk file has the same two outputs (``lmk.confidence`` is false in its metadata, and the
    runtime does not read them as evidence)."""
    landmarks = coords.reshape(coords.shape[0], -1, 2)
    return landmarks, torch.ones_like(landmarks[..., 0])


def decode_outputs(
    outputs: Tensor | tuple[Tensor, ...] | list[Tensor],
    decode: str,
    table: NeighbourTable | None = None,
) -> tuple[Tensor, Tensor]:
    """Decode a model's raw ``forward`` output by decode name (``pipnet_nrm``,
    ``heatmap_quarter`` or ``regression``).

    Heatmap models return one tensor per stack; only the last stack is decoded.
    """
    if decode == "pipnet_nrm":
        if table is None:
            raise ValueError("pipnet_nrm decode needs the layout's NeighbourTable")
        return decode_pipnet(*outputs, table=table)
    if decode == "heatmap_quarter":
        heatmaps = outputs[-1] if isinstance(outputs, (list, tuple)) else outputs
        return decode_heatmap(heatmaps)
    if decode == "regression":
        return decode_regression(outputs[0] if isinstance(outputs, (list, tuple)) else outputs)
    raise ValueError(f"unknown decode {decode!r}")
