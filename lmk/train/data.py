"""Landmark data sets: SynthFace seeds or annotation files -> normalised model crops.

A ``--data`` spec names the source: ``synth`` (faces rendered on the fly from seeds),
``wflw:LIST.txt``, ``300w:FOLDER``, ``csv:FILE.csv`` or ``json:FILE.json``. Every item is
cropped the way the model will see faces at run time (the checkpoint's
:class:`~lmk.core.geometry.CropPolicy` applied to the face box, or to the landmarks' bounds when an
annotation has no box), with one affine warp that also carries the training augmentation, and
normalised with the same arithmetic as :meth:`Normalisation.apply_bgr_nhwc`.

Synthetic splits never share faces: the training set is ``sample_seed(seed, i)`` and the
held-out set ``sample_seed(SYNTH_VAL_BASE, i)``, a base no training seed may take.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from lmk.annotations import Annotation, read_300w, read_csv, read_json, read_wflw
from lmk.augment import AugmentConfig, augment, warp_with_landmarks
from lmk.core.errors import LmkError
from lmk.core.geometry import CropPolicy, apply_affine, points_box
from lmk.core.jsonfile import read_json_file
from lmk.core.layouts import Layout, custom_layout, get_layout, wflw98_to_300w68
from lmk.core.normalise import IMAGENET, Normalisation
from lmk.synth.params import sample_seed
from lmk.synth.render import render_face

DATA_KINDS = ("synth", "wflw", "300w", "csv", "json", "menpo", "dlib")
SYNTH_VAL_BASE = 0x7FFF_FFFF
"""Seed base of the SynthFace held-out set; training seeds must differ from it."""
SYNTH_LAYOUTS = ("wflw98", "300w68")


@dataclass(frozen=True)
class DataSpec:
    """A parsed ``--data`` value."""

    kind: str
    path: Path | None = None

    def __str__(self) -> str:
        return self.kind if self.path is None else f"{self.kind}:{self.path}"


def parse_data_spec(text: str) -> DataSpec:
    """``synth`` or ``KIND:PATH`` (wflw, 300w, csv, json) -> :class:`DataSpec`."""
    kind, sep, path = text.partition(":")
    kind = kind.strip().lower()
    if kind == "synth" and not sep:
        return DataSpec("synth")
    if kind not in DATA_KINDS or kind == "synth" or not sep or not path:
        raise LmkError(
            "--data must be synth, wflw:LIST.txt, 300w:FOLDER, csv:FILE, json:FILE, "
            f"menpo:FOLDER or dlib:FILE.xml; got {text!r}"
        )
    return DataSpec(kind, Path(path))


@dataclass
class Face:
    """One face before cropping: BGR image, landmarks and box in frame pixels, WFLW flags."""

    image: np.ndarray
    landmarks: np.ndarray
    box: np.ndarray
    attributes: np.ndarray


class FaceSource(Protocol):
    """Where faces come from: a length, a loader, and the annotation geometry alone."""

    num_points: int

    def __len__(self) -> int: ...

    def load(self, index: int) -> Face: ...


def synth_image_size(input_size: int) -> int:
    """Render size that makes a SynthFace crop about ``input_size`` pixels (little resampling)."""
    return max(64, round(1.5 * input_size))


class SynthSource:
    """``count`` SynthFace faces ``render_face(sample_seed(base, i))``, in WFLW-98 or 300W-68."""

    def __init__(self, count: int, base: int, layout: str = "wflw98", image_size: int = 384):
        if layout not in SYNTH_LAYOUTS:
            raise LmkError(
                f"SynthFace data comes as {' or '.join(SYNTH_LAYOUTS)}, not layout {layout!r}"
            )
        if count < 1:
            raise LmkError(f"a SynthFace set needs at least 1 face, got {count}")
        self.count, self.base, self.layout, self.image_size = count, base, layout, image_size
        self.num_points = 98 if layout == "wflw98" else 68

    def __len__(self) -> int:
        return self.count

    def load(self, index: int) -> Face:
        sample = render_face(sample_seed(self.base, index), self.image_size)
        landmarks = (
            sample.landmarks if self.layout == "wflw98" else wflw98_to_300w68(sample.landmarks)
        )
        return Face(sample.image, landmarks, sample.box, sample.attributes.astype(np.int64))


class AnnotationSource:
    """Faces listed in an annotation file, images read from ``images_root``."""

    def __init__(
        self, annotations: list[Annotation], images_root: Path, to_300w: bool = False
    ) -> None:
        if not annotations:
            raise LmkError(f"no faces annotated for the images in {images_root}")
        self.annotations = annotations
        self.images_root = images_root
        self.to_300w = to_300w
        self.skipped: list[str] = []
        """Annotations of the file left out, one note each (menpo: not 68 points)."""
        points = {len(a.landmarks) for a in annotations}
        if len(points) != 1:
            raise LmkError(f"annotations mix landmark counts {sorted(points)}")
        self.num_points = 68 if to_300w else points.pop()
        missing = [a.image for a in annotations if not (images_root / a.image).is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise LmkError(f"image not found: {images_root / missing[0]}{more}")

    def __len__(self) -> int:
        return len(self.annotations)

    def geometry(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(landmarks [L, 2], box [4]) in frame pixels, without reading the image."""
        ann = self.annotations[index]
        landmarks = np.asarray(ann.landmarks, dtype=np.float64)
        if self.to_300w:
            landmarks = wflw98_to_300w68(landmarks)
        box = points_box(landmarks) if ann.box is None else np.asarray(ann.box, np.float64)
        if box[2] <= 0 or box[3] <= 0:
            raise LmkError(f"{ann.image}: the face box {box.tolist()} has no area")
        return landmarks, box

    def load(self, index: int) -> Face:
        ann = self.annotations[index]
        path = self.images_root / ann.image
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise LmkError(f"cannot read image {path} (missing or not an image)")
        landmarks, box = self.geometry(index)
        attributes = (
            np.zeros(6, np.int64)
            if ann.attributes is None
            else np.asarray(ann.attributes, np.int64).reshape(6)
        )
        return Face(image, landmarks, box, attributes)


