"""Annotation files (WFLW, 300W .pts, CSV, JSON) and the lmk-synth command line."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from lmk.annotations import (
    Annotation,
    read_300w,
    read_csv,
    read_json,
    read_pts,
    read_wflw,
    write_csv,
    write_json,
    write_pts,
    write_wflw,
)
from lmk.core.cli_util import run_cli
from lmk.core.errors import LmkError
from lmk.core.layouts import wflw98_to_300w68
from lmk.synth import render_face, sample_seed
from lmk.synth.cli import WFLW_LIST, cli


def _synth(args: list[str]) -> SimpleNamespace:
    """lmk-synth through the error path every console script takes (lmk.core.cli_util.run_cli)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(err):
        code = run_cli(cli, args)
    return SimpleNamespace(exit_code=code, stderr=err.getvalue(), output=err.getvalue())


@pytest.fixture(scope="module")
def samples():
    return [render_face(seed, (128, 128)) for seed in range(3)]


@pytest.fixture(scope="module")
def annotations(samples):
    return [
        Annotation(f"sub/{i:03d}.png", s.landmarks, s.box, s.attributes)
        for i, s in enumerate(samples)
    ]


def _error_at(exc: pytest.ExceptionInfo, path: Path, line: int) -> str:
    message = str(exc.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert "\n" not in message
    return message


# ---- round trips ---------------------------------------------------------------------------


def test_wflw_round_trip(tmp_path, annotations):
    path = tmp_path / "list.txt"
    write_wflw(path, annotations)
    lines = path.read_text().splitlines()
    assert [len(line.split()) for line in lines] == [207] * 3
    back = read_wflw(path)
    assert [r.image for r in back] == [a.image for a in annotations]
    for a, r in zip(annotations, back, strict=True):
        np.testing.assert_allclose(r.landmarks, a.landmarks, atol=1e-4, rtol=0)
        np.testing.assert_array_equal(r.attributes, a.attributes)
        # the integer box is the smallest one holding the float box
        x, y, w, h = a.box
        assert r.box[0] <= x < r.box[0] + 1 and r.box[1] <= y < r.box[1] + 1
        assert x + w <= r.box[0] + r.box[2] < x + w + 1
        assert y + h <= r.box[1] + r.box[3] < y + h + 1


def test_wflw_writer_refuses_to_overwrite_and_checks_its_input(tmp_path, annotations):
    path = tmp_path / "list.txt"
    path.write_text("mine\n")
    with pytest.raises(LmkError, match="--overwrite"):
        write_wflw(path, annotations)
    assert path.read_text() == "mine\n"
    write_wflw(path, annotations, overwrite=True)
    assert len(read_wflw(path)) == 3
    with pytest.raises(LmkError, match="98 landmarks"):
        write_wflw(tmp_path / "x.txt", [Annotation("a.png", np.zeros((68, 2)))])
    with pytest.raises(LmkError, match="whitespace"):
        write_wflw(tmp_path / "x.txt", [Annotation("a b.png", np.zeros((98, 2)))])
    assert not (tmp_path / "x.txt").exists()


def test_pts_round_trip_and_one_based_convention(tmp_path, samples):
    lm = wflw98_to_300w68(samples[0].landmarks)
    path = tmp_path / "face.pts"
    write_pts(path, lm)
    text = path.read_text().splitlines()
    assert text[:3] == ["version: 1", "n_points: 68", "{"] and text[-1] == "}"
    assert len(text) == 68 + 4
    np.testing.assert_allclose(read_pts(path), lm, atol=1e-4, rtol=0)
    # 300W puts the first pixel's centre at 1.0; lmk puts it at 0.5
    first = np.array(text[3].split(), dtype=float)
    np.testing.assert_allclose(first, lm[0] + 0.5, atol=1e-6)
    (tmp_path / "one.pts").write_text("version: 1\nn_points:  1\n{\n1.0 1.0\n}\n")
    np.testing.assert_array_equal(read_pts(tmp_path / "one.pts"), [[0.5, 0.5]])


def test_300w_folder_reader(tmp_path, samples):
    for i, s in enumerate(samples):
        folder = tmp_path / ("helen" if i < 2 else "lfpw")
        folder.mkdir(exist_ok=True)
        cv2.imwrite(str(folder / f"img{i}.png"), s.image)
        write_pts(folder / f"img{i}.pts", wflw98_to_300w68(s.landmarks))
    records = read_300w(tmp_path)
    assert [r.image for r in records] == ["helen/img0.png", "helen/img1.png", "lfpw/img2.png"]
    for r, s in zip(records, samples, strict=True):
        np.testing.assert_allclose(r.landmarks, wflw98_to_300w68(s.landmarks), atol=1e-4)
    write_pts(tmp_path / "lonely.pts", np.zeros((68, 2)))
    with pytest.raises(LmkError, match="no image beside it"):
        read_300w(tmp_path)


@pytest.mark.parametrize("with_box", [True, False])
def test_csv_round_trip(tmp_path, annotations, with_box):
    items = [Annotation(a.image, a.landmarks, a.box if with_box else None) for a in annotations]
    path = tmp_path / "faces.csv"
    write_csv(path, items)
    header = path.read_text().splitlines()[0].split(",")
    assert header[:5] == ["image", "x0", "y0", "x1", "y1"]
    assert (header[-4:] == ["box_x", "box_y", "box_w", "box_h"]) == with_box
    back = read_csv(path)
    for a, r in zip(items, back, strict=True):
        assert r.image == a.image
        np.testing.assert_allclose(r.landmarks, a.landmarks, atol=1e-4, rtol=0)
        if with_box:
            np.testing.assert_allclose(r.box, a.box, atol=1e-4)
        else:
            assert r.box is None


def test_csv_takes_any_number_of_points(tmp_path):
    path = tmp_path / "five.csv"
    path.write_text("image,x0,y0,x1,y1,x2,y2\na.png,1,2,3,4,5,6\n")
    (rec,) = read_csv(path)
    np.testing.assert_array_equal(rec.landmarks, [[1, 2], [3, 4], [5, 6]])


def test_json_round_trip(tmp_path, annotations):
    path = tmp_path / "faces.json"
    items = [*annotations, Annotation("nobox.png", annotations[0].landmarks)]
    write_json(path, items)
    back = read_json(path)
    assert len(back) == 4
    for a, r in zip(items, back, strict=True):
        assert r.image == a.image
        np.testing.assert_array_equal(r.landmarks, a.landmarks)  # JSON floats are exact
    np.testing.assert_array_equal(back[0].box, annotations[0].box)
    np.testing.assert_array_equal(back[0].attributes, annotations[0].attributes)
    assert back[3].box is None and back[3].attributes is None


# ---- malformed files -----------------------------------------------------------------------


def _wflw_line(tokens_changed: dict[int, str] | None = None, drop: int = 0) -> str:
    tokens = ["1.5"] * 196 + ["0", "0", "10", "10"] + ["0"] * 6 + ["a.png"]
    for i, v in (tokens_changed or {}).items():
        tokens[i] = v
    return " ".join(tokens[: len(tokens) - drop])


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        (_wflw_line(drop=1), "expected 207 fields"),
        (_wflw_line({5: "abc"}), "field 6 (coordinate) 'abc' is not a number"),
        (_wflw_line({7: "nan"}), "must be finite"),
        (_wflw_line({197: "3.5"}), "box"),
        (_wflw_line({202: "2"}), "attributes must be 0 or 1"),
    ],
)
def test_malformed_wflw_names_file_and_line(tmp_path, bad_line, expected):
    path = tmp_path / "list.txt"
    path.write_text(_wflw_line() + "\n\n" + bad_line + "\n")
    with pytest.raises(LmkError) as exc:
        read_wflw(path)
    assert expected in _error_at(exc, path, 3)


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("version: 1\nn_points: 2\n1 2\n3 4\n}\n", 3, "expected '{'"),
        ("version: 1\nn_points: two\n{\n1 2\n3 4\n}\n", 2, "positive integer"),
        ("version: 1\nn_points: 2\n{\n1 2\n3\n}\n", 5, "expected 'x y'"),
        ("version: 1\nn_points: 2\n{\n1 2\nx 4\n}\n", 5, "not a number"),
        ("version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n", 6, "after 2 points"),
        ("version: 1\nn_points: 2\n{\n1 2\n3 4\n5 6\n}\n", 6, "expected '}'"),
        ("version: 1\nn_points: 2\n{\n1 2\n", 4, "ends early"),
    ],
)
def test_malformed_pts_names_file_and_line(tmp_path, text, line, expected):
    path = tmp_path / "bad.pts"
    path.write_text(text)
    with pytest.raises(LmkError) as exc:
        read_pts(path)
    assert expected in _error_at(exc, path, line)


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("image,x0,y1\na.png,1,2\n", 1, "column 3 is 'y1'"),
        ("image,x0,y0\na.png,1,2\nb.png,1\n", 3, "expected 3 fields, got 2"),
        ("image,x0,y0\na.png,1,2\nb.png,1,oops\n", 3, "column y0 'oops' is not a number"),
        ("image,x0,y0\n,1,2\n", 2, "empty image name"),
        ("", 1, "empty file"),
    ],
)
def test_malformed_csv_names_file_and_line(tmp_path, text, line, expected):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(LmkError) as exc:
        read_csv(path)
    assert expected in _error_at(exc, path, line)


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ('[\n{"image": "a", "landmarks": [[1, 2]]},\n{"image": "b"}\n]\n', 3, "no 'landmarks'"),
        (
            '[\n{"image": "a", "landmarks": [[1, 2]]},\n{"image": "b", "landmarks": [[1, 2], [3, 4]]}\n]',
            3,
            "2 landmarks where",
        ),
        ('[\n{"image": "a",\n "landmarks": [[1, 2]}\n]', 3, "invalid JSON"),
        ('{"image": "a"}', 1, "expected a JSON list"),
        ('[\n{"image": "a", "landmarks": [[1, NaN]]}\n]', 2, "NaN"),
        ('[\n{"image": "a", "landmarks": [["1", 2]]}\n]', 2, "must be a non-empty list of numbers"),
        ('[\n{"image": "a", "landmarks": [[1, 2]], "box": [1, 2]}\n]', 2, "box must be"),
    ],
)
def test_malformed_json_names_file_and_line(tmp_path, text, line, expected):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(LmkError) as exc:
        read_json(path)
    assert expected in _error_at(exc, path, line)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(LmkError, match="not found"):
        read_wflw(tmp_path / "nope.txt")


