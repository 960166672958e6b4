"""The reference runner: PyTorch + the reference decode (:mod:`lmk.core.decode`), what every ONNX
file lmk writes must reproduce. Torch side: it implements the runner interface of
:mod:`lmk.runtime.runners` so the comparator can set it beside an ONNX Runtime run."""

from __future__ import annotations

import numpy as np
import torch

from lmk.checkpoint import Checkpoint
from lmk.core.decode import flip_average as flip_average_views
from lmk.core.decode import mirror_views


def reference_outputs(
    checkpoint: Checkpoint,
    model: torch.nn.Module,
    images: np.ndarray,
    heads: bool = False,
    flip_average: bool = False,
) -> dict[str, np.ndarray]:
    """PyTorch + reference decode on uint8 BGR ``images``: ``landmarks`` and ``scores``, and
    with ``heads`` the raw heads under the names a ``--decode none`` file gives them. With
    ``flip_average`` each crop runs with its mirror image and the two are averaged, as an
    ``lmk.flip_average`` file does (:func:`lmk.core.decode.flip_average`)."""
    x = checkpoint.normalisation.apply_bgr_nhwc(images)
    if flip_average:
        x = mirror_views(x)
    spec = checkpoint.spec
    with torch.no_grad():
        raw = model(torch.from_numpy(np.ascontiguousarray(x)))
    landmarks, scores = spec.decode_outputs(raw, spec.neighbour_table(checkpoint.layout))
    if flip_average:
        landmarks, scores = flip_average_views(landmarks, scores, checkpoint.layout.flip)
    result = {"landmarks": landmarks, "scores": scores}
    if heads:
        tensors = spec.decoder.select_heads(raw)
        result.update(
            {name: t.numpy() for name, t in zip(spec.decoder.heads, tensors, strict=True)}
        )
    return result


class TorchRunner:
    """A checkpoint's network in eager PyTorch (eval mode) + the reference decode."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        model: torch.nn.Module | None = None,
        heads: bool = False,
        name: str = "pytorch",
        flip_average: bool = False,
    ) -> None:
        self.checkpoint = checkpoint
        self.model = (model or checkpoint.build_model()).eval()
        self.heads = heads
        self.name = name
        self.flip_average = flip_average

    def infer(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        return reference_outputs(self.checkpoint, self.model, crops, self.heads, self.flip_average)
