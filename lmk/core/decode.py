"""The decode table: every decode name, the heads it reads, its numpy decoder and its ONNX
graph builder. No other module branches on a decode name.

A decode turns a network's raw heads into ``(landmarks [N, L, 2], scores [N, L])``, landmarks
normalised to the input crop (0 = left edge of pixel 0, 1 = right edge of the last). The numpy
functions here are the reference: PyTorch validation, the export self-check, ``--decode none``
files at run time and the benchmarks' "usual path" (ONNX stops at the heads, the host decodes)
all decode with them. The graph builders (``lmk.export.graphs``) are the in-graph copy; they are
named here as strings and imported only when asked for, so this module stays onnx-free. The
parity tests tie the two together.

The decoders are vectorised (no per-landmark Python loops), so the benchmark race with the
fused graph is fair.

Adding a decode: write its numpy function here and its graph builder in
``lmk/export/graphs.py`` (same signature as the others), add a :class:`Decoder` to
:data:`DECODERS`, and tests that pin both to hand-worked cases.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmk.core.errors import LmkError
from lmk.core.layouts import Layout, NeighbourTable

NO_DECODE = "none"
"""``lmk.decode`` of a file that stops at the raw heads (``lmk-export --decode none``)."""


def _peaks(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel first flat maximum of [N, C, H, W]: (index, row, col, value), each [N, C]."""
    n, c, h, w = maps.shape
    flat = maps.reshape(n, c, h * w)
    index = flat.argmax(axis=2)  # numpy documents the first maximal index on ties
    scores = np.take_along_axis(flat, index[..., None], axis=2)[..., 0]
    return index, (index // w).astype(maps.dtype), (index % w).astype(maps.dtype), scores


def pipnet_candidates(
    cls: np.ndarray, x: np.ndarray, y: np.ndarray, nb_x: np.ndarray, nb_y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Every PIPNet prediction before the merge: ``[N, L + L*K, 2]`` candidates and scores.

    ``cls, x, y``: [N, L, H, W]; ``nb_x, nb_y``: [N, L*K, H, W]. Candidate ``i`` is landmark
    ``i``'s own prediction ``((col + x) / W, (row + y) / H)`` at its score map's peak; candidate
    ``L + K*i + j`` is neighbour channel ``K*i + j`` read at landmark ``i``'s peak cell (it
    predicts landmark ``nb[i, j]``).
    """
    n, num_lms, h, w = cls.shape
    if nb_x.shape[1] % num_lms:
        raise ValueError(f"{nb_x.shape[1]} neighbour channels for {num_lms} landmarks")
    k = nb_x.shape[1] // num_lms
    index, row, col, scores = _peaks(cls)

    def at_peak(maps: np.ndarray, per: int) -> np.ndarray:
        flat = maps.reshape(n, num_lms, per, h * w)
        return np.take_along_axis(flat, index[:, :, None, None], axis=3)[..., 0]

    own_x = (col + at_peak(x, 1)[..., 0]) / w
    own_y = (row + at_peak(y, 1)[..., 0]) / h
    nbr_x = ((col[..., None] + at_peak(nb_x, k)) / w).reshape(n, -1)
    nbr_y = ((row[..., None] + at_peak(nb_y, k)) / h).reshape(n, -1)
    candidates = np.stack(
        [np.concatenate([own_x, nbr_x], axis=1), np.concatenate([own_y, nbr_y], axis=1)], -1
    )
    return candidates, scores


def decode_pipnet(
    heads: Sequence[np.ndarray], table: NeighbourTable | None
) -> tuple[np.ndarray, np.ndarray]:
    """PIPNet heads ``(cls, x, y, nb_x, nb_y)`` -> landmarks merged by neighbour regression
    (NRM), and scores. Merged landmark ``m`` is the mean of the candidates ``table.gather[m]``
    lists: its own prediction and every neighbour prediction of it, cyclically padded."""
    if table is None:
        raise ValueError("the pipnet_nrm decode needs the layout's neighbour table")
    cls, x, y, nb_x, nb_y = (np.asarray(h) for h in heads)
    num_lms = cls.shape[1]
    if table.num_points != num_lms or nb_x.shape[1] != num_lms * table.num_nb:
        raise ValueError(
            f"heads have {num_lms} landmarks and {nb_x.shape[1]} neighbour channels; "
            f"the table has {table.num_points} x {table.num_nb}"
        )
    candidates, scores = pipnet_candidates(cls, x, y, nb_x, nb_y)
    return candidates[:, np.asarray(table.gather)].mean(axis=2), scores


def decode_heatmap(
    heads: Sequence[np.ndarray], table: NeighbourTable | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps ``(heatmaps [N, L, H, W],)`` -> landmarks with face-alignment's quarter-pixel
    shift, and scores. Peak = first flat maximum; strictly inside on both axes it moves 0.25 px
    toward the larger neighbour on each axis (0 on ties); coordinate ``(col + 0.5 + dx) / W``."""
    (heatmaps,) = (np.asarray(h) for h in heads)
    n, c, h, w = heatmaps.shape
    index, row, col, scores = _peaks(heatmaps)
    flat = heatmaps.reshape(n, c, h * w)

    def value(step: int) -> np.ndarray:
        idx = np.clip(index + step, 0, h * w - 1)
        return np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]

    inside = (col > 0) & (col < w - 1) & (row > 0) & (row < h - 1)
    dx = (np.sign(value(1) - value(-1)) * 0.25 * inside).astype(heatmaps.dtype)
    dy = (np.sign(value(w) - value(-w)) * 0.25 * inside).astype(heatmaps.dtype)
    return np.stack([(col + 0.5 + dx) / w, (row + 0.5 + dy) / h], axis=-1), scores


def decode_regression(
    heads: Sequence[np.ndarray], table: NeighbourTable | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates ``(coords [N, 2L],)``, interleaved ``x0 y0 x1 y1 ...`` and already
    normalised to the crop -> landmarks [N, L, 2]. A regression net has no per-point
    confidence: the scores are 1.0 everywhere only so every lmk file has the same two outputs
    (its metadata says ``lmk.confidence`` false and the runtime does not read them)."""
    (coords,) = (np.asarray(h) for h in heads)
    landmarks = coords.reshape(coords.shape[0], -1, 2)
    return landmarks, np.ones(landmarks.shape[:2], dtype=coords.dtype)


def mirror_views(images: np.ndarray) -> np.ndarray:
    """Flip test-time augmentation's input: the batch ``[N, ...]`` followed by its horizontal
    mirror images (``[2N, ...]``; the last axis is the width, as in NCHW crops). The file's
    graph (``lmk.export.graphs.mirror_views_model``) and the reference both feed this batch."""
    images = np.asarray(images)
    return np.concatenate([images, images[..., ::-1]], axis=0)


def flip_average(
    landmarks: np.ndarray, scores: np.ndarray, flip: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Flip test-time augmentation's merge, the numpy twin of
    ``lmk.export.graphs.flip_average_model`` (``lmk.flip_average`` files).

    ``landmarks [2N, L, 2]`` and ``scores [2N, L]`` are the decodes of :func:`mirror_views`'
    batch. The mirror crop's point ``flip[i]`` is point ``i`` seen in the mirror (the layout's
    flip table, an involution), at ``x' = 1 - x`` in normalised crop units (section 2 of
    docs/design.md: the mirror of ``[0, 1]`` is exact); each point is the mean of its two
    predictions, each score the mean of its two scores."""
    landmarks, scores = np.asarray(landmarks), np.asarray(scores)
    n = len(landmarks) // 2
    if len(landmarks) != 2 * n or len(scores) != 2 * n:
        raise ValueError(f"flip averaging needs an even batch, got {len(landmarks)}")
    perm = np.asarray(flip, dtype=np.int64)
    mirrored = landmarks[n:, perm]
    unmirrored = np.stack([1.0 - mirrored[..., 0], mirrored[..., 1]], axis=-1)
    merged = (landmarks[:n] + unmirrored.astype(landmarks.dtype)) * 0.5
    return merged, (scores[:n] + scores[n:, perm]) * 0.5


HostDecode = Callable[[Sequence[np.ndarray], NeighbourTable | None], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Decoder:
    """One decode: what it reads, how numpy runs it, which graph builder fuses it."""

    name: str
    """The ``lmk.decode`` / ``lmk.raw_decode`` metadata value."""
    heads: tuple[str, ...]
    """The raw head outputs it reads, in order (the outputs of a ``--decode none`` file)."""
    host: HostDecode
    """The numpy decode: ``host(heads, table) -> (landmarks, scores)``."""
    graph_builder: str
    """``module:function`` of its ONNX subgraph builder, called as
    ``builder(num_lms, table, height, width, opset, ir_version, batch)``."""
    uses_neighbours: bool = False
    """It needs the layout's :class:`NeighbourTable` (PIPNet's neighbour-regression merge)."""
    neighbour_heads: tuple[str, ...] = ()
    """Heads with one channel per landmark and neighbour (L*K); the others have L."""
    stacked: bool = False
    """The network returns one output per stack (hourglass, FAN): only the last is decoded."""
    snaps_to_cells: bool = False
    """Its landmarks sit on map cells (no learned sub-cell offset), so a peak that reduced
    precision moves takes a landmark a whole cell: the tolerance table gives such decodes a
    looser INT8 row (``lmk.runtime.compare``)."""
    map_heads: bool = True
    """Its heads are [N, C, H, W] maps; else one [N, 2L] coordinate vector (regression)."""
    has_confidence: bool = True
    """Its scores are a real per-landmark confidence (``lmk.confidence``); a regression head's
    are constant ones, kept only so every file has the same two outputs."""

    def neighbour_table(self, layout: Layout, num_nb: int) -> NeighbourTable | None:
        """The neighbour table this decode needs (``None`` when it needs none): the one place
        that decides whether a model gets one."""
        return layout.neighbours(int(num_nb)) if self.uses_neighbours else None

    def select_heads(self, outputs: Any) -> tuple[Any, ...]:
        """A network's raw ``forward`` output -> the heads this decode reads, in order."""
        if not isinstance(outputs, (list, tuple)):
            return (outputs,)  # a single-head net (regression) returns its one tensor
        if self.stacked:
            return (outputs[-1],)
        return tuple(outputs)

    def decode(
        self, heads: Sequence[np.ndarray], table: NeighbourTable | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(landmarks [N, L, 2], scores [N, L])`` from the heads as numpy arrays."""
        return self.host(heads, table)

    def graph(self) -> Callable[..., Any]:
        """The ONNX graph builder (imports ``lmk.export``, so onnx, only when called)."""
        module, function = self.graph_builder.split(":")
        return getattr(importlib.import_module(module), function)


PIPNET_NRM = Decoder(
    "pipnet_nrm",
    ("cls", "x", "y", "nb_x", "nb_y"),
    decode_pipnet,
    "lmk.export.graphs:pipnet_decode_model",
    uses_neighbours=True,
    neighbour_heads=("nb_x", "nb_y"),
)
"""PIPNet: score-map peak + offsets, merged with the neighbours' predictions (NRM)."""

HEATMAP_QUARTER = Decoder(
    "heatmap_quarter",
    ("heatmaps",),
    decode_heatmap,
    "lmk.export.graphs:heatmap_decode_model",
    stacked=True,
    snaps_to_cells=True,
)
"""Heatmaps (hourglass, FAN): peak + face-alignment's quarter-pixel shift."""

REGRESSION = Decoder(
    "regression",
    ("coords",),
    decode_regression,
    "lmk.export.graphs:regression_decode_model",
    map_heads=False,
    has_confidence=False,
)
"""Direct coordinate regression (face-api.js's 68-point net): no heatmap, no confidence."""

DECODERS: dict[str, Decoder] = {d.name: d for d in (PIPNET_NRM, HEATMAP_QUARTER, REGRESSION)}
"""Every decode by name."""

DECODE_NAMES = (*DECODERS, NO_DECODE)
"""What ``lmk.decode`` may say."""


def get_decoder(name: str) -> Decoder:
    """The decode called ``name``; an unknown name is a one-line error listing the known ones."""
    try:
        return DECODERS[name]
    except KeyError:
        raise LmkError(f"unknown decode {name!r}; known: {', '.join(DECODERS)}") from None
