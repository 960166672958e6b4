"""Landmark annotation files: WFLW list files, 300W ``.pts``, and plain CSV / JSON.

Why a module of its own (outside ``lmk.synth``): these read the real WFLW / 300W releases
and a user's own data; SynthFace only writes its data in the same formats, so one set of
readers serves the public data sets and the built-in data alike, and a user's own layout
can come in as CSV or JSON. Every reader returns ``Annotation`` records in lmk's pixel
convention (0-based and continuous: pixel ``i`` covers ``[i, i + 1)``, its centre is
``i + 0.5``); a bad line raises ``LmkError("file:line: what is wrong")``.

Coordinate conventions of the formats:

* WFLW list files: taken as they are (the release fixes no pixel-centre convention; PIPNet
  and the other public tools use its numbers directly). Boxes are integer
  ``x_min y_min x_max y_max``; ``Annotation.box`` is ``(x, y, w, h)``.
* 300W ``.pts``: 1-based with pixel centres on integers (Matlab), so the first pixel's
  centre is 1.0 where ours is 0.5: ``ours = pts - 0.5`` on read, ``pts = ours + 0.5`` on write.
* CSV and JSON: lmk's own convention, no conversion.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmk.core.errors import LmkError
from lmk.core.fileio import atomic_output
from lmk.core.images import IMAGE_EXTENSIONS

WFLW_POINTS = 98
WFLW_TOKENS = 2 * WFLW_POINTS + 4 + 6 + 1  # 207
BOX_COLUMNS = ("box_x", "box_y", "box_w", "box_h")


@dataclass
class Annotation:
    """One face: its image, landmarks in lmk's pixel convention, optional box and flags."""

    image: str
    """Image path as the annotation file gives it (relative to the images folder)."""
    landmarks: np.ndarray
    """[L, 2] float64 pixels."""
    box: np.ndarray | None = None
    """[4] float64 (x, y, w, h), or None."""
    attributes: np.ndarray | None = None
    """[6] uint8 WFLW flags (pose, expression, illumination, make-up, occlusion, blur)."""


def _where(path: Path | str, line: int, message: str) -> LmkError:
    return LmkError(f"{path}:{line}: {message}")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LmkError(f"annotation file not found: {path}") from None
    except IsADirectoryError:
        raise LmkError(f"{path} is a directory, not an annotation file") from None
    except UnicodeDecodeError:
        raise LmkError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise LmkError(f"cannot read {path}: {exc.strerror}") from None


def _number(token: str, path: Path, line: int, what: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise _where(path, line, f"{what} {token!r} is not a number") from None
    if not math.isfinite(value):
        raise _where(path, line, f"{what} is {token!r}; coordinates must be finite")
    return value


def _checked_landmarks(ann: Annotation, points: int | None = None) -> np.ndarray:
    lm = np.asarray(ann.landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[1] != 2 or lm.shape[0] == 0:
        raise LmkError(f"{ann.image}: landmarks must be [L, 2], got shape {lm.shape}")
    if points is not None and lm.shape[0] != points:
        raise LmkError(f"{ann.image}: the format needs {points} landmarks, got {lm.shape[0]}")
    if not np.isfinite(lm).all():
        raise LmkError(f"{ann.image}: landmarks contain NaN or infinity")
    return lm


def _checked_box(ann: Annotation) -> np.ndarray | None:
    if ann.box is None:
        return None
    box = np.asarray(ann.box, dtype=np.float64).reshape(-1)
    if box.shape != (4,) or not np.isfinite(box).all() or (box[2:] < 0).any():
        raise LmkError(f"{ann.image}: box must be 4 finite numbers x, y, w >= 0, h >= 0")
    return box


def _fmt(v: float) -> str:
    return f"{v:.6f}"


# ------------------------------------------------------------------------------------------
# WFLW list files
# ------------------------------------------------------------------------------------------


def read_wflw(path: str | Path) -> list[Annotation]:
    """Read a WFLW list file: per line 196 coordinates, a 4-int box, 6 flags, the image path."""
    path = Path(path)
    records = []
    for n, line in enumerate(_read_text(path).splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != WFLW_TOKENS:
            raise _where(
                path,
                n,
                f"expected {WFLW_TOKENS} fields (196 coordinates, 4 box, 6 attributes, image "
                f"path), got {len(tokens)}",
            )
        coords = [
            _number(tok, path, n, f"field {i + 1} (coordinate)")
            for i, tok in enumerate(tokens[:196])
        ]
        box = []
        for i, tok in enumerate(tokens[196:200], start=197):
            try:
                box.append(int(tok))
            except ValueError:
                raise _where(path, n, f"field {i} (box) {tok!r} is not an integer") from None
        if box[2] < box[0] or box[3] < box[1]:
            raise _where(path, n, f"box {box} has x_max < x_min or y_max < y_min")
        flags = tokens[200:206]
        if any(f not in ("0", "1") for f in flags):
            raise _where(path, n, f"attributes must be 0 or 1, got {' '.join(flags)}")
        records.append(
            Annotation(
                image=tokens[206],
                landmarks=np.array(coords, dtype=np.float64).reshape(WFLW_POINTS, 2),
                box=np.array([box[0], box[1], box[2] - box[0], box[3] - box[1]], np.float64),
                attributes=np.array([int(f) for f in flags], dtype=np.uint8),
            )
        )
    return records


def wflw_line(ann: Annotation) -> str:
    """One WFLW list line (207 tokens) for an annotation with 98 landmarks.

    A float box becomes the smallest integer box holding it; no box means the landmarks'
    box; no attributes means all zero.
    """
    lm = _checked_landmarks(ann, WFLW_POINTS)
    if not ann.image or any(c.isspace() for c in ann.image):
        raise LmkError(
            f"image path {ann.image!r} is empty or contains whitespace, "
            "which a WFLW list file cannot hold"
        )
    box = _checked_box(ann)
    if box is None:
        lo, hi = lm.min(axis=0), lm.max(axis=0)
        box = np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]])
    int_box = [
        math.floor(box[0]),
        math.floor(box[1]),
        math.ceil(box[0] + box[2]),
        math.ceil(box[1] + box[3]),
    ]
    attrs = np.zeros(6, np.uint8) if ann.attributes is None else np.asarray(ann.attributes)
    if attrs.shape != (6,) or not np.isin(attrs, (0, 1)).all():
        raise LmkError(f"{ann.image}: attributes must be six 0/1 flags, got {attrs.tolist()}")
    fields = [_fmt(v) for v in lm.reshape(-1)]
    fields += [str(v) for v in int_box] + [str(int(a)) for a in attrs] + [ann.image]
    return " ".join(fields)