class SubsetSource:
    """A view of some indices of another source (deterministic train/held-out splits)."""

    def __init__(self, source: Any, indices: np.ndarray) -> None:
        self.source, self.indices = source, np.asarray(indices, dtype=np.int64)
        self.num_points = source.num_points

    def __len__(self) -> int:
        return len(self.indices)

    def geometry(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.source.geometry(int(self.indices[index]))

    def load(self, index: int) -> Face:
        return self.source.load(int(self.indices[index]))


def images_folder(
    spec: DataSpec, annotations: list[Annotation], images: Path | None = None
) -> Path:
    """Where an annotation file's image paths are relative to: ``images`` if given; a 300W
    folder itself; else the ``images`` folder beside the file, or the file's own folder,
    whichever holds the first annotated image."""
    if images is not None:
        if not images.is_dir():
            raise LmkError(f"images folder not found: {images}")
        return images
    assert spec.path is not None
    if spec.kind in ("300w", "menpo"):
        return spec.path
    candidates = [spec.path.parent / "images", spec.path.parent]
    for root in candidates:
        if annotations and (root / annotations[0].image).is_file():
            return root
    return candidates[0] if candidates[0].is_dir() else candidates[1]


def read_spec_annotations(spec: DataSpec) -> list[Annotation]:
    """The annotations a file spec names, read by its format's reader."""
    assert spec.path is not None
    if spec.kind == "300w":
        return read_300w(spec.path)
    if spec.kind == "menpo":
        from lmk.menpo_format import read_menpo_folder

        return read_menpo_folder(spec.path)
    if spec.path.is_dir():
        raise LmkError(f"{spec.kind}:{spec.path} is a folder; {spec.kind} data is a file")
    if spec.kind == "dlib":
        from lmk.dlib_format import read_dlib_xml

        # Its boxes are dlib's own detector's, another convention than the boxes the families
        # crop from: faces are cropped from their 68 points' bounds, as menpo's are.
        return [replace(a, box=None) for a in read_dlib_xml(spec.path)]
    reader = {"wflw": read_wflw, "csv": read_csv, "json": read_json}[spec.kind]
    return reader(spec.path)


def file_source(
    spec: DataSpec, images: Path | None = None, layout: str | None = None
) -> AnnotationSource:
    """An :class:`AnnotationSource` for a file spec; ``layout="300w68"`` converts WFLW-98 data."""
    annotations = read_spec_annotations(spec)
    to_300w = layout == "300w68" and spec.kind == "wflw"
    skipped: list[str] = []
    if spec.kind in ("menpo", "dlib"):
        from lmk.menpo_format import with_points

        if layout is not None and layout != "300w68":
            raise LmkError(
                f"{spec.kind}'s photos carry 300W 68-point annotations; the model's layout is "
                f"{layout!r} (benchmarks/real_photos.py scores 98-point models on them through "
                "the WFLW-98 -> 300W-68 map)"
            )
        annotations, skipped = with_points(annotations, 68)
    root = images_folder(spec, annotations, images)
    source = AnnotationSource(annotations, root, to_300w=to_300w)
    source.skipped = skipped
    return source


def split_indices(count: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded shuffle split into (train, held-out) indices, each kept in file order."""
    if not 0.0 < val_fraction < 1.0:
        raise LmkError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    n_val = max(1, round(count * val_fraction))
    if n_val >= count:
        raise LmkError(f"{count} faces are too few to hold out {val_fraction:.0%} of them")
    order = np.random.default_rng([seed, 0x5EED]).permutation(count)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def first(source: Any, count: int | None) -> Any:
    """The first ``count`` faces of a source (all of them when ``count`` is None)."""
    if count is None or count >= len(source):
        return source
    return SubsetSource(source, np.arange(count))


# ---- layouts --------------------------------------------------------------------------------


def parse_flip(text: str) -> tuple[int, ...]:
    """``--flip 1,0,2`` -> (1, 0, 2)."""
    try:
        return tuple(int(v) for v in text.replace(" ", "").split(",") if v != "")
    except ValueError:
        raise LmkError(f"--flip must be comma-separated point indices, got {text!r}") from None


def sidecar_path(path: Path) -> Path:
    """``faces.csv`` -> ``faces.layout.json``: where a custom layout's flip table may live."""
    return path.with_name(path.stem + ".layout.json")


def read_sidecar(path: Path) -> dict[str, Any]:
    """A custom layout's sidecar: ``{"name"?, "flip"?, "nme_norm"?: [a, b] | "box"}``."""
    data = read_json_file(path, "a layout sidecar")
    if not isinstance(data, dict):
        raise LmkError(f"{path}: a layout sidecar is a JSON object with flip and nme_norm")
    return data


def _nme_norm(value: Any, where: str) -> tuple[int, int] | str:
    if value == "box":
        return "box"
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    raise LmkError(f'{where}: nme_norm must be [i, j] or "box", got {value!r}')


def crop_landmarks(source: Any, crop: CropPolicy, size: int) -> np.ndarray:
    """[M, L, 2] landmarks normalised to each face's (unaugmented) crop; no image is read."""
    out = []
    for i in range(len(source)):
        landmarks, box = source.geometry(i)
        out.append(apply_affine(crop.matrix(box, size), landmarks) / size)
    return np.stack(out)


def custom_file_layout(
    spec: DataSpec,
    source: Any,
    crop: CropPolicy,
    size: int,
    flip: tuple[int, ...] | None = None,
) -> Layout:
    """The layout of a CSV/JSON data set: mean face from its (training) crops, flip table from
    ``flip`` or the sidecar ``FILE.layout.json``, NME normalised as the sidecar says (default:
    by the box)."""
    assert spec.path is not None
    sidecar = sidecar_path(spec.path)
    data = read_sidecar(sidecar) if sidecar.is_file() else {}
    if flip is None and "flip" in data:
        if not isinstance(data["flip"], list) or not all(isinstance(v, int) for v in data["flip"]):
            raise LmkError(f"{sidecar}: flip must be a list of point indices")
        flip = tuple(data["flip"])
    if flip is None:
        raise LmkError(
            f"{spec} is a custom layout: give its flip table with --flip i0,i1,... or in "
            f'{sidecar} as {{"flip": [...]}} (new point i takes old point flip[i] after mirroring)'
        )
    nme_norm = _nme_norm(data.get("nme_norm", "box"), str(sidecar))
    num_points = source.num_points
    name = str(data.get("name", spec.path.stem))
    return custom_layout(
        name, crop_landmarks(source, crop, size), flip, nme_norm, num_nb=min(10, num_points - 1)
    )


# ---- the data set ----------------------------------------------------------------------------


class LandmarkDataset(Dataset):
    """Model crops of a face source, optionally augmented (training) and cached.

    Item ``i`` is a dict: ``image`` float32 [3, S, S] (normalised), ``landmarks`` float32
    [L, 2] (normalised to the crop), ``attributes`` int64 [6] (zeros when unknown), ``index``,
    and for evaluation ``matrix`` float64 [2, 3] (frame -> crop pixels, augmentation included),
    ``frame_landmarks`` float64 [L, 2] (the same points in frame pixels, in the crop's point
    order), ``box`` float64 [4] (frame pixels) and ``seconds`` (time spent making the item).
    With ``return_crop`` it also holds ``crop``, the uint8 BGR crop [S, S, 3].

    Augmentation draws from ``np.random.default_rng([seed, epoch, i])``: reproducible whatever
    the worker count; call :meth:`set_epoch` so epochs differ.
    """

    def __init__(
        self,
        source: FaceSource,
        layout: Layout,
        input_size: int,
        crop: CropPolicy | None = None,
        normalisation: Normalisation = IMAGENET,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        cache: bool = False,
        return_crop: bool = False,
    ) -> None:
        if source.num_points != layout.num_points:
            raise LmkError(
                f"the data has {source.num_points} landmarks per face but layout "
                f"{layout.name!r} has {layout.num_points}"
            )
        self.source = source
        self.layout = layout
        self.input_size = int(input_size)
        self.crop = crop or CropPolicy()
        self.normalisation = normalisation
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0
        self.return_crop = return_crop
        self._cache: dict[int, Face] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.source)

    def set_epoch(self, epoch: int) -> None:
        """Which epoch's augmentation draws to make (no effect without augmentation)."""
        self.epoch = int(epoch)

    def face(self, index: int) -> Face:
        if self._cache is None:
            return self.source.load(index)
        if index not in self._cache:
            self._cache[index] = self.source.load(index)
        return self._cache[index]

    def make_crop(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, Face, np.ndarray]:
        """(uint8 crop, landmarks in crop pixels, frame->crop matrix, face, point order)."""
        face = self.face(index)
        size = self.input_size
        matrix = self.crop.matrix(face.box, size)
        if self.augment is None:
            crop, points, matrix, order = warp_with_landmarks(
                face.image, face.landmarks, matrix, size
            )
        else:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            crop, points, matrix, order = augment(
                face.image, face.landmarks, matrix, size, rng, self.augment, self.layout.flip
            )
        return crop, points, matrix, face, order

    def __getitem__(self, index: int) -> dict[str, Any]:
        started = time.perf_counter()
        if not 0 <= index < len(self):
            raise IndexError(index)
        crop, points, matrix, face, order = self.make_crop(index)
        image = self.normalisation.apply_bgr_nhwc(crop[None])[0]
        item = {
            "image": torch.from_numpy(image),
            "landmarks": torch.from_numpy((points / self.input_size).astype(np.float32)),
            "attributes": torch.from_numpy(face.attributes.astype(np.int64)),
            "index": index,
            "matrix": torch.from_numpy(matrix.astype(np.float64)),
            "frame_landmarks": torch.from_numpy(face.landmarks[order].astype(np.float64)),
            "box": torch.from_numpy(np.asarray(face.box, np.float64)),
        }
        if self.return_crop:
            item["crop"] = torch.from_numpy(np.ascontiguousarray(crop))
        item["seconds"] = time.perf_counter() - started
        return item


# ---- what the commands build ------------------------------------------------------------------


def build_sources(
    spec: DataSpec,
    *,
    seed: int,
    layout: str | None,
    input_size: int,
    train_size: int | None,
    val_size: int | None,
    val_spec: DataSpec | None = None,
    val_fraction: float = 0.1,
    images: Path | None = None,
    val_images: Path | None = None,
) -> tuple[Any, Any, dict[str, Any]]:
    """(train source, held-out source, a plain description for the checkpoint provenance).

    ``images`` is the image root of ``spec`` and, unless ``val_images`` names another, of
    ``val_spec`` too: ``lmk-train --images`` applies to both files."""
    if spec.kind == "synth":
        if (seed & 0xFFFFFFFF) == SYNTH_VAL_BASE:
            raise LmkError(f"seed {seed} is reserved for the SynthFace held-out set")
        name = layout or "wflw98"
        render = synth_image_size(input_size)
        train_n, val_n = train_size or 2000, val_size or 200
        train = SynthSource(train_n, seed, name, render)
        val = SynthSource(val_n, SYNTH_VAL_BASE, name, render)
        info = {
            "data": "synth",
            "train_seeds": f"sample_seed({seed}, 0..{train_n - 1})",
            "val_seeds": f"sample_seed({SYNTH_VAL_BASE}, 0..{val_n - 1})",
            "render_size": render,
        }
        return train, val, info
    source = file_source(spec, images, layout)
    info: dict[str, Any] = {"data": str(spec)}
    if val_spec is not None:
        if val_spec.kind == "synth":
            raise LmkError("--val-data must be an annotation file when --data is one")
        val = file_source(val_spec, val_images or images, layout)
        train = source
        info["val_data"] = str(val_spec)
    else:
        train_idx, val_idx = split_indices(len(source), val_fraction, seed)
        train, val = SubsetSource(source, train_idx), SubsetSource(source, val_idx)
        info["val_split"] = f"{len(val_idx)} of {len(source)} faces held out (seed {seed})"
    return first(train, train_size), first(val, val_size), info


def data_layout(
    spec: DataSpec,
    train_source: Any,
    layout: str | None,
    crop: CropPolicy,
    input_size: int,
    flip: tuple[int, ...] | None = None,
) -> Layout:
    """The layout a data spec implies: public for synth/wflw/300w, derived for CSV/JSON."""
    if spec.kind in ("csv", "json"):
        if layout is not None:
            public = get_layout(layout)
            if public.num_points != train_source.num_points:
                raise LmkError(
                    f"--layout {layout} has {public.num_points} points; {spec} has "
                    f"{train_source.num_points}"
                )
            return public
        return custom_file_layout(spec, train_source, crop, input_size, flip)
    if spec.kind == "300w":
        if layout not in (None, "300w68"):
            raise LmkError(f"300W data is in the 300w68 layout, not {layout}")
        return get_layout("300w68")
    name = layout or "wflw98"
    if name not in SYNTH_LAYOUTS:
        raise LmkError(f"{spec.kind} data comes as {' or '.join(SYNTH_LAYOUTS)}, not {name}")
    return get_layout(name)
