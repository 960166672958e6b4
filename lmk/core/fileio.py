"""Every file lmk writes goes through here, so that no command can cost a user a file.

The rules, checked before any work and kept while writing:

- An existing regular file is replaced only with ``--overwrite``; a folder in its place, a
  broken symbolic link or a socket is refused.
- A file that is one of the command's inputs (same device and inode, after following symbolic
  links) is never an output.
- A symbolic link is followed: its target is replaced, the link stays a link.
- A device or FIFO (``/dev/null``, ``/dev/stdout``, a pipe) is written *through*: the finished
  bytes are copied into it; it is never unlinked or renamed onto.
- Everything else is written to an ASCII temporary name beside the target, flushed to disk
  (fsync), then renamed into place; a failure, Ctrl-C or a full disk leaves the old file as it
  was and no temporary file behind.
- A full disk or a file-size limit is one line: ``disk full writing X``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from lmk.core.errors import LmkError

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
TEMP_SUFFIX = ".lmk-part"
"""Every temporary output ends so; nothing else lmk writes does."""


def _stat(path: Path, follow: bool = True) -> os.stat_result | None:
    try:
        return os.stat(path) if follow else os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise LmkError(f"cannot inspect {path}: {exc.strerror}") from None


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def is_special(st: os.stat_result) -> bool:
    """A character or block device or a FIFO: written through, never replaced."""
    return stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode)


def disk_full(exc: BaseException) -> bool:
    """Did this exception come from a full disk or a file-size limit? OSError carries the
    errno; PyTorch's zip writer and onnx turn it into a RuntimeError about a failed write
    (writing into a Python file object, torch raises "unexpected pos" with the OSError as
    its context)."""
    if isinstance(exc, OSError):
        return exc.errno in DISK_FULL_ERRNOS
    if not isinstance(exc, RuntimeError):
        return False
    context = exc.__cause__ or exc.__context__
    if isinstance(context, OSError) and context.errno in DISK_FULL_ERRNOS:
        return True
    text = str(exc).lower()
    return "write failed" in text or "file too large" in text


def disk_full_error(path: Path | str, exc: BaseException | None = None) -> LmkError:
    cause = f" ({exc.strerror})" if isinstance(exc, OSError) and exc.strerror else ""
    return LmkError(f"disk full writing {path}{cause}")


@dataclass(frozen=True)
class OutputTarget:
    """Where an output really goes, decided once by :func:`plan_output`."""

    requested: Path
    """What the user named (printed in messages)."""
    real: Path
    """The file that changes: ``requested`` with symbolic links followed."""
    special: bool
    """A device or FIFO, written through."""
    stdout: bool = False
    """Standard output (the user wrote ``-``): written as the work goes, nothing to move."""


def _ascii_stem(name: str) -> str:
    """A temporary name OpenCV can always open: file names that are not UTF-8 crash it."""
    kept = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "_" for ch in name)
    return kept[:40] or "out"


def plan_output(
    path: str | Path, overwrite: bool = False, inputs: Iterable[str | Path] = ()
) -> OutputTarget:
    """Check an output before any work and say where it goes; raises :class:`LmkError`."""
    path = Path(path)
    link = _stat(path, follow=False)
    st = _stat(path)
    if link is not None and st is None:
        raise LmkError(f"{path} is a broken symbolic link; remove it or name another output")
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise LmkError(f"{path} is a folder; name a file inside it")
    if st is not None and is_special(st):
        if not os.access(path, os.W_OK):
            raise LmkError(f"cannot write to {path}: permission denied")
        return OutputTarget(path, path, special=True)
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise LmkError(f"{path} is not a regular file (a socket or other special file)")
    if st is not None:
        for item in inputs:
            other = _stat(Path(item))
            if other is not None and same_file(st, other):
                shown = "" if Path(item) == path else f" ({item})"
                raise LmkError(f"{path} is an input of this command{shown}; name another output")
        if not overwrite:
            raise LmkError(f"{path} exists; pass --overwrite to replace it")
    real = Path(os.path.realpath(path))
    folder = real.parent
    if not folder.is_dir():
        raise LmkError(f"output folder does not exist: {path.parent}")
    # Create and remove a probe: os.access says yes to root for /proc and read-only mounts.
    try:
        fd, probe = tempfile.mkstemp(prefix=".lmk-probe-", suffix=TEMP_SUFFIX, dir=folder)
    except OSError as exc:
        if exc.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(path, exc) from None
        raise LmkError(f"cannot write to {path.parent}: {exc.strerror}") from None
    os.close(fd)
    os.unlink(probe)
    return OutputTarget(path, real, special=False)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot fsync a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class PendingOutput:
    """A temporary file that becomes ``target`` on :meth:`commit`, or vanishes on
    :meth:`discard`. Write to :attr:`tmp` (it exists, empty; its suffix is the target's so
    that writers picking a format by name pick the right one)."""

    def __init__(self, target: OutputTarget):
        self.target = target
        folder = None if target.special else target.real.parent
        suffix = "".join(s for s in target.requested.suffixes[-1:] if s.isascii())
        try:
            fd, name = tempfile.mkstemp(
                prefix=f".{_ascii_stem(target.requested.stem)}.",
                suffix=f"{TEMP_SUFFIX}{suffix}",
                dir=folder,
            )
        except OSError as exc:
            if exc.errno in DISK_FULL_ERRNOS:
                raise disk_full_error(target.requested, exc) from None
            raise LmkError(f"cannot write to {target.requested.parent}: {exc.strerror}") from None
        os.close(fd)
        self.tmp = Path(name)
        self.done = False

    def commit(self) -> None:
        """Flush the temporary file to disk and put it in place (or copy it through)."""
        target = self.target
        try:
            if target.special:
                with self.tmp.open("rb") as src, open(target.requested, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            else:
                _fsync_file(self.tmp)
                old = _stat(target.real)
                # Keep a replaced file's permissions; a new file gets what the umask gives.
                if old is not None:
                    mode = stat.S_IMODE(old.st_mode)
                else:
                    umask = os.umask(0)
                    os.umask(umask)
                    mode = 0o666 & ~umask
                os.chmod(self.tmp, mode)
                os.replace(self.tmp, target.real)
                _fsync_folder(target.real.parent)
        except OSError as exc:
            self.discard()
            if exc.errno in DISK_FULL_ERRNOS:
                raise disk_full_error(target.requested, exc) from None
            raise LmkError(f"cannot write {target.requested}: {exc.strerror}") from None
        self.done = True
        self.tmp.unlink(missing_ok=True)

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)
        self.done = True


def open_output(
    path: str | Path, overwrite: bool = False, inputs: Iterable[str | Path] = ()
) -> PendingOutput:
    """:func:`plan_output`, then a :class:`PendingOutput` for it (for outputs written over a
    whole run and finished by the caller, such as lmk-run's JSONL)."""
    return PendingOutput(plan_output(path, overwrite, inputs))


@contextlib.contextmanager
def atomic_output(
    path: str | Path | OutputTarget, overwrite: bool = False, inputs: Iterable[str | Path] = ()
) -> Iterator[Path]:
    """Yield a temporary path; it becomes ``path`` only if the block finishes.

    All the checks of :func:`plan_output` come first (pass an :class:`OutputTarget` to reuse
    checks made before a long job). A full disk inside the block, at flush or at rename is
    ``LmkError("disk full writing PATH")``; the old file stays and no temporary file is left.
    """
    target = path if isinstance(path, OutputTarget) else plan_output(path, overwrite, inputs)
    pending = PendingOutput(target)
    try:
        yield pending.tmp
    except (OSError, RuntimeError) as exc:
        pending.discard()
        if disk_full(exc):
            raise disk_full_error(target.requested, exc) from None
        raise
    except BaseException:
        pending.discard()
        raise
    pending.commit()


class OutputSet:
    """Outputs that must change together (a training run's ``last.pt``, ``last.state.pt`` and
    ``log.jsonl``): each is written to its temporary name, and all are put in place by
    :meth:`commit`. A full disk or an interrupt while writing any of them leaves every earlier
    file as it was and no temporary file behind. Use as a context manager."""

    def __init__(self) -> None:
        self.pending: list[PendingOutput] = []

    def write(self, path: Path, content: Callable[[BinaryIO], None]) -> None:
        """Write ``path``'s bytes (``content(file)``) to its temporary name; an existing
        ``path`` is replaced on :meth:`commit`."""
        pending = PendingOutput(plan_output(path, overwrite=True))
        self.pending.append(pending)
        try:
            with pending.tmp.open("wb") as fh:
                content(fh)
        except (OSError, RuntimeError) as exc:
            if disk_full(exc):
                raise disk_full_error(path, exc) from None
            raise

    def commit(self) -> None:
        for pending in self.pending:
            pending.commit()

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, *_: object) -> None:
        for pending in self.pending:  # after commit() there is nothing left to remove
            pending.discard()


