"""The model-family registry and the metadata schema: each family's decisions live in its
entry, random checkpoints come from one function, and the exporter's metadata is the schema's."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lmk.core.errors import LmkError
from lmk.core.metadata import REQUIRED_KEYS, ModelInfo
from lmk.models import FAMILIES, Family, ModelSpec, get_family, model_args, random_checkpoint
from lmk.runtime.metadata import parse_metadata

# Small architectures: every family, built in well under a second.
SMALL = {
    "pipnet": {"backbone": "mobilenetv2", "input_size": 64, "num_nb": 4},
    "hourglass": {"num_stacks": 1, "num_features": 32, "depth": 2, "input_size": 64},
    "fan": {"num_modules": 1, "input_size": 64},
    "faceapi68": {},  # fixed by its weights: 112 px, 68 points (0.36 M parameters)
}


@pytest.fixture(scope="module")
def checkpoints():
    return {name: random_checkpoint(name, SMALL[name], seed=3) for name in FAMILIES}


def test_every_family_has_a_small_architecture_here():
    assert set(SMALL) == set(FAMILIES)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_random_checkpoint_carries_the_familys_preprocessing_crop_and_layout(checkpoints, name):
    family = get_family(name)
    ckpt = checkpoints[name]
    assert ckpt.spec.name == name
    assert ckpt.normalisation == family.normalisation
    assert ckpt.crop == family.crop
    assert ckpt.layout.name == family.default_layout
    assert ckpt.spec.num_lms == ckpt.layout.num_points
    assert ckpt.provenance["weights"] == "random, seed 3"
    assert ckpt.build_model() is not None  # the weights fit the architecture (strict load)


def test_random_checkpoint_is_reproducible_by_seed_and_differs_across_seeds(checkpoints):
    again = random_checkpoint("pipnet", SMALL["pipnet"], seed=3)
    other = random_checkpoint("pipnet", SMALL["pipnet"], seed=4)
    first = checkpoints["pipnet"].state_dict
    assert all(torch.equal(first[k], again.state_dict[k]) for k in first)
    assert not all(torch.equal(first[k], other.state_dict[k]) for k in first)


def test_random_checkpoint_with_batchnorm_statistics_makes_bn_no_identity():
    plain = random_checkpoint("hourglass", SMALL["hourglass"], seed=0)
    rescaled = random_checkpoint("hourglass", SMALL["hourglass"], 0, batchnorm_statistics=True)
    var = [k for k in plain.state_dict if k.endswith("running_var")]
    assert var and all(torch.all(plain.state_dict[k] == 1) for k in var)
    assert all(torch.all(rescaled.state_dict[k] < 1) for k in var)
    assert "BN statistics" in rescaled.provenance["weights"]


def test_random_checkpoint_follows_a_given_layout():
    ckpt = random_checkpoint("hourglass", SMALL["hourglass"], layout="aflw19")
    assert ckpt.spec.num_lms == 19 and ckpt.layout.name == "aflw19"


def test_families_decide_decode_stride_and_neighbour_table(checkpoints):
    pip = checkpoints["pipnet"]
    assert pip.spec.map_stride == 32 and pip.spec.neighbour_table(pip.layout).num_nb == 4
    assert ModelSpec("pipnet", {"net_stride": 16}).map_stride == 16
    for name in ("hourglass", "fan"):
        spec = checkpoints[name].spec
        assert spec.map_stride == 4 and spec.neighbour_table(checkpoints[name].layout) is None
        assert spec.decoder.stacked


def test_flags_map_to_each_familys_own_arguments():
    assert model_args("fan", {"--num-stacks": 2}) == {"input_size": 256, "num_modules": 2}
    assert model_args("hourglass", {"--num-stacks": 2, "--num-features": None}) == {
        "input_size": 256,
        "num_stacks": 2,
    }
    with pytest.raises(LmkError, match="--backbone does not apply to --model fan"):
        model_args("fan", {"--backbone": "resnet18"})
    with pytest.raises(LmkError, match=r"--num-stacks must be 1 to 8, got 0"):
        model_args("fan", {"--num-stacks": 0})
    with pytest.raises(LmkError, match=r"--num-nb must be 1 to 18, got 19"):
        model_args("pipnet", {"--num-nb": 19}, num_lms=19)


def test_unknown_family_lists_the_known_ones():
    with pytest.raises(LmkError, match="unknown model 'blaze'; choose from pipnet, hourglass, fan"):
        get_family("blaze")


def test_family_kind_is_landmarks_or_detector():
    pipnet = get_family("pipnet")
    assert all(f.kind == "landmarks" for f in FAMILIES.values())
    assert dataclasses.replace(pipnet, name="d", kind="detector").kind == "detector"
    with pytest.raises(ValueError, match="kind must be one of"):
        dataclasses.replace(pipnet, kind="segmenter")
    assert isinstance(pipnet, Family)


def test_a_family_without_published_weights_refuses_a_bare_state_dict(tmp_path):
    from lmk.checkpoint import open_checkpoint

    path = tmp_path / "bare.pth"
    torch.save({"w": torch.zeros(1)}, path)
    with pytest.raises(LmkError, match="--model pipnet, --model fan can be imported"):
        open_checkpoint(path, model="hourglass")


@pytest.mark.parametrize("decode", ["fused", "none"])
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_exporter_metadata_is_the_schema_and_reads_back_unchanged(checkpoints, name, decode):
    from lmk.export.exporter import ExportOptions, model_info

    info = model_info(checkpoints[name], ExportOptions(decode=decode, batch=4))
    props = info.to_props()
    # every key of the schema is written (weight_storage and int8 only by --store-fp16 and
    # --int8 exports, min_score only after a trained model's self-check: added after this)
    fields = {f"lmk.{f.name}" for f in dataclasses.fields(ModelInfo)} - {"lmk.extra"}
    assert set(props) == fields - {"lmk.weight_storage", "lmk.int8", "lmk.min_score"}
    assert set(REQUIRED_KEYS) <= set(props)
    assert parse_metadata(props) == info
    heads = checkpoints[name].spec.decoder.heads
    assert info.outputs == (("landmarks", "scores") if decode == "fused" else heads)
    assert np.allclose(info.meanface, checkpoints[name].layout.meanface.reshape(-1))


def test_the_required_keys_are_the_contracts():
    assert set(REQUIRED_KEYS) == {
        "lmk.format",
        "lmk.model",
        "lmk.layout",
        "lmk.num_landmarks",
        "lmk.input_size",
        "lmk.input_format",
        "lmk.mean",
        "lmk.std",
        "lmk.decode",
        "lmk.num_nb",
        "lmk.net_stride",
        "lmk.meanface",
        "lmk.flip",
        "lmk.crop",
        "lmk.version",
    }


def test_every_fetchable_model_names_an_exporter_of_the_registry():
    """``lmk models fetch`` asks the registry for the exporter of each public model's family;
    a table entry naming a family without one would fetch and then write no lmk ONNX."""
    from lmk.models.registry import DETECTORS, file_exporter
    from lmk.runtime.public_models import PUBLIC_MODELS

    for model in PUBLIC_MODELS.values():
        assert model.family is not None and callable(file_exporter(model.family)), model.name
        assert (model.family in DETECTORS) == (model.kind == "detector"), model.name
    assert file_exporter("hourglass") is None  # trained by lmk: nothing published to import
    with pytest.raises(LmkError, match=r"unknown model 'hrnet'; choose from pipnet, .*blazeface"):
        file_exporter("hrnet")


def test_lmk_export_help_lists_every_family_and_detector_from_the_registry():
    from click.testing import CliRunner

    from lmk.export.cli import export_command
    from lmk.models.registry import DETECTORS

    shown = " ".join(CliRunner().invoke(export_command, ["--help"]).output.split())
    for name in [*FAMILIES, *DETECTORS]:
        assert name in shown
    assert "blazeface (a face detector; --checkpoint MediaPipe's face_detection_back" in shown


def test_a_table_refuses_two_entries_of_one_name():
    """A dict comprehension would keep the second entry and drop the first without a word."""
    from lmk.core.tables import by_name

    first, second = dataclasses.replace(FAMILIES["fan"]), dataclasses.replace(FAMILIES["fan"])
    assert list(by_name(FAMILIES["pipnet"], first)) == ["pipnet", "fan"]
    with pytest.raises(ValueError, match="two table entries are named 'fan'"):
        by_name(first, FAMILIES["pipnet"], second)