# ---- command line --------------------------------------------------------------------------


def test_cli_faces_writes_wflw_set(tmp_path):
    out = tmp_path / "set"
    result = _synth(["faces", "--out", str(out), "--n", "3", "--size", "96"])
    assert result.exit_code == 0, result.output
    images = sorted((out / "images").iterdir())
    assert [p.name for p in images] == ["000000.png", "000001.png", "000002.png"]
    assert cv2.imread(str(images[0])).shape == (96, 96, 3)
    lines = (out / WFLW_LIST).read_text().splitlines()
    assert [len(line.split()) for line in lines] == [207] * 3
    records = read_wflw(out / WFLW_LIST)
    assert [r.image for r in records] == [p.name for p in images]
    # the files hold what render_face makes for those seeds
    again = render_face(sample_seed(0, 1), (96, 96))
    np.testing.assert_allclose(records[1].landmarks, again.landmarks, atol=1e-4, rtol=0)
    np.testing.assert_array_equal(cv2.imread(str(images[1])), again.image)
    meta = json.loads((out / "synthface.json").read_text())
    assert meta["count"] == 3 and meta["layout"] == "wflw98"


def test_cli_faces_writes_300w_set(tmp_path):
    out = tmp_path / "set"
    args = ["faces", "--out", str(out), "--n", "2", "--layout", "300w68", "--size", "80x64"]
    result = _synth([*args, "--format", "jpg"])
    assert result.exit_code == 0, result.output
    records = read_300w(out)
    assert [r.image for r in records] == ["images/000000.jpg", "images/000001.jpg"]
    assert records[0].landmarks.shape == (68, 2)
    assert cv2.imread(str(out / records[0].image)).shape == (64, 80, 3)