def write_wflw(
    path: str | Path, annotations: Iterable[Annotation], overwrite: bool = False
) -> None:
    """Write a WFLW list file (one 207-token line per face), atomically."""
    lines = [wflw_line(a) for a in annotations]
    with atomic_output(path, overwrite) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


# ------------------------------------------------------------------------------------------
# 300W .pts
# ------------------------------------------------------------------------------------------

PTS_OFFSET = 0.5
"""``.pts`` coordinate minus lmk coordinate (1-based pixel centres vs ours at ``i + 0.5``)."""


def parse_pts(text: str, path: str | Path = "<pts>") -> np.ndarray:
    """[N, 2] landmarks in lmk's convention from the text of a ``.pts`` file."""
    lines = text.splitlines()
    n, count = 0, None

    def next_line() -> tuple[int, str]:
        nonlocal n
        while n < len(lines):
            n += 1
            stripped = lines[n - 1].strip()
            if stripped:
                return n, stripped
        raise _where(path, max(n, 1), "file ends early")

    lineno, text_line = next_line()
    if text_line.lower().startswith("version"):
        lineno, text_line = next_line()
    key, _, value = text_line.partition(":")
    if key.strip().lower() != "n_points":
        raise _where(path, lineno, f"expected 'n_points: N', got {text_line!r}")
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count <= 0:
        raise _where(path, lineno, f"n_points must be a positive integer, got {value.strip()!r}")
    lineno, text_line = next_line()
    if text_line != "{":
        raise _where(path, lineno, f"expected '{{', got {text_line!r}")
    points = np.empty((count, 2), np.float64)
    for i in range(count):
        lineno, text_line = next_line()
        if text_line == "}":
            raise _where(path, lineno, f"'}}' after {i} points; n_points says {count}")
        tokens = text_line.split()
        if len(tokens) != 2:
            raise _where(path, lineno, f"expected 'x y', got {text_line!r}")
        points[i] = [_number(t, path, lineno, f"point {i} coordinate") for t in tokens]
    lineno, text_line = next_line()
    if text_line != "}":
        raise _where(path, lineno, f"expected '}}' after {count} points, got {text_line!r}")
    for rest in range(n, len(lines)):
        if lines[rest].strip():
            raise _where(path, rest + 1, "unexpected text after '}'")
    return points - PTS_OFFSET


def read_pts(path: str | Path) -> np.ndarray:
    """[N, 2] landmarks from a 300W ``.pts`` file, converted to lmk's convention."""
    path = Path(path)
    return parse_pts(_read_text(path), path)


