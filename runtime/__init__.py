"""lmk.runtime: run exported lmk ONNX files with ONNX Runtime. Never imports torch.

A deployment box installs ``pip install "lmk[cpu]"``, ``"lmk[gpu]"`` or ``"lmk[openvino]"``;
this package needs numpy, OpenCV and one of the three ONNX Runtime builds, nothing from the
training side.
"""

from __future__ import annotations

from types import ModuleType

from lmk.core.errors import LmkError

INSTALL_HINT = (
    'ONNX Runtime is not installed: pip install "lmk[cpu]" (CPU), "lmk[gpu]" (CUDA/TensorRT) '
    'or "lmk[openvino]" (OpenVINO); the three builds cannot share an environment'
)


def require_onnxruntime() -> ModuleType:
    """The ``onnxruntime`` module, or an error naming the extra to install."""
    try:
        import onnxruntime
    except ImportError:
        raise LmkError(INSTALL_HINT) from None
    return onnxruntime


def available_providers() -> list[str]:
    """ONNX Runtime's execution providers in this environment (CPU always among them)."""
    return list(require_onnxruntime().get_available_providers())


_LAZY = {
    "LandmarkSession": "lmk.runtime.api",
    "InferenceModel": "lmk.runtime.session",
    "RuntimeOptions": "lmk.runtime.session",
    "Face": "lmk.runtime.faces",
    "FaceBox": "lmk.runtime.faces",
    "bundled_model": "lmk.runtime.bundled",
}


def __getattr__(name: str):
    """The API names, imported on first use (``import lmk.runtime`` itself stays light)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lmk.runtime' has no attribute {name!r}")


__all__ = [
    "INSTALL_HINT",
    "Face",
    "FaceBox",
    "InferenceModel",
    "LandmarkSession",
    "RuntimeOptions",
    "available_providers",
    "bundled_model",
    "require_onnxruntime",
]
