"""Runners: one interface over the ways lmk produces landmarks for the same crops, in the
spirit of Polygraphy's runners, so a parity statement is always "runner A vs runner B,
:func:`lmk.runtime.compare.compare`, a row of the tolerance table".

A runner takes uint8 BGR crops [N, S, S, 3] (what OpenCV gives) and returns its outputs by
name: ``landmarks`` [N, L, 2] normalised to the crop and ``scores`` [N, L] always, plus the raw
heads where it has them. Two exist: :class:`OnnxRuntimeRunner` here (an exported file under
:class:`~lmk.runtime.session.InferenceModel`, the very session ``lmk-run`` users get, so no
test or benchmark builds an ONNX Runtime session of its own) and the PyTorch + reference
decode runner on the torch side (``lmk.export.reference.TorchRunner``). Torch-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from lmk.runtime.compare import Tolerance, effective_precision, tolerance_for
from lmk.runtime.session import InferenceModel, RuntimeOptions


class Runner(Protocol):
    """Anything that turns crops into named outputs (``landmarks`` and ``scores`` at least)."""

    name: str

    def infer(self, crops: np.ndarray) -> dict[str, np.ndarray]: ...


class OnnxRuntimeRunner:
    """An exported lmk file under lmk's runtime with ``options`` (default: the CPU EP).

    ``infer`` returns the graph's own outputs (the raw heads of a ``--decode none`` file) and
    the landmarks and scores :meth:`InferenceModel.infer` gives for them."""

    def __init__(
        self, path: str | Path, options: RuntimeOptions | None = None, name: str | None = None
    ) -> None:
        self.model = InferenceModel(path, options or RuntimeOptions(ep="cpu"))
        self.name = name or f"onnxruntime-{self.model.ep}"

    @property
    def providers(self) -> list[str]:
        """The execution providers the session really got, best first."""
        return list(self.model.session.get_providers())

    def infer(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.model.run_graph(crops)
        landmarks, scores = self.model.landmarks(outputs)
        return {**outputs, "landmarks": landmarks, "scores": scores}

    @property
    def precision(self) -> str:
        """What this run computes in: the file's precision, ``fp16-stored`` for FP16-stored
        weights, ``fp16`` under TensorRT with ``trt_fp16``, ``bf16`` on OpenVINO BF16."""
        info, options = self.model.info, self.model.options
        if self.model.ep == "openvino" and options.ov_precision == "bf16":
            return "bf16"
        return effective_precision(
            info.precision,
            info.weight_storage,
            trt_fp16=self.model.ep == "tensorrt" and options.trt_fp16,
        )

    def tolerance(self, random_weights: bool = False) -> Tolerance:
        """The table's limits for this file on this EP (:func:`tolerance_for`)."""
        return tolerance_for(
            self.precision, self.model.ep, self.model.info.raw_decode, random_weights
        )