def format_pts(landmarks: np.ndarray) -> str:
    """The text of a ``.pts`` file for [N, 2] landmarks given in lmk's convention."""
    lm = _checked_landmarks(Annotation("<pts>", landmarks))
    rows = [f"{_fmt(x + PTS_OFFSET)} {_fmt(y + PTS_OFFSET)}" for x, y in lm]
    return "version: 1\nn_points: {}\n{{\n{}\n}}\n".format(len(rows), "\n".join(rows))


def write_pts(path: str | Path, landmarks: np.ndarray, overwrite: bool = False) -> None:
    """Write one ``.pts`` file (300W convention), atomically."""
    text = format_pts(landmarks)
    with atomic_output(path, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_300w(folder: str | Path) -> list[Annotation]:
    """Every ``.pts`` under ``folder`` with the image of the same stem beside it."""
    return read_annotated_folder(folder, "300W", {".pts": read_pts})


def read_annotated_folder(
    folder: str | Path,
    release: str,
    readers: Mapping[str, Callable[[Path], np.ndarray]],
    image_suffixes: Sequence[str] = IMAGE_EXTENSIONS,
) -> list[Annotation]:
    """Every annotation file under ``folder`` whose suffix (any case) ``readers`` names, read
    by that reader, with the image of the same stem beside it: how 300W and menpo ship their
    faces. ``release`` names the folder in errors."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LmkError(f"{release} folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in readers)
    if not files:
        raise LmkError(f"no {' or '.join(readers)} files under {folder}")
    records = []
    for file in files:
        image = next(
            (
                c
                for c in sorted(file.parent.glob(f"{file.stem}.*"))
                if c.suffix.lower() in image_suffixes
            ),
            None,
        )
        if image is None:
            raise LmkError(
                f"{file}: no image beside it ({file.stem} with {', '.join(image_suffixes)})"
            )
        landmarks = readers[file.suffix.lower()](file)
        records.append(Annotation(image.relative_to(folder).as_posix(), landmarks))
    return records


# ------------------------------------------------------------------------------------------
# CSV and JSON (any number of points)
# ------------------------------------------------------------------------------------------


def _csv_header(num_points: int, with_box: bool) -> list[str]:
    header = ["image"]
    for i in range(num_points):
        header += [f"x{i}", f"y{i}"]
    return header + list(BOX_COLUMNS) if with_box else header


def read_csv(path: str | Path) -> list[Annotation]:
    """Read ``image,x0,y0,x1,y1,...[,box_x,box_y,box_w,box_h]`` rows (lmk's convention)."""
    path = Path(path)
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise _where(path, 1, "empty file; expected a header image,x0,y0,x1,y1,...") from None
    except csv.Error as exc:
        raise _where(path, reader.line_num, f"bad CSV: {exc}") from None
    header = [h.strip() for h in header]
    with_box = tuple(header[-4:]) == BOX_COLUMNS
    coords = len(header) - 1 - (4 if with_box else 0)
    expected = _csv_header(coords // 2, with_box)
    if coords <= 0 or coords % 2 or header != expected:
        bad = next(
            (i for i, (a, b) in enumerate(zip(header, expected, strict=False)) if a != b),
            min(len(header), len(expected)),
        )
        got = header[bad] if bad < len(header) else "(missing)"
        raise _where(
            path,
            1,
            "header must be image,x0,y0,x1,y1,... (then optionally box_x,box_y,box_w,box_h); "
            f"column {bad + 1} is {got!r}",
        )
    records = []
    try:
        for row in reader:
            n = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise _where(path, n, f"expected {len(header)} fields, got {len(row)}")
            image = row[0].strip()
            if not image:
                raise _where(path, n, "empty image name")
            values = [
                _number(v, path, n, f"column {header[i]}")
                for i, v in enumerate(row[1 : 1 + coords], 1)
            ]
            box = None
            if with_box:
                cells = [c.strip() for c in row[1 + coords :]]
                if any(cells):
                    box = np.array(
                        [
                            _number(c, path, n, f"column {h}")
                            for c, h in zip(cells, BOX_COLUMNS, strict=True)
                        ]
                    )
            records.append(Annotation(image, np.array(values).reshape(-1, 2), box))
    except csv.Error as exc:
        raise _where(path, reader.line_num, f"bad CSV: {exc}") from None
    return records


def write_csv(path: str | Path, annotations: Iterable[Annotation], overwrite: bool = False) -> None:
    """Write annotations as CSV; box columns appear when any annotation has a box."""
    annotations = list(annotations)
    if not annotations:
        raise LmkError("no annotations to write")
    points = _checked_landmarks(annotations[0]).shape[0]
    with_box = any(a.box is not None for a in annotations)
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(_csv_header(points, with_box))
    for ann in annotations:
        lm = _checked_landmarks(ann, points)
        row = [ann.image, *(_fmt(v) for v in lm.reshape(-1))]
        if with_box:
            box = _checked_box(ann)
            row += ["", "", "", ""] if box is None else [_fmt(v) for v in box]
        writer.writerow(row)
    with atomic_output(path, overwrite) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")


def _json_records(text: str, path: Path) -> list[tuple[int, object]]:
    """Top-level list items with the line each starts on (json gives no positions itself)."""
    decoder = json.JSONDecoder()

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    def skip(pos: int) -> int:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        return pos

    try:
        pos = skip(0)
        if pos >= len(text) or text[pos] != "[":
            raise _where(path, line_of(pos), "expected a JSON list of records")
        items = []
        pos = skip(pos + 1)
        if pos < len(text) and text[pos] == "]":
            pos += 1
        else:
            while True:
                start = pos
                item, pos = decoder.raw_decode(text, pos)
                items.append((line_of(start), item))
                pos = skip(pos)
                if pos < len(text) and text[pos] == ",":
                    pos = skip(pos + 1)
                    continue
                if pos < len(text) and text[pos] == "]":
                    pos += 1
                    break
                raise _where(path, line_of(pos), "expected ',' or ']' after a record")
        pos = skip(pos)
        if pos != len(text):
            raise _where(path, line_of(pos), "unexpected text after the list")
    except json.JSONDecodeError as exc:
        raise _where(path, exc.lineno, f"invalid JSON: {exc.msg}") from None
    return items


def _json_numbers(value: object, path: Path, n: int, what: str) -> np.ndarray:
    """A float64 array from nested JSON lists of numbers (not strings, booleans or ragged)."""
    try:
        raw = np.asarray(value)
    except ValueError:
        raise _where(path, n, f"{what} is not a rectangular list of numbers") from None
    if raw.dtype.kind not in "iuf" or raw.size == 0:
        raise _where(path, n, f"{what} must be a non-empty list of numbers")
    arr = raw.astype(np.float64)
    if not np.isfinite(arr).all():
        raise _where(path, n, f"{what} contains NaN or infinity")
    return arr


def read_json(path: str | Path) -> list[Annotation]:
    """Read ``[{"image": ..., "landmarks": [[x, y], ...], "box": [x, y, w, h]?}, ...]``."""
    path = Path(path)
    records = []
    points = None
    for n, item in _json_records(_read_text(path), path):
        if not isinstance(item, dict):
            raise _where(path, n, "each record must be an object with image and landmarks")
        image = item.get("image")
        if not isinstance(image, str) or not image:
            raise _where(path, n, "record needs a non-empty string 'image'")
        if "landmarks" not in item:
            raise _where(path, n, f"record for {image!r} has no 'landmarks'")
        lm = _json_numbers(item["landmarks"], path, n, "landmarks")
        if lm.ndim != 2 or lm.shape[1] != 2:
            raise _where(path, n, f"landmarks must be a list of [x, y], got shape {list(lm.shape)}")
        if points is None:
            points = lm.shape[0]
        elif lm.shape[0] != points:
            raise _where(path, n, f"{lm.shape[0]} landmarks where earlier records have {points}")
        box = None
        if item.get("box") is not None:
            box = _json_numbers(item["box"], path, n, "box")
            if box.shape != (4,):
                raise _where(path, n, "box must be [x, y, w, h]")
        attrs = None
        if item.get("attributes") is not None:
            a = item["attributes"]
            if not isinstance(a, list) or len(a) != 6 or any(v not in (0, 1) for v in a):
                raise _where(path, n, "attributes must be six 0/1 flags")
            attrs = np.array(a, np.uint8)
        records.append(Annotation(image, lm, box, attrs))
    return records


def write_json(
    path: str | Path, annotations: Iterable[Annotation], overwrite: bool = False
) -> None:
    """Write annotations as a JSON list, one record per line (floats round-trip exactly)."""
    lines = []
    for ann in annotations:
        record: dict = {"image": ann.image, "landmarks": _checked_landmarks(ann).tolist()}
        box = _checked_box(ann)
        if box is not None:
            record["box"] = box.tolist()
        if ann.attributes is not None:
            record["attributes"] = [int(v) for v in np.asarray(ann.attributes).reshape(-1)]
        lines.append(json.dumps(record))
    text = "[\n" + ",\n".join(lines) + ("\n]\n" if lines else "]\n")
    with atomic_output(path, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
