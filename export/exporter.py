"""torch model -> ONNX file that maps an image crop to landmarks.

The network is exported once with ``torch.onnx.export`` (raw heads, float NCHW input); the
preprocessing and decode subgraphs of :mod:`lmk.export.graphs` are then composed around it,
so ``--decode none``, ``--input float-rgb`` and FP16/INT8 variants all share one network
export and the decode is always the same FP32 graph.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, compose, helper
from torch import Tensor, nn

import lmk
from lmk.checkpoint import Checkpoint
from lmk.core.decode import NO_DECODE
from lmk.core.errors import LmkError
from lmk.core.metadata import PRECISIONS, ModelInfo
from lmk.export import graphs
from lmk.models import ModelSpec

OPSETS = tuple(range(13, 21))
DECODES = ("fused", "none")
INPUT_FORMATS = {"uint8-bgr": "uint8_nhwc_bgr", "float-rgb": "float_nchw_rgb"}


@dataclass(frozen=True)
class ExportOptions:
    """What ``lmk-export`` flags choose; the defaults make the contract's file (docs/design.md
    section 7): uint8 BGR input, fused decode, dynamic batch, FP32."""

    opset: int = 17
    decode: str = "fused"
    input_format: str = "uint8-bgr"
    batch: int | None = None  # None: dynamic batch
    precision: str = "fp32"
    flip_average: bool = False
    """Flip test-time augmentation in the graph: each crop and its mirror image run as one
    batch, and the mirror's landmarks are mapped back and averaged in (2x the inference)."""

    def __post_init__(self) -> None:
        if self.opset not in OPSETS:
            raise LmkError(f"opset {self.opset} is not supported; use {OPSETS[0]}..{OPSETS[-1]}")
        if self.decode not in DECODES:
            raise LmkError(f"unknown decode {self.decode!r}; choose from {', '.join(DECODES)}")
        if self.input_format not in INPUT_FORMATS:
            raise LmkError(
                f"unknown input {self.input_format!r}; choose from {', '.join(INPUT_FORMATS)}"
            )
        if self.batch is not None and self.batch < 1:
            raise LmkError(f"batch must be >= 1, got {self.batch}")
        if self.precision not in PRECISIONS:
            raise LmkError(f"unknown precision {self.precision!r}")
        if self.flip_average and self.decode != "fused":
            raise LmkError(
                "--flip-average needs --decode fused: the mirror's landmarks are averaged "
                "after the decode, so a raw-heads file cannot carry it"
            )

    @property
    def network_batch(self) -> int | None:
        """The batch the network itself runs: twice the images' with ``flip_average`` (each
        crop and its mirror), None when dynamic."""
        if self.batch is None:
            return None
        return 2 * self.batch if self.flip_average else self.batch


class RawHeads(nn.Module):
    """The network as exported: the heads its decode reads (PIPNet's five, or a heatmap
    model's last stack only)."""

    def __init__(self, model: nn.Module, spec: ModelSpec):
        super().__init__()
        self.model = model
        self.decoder = spec.decoder

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return self.decoder.select_heads(self.model(x))


def export_network(
    model: nn.Module,
    spec: ModelSpec,
    opset: int,
    batch: int | None,
    fp16: bool = False,
    tracer: str = "dynamo",
) -> onnx.ModelProto:
    """Trace the network (float NCHW ``input`` -> raw heads); dynamo, TorchScript for old opsets.

    ``tracer="torchscript"`` uses the TorchScript exporter throughout: several times quicker,
    for tests whose subject is not the trace."""
    wrapper = RawHeads(copy.deepcopy(model).eval(), spec)
    dtype = torch.float16 if fp16 else torch.float32
    if fp16:
        wrapper = wrapper.half()
    size = spec.input_size
    # A batch-1 example would freeze the batch dimension, so a dynamic export traces with 2.
    example = torch.zeros(batch or 2, 3, size, size, dtype=dtype)
    dynamic = None if batch else ({0: torch.export.Dim("batch", min=1, max=4096)},)
    names = spec.decoder.heads
    if tracer not in ("dynamo", "torchscript"):
        raise ValueError(f"tracer must be dynamo or torchscript, got {tracer!r}")
    network = _trace(wrapper, example, opset, names, dynamic, dynamo=tracer == "dynamo")
    if _opset(network) != opset:
        # The dynamo exporter implements opset 18 and converts down; where onnx's version
        # converter lacks an adapter (opsets 13-16) it leaves 18. The TorchScript exporter
        # emits older opsets directly.
        network = _trace(wrapper, example, opset, names, dynamic, dynamo=False)
    if _opset(network) != opset:
        raise LmkError(f"torch.onnx.export produced opset {_opset(network)}, not {opset}")
    _set_batch_dim(network, batch or "batch")
    return network


