"""An actor killed during a run (a worker crash: OOM killer, a lost node) is restarted by Ray
Data and its unit retried; the dataset is still complete, exact and free of duplicates."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from lmk.batch.dataset import read_dataset
from tests.batch.conftest import assert_matches_reference, lmk_batch, no_duplicate_rows

pytestmark = pytest.mark.ray  # on the session's local Ray (tests/batch/conftest.py)


def _workers() -> list[dict]:
    from ray._private.state import actors  # the GCS actor table: pids and restarts

    return [a for a in actors().values() if "ShardWriter" in a["ActorClassName"]]


def test_killed_actor_is_retried_and_the_dataset_is_complete_and_exact(
    collection, ray_address, tmp_path
):
    chosen = [*collection.images[:64], *collection.clips[:2]]
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p}\n" for p in chosen))
    out = tmp_path / "faces"
    killed: list[dict] = []

    def kill_one_actor_midway() -> None:
        # ray.kill needs a handle, which Ray Data keeps to itself: the actor's process is
        # killed instead (SIGKILL, what ray.kill does to it, without asking for no restart).
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            if list((out / "shards").glob("part-*.parquet")):
                alive = [a for a in _workers() if a["State"] == "ALIVE" and a["Pid"]]
                if alive:
                    os.kill(alive[0]["Pid"], signal.SIGKILL)
                    killed.append(alive[0])
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_actor_midway, daemon=True)
    killer.start()
    code = lmk_batch(listing, "--out", out, "--files-per-task", 4, "--workers", 2)
    killer.join(timeout=5)
    assert code == 0
    assert killed, "the run ended before an actor could be killed"
    restarts = {a["ActorID"]: a["NumRestarts"] for a in _workers()}
    assert restarts[killed[0]["ActorID"]] >= 1  # Ray restarted the killed actor
    table = read_dataset(out)
    assert no_duplicate_rows(table)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True and summary["dataset"]["files"] == len(chosen)
    assert_matches_reference(table, collection.reference, {str(p) for p in chosen})
