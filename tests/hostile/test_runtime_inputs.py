"""What comes into the runtime: model files whose lmk metadata contradicts their graph, a
detector model that is not YuNet, images and boxes the API cannot use, TensorRT flags for
another EP. Each is refused in one line (CLI: ``error:`` and exit 2; API: ``ValueError`` or
``LmkError``) before it can become a malformed output, a traceback or silently wrong landmarks.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from lmk.core.errors import LmkError
from lmk.runtime.api import LandmarkSession
from lmk.runtime.faces import FaceBox
from tests.hostile.conftest import Case, check_case

HEADS = ["cls", "x", "y", "nb_x", "nb_y"]


def _set(**values) -> Callable[[dict], None]:
    """An edit of decoded metadata: set keys (``lmk.`` prefix added; None is JSON null)."""
    return lambda meta: meta.update({"lmk." + key: value for key, value in values.items()})


def _crop(**values) -> Callable[[dict], None]:
    return lambda meta: meta.__setitem__("lmk.crop", {**meta["lmk.crop"], **values})


# variant -> (edit of the bundled PIPNet's metadata, the key the error must name, whether
# the file keeps only PIPNet's raw heads (``--decode none``)); above each, what lmk-run did
# with it before the metadata was checked against the graph.
VARIANTS: dict[str, tuple[Callable[[dict], None], str, bool]] = {
    # exit 0 with a 68-point CSV header over 98-point rows
    "num-landmarks-68-on-98-graph": (_set(num_landmarks=68), r"lmk\.num_landmarks", False),
    # a traceback from ONNX Runtime (64 px crops fed to a 128 px input)
    "input-size-64-on-128-graph": (_set(input_size=64), r"lmk\.input_size", False),
    # a traceback: float input fed to a uint8 graph
    "input-format-float-on-uint8-graph": (
        _set(input_format="float_nchw_rgb"),
        r"lmk\.input_format",
        False,
    ),
    # a traceback from the host decode (5 neighbours gathered from 4-neighbour heads)
    "raw-heads-num-nb-5-on-4-neighbour-heads": (_set(num_nb=5), r"lmk\.num_nb", True),
    # accepted silently: PIPNet with 98 neighbours per point out of 98 points
    "num-nb-98-for-98-points": (_set(num_nb=98), r"lmk\.num_nb", False),
    # 0 faces on every frame, exit 0, no warning
    "crop-enlarge-negative": (_crop(enlarge=-1.2), r"lmk\.crop\.enlarge", False),
    # a KeyError traceback
    "crop-without-enlarge": (_set(crop={"square": True}), r"lmk\.crop\.enlarge", False),
    # accepted silently: a 68-point layout name on a 98-point model
    "layout-300w68-on-98-points": (_set(layout="300w68"), r"lmk\.layout", False),
    # accepted silently: a layout nobody knows, described as wflw98
    "layout-unknown-name": (_set(layout="wflw-98"), r"lmk\.layout.*wflw98", False),
    # accepted silently (the uint8 graph normalises inside): a std of 0 divides by zero
    "std-zero": (_set(std=[0.229, 0.0, 0.225]), r"lmk\.std", False),
    # accepted silently: two means for three channels
    "mean-two-values": (_set(mean=[0.5, 0.5]), r"lmk\.mean", False),
    # a numpy reshape traceback
    "meanface-odd-length": (
        lambda meta: meta.__setitem__("lmk.meanface", meta["lmk.meanface"][:-1]),
        r"lmk\.meanface",
        False,
    ),
    # a TypeError traceback (int(None))
    "num-landmarks-null": (_set(num_landmarks=None), r"lmk\.num_landmarks", False),
    # a TypeError traceback ('>' between str and int)
    "format-as-string": (_set(format="1"), r"lmk\.format", False),
    # accepted silently: a decode nobody knows on a fused file
    "decode-unknown": (_set(decode="pipnet"), r"lmk\.decode", False),
    # an IndexError traceback
    "nme-norm-one-index": (_set(nme_norm=[60]), r"lmk\.nme_norm", False),
}


def _write_variant(base, path: Path, edit: Callable[[dict], None], raw: bool) -> None:
    import onnx
    from onnx import shape_inference, utils

    model = base
    if raw:  # the fused graph's heads are named tensors: keep the graph up to them
        model = utils.Extractor(shape_inference.infer_shapes(base)).extract_model(["image"], HEADS)
    meta = {p.key: json.loads(p.value) for p in base.metadata_props}
    if raw:
        meta.update({"lmk.decode": "none", "lmk.outputs": HEADS})
    edit(meta)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.metadata_props[:]
    for key, value in meta.items():
        entry = out.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(out, str(path))


@pytest.fixture(scope="session")
def bad_models(assets: Path) -> Path:
    """The bundled PIPNet with each variant's metadata (and its raw heads, unedited, as a
    control), written once beside the shared assets."""
    import onnx

    folder = assets.parent / "runtime-bad-models"
    if not folder.is_dir():
        folder.mkdir()
        base = onnx.load(str(assets / "model.onnx"))
        for name, (edit, _key, raw) in VARIANTS.items():
            _write_variant(base, folder / f"{name}.onnx", edit, raw)
        _write_variant(base, folder / "raw-heads.onnx", lambda meta: None, True)
    return folder


def _model(name: str) -> Callable[[Path, Path], None]:
    def setup(work: Path, assets: Path) -> None:
        shutil.copy(assets.parent / "runtime-bad-models" / f"{name}.onnx", work / "bad.onnx")

    return setup


def _warned_once_and_found_nothing(work: Path, outcome) -> None:
    assert outcome.stderr.count("warning:") == 1, outcome.stderr
    records = [json.loads(line) for line in (work / "o.jsonl").read_text().splitlines()]
    assert len(records) == 12 and not any(r["faces"] for r in records)


RUN = ["{assets}/clip.mp4", "--json", "{work}/o.jsonl", "--quiet"]

CLI_CASES = [
    *[
        Case(
            f"metadata-{name}",
            "lmk-run",
            [*RUN, "--model", "{work}/bad.onnx"],
            match=key,
            setup=_model(name),
        )
        for name, (_edit, key, _raw) in VARIANTS.items()
    ],
    # An lmk landmark model loads in OpenCV but fails when run: a cv2.error traceback before.
    Case(
        "yunet-model-is-an-lmk-landmark-model",
        "lmk-run",
        [*RUN, "--detector", "yunet", "--detector-model", "{assets}/model.onnx"],
        match=r"model\.onnx is not a YuNet face-detection model \(OpenCV could not run it",
    ),
    # Already held (a one-line error); the wording now says what the file is not.
    Case(
        "yunet-model-is-a-text-file",
        "lmk-run",
        [*RUN, "--detector", "yunet", "--detector-model", "{assets}/notes.txt"],
        match=r"notes\.txt is not a YuNet face-detection model \(OpenCV could not load it",
    ),
    # NaN and infinity passed as a box before.
    Case("box-nan", "lmk-run", [*RUN, "--box", "nan,1,2,3"], match=r"--box nan,1,2,3: .*finite"),
    Case("box-inf", "lmk-run", [*RUN, "--box", "1,2,inf,4"], match=r"--box 1,2,inf,4: .*finite"),
    # Already held; now through the same check as the API's boxes.
    Case("box-negative-width", "lmk-run", [*RUN, "--box", "0,0,-5,10"], match=r"> 0"),
    # Empty output without a word before.
    Case(
        "box-outside-the-frame-warns",
        "lmk-run",
        [*RUN, "--box", "500,500,20,20"],
        code=0,
        warn=r"^warning: --box 500,500,20,20 lies entirely outside the 160x120 frame$",
        outputs=["o.jsonl"],
        check=lambda work, _assets, outcome: _warned_once_and_found_nothing(work, outcome),
    ),
    # TensorRT flags with another EP were ignored without a word.
    Case(
        "trt-fp16-with-ep-cpu",
        "lmk-run",
        [*RUN, "--ep", "cpu", "--trt-fp16"],
        match=r"--trt-fp16 applies only to --ep tensorrt \(the EP here is cpu\)",
    ),
    Case(
        "trt-workspace-and-max-batch-with-ep-cpu",
        "lmk-run",
        [*RUN, "--ep", "cpu", "--trt-workspace", "4", "--max-batch", "4"],
        match=r"--trt-workspace, --max-batch apply only to --ep tensorrt",
    ),
    Case(
        "trt-cache-with-ep-cpu",
        "lmk-run",
        [*RUN, "--ep", "cpu", "--trt-cache", "{work}/engines"],
        match=r"--trt-cache applies only to --ep tensorrt",
    ),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=str)
def test_hostile_runtime_inputs_cli(case, work, assets, bad_models):
    check_case(case, work, assets)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_session_refuses_metadata_that_contradicts_the_graph(name, bad_models):
    _edit, key, _raw = VARIANTS[name]
    with pytest.raises(LmkError, match=key) as info:
        LandmarkSession(bad_models / f"{name}.onnx", ep="cpu")
    assert "\n" not in str(info.value)


def test_raw_heads_file_with_true_metadata_still_loads_and_agrees(bad_models, assets, session):
    """The control: the checks refuse a lie, not a raw-heads file (``--decode none``)."""
    raw = LandmarkSession(bad_models / "raw-heads.onnx", ep="cpu")
    image = cv2.imread(str(assets / "images" / "00.png"))
    want = session.predict(image, [BOX])[0].landmarks
    np.testing.assert_allclose(raw.predict(image, [BOX])[0].landmarks, want, atol=1e-3)


# ---- the Python API: images and boxes --------------------------------------------------------

BOX = (30.0, 10.0, 100.0, 100.0)
IMAGE_EXPECTED = r"expected a uint8 BGR image HxWx3 \(or gray HxW, HxWx1, BGRA HxWx4\), got "


@pytest.fixture(scope="module")
def session() -> LandmarkSession:
    return LandmarkSession(ep="cpu")


@pytest.fixture(scope="module")
def image(assets) -> np.ndarray:
    return cv2.imread(str(assets / "images" / "00.png"))


# id -> (frame from the BGR image, boxes, message). Before: silently wrong landmarks (float,
# uint16, NaN/inf/negative boxes, a box off the frame), ZeroDivisionError, cv2.error, numpy
# broadcast or iteration errors.
API_CASES = {
    "float-image-in-0-1": (
        lambda im: im / 255.0,
        [BOX],
        IMAGE_EXPECTED + r"float64 array of shape \(120, 160, 3\)",
    ),
    "uint16-image": (lambda im: im.astype(np.uint16) * 257, [BOX], IMAGE_EXPECTED + "uint16"),
    "int64-image": (lambda im: im.astype(np.int64), [BOX], IMAGE_EXPECTED + "int64"),
    "channels-first-image": (
        lambda im: np.ascontiguousarray(im.transpose(2, 0, 1)),
        [BOX],
        r"shape \(3, 120, 160\) \(channels first\?",
    ),
    "empty-image": (lambda im: im[:0], [BOX], r"got an empty image of shape \(0, 160, 3\)"),
    "one-dimensional-image": (lambda im: im.reshape(-1), [BOX], IMAGE_EXPECTED + "uint8 array"),
    "two-channel-image": (lambda im: im[..., :2], [BOX], r"shape \(120, 160, 2\)"),
    "image-as-nested-list": (lambda im: im.tolist(), [BOX], IMAGE_EXPECTED + "list"),
    "nan-box": (lambda im: im, [(np.nan, 1, 20, 30)], r"box 0 nan,1,20,30: .*finite"),
    "inf-box": (lambda im: im, [BOX, (1, 2, np.inf, 4)], r"box 1 1,2,inf,4: .*finite"),
    "negative-width-box": (lambda im: im, [(0, 0, -5, 10)], r"box 0 0,0,-5,10: width and height"),
    "zero-size-box": (lambda im: im, [(10, 10, 0, 0)], r"box 0 10,10,0,0: width and height"),
    "three-number-box": (lambda im: im, [(1, 2, 3)], r"box 0: expected x,y,w,h \(4 numbers\)"),
    "boxes-as-a-string": (lambda im: im, "1,2,3,4", r"expected a box \(x, y, w, h\) or a list"),
    "boxes-none": (lambda im: im, None, r"got NoneType"),
    "box-outside-the-frame": (
        lambda im: im,
        [BOX, (500, 500, 20, 20)],
        r"box 1 \(500,500,20,20\) lies entirely outside the 160x120 frame",
    ),
    "facebox-with-nan": (
        lambda im: im,
        [FaceBox(np.array([1.0, 2.0, np.nan, 4.0]))],
        r"box 0 1,2,nan,4: .*finite",
    ),
    "box-in-0-1-coordinates": (
        lambda im: im,
        [(0.1, 0.1, 0.0001, 0.0001)],
        r"width and height must be at least",
    ),
}


@pytest.mark.parametrize("name", list(API_CASES))
def test_predict_refuses_with_a_value_error_saying_what_is_expected(name, session, image):
    make, boxes, message = API_CASES[name]
    with pytest.raises(ValueError, match=message):
        session.predict(make(image.copy()), boxes)


def test_tracker_refuses_a_float_frame_like_predict(session, image):
    with pytest.raises(ValueError, match=IMAGE_EXPECTED + "float32"):
        session.tracker("frame").step(image.astype(np.float32))


def test_tensorrt_options_with_the_cpu_ep_are_an_error_in_the_api_too():
    with pytest.raises(LmkError, match=r"--trt-fp16 applies only to --ep tensorrt"):
        LandmarkSession(ep="cpu", trt_fp16=True)
    with pytest.raises(ValueError, match=r"threads must be an integer >= 1"):
        LandmarkSession(ep="cpu", threads=0)


@pytest.mark.parametrize(
    "convert",
    [
        pytest.param(lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2BGRA), id="bgra"),
        # gray HxW and strided images already worked: guards that the checks keep them.
        pytest.param(lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2GRAY), id="gray"),
        pytest.param(lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2GRAY)[..., None], id="gray-hxwx1"),
        pytest.param(lambda im: im[:, ::-1][:, ::-1], id="non-contiguous"),
    ],
)
def test_gray_bgra_and_strided_images_give_the_landmarks_of_their_bgr_conversion(
    convert, session, image
):
    frame = convert(image)
    if frame.ndim == 3 and frame.shape[2] == 4:
        frame[..., 3] = 17  # alpha must not leak into the crop
        bgr = frame[..., :3]
    elif frame.ndim == 2 or frame.shape[2] == 1:
        bgr = cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2BGR)
    else:
        bgr = np.ascontiguousarray(frame)
    want = session.predict(np.ascontiguousarray(bgr), [BOX])[0].landmarks
    got = session.predict(frame, [BOX])[0].landmarks
    crop_side = 1.2 * (BOX[2] + BOX[3]) / 2
    assert np.abs(got - want).max() <= 1e-5 * crop_side


def test_a_single_unwrapped_box_equals_the_wrapped_one(session, image):
    want = session.predict(image, [BOX])[0].landmarks
    for single in (BOX, list(BOX), np.array(BOX), FaceBox(np.array(BOX))):
        (face,) = session.predict(image, single)
        np.testing.assert_array_equal(face.landmarks, want)
    # An [N, 4] array is N boxes; an empty list no faces.
    assert len(session.predict(image, np.array([BOX, BOX]))) == 2
    assert session.predict(image, []) == []
