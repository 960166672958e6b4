"""lmk-bench: what it writes (JSON, markdown, PNG), its ratios, parity and NME columns,
OpenVINO and GPU backends skipped where they cannot run, and its one-line errors; the
round-robin timer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lmk.bench import runner
from lmk.bench.cli import bench_command
from lmk.bench.timing import measure
from lmk.core.cli_util import run_cli
from lmk.runtime.bundled import bundled_model
from tests.conftest import trace_with_torchscript

REPO = Path(__file__).resolve().parents[1]
CPU = ("pytorch", "usual", "fused_fp32", "raw_fp32", "fused_int8")
FP32 = ("usual", "fused_fp32", "raw_fp32")
MODELS = ("pipnet_small", "hourglass")  # both decodes: PIPNet NRM and heatmap
GPU = ("cuda_fp32", "trt_fp16")
OV = ("ov_fp32", "ov_bf16", "ov_int8")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick run of the two small models, CPU backends plus OpenVINO and GPU ones that
    must be skipped; PIPNet is the bundled trained checkpoint (through --checkpoint, so it
    gets the NME column), the hourglass random weights (no NME)."""
    folder = tmp_path_factory.mktemp("bench")
    out = folder / "results"
    args = [
        "--quick",
        "--models",
        ",".join(MODELS),
        "--backends",
        ",".join(CPU + OV + GPU),
        "--batches",
        "1,2",
        "--threads",
        "1",
        "--checkpoint",
        f"pipnet_small={bundled_model('pipnet', 'pt')}",
        "--out",
        str(out),
    ]
    with pytest.MonkeyPatch.context() as patch:
        trace_with_torchscript(patch)  # the bench is under test here, not the tracer
        # A GPU box runs the GPU backends for real (benchmarks/gpu_suite.sh), .venv-ov the
        # OpenVINO ones; here they must be reported as skipped whatever this machine has.
        patch.setattr(runner, "onnxruntime_providers", lambda: ["CPUExecutionProvider"])
        code = run_cli(bench_command, args)
    assert code == 0
    return out, json.loads((out / "latency.json").read_text())


def test_quick_run_writes_json_markdown_and_png(quick_run):
    out, _ = quick_run
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "latency.md").read_text()
    assert "| fused_fp32 | 2 |" in text
    assert "fused_fp32 vs pytorch" in text
    assert "What the in-graph decode costs" in text and "| pipnet_small | 2 | " in text
    assert "checkpoint " in text  # the weights line names the checkpoint, not random weights


def test_every_model_backend_batch_has_percentiles_and_throughput(quick_run):
    _, report = quick_run
    rows = {(r["model"], r["backend"], r["batch"]): r for r in report["results"]}
    assert set(rows) == {(m, b, n) for m in MODELS for b in CPU for n in (1, 2)}
    for (_, _, batch), row in rows.items():
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["faces_per_s"] == pytest.approx(batch * 1000.0 / row["p50_ms"])
    assert report["machine"]["cpu"] and report["machine"]["versions"]["onnxruntime"]
    assert report["settings"]["threads"] == 1


def test_ratios_are_taken_against_the_baselines_of_the_same_run(quick_run):
    _, report = quick_run
    p50 = {(r["model"], r["backend"], r["batch"]): r["p50_ms"] for r in report["results"]}
    found = {(r["model"], r["candidate"], r["baseline"], r["batch"]): r for r in report["ratios"]}
    pairs = [("fused_fp32", "pytorch"), ("fused_fp32", "usual"), ("fused_int8", "fused_fp32")]
    for model in MODELS:
        for batch in (1, 2):
            for candidate, baseline in pairs:
                ratio = found[(model, candidate, baseline, batch)]
                assert ratio["speedup"] == pytest.approx(
                    p50[(model, baseline, batch)] / p50[(model, candidate, batch)]
                )


def test_onnx_backends_match_pytorch_in_the_parity_column(quick_run):
    _, report = quick_run
    fp32 = [r for r in report["results"] if r["backend"] in FP32]
    assert len(fp32) == len(MODELS) * len(FP32) * 2
    for row in fp32:
        assert row["max_abs_diff_vs_pytorch"] < 1e-4, row
        # Checked by lmk.runtime.compare against the file's row of the tolerance table: the
        # random hourglass is FP32, the bundled PIPNet checkpoint's export FP32 as well.
        assert row["parity"] == "ok", row
    int8 = [r["max_abs_diff_vs_pytorch"] for r in report["results"] if r["backend"] == "fused_int8"]
    assert all(0 <= d < 1 for d in int8)  # reported, not held to FP32's tolerance
    assert all(r["parity"] is None for r in report["results"] if r["backend"] == "pytorch")


def test_openvino_and_gpu_backends_without_their_eps_are_skipped_with_the_reason(quick_run):
    out, report = quick_run
    skipped = {s["backend"]: s["reason"] for s in report["skipped"]}
    assert set(skipped) == set(GPU + OV)
    assert all("onnxruntime-gpu" in skipped[name] for name in GPU)
    assert all("no OpenVINOExecutionProvider" in skipped[name] for name in OV)
    assert all("onnxruntime-openvino" in skipped[name] for name in OV)
    text = (out / "latency.md").read_text()
    assert "## Skipped" in text and "- `ov_int8` (all models): onnxruntime lists no" in text
    assert "spinning off" in text  # the method is stated


