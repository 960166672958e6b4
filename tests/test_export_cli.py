"""lmk-export end to end: the file it writes, its metadata and op set, and its errors."""

from __future__ import annotations

import copy
import hashlib
import json

import numpy as np
import onnx
import pytest
import torch

from lmk.core.cli_util import run_cli
from lmk.core.layouts import get_layout
from lmk.export import checks, exporter, reference
from lmk.export.cli import _checkpoint_from_flags, export_command
from lmk.models import ModelSpec
from lmk.runtime.metadata import REQUIRED_KEYS, parse_metadata
from lmk.runtime.session import InferenceModel, RuntimeOptions
from lmk.synth import synth_crops
from tests.test_int8_openvino import tiny_trunk

# Small and quick to trace: ResNet-18 PIPNet for AFLW-19 (19 points, 4 neighbours) at 64 px.
SMALL = [
    "--model",
    "pipnet",
    "--backbone",
    "resnet18",
    "--layout",
    "aflw19",
    "--num-nb",
    "4",
    "--input-size",
    "64",
]


_REAL_EXPORT_NETWORK = exporter.export_network
_TRACES: dict = {}


def _cached_export_network(model, spec, opset, batch, fp16=False, tracer="dynamo"):
    """Trace each distinct (architecture, weights, opset, batch, precision, tracer) once per
    session."""
    digest = hashlib.sha1()
    for value in model.state_dict().values():
        digest.update(value.detach().cpu().numpy().tobytes())
    args = tuple(sorted(spec.args.items()))
    key = (spec.name, args, digest.hexdigest(), opset, batch, fp16, tracer)
    if key not in _TRACES:
        _TRACES[key] = _REAL_EXPORT_NETWORK(model, spec, opset, batch, fp16, tracer=tracer)
    return copy.deepcopy(_TRACES[key])


@pytest.fixture(autouse=True)
def reuse_traces(monkeypatch, request):
    """Tracing is the slow part of an export and most tests here are about what happens
    around it; the determinism test opts out with the ``fresh_trace`` marker."""
    if not request.node.get_closest_marker("fresh_trace"):
        monkeypatch.setattr(exporter, "export_network", _cached_export_network)


@pytest.fixture(autouse=True)
def one_latency_run(monkeypatch):
    """The report's latency line is an indication (speed is measured in benchmarks/, never in
    these tests): one timed run instead of ten, which for a 256 px FAN is a third of its export."""
    real = exporter._cpu_latency
    monkeypatch.setattr(exporter, "_cpu_latency", lambda model, images: real(model, images, runs=1))


@pytest.fixture
def torchscript_traces(monkeypatch, request):
    """For a test about what an export writes around the network (metadata, decode, heads,
    weights), not about the dynamo trace: the TorchScript tracer, about 3x quicker. The
    default path (dynamo) stays under test in the tests on ``SMALL`` here and in
    tests/parity, which exports every family with it. ``fresh_trace`` is honoured."""
    fresh = request.node.get_closest_marker("fresh_trace") is not None

    def torchscript(model, spec, opset, batch, fp16=False):
        if fresh:
            return _REAL_EXPORT_NETWORK(model, spec, opset, batch, fp16, tracer="torchscript")
        return _cached_export_network(model, spec, opset, batch, fp16, tracer="torchscript")

    monkeypatch.setattr(exporter, "export_network", torchscript)


def _export(tmp_path, capsys, *args, name="model.onnx"):
    out = tmp_path / name
    code = run_cli(export_command, [*args, "-o", str(out)])
    captured = capsys.readouterr()
    return code, out, captured.out, captured.err


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    """One default export of a small PIPNet, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("export") / "small.onnx"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(exporter, "export_network", _cached_export_network)
        assert run_cli(export_command, [*SMALL, "-o", str(out)]) == 0
    return out


@pytest.mark.parametrize(
    "flags", [[], ["--batch", "2"], ["--input", "float-rgb"]], ids=["dynamic", "batch2", "float"]
)
def test_flip_average_file_is_the_plain_file_averaged_with_its_mirror_run(
    tmp_path, capsys, small_export, flags
):
    """``--flip-average``: the export's self-check (PyTorch + reference decode + numpy flip
    average, FP32 row) passed, the metadata says so, and the file's landmarks are the plain
    file's on the crops and their mirror images merged by lmk.core.decode.flip_average
    (within 1e-5 of the crop); the batch is the images' (fixed batch 2: the network runs 4)."""
    from lmk.core.decode import flip_average

    code, out, _, err = _export(tmp_path, capsys, *SMALL, "--flip-average", *flags)
    assert code == 0, err
    flipped = InferenceModel(out, RuntimeOptions(ep="cpu"))
    plain = InferenceModel(small_export, RuntimeOptions(ep="cpu"))
    assert flipped.info.flip_average and not plain.info.flip_average
    crops = synth_crops(2, 64, seed=11)
    views = np.concatenate([crops, crops[:, :, ::-1]])  # NHWC: the width is axis 2
    want = flip_average(*plain.infer(views), get_layout("aflw19").flip)
    got = flipped.infer(crops)
    assert got[0].shape == (2, 19, 2)
    np.testing.assert_allclose(got[0], want[0], atol=1e-5)
    np.testing.assert_allclose(got[1], want[1], atol=1e-5)
    assert np.abs(got[0] - plain.infer(crops)[0]).max() > 1e-3  # the mirror did change it


