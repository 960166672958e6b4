"""Inputs that cannot be read (corrupt, zero bytes, missing) are failure rows with their
reason, in the Parquet and in summary.json; the readable files beside them are annotated."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from lmk.batch.dataset import read_dataset
from tests.batch.conftest import lmk_batch

pytestmark = pytest.mark.ray  # on the session's local Ray (tests/batch/conftest.py)


def test_corrupt_zero_byte_and_missing_inputs_are_failure_rows(collection, ray_address, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(collection.images[0], src / "good.png")
    shutil.copy(collection.clips[0], src / "good.mp4")
    rng = np.random.default_rng(0)
    (src / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + rng.bytes(3000))
    (src / "corrupt.mp4").write_bytes(rng.bytes(5000))
    (src / "empty.png").write_bytes(b"")
    (src / "empty.mp4").write_bytes(b"")
    names = ["good.png", "good.mp4", "corrupt.jpg", "corrupt.mp4", "empty.png", "empty.mp4"]
    listing = src / "list.txt"
    listing.write_text("\n".join([*names, "missing.png"]) + "\n")  # relative to the list
    out = tmp_path / "faces"

    assert lmk_batch(listing, "--out", out, "--files-per-task", 8) == 0
    table = read_dataset(out).to_pylist()
    failed = {r["path"].rsplit("/", 1)[1]: r for r in table if r["status"] == "failed"}
    assert set(failed) == {"corrupt.jpg", "corrupt.mp4", "empty.png", "empty.mp4", "missing.png"}
    assert failed["empty.png"]["error"] == "empty file (0 bytes)"
    assert failed["empty.mp4"]["error"] == "empty file (0 bytes)"
    assert failed["missing.png"]["error"] == "file not found"
    assert failed["corrupt.jpg"]["error"] == "not an image OpenCV can decode"
    assert "corrupt.mp4" in failed["corrupt.mp4"]["error"]
    for row in failed.values():
        assert row["frame"] == -1 and row["face"] == -1 and row["landmarks"] is None
    good = [r for r in table if r["status"] == "ok"]
    assert {r["path"].rsplit("/", 1)[1] for r in good} == {"good.png", "good.mp4"}
    assert all(r["error"] is None and len(r["landmarks"]) == 196 for r in good)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True
    assert summary["dataset"]["failed"] == 5
    reasons = {f["path"].rsplit("/", 1)[1]: f["reason"] for f in summary["failures"]}
    assert reasons == {name: row["error"] for name, row in failed.items()}
