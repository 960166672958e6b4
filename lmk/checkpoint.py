"""Checkpoints: lmk's own file, plus the official PIPNet and face-alignment FAN releases.

An lmk checkpoint (DESIGN section 4) holds plain data only (model name and arguments, layout,
mean face, input size, normalisation, crop policy, provenance) beside the state_dict, and is
read with ``torch.load(weights_only=True)``: no pickled code runs. Imported checkpoints carry
only weights; the other fields come from their origin's conventions or from arguments.
"""

from __future__ import annotations

import platform
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

import lmk
from lmk.crop import FAN_OFFICIAL_CROP, PIPNET_OFFICIAL_CROP, CropPolicy
from lmk.errors import LmkError
from lmk.fileio import atomic_output
from lmk.layouts import Layout, get_layout
from lmk.models import ModelSpec
from lmk.normalise import IMAGENET, UNIT_RANGE, Normalisation

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


def _read_weights(path: Path) -> Any:
    """torch.load without running pickled code; TorchScript archives give their state_dict."""
    if not path.is_file():
        raise LmkError(f"checkpoint not found: {path}")
    try:
        if _is_torchscript(path):  # face-alignment >= 1.4 ships TorchScript archives
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        raise LmkError(
            f"cannot read checkpoint {path}: {lines[0] if lines else type(exc).__name__}"
        ) from None


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
    data = _read_weights(path)
    if not isinstance(data, Mapping) or not str(data.get("format", "")).startswith(
        "lmk.checkpoint"
    ):
        raise LmkError(
            f"{path} is not an lmk checkpoint; for an official PIPNet or face-alignment file "
            "name its origin (--model pipnet|fan) so it is read as a bare state_dict"
        )
    if data["format"] != FORMAT:
        raise LmkError(
            f"{path}: checkpoint format {data['format']!r} is newer than this lmk ({FORMAT})"
        )
    try:
        return Checkpoint(
            spec=ModelSpec(data["model"], dict(data["model_args"])),
            layout=Layout.from_dict(data["layout"]),
            state_dict=dict(data["state_dict"]),
            normalisation=Normalisation.from_dict(data["normalisation"]),
            crop=CropPolicy.from_dict(data["crop"]),
            provenance=dict(data.get("provenance", {})),
        )
    except KeyError as exc:
        raise LmkError(f"{path}: lmk checkpoint lacks field {exc}") from None


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
    checkpoint = Checkpoint(
        spec=ModelSpec("pipnet", args),
        layout=_resolve_layout(layout, args["num_lms"], path),
        state_dict=state,
        normalisation=IMAGENET,
        crop=PIPNET_OFFICIAL_CROP,
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
    checkpoint = Checkpoint(
        spec=ModelSpec("fan", {"num_modules": found, "num_lms": num_lms}),
        layout=_resolve_layout(layout, num_lms, path),
        state_dict=state,
        normalisation=UNIT_RANGE,
        crop=FAN_OFFICIAL_CROP,
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
    data = _read_weights(path)
    if isinstance(data, Mapping) and str(data.get("format", "")).startswith("lmk.checkpoint"):
        checkpoint = load_checkpoint(path)
        if model is not None and checkpoint.spec.name != model:
            raise LmkError(f"{path} holds a {checkpoint.spec.name} model, not {model}")
        return checkpoint
    if model == "pipnet":
        return load_official_pipnet(path, layout, **args)
    if model == "fan":
        return load_face_alignment_fan(path, layout, **args)
    raise LmkError(
        f"{path} is a bare state_dict; only official PIPNet (--model pipnet) and "
        "face-alignment FAN (--model fan) weights can be imported that way"
    )
