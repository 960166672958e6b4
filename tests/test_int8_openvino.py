"""INT8 for OpenVINO: ``--int8-target openvino``'s QDQ layout runs on the OpenVINO EP (no
silent CPU fallback) and computes what the FP32 network computes, within 8-bit error.

torch-free: the network is a small residual trunk built with ``onnx.helper``, quantized by
the same :func:`lmk.export.quantize.quantize_network` that ``lmk-export`` uses, so it runs in
.venv-ov (onnxruntime-openvino, no torch) where the EP is. It needs the ``onnx`` package (ORT's
quantizer does): skipped where that is missing.
"""

from __future__ import annotations

import numpy as np
import pytest

from lmk.runtime import available_providers

HAVE_OPENVINO = "OpenVINOExecutionProvider" in available_providers()
INT8_TOLERANCE = 0.05
"""Max |INT8 - FP32| over the FP32 output's range. 8-bit activations on a 3-conv trunk err by
~1 % of the range (measured 0.96 % u8, 0.92 % s8); a broken layout (a wrong scale or zero
point, a dropped DequantizeLinear) errs by tens of percent."""


def tiny_trunk():
    """input [N, 3, 16, 16] -> conv -> relu -> conv, + skip -> conv head [N, 4, 16, 16]."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    init = [
        numpy_helper.from_array(rng.normal(0, 0.3, shape).astype(np.float32), name)
        for name, shape in (("w1", (8, 3, 3, 3)), ("w2", (8, 8, 3, 3)), ("w3", (4, 8, 1, 1)))
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["a"], pads=[1, 1, 1, 1], name="c1"),
        helper.make_node("Relu", ["a"], ["b"], name="r1"),
        helper.make_node("Conv", ["b", "w2"], ["c"], pads=[1, 1, 1, 1], name="c2"),
        helper.make_node("Add", ["a", "c"], ["d"], name="add"),
        helper.make_node("Conv", ["d", "w3"], ["heads"], name="head"),
    ]
    graph = helper.make_graph(
        nodes,
        "trunk",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("heads", TensorProto.FLOAT, ["batch", 4, 16, 16])],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def calibration(count: int = 16, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, 3, 16, 16)).astype(np.float32)


@pytest.mark.openvino
@pytest.mark.skipif(not HAVE_OPENVINO, reason="needs onnxruntime-openvino (make venv-ov)")
@pytest.mark.parametrize("activations", ["u8", "s8"])
def test_openvino_int8_layout_runs_on_the_openvino_ep_close_to_fp32(activations):
    pytest.importorskip("onnx")
    import onnxruntime as ort

    from lmk.export.quantize import int8_plan, quantize_network

    network = tiny_trunk()
    plan = int8_plan("openvino", activations)
    int8 = quantize_network(network, calibration(), plan)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    reference = ort.InferenceSession(
        network.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    session = ort.InferenceSession(
        int8.SerializeToString(),
        options,
        providers=[("OpenVINOExecutionProvider", {"device_type": "CPU"}), "CPUExecutionProvider"],
    )
    assert session.get_providers()[0] == "OpenVINOExecutionProvider"
    x = calibration(4, seed=7)  # not the calibration data
    want = reference.run(None, {"input": x})[0]
    got = session.run(None, {"input": x})[0]
    error = np.abs(got - want).max() / (want.max() - want.min())
    assert 1e-6 < error < INT8_TOLERANCE  # really quantized, and still the same function
