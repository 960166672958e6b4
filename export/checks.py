"""What ``lmk-export`` verifies before a file is written: validity, TensorRT importability,
and parity with PyTorch + the reference decode on real inputs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import onnx
import torch

from lmk.checkpoint import Checkpoint
from lmk.core.errors import LmkError
from lmk.export.reference import TorchRunner
from lmk.runtime.compare import Comparison, compare
from lmk.runtime.runners import OnnxRuntimeRunner
from lmk.runtime.session import InferenceModel, RuntimeOptions

# Ops lmk may put in a graph for TensorRT even where newer parsers accept more: integer Mod,
# bit ops, loops and data-dependent shapes are what older TensorRT releases reject.
FORBIDDEN_OPS = {"Mod", "Xor", "Loop", "If", "Scan", "NonZero", "Unique", "Compress"}
RESIZE_MODES = {"nearest", "linear"}
RESIZE_TRANSFORMS = {
    "half_pixel",
    "pytorch_half_pixel",
    "tf_half_pixel_for_nn",
    "asymmetric",
    "align_corners",
}


def tensorrt_supported_ops() -> dict[str, dict]:
    """TensorRT 10's ONNX parser support list (copied into the package from its docs)."""
    text = resources.files("lmk").joinpath("data/tensorrt10_onnx_ops.json").read_text("utf-8")
    return json.loads(text)["supported"]


@dataclass
class TensorRTReport:
    ops: list[str]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def tensorrt_check(model: onnx.ModelProto) -> TensorRTReport:
    """Ops, attributes and integer types a TensorRT engine build would reject."""
    supported = tensorrt_supported_ops()
    initializers = {i.name for i in model.graph.initializer}
    constants = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    static = initializers | constants
    ops = sorted({n.op_type for n in model.graph.node})
    problems = [
        f"{op} is not imported by TensorRT's ONNX parser" for op in ops if op not in supported
    ]
    problems += [
        f"{op} is avoided for older TensorRT releases" for op in ops if op in FORBIDDEN_OPS
    ]
    uint8_inputs = {
        v.name for v in model.graph.input if v.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    }
    for node in model.graph.node:
        if uint8_inputs & set(node.input) and node.op_type != "Cast":
            problems.append(
                f"{node.name}: TensorRT takes a uint8 input only into Cast, not {node.op_type}"
            )
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "TopK" and attrs.get("sorted", 1) != 1:
            problems.append(f"{node.name}: TopK needs sorted=1")
        if node.op_type in (
            "Slice",
            "ReduceMax",
            "ReduceMean",
            "ReduceSum",
            "Squeeze",
            "Unsqueeze",
        ):
            axes_at = 3 if node.op_type == "Slice" else 1
            if (
                len(node.input) > axes_at
                and node.input[axes_at]
                and node.input[axes_at] not in static
            ):
                problems.append(f"{node.name}: {node.op_type} axes must be constant")
        if node.op_type == "Resize":
            mode = attrs.get("mode", b"nearest")
            transform = attrs.get("coordinate_transformation_mode", b"half_pixel")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            transform = transform.decode() if isinstance(transform, bytes) else transform
            if mode not in RESIZE_MODES or transform not in RESIZE_TRANSFORMS:
                problems.append(f"{node.name}: Resize {mode}/{transform} is not supported")
            if attrs.get("antialias", 0):
                problems.append(f"{node.name}: Resize antialias is not supported")
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zero = _initializer(model, node.input[2])
            if zero is not None and np.any(zero != 0):
                problems.append(
                    f"{node.name}: Q/DQ zero point is not 0 (TensorRT needs --int8-target tensorrt)"
                )
    return TensorRTReport(ops=ops, problems=_grouped(problems))


def _grouped(problems: list[str]) -> list[str]:
    """One line per kind of problem, with a count, instead of one per node."""
    counts: dict[str, int] = {}
    for problem in problems:
        kind = problem.split(": ", 1)[-1]
        counts[kind] = counts.get(kind, 0) + 1
    return [f"{kind} ({n} nodes)" if n > 1 else kind for kind, n in counts.items()]


