"""SynthFace output pinned bit for bit: refactors of the renderer must not move a pixel.

Training data, calibration sets, the demo's NME bound and every parity crop come from the
renderer, so a "harmless" restructuring that changes one draw order or one random draw
silently changes all of them. These digests were recorded from the renderer before it was
split into modules; a change that alters them must be deliberate (record new digests and say
why in the commit).

Images depend on OpenCV's anti-aliased rasteriser and blur kernels, which may change between
OpenCV releases, so the image digests are checked only under the OpenCV version they were
recorded with (the test says so when it skips them). Landmarks, boxes and attribute flags are
numpy-only and are checked everywhere, rounded to 1e-6 px so that a last-bit difference in a
platform's ``sin``/``cos`` does not count as a change.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from lmk.synth import render_clip, render_face

RECORDED_WITH_OPENCV = "5.0.0"

# seed, image size, overrides: together they reach every drawing branch (each occluder, each
# hair style, each blur, glasses, make-up, a smile with an open mouth, a closed eye, a face
# partly off the image) and the noise bank.
FACES = [
    (1, 128, {}),
    (2, 96, {"occluder": "hand", "occluder_stripes": True, "hair_style": "long"}),
    (3, (120, 80), {"occluder": "sunglasses", "blur": "motion", "blur_amount": 0.03}),
    (4, 128, {"occluder": "rect", "occluder_stripes": True, "glasses": True, "makeup": 0.9}),
    (5, 112, {"occluder": "ellipse", "hair_style": "bald", "blur": "gaussian"}),
    (6, 128, {"occluder": "bar", "smile": 0.9, "mouth_open": 0.15, "eye_open": 0.05}),
    (7, 64, {"off_frame": 0.3, "position": (0.0, 1.0), "yaw": 55.0, "noise": 0.0}),
]

FACE_DIGESTS = {
    "image": [
        "d49ed60aabe8bc5d",
        "817ada53987bc948",
        "5cffc66e037ef972",
        "3918d252b06d45f4",
        "c77afab966116e7f",
        "14c6987dadc4ad0a",
        "50eb32b5234da2c6",
    ],
    "geometry": [
        "216cfb0882855112",
        "aeaa1d4128061711",
        "d500c9c6ff756bf7",
        "ded12bb78674a6ab",
        "e4a7a68856ca2ff9",
        "659a2f357749dfaa",
        "9adcca4ef2acddb6",
    ],
}
CLIP_DIGESTS = {"image": "b9b9e900395a6c04", "geometry": "b8761a82ee162e9f"}


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _rounded(a: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(a, dtype=np.float64), 6) + 0.0  # + 0.0 folds -0.0 into 0.0


def face_digests() -> tuple[list[str], list[str]]:
    images, geometry = [], []
    for seed, size, overrides in FACES:
        s = render_face(seed, image_size=size, **overrides)
        images.append(_digest(s.image))
        geometry.append(
            _digest(
                _rounded(s.landmarks),
                _rounded(s.box),
                s.attributes,
                s.params["occluded"],
                s.params["in_image"],
                s.params["self_occluded"],
            )
        )
    return images, geometry


def clip_digests() -> tuple[str, str]:
    frames = list(render_clip(9, 4, size=(96, 72), num_faces=2, fps=5.0, leave_frame=True))
    image = _digest(*(f.image for f in frames))
    geometry = _digest(
        *(
            a
            for f in frames
            for face in f.faces
            for a in (_rounded(face.landmarks), _rounded(face.box), np.array(face.visible))
        )
    )
    return image, geometry


@pytest.fixture(scope="module")
def faces() -> tuple[list[str], list[str]]:
    return face_digests()


@pytest.fixture(scope="module")
def clip() -> tuple[str, str]:
    return clip_digests()


def _needs_recorded_opencv() -> None:
    if cv2.__version__ != RECORDED_WITH_OPENCV:
        pytest.skip(
            f"image digests were recorded with OpenCV {RECORDED_WITH_OPENCV}, "
            f"this is {cv2.__version__} (its rasteriser may differ)"
        )


def test_rendered_face_geometry_is_unchanged(faces):
    assert faces[1] == FACE_DIGESTS["geometry"]


def test_rendered_face_pixels_are_unchanged(faces):
    _needs_recorded_opencv()
    assert faces[0] == FACE_DIGESTS["image"]


def test_clip_geometry_is_unchanged(clip):
    assert clip[1] == CLIP_DIGESTS["geometry"]


def test_clip_pixels_are_unchanged(clip):
    _needs_recorded_opencv()
    assert clip[0] == CLIP_DIGESTS["image"]


if __name__ == "__main__":  # prints fresh digests to paste above after a deliberate change
    print(f"OpenCV {cv2.__version__}")
    print(face_digests())
    print(clip_digests())