@contextlib.contextmanager
def output_folder(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """A folder of outputs: refused if a file stands there, or (without ``overwrite``) if it
    holds files already; created if missing, and removed again if the block fails before
    anything was written into it."""
    folder = Path(path)
    st = _stat(folder)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise LmkError(f"{folder} exists and is not a folder")
    created = st is None
    if not created and not overwrite and any(folder.iterdir()):
        raise LmkError(f"{folder} is not empty; pass --overwrite to write into it")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".lmk-probe-", suffix=TEMP_SUFFIX, dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        if exc.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(folder, exc) from None
        raise LmkError(f"cannot write to {folder}: {exc.strerror}") from None
    try:
        yield folder
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when nothing was written
        raise


@contextlib.contextmanager
def _native_stderr_muted() -> Iterator[None]:
    """Silence what C libraries print to file descriptor 2 (FFmpeg's ``moov atom not
    found`` about a temporary name the user never saw); Python's own stderr is unaffected."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def check_video_frames(path: Path, expected: int, shown: Path) -> None:
    """Reopen a finished video (still under its temporary name ``path``) and count its frames
    before it moves into place: OpenCV's writer reports no error when the disk fills, it
    leaves a file without its index (``moov atom not found``) or with frames missing.
    Raises ``LmkError("disk full writing SHOWN (only N of M frames could be read back)")``;
    the caller then discards the temporary file.

    The frames are counted as the container's packets, not decoded (FFmpeg's raw mode,
    ``CAP_PROP_FORMAT = -1``): about 70x (mp4v) to 170x (MJPG) faster on a 720p clip
    (benchmarks/video_check.py), with the same verdicts as decoding under every file-size
    limit tried. A disk that fills inside the last frame of an AVI still leaves every
    packet; where the packets are JPEG (MJPG) the last must also end with the JPEG end
    marker, which catches that case too (decoding did not: the decoder accepts a cut JPEG)."""
    import cv2  # here, not at the top: lmk.core.fileio is imported by every command

    readable, whole = 0, True
    with _native_stderr_muted():  # FFmpeg's own lines about the temporary file
        capture = cv2.VideoCapture(str(path))
        try:
            if capture.isOpened():
                raw = capture.set(cv2.CAP_PROP_FORMAT, -1)  # False: a backend without it
                while readable < expected + 1 and capture.grab():
                    readable += 1
                    if raw and readable == expected:
                        whole = _whole_packet(capture.retrieve()[1])
        finally:
            capture.release()
    if readable != expected or not whole:
        raise LmkError(
            f"disk full writing {shown} (only {readable - (not whole)} of {expected} frames "
            "could be read back)"
        )


def _whole_packet(packet: Any) -> bool:
    """False for a JPEG packet cut short (no end marker); True for anything else."""
    data = packet.tobytes() if packet is not None else b""  # a numpy array of the bytes
    return not data.startswith(b"\xff\xd8") or data.rstrip(b"\0").endswith(b"\xff\xd9")


class FolderRun:
    """What one run adds to an output folder, so that a failed run can take back exactly that.

    Only names that did not exist when the run noted them (:meth:`add`, :meth:`mkdir`) are
    removed; a file the run replaced (with ``--overwrite``) stays replaced, complete, as every
    file is renamed into place whole; nothing that was there before is ever removed."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._added: list[Path] = []

    def add(self, path: str | Path) -> Path:
        """Note ``path`` (about to be written) as this run's if it does not exist yet."""
        path = Path(path)
        if not os.path.lexists(path):
            self._added.append(path)
        return path

    def mkdir(self, path: str | Path) -> Path:
        """A subfolder, created (and noted) if missing."""
        path = self.add(path)
        try:
            path.mkdir(exist_ok=True)
        except OSError as exc:
            if exc.errno in DISK_FULL_ERRNOS:
                raise disk_full_error(path, exc) from None
            raise LmkError(f"cannot create {path}: {exc.strerror}") from None
        if not path.is_dir():
            raise LmkError(f"{path} exists and is not a folder")
        return path

    def take_back(self) -> None:
        """Remove what this run added, newest first (a subfolder only once it is empty)."""
        for path in reversed(self._added):
            with contextlib.suppress(OSError):
                if path.is_dir() and not path.is_symlink():
                    path.rmdir()
                else:
                    path.unlink(missing_ok=True)
        self._added.clear()


@contextlib.contextmanager
def filled_folder(path: str | Path, overwrite: bool = False) -> Iterator[FolderRun]:
    """:func:`output_folder` for a run that writes many files (a data set, a demo's results):
    if the block fails (an error, a full disk, Ctrl-C), every file and subfolder the run added
    is removed again, and so are the folder and its parents if the run created them. Write
    each file with :func:`atomic_output` on ``run.add(path)``."""
    folder = Path(path)
    missing = []
    for parent in (folder, *folder.parents):
        if os.path.lexists(parent):
            break
        missing.append(parent)
    try:
        with output_folder(folder, overwrite) as created:
            run = FolderRun(created)
            try:
                yield run
            except BaseException:
                run.take_back()
                raise
    except BaseException:
        for parent in missing:  # deepest first; rmdir only removes what is empty
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise
