"""The reference runner: PyTorch + the reference decode (:mod:`lmk.core.decode`), what every ONNX
file lmk writes must reproduce. Torch side: it implements the runner interface of
:mod:`lmk.runtime.runners` so the comparator can set it beside an ONNX Runtime run."""

from __future__ import annotations

import numpy as np
import torch

from lmk.checkpoint import Checkpoint


def reference_outputs(
    checkpoint: Checkpoint, model: torch.nn.Module, images: np.ndarray, heads: bool = False
) -> dict[str, np.ndarray]:
    """PyTorch + reference decode on uint8 BGR ``images``: ``landmarks`` and ``scores``, and
    with ``heads`` the raw heads under the names a ``--decode none`` file gives them."""
    x = torch.from_numpy(checkpoint.normalisation.apply_bgr_nhwc(images))
    spec = checkpoint.spec
    with torch.no_grad():
        raw = model(x)
    landmarks, scores = spec.decode_outputs(raw, spec.neighbour_table(checkpoint.layout))
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
    ) -> None:
        self.checkpoint = checkpoint
        self.model = (model or checkpoint.build_model()).eval()
        self.heads = heads
        self.name = name

    def infer(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        return reference_outputs(self.checkpoint, self.model, crops, self.heads)
