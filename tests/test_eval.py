"""lmk-eval: a checkpoint and the ONNX files exported from it score the same."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from lmk.checkpoint import Checkpoint, load_checkpoint
from lmk.core.cli_util import run_cli
from lmk.core.layouts import get_layout
from lmk.export.exporter import ExportOptions, build_onnx, export_network
from lmk.models import ModelSpec
from lmk.runtime.bundled import bundled_model
from lmk.train.eval_cli import eval_command

DATA = ["--data", "synth", "--size", "12", "--batch-size", "5"]


@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory):
    """A small PIPNet whose heads give spread-out predictions (not all in one corner)."""
    torch.manual_seed(0)
    spec = ModelSpec("pipnet", {"backbone": "resnet18", "input_size": 64, "num_nb": 10})
    model = spec.build()
    with torch.no_grad():
        for head in model.heads():
            head.weight.normal_(0, 0.05)
    path = tmp_path_factory.mktemp("eval") / "model.pt"
    Checkpoint.from_model(model, spec, get_layout("wflw98"), provenance={"test": 1}).save(path)
    return path


@pytest.fixture(scope="module")
def network(checkpoint_file):
    """One trace of the network, shared by both input formats (the trace is the slow part);
    the TorchScript tracer, as the subject is lmk-eval (tests/parity covers the dynamo trace)."""
    ckpt = load_checkpoint(checkpoint_file)
    return export_network(ckpt.build_model(), ckpt.spec, 17, None, tracer="torchscript")


def _eval(args, tmp_path, name):
    out = tmp_path / f"{name}.json"
    assert run_cli(eval_command, [*args, "--json", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("input_format", ["uint8-bgr", "float-rgb"])
def test_checkpoint_and_its_onnx_export_give_the_same_nme(
    checkpoint_file, network, tmp_path, input_format, capsys
):
    onnx_path = tmp_path / "model.onnx"
    options = ExportOptions(input_format=input_format)
    onnx.save(build_onnx(load_checkpoint(checkpoint_file), options, network), onnx_path)
    torch_result = _eval([str(checkpoint_file), *DATA], tmp_path, "pt")
    onnx_result = _eval([str(onnx_path), *DATA], tmp_path, "onnx")
    assert torch_result["kind"] == "checkpoint" and onnx_result["kind"] == "onnx"
    assert onnx_result["overall"]["count"] == torch_result["overall"]["count"] == 12
    for key in ("nme", "fr", "auc"):
        assert onnx_result["overall"][key] == pytest.approx(torch_result["overall"][key], abs=1e-4)
    per_face_pt = [f["nme"] for f in torch_result["per_face"]]
    per_face_onnx = [f["nme"] for f in onnx_result["per_face"]]
    np.testing.assert_allclose(per_face_onnx, per_face_pt, atol=1e-4)
    assert set(onnx_result["subsets"]) == set(torch_result["subsets"])
    printed = capsys.readouterr().out
    assert "overall" in printed and "NME %" in printed


def test_results_hold_overall_and_per_subset_metrics(checkpoint_file, tmp_path):
    result = _eval([str(checkpoint_file), *DATA], tmp_path, "r")
    assert result["data"] == "synth" and result["threshold"] == 0.1
    assert set(result["overall"]) == {"nme", "fr", "auc", "count"}
    assert result["subsets"]  # SynthFace faces carry WFLW attribute flags
    for subset in result["subsets"].values():
        assert 1 <= subset["count"] <= 12
    nmes = [f["nme"] for f in result["per_face"]]
    assert result["overall"]["nme"] == pytest.approx(np.mean(nmes))


def test_eval_on_the_training_split_scores_other_faces_than_the_held_out_one(
    checkpoint_file, tmp_path
):
    val = _eval([str(checkpoint_file), *DATA], tmp_path, "val")
    train = _eval(
        [str(checkpoint_file), *DATA, "--split", "train", "--seed", "5"], tmp_path, "train"
    )
    assert val["overall"]["nme"] != train["overall"]["nme"]


@pytest.mark.parametrize(
    ("model", "extra", "message"),
    [
        ("missing.pt", [], "checkpoint not found"),
        ("missing.onnx", [], "model not found"),
        ("weights.bin", [], "MODEL must be"),
        ("CKPT", ["--data", "csv:/no/such.csv"], "annotation file not found"),
        ("CKPT", ["--data", "wflw"], "--data must be"),
    ],
)
def test_bad_models_and_data_are_one_line_errors(
    checkpoint_file, tmp_path, capsys, model, extra, message
):
    path = checkpoint_file if model == "CKPT" else tmp_path / model
    assert run_cli(eval_command, [str(path), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_onnx_without_lmk_metadata_is_refused(tmp_path, capsys):
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "plain.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), path)
    assert run_cli(eval_command, [str(path)]) == 2
    assert "no lmk metadata" in capsys.readouterr().err


def test_existing_json_is_not_overwritten(checkpoint_file, tmp_path, capsys):
    out = tmp_path / "r.json"
    out.write_text("mine")
    assert run_cli(eval_command, [str(checkpoint_file), *DATA, "--json", str(out)]) == 2
    assert out.read_text() == "mine"
    assert (
        run_cli(eval_command, [str(checkpoint_file), *DATA, "--json", str(out), "--overwrite"]) == 0
    )
    assert json.loads(out.read_text())["overall"]["count"] == 12


EIGHT_FACES = ["--data", "synth", "--size", "8"]


def _lmk_eval(cwd: Path, *args: str) -> subprocess.Popen:
    """The installed lmk-eval on the bundled PIPNet file and 8 SynthFace faces."""
    model = bundled_model("pipnet")
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "lmk-eval"), str(model), *EIGHT_FACES, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def test_json_dash_writes_the_results_to_standard_output_and_the_table_to_stderr(tmp_path):
    proc = _lmk_eval(tmp_path, "--json", "-")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    results = json.loads(out)
    assert results["overall"]["nme"] > 0 and len(results["per_face"]) == 8
    assert "NME %" in err and "overall" in err
    assert not (tmp_path / "-").exists()


def test_json_dash_to_a_reader_that_left_is_one_error_line(tmp_path):
    """``lmk-eval ... --json - | head`` where head is gone before the results come: one
    line, exit 2, no traceback (none either from Python's flush of stdout at exit)."""
    proc = _lmk_eval(tmp_path, "--json", "-")
    proc.stdout.close()  # no reader left: every write fails with EPIPE
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert proc.returncode == 2, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == ["error: standard output was closed before the results were written"]
