"""GPU parity: the CUDA and TensorRT execution providers against PyTorch + reference decode.

The file runs through lmk's runtime (``InferenceModel`` with ``RuntimeOptions(ep=...)``: the
session options, TensorRT workspace, caches, profile, TF32 decision and IO binding users get),
held to the FP32 row of :data:`lmk.runtime.compare.TOLERANCES` for its EP (landmarks <= 1e-4
of the crop: cuDNN/TensorRT pick other convolution algorithms than the CPU).

Skipped without onnxruntime-gpu and a GPU; an EP that does not really load (onnxruntime-gpu
lists TensorRT even when libnvinfer is missing) is the runtime's one-line error, shown as the
skip reason.
"""

from __future__ import annotations

import onnx
import pytest

from lmk.core.errors import LmkError
from lmk.export.exporter import ExportOptions, build_onnx
from lmk.export.reference import TorchRunner
from lmk.runtime.compare import compare, tolerance_for
from lmk.runtime.runners import OnnxRuntimeRunner
from lmk.runtime.session import RuntimeOptions

ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.gpu
if not {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()):
    # Decided before the session fixtures trace any network: a CPU box pays nothing here.
    pytest.skip(
        "no GPU execution provider (install lmk[gpu] on a CUDA machine)", allow_module_level=True
    )


def gpu_runner(path, options: RuntimeOptions) -> OnnxRuntimeRunner:
    """The runtime's session on a GPU EP, or a skip saying why it does not load here."""
    try:
        return OnnxRuntimeRunner(path, options)
    except LmkError as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("ep", ["cuda", "tensorrt"])
def test_gpu_fp32_matches_pytorch_and_reference_decode(parity_model, tmp_path, ep):
    path = tmp_path / "model.onnx"
    model = build_onnx(parity_model.checkpoint, ExportOptions(), parity_model.network)
    onnx.save(model, str(path))
    options = RuntimeOptions(ep=ep)
    if ep == "tensorrt":
        options = RuntimeOptions(ep=ep, trt_cache_dir=tmp_path / "trt", max_batch=4)
    runner = gpu_runner(path, options)
    assert runner.providers[0] == {"cuda": "CUDAExecutionProvider"}.get(
        ep, "TensorrtExecutionProvider"
    )
    tolerance = tolerance_for("fp32", ep)
    assert runner.tolerance() == tolerance
    reference = TorchRunner(parity_model.checkpoint, parity_model.torch_model)
    result = compare(
        reference.infer(parity_model.images), runner.infer(parity_model.images), tolerance
    )
    assert result.ok, f"{ep}: {result.summary()}"
