"""Checkpoints: lmk's own file, plus the official PIPNet and face-alignment FAN releases.

An lmk checkpoint (docs/design.md section 8) holds plain data only (model name and arguments, layout,
mean face, input size, normalisation, crop policy, provenance) beside the state_dict, and is
read with ``torch.load(weights_only=True)``: no pickled code runs. Imported checkpoints carry
only weights; the other fields come from their origin's conventions or from arguments.
"""

from __future__ import annotations

import math
import platform
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

import lmk
from lmk.core.errors import LmkError
from lmk.core.fileio import atomic_output
from lmk.core.geometry import CropPolicy
from lmk.core.layouts import Layout, get_layout
from lmk.core.normalise import IMAGENET, Normalisation
from lmk.models import FAMILIES, ModelSpec, check_model_args, get_family

FORMAT = "lmk.checkpoint/1"


# The public layout each point count implies when a bare state_dict does not say.
_LAYOUT_BY_POINTS = {98: "wflw98", 68: "300w68", 29: "cofw29", 19: "aflw19"}


@dataclass
class Checkpoint:
    """Everything needed to rebuild, export and run a trained model."""

    spec: ModelSpec
    layout: Layout
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    normalisation: Normalisation = IMAGENET
    crop: CropPolicy = field(default_factory=CropPolicy)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    def build_model(self) -> nn.Module:
        """The model with these weights loaded (``strict``), in eval mode."""
        model = self.spec.build()
        load_state_dict_strict(model, self.state_dict, what=f"{self.spec.name} checkpoint")
        return model.eval()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "model": self.spec.name,
            "model_args": dict(self.spec.args),
            "layout": self.layout.to_dict(),
            "input_size": self.input_size,
            "normalisation": self.normalisation.to_dict(),
            "crop": self.crop.to_dict(),
            "provenance": dict(self.provenance),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict.items()},
        }

    def with_fp16_storage(self) -> Checkpoint:
        """A copy whose floating-point tensors are stored as FP16 (half the file; loading
        casts them back into the FP32 model): for shipping small models."""
        state = {
            k: v.detach().half() if v.is_floating_point() else v.detach()
            for k, v in self.state_dict.items()
        }
        provenance = {**self.provenance, "weight_storage": "fp16"}
        return Checkpoint(self.spec, self.layout, state, self.normalisation, self.crop, provenance)

    def save(self, path: str | Path) -> Path:
        """Write atomically (temp file, then rename): a crash never leaves half a checkpoint."""
        path = Path(path)
        with atomic_output(path, overwrite=True) as tmp:
            torch.save(self.to_dict(), tmp)
        return path

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        spec: ModelSpec,
        layout: Layout,
        normalisation: Normalisation = IMAGENET,
        crop: CropPolicy | None = None,
        provenance: Mapping[str, Any] | None = None,
    ) -> Checkpoint:
        info = {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "lmk_version": lmk.__version__,
            "torch_version": str(torch.__version__),
            "python": platform.python_version(),
            **(provenance or {}),
        }
        return cls(
            spec, layout, dict(model.state_dict()), normalisation, crop or CropPolicy(), info
        )


