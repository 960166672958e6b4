"""Exact rewrites that steer ONNX Runtime's CPU EP to its faster INT8 kernels.

ORT fuses a QDQ convolution into ``QLinearConv``, which picks its kernel from the weights:
symmetric int8 weights (zero point 0) take MLAS's indirect "ConvSym" kernels (AVX2 /
AVX-512 VNNI); any other weight zero point takes im2col + the quantized GEMM, which MLAS
runs on AMX tiles where the CPU has them. Profiled on PIPNet-R18 at 256 px (batch 1, 2 threads,
a Xeon with AVX-512 VNNI and AMX), two things cost the most in the ``cpu`` target's file:

- the first convolution (7x7, stride 2, 3 input channels): ConvSym walks its 49 taps 3
  channels at a time; ORT's profiler put 20-40 % of the kernel time there (on a loaded
  machine) for 6 % of the multiply-adds, and blocking it saved 10-15 % of the CPU time.
  :func:`blocked_input_conv` computes the same convolution on the input's 2x2
  space-to-depth blocks (12 channels, a 4x4 stride-1 kernel): the same sums, with 4x more
  channels per tap;
- the deep 3x3 convolutions (>= 128 input channels on 32x32 maps and smaller): AMX's GEMM beats
  ConvSym there by ~1.5-1.8x per layer, while ConvSym stays faster on the wide early maps.
  :func:`route_to_gemm` stores those weights with zero point -1 (every value shifted by -1),
  which ORT cannot run on ConvSym.

Neither changes what is computed: the blocked convolution multiplies the same inputs by the
same quantized weights (the extra taps are zeros; only the calibration's float ranges can differ
in their last bit, from the float convolution's summation order), and the shifted weights
dequantize to exactly the same values (bit-identical outputs). Those last-bit range
differences do show on the bundled hourglass: ``vnni``/``amx`` score 4.485 % NME against
``plain``'s 4.472 % (lmk-eval, 300 SynthFace faces), with ``amx`` and ``vnni`` bit-identical.
benchmarks/int8_recipes.py measures the layouts side by side, NME included.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

GEMM_MIN_INPUT_CHANNELS = 128
"""route_to_gemm's default: deep 3x3 convolutions only (the early 64-channel ones ran ~1.7x
slower on the GEMM path than on ConvSym)."""


def _attributes(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


MAX_BLOCKED_GROWTH = 1.5
"""blocked_input_conv's limit on the zero taps it adds (blocked / original multiply-adds):
ResNet's 7x7 stride-2 stem grows 1.31x and ran ~3x faster; MobileNetV2's 3x3 one would grow
1.78x, and blocking it measured no faster at batch 1 and ~5 % slower at batch 32."""


def blocked_input_conv(
    network: onnx.ModelProto, max_growth: float = MAX_BLOCKED_GROWTH
) -> str | None:
    """Rewrite the strided convolution that reads the float graph input (NCHW, fixed H and W)
    as Pad -> SpaceToDepth(stride) -> a stride-1 convolution on stride^2 x more channels, in
    place; returns its name, or None where there is no such convolution (no stride, groups,
    dilation, auto_pad, or a dynamic size) or blocking would multiply its multiply-adds by
    more than ``max_growth``."""
    graph = network.graph
    source = graph.input[0]
    dims = source.type.tensor_type.shape.dim
    if len(dims) != 4 or not dims[2].dim_value or not dims[3].dim_value:
        return None
    height, width = dims[2].dim_value, dims[3].dim_value
    conv = next(
        (n for n in graph.node if n.op_type == "Conv" and n.input and n.input[0] == source.name),
        None,
    )
    weights = {i.name: i for i in graph.initializer}
    if conv is None or conv.input[1] not in weights:
        return None
    attrs = _attributes(conv)
    strides = list(attrs.get("strides", [1, 1]))
    stride = strides[0]
    if (
        stride < 2
        or strides != [stride, stride]
        or attrs.get("group", 1) != 1
        or any(d != 1 for d in attrs.get("dilations", [1, 1]))
        or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
    ):
        return None
    kernel = numpy_helper.to_array(weights[conv.input[1]])
    out_channels, channels, kh, kw = kernel.shape
    top, left, bottom, right = attrs.get("pads", [0, 0, 0, 0])
    blocks_h, blocks_w = -(-kh // stride), -(-kw // stride)  # the blocked kernel's size
    if (blocks_h * blocks_w * stride * stride) / (kh * kw) > max_growth:
        return None

    def extra(size: int, before: int, after: int, k: int, blocks: int) -> int:
        """Padding to add after the input so whole blocks cover every output's taps."""
        padded = size + before + after
        outputs = (padded - k) // stride + 1
        return max(-(-padded // stride), outputs - 1 + blocks) * stride - padded

    grown = np.zeros((out_channels, channels, blocks_h * stride, blocks_w * stride), kernel.dtype)
    grown[:, :, :kh, :kw] = kernel
    # SpaceToDepth puts input[c, y*s + dy, x*s + dx] at channel (dy*s + dx)*C + c of block (y, x).
    blocked = (
        grown.reshape(out_channels, channels, blocks_h, stride, blocks_w, stride)
        .transpose(0, 3, 5, 1, 2, 4)
        .reshape(out_channels, stride * stride * channels, blocks_h, blocks_w)
    )
    prefix = f"{conv.name or 'input_conv'}_blocked"
    pads = [
        0,
        0,
        top,
        left,
        0,
        0,
        bottom + extra(height, top, bottom, kh, blocks_h),
        right + extra(width, left, right, kw, blocks_w),
    ]
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.ascontiguousarray(blocked), f"{prefix}_weight"),
            numpy_helper.from_array(np.array(pads, np.int64), f"{prefix}_pads"),
        ]
    )
    pad = helper.make_node(
        "Pad", [source.name, f"{prefix}_pads"], [f"{prefix}_padded"], name=f"{prefix}_pad"
    )
    to_blocks = helper.make_node(
        "SpaceToDepth",
        [f"{prefix}_padded"],
        [f"{prefix}_input"],
        blocksize=stride,
        name=f"{prefix}_space_to_depth",
    )
    old_weight = conv.input[1]
    conv.input[0], conv.input[1] = f"{prefix}_input", f"{prefix}_weight"
    del conv.attribute[:]
    conv.attribute.extend(
        [
            helper.make_attribute("kernel_shape", [blocks_h, blocks_w]),
            helper.make_attribute("strides", [1, 1]),
            helper.make_attribute("pads", [0, 0, 0, 0]),
        ]
    )
    if not any(old_weight in n.input for n in graph.node):
        graph.initializer.remove(weights[old_weight])
    position = list(graph.node).index(conv)
    graph.node.insert(position, to_blocks)
    graph.node.insert(position, pad)
    return conv.name


