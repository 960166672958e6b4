"""GPU parity: CUDA and TensorRT execution providers against PyTorch + reference decode.

Skipped without onnxruntime-gpu and a GPU (and, for TensorRT, without loadable TensorRT
libraries: onnxruntime-gpu lists the provider even when libnvinfer is missing, so the test
checks the providers the session really got). Tolerances, landmarks in normalised crop units:
CUDA FP32 and TensorRT FP32 <= 1e-4 (cuDNN/TensorRT pick other convolution algorithms than
the CPU, which moves raw heads by ~1e-5 relative; 1e-4 is 0.03 px of a 256 crop).
"""

from __future__ import annotations

import numpy as np
import pytest

from lmk.export.checks import onnx_feed, reference_outputs
from lmk.export.exporter import ExportOptions, build_onnx

ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.gpu
if not {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()):
    # Decided before the session fixtures trace any network: a CPU box pays nothing here.
    pytest.skip(
        "no GPU execution provider (install lmk[gpu] on a CUDA machine)", allow_module_level=True
    )
GPU_TOLERANCE = 1e-4


def _session(model_bytes: bytes, provider: str, options: dict):
    if provider not in ort.get_available_providers():
        pytest.skip(f"{provider} not available (needs onnxruntime-gpu and a GPU)")
    try:
        session = ort.InferenceSession(
            model_bytes, providers=[(provider, options), "CPUExecutionProvider"]
        )
    except Exception as exc:  # e.g. CUDA libraries missing
        pytest.skip(f"{provider} failed to start: {str(exc).splitlines()[0]}")
    if session.get_providers()[0] != provider:
        pytest.skip(f"{provider} did not load (got {session.get_providers()})")
    return session


@pytest.mark.parametrize(
    ("provider", "provider_options"),
    [
        ("CUDAExecutionProvider", {"use_tf32": 0}),
        ("TensorrtExecutionProvider", {"trt_fp16_enable": False}),
    ],
)
def test_gpu_fp32_matches_pytorch_and_reference_decode(
    parity_model, tmp_path, provider, provider_options
):
    options = ExportOptions()
    model = build_onnx(parity_model.checkpoint, options, parity_model.network)
    if provider == "TensorrtExecutionProvider":
        provider_options = {
            **provider_options,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(tmp_path),
        }
    session = _session(model.SerializeToString(), provider, provider_options)
    feed = {"image": onnx_feed(parity_model.checkpoint, options, parity_model.images)}
    landmarks, scores = session.run(["landmarks", "scores"], feed)
    want = reference_outputs(
        parity_model.checkpoint, parity_model.torch_model, parity_model.images, "fused"
    )
    error = np.abs(landmarks - want["landmarks"]).max()
    assert error <= GPU_TOLERANCE, f"{provider}: landmarks differ by {error:.3g}"
    assert np.abs(scores - want["scores"]).max() <= 1e-3 + 1e-3 * np.abs(want["scores"]).max()
