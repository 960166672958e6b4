"""Sessions: EP choice and its errors, files without metadata, every file variant decodes alike."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lmk.errors import LmkError
from lmk.runtime import available_providers, bundled_model
from lmk.runtime.api import LandmarkSession
from lmk.runtime.session import InferenceModel, RuntimeOptions, resolve_ep
from lmk.synth import synth_crops


def test_unavailable_ep_is_an_error_that_lists_the_available_ones():
    with pytest.raises(LmkError, match=r"--ep tensorrt is not available here.*available: cpu$"):
        resolve_ep("tensorrt", ["CPUExecutionProvider"])
    with pytest.raises(LmkError, match=r"unknown --ep 'gpu'"):
        resolve_ep("gpu", ["CPUExecutionProvider"])


def test_auto_prefers_tensorrt_then_cuda_then_cpu():
    cpu, cuda, trt = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
    assert resolve_ep("auto", [cpu]) == "cpu"
    assert resolve_ep("auto", [cuda, cpu]) == "cuda"
    assert resolve_ep("auto", [trt, cuda, cpu]) == "tensorrt"


@pytest.mark.skipif(
    "CUDAExecutionProvider" in available_providers(), reason="CUDA is available here"
)
def test_asking_for_cuda_on_a_cpu_build_fails_before_loading():
    with pytest.raises(LmkError, match="--ep cuda is not available here"):
        InferenceModel(bundled_model(), RuntimeOptions(ep="cuda"))


def test_auto_session_says_which_ep_it_chose():
    session = LandmarkSession(ep="auto")
    assert session.ep in ("cpu", "cuda", "tensorrt")
    assert f"EP {session.ep} (chosen by --ep auto)" in session.model.describe()


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
    fused = InferenceModel(variants["fused"])
    crops = synth_crops(5, fused.input_size, seed=7)
    want, want_scores = fused.infer(crops)
    for name in ("raw_float", "batch2"):  # host decode + numpy preprocessing; 5 = 2 + 2 + 1 padded
        got, scores = InferenceModel(variants[name]).infer(crops)
        assert np.abs(got - want).max() <= 1e-5, name
        assert np.abs(scores - want_scores).max() <= 1e-5, name