def _set_batch_dim(model: onnx.ModelProto, batch: int | str) -> None:
    """Name (or fix) the first dimension of every graph input and output."""
    for value in list(model.graph.input) + list(model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if isinstance(batch, str):
            dim.dim_param = batch
        else:
            dim.dim_value = batch


def _rename(model: onnx.ModelProto, old: str, new: str) -> None:
    """Rename the value ``old`` to ``new`` everywhere: graph inputs and outputs, every node's
    inputs and outputs (so composing graphs can give two of them distinct edge names)."""
    for value in list(model.graph.input) + list(model.graph.output):
        if value.name == old:
            value.name = new
    for node in model.graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]


def _trace(
    wrapper: nn.Module, example: Tensor, opset: int, names: tuple[str, ...], dynamic, dynamo: bool
) -> onnx.ModelProto:
    """One torch.onnx.export call with its chatter (warnings, logs, prints) kept quiet."""
    kwargs: dict = {"dynamic_shapes": dynamic, "optimize": True} if dynamo else {}
    if not dynamo and dynamic:
        kwargs["dynamic_axes"] = {n: {0: "batch"} for n in ("input", *names)}
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript", "torch.export")]
    levels = [lg.level for lg in loggers]
    buffer = io.BytesIO()
    try:
        for lg in loggers:
            lg.setLevel(logging.CRITICAL)
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper,
                (example,),
                None if dynamo else buffer,
                dynamo=dynamo,
                opset_version=opset,
                input_names=["input"],
                output_names=list(names),
                verbose=False,
                **kwargs,
            )
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LmkError(f"torch.onnx.export failed: {detail}") from None
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
    return program.model_proto if dynamo else onnx.load_from_string(buffer.getvalue())


def _wrap_fp16(network: onnx.ModelProto) -> onnx.ModelProto:
    """FP32 IO around an FP16 network: Cast in after the input, Cast out before every output."""
    graph = network.graph
    nodes = []
    for value in graph.input:
        inner = f"{value.name}__fp16"
        for node in graph.node:
            node.input[:] = [inner if n == value.name else n for n in node.input]
        nodes.append(
            helper.make_node(
                "Cast", [value.name], [inner], name=f"cast_{inner}", to=TensorProto.FLOAT16
            )
        )
        value.type.tensor_type.elem_type = TensorProto.FLOAT
    for value in graph.output:
        inner = f"{value.name}__fp16"
        for node in graph.node:
            node.output[:] = [inner if n == value.name else n for n in node.output]
        graph.node.append(
            helper.make_node(
                "Cast", [inner], [value.name], name=f"cast_{value.name}", to=TensorProto.FLOAT
            )
        )
        value.type.tensor_type.elem_type = TensorProto.FLOAT
    for node in reversed(nodes):
        graph.node.insert(0, node)
    return network


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def assemble(
    network: onnx.ModelProto, checkpoint: Checkpoint, options: ExportOptions
) -> onnx.ModelProto:
    """Compose preprocessing + network + decode and write the metadata."""
    spec = checkpoint.spec
    opset, ir = _opset(network), network.ir_version
    batch: int | str = options.batch or "batch"
    # What the network and the decode run on: the crops, or with flip averaging the crops
    # and their mirror images (twice the batch).
    views: int | str = options.network_batch or ("views" if options.flip_average else batch)
    model = network
    if options.flip_average:
        _set_batch_dim(model, views)
    if options.decode == "fused":
        out_shape = network.graph.output[0].type.tensor_type.shape
        # Map heads are [N, C, H, W]; a regression head [N, 2L] has no map (its builder
        # ignores the size).
        height, width = ([d.dim_value for d in out_shape.dim[2:4]] + [0, 0])[:2]
        build_decode = spec.decoder.graph()
        table = spec.neighbour_table(checkpoint.layout)
        decode = build_decode(spec.num_lms, table, height, width, opset, ir, views)
        model = compose.merge_models(model, decode, io_map=[(n, n) for n in spec.decoder.heads])
    if options.flip_average:
        size = spec.input_size
        mirror = graphs.mirror_views_model(size, opset, ir, batch, views)
        _rename(model, "input", "views")
        model = compose.merge_models(mirror, model, io_map=[("views", "views")])
        merge = graphs.flip_average_model(
            spec.num_lms, tuple(checkpoint.layout.flip), opset, ir, batch, views
        )
        for name in ("landmarks", "scores"):  # the decode's outputs feed the merge
            _rename(model, name, f"view_{name}")
        pairs = [(f"view_{n}", f"view_{n}") for n in ("landmarks", "scores")]
        model = compose.merge_models(model, merge, io_map=pairs)
    if options.input_format == "uint8-bgr":
        pre = graphs.uint8_bgr_preprocess_model(
            checkpoint.normalisation, spec.input_size, opset, ir, batch
        )
        model = compose.merge_models(pre, model, io_map=[("input", "input")])
    else:
        _rename(model, "input", "image")
    model.graph.name = f"lmk_{spec.name}"
    model.producer_name, model.producer_version = "lmk", lmk.__version__
    _write_metadata(model, checkpoint, options)
    return model


