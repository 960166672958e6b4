"""The OpenVINO EP: what it needs from the CPU, its options, and its landmarks against the CPU
EP's on the bundled models.

The tests marked ``openvino`` need onnxruntime-openvino, which replaces onnxruntime: they run
in .venv-ov (``make test`` runs them there; ``make venv-ov`` makes it) and skip in .venv. The
unmarked ones need neither ONNX Runtime build and run in .venv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lmk.core.errors import LmkError
from lmk.runtime import available_providers, bundled_model, cpu
from lmk.runtime.api import LandmarkSession
from lmk.runtime.compare import compare, tolerance_for
from lmk.runtime.session import InferenceModel, RuntimeOptions, file_digest, openvino_options
from lmk.synth import synth_crops

HAVE_OPENVINO = "OpenVINOExecutionProvider" in available_providers()


def openvino(test):
    """Marks a test ``openvino``: run in .venv-ov, skipped where the EP is not installed."""
    skip = pytest.mark.skipif(not HAVE_OPENVINO, reason="needs onnxruntime-openvino (make venv-ov)")
    return pytest.mark.openvino(skip(test))


needs_bf16 = pytest.mark.skipif(
    not cpu.has_bf16(), reason="this CPU has neither AVX512_BF16 nor AMX-BF16"
)

MODELS = ("pipnet", "hourglass")
CROPS = 16
# Both limits are rows of the one tolerance table (lmk.runtime.compare), which states the
# measurements behind them: FP32 on OpenVINO as on the CPU EP (max 1e-5 of the crop; measured
# 2e-7 on PIPNet, 0 on the hourglass, on a Xeon with AMX; FP32 is asked for explicitly, since by
# itself OpenVINO's CPU plugin runs BF16 on AMX CPUs, which this would catch at ~1e-2), and BF16
# by the mean and 99th percentile of the landmark distance, not the max (a heatmap whose two best
# peaks are within BF16's rounding can flip its argmax).
FP32_ON_OPENVINO = tolerance_for("fp32", "openvino")
BF16_ON_OPENVINO = tolerance_for("bf16", "openvino")


@pytest.fixture
def cache_root(tmp_path, monkeypatch) -> Path:
    """The user cache, moved into the test's folder (compiled models must not land in ~)."""
    monkeypatch.setenv("LMK_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ---- what the CPU has (no ONNX Runtime needed) ----------------------------------------------


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(
        f"processor\t: 0\nmodel name\t: Test CPU @ 2.0GHz\nflags\t\t: {flags}\n\n"
        f"processor\t: 1\nmodel name\t: Test CPU @ 2.0GHz\nflags\t\t: {flags}\n"
    )
    return path


@pytest.mark.parametrize(
    ("flags", "bf16", "reported"),
    [
        ("fpu sse2 avx2 fma", False, ["avx2", "fma"]),
        (
            "avx2 avx512f avx512_vnni avx512_bf16",
            True,
            ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"],
        ),
        ("avx2 amx_tile amx_bf16 amx_int8", True, ["avx2", "amx_tile", "amx_int8", "amx_bf16"]),
        ("avx2 amx_tile amx_int8", False, ["avx2", "amx_tile", "amx_int8"]),
    ],
)
def test_cpu_flags_and_bf16_are_read_from_cpuinfo(tmp_path, flags, bf16, reported):
    source = _cpuinfo(tmp_path, flags)
    assert cpu.has_bf16(source) is bf16
    assert cpu.cpu_flags(source) == reported
    assert cpu.cpu_model(source) == "Test CPU @ 2.0GHz"


def test_unreadable_cpuinfo_means_no_flags(tmp_path):
    assert cpu.cpu_flags(tmp_path / "missing") == []
    assert not cpu.has_bf16(tmp_path / "missing")


# ---- the EP's options (no ONNX Runtime needed) ----------------------------------------------


def test_openvino_options_ask_for_fp32_and_key_the_cache_by_digest_and_precision(cache_root):
    path = bundled_model()
    options = openvino_options(RuntimeOptions(ep="openvino", threads=2), path)
    want = cache_root / "openvino" / f"{file_digest(path)}-fp32"
    assert options == {
        "device_type": "CPU",
        "cache_dir": str(want),
        "load_config": '{"CPU": {"INFERENCE_PRECISION_HINT": "f32"}}',
        "num_of_threads": "2",
    }
    assert want.is_dir()


def test_openvino_cache_root_can_be_chosen(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu, "has_bf16", lambda: True)
    path = bundled_model("hourglass")
    options = openvino_options(
        RuntimeOptions(ep="openvino", ov_precision="bf16", ov_cache_dir=tmp_path / "ov"), path
    )
    assert options["cache_dir"] == str(tmp_path / "ov" / f"{file_digest(path)}-bf16")
    assert json.loads(options["load_config"]) == {"CPU": {"INFERENCE_PRECISION_HINT": "bf16"}}


def test_bf16_on_a_cpu_without_it_is_a_one_line_error(cache_root, monkeypatch):
    monkeypatch.setattr(cpu, "has_bf16", lambda: False)
    with pytest.raises(LmkError) as info:
        openvino_options(RuntimeOptions(ep="openvino", ov_precision="bf16"), bundled_model())
    assert str(info.value) == (
        "--ov-precision bf16 needs a CPU with AVX512_BF16 or AMX (this CPU has neither)"
    )
    assert not cache_root.exists()  # refused before anything was made


def test_an_unusable_cache_root_is_a_one_line_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(LmkError, match=r"^cannot create the OpenVINO cache folder .*file/"):
        openvino_options(
            RuntimeOptions(ep="openvino", ov_cache_dir=tmp_path / "file"), bundled_model()
        )


# ---- the EP itself (onnxruntime-openvino) ---------------------------------------------------


@pytest.fixture(scope="module")
def cpu_models() -> dict[str, InferenceModel]:
    return {name: InferenceModel(bundled_model(name), RuntimeOptions(ep="cpu")) for name in MODELS}


@pytest.fixture(scope="module")
def crops(cpu_models) -> np.ndarray:
    return synth_crops(CROPS, cpu_models["pipnet"].input_size, seed=5)


def _ov_model(name: str, precision: str, root: Path) -> InferenceModel:
    options = RuntimeOptions(ep="openvino", ov_precision=precision, ov_cache_dir=root)
    return InferenceModel(bundled_model(name), options)


@openvino
@pytest.mark.parametrize("name", MODELS)
def test_openvino_fp32_gives_the_cpu_eps_landmarks(name, cpu_models, crops, tmp_path):
    model = _ov_model(name, "fp32", tmp_path)
    assert model.session.get_providers()[0] == "OpenVINOExecutionProvider"
    landmarks, scores = model.infer(crops)
    want, want_scores = cpu_models[name].infer(crops)
    result = compare(
        {"landmarks": want, "scores": want_scores},
        {"landmarks": landmarks, "scores": scores},
        FP32_ON_OPENVINO,
    )
    assert result.ok, result.summary()


@openvino
@needs_bf16
@pytest.mark.parametrize("name", MODELS)
def test_openvino_bf16_stays_within_its_stated_tolerance(name, cpu_models, crops, tmp_path):
    landmarks, _ = _ov_model(name, "bf16", tmp_path).infer(crops)
    want, _ = cpu_models[name].infer(crops)
    size = cpu_models[name].input_size
    distance = np.linalg.norm(landmarks - want, axis=-1) * size
    result = compare({"landmarks": want}, {"landmarks": landmarks}, BF16_ON_OPENVINO)
    assert result.ok, result.summary()
    # ... and BF16 did happen (an ignored hint would give FP32's ~1e-5 px).
    assert distance.max() > 0.05


@openvino
def test_openvino_falling_back_to_the_cpu_ep_is_refused():
    """OpenVINO refuses precision="BF16" on a CPU device and ORT then runs the CPU EP without
    a word: lmk checks which EP it got."""
    options = RuntimeOptions(ep="openvino", extra_provider_options={"precision": "BF16"})
    with pytest.raises(LmkError) as info:
        InferenceModel(bundled_model(), options)
    assert str(info.value) == (
        "--ep openvino: ONNX Runtime could not start OpenVINOExecutionProvider (OpenVINO refused "
        "the device or an option?); it offered CPUExecutionProvider"
    )


@openvino
def test_auto_picks_openvino_with_threads_that_sleep_and_a_keyed_cache(cache_root):
    session = LandmarkSession(threads=1)
    assert session.ep == "openvino"
    assert "EP openvino fp32 (chosen by --ep auto)" in session.model.describe()
    used = session.model.session_options
    keys = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")
    assert [used.get_session_config_entry(key) for key in keys] == ["0", "0"]
    folder = cache_root / "openvino" / f"{file_digest(bundled_model())}-fp32"
    assert [p.suffix for p in folder.iterdir()] == [".blob"]  # OpenVINO's compiled model
    assert [p.name for p in (cache_root / "openvino").iterdir()] == [folder.name]


TRACKED_MEAN_PX = 0.25
"""lmk-run on OpenVINO FP32 vs the CPU EP on a 160x120 clip: mean landmark distance over the
clip, in frame pixels. Tracking crops each frame where the last landmarks were, into uint8
pixels, so FP32-level differences (0.001 px on the first frame) grow to a few tenths of a
pixel on a landmark within frames (measured on four clips: mean 0.02-0.12 px, max 1.3 px,
while the model itself is 1.2-1.7 px from the truth). The first frame is held tighter."""


@openvino
def test_lmk_run_on_openvino_end_to_end_matches_the_cpu_ep(tmp_path):
    """The installed console script, as a user runs it, on a short SynthFace clip."""
    from lmk.synth.video import write_clip

    clip = tmp_path / "clip.mp4"
    write_clip(clip, 5, 10, (160, 120))
    env = {**os.environ, "LMK_CACHE_DIR": str(tmp_path / "cache")}
    lmk_run = str(Path(sys.executable).parent / "lmk-run")
    landmarks = {}
    for ep in ("openvino", "cpu"):
        out = tmp_path / f"{ep}.jsonl"
        result = subprocess.run(
            [lmk_run, str(clip), "--ep", ep, "--json", str(out), "--quiet"],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert f"frames/s on EP {ep}" in result.stderr
        records = [json.loads(line) for line in out.read_text().splitlines()]
        assert [len(r["faces"]) for r in records] == [1] * 10
        landmarks[ep] = np.array([r["faces"][0]["landmarks"] for r in records])
    distance = np.linalg.norm(landmarks["openvino"] - landmarks["cpu"], axis=-1)
    assert distance[0].max() <= 0.05  # detection's own refine passes, and 0.01 px rounding
    assert distance.mean() <= TRACKED_MEAN_PX
