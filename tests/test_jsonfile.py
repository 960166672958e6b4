"""A JSON file the user points lmk at fails as one error line naming the file and what it
should have been (``lmk.core.jsonfile``: weights manifests, LJSON files, layout sidecars)."""

from __future__ import annotations

import pytest

from lmk.core.errors import LmkError
from lmk.core.jsonfile import read_json_file
from lmk.train.data import read_sidecar


def test_a_good_file_is_parsed(tmp_path):
    path = tmp_path / "ok.json"
    path.write_text('{"flip": [1, 0]}', encoding="utf-8")
    assert read_json_file(path, "a layout sidecar") == {"flip": [1, 0]}


@pytest.mark.parametrize(
    "content, message",
    [
        (None, r"file not found: .*gone\.json \(expected an LJSON file\)"),
        (b"{not json", r"gone\.json: not an LJSON file \(Expecting property name"),
        (b"\xff\xfe\x00", r"gone\.json: not an LJSON file \('utf-8' codec"),
    ],
    ids=["missing", "malformed", "not-utf-8"],
)
def test_a_bad_file_is_one_error_naming_it_and_what_it_should_be(tmp_path, content, message):
    path = tmp_path / "gone.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(LmkError, match=message):
        read_json_file(path, "an LJSON file")


def test_a_malformed_layout_sidecar_is_named_as_one(tmp_path):
    path = tmp_path / "faces.layout.json"
    path.write_text("[1, 2", encoding="utf-8")
    with pytest.raises(LmkError, match=r"faces\.layout\.json: not a layout sidecar"):
        read_sidecar(path)
