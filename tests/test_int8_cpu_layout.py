"""The cpu INT8 target's layouts (lmk.export.cpu_int8_layout) change ORT's kernels, not the
function: the blocked first convolution computes the float convolution it replaces, and the
GEMM-routed weights give bit-identical INT8 outputs. Small onnx.helper graphs, no torch."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from lmk.runtime.cpu import has_int8_dot

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def strided_stem(size: int, kernel: int, stride: int, pad: int, channels: int = 8):
    """input [N, 3, size, size] -> strided conv -> relu -> 3x3 conv [N, channels, ...]."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.normal(0, 0.3, shape).astype(np.float32), name)
        for name, shape in (
            ("w1", (channels, 3, kernel, kernel)),
            ("w2", (channels, channels, 3, 3)),
        )
    ]
    nodes = [
        helper.make_node(
            "Conv", ["input", "w1"], ["a"], strides=[stride, stride], pads=[pad] * 4, name="stem"
        ),
        helper.make_node("Relu", ["a"], ["b"], name="relu"),
        helper.make_node("Conv", ["b", "w2"], ["c"], pads=[1, 1, 1, 1], name="deep"),
        helper.make_node("Relu", ["c"], ["d"], name="relu2"),
        helper.make_node("Conv", ["d", "w2"], ["heads"], pads=[1, 1, 1, 1], name="head"),
    ]
    graph = helper.make_graph(
        nodes,
        "stem",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("heads", TensorProto.FLOAT, None)],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def run(model, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, {"input": x})[0]


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pad"),
    [(32, 7, 2, 3), (15, 3, 2, 1), (17, 5, 3, 2)],  # ResNet's stem, MobileNet's, odd sizes
)
def test_blocked_input_conv_computes_the_same_convolution(size, kernel, stride, pad):
    from lmk.export.cpu_int8_layout import blocked_input_conv

    network = strided_stem(size, kernel, stride, pad)
    blocked = copy.deepcopy(network)
    assert blocked_input_conv(blocked, max_growth=4.0) == "stem"
    ops = [n.op_type for n in blocked.graph.node]
    assert ops[:3] == ["Pad", "SpaceToDepth", "Conv"]
    x = np.random.default_rng(1).normal(size=(2, 3, size, size)).astype(np.float32)
    want, got = run(network, x), run(blocked, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("kernel", "stride"), [(3, 1), (3, 2)]
)  # no stride; a 3x3 stem would grow 1.78x
def test_blocked_input_conv_leaves_an_unstrided_or_small_stem_alone(kernel, stride):
    from lmk.export.cpu_int8_layout import blocked_input_conv

    network = strided_stem(16, kernel, stride, 1)
    assert blocked_input_conv(network) is None
    assert [n.op_type for n in network.graph.node] == ["Conv", "Relu", "Conv", "Relu", "Conv"]


@pytest.mark.skipif(
    not has_int8_dot(),
    reason="exact only with VNNI/AMX-INT8: plain AVX2's u8s8 GEMM sums products in saturating "
    "16-bit lanes, which is why the amx layout is not the default there",
)
def test_gemm_routed_weights_give_bit_identical_int8_outputs():
    """route_to_gemm shifts the deep convs' int8 weights by -1 with zero point -1: ORT takes
    another kernel, and every output value stays the same."""
    from onnx import numpy_helper

    from lmk.export.cpu_int8_layout import route_to_gemm
    from lmk.export.quantize import int8_plan, quantize_network

    calibration = np.random.default_rng(2).normal(size=(16, 3, 32, 32)).astype(np.float32)
    plan = int8_plan("cpu", cpu_layout="vnni")
    symmetric = quantize_network(strided_stem(32, 7, 2, 3, channels=16), calibration, plan)
    routed = copy.deepcopy(symmetric)
    # the blocked stem has 12 input channels, the deep conv 16; the head stays FP32
    assert route_to_gemm(routed, min_input_channels=16) == ["deep"]
    weights = {i.name: numpy_helper.to_array(i) for i in routed.graph.initializer}
    producers = {o: n for n in routed.graph.node for o in n.output}
    deep = next(n for n in routed.graph.node if n.name == "deep")
    dequantize = producers[deep.input[1]]
    assert (weights[dequantize.input[2]] == -1).all()
    x = np.random.default_rng(3).normal(size=(4, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(run(routed, x), run(symmetric, x))


@pytest.mark.parametrize(("flags", "layout"), [("avx2 avx512_vnni", "amx"), ("avx2 fma", "plain")])
def test_cpu_target_defaults_to_the_amx_layout_only_with_an_exact_int8_dot_product(
    monkeypatch, flags, layout
):
    from lmk.core.errors import LmkError
    from lmk.export.quantize import int8_plan
    from lmk.runtime import cpu

    monkeypatch.setattr(cpu, "all_cpu_flags", lambda source=cpu.CPUINFO: set(flags.split()))
    assert int8_plan("cpu").cpu_layout == layout
    assert int8_plan("openvino").cpu_layout == "plain"
    with pytest.raises(LmkError, match="only to --int8-target cpu"):
        int8_plan("openvino", cpu_layout="amx")
