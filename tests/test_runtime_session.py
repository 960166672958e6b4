"""Sessions: EP choice and its errors, files without metadata, every file variant decodes alike."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lmk.core.errors import LmkError
from lmk.runtime import available_providers, bundled_model
from lmk.runtime.api import LandmarkSession
from lmk.runtime.session import InferenceModel, RuntimeOptions, candidate_eps, session_config
from lmk.synth import synth_crops


def test_unavailable_ep_is_an_error_that_lists_the_available_ones():
    with pytest.raises(LmkError, match=r"--ep tensorrt is not available here.*available: cpu$"):
        candidate_eps("tensorrt", ["CPUExecutionProvider"])
    with pytest.raises(LmkError, match=r"unknown --ep 'gpu'"):
        candidate_eps("gpu", ["CPUExecutionProvider"])


def test_auto_prefers_tensorrt_then_cuda_then_openvino_then_cpu():
    cpu, cuda, trt = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
    ov = "OpenVINOExecutionProvider"
    assert candidate_eps("auto", [cpu]) == ["cpu"]
    assert candidate_eps("auto", [cuda, cpu]) == ["cuda", "cpu"]
    assert candidate_eps("auto", [trt, cuda, cpu]) == ["tensorrt", "cuda", "cpu"]
    assert candidate_eps("auto", [cpu, ov]) == ["openvino", "cpu"]
    assert candidate_eps("auto", [ov, cuda, cpu]) == ["cuda", "openvino", "cpu"]


@pytest.mark.skipif(
    "CUDAExecutionProvider" in available_providers(), reason="CUDA is available here"
)
def test_asking_for_cuda_on_a_cpu_build_fails_before_loading():
    with pytest.raises(LmkError, match="--ep cuda is not available here"):
        InferenceModel(bundled_model(), RuntimeOptions(ep="cuda"))


def test_auto_session_says_which_ep_it_chose():
    session = LandmarkSession(ep="auto")
    assert session.ep in ("cpu", "cuda", "tensorrt", "openvino")
    assert f"EP {session.ep} (chosen by --ep auto)" in session.model.describe()


SPIN_KEYS = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")


def test_cpu_session_threads_sleep_when_idle_unless_spin_is_asked_for():
    """Read back from the SessionOptions the session was made with: spinning is off by
    default (idle threads would take the cores lmk-run's reader and writer need)."""
    quiet = InferenceModel(bundled_model(), RuntimeOptions(ep="cpu")).session_options
    assert [quiet.get_session_config_entry(key) for key in SPIN_KEYS] == ["0", "0"]
    spinning = InferenceModel(bundled_model(), RuntimeOptions(ep="cpu", spin=True))
    for key in SPIN_KEYS:  # not set at all: ONNX Runtime's default (spinning) holds
        with pytest.raises(RuntimeError, match="does not have configuration"):
            spinning.session_options.get_session_config_entry(key)


def test_spinning_is_set_on_the_cpu_and_openvino_eps_only():
    off = dict.fromkeys(SPIN_KEYS, "0")
    assert session_config(RuntimeOptions(), "cpu") == off
    assert session_config(RuntimeOptions(), "openvino") == off
    assert session_config(RuntimeOptions(spin=True), "openvino") == {}
    assert session_config(RuntimeOptions(), "cuda") == {}  # ORT's default on the GPU EPs
    assert session_config(RuntimeOptions(), "tensorrt") == {}


def test_ep_specific_flags_with_another_ep_are_one_error_naming_each_flags_ep():
    options = RuntimeOptions(ep="cpu", trt_fp16=True, ov_precision="bf16", spin=True)
    assert options.misplaced("cpu") == {
        ("tensorrt",): ["--trt-fp16"],
        ("openvino",): ["--ov-precision"],
    }
    assert options.misplaced("cuda")[("cpu", "openvino")] == ["--spin"]
    with pytest.raises(
        LmkError,
        match=r"^--trt-fp16 applies only to --ep tensorrt; --ov-precision applies only to "
        r"--ep openvino \(the EP here is cpu\)$",
    ):
        InferenceModel(bundled_model(), options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ov_precision": "fp64"}, r"--ov-precision must be one of fp32, bf16, got 'fp64'"),
        ({"spin": 1}, r"spin must be True or False, got 1"),
    ],
)
def test_bad_openvino_and_spin_values_are_value_errors(options, message):
    with pytest.raises(ValueError, match=message):
        RuntimeOptions(**options)


