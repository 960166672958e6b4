"""The model families: one entry each, holding every decision that depends on the family.

A :class:`Family` says what the family is (a landmark model or a face detector), which class
builds it, how its outputs are decoded, its default layout, the preprocessing and crop rule of
its origin, the stride of its decoded maps, which command-line flags set which constructor
arguments, how those arguments are range-checked, and which function imports its published
weights. Commands, the exporter, the trainer, the benchmarks and the tests ask the entry; none
of them branches on a family's name.

Adding a family (e.g. ``faceapi68``, or a detector such as ``blazeface``):

1. write its module in ``lmk/models/`` (one file per architecture) with the ``nn.Module`` and a
   ``check_args(full, label) -> int`` that range-checks its constructor arguments and returns
   what the crop size must be a multiple of;
2. if it reads published weights, write the importer (``path, layout, **importer_args ->
   Checkpoint``, e.g. in ``lmk/checkpoint.py`` or beside the module);
3. if its outputs need a decode lmk does not have yet, add a :class:`~lmk.core.decode.Decoder`
   to ``lmk/core/decode.py`` (numpy function + ONNX graph builder);
4. add one :class:`Family` to :data:`FAMILIES` below. ``kind="detector"`` marks a family whose
   file is a face detector (``lmk.kind`` in its metadata) rather than a landmark model.

BlazeFace (``lmk-export --model blazeface``) is not a :class:`Family`: it has no layout, no
landmark decode of this table and no lmk checkpoint; its importer reads a ``.tflite`` straight
into an exported file (:mod:`lmk.export.blazeface`), and its anchor/box decode has its own
graph (other inputs, other outputs). Such an imported detector is one :class:`Detector` entry
of :data:`DETECTORS` (its exporter and what its ``--checkpoint`` is). The ``detector`` kind of
:class:`Family` is kept for when a detector is trained or checkpointed by lmk.

How a model's *published* file becomes its lmk ONNX file (``lmk models fetch`` writes it, and
``lmk-export --model`` takes a detector's) is asked here too, of :func:`file_exporter`; the
names ``lmk-export --model`` takes, and its help, come from :func:`export_model_names`.

A :class:`ModelSpec` (family name + constructor arguments) is what checkpoints store, so a
model is rebuilt from plain data and never from pickled code.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from lmk.core.decode import HEATMAP_QUARTER, PIPNET_NRM, REGRESSION, Decoder
from lmk.core.errors import LmkError
from lmk.core.geometry import (
    FACEAPI_CROP,
    FAN_OFFICIAL_CROP,
    PIPNET_OFFICIAL_CROP,
    CropPolicy,
)
from lmk.core.layouts import Layout, NeighbourTable, get_layout
from lmk.core.normalise import FACEAPI_NORMALISATION, IMAGENET, UNIT_RANGE, Normalisation
from lmk.core.tables import by_name
from lmk.models import faceapi, fan, hourglass, pipnet
from lmk.models.arguments import Label, check_input_size, in_range

if TYPE_CHECKING:
    from lmk.checkpoint import Checkpoint

KINDS = ("landmarks", "detector")


@dataclass(frozen=True)
class Family:
    """Everything lmk needs to know about one model family."""

    name: str
    """What ``--model`` and checkpoints call it."""
    kind: str
    """``landmarks`` (crop in, points out) or ``detector`` (frame in, face boxes out)."""
    model_class: type[nn.Module]
    """Its constructor's keyword arguments are the family's model arguments."""
    decoder: Decoder
    """The decode its raw outputs need (an entry of :data:`lmk.core.decode.DECODERS`)."""
    default_layout: str
    """The layout used when neither a checkpoint nor ``--layout`` says."""
    normalisation: Normalisation
    """The preprocessing of its origin: official weights are imported with it, random weights
    get it, and training uses it."""
    crop: CropPolicy
    """How its origin turns a face box into the crop: imported weights and random-weight
    checkpoints carry it (an lmk-trained checkpoint carries the crop it was trained with)."""
    map_stride: Callable[[Mapping[str, Any]], int]
    """Crop pixels per cell of the maps the decode reads, from the full model arguments."""
    flags: Mapping[str, str]
    """Architecture flags that apply to it (besides ``--input-size``) -> constructor argument."""
    check_args: Callable[[Mapping[str, Any], Label], int]
    """Range-checks the full model arguments; returns what the crop size must be a multiple of
    (see ``check_args`` in its module)."""
    int8_recipe: str = "full"
    """``lmk-export --int8``'s default recipe (lmk.export.quantize): ``full`` quantizes every
    op; ``float-trunk`` keeps a residual trunk's sums FP32 (heatmap models: their outliers make
    8-bit Adds useless)."""
    importer: str | None = None
    """``module:function`` reading its published weights (a bare state_dict) as a
    :class:`~lmk.checkpoint.Checkpoint`, called ``importer(path, layout, **args)``; imported
    lazily (it needs torch.load and the checkpoint module)."""
    importer_suffix: str | None = None
    """A file suffix the importer reads itself (``.json``: a TF.js weights manifest) instead of
    a torch file of state_dict tensors."""
    importer_args: tuple[str, ...] = ()
    """The model arguments the importer takes from flags (it reads the rest off the weights)."""
    file_exporter: str | None = None
    """``module:function`` writing the lmk ONNX of its published file with the default export
    options, ``(published file, output) -> report`` (what ``lmk models fetch`` runs)."""
    upright_crops: bool = False
    """The runtime turns its crops upright by the eye line by default (``lmk.rotate``): a net
    that fails on rolled faces (faceapi68: NME68 7.34 % with the roll, 8.15 % without, on
    real-texture clip stills, ``benchmarks/real_photos.py``; 5.95 % and 6.04 % on dlib's
    validation faces, ``benchmarks/real_calibration.py``)."""
    trainable: bool = True
    """``lmk-train`` can train it (an imported-only family, such as faceapi68, cannot: no
    targets or loss for its head)."""
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"family {self.name}: kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def decode(self) -> str:
        return self.decoder.name

    def import_weights(self) -> Callable[..., Checkpoint] | None:
        """The importer of its published weights, or ``None`` when it has none."""
        return None if self.importer is None else _load(self.importer)


def _load(reference: str) -> Callable[..., Any]:
    """``"module:function"`` -> the function, imported only now (exporters and importers pull
    in the export side, onnx and the checkpoint module)."""
    module, function = reference.split(":")
    return getattr(importlib.import_module(module), function)


_HEATMAP_FAMILY: dict[str, Any] = {
    "decoder": HEATMAP_QUARTER,
    "map_stride": lambda args: 4,  # their heatmaps are a quarter of the crop's side
    "int8_recipe": "float-trunk",
}
"""What the stacked-hourglass heatmap families (hourglass, FAN) share."""

FAMILIES: dict[str, Family] = by_name(
    Family(
        name="pipnet",
        kind="landmarks",
        model_class=pipnet.PIPNet,
        decoder=PIPNET_NRM,
        default_layout="wflw98",
        normalisation=IMAGENET,
        crop=PIPNET_OFFICIAL_CROP,
        map_stride=lambda args: int(args["net_stride"]),
        flags={"--backbone": "backbone", "--num-nb": "num_nb", "--net-stride": "net_stride"},
        check_args=pipnet.check_args,
        importer="lmk.checkpoint:load_official_pipnet",
        importer_args=("input_size", "backbone", "num_nb", "net_stride"),
        description="PIPNet (ResNet/MobileNetV2), official .pth weights importable",
    ),
    Family(
        name="hourglass",
        kind="landmarks",
        **_HEATMAP_FAMILY,
        model_class=hourglass.StackedHourglass,
        default_layout="wflw98",
        normalisation=IMAGENET,
        crop=CropPolicy(),
        flags={"--num-stacks": "num_stacks", "--num-features": "num_features"},
        check_args=hourglass.check_args,
        description="stacked hourglass (Newell et al. 2016), trained by lmk",
    ),
    Family(
        name="fan",
        kind="landmarks",
        **_HEATMAP_FAMILY,
        model_class=fan.FAN,
        default_layout="300w68",
        normalisation=UNIT_RANGE,
        crop=FAN_OFFICIAL_CROP,
        flags={"--num-stacks": "num_modules"},
        check_args=fan.check_args,
        importer="lmk.checkpoint:load_face_alignment_fan",
        importer_args=("num_modules",),
        description="face-alignment's FAN, 2DFAN4 .pth.tar weights importable",
    ),
    Family(
        name="faceapi68",
        kind="landmarks",
        model_class=faceapi.FaceLandmark68Net,
        decoder=REGRESSION,
        default_layout="300w68",
        normalisation=FACEAPI_NORMALISATION,
        crop=FACEAPI_CROP,
        map_stride=lambda args: int(args["input_size"]),  # one "cell": the whole crop
        flags={},
        check_args=faceapi.check_args,
        importer="lmk.faceapi_weights:import_faceapi68",
        importer_suffix=".json",
        file_exporter="lmk.faceapi_weights:export_faceapi68_file",
        upright_crops=True,
        trainable=False,
        description="face-api.js FaceLandmark68Net, TF.js weights importable (no training)",
    ),
)
"""Every family by name."""


@dataclass(frozen=True)
class Detector:
    """A face detector imported from its published file straight into an lmk detector file
    (``lmk.kind = detector``): no layout, landmark decode or lmk checkpoint of its own."""

    name: str
    """What ``lmk-export --model`` calls it."""
    checkpoint: str
    """What its ``--checkpoint`` is, for the help and the error when it is missing."""
    exporter: str
    """``module:function``: ``(published file, output, opset=17, batch=None) -> report``, the
    detector file written and self-checked."""

    def load_exporter(self) -> Callable[..., dict]:
        """Its exporter function, imported now (it needs torch and onnx)."""
        return _load(self.exporter)


DETECTORS: dict[str, Detector] = by_name(
    Detector(
        name="blazeface",
        checkpoint="MediaPipe's face_detection_back.tflite or face_detection_short_range.tflite",
        exporter="lmk.export.blazeface:export_blazeface",
    ),
)
"""Every imported face detector by name."""


def export_model_names() -> str:
    """What ``lmk-export --model`` takes, for its help: every family, then every detector
    with what its checkpoint is."""
    detectors = ", ".join(
        f"{d.name} (a face detector; --checkpoint {d.checkpoint})" for d in DETECTORS.values()
    )
    return f"{', '.join(FAMILIES)}, or {detectors}"


def check_export_model(name: str) -> None:
    """Refuse a name that is neither a family nor a detector, listing both, in one line."""
    if name not in FAMILIES and name not in DETECTORS:
        known = ", ".join([*FAMILIES, *DETECTORS])
        raise LmkError(f"unknown model {name!r}; choose from {known}")


def file_exporter(name: str) -> Callable[..., dict] | None:
    """``(published file, output) -> report``: how the published file of family or detector
    ``name`` becomes its lmk ONNX file with the default options; None where lmk has none."""
    check_export_model(name)
    if name in DETECTORS:
        return DETECTORS[name].load_exporter()
    reference = FAMILIES[name].file_exporter
    return None if reference is None else _load(reference)


def get_family(name: str) -> Family:
    """The family called ``name``; an unknown name is a one-line error listing the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise LmkError(f"unknown model {name!r}; choose from {', '.join(FAMILIES)}") from None