def test_export_writes_self_describing_metadata_readable_by_the_runtime(small_export):
    session = InferenceModel(small_export, RuntimeOptions(ep="cpu")).session
    props = session.get_modelmeta().custom_metadata_map
    assert set(REQUIRED_KEYS) <= set(props)
    info = parse_metadata(props)
    assert info.model == "pipnet" and info.layout == "aflw19" and info.num_landmarks == 19
    assert info.input_size == 64 and info.input_format == "uint8_nhwc_bgr"
    assert info.decode == "pipnet_nrm" and info.num_nb == 4 and info.net_stride == 32
    assert info.mean == pytest.approx((0.485, 0.456, 0.406)) and info.precision == "fp32"
    np.testing.assert_allclose(np.reshape(info.meanface, (-1, 2)), get_layout("aflw19").meanface)
    assert info.flip == get_layout("aflw19").flip
    # random weights carry the family's own crop rule: official PIPNet's 1.2x box, stretched
    assert info.crop == {"enlarge": 1.2, "shift_y": 0.0, "square": False}
    assert json.loads(props["lmk.model_args"])["backbone"] == "resnet18"
    # The declared IO matches the contract: dynamic batch, uint8 NHWC in, landmarks/scores out.
    inputs, outputs = session.get_inputs(), session.get_outputs()
    assert [(i.name, i.type, i.shape) for i in inputs] == [
        ("image", "tensor(uint8)", ["batch", 64, 64, 3])
    ]
    assert [(o.name, o.shape) for o in outputs] == [
        ("landmarks", ["batch", 19, 2]),
        ("scores", ["batch", 19]),
    ]


def test_exported_graph_stays_inside_tensorrt_parser_ops(small_export):
    model = onnx.load(str(small_export))
    report = checks.tensorrt_check(model)
    assert report.ok, report.problems
    assert set(report.ops) <= set(checks.tensorrt_supported_ops())
    assert not set(report.ops) & checks.FORBIDDEN_OPS
    # int64 only where ONNX forces it: ArgMax's output (cast to int32 straight after).
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    assert {producers[name] for name in checks.int64_tensors(model)} == {"ArgMax"}


def test_tensorrt_check_flags_what_the_parser_rejects():
    node = onnx.helper.make_node("Mod", ["a", "b"], ["c"], name="mod")
    topk = onnx.helper.make_node("TopK", ["c", "k"], ["v", "i"], name="topk", sorted=0)
    graph = onnx.helper.make_graph([node, topk], "g", [], [])
    uint8 = onnx.helper.make_tensor_value_info("image", onnx.TensorProto.UINT8, [1, 4, 4, 3])
    transpose = onnx.helper.make_node(
        "Transpose", ["image"], ["t"], name="transpose", perm=[0, 3, 1, 2]
    )
    graph = onnx.helper.make_graph([node, topk, transpose], "g", [uint8], [])
    report = checks.tensorrt_check(onnx.helper.make_model(graph))
    assert not report.ok
    assert any("uint8 input only into Cast, not Transpose" in p for p in report.problems)
    assert any("Mod" in p for p in report.problems)
    assert any("TopK needs sorted=1" in p for p in report.problems)


