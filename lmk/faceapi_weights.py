"""Import face-api.js ``FaceLandmark68Net`` weights from their TF.js files.

The npm package ``@vladmandic/face-api`` (MIT) ships them as ``model/face_landmark_68_model-
weights_manifest.json`` plus the binary shard(s) it lists. The manifest is TF.js's weights
format: a list of groups, each with ``paths`` (shards, concatenated in order) and ``weights``
(name, shape, dtype and an optional ``quantization``: ``uint8``/``uint16`` values ``q`` stand
for ``q * scale + min``, ``float16`` for half floats), packed back to back. This module reads
that format, maps TF's HWIO filters to PyTorch's layout and returns an lmk checkpoint with
face-api.js's own preprocessing and crop rule. Fetching the files is not done here: the
caller passes the manifest's path (``lmk models fetch`` or a test's ``npm pack``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmk.core.errors import LmkError
from lmk.core.jsonfile import read_json_file
from lmk.core.layouts import Layout, get_layout
from lmk.models import ModelSpec, get_family

_DTYPES = {"float32": np.float32, "int32": np.int32}
_QUANTIZED = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}


def read_tfjs_weights(manifest_path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a TF.js weights manifest, dequantized to float32 (or int32), by name."""
    manifest_path = Path(manifest_path)
    groups = read_json_file(manifest_path, "a TF.js weights manifest")
    if not isinstance(groups, list) or not all(
        isinstance(g, dict) and "paths" in g and "weights" in g for g in groups
    ):
        raise LmkError(f"{manifest_path}: not a TF.js weights manifest (no paths/weights)")
    tensors: dict[str, np.ndarray] = {}
    for group in groups:
        data = b"".join(
            _read_shard(manifest_path.parent / p, manifest_path) for p in group["paths"]
        )
        offset = 0
        for entry in group["weights"]:
            array, offset = _decode_entry(entry, data, offset, manifest_path)
            tensors[str(entry["name"])] = array
        if offset != len(data):
            raise LmkError(
                f"{manifest_path}: the shards hold {len(data)} bytes but the manifest "
                f"describes {offset}"
            )
    return tensors


def _read_shard(path: Path, manifest: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise LmkError(
            f"{manifest}: cannot read weight shard {path.name} ({exc.strerror})"
        ) from None


def _decode_entry(
    entry: dict[str, Any], data: bytes, offset: int, manifest: Path
) -> tuple[np.ndarray, int]:
    """One weight at ``offset``: (array, offset after it)."""
    name = entry.get("name", "?")
    try:
        shape = tuple(int(d) for d in entry["shape"])
        quant = entry.get("quantization")
        stored = _QUANTIZED[quant["dtype"]] if quant else _DTYPES[entry["dtype"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise LmkError(f"{manifest}: weight {name!r} has an unsupported entry ({exc})") from None
    count = int(np.prod(shape, dtype=np.int64))
    size = count * np.dtype(stored).itemsize
    if offset + size > len(data):
        raise LmkError(f"{manifest}: the shards end inside weight {name!r}")
    values = np.frombuffer(
        data, dtype=np.dtype(stored).newbyteorder("<"), count=count, offset=offset
    )
    if quant and quant["dtype"] != "float16":
        values = values.astype(np.float64) * float(quant["scale"]) + float(quant["min"])
    return values.astype(_DTYPES.get(entry.get("dtype"), np.float32)).reshape(shape), offset + size


def faceapi_state_dict(tensors: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """TF.js names and HWIO filters -> :class:`~lmk.models.faceapi.FaceLandmark68Net` keys."""
    state: dict[str, torch.Tensor] = {}
    for name, value in tensors.items():
        parts = name.split("/")
        if parts[0] == "fc" and len(parts) == 2:
            key = f"fc.{'weight' if parts[1] == 'weights' else parts[1]}"
            value = value.T if parts[1] == "weights" else value  # [in, out] -> [out, in]
        elif len(parts) == 3 and parts[0].startswith("dense"):
            block, conv, kind = parts
            key, value = _conv_entry(f"{block}.{conv}", kind, value)
        else:
            raise LmkError(f"unexpected weight {name!r}: not a face-api.js FaceLandmark68Net")
        state[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    return state


def _conv_entry(prefix: str, kind: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    if kind == "filters":  # the first block's plain conv: HWIO -> OIHW
        return f"{prefix}.conv.weight", value.transpose(3, 2, 0, 1)
    if kind == "depthwise_filter":  # [3, 3, C, 1] -> [C, 1, 3, 3]
        return f"{prefix}.depthwise.weight", value.transpose(2, 3, 0, 1)
    if kind == "pointwise_filter":  # [1, 1, I, O] -> [O, I, 1, 1]
        return f"{prefix}.pointwise.weight", value.transpose(3, 2, 0, 1)
    if kind == "bias":
        plain = prefix.endswith("conv0") and prefix.startswith("dense0")
        return f"{prefix}.{'conv' if plain else 'pointwise'}.bias", value
    raise LmkError(f"unexpected weight kind {kind!r} under {prefix}")


def load_faceapi68(manifest_path: str | Path) -> Any:
    """An lmk :class:`~lmk.checkpoint.Checkpoint` from face-api.js's 68-point weights."""
    from lmk.checkpoint import Checkpoint

    family = get_family("faceapi68")
    manifest_path = Path(manifest_path)
    state = faceapi_state_dict(read_tfjs_weights(manifest_path))
    checkpoint = Checkpoint(
        spec=ModelSpec(family.name, {}),
        layout=get_layout(family.default_layout),
        state_dict=state,
        normalisation=family.normalisation,
        crop=family.crop,
        provenance={
            "origin": "face-api.js FaceLandmark68Net (MIT), npm @vladmandic/face-api",
            "source": str(manifest_path),
        },
    )
    checkpoint.build_model()  # fail now, with the keys named, if the weights do not fit
    return checkpoint


def import_faceapi68(manifest_path: str | Path, layout: str | Layout | None = None) -> Any:
    """The registry's importer (``importer(path, layout)``): the weights fix the 300W 68-point
    layout, so any other ``--layout`` is an error rather than a silent relabelling."""
    name = layout.name if isinstance(layout, Layout) else layout
    if name not in (None, "300w68"):
        raise LmkError(f"faceapi68 predicts the 300w68 points; --layout {name} does not fit")
    return load_faceapi68(manifest_path)


def export_faceapi68_file(manifest_path: str | Path, path: Path) -> dict:
    """``lmk-export --model faceapi68 --checkpoint MANIFEST`` into ``path`` (the caller's
    temporary name): the report, self-check included (``lmk models fetch faceapi68``)."""
    from lmk.export.exporter import ExportOptions, export_to_file

    report = export_to_file(load_faceapi68(manifest_path), ExportOptions(), path)
    report["parity_vs_pytorch_px"] = f"{report['parity_pixels']:.2e}"
    return report