def model_info(checkpoint: Checkpoint, options: ExportOptions) -> ModelInfo:
    """The file's self-description (:class:`lmk.core.metadata.ModelInfo`, every key typed)."""
    spec, layout = checkpoint.spec, checkpoint.layout
    fused = options.decode == "fused"
    return ModelInfo(
        model=spec.name,
        model_args=spec.full_args(),
        layout=layout.name,
        num_landmarks=spec.num_lms,
        input_size=spec.input_size,
        input_format=INPUT_FORMATS[options.input_format],
        channel_order=checkpoint.normalisation.channel_order,
        mean=tuple(checkpoint.normalisation.mean),
        std=tuple(checkpoint.normalisation.std),
        decode=spec.decode if fused else NO_DECODE,
        raw_decode=spec.decode,
        outputs=("landmarks", "scores") if fused else spec.decoder.heads,
        num_nb=spec.num_nb,
        net_stride=spec.map_stride,
        meanface=tuple(float(v) for v in layout.meanface.reshape(-1)),
        flip=tuple(layout.flip),
        nme_norm=layout.nme_norm,
        crop=checkpoint.crop.to_dict(),
        precision=options.precision,
        batch=options.batch or "dynamic",
        provenance={
            k: v for k, v in checkpoint.provenance.items() if isinstance(v, (str, int, float))
        },
        version=lmk.__version__,
        confidence=spec.decoder.has_confidence,
        flip_average=options.flip_average,
        rotate=spec.family.upright_crops,
    )


def _write_metadata(model: onnx.ModelProto, checkpoint: Checkpoint, options: ExportOptions) -> None:
    del model.metadata_props[:]
    for key, value in model_info(checkpoint, options).to_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def build_onnx(
    checkpoint: Checkpoint, options: ExportOptions, network: onnx.ModelProto | None = None
) -> onnx.ModelProto:
    """The full export (before simplification and checks); pass ``network`` to reuse a trace."""
    fp16 = options.precision == "fp16"
    if network is None:
        if options.precision == "int8":
            raise LmkError("an int8 build needs the quantized network (lmk.export.quantize)")
        network = export_network(
            checkpoint.build_model(), checkpoint.spec, options.opset, options.network_batch, fp16
        )
    network = copy.deepcopy(network)
    if fp16:
        network = _wrap_fp16(network)
    return assemble(network, checkpoint, options)


def store_weights_fp16(model: onnx.ModelProto, min_elements: int = 1024) -> onnx.ModelProto:
    """Half the file, same FP32 compute: every large FP32 initializer is stored as FP16 and
    cast back to FP32 by a ``Cast`` at the graph's start, which ONNX Runtime (and TensorRT)
    fold into a constant when the model loads. Run after simplification (onnxsim would fold
    the casts straight back). Weights change by FP16 rounding only (relative 2^-11)."""
    from onnx import numpy_helper

    out = copy.deepcopy(model)
    graph = out.graph
    casts = []
    kept = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            kept.append(init)
            continue
        half = numpy_helper.from_array(
            numpy_helper.to_array(init).astype(np.float16), f"{init.name}__fp16"
        )
        kept.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    entry = out.metadata_props.add()
    entry.key, entry.value = "lmk.weight_storage", '"fp16"'
    return out


