"""INT8: ONNX Runtime static quantization (QDQ, per-channel weights) of the network only.

The preprocessing and decode subgraphs stay FP32 around the quantized network, so the
argmax, offsets and NRM merge are computed exactly as in the FP32 file. Weights are always
symmetric per-channel int8 (zero point 0). What differs by target is the activations:

- ``cpu``: uint8 activations with a zero point, what ORT's CPU kernels are fastest with
  (int8 activations run 2-3x slower there);
- ``tensorrt``: symmetric int8 activations, since TensorRT's parser needs zero point 0;
- ``openvino``: either works on OpenVINO's CPU plugin (``--int8-activations``); the default
  is the faster of the two as measured by ``benchmarks/cpu_precision.py``: symmetric int8
  (:data:`DEFAULT_ACTIVATIONS`).

The ``cpu`` target also lays the file out for ORT's fastest kernels (the *CPU layout*,
:data:`CPU_LAYOUTS`, :mod:`lmk.export.cpu_int8_layout`): ``amx`` (the default where the
exporting CPU has VNNI or AMX, else ``plain``) computes a large first, strided convolution on
2x2 space-to-depth blocks of the input and runs the deep 3x3 convolutions on ORT's quantized
GEMM (AMX tiles where the CPU has them); ``vnni`` does only the first; ``plain`` neither. The
rewrites compute the same function, except that the blocked first convolution's calibration
ranges can differ in their last bit (float summation order), which moves some scales: NME
within 0.01 points of ``plain`` on the PIPNets, +0.013 on the bundled hourglass (lmk-eval, 300
SynthFace faces; ``amx`` and ``vnni`` give bit-identical outputs there, so the GEMM route adds
nothing). On PIPNet-R18 256 px ``amx`` took ~25 % less CPU time than ``plain``
(benchmarks/int8_recipes.py).

And by model family (the *recipe*): PIPNet quantizes every op with min/max ranges
(``full``). Heatmap models (hourglass, FAN) keep their residual trunk float (``float-trunk``:
the Adds and BatchNorms stay FP32; convolutions, ReLUs, pools and upsamplings are INT8 with
ranges from the 99.9th percentile; the last stack's head block stays FP32). Their
pre-activation trunk carries a few activations hundreds of times the typical size (e.g.
[-416, 900] with a standard deviation of 31 in the bundled hourglass), and an 8-bit grid
over that range wipes out the rest: with every op quantized the bundled hourglass scored
~45 % NME instead of 4.7 % on lmk-eval's held-out faces (+0.7 points on smoother crops
rendered at 384 px: the damage depends on the images, which is worse than a fixed loss).
Quantizing only the convolutions with min/max ranges still lost 1.9 points, the most in the
last stack's head block (+0.84 on its own); ranges from the 99.9th percentile clip the few
outliers (+0.2 points), and keeping that block's 4 convolutions FP32 as well
(:func:`after_last_upsample`) brings the loss within noise (-0.1 points on 300 faces).
Quantizing the ReLUs, pools and upsamplings as well costs nothing in NME and saves ~10-15 %
of the time (fewer float islands between INT8 convolutions). ``benchmarks/cpu_precision.py``
measures all of this.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import onnx

from lmk.core.errors import LmkError
from lmk.core.images import is_image_path

if TYPE_CHECKING:  # torch-free at run time: the OpenVINO venv quantizes without torch
    from lmk.checkpoint import Checkpoint

INT8_TARGETS = ("cpu", "tensorrt", "openvino")
ACTIVATIONS = ("u8", "s8")
# u8: asymmetric uint8 (a zero point); s8: symmetric int8 (zero point 0). The openvino entry
# is the one benchmarks/cpu_precision.py measured faster on OpenVINO's CPU plugin (2 threads,
# Xeon with AMX, a shared machine; ms/face u8 -> s8 at batch 1 / 32): PIPNet-R18 256 px
# 56 -> 52 / 16.0 -> 12.8; PIPNet-MobileNetV2 128 px 2.2 -> 2.3 / 2.0 -> 2.2; hourglass
# (float-trunk) 4.6 -> 4.7 / 2.9 -> 3.0. s8 wins clearly on the largest model and loses by
# 5-10 % on the small ones; NME differs by < 0.02 points between them.
DEFAULT_ACTIVATIONS = {"cpu": "u8", "tensorrt": "s8", "openvino": "s8"}
RECIPES = ("auto", "full", "float-trunk")
# float-trunk: the ops quantized (every other op, the trunk's Add and BatchNormalization
# included, stays FP32).
FLOAT_TRUNK_OPS = ["Conv", "Relu", "MaxPool", "Resize"]
HEATMAP_PERCENTILE = 99.9
CPU_LAYOUTS = ("amx", "vnni", "plain")
# amx: blocked first conv + deep 3x3 convs on the quantized GEMM; vnni: the blocked first conv
# only (every other conv on ORT's ConvSym kernels); plain: the quantizer's file as it comes.


@dataclass(frozen=True)
class Int8Plan:
    """What ``--int8-target``, ``--int8-activations`` and ``--int8-recipe`` resolve to."""

    target: str = "cpu"
    activations: str = "u8"
    recipe: str = "full"  # full | float-trunk (auto: the model family's int8_recipe), or
    # conv-minmax (convolutions only, min/max ranges: for sensitivity studies)
    float_tail: bool = True
    """float-trunk: keep the convolutions after the last upsampling (the last stack's head
    block, between the last hourglass and the heatmap head) FP32."""
    cpu_layout: str = "plain"
    """Target cpu: which exact kernel-steering rewrites to apply (:data:`CPU_LAYOUTS`)."""

    @property
    def symmetric(self) -> bool:
        return self.activations == "s8"

    def describe(self) -> str:
        ops = {
            "full": "every op, min/max ranges",
            "conv-minmax": "convolutions only, min/max ranges",
            "float-trunk": "the residual trunk's Adds and BatchNorms FP32, the rest "
            f"{HEATMAP_PERCENTILE:g}th-percentile ranges",
        }[self.recipe]
        if self.recipe == "float-trunk" and self.float_tail:
            ops += ", the last stack's head block FP32"
        kind = "int8 symmetric" if self.symmetric else "uint8"
        layout = f", {self.cpu_layout} CPU layout" if self.target == "cpu" else ""
        return (
            f"target {self.target}: {kind} activations, int8 symmetric per-channel weights, "
            f"{ops}{layout}"
        )


def default_cpu_layout() -> str:
    """``amx`` where this CPU has VNNI or AMX-INT8, else ``plain``.

    Why: ``amx`` moves the deep convolutions onto ORT's u8s8 GEMM, which on plain AVX2 (no
    VNNI) sums pairs of products in saturating 16-bit lanes, so its exactness is only known
    where the dot product is exact. The file is laid out for the exporting CPU's class; export
    on (or pass ``--int8-cpu-layout`` for) the class it will run on.
    """
    from lmk.runtime.cpu import has_int8_dot

    return "amx" if has_int8_dot() else "plain"


def int8_plan(
    target: str = "cpu",
    activations: str | None = None,
    recipe: str = "auto",
    family_recipe: str = "full",
    cpu_layout: str | None = None,
) -> Int8Plan:
    """Resolve the INT8 flags; ``auto`` takes ``family_recipe``, the recipe the model's family
    declares (``Family.int8_recipe`` in lmk.models.registry); ``cpu_layout`` defaults to
    :func:`default_cpu_layout` for the cpu target and exists only there."""
    if target not in INT8_TARGETS:
        raise LmkError(f"unknown INT8 target {target!r}; choose from {', '.join(INT8_TARGETS)}")
    if activations is None:
        activations = DEFAULT_ACTIVATIONS[target]
    if activations not in ACTIVATIONS:
        raise LmkError(f"--int8-activations must be u8 or s8, got {activations!r}")
    if target == "tensorrt" and activations != "s8":
        raise LmkError(
            "--int8-target tensorrt needs --int8-activations s8 (TensorRT takes only zero point 0)"
        )
    if recipe not in RECIPES:
        raise LmkError(f"--int8-recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
    if recipe == "auto":
        recipe = family_recipe
    if cpu_layout is not None and target != "cpu":
        raise LmkError("--int8-cpu-layout applies only to --int8-target cpu")
    layout = cpu_layout or (default_cpu_layout() if target == "cpu" else "plain")
    if layout not in CPU_LAYOUTS:
        raise LmkError(f"--int8-cpu-layout must be one of {', '.join(CPU_LAYOUTS)}, got {layout!r}")
    return Int8Plan(target, activations, recipe, cpu_layout=layout)


def add_int8_metadata(model: onnx.ModelProto, plan: Int8Plan) -> None:
    """Record how the file was quantized (``lmk.int8``: target, activations, recipe), so a
    reader (lmk-bench, a user's look with ``onnx``) can tell a CPU file from an OpenVINO one."""
    entry = model.metadata_props.add()
    entry.key = "lmk.int8"
    record = {"target": plan.target, "activations": plan.activations, "recipe": plan.recipe}
    if plan.target == "cpu":
        record["cpu_layout"] = plan.cpu_layout
    entry.value = json.dumps(record, separators=(",", ":"))


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
    files = sorted(p for p in folder.rglob("*") if is_image_path(p))[:count]
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


def after_last_upsample(network: onnx.ModelProto) -> list[str]:
    """The convolutions downstream of the graph's last ``Resize`` (the last hourglass's final
    upsampling): the last stack's head block, which feeds the heatmaps' argmax directly and
    lost the most when quantized (+0.84 NME points on its own in the bundled hourglass, 4 of
    its 101 convolutions). Empty for a network without upsampling."""
    resizes = [node for node in network.graph.node if node.op_type == "Resize"]
    if not resizes:
        return []
    consumers: dict[str, list] = {}
    for node in network.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    seen: set[str] = set()
    frontier = list(resizes[-1].output)
    found = []
    while frontier:
        for node in consumers.get(frontier.pop(), []):
            if node.name in seen:
                continue
            seen.add(node.name)
            if node.op_type == "Conv":
                found.append(node.name)
            frontier.extend(node.output)
    return found


def quantize_network(
    network: onnx.ModelProto,
    calibration: np.ndarray,
    target: str | Int8Plan = "cpu",
    batch: int = 8,
    exclude: list[str] | None = None,
) -> onnx.ModelProto:
    """Static QDQ quantization of a float-input network; ``calibration`` is normalised NCHW.

    ``target`` is an :class:`Int8Plan` or a target name (its default activations, the
    ``full`` recipe, its default CPU layout); ``exclude`` names more nodes to keep FP32
    (sensitivity studies).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from lmk.export.cpu_int8_layout import blocked_input_conv, route_to_gemm

    plan = target if isinstance(target, Int8Plan) else int8_plan(target, recipe="full")
    if plan.cpu_layout != "plain":  # before calibration: the blocked conv is calibrated as is
        network = copy.deepcopy(network)
        blocked_input_conv(network)
    fixed = network.graph.input[0].type.tensor_type.shape.dim[0].dim_value
    step = fixed or batch
    batches = [calibration[i : i + step] for i in range(0, len(calibration) - step + 1, step)]
    if not batches:
        raise LmkError(f"not enough calibration crops for batch {step}")
    # The head convs stay FP32: quantizing the raw heads would put the sub-cell offsets on an
    # 8-bit grid (a 20-cell offset range in 256 steps is 2.5 px at stride 32), and a heatmap
    # model's argmax on near-tied cells. They are 1x1 convs on the last feature map, a few
    # percent of the compute.
    outputs = {o.name for o in network.graph.output}
    heads = [node.name for node in network.graph.node if outputs & set(node.output)]
    extra: dict = {"ActivationSymmetric": plan.symmetric, "WeightSymmetric": True}
    kwargs: dict = {"calibrate_method": CalibrationMethod.MinMax}
    if plan.recipe == "conv-minmax":
        kwargs["op_types_to_quantize"] = ["Conv"]
    if plan.recipe == "float-trunk":
        kwargs["op_types_to_quantize"] = FLOAT_TRUNK_OPS
        kwargs["calibrate_method"] = CalibrationMethod.Percentile
        extra["CalibPercentile"] = HEATMAP_PERCENTILE
        if plan.float_tail:
            heads += after_last_upsample(network)
    with tempfile.TemporaryDirectory() as tmp:
        source, target_path = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(network, str(source))
        log = io.StringIO()
        quant_logger = logging.getLogger("onnxruntime")
        root_logger = logging.getLogger()  # ORT's quantizer also warns through the root logger
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            previous = quant_logger.level, root_logger.level
            quant_logger.setLevel(logging.ERROR)
            root_logger.setLevel(logging.ERROR)
            try:
                quantize_static(
                    str(source),
                    str(target_path),
                    _Reader(batches),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=QuantType.QInt8 if plan.symmetric else QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=heads + list(exclude or []),
                    extra_options=extra,
                    **kwargs,
                )
            except Exception as exc:
                raise LmkError(f"INT8 quantization failed: {str(exc).splitlines()[0]}") from None
            finally:
                quant_logger.setLevel(previous[0])
                root_logger.setLevel(previous[1])
        quantized = onnx.load(str(target_path))
    if plan.cpu_layout == "amx":
        route_to_gemm(quantized)
    return quantized
