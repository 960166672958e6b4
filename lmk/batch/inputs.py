"""What lmk-batch annotates: SOURCE as a list of files, each with the key that says whether a
dataset already holds it, grouped into the units of work handed to the workers.

SOURCE is a folder (searched recursively), a glob, or a list file: ``.txt`` (one path a
line), ``.csv`` or ``.parquet`` with a ``path`` column; relative paths in a list are relative
to the list file's folder. A file is an image or a video by its extension; in a list file a
path with another extension is tried as a video. A listed file that is missing is kept: the
worker records it as a failure row, like an unreadable one.

The key of a file is (path, size, mtime): a rerun skips files whose key a dataset already
holds, and redoes a file that changed since.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from lmk.core.errors import LmkError
from lmk.runtime.sources import IMAGE_EXTENSIONS, display_name

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg")
LIST_EXTENSIONS = (".txt", ".csv", ".parquet")


@dataclass(frozen=True)
class InputFile:
    """One file to annotate. ``path`` is absolute (surrogate-escaped where the name is not
    UTF-8: what the worker opens); :attr:`name` is how the dataset shows it."""

    path: str
    size: int
    """Bytes; -1 when the file does not exist."""
    mtime_ns: int
    kind: str
    """``image`` or ``video``."""

    @property
    def name(self) -> str:
        """The path as UTF-8 text (bytes that are not UTF-8 as ``\\xNN``): the ``path``
        column of the dataset and the first part of the resume key."""
        return display_name(self.path)

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.name, self.size, self.mtime_ns)

    def to_json(self) -> dict:
        return asdict(self)


def kind_of(path: str | Path) -> str | None:
    """``image`` or ``video`` by extension, None for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    return None


def describe(path: str | Path, kind: str) -> InputFile:
    """``path`` with its key, as it stands on disk now."""
    absolute = os.path.abspath(path)
    try:
        st = os.stat(absolute)
        size, mtime = int(st.st_size), int(st.st_mtime_ns)
    except OSError:
        size, mtime = -1, -1
    return InputFile(absolute, size, mtime, kind)


def _list_file_paths(path: Path) -> list[str]:
    """The ``path`` entries of a list file, relative ones resolved against its folder."""
    suffix = path.suffix.lower()
    shown = display_name(path)
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            try:
                table = pq.read_table(path, columns=["path"])
            except KeyError:
                raise LmkError(f"{shown} has no 'path' column") from None
            except Exception as exc:  # pyarrow's own error types for a damaged file
                raise LmkError(f"cannot read {shown} as Parquet: {exc}") from None
            entries = [str(v) for v in table.column("path").to_pylist() if v]
        elif suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                if not reader.fieldnames or "path" not in reader.fieldnames:
                    raise LmkError(f"{shown} has no 'path' column in its header")
                entries = [row["path"] for row in reader if row.get("path")]
        else:
            lines = path.read_text(encoding="utf-8").splitlines()
            entries = [line.strip() for line in lines if line.strip()]
    except UnicodeDecodeError:
        raise LmkError(f"{shown} is not UTF-8 text") from None
    except OSError as exc:
        raise LmkError(f"cannot read {shown}: {exc.strerror}") from None
    return [os.path.join(path.parent, entry) for entry in entries]


def list_inputs(source: str) -> list[InputFile]:
    """Every file SOURCE names, each once, in a stable order (see the module's docstring)."""
    path = Path(source)
    shown = display_name(source)
    if path.is_dir():
        found = sorted(str(p) for p in path.rglob("*") if p.is_file() and kind_of(p))
        what = f"no image or video in folder {shown}"
    elif path.is_file() and path.suffix.lower() in LIST_EXTENSIONS:
        found = _list_file_paths(path)
        what = f"the list {shown} names no file"
    elif path.is_file():
        found = [str(path)] if kind_of(path) else []
        what = f"{shown} is not an image, a video or a list file (.txt, .csv, .parquet)"
    elif any(ch in source for ch in "*?["):
        found = sorted(p for p in glob.glob(source, recursive=True) if kind_of(p))
        what = f"no image or video matches {shown}"
    else:
        raise LmkError(f"input not found: {shown}")
    inputs: dict[str, InputFile] = {}
    for item in found:
        described = describe(item, kind_of(item) or "video")
        inputs.setdefault(described.path, described)
    if not inputs:
        raise LmkError(what)
    return list(inputs.values())


@dataclass(frozen=True)
class Unit:
    """Files one worker call annotates and writes as one shard: a video alone, or up to
    ``files_per_task`` images. ``unit_id`` depends only on the files' keys, so a retried
    call writes the same shard name and cannot add rows twice."""

    unit_id: str
    inputs: tuple[InputFile, ...]

    def to_json(self) -> str:
        return json.dumps([item.to_json() for item in self.inputs])

    @staticmethod
    def from_json(unit_id: str, text: str) -> Unit:
        return Unit(unit_id, tuple(InputFile(**item) for item in json.loads(text)))


def _unit(inputs: list[InputFile]) -> Unit:
    keys = json.dumps([item.key for item in inputs]).encode("utf-8", "surrogatepass")
    return Unit(hashlib.sha256(keys).hexdigest()[:20], tuple(inputs))


def make_units(inputs: list[InputFile], files_per_task: int) -> list[Unit]:
    """Videos one per unit (a video is tracked start to end by one worker); images in runs
    of ``files_per_task``."""
    units = [_unit([item]) for item in inputs if item.kind == "video"]
    images = [item for item in inputs if item.kind == "image"]
    for start in range(0, len(images), files_per_task):
        units.append(_unit(images[start : start + files_per_task]))
    return units
