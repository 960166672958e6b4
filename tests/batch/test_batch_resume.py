"""A run stopped midway (Ctrl-C, or the driver killed outright) leaves a consistent dataset,
and a rerun with the same --out finishes it: every input once, no duplicate rows. Runs the
installed console script, as users do, on the session's Ray (``--ray ADDRESS``)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmk.batch.dataset import read_dataset
from lmk.batch.shard import read_footer
from tests.batch.conftest import BOX, assert_matches_reference, no_duplicate_rows

pytestmark = pytest.mark.ray  # on the session's local Ray (tests/batch/conftest.py)

LMK_BATCH = Path(sys.executable).parent / "lmk-batch"


def _start(listing: Path, out: Path, address: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *(LMK_BATCH, listing, "--out", out, "--ray", address, "--files-per-task", "4"),
            *("--detector", "frame", "--box", BOX, "--quiet"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop_after_shards(proc: subprocess.Popen, out: Path, shards: int, signum: int) -> str:
    """Send ``signum`` once the run has written ``shards`` shards (midway); its stderr."""
    deadline = time.monotonic() + 300
    while len(list((out / "shards").glob("part-*.parquet"))) < shards:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "no shard written in 300 s"
        time.sleep(0.05)
    proc.send_signal(signum)
    return proc.communicate(timeout=120)[1]


def _records(out: Path) -> int:
    shards = (out / "shards").glob("part-*.parquet")
    return sum(len(read_footer(p)[0]) for p in shards)


def test_interrupted_and_killed_runs_resume_to_a_complete_dataset_without_duplicates(
    collection, ray_address, tmp_path
):
    chosen = [*collection.images[:96], collection.clips[0]]
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p}\n" for p in chosen))
    out = tmp_path / "faces"

    # Ctrl-C: one line, exit 130, the shards already written kept, the summary says so.
    proc = _start(listing, out, ray_address)
    err = _stop_after_shards(proc, out, 1, signal.SIGINT)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "error: interrupted" and "Traceback" not in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["interrupted"] is True and summary["complete"] is False
    first = _records(out)
    assert 0 < first < len(chosen)

    # The driver killed outright (no clean-up at all) later in a rerun.
    proc = _start(listing, out, ray_address)
    _stop_after_shards(proc, out, len(list((out / "shards").glob("part-*"))) + 2, signal.SIGKILL)
    second = _records(out)
    assert first < second < len(chosen)

    proc = _start(listing, out, ray_address)
    err = proc.communicate(timeout=600)[1]
    assert proc.returncode == 0, err
    assert f"{len(chosen)} files in" in err
    assert not list((out / "shards").glob("*.lmk-part*"))  # no half-written shard left
    table = read_dataset(out)
    assert no_duplicate_rows(table)
    assert _records(out) == len(chosen)
    assert_matches_reference(table, collection.reference, {str(p) for p in chosen})
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True and summary["dataset"]["files"] == len(chosen)
