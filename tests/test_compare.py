"""The comparator and the tolerance table (lmk.runtime.compare), the ONNX Runtime runner,
TensorRT's options as a pure function and the IO-binding path, run for real on the CPU EP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lmk.runtime.bundled import bundled_model
from lmk.runtime.compare import (
    ALL_EPS,
    TOLERANCES,
    Tolerance,
    compare,
    effective_precision,
    tolerance_for,
)
from lmk.runtime.runners import OnnxRuntimeRunner
from lmk.runtime.session import (
    CUDA_TF32,
    RuntimeOptions,
    cuda_options,
    tensorrt_cache_dir,
    tensorrt_options,
)
from lmk.synth import synth_crops

RNG = np.random.default_rng(0)
LANDMARKS = RNG.random((3, 5, 2))
SCORES = RNG.random((3, 5))


def _outputs(landmarks=LANDMARKS, scores=SCORES) -> dict[str, np.ndarray]:
    return {"landmarks": landmarks, "scores": scores}


# ---- compare ---------------------------------------------------------------------------------


def test_compare_names_the_output_statistic_sample_and_landmark_that_differ():
    moved = LANDMARKS.copy()
    moved[2, 4] += (3e-5, 4e-5)  # 5e-5 away
    result = compare(_outputs(), _outputs(moved), tolerance_for("fp32", "cpu"))
    assert not result.ok
    diff = result.diffs["landmarks"]
    assert diff.worst == (2, 4)
    assert diff.stats["max distance"] == pytest.approx(5e-5)
    assert diff.max_abs == pytest.approx(4e-5)
    assert result.summary() == (
        "landmarks: max distance 5e-05 > 1e-05 (worst at sample 2, landmark 4)"
    )
    assert result.diffs["scores"].ok


def test_compare_passes_identical_runs_and_bounds_scores_relative_to_the_reference():
    assert compare(_outputs(), _outputs(), tolerance_for("fp32", "cpu")).ok
    tolerance = Tolerance(landmarks_max=1.0, atol=0.01, rtol=0.1)
    scores = SCORES.copy()
    bound = 0.01 + 0.1 * SCORES.max()
    scores[1, 3] += 0.99 * bound
    assert compare(_outputs(), _outputs(scores=scores), tolerance).ok
    scores[0, 0] += 1.01 * bound
    result = compare(_outputs(), _outputs(scores=scores), tolerance)
    assert [d.name for d in result.failures()] == ["scores"]
    assert "worst at index [0, 0]" in result.summary()


def test_nan_in_the_candidate_fails_every_bounded_statistic():
    broken = LANDMARKS.copy()
    broken[1, 1, 0] = np.nan
    result = compare(_outputs(), _outputs(broken), tolerance_for("fp16-stored", "cpu"))
    assert set(result.diffs["landmarks"].failed) == {
        "max distance",
        "p99 distance",
        "mean distance",
    }
    assert result.diffs["landmarks"].worst == (1, 1)


def test_runs_that_do_not_describe_the_same_crops_cannot_be_compared():
    with pytest.raises(ValueError, match="shape"):
        compare(_outputs(), _outputs(LANDMARKS[:2]), tolerance_for("fp32"))
    with pytest.raises(ValueError, match="both runs need 'landmarks'"):
        compare({"scores": SCORES}, _outputs(), tolerance_for("fp32"))


def test_only_the_outputs_both_runs_have_are_compared():
    heads = {**_outputs(), "cls": RNG.random((3, 5, 2, 2))}
    result = compare(heads, _outputs(), tolerance_for("fp32"))
    assert set(result.diffs) == {"landmarks", "scores"}


# ---- the table -------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "fp16-stored", "fp16", "int8"])
@pytest.mark.parametrize("ep", ALL_EPS)
@pytest.mark.parametrize("decode", ["pipnet_nrm", "heatmap_quarter", "regression"])
def test_every_precision_ep_and_decode_has_exactly_one_row(precision, ep, decode):
    for random_weights in (False, True):
        matches = [
            row
            for row in TOLERANCES
            if row.precision == precision
            and ep in row.eps
            and (row.decodes is None or decode in row.decodes)
            and (precision == "fp32" or row.random_weights == random_weights)
        ]
        assert len(matches) == 1, (precision, ep, decode, random_weights)
        assert matches[0].tolerance.why
        assert tolerance_for(precision, ep, decode, random_weights) is matches[0].tolerance


def test_the_table_keeps_the_contracts_it_replaces():
    """The numbers once scattered over the exporter, the parity tests and the demo."""
    assert tolerance_for("fp32", "cpu").landmarks_max == 1e-5  # DESIGN: FP32 max |diff|
    assert tolerance_for("fp32", "cuda").landmarks_max == 1e-4
    assert tolerance_for("fp32", "tensorrt").landmarks_max == 1e-4
    stored = tolerance_for("fp16-stored", "cpu")
    assert (stored.landmarks_max, stored.landmarks_p99) == (1e-2, 1e-3)
    assert tolerance_for("fp16", "cpu").landmarks_mean == pytest.approx(0.25 / 256)
    assert tolerance_for("int8", "cpu", "pipnet_nrm").landmarks_mean == pytest.approx(1.5 / 256)
    assert tolerance_for("int8", "cpu", "heatmap_quarter").landmarks_mean == pytest.approx(8 / 256)
    # Random weights: reduced precision bounds the scores, never the landmarks.
    for precision in ("fp16-stored", "fp16", "int8"):
        loose = tolerance_for(precision, "cpu", "pipnet_nrm", random_weights=True)
        assert loose.landmarks_max is loose.landmarks_mean is loose.landmarks_p99 is None
        assert loose.atol is not None
    with pytest.raises(KeyError, match="bf16"):
        tolerance_for("bf16", "cpu")


def test_effective_precision_of_a_run():
    assert effective_precision("fp32") == "fp32"
    assert effective_precision("fp32", "fp16") == "fp16-stored"
    assert effective_precision("fp32", "fp16", trt_fp16=True) == "fp16"
    assert effective_precision("int8", None, trt_fp16=True) == "int8"


# ---- the ONNX Runtime runner -----------------------------------------------------------------


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    return synth_crops(3, 128, seed=11)


def test_runner_gives_the_runtimes_landmarks_and_the_files_tolerance(crops):
    runner = OnnxRuntimeRunner(bundled_model("hourglass"))
    got = runner.infer(crops)
    landmarks, scores = runner.model.infer(crops)
    np.testing.assert_array_equal(got["landmarks"], landmarks)
    np.testing.assert_array_equal(got["scores"], scores)
    assert runner.providers[0] == "CPUExecutionProvider"
    assert runner.precision == "fp32"
    assert runner.tolerance() is tolerance_for("fp32", "cpu")
    stored = OnnxRuntimeRunner(bundled_model("pipnet"))
    assert stored.precision == "fp16-stored"
    assert stored.tolerance() is tolerance_for("fp16-stored", "cpu", "pipnet_nrm")


def test_io_binding_on_the_cpu_ep_gives_the_plain_runs_outputs(crops):
    """The CUDA/TensorRT feeding path (OrtValue upload, bound outputs copied back), run for
    real on the CPU EP."""
    plain = OnnxRuntimeRunner(bundled_model("pipnet"), RuntimeOptions(ep="cpu"))
    bound = OnnxRuntimeRunner(bundled_model("pipnet"), RuntimeOptions(ep="cpu", io_binding=True))
    assert not plain.model._bind and bound.model._bind
    calls = []
    real = bound.model.session.run_with_iobinding
    bound.model.session.run_with_iobinding = lambda binding: calls.append(1) or real(binding)
    want, got = plain.infer(crops), bound.infer(crops)
    assert calls == [1]
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


def test_io_binding_defaults_to_the_gpu_eps_only():
    assert RuntimeOptions().io_binding is None
    model = OnnxRuntimeRunner(bundled_model("pipnet")).model
    assert model._bind is False and model._bind_device == "cpu"


# ---- TensorRT and CUDA options (pure functions) ----------------------------------------------


def test_tensorrt_options_set_precision_workspace_caches_and_the_batch_profile(tmp_path):
    options = RuntimeOptions(
        ep="tensorrt", trt_fp16=True, trt_workspace_gb=1.5, max_batch=8, opt_batch=2, device_id=1
    )
    got = tensorrt_options(options, tmp_path, ("image", [256, 256, 3]))
    assert got == {
        "device_id": 1,
        "trt_fp16_enable": True,
        "trt_int8_enable": False,
        "trt_max_workspace_size": int(1.5 * 2**30),
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(tmp_path),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(tmp_path),
        "trt_profile_min_shapes": "image:1x256x256x3",
        "trt_profile_opt_shapes": "image:2x256x256x3",
        "trt_profile_max_shapes": "image:8x256x256x3",
    }
    assert not list(tmp_path.iterdir())  # pure: nothing created


def test_tensorrt_options_of_a_fixed_batch_file_have_no_profile_and_extras_win(tmp_path):
    options = RuntimeOptions(
        ep="tensorrt", trt_int8=True, extra_provider_options={"trt_max_workspace_size": 1}
    )
    got = tensorrt_options(options, tmp_path, None)
    assert not any(key.startswith("trt_profile") for key in got)
    assert got["trt_int8_enable"] and not got["trt_fp16_enable"]
    assert got["trt_max_workspace_size"] == 1


def test_tensorrt_cache_folder_is_keyed_by_digest_precision_and_profile(tmp_path, monkeypatch):
    options = RuntimeOptions(ep="tensorrt", trt_cache_dir=tmp_path, max_batch=4)
    assert tensorrt_cache_dir(options, "abc") == tmp_path / "abc-fp32-b4"
    fp16 = RuntimeOptions(ep="tensorrt", trt_cache_dir=tmp_path, trt_fp16=True)
    assert tensorrt_cache_dir(fp16, "abc") == tmp_path / "abc-fp16-b16"
    monkeypatch.setenv("LMK_CACHE_DIR", str(tmp_path / "user"))
    default = tensorrt_cache_dir(RuntimeOptions(ep="tensorrt"), "abc")
    assert default == Path(tmp_path / "user" / "tensorrt" / "abc-fp32-b16")


def test_cuda_runs_fp32_without_tf32_in_one_place():
    assert CUDA_TF32 is False
    assert cuda_options(RuntimeOptions(ep="cuda", device_id=2)) == {"device_id": 2, "use_tf32": 0}


def test_the_runner_and_comparator_run_with_torch_onnx_and_scipy_blocked():
    """They belong to the runtime side: a deployment box can check a file against saved
    reference outputs without the export stack."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for name in ('torch', 'onnx', 'onnxscript', 'scipy'): sys.modules[name] = None\n"
        "from lmk.runtime.bundled import bundled_model\n"
        "from lmk.runtime.compare import compare\n"
        "from lmk.runtime.runners import OnnxRuntimeRunner\n"
        "from lmk.synth import synth_crops\n"
        "runner = OnnxRuntimeRunner(bundled_model('hourglass'))\n"
        "crops = synth_crops(2, 128, seed=3)\n"
        "print(compare(runner.infer(crops), runner.infer(crops), runner.tolerance()).ok)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