def _initializer(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    for init in model.graph.initializer:
        if init.name == name:
            return onnx.numpy_helper.to_array(init)
    return None


def int64_tensors(model: onnx.ModelProto) -> list[str]:
    """Non-constant int64 tensors the graph computes (ArgMax's output is the one ONNX forces)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    return sorted(
        v.name
        for v in list(inferred.graph.value_info) + list(inferred.graph.output)
        if v.type.tensor_type.elem_type == onnx.TensorProto.INT64
    )


def check_validity(model: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise LmkError(f"exported graph fails onnx.checker: {str(exc).splitlines()[0]}") from None


def simplify(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """onnxsim, keeping the unsimplified graph (and saying so) if it fails or cannot verify."""
    try:
        import onnxsim

        simplified, ok = onnxsim.simplify(model)
    except Exception as exc:
        return (
            model,
            f"onnxsim failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); kept the unsimplified graph",
        )
    if not ok:
        return model, "onnxsim could not verify its result; kept the unsimplified graph"
    # onnxsim rebuilds the model; the metadata must survive it.
    del simplified.metadata_props[:]
    simplified.metadata_props.extend(model.metadata_props)
    return simplified, "simplified with onnxsim"


def sample_inputs(checkpoint: Checkpoint, batch: int, seed: int = 0) -> np.ndarray:
    """uint8 BGR SynthFace crops, cut with the model's own crop policy, for the self-check."""
    from lmk.synth import synth_crops

    return synth_crops(batch, checkpoint.input_size, checkpoint.crop, seed=seed)


def is_random(checkpoint: Checkpoint) -> bool:
    """Whether the weights are random (``lmk-export`` without ``--checkpoint``, the bench's
    and tests' models): their reduced-precision landmarks are not bounded (see
    :data:`lmk.runtime.compare.TOLERANCES`)."""
    return str(checkpoint.provenance.get("weights", "")).startswith("random")


def self_check(
    checkpoint: Checkpoint,
    path: Path,
    images: np.ndarray,
    torch_model: torch.nn.Module | None = None,
) -> tuple[Comparison, OnnxRuntimeRunner]:
    """The written file under lmk's runtime (CPU EP, the session users get) against PyTorch +
    reference decode on ``images``, held to the tolerance row of the file's precision.
    Returns the comparison and the runner (for the latency line)."""
    runner = OnnxRuntimeRunner(path, RuntimeOptions(ep="cpu"), name="onnxruntime-cpu")
    info = runner.model.info
    reference = TorchRunner(
        checkpoint, torch_model, heads=info.decode == "none", flip_average=info.flip_average
    ).infer(images)
    tolerance = runner.tolerance(random_weights=is_random(checkpoint))
    return compare(reference, runner.infer(images), tolerance), runner


# lmk.min_score: the tracker drops a face whose mean landmark score is below it. Set at export
# from held-out SynthFace faces (seeds apart from training's and the self-check's): the 10th
# percentile of their per-face mean scores. The model's own scale instead of one constant for
# every model; it must stay high enough to reject the frame detector's non-face windows (the
# lowest validation score, 0.48 for the bundled PIPNet, let clutter through). Random weights
# get none (their scores mean nothing), which also keeps random-weight exports quick.
MIN_SCORE_FACES = 16
MIN_SCORE_QUANTILE = 0.1
MIN_SCORE_SEED = 7_000_003


def validation_min_score(checkpoint: Checkpoint, model: InferenceModel) -> float | None:
    """``lmk.min_score`` for a fused landmark file (``model``: it under lmk's runtime) from
    its scores on held-out faces; None for random weights, and for a model without
    confidence (its scores are all 1)."""
    if is_random(checkpoint):
        return None
    if not checkpoint.spec.decoder.has_confidence:
        return None
    images = sample_inputs(checkpoint, MIN_SCORE_FACES, seed=MIN_SCORE_SEED)
    _, scores = model.infer(images)
    return round(float(np.quantile(scores.mean(axis=1), MIN_SCORE_QUANTILE)), 3)
