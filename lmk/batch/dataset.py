"""An lmk-batch dataset folder: what is in it, what is done, and what a rerun must redo.

DATASET/
    lmk-batch.json          what made it: format, model digest, layout, landmark count
    shards/part-ID.parquet  the rows (lmk.batch.shard), each written whole and renamed in
    summary.json            counts, failures with reasons, the last run's throughput

The marker file is written first, so a folder with anything else in it and no marker is not
lmk-batch's and is refused: lmk-batch never writes into (or over) a user's folder. A dataset
holds one model's results; another model needs another folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmk.batch.inputs import InputFile
from lmk.batch.shard import drop_inputs, read_footer
from lmk.core.errors import LmkError
from lmk.core.fileio import TEMP_SUFFIX, atomic_output, output_folder
from lmk.runtime.sources import display_name

FORMAT = "lmk-batch/1"
MARKER = "lmk-batch.json"
SHARDS = "shards"
SUMMARY = "summary.json"


@dataclass(frozen=True)
class DatasetModel:
    """The model a dataset's rows come from (a rerun must use the same one)."""

    digest: str
    layout: str
    num_landmarks: int
    file: str


def shard_path(folder: str | Path, unit_id: str) -> Path:
    """Where the shard of unit ``unit_id`` goes in the dataset at ``folder``."""
    return Path(folder) / SHARDS / f"part-{unit_id}.parquet"


class Dataset:
    """An open dataset folder (use :meth:`open`)."""

    def __init__(self, folder: Path, model: DatasetModel):
        self.folder = folder
        self.model = model
        self.shards_dir = folder / SHARDS

    @classmethod
    def open(cls, folder: str | Path, model: DatasetModel) -> Dataset:
        """The dataset at ``folder``, created if the folder is missing or empty; an lmk-batch
        dataset of another model, or a folder that is not an lmk-batch dataset, is refused."""
        folder = Path(folder)
        shown = display_name(folder)
        marker = folder / MARKER
        if folder.is_dir() and marker.is_file():
            try:
                made = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise LmkError(f"{shown}: cannot read its {MARKER} ({exc})") from None
            if not isinstance(made, dict) or made.get("format") != FORMAT:
                raise LmkError(f"{shown}/{MARKER} is not an lmk-batch marker of {FORMAT}")
            if made.get("model") != model.digest:
                raise LmkError(
                    f"{shown} holds results of model {made.get('model')} "
                    f"({made.get('model_file')}), not of {model.file} ({model.digest}); "
                    "use another --out for another model"
                )
        else:
            if folder.is_dir() and any(folder.iterdir()):
                raise LmkError(
                    f"{shown} exists and is not an lmk-batch dataset (no {MARKER}); "
                    "name a new or empty folder"
                )
            with output_folder(folder):  # created if missing; checked writable
                record = {
                    "format": FORMAT,
                    "model": model.digest,
                    "model_file": model.file,
                    "layout": model.layout,
                    "num_landmarks": model.num_landmarks,
                }
                with atomic_output(marker) as tmp:
                    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        dataset = cls(folder, model)
        try:
            dataset.shards_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise LmkError(f"cannot create {display_name(dataset.shards_dir)}: {exc}") from None
        return dataset

    def shard_path(self, unit_id: str) -> Path:
        return shard_path(self.folder, unit_id)

    def shards(self) -> list[Path]:
        return sorted(self.shards_dir.glob("part-*.parquet"))

    def remove_temporaries(self) -> int:
        """Remove shards left half-written by a worker or driver that was killed (they never
        got their final name); returns how many."""
        stale = [p for p in self.shards_dir.iterdir() if TEMP_SUFFIX in p.name]
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def records(self) -> dict[tuple[str, int, int], dict[str, Any]]:
        """Every input the dataset holds, by resume key (path, size, mtime), with the shard
        it is in; read from the shards' footers only."""
        done: dict[tuple[str, int, int], dict[str, Any]] = {}
        for shard in self.shards():
            inputs, _ = read_footer(shard)
            for record in inputs:
                key = (record["path"], record["size"], record["mtime_ns"])
                done.setdefault(key, {**record, "shard": shard})
        return done

    def remove_duplicates(self) -> int:
        """Keep each input path in one shard only (the first by name); returns how many
        copies were dropped. A retried unit rewrites its own shard, so copies can only come
        from a worker of a killed run that finished a unit after the rerun had listed what
        was done; this check at the start and end of every run keeps them out."""
        owner: dict[str, Path] = {}
        extra: dict[Path, set[str]] = {}
        for shard in self.shards():
            inputs, _ = read_footer(shard)
            for record in inputs:
                if owner.setdefault(record["path"], shard) != shard:
                    extra.setdefault(shard, set()).add(record["path"])
        for shard, paths in extra.items():
            drop_inputs(shard, paths)
        return sum(len(paths) for paths in extra.values())

    def pending(self, inputs: list[InputFile]) -> list[InputFile]:
        """The inputs still to do. A file whose path the dataset holds under another key
        changed since: its old rows are dropped first (so the dataset never holds one path
        twice), then it is done again."""
        self.remove_duplicates()
        done = self.records()
        wanted = {item.key for item in inputs}
        names = {item.name for item in inputs}
        changed: dict[Path, set[str]] = {}
        for key, record in done.items():
            if key not in wanted and key[0] in names:
                changed.setdefault(record["shard"], set()).add(key[0])
        for shard, paths in changed.items():
            drop_inputs(shard, paths)
        return [item for item in inputs if item.key not in done]

    def write_summary(self, summary: dict[str, Any]) -> Path:
        path = self.folder / SUMMARY
        with atomic_output(path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        return path


def read_dataset(folder: str | Path) -> Any:
    """Every row of a dataset as one ``pyarrow.Table`` (faces and failure rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards = sorted((Path(folder) / SHARDS).glob("part-*.parquet"))
    if not shards:
        raise LmkError(f"{display_name(folder)} holds no shard")
    return pa.concat_tables([pq.read_table(p) for p in shards])
