"""lmk-batch on Ray gives what lmk-run gives in one process: the same faces, ids and
landmarks, on images (each on its own, whatever unit it lands in) and on tracked videos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lmk.batch.dataset import read_dataset
from lmk.core.cli_util import run_cli
from lmk.runtime.bundled import bundled_model
from lmk.runtime.session import file_digest
from tests.batch.conftest import (
    BOX,
    CLIP_FRAMES,
    CLIPS,
    IMAGES,
    assert_matches_reference,
    lmk_batch,
    no_duplicate_rows,
)

pytestmark = pytest.mark.ray  # on the session's local Ray (tests/batch/conftest.py)


def test_parquet_landmarks_equal_single_process_lmk_run_within_1e5_of_the_crop(
    collection, ray_address, tmp_path
):
    out = tmp_path / "faces"
    # Units of 25 images: the single-process reference saw all 300 in one run, so equal
    # results also show each image is annotated independently of its neighbours.
    assert lmk_batch(collection.folder, "--out", out, "--files-per-task", 25, "--workers", 2) == 0
    table = read_dataset(out)
    worst = assert_matches_reference(table, collection.reference)
    print(f"largest difference: {worst:.2e} of the crop")
    assert no_duplicate_rows(table)
    faces = sum(len(f) for f in collection.reference.values())
    assert faces >= 0.85 * (IMAGES + CLIPS * CLIP_FRAMES)  # faces are found, not skipped
    assert set(table.column("model").to_pylist()) == {file_digest(bundled_model())}
    assert set(table.column("layout").to_pylist()) == {"wflw98"}
    assert table.schema.field("landmarks").type.list_size == 2 * 98
    clip = table.filter(np.asarray(table.column("path").to_pylist()) == str(collection.clips[0]))
    assert sorted(set(clip.column("frame").to_pylist())) == list(range(CLIP_FRAMES))
    assert np.allclose(clip.column("time").to_numpy(), clip.column("frame").to_numpy() / 25.0)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True
    assert summary["dataset"]["files"] == IMAGES + CLIPS
    assert summary["dataset"]["faces"] == faces == summary["run"]["faces"]
    assert summary["dataset"]["failed"] == 0 and summary["failures"] == []
    assert summary["run"]["workers"] == 2 and summary["run"]["faces_per_s"] > 0
    assert summary["run"]["worker_stage_seconds"]["infer"] > 0


def test_the_single_process_reference_is_what_lmk_run_writes(collection, tmp_path, capsys):
    """The reference above is lmk-run's engine called in-process (full precision); lmk-run
    itself writes the same landmarks to its JSONL (rounded there to 0.01 px)."""
    from lmk.runtime.cli import run_command

    for source in (str(collection.folder / "img000*.png"), str(collection.clips[1])):
        jsonl = tmp_path / "lm.jsonl"
        args = [source, "--detector", "frame", "--box", BOX, "--json", jsonl, "--quiet"]
        code = run_cli(run_command, [*map(str, args), "--overwrite"])
        assert code == 0, capsys.readouterr().err
        records = [json.loads(line) for line in jsonl.read_text().splitlines()]
        assert len(records) == (10 if "*" in source else CLIP_FRAMES)
        for record in records:
            name = str(collection.clips[1]) if "*" not in source else record["name"]
            frame = record["frame"] if "*" not in source else 0
            faces = collection.reference[(name, frame)]
            if "*" not in source:  # an image's track ids run on across the set lmk-run saw
                assert [f["id"] for f in record["faces"]] == [i for i, _ in faces]
            for written, (_, face) in zip(record["faces"], faces, strict=True):
                diff = np.abs(np.array(written["landmarks"]) - face.landmarks).max()
                assert diff <= 0.005 + 1e-6, (name, frame, diff)
