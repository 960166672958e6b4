"""LandmarkDataset: crops, normalisation, layouts and splits from SynthFace and files."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from lmk.annotations import Annotation, write_csv, write_wflw
from lmk.augment import AugmentConfig
from lmk.core.errors import LmkError
from lmk.core.geometry import CropPolicy, apply_affine, warp_crop
from lmk.core.layouts import get_layout
from lmk.core.normalise import IMAGENET
from lmk.synth import render_face, sample_seed
from lmk.train.data import (
    SYNTH_VAL_BASE,
    DataSpec,
    LandmarkDataset,
    SynthSource,
    build_sources,
    data_layout,
    file_source,
    parse_data_spec,
)

WFLW = get_layout("wflw98")


@pytest.fixture(scope="module")
def faces_folder(tmp_path_factory):
    """Six SynthFace images with a WFLW list file and a CSV beside an images/ folder."""
    root = tmp_path_factory.mktemp("faces")
    (root / "images").mkdir()
    records = []
    for i in range(6):
        sample = render_face(sample_seed(3, i), 96)
        cv2.imwrite(str(root / "images" / f"{i}.png"), sample.image)
        records.append(Annotation(f"{i}.png", sample.landmarks, sample.box, sample.attributes))
    write_wflw(root / "list.txt", records)
    write_csv(root / "faces.csv", [Annotation(r.image, r.landmarks) for r in records])
    return root


def test_synth_items_are_the_crop_of_the_rendered_face_normalised_like_the_runtime():
    source = SynthSource(2, base=5, image_size=96)
    data = LandmarkDataset(source, WFLW, 64, return_crop=True)
    item = data[1]
    sample = render_face(sample_seed(5, 1), 96)
    matrix = CropPolicy().matrix(sample.box, 64)
    crop = warp_crop(sample.image, matrix, 64)
    np.testing.assert_array_equal(item["crop"].numpy(), crop)
    np.testing.assert_array_equal(item["image"].numpy(), IMAGENET.apply_bgr_nhwc(crop[None])[0])
    np.testing.assert_allclose(
        item["landmarks"].numpy(), apply_affine(matrix, sample.landmarks) / 64, atol=1e-6
    )
    assert item["image"].shape == (3, 64, 64) and item["attributes"].shape == (6,)
    assert item["index"] == 1


def test_augmented_items_keep_frame_landmarks_consistent_with_the_crop():
    source = SynthSource(3, base=5, image_size=96)
    config = AugmentConfig(flip_prob=1.0, rotation_prob=1.0)
    data = LandmarkDataset(source, WFLW, 64, augment=config, seed=1)
    item = data[0]
    mapped = apply_affine(item["matrix"].numpy(), item["frame_landmarks"].numpy()) / 64
    np.testing.assert_allclose(mapped, item["landmarks"].numpy(), atol=1e-6)
    again = data[0]
    np.testing.assert_array_equal(item["image"].numpy(), again["image"].numpy())
    data.set_epoch(1)
    assert not np.array_equal(item["image"].numpy(), data[0]["image"].numpy())


def test_synth_train_and_held_out_sets_use_disjoint_seeds():
    train, val, _ = build_sources(
        DataSpec("synth"), seed=4, layout=None, input_size=64, train_size=50, val_size=50
    )
    train_seeds = {sample_seed(train.base, i) for i in range(len(train))}
    val_seeds = {sample_seed(val.base, i) for i in range(len(val))}
    assert val.base == SYNTH_VAL_BASE and not train_seeds & val_seeds
    with pytest.raises(LmkError, match="reserved"):
        build_sources(
            DataSpec("synth"), seed=SYNTH_VAL_BASE, layout=None, input_size=64,
            train_size=1, val_size=1,
        )  # fmt: skip


def test_synth_in_the_300w_layout_converts_the_landmarks():
    source = SynthSource(1, base=5, layout="300w68", image_size=96)
    item = LandmarkDataset(source, get_layout("300w68"), 64)[0]
    assert item["landmarks"].shape == (68, 2)


def test_wflw_list_reads_images_beside_it_and_carries_the_attributes(faces_folder):
    spec = parse_data_spec(f"wflw:{faces_folder / 'list.txt'}")
    source = file_source(spec)
    data = LandmarkDataset(source, data_layout(spec, source, None, CropPolicy(), 64), 64)
    item = data[2]
    expected = render_face(sample_seed(3, 2), 96).attributes
    np.testing.assert_array_equal(item["attributes"].numpy(), expected)
    assert len(data) == 6


def test_csv_data_gets_a_custom_layout_from_its_training_crops_and_sidecar(faces_folder):
    spec = parse_data_spec(f"csv:{faces_folder / 'faces.csv'}")
    train, val, _ = build_sources(
        spec, seed=0, layout=None, input_size=64, train_size=None, val_size=None, val_fraction=0.34
    )
    assert len(train) == 4 and len(val) == 2
    with pytest.raises(LmkError, match="--flip"):
        data_layout(spec, train, None, CropPolicy(), 64)
    sidecar = faces_folder / "faces.layout.json"
    sidecar.write_text(json.dumps({"name": "mine", "flip": list(WFLW.flip), "nme_norm": [60, 72]}))
    try:
        layout = data_layout(spec, train, None, CropPolicy(), 64)
    finally:
        sidecar.unlink()
    assert layout.name == "mine" and layout.nme_norm == (60, 72)
    crops = [LandmarkDataset(train, layout, 64)[i]["landmarks"].numpy() for i in range(4)]
    np.testing.assert_allclose(layout.meanface, np.mean(crops, axis=0), atol=1e-6)
    flipped = data_layout(spec, train, None, CropPolicy(), 64, flip=tuple(WFLW.flip))
    assert flipped.nme_norm == "box"  # no sidecar: the face box normalises NME


def test_bad_specs_and_missing_files_are_one_line_errors(tmp_path, faces_folder):
    for text in ("nonsense", "wflw", "synth:x", "csv:"):
        with pytest.raises(LmkError, match="--data must be"):
            parse_data_spec(text)
    with pytest.raises(LmkError, match="not found"):
        file_source(parse_data_spec(f"wflw:{tmp_path / 'none.txt'}"))
    broken = tmp_path / "list.txt"
    broken.write_text("1 2 3\n")
    with pytest.raises(LmkError, match=r"list.txt:1: expected 207 fields"):
        file_source(parse_data_spec(f"wflw:{broken}"))
    corrupt = tmp_path / "images"
    corrupt.mkdir()
    (corrupt / "0.png").write_bytes(b"not a png")
    lines = (faces_folder / "list.txt").read_text().splitlines()[:1]
    (tmp_path / "one.txt").write_text("\n".join(lines) + "\n")
    source = file_source(parse_data_spec(f"wflw:{tmp_path / 'one.txt'}"))
    with pytest.raises(LmkError, match="cannot read image"):
        source.load(0)