@pytest.mark.fresh_trace
def test_same_seed_gives_the_same_weights_and_another_seed_does_not(
    tmp_path, capsys, torchscript_traces
):
    def weights(name):
        code, out, _, _ = _export(
            tmp_path, capsys, *SMALL, "--no-simplify", "--seed", "3", name=name
        )
        assert code == 0
        return sorted(
            onnx.numpy_helper.to_array(i).tobytes() for i in onnx.load(str(out)).graph.initializer
        )

    assert weights("a.onnx") == weights("b.onnx")

    def state(seed):
        architecture = {"--backbone": "resnet18", "--input-size": 64, "--num-nb": 4}
        return _checkpoint_from_flags("pipnet", None, "aflw19", architecture, seed).state_dict

    first, other = state(3), state(4)
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_decode_none_exports_the_last_stacks_heatmaps(tmp_path, capsys, torchscript_traces):
    args = [
        "--model",
        "hourglass",
        "--num-stacks",
        "2",
        "--input-size",
        "128",
        "--decode",
        "none",
        "--input",
        "float-rgb",
    ]
    code, out, stdout, _ = _export(tmp_path, capsys, *args)
    assert code == 0, stdout
    session = InferenceModel(out, RuntimeOptions(ep="cpu")).session
    assert [o.name for o in session.get_outputs()] == ["heatmaps"]
    assert session.get_inputs()[0].type == "tensor(float)"
    info = parse_metadata(session.get_modelmeta().custom_metadata_map)
    assert info.decode == "none" and info.raw_decode == "heatmap_quarter"
    assert info.input_format == "float_nchw_rgb"
    assert session.run(None, {"image": np.zeros((2, 3, 128, 128), np.float32)})[0].shape == (
        2,
        98,
        32,
        32,
    )


def test_pipnet_decode_none_names_the_five_heads(tmp_path, capsys):
    code, out, _, _ = _export(tmp_path, capsys, *SMALL, "--decode", "none", "--no-simplify")
    assert code == 0
    names = [o.name for o in onnx.load(str(out)).graph.output]
    assert names == ["cls", "x", "y", "nb_x", "nb_y"]


@pytest.mark.parametrize("opset", [13, 20])
def test_opset_range_ends_export_and_pass_parity(tmp_path, capsys, opset):
    code, out, stdout, err = _export(
        tmp_path, capsys, *SMALL, "--opset", str(opset), "--no-simplify"
    )
    assert code == 0, err
    model = onnx.load(str(out))
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == opset
    assert "parity:" in stdout


def test_official_pipnet_checkpoint_exports_with_its_preprocessing(
    tmp_path, capsys, torchscript_traces
):
    spec = ModelSpec("pipnet", {"backbone": "resnet18", "num_lms": 19, "num_nb": 4})
    torch.manual_seed(0)
    torch.save(spec.build().state_dict(), tmp_path / "pip_r18_aflw.pth")
    code, out, _stdout, err = _export(
        tmp_path,
        capsys,
        "--model",
        "pipnet",
        "--checkpoint",
        str(tmp_path / "pip_r18_aflw.pth"),
        "--no-simplify",
    )
    assert code == 0, err
    info = parse_metadata({p.key: p.value for p in onnx.load(str(out)).metadata_props})
    assert info.input_size == 256 and info.mean == pytest.approx((0.485, 0.456, 0.406))
    assert info.crop == {"enlarge": 1.2, "shift_y": 0.0, "square": False}
    assert "random weights" not in err


