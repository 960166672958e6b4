"""What training and evaluation share: a model family's objective, and scoring predictions.

Scoring maps each predicted crop-normalised landmark back into the original image through the
inverse of that face's crop affine and measures NME there with :mod:`lmk.core.metrics`, so
``lmk-train``'s validation, ``lmk-eval`` on a checkpoint and ``lmk-eval`` on an ONNX file all
compute the same number the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lmk.core.errors import LmkError
from lmk.core.geometry import crop_to_frame
from lmk.core.layouts import Layout, NeighbourTable
from lmk.core.metrics import evaluate, nme
from lmk.losses import heatmap_loss, pipnet_loss
from lmk.models import ModelSpec
from lmk.targets import heatmap_targets, pipnet_targets


@dataclass
class Objective:
    """Targets + loss for one model family, built once from the spec and layout."""

    spec: ModelSpec
    layout: Layout
    heatmap_loss: str = "mse"
    sigma: float = 1.5

    def __post_init__(self) -> None:
        # The targets are the decode's inverse: a neighbour-merge decode (PIPNet) reads score
        # maps and offsets, the others read heatmaps.
        self.table: NeighbourTable | None = self.spec.neighbour_table(self.layout)
        self.map_size = self.spec.input_size // self.spec.map_stride

    def loss(self, outputs: Any, landmarks: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Loss of raw ``outputs`` against normalised gt ``landmarks`` [N, L, 2]."""
        if self.table is not None:
            return pipnet_loss(outputs, pipnet_targets(landmarks, self.table.nb, self.map_size))
        target = heatmap_targets(landmarks, self.map_size, self.sigma)
        return heatmap_loss(outputs, target, self.heatmap_loss)


def torch_predictor(
    model: nn.Module, spec: ModelSpec, layout: Layout, device: torch.device | str = "cpu"
) -> Callable[[dict[str, Any]], np.ndarray]:
    """``batch -> [N, L, 2]`` normalised landmarks: the model in eval mode + reference decode."""
    table = spec.neighbour_table(layout)

    def predict(batch: dict[str, Any]) -> np.ndarray:
        with torch.no_grad():
            landmarks, _ = spec.decode_outputs(model(batch["image"].to(device)), table)
        return landmarks

    return predict


@dataclass
class Predictions:
    """Predicted crop-normalised landmarks beside what scoring them needs, per face."""

    landmarks: np.ndarray  # [N, L, 2] normalised to each crop
    gt: np.ndarray  # [N, L, 2] frame pixels
    matrix: np.ndarray  # [N, 2, 3] frame -> crop pixels
    box: np.ndarray  # [N, 4] frame pixels
    attributes: np.ndarray  # [N, 6]
    index: np.ndarray  # [N]


def collect(
    batches: Iterable[dict[str, Any]], predict: Callable[[dict[str, Any]], np.ndarray]
) -> Predictions:
    """Run ``predict`` over every batch and gather the predictions with their ground truth."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in Predictions.__dataclass_fields__}
    for batch in batches:
        parts["landmarks"].append(np.asarray(predict(batch), dtype=np.float64))
        parts["gt"].append(batch["frame_landmarks"].numpy())
        parts["matrix"].append(batch["matrix"].numpy())
        parts["box"].append(batch["box"].numpy())
        parts["attributes"].append(batch["attributes"].numpy())
        parts["index"].append(np.asarray(batch["index"]))
    return Predictions(**{k: np.concatenate(v) for k, v in parts.items()})


def score(
    predictions: Predictions, layout: Layout, input_size: int, threshold: float = 0.1
) -> tuple[dict[str, Any], np.ndarray]:
    """(metrics dict from :func:`lmk.core.metrics.evaluate`, per-face NME [N]) in frame pixels."""
    pred = crop_to_frame(predictions.landmarks, predictions.matrix, input_size)
    nmes = nme(pred, predictions.gt, layout, predictions.box)
    return evaluate(nmes, predictions.attributes, threshold), nmes


def loader_error(exc: Exception) -> LmkError:
    """One line from an LmkError a DataLoader worker raised (it comes back with the worker's
    traceback as its message)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    last = lines[-1] if lines else type(exc).__name__
    prefix = "lmk.core.errors.LmkError: "
    return LmkError(last[len(prefix) :] if last.startswith(prefix) else last)


def loader_batches(loader: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Iterate a DataLoader, turning a worker's LmkError back into a one-line LmkError."""
    try:
        yield from loader
    except LmkError as exc:
        raise loader_error(exc) from None
