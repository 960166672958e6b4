"""One shard of an lmk-batch dataset: a Parquet file with one row per face, plus one failure
row per input that could not be read, and in its footer the inputs it covers.

Columns (every shard has this schema; ``L`` is the model's landmark count):

=============  ===========================  ==============================================
path           string                       the input file (absolute)
frame          int32                        video frame index; 0 for an image; -1 failure
time           float64                      seconds from the video's start; 0 for an image
face           int32                        face id: the track in a video, the face's
                                            number in an image; -1 on a failure row
box            fixed_size_list<float32>[4]  the face region x, y, w, h in frame pixels
angle          float32                      the region's roll (radians)
score          float32                      mean landmark score
landmarks      fixed_size_list<float32>[2L] x0, y0, x1, y1, ... in frame pixels
model          string                       the model file's digest (sha256, 16 hex)
layout         string                       the landmark layout (wflw98, 300w68, ...)
status         string                       ``ok`` for a face, ``failed`` for a failure
error          string                       why it failed (null on a face row)
=============  ===========================  ==============================================

The footer's ``lmk.inputs`` (JSON) lists every input of the shard with its resume key, its
frame and face counts and its status, also those without any face: a rerun reads only
footers to know what is done. A shard is written whole under a temporary name and renamed
into place (:func:`lmk.core.fileio.atomic_output`), so a reader never sees half of one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmk.core.fileio import atomic_output
from lmk.runtime.faces import Face

INPUTS_KEY = b"lmk.inputs"
STAGES_KEY = b"lmk.stages"


def schema(num_landmarks: int) -> Any:
    """The Arrow schema of every shard of a dataset made by an ``num_landmarks`` model."""
    import pyarrow as pa

    return pa.schema(
        [
            ("path", pa.string()),
            ("frame", pa.int32()),
            ("time", pa.float64()),
            ("face", pa.int32()),
            ("box", pa.list_(pa.float32(), 4)),
            ("angle", pa.float32()),
            ("score", pa.float32()),
            ("landmarks", pa.list_(pa.float32(), 2 * num_landmarks)),
            ("model", pa.string()),
            ("layout", pa.string()),
            ("status", pa.string()),
            ("error", pa.string()),
        ]
    )


@dataclass
class ShardRows:
    """Rows collected column by column (landmarks as one float32 block, not Python lists)."""

    num_landmarks: int
    model: str
    layout: str
    path: list[str] = field(default_factory=list)
    frame: list[int] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    face: list[int] = field(default_factory=list)
    box: list[np.ndarray] = field(default_factory=list)
    angle: list[float] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    error: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.path)

    @property
    def faces(self) -> int:
        return sum(1 for s in self.status if s == "ok")

    def add_faces(
        self, name: str, frame: int, seconds: float, faces: list[Face], numbered: bool = False
    ) -> None:
        """One row per face; ``numbered``: face ids 0, 1, ... in order (an image's faces),
        else the faces' track ids (a video's)."""
        for number, face in enumerate(faces):
            self._add(name, frame, seconds, number if numbered else face.track_id, "ok", None)
            self.box.append(np.asarray(face.region.box, np.float32))
            self.angle.append(float(face.region.angle))
            self.score.append(face.score)
            self.landmarks.append(np.asarray(face.landmarks, np.float32).reshape(-1))

    def add_failure(self, name: str, reason: str) -> None:
        self._add(name, -1, 0.0, -1, "failed", reason)
        self.box.append(np.full(4, np.nan, np.float32))
        self.angle.append(float("nan"))
        self.score.append(float("nan"))
        self.landmarks.append(np.full(2 * self.num_landmarks, np.nan, np.float32))

    def truncate(self, length: int) -> None:
        """Drop the rows after the first ``length`` (a video that failed halfway)."""
        for column in (
            self.path,
            self.frame,
            self.time,
            self.face,
            self.box,
            self.angle,
            self.score,
            self.landmarks,
            self.status,
            self.error,
        ):
            del column[length:]

    def _add(self, name: str, frame: int, seconds: float, face: int, status: str, error) -> None:
        self.path.append(name)
        self.frame.append(frame)
        self.time.append(seconds)
        self.face.append(face)
        self.status.append(status)
        self.error.append(error)

    def table(self) -> Any:
        import pyarrow as pa

        n, width = len(self), 2 * self.num_landmarks
        failed = np.array([s != "ok" for s in self.status], dtype=bool)

        def fixed(blocks: list[np.ndarray], size: int) -> pa.Array:
            flat = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
            values = pa.array(flat.astype(np.float32, copy=False))
            return pa.FixedSizeListArray.from_arrays(values, size, mask=pa.array(failed))

        def floats(values: list[float]) -> pa.Array:
            return pa.array(np.asarray(values, np.float32), mask=failed)

        columns = {
            "path": pa.array(self.path, pa.string()),
            "frame": pa.array(self.frame, pa.int32()),
            "time": pa.array(self.time, pa.float64()),
            "face": pa.array(self.face, pa.int32()),
            "box": fixed(self.box, 4),
            "angle": floats(self.angle),
            "score": floats(self.score),
            "landmarks": fixed(self.landmarks, width),
            "model": pa.array([self.model] * n, pa.string()),
            "layout": pa.array([self.layout] * n, pa.string()),
            "status": pa.array(self.status, pa.string()),
            "error": pa.array(self.error, pa.string()),
        }
        return pa.table(columns, schema=schema(self.num_landmarks))


def write_shard(path: Path, rows: ShardRows, inputs: list[dict], stages: dict[str, float]) -> None:
    """Write ``rows`` with ``inputs`` (the records of :func:`read_inputs`) and the unit's
    stage seconds in the footer, atomically. An existing shard of the same name is replaced:
    it can only be an earlier attempt at the same unit (a retried worker call)."""
    _write_table(path, rows.table(), inputs, stages)


def _write_table(path: Path, table: Any, inputs: list[dict], stages: dict[str, float]) -> None:
    import pyarrow.parquet as pq

    metadata = dict(table.schema.metadata or {})
    metadata[INPUTS_KEY] = json.dumps(inputs).encode("utf-8")
    metadata[STAGES_KEY] = json.dumps(stages).encode("utf-8")
    with atomic_output(path, overwrite=True) as tmp:
        pq.write_table(table.replace_schema_metadata(metadata), tmp, compression="zstd")


def read_footer(path: Path) -> tuple[list[dict], dict[str, float]]:
    """A shard's input records and stage seconds, from its footer alone."""
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    inputs = json.loads(metadata.get(INPUTS_KEY, b"[]"))
    stages = json.loads(metadata.get(STAGES_KEY, b"{}"))
    return inputs, stages


def drop_inputs(path: Path, names: set[str]) -> None:
    """Rewrite a shard without the rows and records of the inputs ``names`` (files that
    changed since they were annotated); a shard left with no input is removed."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    inputs, stages = read_footer(path)
    kept = [record for record in inputs if record["path"] not in names]
    if len(kept) == len(inputs):
        return
    if not kept:
        path.unlink(missing_ok=True)
        return
    table = pq.read_table(path)
    gone = pa.array(sorted(names), pa.string())
    table = table.filter(pc.invert(pc.is_in(table.column("path"), value_set=gone)))
    _write_table(path, table, kept, stages)