@dataclass(frozen=True)
class ModelSpec:
    """A model family and the constructor arguments that differ from its defaults."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        allowed = set(inspect.signature(self.family.model_class).parameters)
        unknown = sorted(set(self.args) - allowed)
        if unknown:
            raise LmkError(
                f"model {self.name!r} has no argument(s) {', '.join(unknown)}; "
                f"it takes {', '.join(sorted(allowed))}"
            )

    @property
    def family(self) -> Family:
        return get_family(self.name)

    def full_args(self) -> dict[str, Any]:
        """Every constructor argument, defaults filled in."""
        params = inspect.signature(self.family.model_class).parameters
        return {k: self.args.get(k, p.default) for k, p in params.items()}

    @property
    def decode(self) -> str:
        return self.family.decode

    @property
    def decoder(self) -> Decoder:
        return self.family.decoder

    @property
    def input_size(self) -> int:
        return int(self.full_args()["input_size"])

    @property
    def num_lms(self) -> int:
        return int(self.full_args()["num_lms"])

    @property
    def map_stride(self) -> int:
        """Crop pixels per cell of the maps its decode reads."""
        return self.family.map_stride(self.full_args())

    @property
    def num_nb(self) -> int:
        """Neighbours per landmark (0 for families without a neighbour merge)."""
        return int(self.full_args().get("num_nb", 0))

    def neighbour_table(self, layout: Layout) -> NeighbourTable | None:
        """The neighbour table its decode needs, ``None`` for decodes that need none."""
        return self.decoder.neighbour_table(layout, self.num_nb)

    def decode_outputs(
        self, outputs: Any, table: NeighbourTable | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The network's raw ``forward`` output (tensors, any device) -> numpy ``(landmarks,
        scores)`` through the reference decode of :mod:`lmk.core.decode`: how validation, the
        export self-check and the benchmarks read a PyTorch model's landmarks."""
        heads = [h.detach().float().cpu().numpy() for h in self.decoder.select_heads(outputs)]
        return self.decoder.decode(heads, table)

    def build(self) -> nn.Module:
        try:
            return self.family.model_class(**self.args)
        except ValueError as exc:  # constructor argument checks: a user error
            raise LmkError(f"cannot build {self.name}: {exc}") from None


