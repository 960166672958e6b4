"""Reduced precision on trained models: the bundled SynthFace PIPNet and hourglass.

Random weights cannot test FP16 or INT8 landmarks: their score maps are nearly flat, so any
rounding moves an argmax by a whole cell. These tests use the bundled trained checkpoints on
held-out SynthFace crops. Every file runs through lmk's runtime (:mod:`lmk.runtime.runners`)
and is held, against PyTorch FP32 + reference decode, to its row of the one tolerance table
(:data:`lmk.runtime.compare.TOLERANCES`, where each limit states the measurement behind it):

- the bundled ONNX files: the PIPNet stores FP16-rounded weights (row ``fp16-stored``: mean
  <= 0.05 px of a 256 crop, 99 % of landmarks within 1e-3 of the crop, max <= 1e-2); the
  hourglass is plain FP32 (row ``fp32``: max <= 1e-5);
- FP16 export (weights and compute; row ``fp16``: mean <= 0.25 px of a 256 crop);
- INT8 export (QDQ, SynthFace calibration, heads and decode FP32, each family's own recipe as
  `lmk-export --int8` picks it: ``full`` for PIPNet, ``float-trunk`` for the hourglass; row
  ``int8``: PIPNet mean <= 1.5 px, the hourglass, whose decode snaps to heatmap cells, <= 8 px
  of a 256 crop). The NME change, an accuracy statement rather than parity, is bounded here at
  0.3 points for both (issue 13's limit is 0.2 on lmk-eval's faces; these 48 crops are fewer).
  With every op quantized (``full``) the hourglass lost +0.67 to +0.77 points here; with
  float-trunk, which keeps its outlier-carrying trunk FP32, it measured -0.59 (PIPNet +0.01).
  FP16 is within 0.25 px.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import pytest

from lmk.checkpoint import Checkpoint, load_checkpoint
from lmk.core.errors import LmkError
from lmk.core.metrics import nme
from lmk.export.exporter import ExportOptions, build_onnx, export_network
from lmk.export.quantize import int8_plan, quantize_network
from lmk.export.reference import TorchRunner
from lmk.runtime.bundled import bundled_model
from lmk.runtime.compare import compare
from lmk.runtime.runners import OnnxRuntimeRunner
from lmk.runtime.session import RuntimeOptions
from lmk.synth import synth_crop

ort = pytest.importorskip("onnxruntime")

INT8_NME_POINTS = {"pipnet": 0.3, "hourglass": 0.3}  # NME change vs PyTorch FP32
CROPS, HELD_OUT_SEED, CALIBRATION_SEED = 48, 31_337, 1_000


@dataclass
class Trained:
    name: str
    checkpoint: Checkpoint
    crops: np.ndarray
    truth: np.ndarray  # [N, L, 2] normalised to the crop
    reference: dict[str, np.ndarray]  # PyTorch FP32 + reference decode: landmarks, scores


@pytest.fixture(scope="module", params=["pipnet", "hourglass"])
def trained(request) -> Trained:
    ckpt = load_checkpoint(bundled_model(request.param, "pt"))
    size = ckpt.input_size
    faces = [synth_crop(HELD_OUT_SEED + i, size, ckpt.crop) for i in range(CROPS)]
    crops = np.stack([f[0] for f in faces])
    truth = np.stack([f[1] for f in faces]) / size
    reference = TorchRunner(ckpt).infer(crops)
    return Trained(request.param, ckpt, crops, truth, reference)


def _trace(t: Trained, fp16: bool = False):
    # The TorchScript tracer: precision is under test here, not the trace (the bundled files
    # and tests/parity/test_parity_cpu.py cover the dynamo trace).
    model = t.checkpoint.build_model()
    return export_network(model, t.checkpoint.spec, 17, None, fp16=fp16, tracer="torchscript")


def _runner(model: onnx.ModelProto, folder) -> OnnxRuntimeRunner:
    path = folder / "model.onnx"
    onnx.save(model, str(path))
    return OnnxRuntimeRunner(path)


def _nme(pred: np.ndarray, t: Trained) -> float:
    return float(nme(pred, t.truth, t.checkpoint.layout).mean())


def test_bundled_onnx_files_match_their_pytorch_checkpoints(trained):
    runner = OnnxRuntimeRunner(bundled_model(trained.name))
    assert runner.precision == ("fp16-stored" if trained.name == "pipnet" else "fp32")
    result = compare(trained.reference, runner.infer(trained.crops), runner.tolerance())
    assert result.ok, result.summary()


def test_fp16_export_stays_within_its_stated_tolerance(trained, tmp_path):
    network = _trace(trained, fp16=True)
    runner = _runner(
        build_onnx(trained.checkpoint, ExportOptions(precision="fp16"), network), tmp_path
    )
    assert runner.precision == "fp16"
    result = compare(trained.reference, runner.infer(trained.crops), runner.tolerance())
    assert result.ok, result.summary()


def test_int8_export_stays_within_its_stated_tolerance_and_nme_change(trained, tmp_path):
    ckpt = trained.checkpoint
    calibration = np.stack(
        [synth_crop(CALIBRATION_SEED + i, ckpt.input_size, ckpt.crop)[0] for i in range(32)]
    )
    plan = int8_plan("cpu", family_recipe=ckpt.spec.family.int8_recipe)
    network = quantize_network(
        _trace(trained), ckpt.normalisation.apply_bgr_nhwc(calibration), plan
    )
    runner = _runner(build_onnx(ckpt, ExportOptions(precision="int8"), network), tmp_path)
    got = runner.infer(trained.crops)
    result = compare(trained.reference, got, runner.tolerance())
    reference = trained.reference["landmarks"]
    change = 100 * (_nme(got["landmarks"], trained) - _nme(reference, trained))
    print(f"{trained.name} INT8: {result.summary()}, NME {change:+.3f} points")
    assert result.ok, result.summary()
    assert change <= INT8_NME_POINTS[trained.name], f"INT8 NME {change:+.3f} points"


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("ep", "trt_fp16"), [("cuda", False), ("tensorrt", False), ("tensorrt", True)]
)
def test_gpu_providers_on_the_trained_models(trained, tmp_path, ep, trt_fp16):
    if ep == "tensorrt":
        options = RuntimeOptions(ep=ep, trt_fp16=trt_fp16, trt_cache_dir=tmp_path, max_batch=CROPS)
    else:
        options = RuntimeOptions(ep=ep)
    try:
        runner = OnnxRuntimeRunner(bundled_model(trained.name), options)
    except LmkError as exc:  # no GPU EP here, or its libraries do not load
        pytest.skip(str(exc))
    result = compare(trained.reference, runner.infer(trained.crops), runner.tolerance())
    assert result.ok, f"{ep} (precision {runner.precision}): {result.summary()}"
