"""Reduced precision on trained models: the bundled SynthFace PIPNet and hourglass.

Random weights cannot test FP16 or INT8: their score maps are nearly flat, so any rounding
moves an argmax by a whole cell. These tests use the bundled trained checkpoints on held-out
SynthFace crops and state each tolerance as the mean landmark error in pixels of a 256 crop
(the models run at 128; errors are scaled by 256 / 128) against PyTorch FP32 + reference decode.

- The bundled ONNX files: the PIPNet stores FP16-rounded weights (FP32 compute): each weight
  moves by <= 2^-11 relative after BN folding; mean <= 0.05 px, 99 % of landmarks within
  1e-3 of the crop, and max <= 1e-2 (on a near tie the argmax may take the neighbouring
  cell, whose offsets land close by; measured 5.7e-3 once in 48 faces). The hourglass is
  plain FP32: max <= 1e-5 of the crop, the FP32 export contract.
- FP16 export (weights and compute): activations carry ~3 decimal digits through ~50 layers;
  mean <= 0.25 px: a tenth of a PIPNet cell's 8 px at 256 / stride 32... i.e. far below the
  models' own error (~4 % NME = ~5 px).
- INT8 export (QDQ, SynthFace calibration, heads and decode FP32): 8-bit activations.
  PIPNet: mean <= 1.5 px, NME change <= 0.3 points (measured 0.86 px, +0.003). The hourglass
  suffers more: its decode snaps to heatmap cells (8 px of a 256 crop at 1/4 resolution), and
  8-bit activations move peaks by a cell: mean <= 8 px, NME change <= 1.0 point (measured
  5.5 px, +0.77). INT8 is not recommended for heatmap models; FP16 is within 0.25 px.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from lmk.checkpoint import Checkpoint, load_checkpoint
from lmk.core.metrics import nme
from lmk.export.checks import reference_outputs
from lmk.export.exporter import ExportOptions, build_onnx, export_network
from lmk.export.quantize import quantize_network
from lmk.runtime.bundled import bundled_model
from lmk.runtime.session import InferenceModel
from lmk.synth import synth_crop

ort = pytest.importorskip("onnxruntime")

STORED_FP16_MEAN_PX, STORED_FP16_P99, STORED_FP16_MAX = 0.05, 1e-3, 1e-2
FP16_MEAN_PX = 0.25
INT8_LIMITS = {"pipnet": (1.5, 0.3), "hourglass": (8.0, 1.0)}  # (mean px at 256, NME points)
CROPS, HELD_OUT_SEED, CALIBRATION_SEED = 48, 31_337, 1_000


@dataclass
class Trained:
    name: str
    checkpoint: Checkpoint
    crops: np.ndarray
    truth: np.ndarray  # [N, L, 2] normalised to the crop
    reference: np.ndarray  # PyTorch FP32 + reference decode, [N, L, 2]


@pytest.fixture(scope="module", params=["pipnet", "hourglass"])
def trained(request) -> Trained:
    ckpt = load_checkpoint(bundled_model(request.param, "pt"))
    size = ckpt.input_size
    faces = [synth_crop(HELD_OUT_SEED + i, size, ckpt.crop) for i in range(CROPS)]
    crops = np.stack([f[0] for f in faces])
    truth = np.stack([f[1] for f in faces]) / size
    model = ckpt.build_model()
    reference = reference_outputs(ckpt, model, crops, "fused")["landmarks"]
    return Trained(request.param, ckpt, crops, truth, reference)


def _trace(t: Trained, fp16: bool = False):
    # The TorchScript tracer: precision is under test here, not the trace (the bundled files
    # and tests/parity/test_parity_cpu.py cover the dynamo trace).
    model = t.checkpoint.build_model()
    return export_network(model, t.checkpoint.spec, 17, None, fp16=fp16, tracer="torchscript")


def _session(model) -> object:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _landmarks(session, crops: np.ndarray) -> np.ndarray:
    return session.run(["landmarks"], {"image": crops})[0]


def _mean_px_256(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b, axis=-1).mean() * 256.0)


def _nme(pred: np.ndarray, t: Trained) -> float:
    return float(nme(pred, t.truth, t.checkpoint.layout).mean())


def test_bundled_onnx_files_match_their_pytorch_checkpoints(trained):
    model = InferenceModel(bundled_model(trained.name))
    got, _ = model.infer(trained.crops)
    stored_fp16 = model.info.weight_storage == "fp16"
    assert stored_fp16 == (trained.name == "pipnet")
    distance = np.linalg.norm(got - trained.reference, axis=-1)
    assert distance.max() <= (STORED_FP16_MAX if stored_fp16 else 1e-5)
    assert np.percentile(distance, 99) <= STORED_FP16_P99
    assert _mean_px_256(got, trained.reference) <= STORED_FP16_MEAN_PX


def test_fp16_export_stays_within_its_stated_tolerance(trained):
    network = _trace(trained, fp16=True)
    onnx_model = build_onnx(trained.checkpoint, ExportOptions(precision="fp16"), network)
    got = _landmarks(_session(onnx_model), trained.crops)
    error = _mean_px_256(got, trained.reference)
    assert error <= FP16_MEAN_PX, f"FP16 mean error {error:.3f} px of a 256 crop"


def test_int8_export_stays_within_its_stated_tolerance_and_nme_change(trained):
    ckpt = trained.checkpoint
    calibration = np.stack(
        [synth_crop(CALIBRATION_SEED + i, ckpt.input_size, ckpt.crop)[0] for i in range(32)]
    )
    network = quantize_network(_trace(trained), ckpt.normalisation.apply_bgr_nhwc(calibration))
    got = _landmarks(
        _session(build_onnx(ckpt, ExportOptions(precision="int8"), network)), trained.crops
    )
    error = _mean_px_256(got, trained.reference)
    change = 100 * (_nme(got, trained) - _nme(trained.reference, trained))
    print(f"{trained.name} INT8: mean error {error:.3f} px of a 256 crop, NME {change:+.3f} points")
    mean_px, nme_points = INT8_LIMITS[trained.name]
    assert error <= mean_px, f"INT8 mean error {error:.3f} px of a 256 crop"
    assert change <= nme_points, f"INT8 NME {change:+.3f} points"


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("provider", "options", "tolerance"),
    [
        ("CUDAExecutionProvider", {}, STORED_FP16_MEAN_PX),
        ("TensorrtExecutionProvider", {"trt_fp16_enable": False}, STORED_FP16_MEAN_PX),
        ("TensorrtExecutionProvider", {"trt_fp16_enable": True}, FP16_MEAN_PX),
    ],
)
def test_gpu_providers_on_the_trained_models(trained, tmp_path, provider, options, tolerance):
    if provider not in ort.get_available_providers():
        pytest.skip(f"{provider} not available (needs onnxruntime-gpu and a GPU)")
    if provider == "TensorrtExecutionProvider":
        options = {
            **options,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(tmp_path),
        }
    session = ort.InferenceSession(
        str(bundled_model(trained.name)), providers=[(provider, options), "CPUExecutionProvider"]
    )
    if session.get_providers()[0] != provider:
        pytest.skip(f"{provider} did not load (got {session.get_providers()})")
    got = _landmarks(session, trained.crops)
    error = _mean_px_256(got, trained.reference)
    assert error <= tolerance, f"{provider} {options}: mean error {error:.3f} px of a 256 crop"