def check_model_args(name: str, args: Mapping[str, Any], label: Label = str) -> None:
    """Refuse model arguments no model can be made of (a 0 or 100000 px crop, 0 neighbours,
    0 stacks) before any work: a constructor would accept some of them and fail only when
    traced or trained, or, worse, give numbers. ``label(key)`` names an argument in the
    message (a command-line flag, or a checkpoint's field). Bounds that depend on the number
    of points are checked only when ``num_lms`` is among ``args``."""
    spec = ModelSpec(name, dict(args))
    full = spec.full_args()
    if "num_lms" in args:
        in_range(full["num_lms"], 1, 10000, label("num_lms"))
    else:
        full["num_lms"] = None
    multiple = spec.family.check_args(full, label)
    check_input_size(full["input_size"], multiple, label("input_size"))


def flag_of(name: str, arg: str) -> str:
    """The command-line flag that sets model argument ``arg`` of family ``name``."""
    flags = {a: f for f, a in get_family(name).flags.items()}
    return flags.get(arg, "--" + arg.replace("_", "-"))


def model_args(name: str, flags: Mapping[str, Any], num_lms: int | None = None) -> dict[str, Any]:
    """Constructor arguments from architecture flags (``{"--backbone": "resnet18", ...}``,
    ``None`` for a flag not given). A flag that does not apply to the family, or a value no
    model can be made of (``--input-size 0``, ``--num-nb 0``), is an error naming the flag,
    raised before any tracing or training. With ``num_lms`` (the layout's points) it is among
    the arguments and bounds ``--num-nb``."""
    family = get_family(name)
    given = {flag: value for flag, value in flags.items() if value is not None}
    wrong = [flag for flag in given if flag != "--input-size" and flag not in family.flags]
    if wrong:
        raise LmkError(f"{', '.join(wrong)} does not apply to --model {name}")
    default_size = inspect.signature(family.model_class).parameters["input_size"].default
    args: dict[str, Any] = {"input_size": given.get("--input-size", default_size)}
    args.update(
        {family.flags[flag]: value for flag, value in given.items() if flag in family.flags}
    )
    if num_lms is not None:
        args["num_lms"] = num_lms
    check_model_args(name, args, label=lambda key: flag_of(name, key))
    return args


