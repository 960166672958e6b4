"""INT8: ONNX Runtime static quantization (QDQ, per-channel weights) of the network only.

The preprocessing and decode subgraphs stay FP32 around the quantized network, so the
argmax, offsets and NRM merge are computed exactly as in the FP32 file. Two activation
flavours: ``cpu`` (uint8 activations, what ORT's CPU kernels are fastest with) and
``tensorrt`` (symmetric int8 activations: TensorRT's parser needs zero point 0).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnx

from lmk.checkpoint import Checkpoint
from lmk.errors import LmkError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def calibration_images(
    checkpoint: Checkpoint, source: str, count: int, seed: int = 0
) -> np.ndarray:
    """uint8 BGR crops [M, S, S, 3] from SynthFace (``synth``) or a folder of face crops."""
    size = checkpoint.input_size
    if source == "synth":
        from lmk.synth import synth_crops

        return synth_crops(count, size, checkpoint.crop, seed=seed)
    folder = Path(source)
    if not folder.is_dir():
        raise LmkError(
            f"--calib must be 'synth' or a folder of face crops; {folder} is not a folder"
        )
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:count]
    crops = []
    for path in files:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is not None:  # unreadable files are skipped; too few left is an error below
            crops.append(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA))
    if len(crops) < 8:
        raise LmkError(f"--calib {folder}: need at least 8 readable images, found {len(crops)}")
    return np.stack(crops)


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over normalised batches."""

    def __init__(self, batches: list[np.ndarray]):
        self._batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {"input": batch}

    def rewind(self) -> None:  # newer ORT calibrators may call it; one pass is enough here
        pass


def quantize_network(
    network: onnx.ModelProto, calibration: np.ndarray, target: str = "cpu", batch: int = 8
) -> onnx.ModelProto:
    """Static QDQ quantization of a float-input network; ``calibration`` is normalised NCHW."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if target not in ("cpu", "tensorrt"):
        raise LmkError(f"unknown INT8 target {target!r}; choose cpu or tensorrt")
    fixed = network.graph.input[0].type.tensor_type.shape.dim[0].dim_value
    step = fixed or batch
    batches = [calibration[i : i + step] for i in range(0, len(calibration) - step + 1, step)]
    if not batches:
        raise LmkError(f"not enough calibration crops for batch {step}")
    symmetric = target == "tensorrt"
    # The head convs stay FP32: quantizing the raw heads would put the sub-cell offsets on an
    # 8-bit grid (a 20-cell offset range in 256 steps is 2.5 px at stride 32). They are 1x1
    # convs on the smallest feature map, a few percent of the compute.
    outputs = {o.name for o in network.graph.output}
    heads = [node.name for node in network.graph.node if outputs & set(node.output)]
    with tempfile.TemporaryDirectory() as tmp:
        source, target_path = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(network, str(source))
        log = io.StringIO()
        quant_logger = logging.getLogger("onnxruntime")
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            previous = quant_logger.level
            quant_logger.setLevel(logging.ERROR)
            try:
                quantize_static(
                    str(source),
                    str(target_path),
                    _Reader(batches),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    nodes_to_exclude=heads,
                    extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
                )
            except Exception as exc:
                raise LmkError(f"INT8 quantization failed: {str(exc).splitlines()[0]}") from None
            finally:
                quant_logger.setLevel(previous)
        return onnx.load(str(target_path))