def test_nme_column_is_lmk_evals_nme_for_every_backend(quick_run):
    """The trained checkpoint's NME per backend is what lmk-eval computes on the same
    held-out faces (an independent path: its DataLoader, torch predictor and scoring), and
    each change is that backend's NME minus PyTorch's; random weights get no NME."""
    from lmk.train.eval_cli import score_file

    out, report = quick_run
    faces = report["settings"]["nme_faces"]
    scored = {a["backend"]: a for a in report["accuracy"] if a["model"] == "pipnet_small"}
    assert set(scored) == set(CPU) and all(a["faces"] == faces for a in scored.values())
    checkpoint_nme = 100 * score_file(bundled_model("pipnet", "pt"), size=faces)["overall"]["nme"]
    assert scored["pytorch"]["nme_percent"] == pytest.approx(checkpoint_nme, abs=1e-4)
    # The bundled .onnx stores FP16-rounded weights: the same NME to ~1e-3 points.
    file_nme = 100 * score_file(bundled_model("pipnet"), size=faces)["overall"]["nme"]
    for name in FP32:
        assert scored[name]["nme_percent"] == pytest.approx(file_nme, abs=0.01)
    for row in scored.values():
        assert row["nme_change_vs_pytorch_points"] == pytest.approx(
            row["nme_percent"] - scored["pytorch"]["nme_percent"]
        )
    assert abs(scored["fused_int8"]["nme_change_vs_pytorch_points"]) < 1.0
    for row in report["results"]:
        expected = scored.get(row["backend"], {}) if row["model"] == "pipnet_small" else {}
        assert row["nme_percent"] == expected.get("nme_percent")
    text = (out / "latency.md").read_text()
    int8 = scored["fused_int8"]
    assert f"| {int8['nme_percent']:.3f} | {int8['nme_change_vs_pytorch_points']:+.3f} |" in text


@pytest.mark.parametrize(
    "entry", [["-m", "lmk.bench.cli"], [str(REPO / "benchmarks" / "latency.py")]]
)
def test_existing_results_need_overwrite(quick_run, entry):
    """Both entry points (the console script's module and benchmarks/latency.py) refuse with
    one line and exit 2 before any work; the results stay as they were."""
    out, _ = quick_run
    before = (out / "latency.json").read_bytes()
    script = Path(sys.executable).with_name("lmk-bench")
    command = [str(script)] if entry[0] == "-m" and script.exists() else [sys.executable, *entry]
    done = subprocess.run(
        [*command, "--quick", "--models", "pipnet_small", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert done.stderr.startswith("error: ") and "--overwrite" in done.stderr
    assert (out / "latency.json").read_bytes() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", "pipnet_huge"], "unknown pipnet_huge"),
        (["--backends", "tpu"], "unknown tpu"),
        (["--batches", "0"], "positive integers"),
        (["--checkpoint", "fan4"], "NAME=PATH"),
        (["--models", "hourglass", "--checkpoint", "fan4=x.pt"], "file not found"),
    ],
)
def test_bad_flags_are_one_line_errors(args, message, tmp_path, capsys):
    assert run_cli(bench_command, [*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_measure_interleaves_variants_and_meets_both_floors():
    order: list[str] = []
    variants = {name: (lambda n=name: order.append(n)) for name in ("a", "b")}
    timed = measure(variants, rounds=3, min_calls=4, warmup=1, min_seconds=0.0)
    assert {name: row["calls"] for name, row in timed.items()} == {"a": 6, "b": 6}
    rounds = order[2:]  # after one warm-up call each
    # Each turn: one untimed call (the variant's own warm-up), then its two timed calls.
    assert rounds == (["a"] * 3 + ["b"] * 3) * 3
    fast = measure({"x": lambda: None}, rounds=2, min_calls=1, warmup=1, min_seconds=0.01)
    assert fast["x"]["calls"] > 100  # a microsecond call is sampled for ~10 ms, not once


def test_a_gpu_session_that_falls_back_to_the_cpu_is_unavailable_not_timed(monkeypatch, tmp_path):
    """onnxruntime-gpu lists TensorRT even without libnvinfer and then quietly runs on the
    CPU; the runtime refuses such a session, so the backend is reported unavailable, never
    timed under a GPU name."""
    import warnings
    from types import SimpleNamespace

    import onnxruntime as ort

    from lmk.bench import backends
    from lmk.bench.backends import Prepared, Unavailable, build_backend

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the GPU backends would really load")
    listed = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: listed)
    monkeypatch.setattr(backends, "onnxruntime_providers", lambda: listed)
    monkeypatch.setattr(Prepared, "fused_file", lambda self, precision: bundled_model())
    prepared = Prepared("tiny", SimpleNamespace(input_size=128), None, None, "random")
    for name in ("cuda_fp32", "trt_fp16"):
        with warnings.catch_warnings(), pytest.raises(Unavailable, match="could not start"):
            warnings.simplefilter("ignore")
            build_backend(name, prepared, 1, max_batch=4, cache_dir=tmp_path)


def test_a_result_calls_the_machine_loaded_only_when_its_load_was_measured_high():
    from lmk.bench.machine import QUIET_LOAD, load_note

    quiet = load_note(0.6, QUIET_LOAD)
    assert quiet == f"Quiet machine: load average 0.6 at the start, {QUIET_LOAD:.1f} at the end."
    # At the end, the run's own threads are its own load, not other work's.
    assert load_note(0.6, QUIET_LOAD + 2, own=2).startswith("Quiet machine")
    for start, end, own in ((QUIET_LOAD + 0.2, 0.5, 2), (0.5, QUIET_LOAD + 0.2, 0), (0.5, 12.0, 2)):
        loaded = load_note(start, end, "frames/s", own=own)
        assert loaded.startswith("**Not a quiet machine**") and "absolute frames/s" in loaded
        assert f"{start:.1f} at the start, {end:.1f} at the end" in loaded
