"""ONNX subgraphs around the network: preprocessing in front, the decode behind.

This is the graph side's one copy of the decode math (the reference is numpy's, in
``lmk/core/decode.py``, whose table names these builders; the parity tests tie the two). Only
ops TensorRT's ONNX parser imports are used: ArgMax, GatherElements, MatMul, Reshape, Concat,
Cast, Floor and elementwise math. Indices are int32
after the ArgMax (ONNX forces its int64 output), rows and columns come from float Div/Floor
(no integer Mod), and every shape is static except the batch (Reshape with 0 copies it).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lmk.core.layouts import NeighbourTable
from lmk.core.normalise import Normalisation

FLOAT = TensorProto.FLOAT


class GraphBuilder:
    """Collects nodes and constants with unique names; ``model()`` wraps them up."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}/{hint}_{self._count}"

    def const(
        self, value: np.ndarray | list | float | int, dtype=np.float32, hint: str = "c"
    ) -> str:
        name = self._name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        output = out or self._name(op_type.lower())
        self.nodes.append(
            helper.make_node(op_type, list(inputs), [output], name=self._name(op_type), **attrs)
        )
        return output

    def op_outputs(self, op_type: str, *inputs: str, count: int, **attrs) -> list[str]:
        """A node with ``count`` outputs (TopK's values and indices, say)."""
        outputs = [self._name(op_type.lower()) for _ in range(count)]
        self.nodes.append(
            helper.make_node(op_type, list(inputs), outputs, name=self._name(op_type), **attrs)
        )
        return outputs

    def reshape(self, x: str, shape: list[int], out: str | None = None) -> str:
        return self.op("Reshape", x, self.const(shape, np.int64, "shape"), out=out)

    def model(
        self,
        inputs: list[onnx.ValueInfoProto],
        outputs: list[onnx.ValueInfoProto],
        opset: int,
        ir_version: int,
    ) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.prefix, inputs, outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = ir_version
        return model