def random_checkpoint(
    family: str,
    args: Mapping[str, Any] | None = None,
    seed: int = 0,
    layout: str | Layout | None = None,
    batchnorm_statistics: bool = False,
) -> Checkpoint:
    """A checkpoint of seeded random weights, for latency and parity work (its landmarks mean
    nothing): the family's own preprocessing and crop rule, its default layout unless given
    (``num_lms`` follows the layout). With ``batchnorm_statistics`` every BatchNorm gets random
    running statistics too (:func:`randomise_batchnorm`), so that eval-mode BN is not an
    identity and the heads carry real values through every layer."""
    import torch

    from lmk.checkpoint import Checkpoint

    entry = get_family(family)
    if isinstance(layout, Layout):
        layout_obj = layout
    else:
        layout_obj = get_layout(layout or entry.default_layout)
    spec = ModelSpec(family, {**dict(args or {}), "num_lms": layout_obj.num_points})
    torch.manual_seed(seed)
    network = spec.build().eval()
    weights = f"random, seed {seed}"
    if batchnorm_statistics:
        randomise_batchnorm(network, seed)
        weights += ", BN statistics rescaled"
    return Checkpoint.from_model(
        network,
        spec,
        layout_obj,
        entry.normalisation,
        entry.crop,
        provenance={"weights": weights},
    )


def randomise_batchnorm(network: nn.Module, seed: int) -> None:
    """Give every BatchNorm random running statistics (mean ~ N(0, 0.1), var in [0.5, 1]).

    Freshly initialised BN layers are identities in eval mode, and through a random
    PIPNet-MobileNetV2 the activations then shrink to ~1e-10: every offset is ~0 and a parity
    check would compare zeros. With these statistics every bench model's heads come out at
    0.02-15 (PIPNet-MobileNetV2 the lowest, FAN's last stack the highest), so the arithmetic
    a parity check compares is real, and no model is pushed toward overflow.
    """
    import torch

    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.0, generator=generator)
