"""The self-description an exported lmk ONNX file carries (``metadata_props``, JSON values).

Lives on the runtime side (no torch, no onnx package needed: ONNX Runtime's
``custom_metadata_map`` gives the same strings); the exporter writes with :func:`encode`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmk.errors import LmkError
from lmk.layouts import Layout, get_layout

FORMAT_VERSION = 1

REQUIRED_KEYS = (
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
)

EXPORT_HINT = (
    "export one with lmk-export (e.g. lmk-export --model pipnet --checkpoint CKPT -o model.onnx)"
)


@dataclass(frozen=True)
class ModelInfo:
    """Everything the runtime needs to feed an exported file and read its outputs."""

    model: str
    layout: str
    num_landmarks: int
    input_size: int
    input_format: str  # uint8_nhwc_bgr | float_nchw_rgb
    mean: tuple[float, ...]
    std: tuple[float, ...]
    decode: str  # pipnet_nrm | heatmap_quarter | none
    raw_decode: str  # the decode the raw heads need (equals decode unless decode is none)
    num_nb: int
    net_stride: int
    meanface: tuple[float, ...]
    flip: tuple[int, ...]
    crop: dict[str, Any]
    precision: str
    version: str
    extra: dict[str, Any]


def encode(values: Mapping[str, Any]) -> dict[str, str]:
    """JSON-encode every value (what goes into ``metadata_props``)."""
    return {key: json.dumps(value, separators=(",", ":")) for key, value in values.items()}


def parse_metadata(props: Mapping[str, str], source: str = "model") -> ModelInfo:
    """Decode ``metadata_props``; a file without lmk metadata gets an error saying how to export one."""
    if "lmk.format" not in props:
        raise LmkError(f"{source} has no lmk metadata; {EXPORT_HINT}")
    try:
        values = {key: json.loads(text) for key, text in props.items() if key.startswith("lmk.")}
    except json.JSONDecodeError as exc:
        raise LmkError(f"{source}: corrupt lmk metadata ({exc})") from None
    if values["lmk.format"] > FORMAT_VERSION:
        raise LmkError(
            f"{source}: lmk metadata format {values['lmk.format']} is newer than this lmk"
        )
    missing = [key for key in REQUIRED_KEYS if key not in values]
    if missing:
        raise LmkError(f"{source}: lmk metadata lacks {', '.join(missing)}; {EXPORT_HINT}")
    known = set(REQUIRED_KEYS) | {"lmk.precision", "lmk.raw_decode"}
    return ModelInfo(
        model=values["lmk.model"],
        layout=values["lmk.layout"],
        num_landmarks=int(values["lmk.num_landmarks"]),
        input_size=int(values["lmk.input_size"]),
        input_format=values["lmk.input_format"],
        mean=tuple(values["lmk.mean"]),
        std=tuple(values["lmk.std"]),
        decode=values["lmk.decode"],
        raw_decode=values.get("lmk.raw_decode", values["lmk.decode"]),
        num_nb=int(values["lmk.num_nb"]),
        net_stride=int(values["lmk.net_stride"]),
        meanface=tuple(values["lmk.meanface"]),
        flip=tuple(values["lmk.flip"]),
        crop=dict(values["lmk.crop"]),
        precision=values.get("lmk.precision", "fp32"),
        version=values["lmk.version"],
        extra={k: v for k, v in values.items() if k not in known},
    )


def layout_of(info: ModelInfo) -> Layout:
    """The layout a file describes (flip, mean face, NME pair), falling back to the public
    layout of that name for files without ``lmk.nme_norm``."""
    nme = info.extra.get("lmk.nme_norm")
    if nme is None:
        return get_layout(info.layout)
    return Layout(
        name=info.layout,
        flip=tuple(int(i) for i in info.flip),
        nme_norm=nme if isinstance(nme, str) else (int(nme[0]), int(nme[1])),
        meanface=np.asarray(info.meanface, dtype=np.float64).reshape(-1, 2),
        num_nb=int(info.num_nb) if int(info.num_nb) > 0 else 10,
    )
