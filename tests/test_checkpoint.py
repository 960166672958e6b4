"""lmk checkpoints and imports of official PIPNet / face-alignment FAN state_dicts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmk.checkpoint import (
    Checkpoint,
    load_checkpoint,
    load_face_alignment_fan,
    load_official_pipnet,
    open_checkpoint,
)
from lmk.core.errors import LmkError
from lmk.core.fileio import atomic_output
from lmk.core.geometry import FAN_OFFICIAL_CROP, PIPNET_OFFICIAL_CROP, CropPolicy
from lmk.core.layouts import get_layout
from lmk.core.normalise import IMAGENET, UNIT_RANGE
from lmk.models import ModelSpec


def _small_pipnet_spec():
    return ModelSpec(
        "pipnet", {"backbone": "mobilenetv2", "num_lms": 68, "num_nb": 10, "input_size": 128}
    )


def test_lmk_checkpoint_round_trip_keeps_every_field_and_the_outputs(tmp_path):
    spec = _small_pipnet_spec()
    torch.manual_seed(1)
    model = spec.build().eval()
    crop = CropPolicy(enlarge=1.3, shift_y=0.05)
    ckpt = Checkpoint.from_model(
        model, spec, get_layout("300w68"), IMAGENET, crop, provenance={"seed": 7, "data": "synth"}
    )
    path = ckpt.save(tmp_path / "model.lmk.pt")
    again = load_checkpoint(path)
    assert again.spec == spec
    assert again.layout.name == "300w68" and again.layout.flip == get_layout("300w68").flip
    np.testing.assert_array_equal(again.layout.meanface, get_layout("300w68").meanface)
    assert again.input_size == 128
    assert again.normalisation == IMAGENET and again.crop == crop
    assert again.provenance["seed"] == 7 and again.provenance["torch_version"] == torch.__version__
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        for a, b in zip(model(x), again.build_model()(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [p.name for p in tmp_path.iterdir()] == ["model.lmk.pt"]  # no temp file left


def _official_pipnet_file(tmp_path, prefix=""):
    model = ModelSpec("pipnet", {"backbone": "resnet18", "num_lms": 98, "num_nb": 10}).build()
    state = {prefix + k: v for k, v in model.state_dict().items()}
    path = tmp_path / "pip_32_16_60_r18_l2_l1_10_1_nb10.pth"
    torch.save(state, path)
    return model, path


@pytest.mark.parametrize("prefix", ["", "module."])
def test_official_pipnet_state_dict_loads_strict_with_release_conventions(tmp_path, prefix):
    model, path = _official_pipnet_file(tmp_path, prefix)
    ckpt = load_official_pipnet(path)
    assert ckpt.spec.full_args() == {
        "backbone": "resnet18",
        "num_lms": 98,
        "num_nb": 10,
        "input_size": 256,
        "net_stride": 32,
    }
    assert ckpt.layout.name == "wflw98"
    assert ckpt.normalisation == IMAGENET and ckpt.crop == PIPNET_OFFICIAL_CROP
    rebuilt = ckpt.build_model()
    torch.testing.assert_close(rebuilt.nb_y_layer.weight, model.nb_y_layer.weight)


def test_official_pipnet_flags_that_disagree_with_the_weights_are_an_error(tmp_path):
    _, path = _official_pipnet_file(tmp_path)
    with pytest.raises(LmkError, match="backbone=resnet18, not resnet50"):
        load_official_pipnet(path, backbone="resnet50")
    with pytest.raises(LmkError, match="98 landmarks but layout '300w68' has 68"):
        load_official_pipnet(path, layout="300w68")


def test_official_pipnet_stride_and_backbone_are_read_from_the_weights(tmp_path):
    model = ModelSpec("pipnet", {"backbone": "mobilenetv2", "num_lms": 29, "num_nb": 4}).build()
    path = tmp_path / "mbv2.pth"
    torch.save(model.state_dict(), path)
    ckpt = load_official_pipnet(path)
    assert ckpt.spec.args["backbone"] == "mobilenetv2" and ckpt.spec.args["num_nb"] == 4
    assert ckpt.layout.name == "cofw29"
    r18_64 = ModelSpec("pipnet", {"backbone": "resnet18", "num_lms": 19, "net_stride": 64}).build()
    torch.save(r18_64.state_dict(), path)
    assert load_official_pipnet(path).spec.args["net_stride"] == 64


def test_checkpoint_that_does_not_match_names_the_keys(tmp_path):
    _, path = _official_pipnet_file(tmp_path)
    state = torch.load(path)
    state.pop("layer2.0.bn1.running_var")
    state["x_layer.weight"] = torch.zeros(98, 256, 1, 1)
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(LmkError, match="does not match the model") as info:
        load_official_pipnet(path)
    message = str(info.value)
    assert "missing: layer2.0.bn1.running_var" in message
    assert "unexpected: extra.weight" in message
    assert "x_layer.weight (98, 256, 1, 1) (model (98, 512, 1, 1))" in message
    assert "\n" not in message


def _fan_state(num_modules=1):
    torch.manual_seed(2)
    return ModelSpec("fan", {"num_modules": num_modules}).build().state_dict()


def test_face_alignment_fan_state_dict_loads_with_fan_preprocessing(tmp_path):
    path = tmp_path / "2DFAN4-11f355bf06.pth.tar"
    state = _fan_state(num_modules=2)
    torch.save(state, path)
    ckpt = load_face_alignment_fan(path)
    assert ckpt.spec == ModelSpec("fan", {"num_modules": 2, "num_lms": 68})
    assert ckpt.layout.name == "300w68"
    assert ckpt.normalisation == UNIT_RANGE and ckpt.crop == FAN_OFFICIAL_CROP
    torch.testing.assert_close(ckpt.build_model().l1.weight, state["l1.weight"])
    with pytest.raises(LmkError, match="2 hourglasses, not 4"):
        load_face_alignment_fan(path, num_modules=4)


def test_face_alignment_torchscript_archive_gives_its_weights(tmp_path):
    model = ModelSpec("fan", {"num_modules": 1}).build().eval()
    path = tmp_path / "2DFAN4-cd938726ad.zip"
    torch.jit.trace(model, torch.zeros(1, 3, 256, 256)).save(str(path))
    ckpt = open_checkpoint(path, model="fan")
    torch.testing.assert_close(ckpt.build_model().conv1.weight, model.conv1.weight)


def test_open_checkpoint_dispatches_on_content_and_origin(tmp_path):
    spec = _small_pipnet_spec()
    lmk_path = Checkpoint.from_model(spec.build(), spec, get_layout("300w68")).save(
        tmp_path / "a.pt"
    )
    assert open_checkpoint(lmk_path).spec == spec
    with pytest.raises(LmkError, match="holds a pipnet model, not fan"):
        open_checkpoint(lmk_path, model="fan")
    bare = tmp_path / "bare.pth"
    torch.save(_fan_state(), bare)
    with pytest.raises(LmkError, match="bare state_dict"):
        open_checkpoint(bare)
    with pytest.raises(LmkError, match="not an lmk checkpoint"):
        load_checkpoint(bare)
    with pytest.raises(LmkError, match="not a PIPNet state_dict"):
        open_checkpoint(bare, model="pipnet")


def test_missing_and_corrupt_checkpoints_are_one_line_errors(tmp_path):
    with pytest.raises(LmkError, match="checkpoint not found"):
        open_checkpoint(tmp_path / "absent.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x02garbage")
    with pytest.raises(LmkError, match="is damaged or not a PyTorch checkpoint") as info:
        open_checkpoint(corrupt, model="pipnet")
    assert "\n" not in str(info.value)


def test_atomic_output_leaves_nothing_on_failure_and_keeps_existing_files(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("export failed half way")
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"user data")
    with pytest.raises(LmkError, match="--overwrite"), atomic_output(target):
        pass
    assert target.read_bytes() == b"user data"
    with pytest.raises(LmkError, match="does not exist"), atomic_output(tmp_path / "no" / "x.onnx"):
        pass
