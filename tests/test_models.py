"""Model variants: official state_dict names, output shapes, parameter counts."""

from __future__ import annotations

import pytest
import torch

from lmk.core.errors import LmkError
from lmk.models import ModelSpec, count_parameters
from lmk.models.backbones import (
    build_backbone,
    imagenet_state_dict,
    load_backbone_weights,
)

_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _names_and_shapes(model):
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def _parameter_count(reference):
    return sum(torch.Size(s).numel() for k, s in reference if not k.endswith(_BUFFERS))


RUNNABLE_OFFICIAL_PIPNETS = [
    ("resnet18", 16),
    ("resnet18", 32),
    ("resnet18", 64),
    ("resnet18", 128),
    ("resnet50", 32),
    ("resnet101", 32),
    ("mobilenetv2", 32),
]


@pytest.mark.parametrize(("backbone", "stride"), RUNNABLE_OFFICIAL_PIPNETS)
def test_pipnet_state_dict_matches_official_release(public_state_dicts, backbone, stride):
    model = ModelSpec(
        "pipnet", dict(backbone=backbone, num_lms=98, num_nb=10, net_stride=stride)
    ).build()
    reference = public_state_dicts[f"pipnet_{backbone}_stride{stride}_98pts_nb10"]
    assert _names_and_shapes(model) == reference
    assert count_parameters(model) == _parameter_count(reference)