def load_state_dict_strict(model: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line error naming the keys that differ."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(state[k].shape)} (model {tuple(v.shape)})"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", wrong)):
            if keys:
                more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
                parts.append(f"{label}: {', '.join(keys[:3])}{more}")
        raise LmkError(f"{what} does not match the model; " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def not_a_checkpoint(path: Path) -> str | None:
    """Why ``path`` cannot be a PyTorch checkpoint (``"it is a text file"``), or None where it
    may be one: the one place that names a wrong file for every command that loads weights."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise LmkError(f"cannot read checkpoint {path}: {exc.strerror}") from None
    return _looks_like(head, path)


def _looks_like(head: bytes, path: Path) -> str | None:
    """What a file that cannot be a PyTorch checkpoint looks like, from its first bytes (None:
    it may be one). torch.save writes a zip holding ``data.pkl``, older releases a pickle."""
    if not head:
        return "it is empty"
    if head.startswith(b"PK"):
        if not zipfile.is_zipfile(path):
            return "it looks like a damaged or cut-off zip archive"
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if not any(name.endswith("data.pkl") for name in names):
            return "it is a zip archive without data.pkl"
        return None
    if head.startswith(b"\x80"):  # a pickle: the format of torch.save before PyTorch 1.6
        return None
    # ONNX: a protobuf ModelProto starts with ir_version (field 1), then producer or graph.
    if head[0] == 0x08 and len(head) > 2 and head[2] in (0x12, 0x1A, 0x22, 0x28, 0x3A, 0x42):
        return "it looks like an ONNX file"
    text = head[:4096]
    if b"\x00" not in text:
        try:
            text.decode("utf-8")
            return "it is a text file"
        except UnicodeDecodeError as exc:
            if exc.start >= len(text) - 3:  # a character cut at the end of the sample
                return "it is a text file"
    return "its content is not a zip archive or a pickle"


def _read_weights(path: Path) -> Any:
    """torch.load without running pickled code; TorchScript archives give their state_dict.
    A file that is not a checkpoint is refused saying what it is, not with torch's advice."""
    if not path.is_file():
        raise LmkError(f"checkpoint not found: {path}")
    what = not_a_checkpoint(path)
    if what is not None:
        raise LmkError(f"{path} is not a PyTorch checkpoint ({what})")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr
            warnings.simplefilter("ignore")
            if _is_torchscript(path):  # face-alignment >= 1.4 ships TorchScript archives
                return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise LmkError(_load_failure(path, str(exc))) from None


def _load_failure(path: Path, text: str) -> str:
    """torch.load's failure as one line that says what the file is (torch's own message
    advises ``weights_only=False``, which would run the file's pickled code)."""
    found = re.search(r"GLOBAL (\S+)|(\S+) was not an allowed global", text)
    if found:
        name = found.group(1) or found.group(2)
        return (
            f"{path} holds a pickled Python object ({name}) besides tensors and plain data; "
            "lmk does not run pickled code: save the model's state_dict instead"
        )
    if "Invalid magic number" in text:
        return (
            f"{path} is not a PyTorch checkpoint (it is a Python pickle torch.save did not write)"
        )
    reason = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    if reason or "Weights only load failed" in text:
        detail = reason.group(1).strip() if reason else "unreadable pickle"
        return f"{path} is damaged or not a PyTorch checkpoint ({detail})"
    lines = text.strip().splitlines()
    return f"cannot read checkpoint {path}: {lines[0] if lines else 'unknown error'}"


def _bare_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from a bare one, a ``{"state_dict": ...}`` wrapper, or DataParallel names."""
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise LmkError(f"{path} does not hold a state_dict")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read an lmk checkpoint written by :meth:`Checkpoint.save`."""
    path = Path(path)
    return _lmk_checkpoint(_read_weights(path), path)


def _is_lmk(data: Any) -> bool:
    return isinstance(data, Mapping) and str(data.get("format", "")).startswith("lmk.checkpoint")


def _lmk_checkpoint(data: Any, path: Path) -> Checkpoint:
    """An lmk checkpoint from what torch.load read, every field checked: a file edited by
    hand or damaged is refused in one line naming the field, never scored or exported."""
    if not _is_lmk(data):
        raise LmkError(
            f"{path} is not an lmk checkpoint; for an official PIPNet or face-alignment file "
            "name its origin (--model pipnet|fan) so it is read as a bare state_dict"
        )
    if data["format"] != FORMAT:
        raise LmkError(
            f"{path}: checkpoint format {data['format']!r} is newer than this lmk ({FORMAT})"
        )

    def field_(key: str, convert: Callable[[Any], Any]) -> Any:
        if key not in data:
            raise LmkError(f"{path}: lmk checkpoint lacks field {key!r}")
        try:
            return convert(data[key])
        except LmkError as exc:
            raise LmkError(f"{path}: field {key}: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            detail = f"lacks {exc}" if isinstance(exc, KeyError) else f"is malformed ({exc})"
            raise LmkError(f"{path}: field {key} {detail}") from None

    spec = ModelSpec(field_("model", str), field_("model_args", dict))
    checkpoint = Checkpoint(
        spec=spec,
        layout=field_("layout", Layout.from_dict),
        state_dict=field_("state_dict", dict),
        normalisation=field_("normalisation", Normalisation.from_dict),
        crop=field_("crop", CropPolicy.from_dict),
        provenance=field_("provenance", dict) if "provenance" in data else {},
    )
    _check_fields(checkpoint, data, path)
    return checkpoint


def _check_fields(checkpoint: Checkpoint, data: Mapping[str, Any], path: Path) -> None:
    """The values a model cannot run with, or that contradict each other."""
    spec = checkpoint.spec
    check_model_args(spec.name, spec.args, label=lambda key: f"{path}: model_args.{key}")
    if "input_size" in data and data["input_size"] != spec.input_size:
        raise LmkError(
            f"{path}: field input_size {data['input_size']!r} disagrees with "
            f"model_args.input_size {spec.input_size}"
        )
    if checkpoint.layout.num_points != spec.num_lms:
        raise LmkError(
            f"{path}: the model predicts {spec.num_lms} landmarks but layout "
            f"{checkpoint.layout.name!r} has {checkpoint.layout.num_points}"
        )
    norm = checkpoint.normalisation
    values = [*norm.mean, *norm.std]
    if len(norm.mean) != 3 or len(norm.std) != 3 or not all(math.isfinite(v) for v in values):
        raise LmkError(f"{path}: field normalisation needs 3 finite means and 3 finite stds")
    if min(norm.std) <= 0 or norm.channel_order not in ("rgb", "bgr"):
        raise LmkError(f"{path}: field normalisation needs stds > 0 and channel_order rgb or bgr")
    crop = checkpoint.crop
    if not (math.isfinite(crop.enlarge) and 0 < crop.enlarge <= 10 and math.isfinite(crop.shift_y)):
        raise LmkError(
            f"{path}: field crop needs enlarge in (0, 10] and a finite shift_y, got "
            f"enlarge {crop.enlarge}, shift_y {crop.shift_y}"
        )
    if crop.side not in ("mean", "max"):
        raise LmkError(f'{path}: field crop.side must be "mean" or "max", got {crop.side!r}')
    bad = [k for k, v in checkpoint.state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise LmkError(f"{path}: field state_dict holds a non-tensor under {bad[0]!r}")


def _resolve_layout(layout: str | Layout | None, num_lms: int, path: Path) -> Layout:
    if isinstance(layout, Layout):
        resolved = layout
    elif layout is not None:
        resolved = get_layout(layout)
    elif num_lms in _LAYOUT_BY_POINTS:
        resolved = get_layout(_LAYOUT_BY_POINTS[num_lms])
    else:
        raise LmkError(f"{path} has {num_lms} landmarks and no public layout has; pass --layout")
    if resolved.num_points != num_lms:
        raise LmkError(
            f"{path} predicts {num_lms} landmarks but layout {resolved.name!r} has {resolved.num_points}"
        )
    return resolved


def infer_pipnet_args(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Backbone, landmark/neighbour counts and stride read off an official PIPNet state_dict."""
    if "cls_layer.weight" not in state or "nb_x_layer.weight" not in state:
        raise LmkError("not a PIPNet state_dict: no cls_layer/nb_x_layer weights")
    num_lms = int(state["cls_layer.weight"].shape[0])
    num_nb = int(state["nb_x_layer.weight"].shape[0]) // num_lms
    if any(k.startswith("features.") for k in state):
        backbone = "mobilenetv2"
    else:
        blocks = {int(k.split(".")[1]) for k in state if k.startswith("layer3.")}
        bottleneck = "layer1.0.conv3.weight" in state
        depth = len(blocks)
        backbone = {
            (False, 2): "resnet18",
            (False, 6): "resnet34",
            (True, 6): "resnet50",
            (True, 23): "resnet101",
        }.get((bottleneck, depth))
        if backbone is None:
            raise LmkError(f"unrecognised PIPNet backbone ({depth} blocks in layer3)")
    stride = 128 if "layer6.weight" in state else 64 if "layer5.weight" in state else 32
    if "deconv1.weight" in state:
        stride = 16
    return {"backbone": backbone, "num_lms": num_lms, "num_nb": num_nb, "net_stride": stride}


def load_official_pipnet(
    path: str | Path,
    layout: str | Layout | None = None,
    input_size: int = 256,
    **expected: Any,
) -> Checkpoint:
    """An official PIPNet ``.pth`` (bare state_dict); ImageNet RGB normalisation, 1.2x box crop.

    Backbone, stride and counts are read from the weights; any given in ``expected`` (e.g.
    ``backbone="resnet18"`` from a command-line flag) must agree with them.
    """
    path = Path(path)
    state = _bare_state_dict(_read_weights(path), path)
    args = infer_pipnet_args(state)
    for key, value in expected.items():
        if value is not None and args.get(key) != value:
            raise LmkError(f"{path} is a PIPNet with {key}={args.get(key)}, not {value}")
    args["input_size"] = input_size
    family = get_family("pipnet")
    checkpoint = Checkpoint(
        spec=ModelSpec(family.name, args),
        layout=_resolve_layout(layout, args["num_lms"], path),
        state_dict=state,
        normalisation=family.normalisation,
        crop=family.crop,
        provenance={"origin": "official PIPNet release", "source": str(path)},
    )
    checkpoint.build_model()  # fail now, with the keys named, if the weights do not fit
    return checkpoint


def load_face_alignment_fan(
    path: str | Path, layout: str | Layout | None = None, num_modules: int | None = None
) -> Checkpoint:
    """face-alignment's ``2DFAN4`` weights (``.pth.tar`` or TorchScript ``.zip``).

    FAN's preprocessing is RGB / 255 with no mean/std, and face-alignment's box-to-crop rule.
    """
    path = Path(path)
    state = _bare_state_dict(_read_weights(path), path)
    stacks = sorted({int(k[1 : k.index(".")]) for k in state if k[:1] == "m" and k[1:2].isdigit()})
    if not stacks or "l0.weight" not in state:
        raise LmkError(f"{path} is not a face-alignment FAN state_dict (no m0/l0 layers)")
    found = stacks[-1] + 1
    if num_modules is not None and num_modules != found:
        raise LmkError(f"{path} is a FAN with {found} hourglasses, not {num_modules}")
    num_lms = int(state["l0.weight"].shape[0])
    family = get_family("fan")
    checkpoint = Checkpoint(
        spec=ModelSpec(family.name, {"num_modules": found, "num_lms": num_lms}),
        layout=_resolve_layout(layout, num_lms, path),
        state_dict=state,
        normalisation=family.normalisation,
        crop=family.crop,
        provenance={"origin": "face-alignment release", "source": str(path)},
    )
    checkpoint.build_model()
    return checkpoint


def open_checkpoint(
    path: str | Path, model: str | None = None, layout: str | Layout | None = None, **args: Any
) -> Checkpoint:
    """Any supported checkpoint: an lmk file, or (with ``model`` naming the origin) an official
    PIPNet ``.pth`` or face-alignment FAN file. Fields an lmk file holds come from the file."""
    path = Path(path)
    family = get_family(model) if model is not None else None
    if family is not None and family.importer_suffix == path.suffix.lower():
        importer = family.import_weights()
        assert importer is not None  # a family with an importer suffix has an importer
        return importer(path, layout, **args)  # not a torch file: its own reader
    data = _read_weights(path)
    if _is_lmk(data):
        checkpoint = _lmk_checkpoint(data, path)
        if model is not None and checkpoint.spec.name != model:
            raise LmkError(f"{path} holds a {checkpoint.spec.name} model, not {model}")
        return checkpoint
    if family is not None and family.importer_suffix is not None:
        raise LmkError(
            f"{path} is not an lmk checkpoint; --model {family.name} imports its published "
            f"weights from a {family.importer_suffix} file"
        )
    importer = family.import_weights() if family is not None else None
    if importer is None:
        importable = [
            f"--model {f.name}"
            for f in FAMILIES.values()
            if f.importer is not None and f.importer_suffix is None
        ]
        raise LmkError(
            f"{path} is a bare state_dict; only published weights of {', '.join(importable)} "
            "can be imported that way"
        )
    return importer(path, layout, **args)
