"""Models for the parity suite: each network is traced to ONNX once per session and every
variant (decode, input format, precision) is composed around that one trace."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import pytest
import torch

from lmk.checkpoint import Checkpoint
from lmk.export.checks import sample_inputs
from lmk.export.exporter import export_network
from lmk.faceapi_weights import FACEAPI_NORMALISATION
from lmk.layouts import get_layout
from lmk.models import ModelSpec
from lmk.normalise import IMAGENET, UNIT_RANGE

# name -> (spec, layout, normalisation)
PARITY_MODELS = {
    "pipnet_r18": (
        ModelSpec("pipnet", {"backbone": "resnet18", "num_lms": 98}),
        "wflw98",
        IMAGENET,
    ),
    "pipnet_mbv2": (
        ModelSpec("pipnet", {"backbone": "mobilenetv2", "num_lms": 68, "input_size": 128}),
        "300w68",
        IMAGENET,
    ),
    "hourglass": (
        ModelSpec("hourglass", {"num_lms": 98, "num_stacks": 2, "num_features": 128}),
        "wflw98",
        IMAGENET,
    ),
    # FAN-2: the same blocks and inter-stack links as FAN-4 (whose names test_models pins) at half
    # the tracing time.
    "fan": (ModelSpec("fan", {"num_modules": 2, "num_lms": 68}), "300w68", UNIT_RANGE),
    # The regression decode (face-api.js's net); its real weights are tested in test_faceapi.
    "faceapi68": (ModelSpec("faceapi68"), "300w68", FACEAPI_NORMALISATION),
}


@dataclass
class ParityModel:
    name: str
    checkpoint: Checkpoint
    torch_model: torch.nn.Module
    network: onnx.ModelProto  # dynamic-batch FP32 trace, float NCHW input, raw heads
    images: np.ndarray  # uint8 BGR crops, batch 3


def _perturb_bn_statistics(model: torch.nn.Module, seed: int) -> None:
    """Random BN statistics so that eval-mode BN is not an identity (a weaker test)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.add_(torch.randn(module.running_mean.shape, generator=g) * 0.1)
                module.running_var.mul_(1 + torch.rand(module.running_var.shape, generator=g))


@pytest.fixture(scope="session", params=list(PARITY_MODELS))
def parity_model(request) -> ParityModel:
    spec, layout, normalisation = PARITY_MODELS[request.param]
    torch.manual_seed(0)
    model = spec.build()
    _perturb_bn_statistics(model, 1)
    model.eval()
    checkpoint = Checkpoint.from_model(model, spec, get_layout(layout), normalisation)
    network = export_network(model, spec, opset=17, batch=None)
    return ParityModel(request.param, checkpoint, model, network, sample_inputs(checkpoint, 3))
