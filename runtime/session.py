"""An exported lmk file under ONNX Runtime on the CPU, CUDA, TensorRT or OpenVINO execution
provider.

Everything needed to feed the file (input format, size, normalisation, decode) comes from its
metadata; :class:`InferenceModel` turns a batch of uint8 BGR crops into crop-normalised
landmarks and per-landmark scores whatever the file's input format, batch or decode.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from lmk.core.decode import NO_DECODE, get_decoder
from lmk.core.errors import LmkError
from lmk.core.metadata import ModelInfo
from lmk.core.normalise import Normalisation
from lmk.runtime import cpu, require_onnxruntime
from lmk.runtime.metadata import GraphSpec, layout_of, parse_metadata
from lmk.runtime.registry_fetch import sha256_of
from lmk.runtime.validate import InputError

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
EP_CHOICES = ("auto", *PROVIDERS)
AUTO_ORDER = ("tensorrt", "cuda", "openvino", "cpu")
# The pip extra that brings each non-CPU EP (each replaces plain onnxruntime).
EXTRAS = {
    "cuda": '"lmk[gpu]": onnxruntime-gpu, plus CUDA',
    "tensorrt": '"lmk[gpu]": onnxruntime-gpu, plus CUDA/TensorRT',
    "openvino": '"lmk[openvino]": onnxruntime-openvino, in an environment of its own',
}
OV_PRECISIONS = ("fp32", "bf16")
# lmk's precision name -> OpenVINO's INFERENCE_PRECISION_HINT. FP32 is set explicitly, not
# left to defaults: OpenVINO's CPU plugin by itself runs BF16 on AMX CPUs (the ORT EP asks
# for FP32 today; lmk does not rely on that).
_OV_HINTS = {"fp32": "f32", "bf16": "bf16"}
# EPs whose work runs on ORT's (or OpenVINO's) CPU thread pools, where idle threads spin.
SPINNING_EPS = ("cpu", "openvino")


@dataclass
class RuntimeOptions:
    """How to run a file. The fields of :data:`EP_ONLY` apply only to some EPs (the
    TensorRT ones to ``ep="tensorrt"``, the OpenVINO ones to ``ep="openvino"``): set to
    anything but their defaults with another EP (or an ``auto`` that landed elsewhere) they
    are an error, not silently ignored. A value out of range is a ``ValueError``
    (:class:`~lmk.runtime.validate.InputError`)."""

    ep: str = "auto"
    threads: int | None = None
    """CPU threads of ONNX Runtime's intra-op pool, and OpenVINO's (default: one per core)."""
    spin: bool = False
    """CPU and OpenVINO EPs: let idle intra-op threads busy-wait for the next run. Off by
    default: on few cores the spinning threads take the time lmk-run's reader and writer
    threads (and any other session) need."""
    device_id: int = 0
    trt_fp16: bool = False
    trt_int8: bool = False
    trt_cache_dir: Path | None = None
    """Engine cache root; a sub-folder per model digest and precision (default: user cache)."""
    trt_workspace_gb: float = 2.0
    max_batch: int = 16
    """Largest batch of the TensorRT optimisation profile (the dynamic batch's upper bound)."""
    opt_batch: int = 1
    io_binding: bool | None = None
    """Feed through IO binding (one explicit upload, outputs copied back once). ``None``: on
    CUDA and TensorRT, where it saves a copy; ``True`` also on the CPU and OpenVINO EPs (the
    same code path, which is how it is tested without a GPU)."""
    ov_precision: str = "fp32"
    """OpenVINO: inference precision, ``fp32`` or ``bf16`` (needs AVX512_BF16 or AMX)."""
    ov_cache_dir: Path | None = None
    """OpenVINO compiled-model cache root; a sub-folder per model digest and precision
    (default: user cache)."""
    extra_provider_options: dict[str, Any] = field(default_factory=dict)
    """More TensorRT or OpenVINO EP options (they override the ones lmk sets)."""

    def __post_init__(self) -> None:
        bad = []
        if self.threads is not None and (not _is_int(self.threads) or self.threads < 1):
            bad.append(f"threads must be an integer >= 1, got {self.threads!r}")
        if not _is_int(self.device_id) or self.device_id < 0:
            bad.append(f"device_id must be an integer >= 0, got {self.device_id!r}")
        workspace = self.trt_workspace_gb
        if not isinstance(workspace, int | float) or not math.isfinite(workspace) or workspace <= 0:
            bad.append(f"--trt-workspace must be a number of GiB > 0, got {workspace!r}")
        if not _is_int(self.max_batch) or self.max_batch < 1:
            bad.append(f"--max-batch must be an integer >= 1, got {self.max_batch!r}")
        elif not _is_int(self.opt_batch) or not 1 <= self.opt_batch <= self.max_batch:
            bad.append(f"opt_batch must be between 1 and --max-batch, got {self.opt_batch!r}")
        if self.ov_precision not in OV_PRECISIONS:
            bad.append(
                f"--ov-precision must be one of {', '.join(OV_PRECISIONS)}, got {self.ov_precision!r}"
            )
        if not isinstance(self.spin, bool):
            bad.append(f"spin must be True or False, got {self.spin!r}")
        if bad:
            raise InputError("; ".join(bad))

    def misplaced(self, ep: str) -> dict[tuple[str, ...], list[str]]:
        """The EP-specific settings given (not at their defaults) that ``ep`` would silently
        ignore, grouped by the EPs they apply to."""
        given: dict[tuple[str, ...], list[str]] = {}
        for option in fields(self):
            if option.name not in EP_ONLY:
                continue
            eps, flag = EP_ONLY[option.name]
            default = (
                option.default_factory()  # type: ignore[misc]
                if option.default_factory is not MISSING
                else option.default
            )
            if ep not in eps and getattr(self, option.name) != default:
                given.setdefault(eps, []).append(flag)
        return given


# RuntimeOptions fields that only some EPs read: the EPs, and the flag that sets the field.
EP_ONLY: dict[str, tuple[tuple[str, ...], str]] = {
    "spin": (SPINNING_EPS, "--spin"),
    "trt_fp16": (("tensorrt",), "--trt-fp16"),
    "trt_int8": (("tensorrt",), "--trt-int8"),
    "trt_cache_dir": (("tensorrt",), "--trt-cache"),
    "trt_workspace_gb": (("tensorrt",), "--trt-workspace"),
    "max_batch": (("tensorrt",), "--max-batch"),
    "opt_batch": (("tensorrt",), "opt_batch"),
    "ov_precision": (("openvino",), "--ov-precision"),
    "ov_cache_dir": (("openvino",), "--ov-cache"),
    "extra_provider_options": (("tensorrt", "openvino"), "extra_provider_options"),
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def user_cache_dir() -> Path:
    """``$LMK_CACHE_DIR``, else ``$XDG_CACHE_HOME/lmk``, else ``~/.cache/lmk``."""
    if os.environ.get("LMK_CACHE_DIR"):
        return Path(os.environ["LMK_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lmk"


def file_digest(path: Path) -> str:
    """First 16 hex digits of the file's sha256: what keys its TensorRT engines and
    OpenVINO compiled models."""
    return sha256_of(path)[:16]


def candidate_eps(requested: str, available: list[str]) -> list[str]:
    """The EPs to try, in order: ``requested`` if available here (else an error listing what
    is), or for ``auto`` every available one, best first (a GPU EP may still fail to load)."""
    if requested not in EP_CHOICES:
        raise LmkError(f"unknown --ep {requested!r}; choose from {', '.join(EP_CHOICES)}")
    have = [name for name, provider in PROVIDERS.items() if provider in available]
    if requested == "auto":
        return [name for name in AUTO_ORDER if name in have]
    if requested not in have:
        hint = f" (install {EXTRAS[requested]})" if requested in EXTRAS else ""
        raise LmkError(
            f"--ep {requested} is not available here{hint}; available: {', '.join(have)}"
        )
    return [requested]


CUDA_TF32 = False
"""Whether CUDA convolutions and matmuls may use TF32 (10-bit mantissa) on Ampere and newer
GPUs. Off: an FP32 file runs in FP32 on every EP, so the FP32 tolerance row holds on CUDA as
on the CPU; reduced precision is asked for explicitly (``--trt-fp16``, an FP16 export)."""


def cuda_options(options: RuntimeOptions) -> dict[str, Any]:
    """CUDA EP options, also the fallback behind TensorRT: the device and the TF32 decision
    (:data:`CUDA_TF32`), the one place either is set."""
    return {"device_id": options.device_id, "use_tf32": int(CUDA_TF32)}


def tensorrt_precision(options: RuntimeOptions) -> str:
    """``int8``, ``fp16`` or ``fp32``: what the TensorRT engine is built for (and cached as)."""
    return "int8" if options.trt_int8 else "fp16" if options.trt_fp16 else "fp32"


def tensorrt_cache_dir(options: RuntimeOptions, model_digest: str) -> Path:
    """The engine and timing cache folder of one model file, precision and profile: a changed
    file (another digest) or another precision or batch range never meets a stale engine."""
    root = Path(options.trt_cache_dir) if options.trt_cache_dir else user_cache_dir() / "tensorrt"
    return root / f"{model_digest}-{tensorrt_precision(options)}-b{options.max_batch}"


def tensorrt_options(
    options: RuntimeOptions, cache_dir: Path, profile: tuple[str, list[int]] | None
) -> dict[str, Any]:
    """TensorRT EP options: precision, workspace, engine and timing caches in ``cache_dir``,
    and for a dynamic batch (``profile`` = input name and non-batch dims) an optimisation
    profile spanning batch 1..``max_batch``. Pure: the caller creates the folder."""
    result: dict[str, Any] = {
        "device_id": options.device_id,
        "trt_fp16_enable": options.trt_fp16,
        "trt_int8_enable": options.trt_int8,
        "trt_max_workspace_size": int(options.trt_workspace_gb * (1 << 30)),
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache_dir),
    }
    if profile is not None:
        name, dims = profile
        rest = "x".join(str(d) for d in dims)
        result["trt_profile_min_shapes"] = f"{name}:1x{rest}"
        result["trt_profile_opt_shapes"] = f"{name}:{max(1, options.opt_batch)}x{rest}"
        result["trt_profile_max_shapes"] = f"{name}:{max(1, options.max_batch)}x{rest}"
    result.update(options.extra_provider_options)
    return result


def session_config(options: RuntimeOptions, ep: str) -> dict[str, str]:
    """The session config entries lmk sets for ``ep``: on the CPU and OpenVINO EPs, idle
    intra-op and inter-op threads sleep instead of spinning unless ``options.spin``."""
    if ep in SPINNING_EPS and not options.spin:
        return {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}
    return {}


def openvino_options(options: RuntimeOptions, path: Path) -> dict[str, str]:
    """OpenVINO EP options: the CPU device, the precision as an inference hint (the EP's own
    ``precision="BF16"`` is refused on CPU), threads, and a compiled-model cache keyed by
    model digest and precision (a changed file never meets a stale blob)."""
    precision = options.ov_precision
    if precision == "bf16" and not cpu.has_bf16():
        raise LmkError(
            "--ov-precision bf16 needs a CPU with AVX512_BF16 or AMX (this CPU has neither)"
        )
    root = Path(options.ov_cache_dir) if options.ov_cache_dir else user_cache_dir() / "openvino"
    cache = root / f"{file_digest(path)}-{precision}"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LmkError(f"cannot create the OpenVINO cache folder {cache}: {exc.strerror}") from None
    result = {
        "device_type": "CPU",
        "cache_dir": str(cache),
        "load_config": json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": _OV_HINTS[precision]}}),
    }
    if options.threads:
        result["num_of_threads"] = str(options.threads)
    result.update({key: str(value) for key, value in options.extra_provider_options.items()})
    return result


# Why ORT may fall back to the CPU EP without a word, per EP asked for.
_FALLBACK_CAUSES = {
    "cuda": "CUDA or cuDNN libraries missing or mismatched?",
    "tensorrt": "CUDA, cuDNN or TensorRT libraries missing or mismatched?",
    "openvino": "OpenVINO refused the device or an option?",
}


def graph_session(model: bytes | str | Path) -> Any:
    """A quiet CPU session of any ONNX graph, lmk metadata or not, with full graph
    optimisation: for checks of graphs that are not lmk landmark files (a detector's raw
    network, a bare trace). An lmk file runs through :class:`InferenceModel` instead."""
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


_PRELOADED: list[bool] = []


def _preload_gpu_libraries(ort: Any) -> None:
    """Let onnxruntime-gpu find CUDA/cuDNN installed as pip packages (nvidia-*), which the
    loader does not search by itself; a failure here shows up as the session's own error."""
    if _PRELOADED or not hasattr(ort, "preload_dlls"):
        return
    _PRELOADED.append(True)
    with contextlib.suppress(Exception):
        ort.preload_dlls()


class InferenceModel:
    """One ONNX Runtime session over an exported lmk file.

    ``infer(crops)`` takes uint8 BGR crops [N, S, S, 3] (S = ``info.input_size``) and returns
    landmarks [N, L, 2] normalised to the crop and scores [N, L], float32.
    """

    def __init__(self, path: str | Path, options: RuntimeOptions | None = None):
        self.path = Path(path)
        self.options = options or RuntimeOptions()
        if not self.path.is_file():
            raise LmkError(f"model not found: {self.path}")
        ort = require_onnxruntime()
        self._ort = ort
        self.requested_ep = self.options.ep
        failed: dict[str, str] = {}  # --ep auto: why each EP tried did not load
        for ep in candidate_eps(self.options.ep, ort.get_available_providers()):
            self._check_options_apply(ep, failed)
            try:
                self.session = self._create(ep)
            except LmkError as exc:
                if self.options.ep != "auto":
                    raise
                failed[ep] = str(exc)
                continue
            self.ep = ep
            break
        else:
            last = list(failed.values())[-1] if failed else ""
            raise LmkError(last or "no execution provider could load the model")
        meta = self.session.get_modelmeta().custom_metadata_map
        self.info: ModelInfo = parse_metadata(meta, str(self.path), GraphSpec.of(self.session))
        self._setup_io()

    # ---- session ---------------------------------------------------------------------------

    def _check_options_apply(self, ep: str, failed: dict[str, str]) -> None:
        """EP-specific flags with another EP are an error, not silently ignored (``--ep
        auto``: when it did not land on their EP, saying why that EP did not load if it was
        tried)."""
        misplaced = self.options.misplaced(ep)
        if not misplaced:
            return
        here = f"the EP here is {ep}"
        if self.options.ep == "auto":
            why = next((failed[e] for eps in misplaced for e in eps if e in failed), "")
            here += ", chosen by --ep auto" + (f"; {why}" if why else "")
        parts = []
        for eps, flags in misplaced.items():
            verb = "applies" if len(flags) == 1 else "apply"
            parts.append(f"{', '.join(flags)} {verb} only to --ep {' or '.join(eps)}")
        raise LmkError(f"{'; '.join(parts)} ({here})")

    def _provider_list(self, ep: str) -> list[Any]:
        o = self.options
        cuda = ("CUDAExecutionProvider", cuda_options(o))
        if ep == "cpu":
            return ["CPUExecutionProvider"]
        if ep == "cuda":
            return [cuda, "CPUExecutionProvider"]
        if ep == "openvino":
            return [
                ("OpenVINOExecutionProvider", openvino_options(o, self.path)),
                "CPUExecutionProvider",
            ]
        return [
            ("TensorrtExecutionProvider", self.tensorrt_options()),
            cuda,
            "CPUExecutionProvider",
        ]

    def tensorrt_options(self) -> dict[str, Any]:
        """This file's TensorRT EP options (:func:`tensorrt_options`), its cache folder made."""
        cache = tensorrt_cache_dir(self.options, file_digest(self.path))
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LmkError(
                f"cannot create the TensorRT cache folder {cache}: {exc.strerror}"
            ) from None
        return tensorrt_options(self.options, cache, self._profile_shape())

    def _profile_shape(self) -> tuple[str, list[int]] | None:
        """The input's name and non-batch dims when the batch is dynamic (read with onnx-free
        means: a CPU session of the same file tells us)."""
        probe = self._ort.InferenceSession(
            str(self.path), self._session_options("cpu"), providers=["CPUExecutionProvider"]
        )
        meta = probe.get_inputs()[0]
        if isinstance(meta.shape[0], int):
            return None
        return meta.name, [int(d) for d in meta.shape[1:]]

    def _session_options(self, ep: str) -> Any:
        options = self._ort.SessionOptions()
        options.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if self.options.threads:
            options.intra_op_num_threads = int(self.options.threads)
            options.inter_op_num_threads = 1
        for key, value in session_config(self.options, ep).items():
            options.add_session_config_entry(key, value)
        return options

    def _create(self, ep: str) -> Any:
        if ep in ("cuda", "tensorrt"):
            _preload_gpu_libraries(self._ort)
        session_options = self._session_options(ep)
        providers = self._provider_list(ep)
        try:
            session = self._ort.InferenceSession(
                str(self.path), session_options, providers=providers
            )
        except Exception as exc:  # ORT raises its own exception types for unreadable files
            lines = str(exc).strip().splitlines()
            raise LmkError(
                f"cannot load {self.path} with --ep {ep}: {lines[0] if lines else type(exc).__name__}"
            ) from None
        offered = session.get_providers()
        if offered[0] != PROVIDERS[ep]:
            # ORT falls back to the CPU EP silently when the CUDA/TensorRT libraries do not
            # load, or when OpenVINO refuses an option (such as precision="BF16" on CPU).
            raise LmkError(
                f"--ep {ep}: ONNX Runtime could not start {PROVIDERS[ep]} "
                f"({_FALLBACK_CAUSES.get(ep, 'unknown cause')}); it offered {', '.join(offered)}"
            )
        # What the session was made with, for a reader (and a test) to check what lmk set.
        self.session_options = session_options
        return session

    # ---- IO ------------------------------------------------------------------------------------

    def _setup_io(self) -> None:
        info = self.info
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.uint8_input = info.input_format == "uint8_nhwc_bgr"
        self.normalisation = Normalisation(
            tuple(info.mean),  # type: ignore[arg-type]
            tuple(info.std),  # type: ignore[arg-type]
            info.channel_order,
        )
        # parse_metadata checked the decode, the heads and the layout against the graph.
        self._host_decode = None if info.decode != NO_DECODE else get_decoder(info.raw_decode)
        self._table = (
            self._host_decode.neighbour_table(layout_of(info), info.num_nb)
            if self._host_decode is not None
            else None
        )
        binding = self.options.io_binding
        self._bind = self.ep in ("cuda", "tensorrt") if binding is None else binding
        # Where the bound input lives: the GPU for CUDA/TensorRT, host memory otherwise.
        self._bind_device = "cuda" if self.ep in ("cuda", "tensorrt") else "cpu"

    @property
    def input_size(self) -> int:
        return self.info.input_size

    @property
    def num_landmarks(self) -> int:
        return self.info.num_landmarks

    def infer(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 BGR crops [N, S, S, 3] -> (landmarks [N, L, 2] in [0, 1], scores [N, L])."""
        return self.landmarks(self.run_graph(crops))

    def run_graph(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's own outputs by name for uint8 BGR crops [N, S, S, 3], fed as the file
        wants (a float-rgb file gets the metadata's normalisation): the landmarks of a fused
        file, the raw heads of a ``--decode none`` one. Nothing decoded on the host."""
        crops = np.asarray(crops)
        size = self.info.input_size
        if crops.ndim != 4 or crops.shape[1:] != (size, size, 3) or crops.dtype != np.uint8:
            raise LmkError(
                f"crops must be uint8 [N, {size}, {size}, 3], got {crops.dtype} {list(crops.shape)}"
            )
        if len(crops) == 0:
            shapes = {"landmarks": (0, self.num_landmarks, 2), "scores": (0, self.num_landmarks)}
            return {name: np.zeros(shapes.get(name, (0,)), np.float32) for name in shapes}
        feed = crops if self.uint8_input else self.normalisation.apply_bgr_nhwc(crops)
        outputs = self._run_batched(np.ascontiguousarray(feed))
        return dict(zip(self.output_names, outputs, strict=True))

    def landmarks(self, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(landmarks [N, L, 2], scores [N, L]) float32 from :meth:`run_graph`'s outputs: as
        they are for a fused file, decoded in numpy for a raw-heads one."""
        if "landmarks" in outputs:
            landmarks = outputs["landmarks"]
            scores = outputs.get("scores")
            if scores is None:
                scores = np.ones(landmarks.shape[:2], np.float32)
            # copy=False: a fused file's outputs are float32 already; no per-frame copies.
            return landmarks.astype(np.float32, copy=False), scores.astype(np.float32, copy=False)
        assert self._host_decode is not None  # a file without landmarks has raw heads
        heads = [outputs[name] for name in self._host_decode.heads]
        landmarks, scores = self._host_decode.decode(heads, self._table)
        return landmarks.astype(np.float32), scores.astype(np.float32)

    def _run(self, feed: np.ndarray) -> list[np.ndarray]:
        if not self._bind:
            return self.session.run(None, {self.input_name: feed})
        binding = self.session.io_binding()
        device_id = self.options.device_id if self._bind_device == "cuda" else 0
        value = self._ort.OrtValue.ortvalue_from_numpy(feed, self._bind_device, device_id)
        binding.bind_ortvalue_input(self.input_name, value)
        for name in self.output_names:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def _run_batched(self, feed: np.ndarray) -> list[np.ndarray]:
        """Run, splitting into the file's fixed batch (padding the last chunk) when it has one."""
        step = self.fixed_batch
        if step is None:
            return self._run(feed)
        parts: list[list[np.ndarray]] = []
        for start in range(0, len(feed), step):
            chunk = feed[start : start + step]
            pad = step - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            parts.append([out[: step - pad] for out in self._run(chunk)])
        return [np.concatenate(outs) for outs in zip(*parts, strict=True)]

    def describe(self) -> str:
        auto = " (chosen by --ep auto)" if self.requested_ep == "auto" else ""
        ep = f"openvino {self.options.ov_precision}" if self.ep == "openvino" else self.ep
        return (
            f"{self.path.name}: {self.info.model} {self.info.layout} {self.info.input_size}px "
            f"{self.info.precision}, EP {ep}{auto}"
        )
