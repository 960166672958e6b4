"""ONNX Runtime CPU equals PyTorch + reference decode (FP32), for every model and variant.

Both sides are runners (:mod:`lmk.runtime.runners`): the file goes through lmk's runtime
(``InferenceModel``, CPU EP), the reference is PyTorch + the reference decode, and the limits
are the FP32/CPU row of :data:`lmk.runtime.compare.TOLERANCES` (landmarks: max distance
<= 1e-5 of the crop; scores and raw heads: |diff| <= 1e-4 + 1e-4 * max|reference|).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from lmk.export.exporter import ExportOptions, build_onnx
from lmk.export.reference import TorchRunner
from lmk.runtime.compare import DECODE_TOLERANCE, compare, tolerance_for
from lmk.runtime.runners import OnnxRuntimeRunner

FP32_CPU = tolerance_for("fp32", "cpu")


def _runner(model: onnx.ModelProto, folder) -> OnnxRuntimeRunner:
    path = folder / "model.onnx"
    onnx.save(model, str(path))
    return OnnxRuntimeRunner(path)


@pytest.mark.parametrize("decode", ["fused", "none"])
@pytest.mark.parametrize("input_format", ["uint8-bgr", "float-rgb"])
def test_onnx_cpu_matches_pytorch_and_reference_decode(
    parity_model, decode, input_format, tmp_path
):
    options = ExportOptions(decode=decode, input_format=input_format)
    runner = _runner(build_onnx(parity_model.checkpoint, options, parity_model.network), tmp_path)
    reference = TorchRunner(parity_model.checkpoint, parity_model.torch_model, heads=True)
    assert runner.tolerance() == FP32_CPU
    for batch in (1, 3):  # one dynamic-batch file, both batch sizes
        images = parity_model.images[:batch]
        got = runner.infer(images)
        result = compare(reference.infer(images), got, FP32_CPU)
        # A raw-heads file is compared head by head and after the runtime's numpy decode.
        heads = set(parity_model.checkpoint.spec.decoder.heads)
        expected = {"landmarks", "scores"} | (heads if decode == "none" else set())
        assert set(result.diffs) == expected
        assert result.ok, result.summary()


# ResNet-18 PIPNet: the quickest of the networks to trace again (about half MobileNetV2's time).
@pytest.mark.parametrize("parity_model", ["pipnet_r18"], indirect=True)
def test_fixed_batch_export_has_static_shapes_and_matches(parity_model, tmp_path):
    from lmk.export.exporter import export_network

    checkpoint = parity_model.checkpoint
    options = ExportOptions(batch=2)
    network = export_network(parity_model.torch_model, checkpoint.spec, 17, batch=2)
    onnx_model = build_onnx(checkpoint, options, network)
    dims = [d.dim_value for d in onnx_model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 256, 256, 3]
    out_dims = [d.dim_value for d in onnx_model.graph.output[0].type.tensor_type.shape.dim]
    assert out_dims == [2, 98, 2]
    runner = _runner(onnx_model, tmp_path)
    # Three crops through a batch-2 file: the runtime splits and pads the last chunk.
    images = parity_model.images[:3]
    result = compare(
        TorchRunner(checkpoint, parity_model.torch_model).infer(images),
        runner.infer(images),
        FP32_CPU,
    )
    assert result.ok, result.summary()


def test_fused_decode_on_onnx_raw_heads_equals_reference_decode_exactly(parity_model, tmp_path):
    """The decode graph alone: fed ORT's own raw heads, it must agree with the numpy reference
    decode (lmk/core/decode.py)."""

    checkpoint = parity_model.checkpoint
    (tmp_path / "fused").mkdir()
    (tmp_path / "raw").mkdir()
    fused = _runner(
        build_onnx(checkpoint, ExportOptions(decode="fused"), parity_model.network),
        tmp_path / "fused",
    )
    raw = _runner(
        build_onnx(checkpoint, ExportOptions(decode="none"), parity_model.network),
        tmp_path / "raw",
    )
    heads = raw.model.run_graph(parity_model.images)
    spec = checkpoint.spec
    decoder = spec.decoder
    raw_heads = [heads[name] for name in decoder.heads]
    ref_lm, ref_sc = decoder.decode(raw_heads, spec.neighbour_table(checkpoint.layout))
    reference = {"landmarks": ref_lm, "scores": ref_sc}
    result = compare(reference, fused.model.run_graph(parity_model.images), DECODE_TOLERANCE)
    assert result.ok, result.summary()
    assert np.isfinite(reference["landmarks"]).all()
