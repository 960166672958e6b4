"""The small models shipped inside the package (trained on SynthFace; see lmk/data/models/README.md)."""

from __future__ import annotations

from pathlib import Path

from lmk.core.errors import LmkError

BUNDLED = {
    "pipnet": "pipnet_mbv2_synth.onnx",
    "hourglass": "hourglass2_synth.onnx",
}


def models_dir() -> Path:
    """Where the bundled files live (``lmk/data/models`` of the installed package)."""
    import lmk

    return Path(lmk.__file__).resolve().parent / "data" / "models"


def bundled_model(name: str = "pipnet", kind: str = "onnx") -> Path:
    """Path of a bundled model: ``kind`` "onnx" (the runtime's file) or "pt" (its checkpoint)."""
    if name not in BUNDLED:
        raise LmkError(f"no bundled model {name!r}; there are {', '.join(BUNDLED)}")
    path = models_dir() / BUNDLED[name]
    if kind == "pt":
        path = path.with_suffix(".pt")
    if not path.is_file():
        raise LmkError(
            f"the bundled model {path.name} is missing from this install ({path.parent})"
        )
    return path
