"""Reading and checking the self-description of an exported lmk ONNX file.

The keys and their types are defined once, in :mod:`lmk.core.metadata` (the exporter writes
that class); this module turns ``metadata_props`` strings (ONNX Runtime's
``custom_metadata_map`` gives the same, so no onnx package is needed) back into it, checking
every value's type and range, and the values against the graph and against each other.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from lmk.core.decode import DECODE_NAMES, DECODERS, NO_DECODE, get_decoder
from lmk.core.errors import LmkError
from lmk.core.layouts import PUBLIC_LAYOUTS, Layout, get_layout
from lmk.core.metadata import (
    FORMAT_VERSION,
    INPUT_FORMATS,
    KNOWN_KEYS,
    PRECISIONS,
    PREFIX,
    REQUIRED_KEYS,
    ModelInfo,
)

EXPORT_HINT = (
    "export one with lmk-export (e.g. lmk-export --model pipnet --checkpoint CKPT -o model.onnx)"
)


# The crop side as a multiple of the box (lmk 1.2, face-alignment 2.05); far outside this a
# crop is degenerate or a box's worth of pixels.
ENLARGE_RANGE = (0.01, 100.0)


class TensorSpec(NamedTuple):
    """A graph input or output as ONNX Runtime describes it (``NodeArg``): a ``None`` or
    string dimension is dynamic."""

    name: str
    shape: tuple[Any, ...] | None
    type: str


@dataclass(frozen=True)
class GraphSpec:
    """The real inputs and outputs of a file, to check its metadata against."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @classmethod
    def of(cls, session: Any) -> GraphSpec:
        """From an ``onnxruntime.InferenceSession``."""

        def specs(args: Any) -> tuple[TensorSpec, ...]:
            return tuple(
                TensorSpec(a.name, None if a.shape is None else tuple(a.shape), a.type)
                for a in args
            )

        return cls(specs(session.get_inputs()), specs(session.get_outputs()))

    def output(self, name: str) -> TensorSpec | None:
        return next((o for o in self.outputs if o.name == name), None)


