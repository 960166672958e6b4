"""The Ray Data actor of lmk-batch: one ONNX Runtime session per actor, created once in its
constructor, then one shard written per unit it is handed.

Ray Data restarts an actor that dies and retries the calls it had in flight
(``max_restarts`` and ``max_task_retries`` are unlimited by default for actor pools). A
retried unit writes the same shard name (the unit's id depends only on its files), and a
shard is renamed into place whole, so a retry replaces, never adds: no duplicate rows.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import numpy as np

from lmk.batch.annotate import AnnotatorConfig, UnitAnnotator
from lmk.batch.dataset import shard_path
from lmk.batch.inputs import Unit

RESULT_COLUMNS = ("unit", "files", "faces", "failed", "frames", "seconds", "stages")


class ShardWriter:
    """``map_batches`` callable: a batch of units (``unit``, ``inputs`` JSON) in, one result
    row per unit out (its counts and stage seconds as JSON); the rows go into the shards."""

    def __init__(self, config: dict[str, Any], dataset: str):
        self.annotator = UnitAnnotator(AnnotatorConfig(**config))
        self.dataset = dataset

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        out: dict[str, list] = {name: [] for name in RESULT_COLUMNS}
        for unit_id, inputs in zip(batch["unit"], batch["inputs"], strict=True):
            unit = Unit.from_json(str(unit_id), str(inputs))
            result = asdict(self.annotator.run(unit, shard_path(self.dataset, unit.unit_id)))
            result["unit"] = result.pop("unit_id")
            result["stages"] = json.dumps(result["stages"])
            for name in RESULT_COLUMNS:
                out[name].append(result[name])
        return out
