"""Writing outputs without ever leaving a partial file or clobbering one the user had."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lmk.errors import LmkError


def check_output_path(path: Path, overwrite: bool) -> Path:
    """Refuse an output before any work: an existing file without ``overwrite``, a directory
    in its place, a missing folder. Returns the folder it goes in."""
    if path.exists() and not overwrite:
        raise LmkError(f"{path} exists; pass --overwrite to replace it")
    if path.is_dir():
        raise LmkError(f"{path} is a directory, not a file")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise LmkError(f"output folder does not exist: {folder}")
    return folder


@contextlib.contextmanager
def atomic_output(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    An existing ``path`` is an error unless ``overwrite``; a missing or unwritable folder is an
    error before any work is done.
    """
    path = Path(path)
    folder = check_output_path(path, overwrite)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise LmkError(f"cannot write to {folder}: {exc.strerror}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600; a finished output gets the permissions any new file would.
        umask = os.umask(0)
        os.umask(umask)
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
