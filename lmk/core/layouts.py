"""Landmark layouts and PIPNet's neighbour tables: the one place these numbers and this math live.

numpy only (no torch), so the runtime and the exporter can share it. The public layouts'
facts (flip permutation, NME normalisation, mean face) are copied from the releases into
``lmk/data/layouts.json``; custom layouts get a mean face from training annotations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import numpy as np

from lmk.core.errors import LmkError


@dataclass(frozen=True)
class Layout:
    """A landmark scheme: how many points, how they mirror, how NME is normalised."""

    name: str
    flip: tuple[int, ...]
    """After mirroring an image horizontally, new point ``i`` takes old point ``flip[i]``."""
    nme_norm: tuple[int, int] | str
    """Indices of the two points whose distance normalises NME, or ``"box"`` (AFLW)."""
    meanface: np.ndarray = field(repr=False)
    """[L, 2] mean landmark positions in normalised crop coordinates."""
    num_nb: int = 10
    """PIPNet's default neighbour count for this layout."""

    def __post_init__(self) -> None:
        meanface = np.asarray(self.meanface, dtype=np.float64)
        n = len(self.flip)
        if meanface.shape != (n, 2):
            raise LmkError(
                f"layout {self.name!r}: mean face has shape {meanface.shape}, expected ({n}, 2)"
            )
        if sorted(self.flip) != list(range(n)):
            raise LmkError(f"layout {self.name!r}: flip table is not a permutation of 0..{n - 1}")
        if any(self.flip[self.flip[i]] != i for i in range(n)):
            raise LmkError(f"layout {self.name!r}: flip table is not its own inverse")
        if isinstance(self.nme_norm, str):
            if self.nme_norm != "box":
                raise LmkError(f"layout {self.name!r}: nme_norm must be two indices or 'box'")
        elif not all(0 <= i < n for i in self.nme_norm):
            raise LmkError(f"layout {self.name!r}: nme_norm indices out of range")
        meanface.setflags(write=False)
        object.__setattr__(self, "meanface", meanface)

    @property
    def num_points(self) -> int:
        return len(self.flip)

    def neighbours(self, num_nb: int | None = None) -> NeighbourTable:
        """PIPNet's neighbour tables for this layout's mean face."""
        return NeighbourTable.from_meanface(
            self.meanface, self.num_nb if num_nb is None else num_nb
        )

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "flip": list(self.flip),
            "nme_norm": self.nme_norm if isinstance(self.nme_norm, str) else list(self.nme_norm),
            "meanface": self.meanface.tolist(),
            "num_nb": self.num_nb,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Layout:
        nme = data["nme_norm"]
        return cls(
            name=data["name"],
            flip=tuple(int(i) for i in data["flip"]),
            nme_norm=nme if isinstance(nme, str) else (int(nme[0]), int(nme[1])),
            meanface=np.asarray(data["meanface"], dtype=np.float64).reshape(-1, 2),
            num_nb=int(data.get("num_nb", 10)),
        )


@cache
def _public_layouts() -> dict[str, Layout]:
    text = resources.files("lmk").joinpath("data/layouts.json").read_text(encoding="utf-8")
    raw = json.loads(text)
    return {
        name: Layout.from_dict({"name": name, **spec})
        for name, spec in raw.items()
        if not name.startswith("_")
    }


PUBLIC_LAYOUTS = ("wflw98", "300w68", "cofw29", "aflw19")


def get_layout(name: str) -> Layout:
    """One of the public layouts by name (``wflw98``, ``300w68``, ``cofw29``, ``aflw19``)."""
    layouts = _public_layouts()
    if name not in layouts:
        raise LmkError(f"unknown layout {name!r}; known layouts: {', '.join(PUBLIC_LAYOUTS)}")
    return layouts[name]


WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "make-up", "occlusion", "blur")
"""WFLW's six attribute flags, in the order of its annotation files."""

WFLW_TO_300W = np.array(
    [
        *range(0, 33, 2),  # contour: every other point, 17
        *(33, 34, 35, 36, 37, 42, 43, 44, 45, 46),  # brows: upper edges, 10
        *range(51, 60),  # nose bridge 4 + bottom 5, 9
        *(60, 61, 63, 64, 65, 67, 68, 69, 71, 72, 73, 75),  # eyes, 6 + 6
        *range(76, 96),  # outer lip 12 + inner lip 8
    ],
    dtype=np.int64,
)
"""300W-68 point ``k`` is WFLW-98 point ``WFLW_TO_300W[k]``.

The usual WFLW->300W conversion: contour 0,2,...,32 -> 0-16; brow upper edges 33-37 ->
17-21 and 42-46 -> 22-26; nose 51-59 -> 27-35; eyes 60,61,63,64,65,67 -> 36-41 and
68,69,71,72,73,75 -> 42-47 (corners plus the points a third of the way along each lid);
outer lip 76-87 -> 48-59; inner lip 88-95 -> 60-67. 17 + 10 + 9 + 12 + 20 = 68, and the
map commutes with both layouts' flip tables.
"""