def _tensor(name: str, elem_type: int, shape: list[int | str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, shape)


def landmark_outputs(num_lms: int, batch: int | str) -> list[onnx.ValueInfoProto]:
    """What every decode graph gives (``docs/design.md`` section 7): ``landmarks`` [N, L, 2]
    and ``scores`` [N, L], float32."""
    return [
        _tensor("landmarks", FLOAT, [batch, num_lms, 2]),
        _tensor("scores", FLOAT, [batch, num_lms]),
    ]


def _peak(g: GraphBuilder, flat: str, width: int) -> tuple[str, str, str, str]:
    """First flat argmax of [N, L, HW]: (int32 index [N,L,1], score, row, col as float [N,L,1])."""
    index64 = g.op("ArgMax", flat, axis=2, keepdims=1, select_last_index=0)
    index = g.op("Cast", index64, to=TensorProto.INT32)
    score = g.op("GatherElements", flat, index, axis=2)
    index_f = g.op("Cast", index64, to=FLOAT)
    # Div of integer-valued floats is exact where the quotient is an integer, so Floor never
    # lands one row short (multiplying by 1/W could).
    row = g.op("Floor", g.op("Div", index_f, g.const(float(width))))
    col = g.op("Sub", index_f, g.op("Mul", row, g.const(float(width))))
    return index, score, row, col


def pipnet_decode_model(
    num_lms: int,
    table: NeighbourTable | None,
    height: int,
    width: int,
    opset: int,
    ir_version: int,
    batch: int | str,
) -> onnx.ModelProto:
    """(cls, x, y, nb_x, nb_y) -> (landmarks [N, L, 2], scores [N, L]); NRM as one MatMul.

    The ``pipnet_nrm`` entry of :data:`lmk.core.decode.DECODERS` (numpy twin:
    :func:`lmk.core.decode.decode_pipnet`)."""
    if table is None or table.num_points != num_lms:
        raise ValueError(f"the PIPNet decode needs the {num_lms}-point layout's neighbour table")
    k, hw = table.num_nb, height * width
    g = GraphBuilder("decode")
    cls = g.reshape("cls", [0, num_lms, hw])
    index, score, row, col = _peak(g, cls, width)
    g.reshape(score, [0, num_lms], out="scores")

    def own(name: str, cell: str, size: int) -> str:
        offset = g.op("GatherElements", g.reshape(name, [0, num_lms, hw]), index, axis=2)
        return g.reshape(
            g.op("Div", g.op("Add", cell, offset), g.const(float(size))), [0, num_lms, 1]
        )

    def neighbours(name: str, cell: str, size: int) -> str:
        maps = g.reshape(name, [0, num_lms, k, hw])
        index_k = g.op(
            "Add", g.reshape(index, [0, num_lms, 1, 1]), g.const(np.zeros((1, 1, k, 1)), np.int32)
        )
        offset = g.reshape(g.op("GatherElements", maps, index_k, axis=3), [0, num_lms, k])
        pred = g.op("Div", g.op("Add", cell, offset), g.const(float(size)))
        return g.reshape(pred, [0, num_lms * k, 1])

    cand_x = g.op("Concat", own("x", col, width), neighbours("nb_x", col, width), axis=1)
    cand_y = g.op("Concat", own("y", row, height), neighbours("nb_y", row, height), axis=1)
    candidates = g.op("Concat", cand_x, cand_y, axis=2)  # [N, L + L*K, 2]
    g.op(
        "MatMul",
        g.const(table.merge.astype(np.float32), hint="nrm_merge"),
        candidates,
        out="landmarks",
    )
    inputs = [
        _tensor(n, FLOAT, [batch, c, height, width])
        for n, c in (
            ("cls", num_lms),
            ("x", num_lms),
            ("y", num_lms),
            ("nb_x", num_lms * k),
            ("nb_y", num_lms * k),
        )
    ]
    return g.model(inputs, landmark_outputs(num_lms, batch), opset, ir_version)


def heatmap_decode_model(
    num_lms: int,
    table: NeighbourTable | None,
    height: int,
    width: int,
    opset: int,
    ir_version: int,
    batch: int | str,
) -> onnx.ModelProto:
    """heatmaps -> (landmarks, scores) with face-alignment's quarter-pixel shift (``table`` is
    unused: every decode builder has one signature).

    The ``heatmap_quarter`` entry of :data:`lmk.core.decode.DECODERS` (numpy twin:
    :func:`lmk.core.decode.decode_heatmap`)."""
    hw = height * width
    g = GraphBuilder("decode")
    flat = g.reshape("heatmaps", [0, num_lms, hw])
    index, score, row, col = _peak(g, flat, width)
    g.reshape(score, [0, num_lms], out="scores")

    def value_at(step: int) -> str:
        shifted = g.op("Add", index, g.const(step, np.int32))
        clamped = g.op("Min", g.op("Max", shifted, g.const(0, np.int32)), g.const(hw - 1, np.int32))
        return g.op("GatherElements", flat, clamped, axis=2)

    def shift(lower: str, upper: str) -> str:
        return g.op("Mul", g.op("Sign", g.op("Sub", upper, lower)), g.const(0.25))

    inside_x = g.op(
        "And", g.op("Greater", col, g.const(0.0)), g.op("Less", col, g.const(width - 1.0))
    )
    inside_y = g.op(
        "And", g.op("Greater", row, g.const(0.0)), g.op("Less", row, g.const(height - 1.0))
    )
    inside = g.op("Cast", g.op("And", inside_x, inside_y), to=FLOAT)
    dx = g.op("Mul", shift(value_at(-1), value_at(1)), inside)
    dy = g.op("Mul", shift(value_at(-width), value_at(width)), inside)
    half = g.const(0.5)
    lx = g.op("Div", g.op("Add", g.op("Add", col, half), dx), g.const(float(width)))
    ly = g.op("Div", g.op("Add", g.op("Add", row, half), dy), g.const(float(height)))
    g.op("Concat", lx, ly, axis=2, out="landmarks")
    inputs = [_tensor("heatmaps", FLOAT, [batch, num_lms, height, width])]
    return g.model(inputs, landmark_outputs(num_lms, batch), opset, ir_version)


def regression_decode_model(
    num_lms: int,
    table: NeighbourTable | None,
    height: int,
    width: int,
    opset: int,
    ir_version: int,
    batch: int | str,
) -> onnx.ModelProto:
    """coords [N, 2L] (x, y interleaved, normalised) -> (landmarks, scores of 1.0): a
    regression net has no confidence; the ones keep every lmk file's two outputs (``table``,
    ``height`` and ``width`` unused: every decode builder has one signature; the numpy twin is
    :func:`lmk.core.decode.decode_regression`)."""
    g = GraphBuilder("decode")
    landmarks = g.reshape("coords", [0, num_lms, 2], out="landmarks")
    first = g.op("Gather", landmarks, g.const(0, np.int64, "x_index"), axis=2)  # [N, L]
    g.op("Add", g.op("Mul", first, g.const(0.0)), g.const(1.0), out="scores")
    inputs = [_tensor("coords", FLOAT, [batch, 2 * num_lms])]
    return g.model(inputs, landmark_outputs(num_lms, batch), opset, ir_version)


def uint8_bgr_preprocess_model(
    normalisation: Normalisation, size: int, opset: int, ir_version: int, batch: int | str
) -> onnx.ModelProto:
    """image uint8 [N, S, S, 3] BGR -> float32 [N, 3, S, S] normalised (``input``)."""
    offset, scale = normalisation.constants()
    g = GraphBuilder("preprocess")
    # uint8 goes straight into Cast (TensorRT takes uint8 nowhere else); channels are picked
    # on the planar layout, 6x faster on ORT CPU than a Gather on the NHWC channel axis.
    x = g.op("Transpose", g.op("Cast", "image", to=FLOAT), perm=[0, 3, 1, 2])
    x = g.op("Gather", x, g.const(normalisation.channel_index(), np.int64, "channels"), axis=1)
    sub = g.op("Sub", x, g.const(offset.reshape(1, 3, 1, 1)))
    g.op("Mul", sub, g.const(scale.reshape(1, 3, 1, 1)), out="input")
    inputs = [_tensor("image", TensorProto.UINT8, [batch, size, size, 3])]
    outputs = [_tensor("input", FLOAT, [batch, 3, size, size])]
    return g.model(inputs, outputs, opset, ir_version)
