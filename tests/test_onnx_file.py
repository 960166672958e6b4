"""runtime/onnx_file.py: an ONNX file's metadata read from its protobuf, as ONNX Runtime reads
it, without loading the graph."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from lmk.runtime.bundled import bundled_model
from lmk.runtime.onnx_file import onnx_metadata


def _ort_metadata(path: Path) -> dict[str, str]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return dict(session.get_modelmeta().custom_metadata_map)


def _tiny_model(path: Path, metadata: dict[str, str]) -> Path:
    """An Identity graph with fields on both sides of the metadata (opset, producer, doc)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, producer_name="test", doc_string="d" * 300)
    helper.set_model_props(model, metadata)
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("family", ["pipnet", "hourglass"])
def test_the_bundled_models_metadata_is_what_onnx_runtime_reads(family):
    path = bundled_model(family)
    found = onnx_metadata(path)
    assert found == _ort_metadata(path)
    assert found["lmk.layout"] and len(found) > 10


def test_metadata_with_long_and_non_ascii_values_and_none(tmp_path):
    props = {"a": "x" * 70_000, "lmk.név": '"é"', "empty": ""}  # a 3-byte length prefix
    assert onnx_metadata(_tiny_model(tmp_path / "m.onnx", props)) == props
    assert onnx_metadata(_tiny_model(tmp_path / "bare.onnx", {})) == {}


def test_a_file_cut_short_or_not_onnx_is_a_value_error(tmp_path):
    data = bundled_model("pipnet").read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not an ONNX file"):
        onnx_metadata(cut)
    text = tmp_path / "notes.onnx"
    text.write_text("hello, this is not a model\n")
    with pytest.raises(ValueError, match="not an ONNX file"):
        onnx_metadata(text)
    with pytest.raises(OSError):
        onnx_metadata(tmp_path / "missing.onnx")


def test_staleness_is_claimed_only_for_an_lmk_file_with_other_values(tmp_path):
    """An older lmk's file has lmk metadata with other values; a file without lmk metadata,
    or one that cannot be read, is not called stale (loading it reports what it is)."""
    import json

    from lmk.runtime.public_models import PUBLIC_MODELS, stale_keys

    model = PUBLIC_MODELS["blazeface"]
    current = model.current()
    same = {k: json.dumps(v) for k, v in current.items()}
    assert stale_keys(model, _tiny_model(tmp_path / "now.onnx", same)) == []
    older = {"lmk.kind": '"detector"'}
    assert stale_keys(model, _tiny_model(tmp_path / "old.onnx", older)) == list(current)
    assert stale_keys(model, _tiny_model(tmp_path / "foreign.onnx", {"author": "x"})) == []
    (tmp_path / "cut.onnx").write_bytes(b"\x0a\xff\xff")
    assert stale_keys(model, tmp_path / "cut.onnx") == []