def wflw98_to_300w68(landmarks98: np.ndarray) -> np.ndarray:
    """300W-68 landmarks from WFLW-98 ones (``[..., 98, 2] -> [..., 68, 2]``), by ``WFLW_TO_300W``."""
    landmarks98 = np.asarray(landmarks98)
    if landmarks98.ndim < 2 or landmarks98.shape[-2] != 98:
        raise LmkError(f"expected [..., 98, 2] WFLW landmarks, got shape {landmarks98.shape}")
    return landmarks98[..., WFLW_TO_300W, :].copy()


def custom_layout(
    name: str,
    landmarks: np.ndarray,
    flip: list[int] | tuple[int, ...],
    nme_norm: tuple[int, int] | str,
    num_nb: int = 10,
) -> Layout:
    """A layout for the user's own scheme: mean face = mean of normalised training landmarks.

    ``landmarks`` is [M, L, 2] in normalised crop coordinates (what the training crops give);
    the flip table must come from the user, since only they know which point mirrors which.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim != 3 or landmarks.shape[-1] != 2 or landmarks.shape[0] == 0:
        raise LmkError(
            f"custom layout {name!r}: landmarks must be [M, L, 2], got {landmarks.shape}"
        )
    if not np.isfinite(landmarks).all():
        raise LmkError(f"custom layout {name!r}: landmarks contain NaN or infinity")
    if len(flip) != landmarks.shape[1]:
        raise LmkError(
            f"custom layout {name!r}: flip has {len(flip)} entries for {landmarks.shape[1]} points"
        )
    return Layout(name, tuple(int(i) for i in flip), nme_norm, landmarks.mean(axis=0), num_nb)


@dataclass(frozen=True)
class NeighbourTable:
    """PIPNet's neighbour structure (docs/design.md section 3), precomputed once per layout.

    ``nb[i, j]`` is the landmark that neighbour channel ``K*i + j`` predicts. ``gather[m]``
    lists indices into the concatenation ``[own (L), neighbour (L*K)]`` of predictions whose
    mean is merged landmark ``m``: first ``m`` itself, then ``L + K*i + j`` for every
    ``nb[i, j] == m`` in ascending ``i``, repeated cyclically to ``max_len`` entries.
    ``merge`` is the same mean as a constant [L, L + L*K] matrix.
    """

    nb: np.ndarray
    gather: np.ndarray
    max_len: int

    @property
    def num_points(self) -> int:
        return self.nb.shape[0]

    @property
    def num_nb(self) -> int:
        return self.nb.shape[1]

    @classmethod
    def from_meanface(cls, meanface: np.ndarray, num_nb: int) -> NeighbourTable:
        meanface = np.asarray(meanface, dtype=np.float64)
        n = meanface.shape[0]
        if not 1 <= num_nb <= n - 1:
            raise LmkError(f"num_nb must be between 1 and {n - 1} for {n} points, got {num_nb}")
        nb = nearest_neighbours(meanface, num_nb)
        reverse: list[list[int]] = [[] for _ in range(n)]
        for i in range(n):
            for j in range(num_nb):
                reverse[nb[i, j]].append(n + num_nb * i + j)
        max_len = max(len(r) for r in reverse)
        gather = np.empty((n, 1 + max_len), dtype=np.int64)
        for m, entries in enumerate(reverse):
            gather[m, 0] = m
            # A point nobody predicts keeps its own prediction: padding with m adds nothing.
            padded = (
                [entries[k % len(entries)] for k in range(max_len)] if entries else [m] * max_len
            )
            gather[m, 1:] = padded
        nb.setflags(write=False)
        gather.setflags(write=False)
        return cls(nb=nb, gather=gather, max_len=max_len)

    @property
    def merge(self) -> np.ndarray:
        """[L, L + L*K] float64 matrix M with merged = M @ concat(own, neighbour predictions)."""
        n, width = self.num_points, self.gather.shape[1]
        matrix = np.zeros((n, n + n * self.num_nb), dtype=np.float64)
        for m in range(n):
            np.add.at(matrix[m], self.gather[m], 1.0 / width)
        return matrix


def nearest_neighbours(meanface: np.ndarray, num_nb: int) -> np.ndarray:
    """[L, K] indices of each point's K nearest other points (squared distance, stable order)."""
    meanface = np.asarray(meanface, dtype=np.float64)
    d2 = ((meanface[:, None, :] - meanface[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    return np.argsort(d2, axis=1, kind="stable")[:, :num_nb].astype(np.int64)