def export_to_file(
    ckpt: Checkpoint,
    options: ExportOptions,
    path: Path,
    simplify: bool = True,
    calib: str = "synth",
    calib_size: int = 64,
    int8_target: str = "cpu",
    int8_activations: str | None = None,
    int8_recipe: str = "auto",
    int8_cpu_layout: str | None = None,
    store_fp16: bool = False,
) -> dict:
    """Export, simplify, check and self-check; writes ``path``. Returns the report fields.

    The one path from a checkpoint to a file: ``lmk-export`` calls it inside its atomic
    output, and the tools that make the bundled models and the benchmarks' files call it
    too, so every ONNX file lmk makes passed the same checks."""
    from lmk.export import checks  # checks imports this module (ExportOptions, head_names)

    started = time.perf_counter()
    plan = None
    if options.precision == "int8":  # bad calibration input fails before any tracing
        from lmk.export.quantize import (
            add_int8_metadata,
            calibration_images,
            int8_plan,
            quantize_network,
        )

        plan = int8_plan(
            int8_target,
            int8_activations,
            int8_recipe,
            ckpt.spec.family.int8_recipe,
            cpu_layout=int8_cpu_layout,
        )
        crops = calibration_images(ckpt, calib, calib_size)
    torch_model = ckpt.build_model()
    fp16 = options.precision == "fp16"
    network = export_network(torch_model, ckpt.spec, options.opset, options.network_batch, fp16)
    if options.precision == "int8":
        network = quantize_network(network, ckpt.normalisation.apply_bgr_nhwc(crops), plan)
    onnx_model = build_onnx(ckpt, options, network)
    if plan is not None:
        add_int8_metadata(onnx_model, plan)
    checks.check_validity(onnx_model)
    note = "not simplified (--no-simplify)"
    if simplify:
        onnx_model, note = checks.simplify(onnx_model)
        checks.check_validity(onnx_model)
    if store_fp16:
        onnx_model = store_weights_fp16(onnx_model)
        checks.check_validity(onnx_model)
    trt = checks.tensorrt_check(onnx_model)
    model_bytes = onnx_model.SerializeToString()
    # The self-check runs the file as written, through lmk's runtime; a failure leaves no
    # file (``path`` is the temporary name the caller renames only on success).
    onnx.save(onnx_model, str(path))
    images = checks.sample_inputs(ckpt, options.batch or 3)
    result, runner = checks.self_check(ckpt, path, images, torch_model)
    if not result.ok:
        raise LmkError(
            f"parity check failed ({runner.precision} tolerance): {result.summary()} "
            "(ONNX Runtime CPU vs PyTorch + reference decode)"
        )
    landmarks = result.diffs["landmarks"]
    min_score = None
    if options.decode == "fused":
        min_score = checks.validation_min_score(ckpt, runner.model)
    if min_score is not None:  # written into the file that passed the check
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = "lmk.min_score", json.dumps(min_score)
        onnx.save(onnx_model, str(path))
    return {
        "min_score": min_score,
        "size_mb": len(model_bytes) / 1e6,
        "opset": options.opset,
        "precision": options.precision + (" (weights stored fp16)" if store_fp16 else ""),
        "int8": plan.describe() if plan is not None else None,
        "ops": trt.ops,
        "tensorrt": "ok" if trt.ok else "; ".join(trt.problems),
        "inputs": [_describe(v) for v in onnx_model.graph.input],
        "outputs": [_describe(v) for v in onnx_model.graph.output],
        "parity": result.max_abs,
        "parity_pixels": landmarks.stats["max distance"] * ckpt.input_size,
        "parity_limits": _limits(result.tolerance, runner.precision),
        "latency_ms": _cpu_latency(runner.model, images),
        "latency_batch": len(images),
        "simplify": note,
        "seconds": time.perf_counter() - started,
    }


def _describe(value) -> str:
    dims = [d.dim_param or str(d.dim_value) for d in value.type.tensor_type.shape.dim]
    return f"{value.name} {onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)} [{', '.join(dims)}]"


def _cpu_latency(model, images: np.ndarray, runs: int = 10) -> float:
    """Median ms per call on ORT CPU at the self-check batch (an indication, not a benchmark)."""
    model.infer(images)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.infer(images)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))


def _limits(tolerance, precision: str) -> str:
    """The tolerance row applied, for the report line."""
    named = {
        "max distance": tolerance.landmarks_max,
        "p99 distance": tolerance.landmarks_p99,
        "mean distance": tolerance.landmarks_mean,
    }
    parts = [f"landmark {k} <= {v:g}" for k, v in named.items() if v is not None]
    if tolerance.atol is not None:
        parts.append(f"other |diff| <= {tolerance.atol:g} + {tolerance.rtol:g} x max|ref|")
    if not any(v is not None for v in named.values()):
        parts.append("landmarks not bounded (random weights: near-tied score maps)")
    return f"{precision}: {', '.join(parts)}"