@pytest.mark.parametrize(("backbone", "stride"), [("resnet50", 64), ("resnet101", 128)])
def test_pipnet_deep_resnet_extra_strides_feed_heads_the_512_channels_they_get(
    public_state_dicts, backbone, stride
):
    # The official code builds 2048-input heads after a 512-channel layer5 and cannot run;
    # names match, only the heads' input width differs.
    model = ModelSpec(
        "pipnet", dict(backbone=backbone, num_lms=98, num_nb=10, net_stride=stride)
    ).build()
    reference = dict(public_state_dicts[f"pipnet_{backbone}_stride{stride}_98pts_nb10"])
    own = dict(_names_and_shapes(model))
    assert list(own) == list(reference)
    differing = {k for k in own if own[k] != reference[k]}
    assert differing == {f"{h}_layer.weight" for h in ("cls", "x", "y", "nb_x", "nb_y")}
    assert all(own[k][1] == 512 and reference[k][1] == 2048 for k in differing)
    outputs = model.eval()(torch.zeros(1, 3, 256, 256))
    assert outputs[0].shape == (1, 98, 256 // stride, 256 // stride)


def test_pipnet_r18_98_points_has_12_3_million_parameters():
    model = ModelSpec("pipnet", dict(backbone="resnet18", num_lms=98, num_nb=10)).build()
    assert round(count_parameters(model) / 1e6, 1) == 12.3


@pytest.mark.parametrize(
    ("backbone", "stride", "channels"),
    [
        ("resnet18", 16, 512),
        ("resnet18", 32, 512),
        ("resnet18", 64, 512),
        ("resnet18", 128, 512),
        ("resnet34", 32, 512),
        ("resnet50", 32, 2048),
        ("resnet101", 32, 2048),
        ("mobilenetv2", 32, 1280),
    ],
)
def test_pipnet_outputs_five_heads_on_the_stride_grid(backbone, stride, channels):
    model = (
        ModelSpec("pipnet", dict(backbone=backbone, num_lms=68, num_nb=5, net_stride=stride))
        .build()
        .eval()
    )
    assert model.cls_layer.in_channels == channels
    with torch.no_grad():
        cls, x, y, nb_x, nb_y = model(torch.zeros(2, 3, 256, 256))
    grid = 256 // stride
    for head in (cls, x, y):
        assert head.shape == (2, 68, grid, grid)
    for head in (nb_x, nb_y):
        assert head.shape == (2, 340, grid, grid)


def test_pipnet_rejects_a_stride_that_does_not_divide_the_input():
    with pytest.raises(LmkError, match="multiple"):
        ModelSpec("pipnet", dict(input_size=200, net_stride=32)).build()


def test_fan4_state_dict_matches_face_alignment_release(public_state_dicts):
    model = ModelSpec("fan", dict(num_modules=4, num_lms=68)).build()
    reference = public_state_dicts["face_alignment_FAN4_68pts"]
    assert len(reference) == 1129
    assert _names_and_shapes(model) == reference
    assert count_parameters(model) == _parameter_count(reference)
    assert round(sum(torch.Size(s).numel() for _, s in reference) / 1e6, 1) == 23.9
    assert 23.7e6 < count_parameters(model) < 23.9e6


def test_fan4_returns_four_68x64x64_heatmaps():
    model = ModelSpec("fan").build().eval()
    with torch.no_grad():
        outputs = model(torch.zeros(2, 3, 256, 256))
    assert [tuple(o.shape) for o in outputs] == [(2, 68, 64, 64)] * 4


@pytest.mark.parametrize(
    ("stacks", "features", "params_m"), [(1, 128, 1.0), (2, 256, 6.6), (4, 256, 13.0)]
)
def test_stacked_hourglass_returns_every_stack_at_quarter_resolution(stacks, features, params_m):
    model = (
        ModelSpec("hourglass", dict(num_lms=98, num_stacks=stacks, num_features=features))
        .build()
        .eval()
    )
    assert round(count_parameters(model) / 1e6, 1) == params_m
    with torch.no_grad():
        outputs = model(torch.zeros(1, 3, 256, 256))
    assert [tuple(o.shape) for o in outputs] == [(1, 98, 64, 64)] * stacks


def test_stacked_hourglass_intermediate_heatmaps_feed_the_next_stack():
    model = ModelSpec("hourglass", dict(num_lms=5, num_stacks=2, num_features=64)).build().eval()
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(x)[1]
        model.remap_heatmaps[0].weight.add_(0.5)
        after = model(x)[1]
        first_after = model(x)[0]
    assert not torch.allclose(before, after)
    torch.testing.assert_close(first_after, model(x)[0])


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("pipnet", {"backbone": "mobilenetv2", "num_lms": 29, "num_nb": 4, "input_size": 128}),
        ("hourglass", {"num_lms": 19, "num_stacks": 2, "num_features": 64, "input_size": 128}),
        ("fan", {"num_modules": 1, "num_lms": 68}),
    ],
)
def test_state_dict_round_trip_gives_identical_outputs(name, args):
    torch.manual_seed(0)
    source = ModelSpec(name, args).build()
    for key, value in source.state_dict().items():  # non-trivial BN statistics too
        if key.endswith("running_mean"):
            value.add_(torch.randn_like(value) * 0.1)
        elif key.endswith("running_var"):
            value.mul_(1 + torch.rand_like(value))
    source.eval()
    target = ModelSpec(name, args).build()
    target.load_state_dict(source.state_dict(), strict=True)
    target.eval()
    x = torch.randn(2, 3, args.get("input_size", 256), args.get("input_size", 256))
    with torch.no_grad():
        for a, b in zip(source(x), target(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_model_spec_names_unknown_models_and_arguments():
    with pytest.raises(LmkError, match="choose from pipnet, hourglass, fan"):
        ModelSpec("hrnet")
    with pytest.raises(LmkError, match="no argument"):
        ModelSpec("fan", {"backbone": "resnet18"})
    spec = ModelSpec("pipnet", {"num_lms": 68})
    assert (
        spec.full_args()["net_stride"] == 32 and spec.num_lms == 68 and spec.decode == "pipnet_nrm"
    )


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2"])
def test_torchvision_classifier_names_match(public_state_dicts, name):
    key = {"resnet18": "torchvision_resnet18", "mobilenetv2": "torchvision_mobilenet_v2"}[name]
    assert _names_and_shapes(build_backbone(name, num_classes=1000)) == public_state_dicts[key]


def test_backbone_weights_from_file_load_into_pipnet(tmp_path):
    imagenet = build_backbone("resnet18", num_classes=1000)  # a torchvision-format file
    path = tmp_path / "resnet18.pth"
    torch.save(imagenet.state_dict(), path)
    model = ModelSpec("pipnet", dict(backbone="resnet18")).build()
    loaded = load_backbone_weights(model, "resnet18", imagenet_state_dict("resnet18", path))
    assert loaded == len(build_backbone("resnet18").state_dict())
    torch.testing.assert_close(model.layer3[1].conv2.weight, imagenet.layer3[1].conv2.weight)
    assert model.cls_layer.weight.abs().max() < 0.01  # heads keep their own initialisation


def test_backbone_weights_for_another_architecture_are_rejected(tmp_path):
    path = tmp_path / "mbv2.pth"
    torch.save(build_backbone("mobilenetv2", num_classes=1000).state_dict(), path)
    model = ModelSpec("pipnet", dict(backbone="resnet18")).build()
    with pytest.raises(LmkError, match="not resnet18 ImageNet weights"):
        load_backbone_weights(model, "resnet18", imagenet_state_dict("resnet18", path))


def test_backbone_weights_missing_or_corrupt_file_is_one_line_error(tmp_path):
    with pytest.raises(LmkError, match="not found"):
        imagenet_state_dict("resnet18", tmp_path / "absent.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(LmkError, match="cannot read"):
        imagenet_state_dict("resnet18", bad)


def test_backbone_download_failure_says_how_to_work_offline(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(LmkError, match="--backbone-weights PATH") as info:
        imagenet_state_dict("resnet50")
    assert "resnet50-0676ba61.pth" in str(info.value)