def test_face_alignment_fan_checkpoint_exports_without_mean_std(
    tmp_path, capsys, torchscript_traces
):
    torch.manual_seed(0)  # fixed weights: random ones could put two heatmap peaks within 1e-7
    state = ModelSpec("fan", {"num_modules": 1}).build().state_dict()
    torch.save(state, tmp_path / "2DFAN1.pth.tar")
    code, out, _, err = _export(
        tmp_path,
        capsys,
        "--model",
        "fan",
        "--checkpoint",
        str(tmp_path / "2DFAN1.pth.tar"),
        "--no-simplify",
    )
    assert code == 0, err
    info = parse_metadata({p.key: p.value for p in onnx.load(str(out)).metadata_props})
    assert info.layout == "300w68" and info.mean == (0.0, 0.0, 0.0) and info.std == (1.0, 1.0, 1.0)
    assert info.crop["enlarge"] == pytest.approx(400 / 195) and info.crop["shift_y"] == -0.12


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "hrnet"], "unknown model 'hrnet'"),
        ([*SMALL, "--opset", "12"], "opset 12 is not supported"),
        ([*SMALL, "--batch", "zero"], "--batch must be"),
        ([*SMALL, "--fp16", "--int8"], "exclusive"),
        ([*SMALL, "--decode", "dark"], "Invalid value for '--decode'"),
        (["--model", "pipnet", "--checkpoint", "absent.pth"], "checkpoint not found"),
        (
            ["--model", "hourglass", "--backbone", "resnet18"],
            "--backbone does not apply to --model hourglass",
        ),
        ([*SMALL, "--flip-average", "--decode", "none"], "--flip-average needs --decode fused"),
    ],
)
def test_bad_flags_are_one_line_errors_with_exit_2(tmp_path, capsys, args, message):
    code, out, _stdout, err = _export(tmp_path, capsys, *args)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_checkpoint_for_another_model_names_the_keys_and_leaves_no_file(tmp_path, capsys):
    torch.manual_seed(0)
    state = ModelSpec("pipnet", {"backbone": "resnet18", "num_lms": 98}).build().state_dict()
    state["cls_layer.weight"] = torch.zeros(98, 256, 1, 1)
    torch.save(state, tmp_path / "bad.pth")
    code, _out, _, err = _export(
        tmp_path, capsys, "--model", "pipnet", "--checkpoint", str(tmp_path / "bad.pth")
    )
    assert code == 2
    assert "does not match the model" in err and "cls_layer.weight (98, 256, 1, 1)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pth"]


def test_unwritable_or_existing_output_is_refused_before_any_work(tmp_path, capsys):
    code = run_cli(export_command, [*SMALL, "-o", str(tmp_path / "missing" / "m.onnx")])
    assert code == 2 and "output folder does not exist" in capsys.readouterr().err
    existing = tmp_path / "keep.onnx"
    existing.write_bytes(b"user file")
    code = run_cli(export_command, [*SMALL, "-o", str(existing)])
    assert code == 2 and "--overwrite" in capsys.readouterr().err
    assert existing.read_bytes() == b"user file"


def _shift_reference(monkeypatch, output: str, by: float) -> None:
    """Move one output of PyTorch + reference decode: the file then disagrees with it."""
    real = reference.reference_outputs

    def shifted(*args, **kwargs):
        out = real(*args, **kwargs)
        return {k: v + by if k == output else v for k, v in out.items()}

    monkeypatch.setattr(reference, "reference_outputs", shifted)


def test_parity_failure_exits_2_and_writes_nothing(tmp_path, capsys, monkeypatch):
    _shift_reference(monkeypatch, "landmarks", 1e-3)
    code, _, _, err = _export(tmp_path, capsys, *SMALL, "--no-simplify")
    assert code == 2
    (line,) = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert line.startswith("error: parity check failed (fp32 tolerance): landmarks: max distance ")
    assert "> 1e-05 (worst at sample " in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flags", [["--fp16"], ["--int8", "--calib-size", "8"]])
def test_fp16_and_int8_exports_outside_their_tolerance_write_nothing(
    tmp_path, capsys, monkeypatch, flags
):
    """Reduced-precision files are checked too; with random weights on their scores (the
    peak values), which a broken graph moves and near-tied argmaxes do not."""
    _shift_reference(monkeypatch, "scores", 0.5)
    code, _, _, err = _export(tmp_path, capsys, *SMALL, *flags, "--no-simplify")
    precision = flags[0].lstrip("-")
    assert code == 2, err
    (line,) = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert line.startswith(
        f"error: parity check failed ({precision} tolerance): scores: max |diff|"
    )
    assert list(tmp_path.iterdir()) == []


def test_fp16_export_keeps_fp32_io_and_decode(tmp_path, capsys):
    code, out, _, err = _export(tmp_path, capsys, *SMALL, "--fp16", "--no-simplify")
    assert code == 0, err
    model = onnx.load(str(out))
    weights = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert len(weights) > 20  # the network's weights are FP16
    assert {v.type.tensor_type.elem_type for v in model.graph.output} == {onnx.TensorProto.FLOAT}
    merge = next(i for i in model.graph.initializer if "nrm_merge" in i.name)
    assert merge.data_type == onnx.TensorProto.FLOAT  # the decode stays FP32
    assert parse_metadata({p.key: p.value for p in model.metadata_props}).precision == "fp16"