def test_cli_faces_refuses_a_non_empty_folder(tmp_path):
    out = tmp_path / "set"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = _synth(["faces", "--out", str(out), "--n", "1", "--size", "64"])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: ") and "--overwrite" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "keep me"
    args = ["faces", "--out", str(out), "--n", "1", "--size", "64", "--overwrite"]
    assert _synth(args).exit_code == 0
    assert (out / "notes.txt").read_text() == "keep me"


def test_cli_bad_size_is_a_one_line_error(tmp_path):
    result = _synth(["faces", "--out", str(tmp_path / "o"), "--n", "1", "--size", "big"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --size")


def test_cli_video_writes_clip_and_jsonl(tmp_path):
    out = tmp_path / "clip.mp4"
    args = ["video", str(out), "--frames", "8", "--size", "96x64", "--faces", "2", "--seed", "3"]
    result = _synth(args)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "clip.jsonl").read_text().splitlines()]
    cap = cv2.VideoCapture(str(out))
    frames = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (64, 96, 3)
        frames += 1
    cap.release()
    assert frames == len(records) == 8
    assert [r["frame"] for r in records] == list(range(8))
    face = records[0]["faces"][1]
    assert len(records[0]["faces"]) == 2 and len(face["landmarks"]) == 98
    assert len(face["box"]) == 4 and isinstance(face["visible"], bool)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.jsonl", "clip.mp4"]  # no temps


def test_cli_video_keeps_existing_output(tmp_path):
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"precious")
    result = _synth(["video", str(out), "--frames", "2", "--size", "64x48"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "--overwrite" in result.stderr
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    (tmp_path / "clip.jsonl").write_text("mine")
    out.unlink()
    result = _synth(["video", str(out), "--frames", "2", "--size", "64x48"])
    assert result.exit_code == 2 and "clip.jsonl" in result.stderr
    assert not out.exists() and (tmp_path / "clip.jsonl").read_text() == "mine"
    result = _synth(["video", str(out), "--frames", "2", "--size", "64x48", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "clip.jsonl").read_text().splitlines()) == 2
