"""menpo's annotation files: ``.ljson`` stores (y, x) with pixel centres on integers, ``.pts``
is 1-based; both come out in lmk's convention (pixel i spans [i, i + 1))."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lmk.core.errors import LmkError
from lmk.menpo_format import read_ljson, read_menpo_folder, with_points


def _ljson(groups: dict) -> str:
    return json.dumps({"version": 3, "groups": groups})


def test_ljson_points_are_row_column_and_zero_based_at_pixel_centres(tmp_path):
    path = tmp_path / "face.ljson"
    pts = {"landmarks": {"points": [[10.0, 20.0], [30.0, 40.0], [0.0, 0.0]]}}
    pupils = {"landmarks": {"points": [[1.0, 2.0], [3.0, 4.0]]}}
    path.write_text(_ljson({"LJSON": pts, "pupils": pupils}))
    # the larger group; (y, x) -> (x + 0.5, y + 0.5)
    np.testing.assert_array_equal(read_ljson(path), [[20.5, 10.5], [40.5, 30.5], [0.5, 0.5]])


@pytest.mark.parametrize(
    "text, message",
    [
        ("{oops", "not an LJSON file"),
        ("[]", "no object at the top"),
        (_ljson({"g": {"landmarks": {}}}), "no landmarks.points"),
        (_ljson({"g": {"landmarks": {"points": [[1, 2, 3]]}}}), "finite \\[y, x\\] pairs"),
    ],
)
def test_bad_ljson_is_one_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.ljson"
    path.write_text(text)
    with pytest.raises(LmkError, match=rf"bad\.ljson: .*{message}"):
        read_ljson(path)


def test_menpo_folder_pairs_each_annotation_with_its_image_and_filters_by_points(tmp_path):
    pts_lines = "\n".join(f"{i + 1} {i + 2}" for i in range(68))
    (tmp_path / "a.pts").write_text(f"version: 1\nn_points: 68\n{{\n{pts_lines}\n}}\n")
    (tmp_path / "a.ppm").write_bytes(b"P6 1 1 255\n\0\0\0")
    (tmp_path / "b.ljson").write_text(_ljson({"g": {"landmarks": {"points": [[0, 0]] * 3}}}))
    (tmp_path / "b.png").write_bytes(b"png")
    records = read_menpo_folder(tmp_path)
    assert [r.image for r in records] == ["a.ppm", "b.png"]
    np.testing.assert_array_equal(records[0].landmarks[0], [0.5, 1.5])  # 1-based -> ours
    kept, skipped = with_points(records, 68)
    assert [r.image for r in kept] == ["a.ppm"] and skipped == ["b.png (3 points)"]
    (tmp_path / "c.pts").write_text("version: 1\nn_points: 1\n{\n1 1\n}\n")
    with pytest.raises(LmkError, match=r"c\.pts: no image beside it"):
        read_menpo_folder(tmp_path)
