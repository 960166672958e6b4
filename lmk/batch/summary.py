"""summary.json of an lmk-batch dataset: what it holds, what failed and why, and how fast the
last run went (with where its workers' time went).

The counts come from the shards' footers, so they describe the dataset as it is on disk
(also after an interrupted run, and across reruns); ``run`` describes the last run only.
``faces_per_s`` counts from Ray being up (actor start-up included); ``faces_per_worker_s``
is faces over the seconds workers spent on units (summed), the steady rate of one worker.
Stage seconds are summed over the workers and overlap (each worker reads the next frame
while it infers the current one), so they say where the time goes, not the wall time.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from lmk.batch.dataset import FORMAT, Dataset
from lmk.batch.inputs import InputFile


@dataclass
class RunStats:
    """The driver's tally of one run, updated as each unit's result row arrives."""

    workers: int
    engine: str
    planned_files: int
    started: float = field(default_factory=time.perf_counter)
    files: int = 0
    faces: int = 0
    failed: int = 0
    frames: int = 0
    busy: float = 0.0
    """Seconds the workers spent on units, summed: what start-up and idling do not count."""
    stages: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False

    def add(self, row: dict[str, Any]) -> None:
        self.files += int(row["files"])
        self.faces += int(row["faces"])
        self.failed += int(row["failed"])
        self.frames += int(row["frames"])
        self.busy += float(row["seconds"])
        for key, value in json.loads(row["stages"]).items():
            self.stages[key] = self.stages.get(key, 0.0) + float(value)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def rate(self, count: int) -> float:
        seconds = self.seconds
        return count / seconds if seconds > 0 else 0.0


def build_summary(dataset: Dataset, inputs: list[InputFile], run: RunStats) -> dict[str, Any]:
    """The summary.json content: dataset-wide counts and failures, then this run."""
    records = dataset.records()
    listed = {item.key for item in inputs}
    failures = [
        {"path": r["path"], "reason": r["error"]}
        for key, r in sorted(records.items())
        if r["status"] == "failed"
    ]
    lost = [
        {"path": r["path"], "lost_frames": r["lost_frames"]}
        for _, r in sorted(records.items())
        if r.get("lost_frames")
    ]
    seconds = run.seconds
    return {
        "format": FORMAT,
        "model": dataset.model.digest,
        "model_file": dataset.model.file,
        "layout": dataset.model.layout,
        "complete": listed <= records.keys(),
        "source_files": len(listed),
        "source_files_done": len(listed & records.keys()),
        "dataset": {
            "files": len(records),
            "images": sum(1 for r in records.values() if r["kind"] == "image"),
            "videos": sum(1 for r in records.values() if r["kind"] == "video"),
            "frames": sum(r["frames"] for r in records.values()),
            "faces": sum(r["faces"] for r in records.values()),
            "failed": len(failures),
            "shards": len(dataset.shards()),
        },
        "failures": failures,
        "videos_with_lost_frames": lost,
        "run": {
            "engine": run.engine,
            "workers": run.workers,
            "interrupted": run.interrupted,
            "planned_files": run.planned_files,
            "files": run.files,
            "frames": run.frames,
            "faces": run.faces,
            "failed": run.failed,
            "seconds": round(seconds, 3),
            "files_per_s": round(run.rate(run.files), 2),
            "faces_per_s": round(run.rate(run.faces), 2),
            "worker_busy_seconds": round(run.busy, 3),
            "faces_per_worker_s": round(run.faces / run.busy, 2) if run.busy else 0.0,
            "worker_stage_seconds": {k: round(v, 3) for k, v in sorted(run.stages.items())},
        },
    }