def test_model_without_metadata_gets_an_error_that_says_how_to_export_one(tmp_path):
    import onnx

    model = onnx.load(str(bundled_model()))
    del model.metadata_props[:]
    path = tmp_path / "bare.onnx"
    onnx.save(model, str(path))
    with pytest.raises(LmkError, match="has no lmk metadata; export one with lmk-export"):
        InferenceModel(path)


def test_corrupt_or_missing_model_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file at all")
    with pytest.raises(LmkError, match=r"cannot load .*bad.onnx"):
        InferenceModel(bad)
    with pytest.raises(LmkError, match="model not found"):
        InferenceModel(tmp_path / "missing.onnx")


def test_infer_refuses_crops_of_the_wrong_shape():
    model = InferenceModel(bundled_model())
    size = model.input_size
    with pytest.raises(LmkError, match=rf"crops must be uint8 \[N, {size}, {size}, 3\]"):
        model.infer(np.zeros((1, size + 1, size, 3), np.uint8))
    landmarks, scores = model.infer(np.zeros((0, size, size, 3), np.uint8))
    assert landmarks.shape == (0, model.num_landmarks, 2) and scores.shape == (
        0,
        model.num_landmarks,
    )


def test_runtime_predicts_with_torch_blocked():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from lmk.runtime import LandmarkSession\n"
        "s = LandmarkSession(ep='cpu')\n"
        "faces = s.predict(np.zeros((240, 320, 3), np.uint8), [(100, 60, 120, 120), (10, 10, 50, 50)])\n"
        "print(len(faces), faces[0].landmarks.shape)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2 (98, 2)"


@pytest.fixture(scope="module")
def variants(tmp_path_factory) -> dict[str, Path]:
    """The bundled hourglass checkpoint as fused/dynamic, raw heads with float input, and
    fused with a fixed batch of 2 (TorchScript traces: the runtime is under test, not the
    tracer)."""
    pytest.importorskip("torch")
    import onnx

    from lmk.checkpoint import load_checkpoint
    from lmk.export.exporter import ExportOptions, build_onnx, export_network

    ckpt = load_checkpoint(bundled_model("hourglass", "pt"))
    model = ckpt.build_model()
    dynamic = export_network(model, ckpt.spec, 17, None, tracer="torchscript")
    fixed = export_network(model, ckpt.spec, 17, 2, tracer="torchscript")
    folder = tmp_path_factory.mktemp("variants")
    out = {}
    for name, options, network in (
        ("fused", ExportOptions(), dynamic),
        ("raw_float", ExportOptions(decode="none", input_format="float-rgb"), dynamic),
        ("batch2", ExportOptions(batch=2), fixed),
    ):
        out[name] = folder / f"{name}.onnx"
        onnx.save(build_onnx(ckpt, options, network), str(out[name]))
    return out


@pytest.mark.slow
def test_raw_heads_float_input_and_fixed_batch_files_give_the_fused_files_landmarks(variants):
    from lmk.runtime.compare import compare, tolerance_for
    from lmk.runtime.runners import OnnxRuntimeRunner

    fused = OnnxRuntimeRunner(variants["fused"])
    crops = synth_crops(5, fused.model.input_size, seed=7)
    want = fused.infer(crops)
    for name in ("raw_float", "batch2"):  # host decode + numpy preprocessing; 5 = 2 + 2 + 1 padded
        got = OnnxRuntimeRunner(variants[name]).infer(crops)
        result = compare(want, got, tolerance_for("fp32", "cpu"))
        assert result.ok, f"{name}: {result.summary()}"
