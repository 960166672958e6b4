"""The self-description an exported lmk ONNX file carries: every ``lmk.*`` metadata key, typed,
in one definition.

The exporter builds a :class:`ModelInfo` and writes :meth:`ModelInfo.to_props` into the file's
``metadata_props`` (one JSON value per key); the runtime reads those strings back
(ONNX Runtime's ``custom_metadata_map`` gives the same) with
:func:`lmk.runtime.metadata.parse_metadata`, which checks each value's type and range and
returns the same class. A field here is a key there: ``input_size`` is ``lmk.input_size``.

Adding a key: add a field (with a default, so files written before it still load), write it
in the exporter, and check it in ``lmk/runtime/metadata.py``. A key that changes what a file
means to an older runtime needs :data:`FORMAT_VERSION` raised.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FORMAT_VERSION = 1
"""``lmk.format``: a runtime refuses files of a newer format."""

PREFIX = "lmk."

INPUT_FORMATS = ("uint8_nhwc_bgr", "float_nchw_rgb")
"""``lmk.input_format``: what the graph's ``image`` input takes (see the README)."""

PRECISIONS = ("fp32", "fp16", "int8")
"""``lmk.precision``: the network's compute precision (IO and the decode stay FP32)."""


@dataclass(frozen=True)
class ModelInfo:
    """Everything the runtime needs to feed an exported file and read its outputs, and what
    the file records about where it came from."""

    # -- required: a file without one of these is refused ------------------------------------
    model: str
    """The model family (``lmk.models.FAMILIES``)."""
    layout: str
    """Layout name: a public one (wflw98, 300w68, cofw29, aflw19) or a custom one described
    by ``meanface``, ``flip`` and ``nme_norm``."""
    num_landmarks: int
    input_size: int
    """Side of the square input crop, pixels."""
    input_format: str
    """One of :data:`INPUT_FORMATS`."""
    mean: tuple[float, ...]
    std: tuple[float, ...]
    """Normalisation ``(pixel / 255 - mean) / std`` per channel (in the graph for uint8 input)."""
    decode: str
    """A decode of :data:`lmk.core.decode.DECODE_NAMES`; ``none``: the outputs are raw heads."""
    num_nb: int
    """PIPNet neighbours per landmark (0 for decodes without a neighbour merge)."""
    net_stride: int
    """Crop pixels per cell of the maps the decode reads."""
    meanface: tuple[float, ...]
    """2L floats, x y per point, normalised to the crop."""
    flip: tuple[int, ...]
    """Horizontal-flip permutation of the points."""
    crop: dict[str, Any]
    """How a face box becomes the crop (:class:`lmk.core.geometry.CropPolicy` as a dict)."""
    version: str
    """The lmk version that wrote the file."""
    # -- optional: files from earlier lmk versions may lack them -----------------------------
    raw_decode: str = ""
    """The decode the raw heads need (equals ``decode`` unless that is ``none``); read from
    ``lmk.raw_decode``, or taken from ``decode`` when absent."""
    format: int = FORMAT_VERSION
    model_args: dict[str, Any] = field(default_factory=dict)
    """The family's constructor arguments, defaults filled in."""
    channel_order: str = "rgb"
    """Which channel order the network takes (``rgb`` or ``bgr``)."""
    outputs: tuple[str, ...] = ()
    """The graph's outputs, in order: ``landmarks scores`` or the decode's raw heads."""
    nme_norm: str | tuple[int, int] | None = None
    """NME normaliser: two point indices (inter-ocular) or ``box``; required for a custom
    layout."""
    precision: str = "fp32"
    """One of :data:`PRECISIONS`."""
    batch: int | str = "dynamic"
    """A fixed batch size, or ``dynamic``."""
    provenance: dict[str, Any] = field(default_factory=dict)
    """Where the weights came from (plain values only)."""
    weight_storage: str | None = None
    """``fp16`` when FP32 compute reads FP16-stored weights (``--store-fp16``; written by
    ``lmk.export.exporter.store_weights_fp16``)."""
    int8: dict[str, Any] | None = None
    """How an INT8 file was quantized: ``{"target", "activations", "recipe"}`` (written by
    ``lmk.export.quantize.add_int8_metadata``)."""
    kind: str = "landmarks"
    """``landmarks``; a ``detector`` file (BlazeFace, written by ``lmk.export.blazeface``) has
    its own keys (boxes, anchors, NMS) and is refused by the landmark runtime's reader."""
    confidence: bool = True
    """Whether ``scores`` measure anything (false for a regression net: faceapi68); the
    tracker then never reads them as evidence of a face."""
    rotate: bool = False
    """The tracker's default for turning crops upright by the eye line (``--rotate``), from
    the family (``Family.upright_crops``: faceapi68 fails on rolled faces)."""
    flip_average: bool = False
    """Flip test-time augmentation inside the graph (``lmk-export --flip-average``): each crop
    runs with its mirror image and the two predictions are averaged (2x the inference)."""
    min_score: float | None = None
    """The score below which the tracker drops a face, set at export from validation scores
    (``lmk.export.checks.validation_min_score``); absent: the tracker's default."""
    extra: dict[str, Any] = field(default_factory=dict)
    """``lmk.*`` keys this version does not know (a newer exporter's additions), as read."""

    def __post_init__(self) -> None:
        if not self.raw_decode:
            object.__setattr__(self, "raw_decode", self.decode)

    @property
    def has_confidence(self) -> bool:
        """Whether the tracker may read ``scores`` as evidence of a face."""
        return self.confidence

    def to_values(self) -> dict[str, Any]:
        """``{"lmk.key": JSON-able value}`` for every key this file has (``None`` left out)."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or value is None:
                continue
            values[PREFIX + f.name] = list(value) if isinstance(value, tuple) else value
        values.update(self.extra)
        return values

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` strings: every value JSON-encoded."""
        return encode(self.to_values())


REQUIRED_KEYS = (
    "lmk.format",
    *(
        PREFIX + f.name
        for f in dataclasses.fields(ModelInfo)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ),
)
"""Keys every lmk file has; a file lacking one is refused."""

KNOWN_KEYS = tuple(PREFIX + f.name for f in dataclasses.fields(ModelInfo) if f.name != "extra")
"""Every key this version reads."""


def encode(values: Mapping[str, Any]) -> dict[str, str]:
    """JSON-encode every value (what goes into ``metadata_props``)."""
    return {key: json.dumps(value, separators=(",", ":")) for key, value in values.items()}
