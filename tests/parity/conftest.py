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
from lmk.models import random_checkpoint

# name -> (family, architecture, layout); weights from lmk.models.random_checkpoint with
# random BN statistics (eval-mode BN as an identity would make a weaker test), the family's
# own normalisation and crop rule.
PARITY_MODELS = {
    "pipnet_r18": ("pipnet", {"backbone": "resnet18"}, "wflw98"),
    "pipnet_mbv2": ("pipnet", {"backbone": "mobilenetv2", "input_size": 128}, "300w68"),
    "hourglass": ("hourglass", {"num_stacks": 2, "num_features": 128}, "wflw98"),
    # FAN-2: the same blocks and inter-stack links as FAN-4 (whose names test_models pins) at half
    # the tracing time.
    "fan": ("fan", {"num_modules": 2}, "300w68"),
    # The regression decode (face-api.js's net); its real weights are tested in test_faceapi.
    "faceapi68": ("faceapi68", {}, "300w68"),
}


@dataclass
class ParityModel:
    name: str
    checkpoint: Checkpoint
    torch_model: torch.nn.Module
    network: onnx.ModelProto  # dynamic-batch FP32 trace, float NCHW input, raw heads
    images: np.ndarray  # uint8 BGR crops, batch 3


@pytest.fixture(scope="session", params=list(PARITY_MODELS))
def parity_model(request) -> ParityModel:
    family, args, layout = PARITY_MODELS[request.param]
    checkpoint = random_checkpoint(family, args, 0, layout, batchnorm_statistics=True)
    model = checkpoint.build_model()
    network = export_network(model, checkpoint.spec, opset=17, batch=None)
    return ParityModel(request.param, checkpoint, model, network, sample_inputs(checkpoint, 3))