@pytest.mark.parametrize(("target", "trt_ok"), [("cpu", False), ("tensorrt", True)])
def test_int8_export_calibrates_on_a_folder_of_crops(tmp_path, capsys, target, trt_ok):
    import cv2

    calib = tmp_path / "crops"
    calib.mkdir()
    for i, crop in enumerate(synth_crops(16, 96, seed=5)):
        cv2.imwrite(str(calib / f"{i}.png"), crop)
    code, out, _stdout, err = _export(
        tmp_path,
        capsys,
        *SMALL,
        "--int8",
        "--calib",
        str(calib),
        "--calib-size",
        "16",
        "--int8-target",
        target,
    )
    assert code == 0, err
    model = onnx.load(str(out))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert checks.tensorrt_check(model).ok == trt_ok
    # The heads and the decode stay float: the NRM merge constant is FP32.
    assert (
        next(i for i in model.graph.initializer if "nrm_merge" in i.name).data_type
        == onnx.TensorProto.FLOAT
    )


def test_int8_calibration_folder_with_too_few_images_is_an_error(tmp_path, capsys):
    (tmp_path / "crops").mkdir()
    (tmp_path / "crops" / "broken.png").write_bytes(b"not an image")
    code, out, _, err = _export(
        tmp_path, capsys, *SMALL, "--int8", "--calib", str(tmp_path / "crops")
    )
    assert code == 2 and "need at least 8 readable images, found 0" in err
    assert not out.exists()


def test_simplifier_failure_keeps_the_unsimplified_graph_and_says_so(monkeypatch):
    import onnxsim

    def broken(model, *args, **kwargs):
        raise RuntimeError("unsupported op in onnxsim")

    monkeypatch.setattr(onnxsim, "simplify", broken)
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["a"], ["b"])],
        "g",
        [onnx.helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [1])],
    )
    model = onnx.helper.make_model(graph)
    kept, note = checks.simplify(model)
    assert kept is model
    assert "onnxsim failed" in note and "kept the unsimplified graph" in note


def _weight_dequantizers(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, np.ndarray]]:
    """Every DequantizeLinear whose input is an initializer (a weight), with that weight."""
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    return [
        (n, inits[n.input[0]])
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in inits
    ]


@pytest.mark.parametrize(("activations", "act_type"), [(None, np.int8), ("u8", np.uint8)])
def test_openvino_int8_target_has_symmetric_per_channel_int8_weights(
    tmp_path, capsys, activations, act_type
):
    """--int8-target openvino: every conv weight is int8 with zero point 0 and one scale per
    output channel; activations are symmetric int8 (the target's default) or uint8 with
    --int8-activations u8; the file says how it was quantized."""
    flags = ["--int8-activations", activations] if activations else []
    code, out, stdout, err = _export(
        tmp_path,
        capsys,
        *SMALL,
        "--int8",
        "--int8-target",
        "openvino",
        "--calib-size",
        "16",
        *flags,
    )
    assert code == 0, err
    model = onnx.load(str(out))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    weights = _weight_dequantizers(model)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(weights) >= len(convs) - 5  # all but the FP32 heads
    for node, weight in weights:
        if weight.ndim != 4:  # conv biases are int32 with no zero point to check
            continue
        assert weight.dtype == np.int8, node.name
        zero = inits[node.input[2]]
        assert zero.dtype == np.int8 and not zero.any(), node.name
        assert inits[node.input[1]].shape == (weight.shape[0],), node.name  # per channel
    activations_zp = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert activations_zp and {z.dtype for z in activations_zp} == {np.dtype(act_type)}
    if act_type == np.int8:
        assert not any(z.any() for z in activations_zp)  # symmetric: zero point 0
    meta = {p.key: p.value for p in model.metadata_props}
    expected = {"target": "openvino", "activations": activations or "s8", "recipe": "full"}
    assert json.loads(meta["lmk.int8"]) == expected
    assert "int8:     target openvino" in stdout


