"""Import MediaPipe's BlazeFace weights from its ``.tflite`` file into :class:`BlazeFace`.

The convolutions of the TFLite graph are taken in graph order (the stem, each block's
depthwise then pointwise conv, then the four heads) and matched one to one, by shape, to
the module's; any difference is a clear error, never a silent partial load.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lmk.core.errors import LmkError
from lmk.models.blazeface import VARIANTS, BlazeFace
from lmk.runtime.tflite_file import TFLiteGraph, read_tflite

_CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")


def variant_of(graph: TFLiteGraph, path: Path) -> str:
    """The BlazeFace variant a TFLite graph is, from its input side; refuses the others."""
    ops = {op.op for op in graph.operators}
    if "DENSIFY" in ops:
        raise LmkError(
            f"{path.name} is a sparse model (TFLite DENSIFY op, e.g. face_detection_full_range_sparse); "
            "lmk imports the dense BlazeFace files: face_detection_short_range/front or face_detection_back"
        )
    shape = graph.tensors[graph.inputs[0]].shape if graph.inputs else ()
    if len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2]:
        raise LmkError(f"{path.name} is not a BlazeFace model (input shape {shape})")
    for name, spec in VARIANTS.items():
        if spec.input_size == shape[1]:
            return name
    raise LmkError(
        f"{path.name} has a {shape[1]} px input; lmk's BlazeFace variants are "
        + ", ".join(f"{n} ({v.input_size} px)" for n, v in VARIANTS.items())
        + " (the 192 px full-range model, with its feature pyramid, is not supported)"
    )


def _module_convs(model: BlazeFace) -> list[torch.nn.Conv2d]:
    convs = [model.stem]
    for block in model.blocks:
        convs += [block.depthwise, block.pointwise]
    return [*convs, model.classifier_16, model.classifier_8, model.regressor_16, model.regressor_8]


def _to_torch(weight: np.ndarray, depthwise: bool) -> np.ndarray:
    # TFLite: conv [out, kh, kw, in], depthwise [1, kh, kw, channels]; torch: [out, in, kh, kw].
    return weight.transpose(3, 0, 1, 2) if depthwise else weight.transpose(0, 3, 1, 2)


def load_blazeface_tflite(path: str | Path) -> BlazeFace:
    """A :class:`BlazeFace` holding the weights of MediaPipe's ``path`` (short-range or back)."""
    path = Path(path)
    graph = read_tflite(path)
    model = BlazeFace(variant_of(graph, path))
    file_convs = [op for op in graph.operators if op.op in _CONV_OPS]
    targets = _module_convs(model)
    if len(file_convs) != len(targets):
        raise LmkError(
            f"{path.name} is not a BlazeFace {model.variant} model: {len(file_convs)} "
            f"convolutions, expected {len(targets)}"
        )
    state = {}
    names = {id(m): n for n, m in model.named_modules()}
    for index, (op, conv) in enumerate(zip(file_convs, targets, strict=True)):
        weights = graph.weights(op)
        if len(weights) != 2:
            raise LmkError(f"{path.name}: convolution {index} has no constant weights and bias")
        weight = _to_torch(weights[0], op.op == "DEPTHWISE_CONV_2D")
        if tuple(weight.shape) != tuple(conv.weight.shape) or weights[1].shape != (
            conv.out_channels,
        ):
            raise LmkError(
                f"{path.name} is not a BlazeFace {model.variant} model: convolution {index} "
                f"has weights {tuple(weight.shape)}, expected {tuple(conv.weight.shape)}"
            )
        name = names[id(conv)]
        state[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32))
        state[f"{name}.bias"] = torch.from_numpy(weights[1].astype(np.float32))
    model.load_state_dict(state, strict=True)
    return model.eval()
