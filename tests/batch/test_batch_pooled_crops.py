"""lmk-batch pools the crops of a unit's still images into shared inferences (--batch-size):
the Parquet rows are those of --batch-size 1 (each image on its own, as lmk-run), while the
model is called far fewer times. No Ray: one worker's annotator, as an actor runs it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from lmk.batch.annotate import AnnotatorConfig, UnitAnnotator
from lmk.batch.inputs import Unit, describe
from tests.batch.conftest import BOX

TOLERANCE = 1e-5
"""Of the face's crop side: ORT may sum a batch of 32 in another order than a batch of 1."""


def _annotator(batch_size: int, box: bool = True) -> UnitAnnotator:
    from lmk.runtime.bundled import bundled_model

    region = tuple(float(v) for v in BOX.split(",")) if box else None
    config = AnnotatorConfig(
        str(bundled_model()), "cpu", detector="frame", box=region, batch_size=batch_size
    )
    return UnitAnnotator(config)


def _unit(paths) -> Unit:
    return Unit("u", tuple(describe(p, "image") for p in paths))


def _rows_and_calls(annotator: UnitAnnotator, unit: Unit, monkeypatch) -> tuple[pa.Table, list]:
    """The unit's shard table and the crop count of each inference the model ran."""
    calls: list[int] = []
    model = annotator.session.model
    real = model.infer

    def infer(crops):
        calls.append(len(crops))
        return real(crops)

    monkeypatch.setattr(model, "infer", infer)
    rows, _, _ = annotator.annotate(unit)
    return rows.table(), calls


def _assert_same_rows(pooled: pa.Table, single: pa.Table) -> None:
    for name in ("path", "frame", "face", "status", "model", "layout"):
        assert pooled.column(name).to_pylist() == single.column(name).to_pylist(), name
    side = np.asarray(single.column("box").to_pylist())[:, 2:].max(axis=1, keepdims=True)
    for name in ("box", "landmarks"):
        a = np.asarray(pooled.column(name).to_pylist(), np.float64)
        b = np.asarray(single.column(name).to_pylist(), np.float64)
        assert np.abs(a - b).max() / side.min() <= TOLERANCE, name
    assert np.allclose(pooled.column("score"), single.column("score"), atol=1e-5)


@pytest.mark.parametrize("batch_size", [32, 5])
def test_pooled_crops_give_the_rows_of_batch_size_1_in_fewer_inferences(
    collection, batch_size, monkeypatch
):
    unit = _unit(collection.images[:40])
    single, single_calls = _rows_and_calls(_annotator(1), unit, monkeypatch)
    pooled, pooled_calls = _rows_and_calls(_annotator(batch_size), unit, monkeypatch)
    assert single.num_rows >= 35  # the faces were found, not skipped
    _assert_same_rows(pooled, single)
    assert sum(pooled_calls) == sum(single_calls)  # the same crops, only grouped
    assert max(single_calls) == 1 and max(pooled_calls) == batch_size
    # A call per full batch, plus at most one partial one per round of every image's
    # model calls (the candidates, two refinements, the final pass).
    assert len(pooled_calls) <= len(single_calls) // batch_size + 4


def test_an_image_with_more_crops_than_the_batch_is_never_split(collection, monkeypatch):
    """The frame detector's ~35 scanning windows of one image stay in one inference, so
    --batch-size 1 is exactly lmk-run's one call per image and pass."""
    unit = _unit(collection.images[:3])
    single, single_calls = _rows_and_calls(_annotator(1, box=False), unit, monkeypatch)
    pooled, pooled_calls = _rows_and_calls(_annotator(8, box=False), unit, monkeypatch)
    _assert_same_rows(pooled, single)
    windows = max(single_calls)
    assert windows > 8 and pooled_calls.count(windows) == 3


def test_step_stills_is_reset_then_step_on_each_image(collection):
    """The runtime's pooled path leaves the tracker as one image at a time would: the same
    faces, track ids running on across the set, detector runs counted."""
    import cv2

    from lmk.runtime.api import LandmarkSession

    session = LandmarkSession(ep="cpu", threads=1)
    images = [cv2.imread(str(p)) for p in collection.images[:6]]
    one_by_one, pooled = session.tracker("frame"), session.tracker("frame")
    expected = []
    for image in images:
        one_by_one.reset()
        expected.append(one_by_one.step(image))
    got = pooled.step_stills(images[:4], batch_size=16) + pooled.step_stills(images[4:], 16)
    assert [[f.track_id for f in faces] for faces in got] == [
        [f.track_id for f in faces] for faces in expected
    ]
    assert sum(len(faces) for faces in got) >= 6
    for mine, theirs in zip(got, expected, strict=True):
        for a, b in zip(mine, theirs, strict=True):
            side = float(max(b.region.box[2:]))
            assert np.abs(a.landmarks - b.landmarks).max() / side <= TOLERANCE
    assert pooled.detections == one_by_one.detections == 6