@pytest.mark.parametrize(("family", "add_quantized"), [("pipnet", True), ("hourglass", False)])
def test_int8_recipe_keeps_a_heatmap_models_trunk_adds_float(family, add_quantized):
    """auto recipe: PIPNet quantizes every op; a heatmap model keeps its residual trunk's
    sums float (their outliers make 8-bit Adds useless) but quantizes its convolutions; the
    head stays FP32 in both."""
    from lmk.export.quantize import int8_plan, quantize_network
    from lmk.models import get_family

    plan = int8_plan("openvino", family_recipe=get_family(family).int8_recipe)
    assert plan.recipe == ("full" if add_quantized else "float-trunk")
    calibration = np.random.default_rng(1).normal(size=(16, 3, 16, 16)).astype(np.float32)
    model = quantize_network(tiny_trunk(), calibration, plan)
    add = next(n for n in model.graph.node if n.op_type == "Add")
    requantized = [
        n for n in model.graph.node if n.op_type == "QuantizeLinear" and add.output[0] in n.input
    ]
    assert bool(requantized) == add_quantized  # the trunk's sum stays float for heatmaps
    producers = {o: n for n in model.graph.node for o in n.output}
    conv = next(n for n in model.graph.node if n.op_type == "Conv" and n.name.startswith("c2"))
    assert producers[conv.input[1]].op_type == "DequantizeLinear"  # INT8 weights in both
    head = next(n for n in model.graph.node if n.output[0] == "heads")
    assert head.op_type == "Conv" and head.input[1] == "w3"  # FP32 weight, no DequantizeLinear


def test_the_last_head_block_is_every_conv_after_the_last_upsampling():
    """What float-trunk keeps FP32 besides the head: the convs downstream of the last Resize
    (the last hourglass's output), not the ones before it or off its path."""
    from onnx import TensorProto, helper

    from lmk.export.quantize import after_last_upsample

    def conv(name, x, y):
        return helper.make_node("Conv", [x, "w"], [y], name=name)

    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])
    nodes = [
        conv("early", "input", "a"),
        helper.make_node("Resize", ["a", "", "scales"], ["b"], name="up1", mode="nearest"),
        conv("middle", "b", "c"),
        conv("skip", "c", "s"),  # off the last upsampling's path
        helper.make_node("Resize", ["c", "", "scales"], ["d"], name="up2", mode="nearest"),
        helper.make_node("Add", ["d", "d"], ["e"], name="join"),
        conv("block", "e", "f"),
        conv("head", "f", "heads"),
    ]
    graph = helper.make_graph(nodes, "g", [], [], [scales])
    assert after_last_upsample(helper.make_model(graph)) == ["block", "head"]
    assert after_last_upsample(helper.make_model(helper.make_graph(nodes[:1], "g", [], []))) == []


@pytest.mark.parametrize(
    ("target", "activations", "message"),
    [
        ("tensorrt", "u8", "needs --int8-activations s8"),
        ("npu", None, "unknown INT8 target 'npu'"),
        ("cpu", "u16", "must be u8 or s8"),
    ],
)
def test_int8_plan_refuses_what_a_target_cannot_run(target, activations, message):
    from lmk.core.errors import LmkError
    from lmk.export.quantize import int8_plan

    with pytest.raises(LmkError, match=message):
        int8_plan(target, activations)


@pytest.mark.parametrize(
    ("layout", "blocked", "routed"), [(None, True, True), ("plain", False, False)]
)
def test_cpu_int8_layout_blocks_the_stem_and_routes_deep_convs_to_the_gemm(
    tmp_path, capsys, layout, blocked, routed
):
    """--int8-target cpu (the default) lays the file out for ORT's faster kernels: the stem on
    space-to-depth blocks, the deep 3x3 convs' weights with zero point -1 (ORT's quantized
    GEMM); --int8-cpu-layout plain keeps the quantizer's file; the metadata says which."""
    flags = ["--int8-cpu-layout", layout] if layout else []
    code, out, _, err = _export(tmp_path, capsys, *SMALL, "--int8", "--calib-size", "8", *flags)
    assert code == 0, err
    model = onnx.load(str(out))
    assert any(n.op_type == "SpaceToDepth" for n in model.graph.node) == blocked
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    shifted = [
        weight.shape[1]
        for node, weight in _weight_dequantizers(model)
        if weight.ndim == 4 and (inits[node.input[2]] == -1).all()
    ]
    assert bool(shifted) == routed and all(channels >= 128 for channels in shifted)
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["lmk.int8"])["cpu_layout"] == (layout or "amx")


def test_cpu_int8_layout_with_another_target_is_one_error_line():
    """Through the console script users run: refused before any tracing, no traceback."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("lmk-export")
    result = subprocess.run(
        [str(script), *SMALL, "--int8", "--int8-target", "openvino", "--int8-cpu-layout", "amx"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert result.stderr.strip() == "error: --int8-cpu-layout applies only to --int8-target cpu"
