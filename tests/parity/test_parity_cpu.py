"""ONNX Runtime CPU equals PyTorch + reference decode (FP32), for every model and variant.

Tolerances: landmarks max |diff| <= 1e-5 in normalised crop units (docs/design.md section 11); scores
and raw heads are network outputs, where two conv implementations differ by float rounding:
|diff| <= 1e-4 + 1e-4 * |value|.
"""

from __future__ import annotations

import numpy as np
import pytest

from lmk.export.checks import cpu_session, parity
from lmk.export.exporter import ExportOptions, build_onnx

LANDMARK_TOLERANCE = 1e-5


def _assert_close_outputs(result, reference_scale: dict[str, float]) -> None:
    for name, error in result.max_abs.items():
        if name == "landmarks":
            assert error <= LANDMARK_TOLERANCE, (
                f"landmarks differ by {error:.3g} at {result.worst_index[name]}"
            )
        else:
            bound = 1e-4 + 1e-4 * reference_scale.get(name, 1.0)
            assert error <= bound, (
                f"{name} differs by {error:.3g} (bound {bound:.3g}) at {result.worst_index[name]}"
            )


@pytest.mark.parametrize("decode", ["fused", "none"])
@pytest.mark.parametrize("input_format", ["uint8-bgr", "float-rgb"])
def test_onnx_cpu_matches_pytorch_and_reference_decode(parity_model, decode, input_format):
    options = ExportOptions(decode=decode, input_format=input_format)
    model = build_onnx(parity_model.checkpoint, options, parity_model.network)
    session = cpu_session(model.SerializeToString())
    for batch in (1, 3):  # one dynamic-batch file, both batch sizes
        images = parity_model.images[:batch]
        result = parity(parity_model.checkpoint, session, options, images, parity_model.torch_model)
        if decode == "fused":
            assert set(result.max_abs) == {"landmarks", "scores"}
        _assert_close_outputs(result, {"scores": 10.0, "heatmaps": 10.0})


@pytest.mark.parametrize("parity_model", ["pipnet_mbv2"], indirect=True)
def test_fixed_batch_export_has_static_shapes_and_matches(parity_model):
    from lmk.export.exporter import export_network

    checkpoint = parity_model.checkpoint
    options = ExportOptions(batch=2)
    network = export_network(parity_model.torch_model, checkpoint.spec, 17, batch=2)
    onnx_model = build_onnx(checkpoint, options, network)
    dims = [d.dim_value for d in onnx_model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 128, 128, 3]
    out_dims = [d.dim_value for d in onnx_model.graph.output[0].type.tensor_type.shape.dim]
    assert out_dims == [2, 68, 2]
    result = parity(
        checkpoint,
        onnx_model.SerializeToString(),
        options,
        parity_model.images[:2],
        parity_model.torch_model,
    )
    _assert_close_outputs(result, {"scores": 10.0})


def test_fused_decode_on_onnx_raw_heads_equals_reference_decode_exactly(parity_model):
    """The decode graph alone: fed ORT's own raw heads, it must agree with lmk/decode.py."""
    import onnxruntime as ort
    import torch

    from lmk.decode import decode_outputs
    from lmk.export.checks import onnx_feed

    checkpoint = parity_model.checkpoint
    fused = build_onnx(checkpoint, ExportOptions(decode="fused"), parity_model.network)
    raw_options = ExportOptions(decode="none")
    raw = build_onnx(checkpoint, raw_options, parity_model.network)
    feed = {"image": onnx_feed(checkpoint, raw_options, parity_model.images)}
    raw_out = ort.InferenceSession(raw.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, feed
    )
    lm, sc = ort.InferenceSession(
        fused.SerializeToString(), providers=["CPUExecutionProvider"]
    ).run(None, feed)
    spec = checkpoint.spec
    table = (
        checkpoint.layout.neighbours(spec.full_args()["num_nb"])
        if spec.decode == "pipnet_nrm"
        else None
    )
    ref_lm, ref_sc = decode_outputs(tuple(torch.from_numpy(o) for o in raw_out), spec.decode, table)
    assert np.abs(lm - ref_lm.numpy()).max() <= 1e-6
    assert np.abs(sc - ref_sc.numpy()).max() <= 1e-6
