"""The dataset folder without Ray: what a rerun redoes (a changed file, and only that), how
copies from a killed run's late worker are dropped, and how SOURCE lists and groups files."""

from __future__ import annotations

import os
import shutil

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lmk.batch.annotate import AnnotatorConfig, UnitAnnotator
from lmk.batch.dataset import Dataset, DatasetModel, read_dataset
from lmk.batch.inputs import list_inputs, make_units
from lmk.batch.shard import read_footer
from lmk.core.errors import LmkError
from lmk.runtime.bundled import bundled_model
from lmk.runtime.session import file_digest
from tests.batch.conftest import BOX, no_duplicate_rows


@pytest.fixture(scope="module")
def annotator() -> UnitAnnotator:
    box = tuple(float(v) for v in BOX.split(","))
    return UnitAnnotator(AnnotatorConfig(str(bundled_model()), "cpu", detector="frame", box=box))


def _dataset(folder) -> Dataset:
    model = DatasetModel(file_digest(bundled_model()), "wflw98", 98, "pipnet_mbv2_synth.onnx")
    return Dataset.open(folder, model)


def _annotate(dataset: Dataset, annotator: UnitAnnotator, source, per_task: int = 2) -> None:
    for unit in make_units(dataset.pending(list_inputs(str(source))), per_task):
        annotator.run(unit, dataset.shard_path(unit.unit_id))


def test_a_file_changed_since_it_was_annotated_is_redone_and_its_old_rows_dropped(
    collection, annotator, tmp_path
):
    src = tmp_path / "src"
    src.mkdir()
    for path in collection.images[:3]:
        shutil.copy(path, src / path.name)
    dataset = _dataset(tmp_path / "faces")
    _annotate(dataset, annotator, src)
    assert dataset.pending(list_inputs(str(src))) == []  # all done: nothing to redo
    before = read_dataset(dataset.folder)
    changed = src / collection.images[1].name
    cv2.imwrite(str(changed), cv2.flip(cv2.imread(str(changed)), 1))  # new bytes, new mtime
    os.utime(changed, ns=(1, 1))
    pending = dataset.pending(list_inputs(str(src)))
    assert [p.path for p in pending] == [str(changed)]
    kept = read_dataset(dataset.folder).column("path").to_pylist()
    assert str(changed) not in kept and len(kept) == before.num_rows - 1
    _annotate(dataset, annotator, src)
    after = read_dataset(dataset.folder)
    assert after.column("path").to_pylist().count(str(changed)) == 1
    assert {tuple(r["path"] for r in read_footer(s)[0]) for s in dataset.shards()}


def test_copies_from_a_late_worker_of_a_killed_run_are_dropped(collection, annotator, tmp_path):
    dataset = _dataset(tmp_path / "faces")
    src = tmp_path / "src"
    src.mkdir()
    for path in collection.images[:4]:
        shutil.copy(path, src / path.name)
    inputs = list_inputs(str(src))
    # The killed run had units of 2; the rerun, listing before the late shard landed, 4.
    for unit in [*make_units(inputs[:2], 2), *make_units(inputs, 4)]:
        annotator.run(unit, dataset.shard_path(unit.unit_id))

    def held() -> list[str]:
        return sorted(r["path"] for s in dataset.shards() for r in read_footer(s)[0])

    rows = read_dataset(dataset.folder).num_rows
    assert held() == sorted([i.name for i in inputs] + [i.name for i in inputs[:2]])
    assert dataset.remove_duplicates() == 2
    assert held() == sorted(i.name for i in inputs)
    table = read_dataset(dataset.folder)
    first_two = sum(len(collection.reference[(str(p), 0)]) for p in collection.images[:2])
    assert table.num_rows == rows - first_two  # the copies' face rows went with them
    assert no_duplicate_rows(table)


def test_units_are_videos_alone_or_runs_of_images_with_ids_from_their_files(collection):
    inputs = list_inputs(str(collection.folder))
    assert len(inputs) == len(collection.images) + len(collection.clips)  # recursive
    units = make_units(inputs, 64)
    assert [len(u.inputs) for u in units] == [1, 1, 1, 64, 64, 64, 64, 44]
    assert all(u.inputs[0].kind == "video" for u in units[:3])
    again = make_units(list_inputs(str(collection.folder)), 64)
    assert [u.unit_id for u in again] == [u.unit_id for u in units]
    assert len({u.unit_id for u in units}) == len(units)


def test_list_files_name_paths_relative_to_themselves(collection, tmp_path):
    names = [collection.images[0].name, "clips/" + collection.clips[0].name]
    (collection.folder / "list.csv").write_text("path,note\n" + "".join(f"{n},x\n" for n in names))
    pq.write_table(pa.table({"path": names}), collection.folder / "list.parquet")
    for listing in ("list.csv", "list.parquet"):
        got = list_inputs(str(collection.folder / listing))
        assert [i.path for i in got] == [str(collection.images[0]), str(collection.clips[0])]
        assert [i.kind for i in got] == ["image", "video"]
    (collection.folder / "list.csv").unlink()
    (collection.folder / "list.parquet").unlink()


def test_an_lmk_batch_dataset_of_the_same_model_is_reopened_not_refused(tmp_path):
    first = _dataset(tmp_path / "faces")
    assert _dataset(tmp_path / "faces").folder == first.folder
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.txt").write_text("x")
    with pytest.raises(LmkError, match="not an lmk-batch dataset"):
        _dataset(tmp_path / "mine")
    assert np.array_equal(sorted(p.name for p in (tmp_path / "mine").iterdir()), ["a.txt"])


def test_an_image_that_breaks_the_pipeline_fails_alone(
    collection, annotator, tmp_path, monkeypatch
):
    src = tmp_path / "src"
    src.mkdir()
    for path in collection.images[:3]:
        shutil.copy(path, src / path.name)
    odd = src / "odd.png"
    cv2.imwrite(str(odd), cv2.resize(cv2.imread(str(collection.images[3])), (100, 100)))
    real = annotator.session.predict_batch

    def predict_batch(requests, batch_size=None):
        if any(image.shape[0] == 100 for image, _ in requests):
            raise ValueError("cannot warp this one")
        return real(requests, batch_size)

    monkeypatch.setattr(annotator.session, "predict_batch", predict_batch)
    dataset = _dataset(tmp_path / "faces")
    _annotate(dataset, annotator, src, per_task=4)
    table = read_dataset(dataset.folder).to_pylist()
    failed = [r for r in table if r["status"] == "failed"]
    assert [(r["path"], r["error"]) for r in failed] == [
        (str(odd), "ValueError: cannot warp this one")
    ]
    expected = sum(len(collection.reference[(str(p), 0)]) for p in collection.images[:3])
    assert sum(r["status"] == "ok" for r in table) == expected
