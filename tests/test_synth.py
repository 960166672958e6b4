"""SynthFace renderer and clips: determinism, geometry, attribute flags, the 300W map."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from lmk.core.errors import LmkError
from lmk.core.layouts import WFLW_ATTRIBUTES, WFLW_TO_300W, get_layout, wflw98_to_300w68
from lmk.synth import render_clip, render_face, sample_seed

POSE, EXPRESSION, ILLUMINATION, MAKEUP, OCCLUSION, BLUR = range(6)
# A plain, well-lit, unblurred face: what the geometry tests look at.
PLAIN = {
    "occluder": "none",
    "blur": "none",
    "noise": 0.0,
    "light_strength": 0.0,
    "brightness": 1.0,
    "white_balance": (1.0, 1.0, 1.0),
    "makeup": 0.0,
    "glasses": False,
}


def test_same_seed_gives_identical_sample():
    a, b = render_face(7), render_face(7)
    assert a.image.dtype == np.uint8 and a.image.shape == (256, 256, 3)
    assert a.landmarks.shape == (98, 2) and a.landmarks.dtype == np.float64
    assert a.box.shape == (4,) and a.attributes.shape == (6,)
    assert a.image.tobytes() == b.image.tobytes()
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    np.testing.assert_array_equal(a.box, b.box)
    np.testing.assert_array_equal(a.attributes, b.attributes)
    c = render_face(8)
    assert not np.array_equal(a.image, c.image)
    assert np.abs(a.landmarks - c.landmarks).max() > 1.0


def test_image_size_is_width_by_height():
    s = render_face(3, image_size=(160, 96))
    assert s.image.shape == (96, 160, 3)


def test_overrides_change_only_what_they_force():
    free = render_face(11)
    forced = render_face(11, occluder="none", blur="none")
    np.testing.assert_array_equal(free.landmarks, forced.landmarks)
    np.testing.assert_array_equal(free.box, forced.box)
    assert forced.params["occluder"] == "none"
    with pytest.raises(LmkError, match="unknown render parameter"):
        render_face(1, yaww=3.0)


@pytest.mark.parametrize("seed", range(8))
def test_landmarks_inside_image_and_box_around_them(seed):
    s = render_face(seed, yaw=float(seed * 4 - 14), pitch=5.0, roll=-5.0, off_frame=0.0)
    w, h = 256, 256
    assert (s.landmarks >= 0).all()
    assert (s.landmarks[:, 0] < w).all() and (s.landmarks[:, 1] < h).all()
    face_w = np.ptp(s.landmarks[:, 0])
    assert 0.25 * w < face_w < 0.8 * w
    x, y, bw, bh = s.box
    centre = (s.landmarks.min(axis=0) + s.landmarks.max(axis=0)) / 2
    assert abs(x + bw / 2 - centre[0]) < 0.1 * bw and abs(y + bh / 2 - centre[1]) < 0.1 * bh
    assert 0.9 * face_w < bw < 1.4 * face_w


def test_frontal_face_is_mirror_symmetric_under_the_wflw_flip():
    # Yaw, pitch, roll 0 and straight gaze: mirroring the landmarks about the face's axis and
    # renumbering with WFLW's flip table gives the same face back; this ties the renderer's
    # index groups to the layout.
    flip = list(get_layout("wflw98").flip)
    for seed in range(4):
        s = render_face(seed, yaw=0.0, pitch=0.0, roll=0.0, gaze=(0.0, 0.0), smile=0.0)
        lm = s.landmarks
        axis = lm[[51, 52, 53, 54, 57, 16], 0].mean()
        mirrored = lm.copy()
        mirrored[:, 0] = 2 * axis - mirrored[:, 0]
        face_w = np.ptp(lm[:, 0])
        assert np.abs(mirrored[flip] - lm).max() < 0.03 * face_w
        assert lm[0, 0] < lm[16, 0] < lm[32, 0]  # contour runs left to right
        assert lm[60, 0] < lm[64, 0] < lm[68, 0] < lm[72, 0]  # eye corners


@pytest.mark.parametrize("seed", range(12))
def test_pupils_lie_between_their_eye_corners(seed):
    s = render_face(seed, yaw=float(np.clip(render_face(seed).params["yaw"], -40, 40)))
    lm = s.landmarks
    for outer, inner, pupil in ((60, 64, 96), (72, 68, 97)):
        axis = lm[inner] - lm[outer]
        t = np.dot(lm[pupil] - lm[outer], axis) / np.dot(axis, axis)
        assert 0.05 < t < 0.95


def test_drawn_pupil_is_centred_on_its_landmark():
    # The pixel convention: pixel i covers [i, i+1), so the pupil's centroid taken over pixel
    # centres (i + 0.5) must land on landmark 96/97 (a half-pixel slip would show here). The
    # iris is forced blue (B - R = 110); pupil and catchlight have B - R near 0, and B - R
    # blends linearly across anti-aliased edges, so 1 - (B - R) / 110 weighs the pupil disc.
    # A big, wide-open eye: pupil radius ~10 px, lids ~30 px away from its centre.
    s = render_face(
        4,
        (768, 768),
        **PLAIN,
        yaw=0.0,
        pitch=0.0,
        roll=0.0,
        gaze=(0.0, 0.0),
        eye_open=2.0,
        eye_size=1.2,
        iris=(230.0, 200.0, 120.0),
        face_width=0.7,
    )
    ys, xs = np.mgrid[0:33, 0:33]
    for idx in (96, 97):
        px, py = s.landmarks[idx]
        x0, y0 = int(px) - 16, int(py) - 16
        win = s.image[y0 : y0 + 33, x0 : x0 + 33].astype(np.float64)
        cx, cy = xs + x0 + 0.5, ys + y0 + 0.5
        inside = (cx - px) ** 2 + (cy - py) ** 2 < 14.0**2
        weight = np.clip(1.0 - (win[..., 0] - win[..., 2]) / 110.0, 0.0, 1.0) * inside
        assert 250 < weight.sum() < 700  # a pupil of radius ~10-14 px
        mx, my = (weight * cx).sum() / weight.sum(), (weight * cy).sum() / weight.sum()
        assert abs(mx - px) < 0.15 and abs(my - py) < 0.15


def test_attribute_flags_follow_the_render_parameters():
    assert WFLW_ATTRIBUTES == ("pose", "expression", "illumination", "make-up", "occlusion", "blur")
    calm = {**PLAIN, "yaw": 5.0, "pitch": 0.0, "mouth_open": 0.0, "smile": 0.1}
    assert render_face(2, **calm).attributes.tolist() == [0, 0, 0, 0, 0, 0]
    assert render_face(2, **{**calm, "yaw": 55.0}).attributes[POSE] == 1
    assert render_face(2, **{**calm, "pitch": -28.0}).attributes[POSE] == 1
    assert render_face(2, **{**calm, "mouth_open": 0.15}).attributes[EXPRESSION] == 1
    assert render_face(2, **{**calm, "brightness": 0.35}).attributes[ILLUMINATION] == 1
    assert render_face(2, **{**calm, "makeup": 0.9}).attributes[MAKEUP] == 1
    blurred = render_face(2, **{**calm, "blur": "gaussian", "blur_amount": 0.03})
    assert blurred.attributes[BLUR] == 1
    sharp = render_face(2, **calm)
    # blur really happened: less high-frequency energy than the sharp image
    lap = [np.abs(np.diff(im.image.astype(float), axis=1)).mean() for im in (sharp, blurred)]
    assert lap[1] < 0.7 * lap[0]
    for seed in range(6):
        assert render_face(seed, occluder="none").attributes[OCCLUSION] == 0
    shades = render_face(2, **{**calm, "occluder": "sunglasses"})
    assert shades.attributes[OCCLUSION] == 1
    assert shades.params["occluded"][[60, 64, 68, 72, 96, 97]].all()
    assert not shades.params["occluded"][[0, 16, 32, 54, 85]].any()


def test_large_yaw_hides_the_far_contour():
    s = render_face(5, yaw=55.0, pitch=0.0, roll=0.0)
    hidden = s.params["self_occluded"]
    assert hidden[28:33].any() and not hidden[0:5].any()  # yaw > 0 turns the right side away
    assert not render_face(5, yaw=0.0).params["self_occluded"].any()


def test_random_samples_cover_the_attributes():
    flags = np.array([render_face(i, (96, 96)).attributes for i in range(60)])
    assert (flags.sum(axis=0) > 0).all()  # every attribute occurs
    assert (flags.mean(axis=0) < 0.6).all()  # and none dominates


def test_wflw_to_300w_map():
    assert len(WFLW_TO_300W) == 68 and len(set(WFLW_TO_300W.tolist())) == 68
    wflw, w300 = get_layout("wflw98"), get_layout("300w68")
    f98, f68 = np.array(wflw.flip), np.array(w300.flip)
    # mirroring then converting == converting then mirroring
    np.testing.assert_array_equal(WFLW_TO_300W[f68], f98[WFLW_TO_300W])
    # the WFLW mean face, converted, is the 300W mean face up to the crops' affine difference
    mapped = wflw98_to_300w68(wflw.meanface)
    design = np.column_stack([mapped, np.ones(68)])
    fit, *_ = np.linalg.lstsq(design, w300.meanface, rcond=None)
    assert np.linalg.norm(design @ fit - w300.meanface, axis=1).max() < 0.05
    batch = wflw98_to_300w68(np.zeros((3, 98, 2)))
    assert batch.shape == (3, 68, 2)
    with pytest.raises(LmkError):
        wflw98_to_300w68(np.zeros((68, 2)))


def test_sample_seeds_do_not_collide():
    seeds = {sample_seed(b, i) for b in range(4) for i in range(500)}
    assert len(seeds) == 2000


def test_clip_is_smooth_and_deterministic():
    frames = list(render_clip(1, 12, size=(160, 120), num_faces=2))
    assert [f.index for f in frames] == list(range(12))
    assert all(f.image.shape == (120, 160, 3) and len(f.faces) == 2 for f in frames)
    for k in range(2):
        track = np.array([f.faces[k].landmarks for f in frames])
        step = np.abs(np.diff(track, axis=0)).max()
        assert step < 0.03 * 160  # a few pixels per frame at most
        assert all(f.faces[k].visible for f in frames)
    again = next(iter(render_clip(1, 1, size=(160, 120), num_faces=2)))
    assert again.image.tobytes() == frames[0].image.tobytes()


def test_clip_face_leaves_and_comes_back():
    visible = [f.faces[0].visible for f in render_clip(2, 30, size=(128, 96), leave_frame=True)]
    gone = [i for i, v in enumerate(visible) if not v]
    assert visible[0] and visible[-1] and gone
    assert all(not visible[i] for i in range(gone[0], gone[-1] + 1))  # one absence


def test_synth_and_annotation_files_import_with_torch_blocked():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import lmk.synth, lmk.synth.cli, lmk.annotations\n"
        "print(lmk.synth.render_face(0, 64).landmarks.shape)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(98, 2)"