def route_to_gemm(
    model: onnx.ModelProto, min_input_channels: int = GEMM_MIN_INPUT_CHANNELS
) -> list[str]:
    """In a QDQ model, give the weights of every ungrouped convolution with a kernel larger
    than 1x1 and at least ``min_input_channels`` input channels zero point -1 (values - 1: the
    same dequantized weights), so ORT runs it on its quantized GEMM instead of ConvSym.
    Returns the names of the convolutions changed; symmetric int8 weights in [-127, 127]
    (what lmk's quantizer writes) are needed, anything else is left alone."""
    weights = {i.name: i for i in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    changed = []
    done: set[str] = set()
    for node in model.graph.node:
        if node.op_type != "Conv" or _attributes(node).get("group", 1) != 1:
            continue
        dequantize = producers.get(node.input[1])
        if dequantize is None or dequantize.op_type != "DequantizeLinear":
            continue
        if len(dequantize.input) < 3 or dequantize.input[0] not in weights:
            continue
        if dequantize.input[2] not in weights or dequantize.input[0] in done:
            continue
        values = numpy_helper.to_array(weights[dequantize.input[0]])
        zero = numpy_helper.to_array(weights[dequantize.input[2]])
        if (
            values.dtype != np.int8
            or values.ndim != 4
            or values.shape[1] < min_input_channels
            or values.shape[2] * values.shape[3] == 1
            or zero.any()
            or values.min() < -127
        ):
            continue
        shifted = (values.astype(np.int16) - 1).astype(np.int8)
        weights[dequantize.input[0]].CopyFrom(numpy_helper.from_array(shifted, dequantize.input[0]))
        weights[dequantize.input[2]].CopyFrom(
            numpy_helper.from_array(np.full_like(zero, -1), dequantize.input[2])
        )
        done.add(dequantize.input[0])
        changed.append(node.name)
    return changed