class _Reader:
    """Typed access to decoded metadata: a value of the wrong type or range is an error
    naming its key (never a ``TypeError`` from deep inside the runtime)."""

    def __init__(self, values: dict[str, Any], source: str):
        self.values, self.source = values, source

    def fail(self, key: str, expected: str) -> LmkError:
        shown = json.dumps(self.values.get(key))
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return LmkError(f"{self.source}: lmk metadata {key} must be {expected}, got {shown}")

    def integer(self, key: str, minimum: int) -> int:
        value = self.values[key]
        if not _is_int(value) or value < minimum:
            raise self.fail(key, f"an integer >= {minimum}")
        return int(value)

    def name(self, key: str, choices: tuple[str, ...] | None = None) -> str:
        value = self.values[key]
        if not isinstance(value, str) or not value or (choices and value not in choices):
            raise self.fail(key, f"one of {', '.join(choices)}" if choices else "a name")
        return value

    def floats(self, key: str, length: int | None = None, positive: bool = False) -> tuple:
        value = self.values[key]
        ok = isinstance(value, list) and all(_is_number(v) and math.isfinite(v) for v in value)
        if ok and positive:
            ok = all(v > 0 for v in value)
        if not ok or (length is not None and len(value) != length):
            count = f"{length} " if length is not None else ""
            kind = "positive " if positive else ""
            raise self.fail(key, f"a list of {count}finite {kind}numbers")
        return tuple(float(v) for v in value)

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.values[key]
        if not isinstance(value, dict):
            raise self.fail(key, "an object")
        return dict(value)

    def names(self, key: str) -> list[str]:
        value = self.values[key]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, "a list of names")
        return list(value)

    def boolean(self, key: str) -> bool:
        value = self.values[key]
        if not isinstance(value, bool):
            raise self.fail(key, "true or false")
        return value

    def fraction(self, key: str) -> float:
        value = self.values[key]
        if not _is_number(value) or not 0.0 <= float(value) <= 1.0:
            raise self.fail(key, "a number from 0 to 1")
        return float(value)

    def integers(self, key: str) -> tuple[int, ...]:
        value = self.values[key]
        if not isinstance(value, list) or not all(_is_int(v) for v in value):
            raise self.fail(key, "a list of integers")
        return tuple(int(v) for v in value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _crop(reader: _Reader) -> dict[str, Any]:
    """``lmk.crop``: the crop policy; a non-positive ``enlarge`` would give empty crops (and
    no face found, silently)."""
    key = "lmk.crop"
    crop = reader.values[key]
    if not isinstance(crop, dict):
        raise reader.fail(key, 'an object {"enlarge": ..., "shift_y": ..., "square": ...}')
    enlarge = crop.get("enlarge")
    low, high = ENLARGE_RANGE
    if not _is_number(enlarge) or not low <= enlarge <= high:
        raise LmkError(
            f"{reader.source}: lmk metadata lmk.crop.enlarge must be a number > 0 "
            f"(between {low:g} and {high:g}), got {json.dumps(enlarge)}"
        )
    shift = crop.get("shift_y", 0.0)
    if not _is_number(shift) or not math.isfinite(shift):
        raise LmkError(
            f"{reader.source}: lmk metadata lmk.crop.shift_y must be a finite number, "
            f"got {json.dumps(shift)}"
        )
    if not isinstance(crop.get("square", True), bool):
        raise LmkError(f"{reader.source}: lmk metadata lmk.crop.square must be true or false")
    if crop.get("side", "mean") not in ("mean", "max"):
        raise LmkError(f'{reader.source}: lmk metadata lmk.crop.side must be "mean" or "max"')
    return dict(crop)


def parse_metadata(
    props: Mapping[str, str], source: str = "model", graph: GraphSpec | None = None
) -> ModelInfo:
    """Decode and check ``metadata_props``; a file without lmk metadata gets an error saying
    how to export one. Every value is checked for type and range, then (with ``graph``)
    against the file's real input and output shapes, then against each other (mean face,
    flip table and layout against the number of points): a mismatch is one error naming
    the key, never a malformed output or a traceback later."""
    if "lmk.format" not in props:
        raise LmkError(f"{source} has no lmk metadata; {EXPORT_HINT}")
    try:
        values = {key: json.loads(text) for key, text in props.items() if key.startswith("lmk.")}
    except json.JSONDecodeError as exc:
        raise LmkError(f"{source}: corrupt lmk metadata ({exc})") from None
    if values.get("lmk.kind") == "detector":
        raise LmkError(
            f"{source} is a face detector file (lmk.kind = detector), not a landmark model; "
            "pass it as --detector-model"
        )
    reader = _Reader(values, source)
    if reader.integer("lmk.format", 1) > FORMAT_VERSION:
        raise LmkError(
            f"{source}: lmk metadata format {values['lmk.format']} is newer than this lmk"
        )
    missing = [key for key in REQUIRED_KEYS if key not in values]
    if missing:
        raise LmkError(f"{source}: lmk metadata lacks {', '.join(missing)}; {EXPORT_HINT}")
    raw_decodes = tuple(DECODERS)
    decode = reader.name("lmk.decode", DECODE_NAMES)
    raw_decode = (
        reader.name("lmk.raw_decode", raw_decodes) if "lmk.raw_decode" in values else decode
    )
    if decode == NO_DECODE and raw_decode == NO_DECODE:
        raise reader.fail(
            "lmk.raw_decode", f"one of {', '.join(raw_decodes)} when lmk.decode is none"
        )
    if decode != NO_DECODE and raw_decode != decode:
        raise reader.fail("lmk.raw_decode", f"{json.dumps(decode)} (what lmk.decode says)")
    nme = values.get("lmk.nme_norm")
    pair = isinstance(nme, list) and len(nme) == 2 and all(_is_int(v) for v in nme)
    if nme is not None and nme != "box" and not pair:
        raise reader.fail("lmk.nme_norm", '"box" or a list of two point indices')
    optional = {
        "channel_order": lambda key: reader.name(key, ("rgb", "bgr")),
        "model_args": lambda key: reader.mapping(key),
        "outputs": lambda key: tuple(reader.names(key)),
        "precision": lambda key: reader.name(key, PRECISIONS),
        "batch": lambda key: values[key] if values[key] == "dynamic" else reader.integer(key, 1),
        "provenance": lambda key: reader.mapping(key),
        "weight_storage": lambda key: reader.name(key, ("fp16",)),
        "int8": lambda key: reader.mapping(key),
        "kind": lambda key: reader.name(key, ("landmarks",)),
        "confidence": lambda key: reader.boolean(key),
        "flip_average": lambda key: reader.boolean(key),
        "rotate": lambda key: reader.boolean(key),
        "min_score": lambda key: reader.fraction(key),
    }
    info = ModelInfo(
        model=reader.name("lmk.model"),
        layout=reader.name("lmk.layout"),
        num_landmarks=reader.integer("lmk.num_landmarks", 1),
        input_size=reader.integer("lmk.input_size", 1),
        input_format=reader.name("lmk.input_format", INPUT_FORMATS),
        mean=reader.floats("lmk.mean", 3),
        std=reader.floats("lmk.std", 3, positive=True),
        decode=decode,
        raw_decode=raw_decode,
        num_nb=reader.integer("lmk.num_nb", 0),
        net_stride=reader.integer("lmk.net_stride", 1),
        meanface=reader.floats("lmk.meanface"),
        flip=reader.integers("lmk.flip"),
        crop=_crop(reader),
        version=str(values["lmk.version"]),
        format=int(values["lmk.format"]),
        nme_norm=None if nme is None else nme if isinstance(nme, str) else (nme[0], nme[1]),
        **{name: read(PREFIX + name) for name, read in optional.items() if PREFIX + name in values},
        extra={k: v for k, v in values.items() if k not in KNOWN_KEYS},
    )
    if graph is not None:
        check_graph(info, graph, source)
    _check_consistent(info, source)
    return info


def _dims(spec: TensorSpec) -> str:
    shape = "?" if spec.shape is None else ", ".join(str(d) for d in spec.shape)
    return f"{spec.name!r} [{shape}]"


def _differs(spec: TensorSpec, axis: int, want: int) -> bool:
    """A fixed dimension of ``spec`` that is not ``want`` (dynamic ones never differ)."""
    if spec.shape is None or axis >= len(spec.shape):
        return False
    dim = spec.shape[axis]
    return isinstance(dim, int) and dim != want


def _rank_differs(spec: TensorSpec, rank: int) -> bool:
    return spec.shape is not None and len(spec.shape) != rank


def check_graph(info: ModelInfo, graph: GraphSpec, source: str = "model") -> None:
    """The metadata against the graph: the image input's type and size, the landmark count
    of the outputs (or raw heads) and PIPNet's neighbour count. Fixed dimensions must match;
    dynamic ones are skipped."""

    def fail(key: str, value: Any, what: str) -> LmkError:
        return LmkError(f"{source}: lmk metadata {key} is {json.dumps(value)} but {what}")

    if len(graph.inputs) != 1:
        raise LmkError(
            f"{source}: the graph has {len(graph.inputs)} inputs; an lmk file has one image input"
        )
    image = graph.inputs[0]
    size, num = info.input_size, info.num_landmarks
    if info.input_format == "uint8_nhwc_bgr":
        want_type, size_axes, channel_axis = "tensor(uint8)", (1, 2), 3
    else:
        want_type, size_axes, channel_axis = "tensor(float)", (2, 3), 1
    if image.type != want_type or _rank_differs(image, 4) or _differs(image, channel_axis, 3):
        raise fail(
            "lmk.input_format",
            info.input_format,
            f"the graph's input {_dims(image)} is {image.type}",
        )
    if any(_differs(image, axis, size) for axis in size_axes):
        raise fail("lmk.input_size", size, f"the graph's input is {_dims(image)}")
    if info.decode != "none":
        landmarks = graph.output("landmarks")
        if landmarks is None:
            raise LmkError(f"{source}: a decoded file must have a 'landmarks' output")
        if _rank_differs(landmarks, 3) or _differs(landmarks, 2, 2):
            raise LmkError(f"{source}: the 'landmarks' output {_dims(landmarks)} is not [N, L, 2]")
        if _differs(landmarks, 1, num):
            raise fail("lmk.num_landmarks", num, f"the graph's output is {_dims(landmarks)}")
        scores = graph.output("scores")
        if scores is not None and (_rank_differs(scores, 2) or _differs(scores, 1, num)):
            raise fail("lmk.num_landmarks", num, f"the graph's output is {_dims(scores)}")
        return
    decoder = get_decoder(info.raw_decode)
    missing = [name for name in decoder.heads if graph.output(name) is None]
    if missing:
        raise LmkError(
            f"{source}: lmk metadata lmk.raw_decode is {json.dumps(decoder.name)} but the graph "
            f"lacks the head{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
        )
    for name in decoder.heads:
        head = graph.output(name)
        assert head is not None
        if not decoder.map_heads:  # coordinates [N, 2L], x y interleaved
            if _rank_differs(head, 2) or _differs(head, 1, 2 * num):
                raise fail("lmk.num_landmarks", num, f"the graph's {name} head is {_dims(head)}")
        elif name in decoder.neighbour_heads:
            if _rank_differs(head, 4) or _differs(head, 1, num * info.num_nb):
                raise fail(
                    "lmk.num_nb",
                    info.num_nb,
                    f"the graph's {name} head is {_dims(head)} ({num} points x neighbours)",
                )
        elif _rank_differs(head, 4) or _differs(head, 1, num):
            raise fail("lmk.num_landmarks", num, f"the graph's {name} head is {_dims(head)}")


def _check_consistent(info: ModelInfo, source: str) -> None:
    """The metadata against itself: mean face and flip table against the number of points,
    the layout against the layout table, PIPNet's neighbour count against the points."""
    num = info.num_landmarks
    if len(info.meanface) != 2 * num:
        raise LmkError(
            f"{source}: lmk metadata lmk.meanface has {len(info.meanface)} values; "
            f"{num} points (lmk.num_landmarks) need {2 * num}"
        )
    if len(info.flip) != num:
        raise LmkError(
            f"{source}: lmk metadata lmk.flip has {len(info.flip)} entries; "
            f"lmk.num_landmarks is {num}"
        )
    if get_decoder(info.raw_decode).uses_neighbours and not 1 <= info.num_nb <= num - 1:
        raise LmkError(
            f"{source}: lmk metadata lmk.num_nb is {info.num_nb}; PIPNet's neighbour count "
            f"must be between 1 and {num - 1} for {num} points"
        )
    if info.layout in PUBLIC_LAYOUTS:
        points = get_layout(info.layout).num_points
        if points != num:
            raise LmkError(
                f"{source}: lmk metadata lmk.layout is {info.layout!r}, a {points}-point layout, "
                f"but lmk.num_landmarks is {num}"
            )
    else:
        # A custom layout (lmk-train on the user's own data) is described by the file itself;
        # an unknown name over a public layout's description is a typo or an edit.
        unknown = f"{source}: lmk metadata lmk.layout {info.layout!r} is not a known layout"
        if info.nme_norm is None:
            raise LmkError(
                f"{unknown} ({', '.join(PUBLIC_LAYOUTS)}) and the file does not describe a "
                "custom one (no lmk.nme_norm)"
            )
        meanface = np.asarray(info.meanface, dtype=np.float64).reshape(-1, 2)
        for name in PUBLIC_LAYOUTS:
            public = get_layout(name)
            if (
                public.num_points == num
                and public.flip == info.flip
                and np.allclose(public.meanface, meanface, atol=1e-6)
            ):
                raise LmkError(f"{unknown}; its flip table and mean face are {name}'s")
    try:
        layout_of(info)
    except LmkError as exc:
        raise LmkError(f"{source}: lmk metadata: {exc}") from None


def layout_of(info: ModelInfo) -> Layout:
    """The layout a file describes: its own flip table and mean face (the one its neighbour
    table was built from), and its NME pair, or for files without ``lmk.nme_norm`` the public
    layout's of that name."""
    return Layout(
        name=info.layout,
        flip=tuple(int(i) for i in info.flip),
        nme_norm=info.nme_norm if info.nme_norm is not None else get_layout(info.layout).nme_norm,
        meanface=np.asarray(info.meanface, dtype=np.float64).reshape(-1, 2),
        num_nb=int(info.num_nb) if int(info.num_nb) > 0 else 10,
    )
