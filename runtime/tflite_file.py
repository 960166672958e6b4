"""A small reader of the TFLite flatbuffer: just what importing a conv net's weights needs.

TFLite files are FlatBuffers (``schema.fbs`` of TensorFlow Lite). Rather than depend on
the ``tflite``/``flatbuffers`` packages for a handful of tables, this reads the wire format
directly: a table is an offset to a vtable of field offsets; vectors and strings are a
uint32 length followed by the items. Only the fields lmk uses are decoded, by their
schema field index. numpy only (no torch), so the runtime may use it too.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lmk.core.errors import LmkError

# TensorType enum of the schema -> numpy dtype (the types a float model uses).
_TENSOR_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}
# BuiltinOperator codes lmk's importers meet (schema enum values).
BUILTIN_OPS = {
    0: "ADD",
    1: "AVERAGE_POOL_2D",
    2: "CONCATENATION",
    3: "CONV_2D",
    4: "DEPTHWISE_CONV_2D",
    6: "DEQUANTIZE",
    14: "LOGISTIC",
    17: "MAX_POOL_2D",
    18: "MUL",
    19: "RELU",
    22: "RESHAPE",
    23: "RESIZE_BILINEAR",
    34: "PAD",
    54: "PRELU",
    97: "RESIZE_NEAREST_NEIGHBOR",
    124: "DENSIFY",
}
_FUSED_ACTIVATIONS = {0: None, 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH"}
_PADDING = {0: "SAME", 1: "VALID"}


class _Table:
    """One flatbuffer table: field ``i`` is read through the vtable slot ``4 + 2*i``."""

    def __init__(self, buf: bytes, pos: int):
        self.buf = buf
        self.pos = pos
        vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self._vt = vtable
        self._vt_len = struct.unpack_from("<H", buf, vtable)[0]

    def _field(self, index: int) -> int:
        slot = 4 + 2 * index
        if slot >= self._vt_len:
            return 0
        off = struct.unpack_from("<H", self.buf, self._vt + slot)[0]
        return self.pos + off if off else 0

    def scalar(self, index: int, fmt: str, default: int | float = 0) -> int | float:
        at = self._field(index)
        return struct.unpack_from("<" + fmt, self.buf, at)[0] if at else default

    def _deref(self, index: int) -> int:
        at = self._field(index)
        return at + struct.unpack_from("<I", self.buf, at)[0] if at else 0

    def table(self, index: int) -> _Table | None:
        at = self._deref(index)
        return _Table(self.buf, at) if at else None

    def tables(self, index: int) -> list[_Table]:
        at = self._deref(index)
        if not at:
            return []
        n = struct.unpack_from("<I", self.buf, at)[0]
        items = []
        for i in range(n):
            item = at + 4 + 4 * i
            items.append(_Table(self.buf, item + struct.unpack_from("<I", self.buf, item)[0]))
        return items

    def vector(self, index: int, dtype: type) -> np.ndarray:
        at = self._deref(index)
        if not at:
            return np.zeros(0, dtype)
        n = struct.unpack_from("<I", self.buf, at)[0]
        return np.frombuffer(
            self.buf, dtype=np.dtype(dtype).newbyteorder("<"), count=n, offset=at + 4
        )

    def string(self, index: int) -> str:
        return self.vector(index, np.uint8).tobytes().decode("utf-8", "replace")


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    data: np.ndarray | None  # constant weights, in TFLite's layout; None for activations


@dataclass
class Operator:
    """One node: its op name, tensor indices, and the few options importers need."""

    op: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, object] = field(default_factory=dict)


@dataclass
class TFLiteGraph:
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]

    def weights(self, op: Operator) -> list[np.ndarray]:
        """The constant inputs of ``op`` (e.g. a conv's filter and bias), in order."""
        found = [self.tensors[i].data for i in op.inputs if i >= 0]
        return [d for d in found if d is not None]


def _options(op_name: str, opts: _Table | None) -> dict[str, object]:
    if opts is None:
        return {}
    if op_name == "CONV_2D":
        return {
            "padding": _PADDING[opts.scalar(0, "b")],
            "stride": (opts.scalar(2, "i", 1), opts.scalar(1, "i", 1)),
            "activation": _FUSED_ACTIVATIONS.get(opts.scalar(3, "b")),
        }
    if op_name == "DEPTHWISE_CONV_2D":
        return {
            "padding": _PADDING[opts.scalar(0, "b")],
            "stride": (opts.scalar(2, "i", 1), opts.scalar(1, "i", 1)),
            "activation": _FUSED_ACTIVATIONS.get(opts.scalar(4, "b")),
        }
    if op_name in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        return {
            "padding": _PADDING[opts.scalar(0, "b")],
            "stride": (opts.scalar(2, "i", 1), opts.scalar(1, "i", 1)),
            "kernel": (opts.scalar(4, "i", 1), opts.scalar(3, "i", 1)),
        }
    if op_name == "ADD":
        return {"activation": _FUSED_ACTIVATIONS.get(opts.scalar(0, "b"))}
    return {}


def read_tflite(path: str | Path) -> TFLiteGraph:
    """Parse ``path``'s first subgraph; a file that is not TFLite is one :class:`LmkError`."""
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as exc:
        raise LmkError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise LmkError(f"{path} is not a TFLite model (no TFL3 identifier)")
    try:
        return _parse(buf)
    except (struct.error, ValueError, KeyError, IndexError) as exc:
        raise LmkError(f"{path} is a damaged TFLite file: {exc}") from None


def _parse(buf: bytes) -> TFLiteGraph:
    model = _Table(buf, struct.unpack_from("<I", buf, 0)[0])
    codes = []
    for code in model.tables(1):
        builtin = max(int(code.scalar(0, "b")), int(code.scalar(3, "i")))
        codes.append(BUILTIN_OPS.get(builtin, f"BUILTIN_{builtin}"))
    buffers = model.tables(4)
    subgraphs = model.tables(2)
    if not subgraphs:
        raise ValueError("no subgraph")
    graph = subgraphs[0]
    tensors = []
    for t in graph.tables(0):
        shape = tuple(int(v) for v in t.vector(0, np.int32))
        dtype = _TENSOR_TYPES.get(int(t.scalar(1, "b")))
        raw = buffers[int(t.scalar(2, "I"))].vector(0, np.uint8) if buffers else None
        data = None
        sparse = t.table(6) is not None  # stored compressed; a DENSIFY op expands it
        if raw is not None and raw.size and dtype is not None and not sparse:
            data = raw.view(np.dtype(dtype).newbyteorder("<")).astype(dtype).reshape(shape)
        tensors.append(Tensor(t.string(3), shape, data))
    operators = []
    for o in graph.tables(3):
        name = codes[int(o.scalar(0, "I"))]
        operators.append(
            Operator(
                name,
                [int(v) for v in o.vector(1, np.int32)],
                [int(v) for v in o.vector(2, np.int32)],
                _options(name, o.table(4)),
            )
        )
    _fold_dequantize(tensors, operators)
    inputs = [int(v) for v in graph.vector(1, np.int32)]
    outputs = [int(v) for v in graph.vector(2, np.int32)]
    return TFLiteGraph(tensors, operators, inputs, outputs)


def _fold_dequantize(tensors: list[Tensor], operators: list[Operator]) -> None:
    """FP16 files store weights as float16 constants behind DEQUANTIZE ops: give each such
    op's output the float32 values, so importers see a conv's weights directly."""
    for op in operators:
        if op.op == "DEQUANTIZE" and op.inputs and tensors[op.inputs[0]].data is not None:
            source = tensors[op.inputs[0]].data
            if source.dtype == np.float16:
                tensors[op.outputs[0]].data = source.astype(np.float32)
