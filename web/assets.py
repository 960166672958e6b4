"""What the page is made of: its own files, the onnxruntime-web build files and the models.

One table (:func:`site_files`) says which file goes where in the site, so that the local
server and the static export serve exactly the same tree:

- ``/`` the page (``web/page/``), ``/ort/`` onnxruntime-web's ES module and WASM files,
- ``/models/`` the chosen ``.onnx`` files (landmark files and at most one detector file),
  with ``/models/index.json`` listing them and their kind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lmk.core.errors import LmkError

WEB_DIR = Path(__file__).resolve().parent
PAGE_DIR = WEB_DIR / "page"
ORT_PACKAGE = WEB_DIR / "node_modules" / "onnxruntime-web"
PAGE_SUFFIXES = (".html", ".js", ".css")
ORT_FILES = (
    # The WASM EP (SIMD + threads): the default build.
    "ort.wasm.min.mjs",
    "ort-wasm-simd-threaded.mjs",
    "ort-wasm-simd-threaded.wasm",
    # The WebGPU EP, loaded only when the browser offers an adapter.
    "ort.webgpu.min.mjs",
    "ort-wasm-simd-threaded.asyncify.mjs",
    "ort-wasm-simd-threaded.asyncify.wasm",
)
INSTALL_HINT = "run `npm ci --prefix web` in the lmk checkout (make web-deps)"


def pinned_ort_version() -> str:
    """The onnxruntime-web version web/package.json pins."""
    package = json.loads((WEB_DIR / "package.json").read_text(encoding="utf-8"))
    return str(package["dependencies"]["onnxruntime-web"])


def ort_dist() -> Path:
    """The installed onnxruntime-web ``dist`` folder, checked against the pinned version."""
    installed = ORT_PACKAGE / "package.json"
    if not installed.is_file():
        raise LmkError(
            f"onnxruntime-web is not installed in {WEB_DIR / 'node_modules'}; {INSTALL_HINT}"
        )
    version = json.loads(installed.read_text(encoding="utf-8")).get("version")
    pinned = pinned_ort_version()
    if version != pinned:
        raise LmkError(
            f"onnxruntime-web {version} is installed but web/package.json pins {pinned}; {INSTALL_HINT}"
        )
    dist = ORT_PACKAGE / "dist"
    missing = [name for name in ORT_FILES if not (dist / name).is_file()]
    if missing:
        raise LmkError(f"onnxruntime-web lacks {', '.join(missing)} in {dist}; {INSTALL_HINT}")
    return dist


@dataclass(frozen=True)
class SiteModel:
    """A model the page offers: its name in the site and the file it comes from."""

    name: str
    path: Path
    model: str
    """What the file's metadata says it is (``lmk.model``, precision), for the listing."""
    kind: str = "landmarks"
    """``lmk.kind``: the page puts a ``detector`` file in its detector menu."""


def check_models(paths: list[Path]) -> list[SiteModel]:
    """Each file must be an lmk landmark file (the same metadata checks as lmk-run, through
    ONNX Runtime), and no two may share a name in the site."""
    from lmk.runtime.session import InferenceModel, RuntimeOptions

    models: list[SiteModel] = []
    for path in paths:
        if not path.is_file():
            raise LmkError(f"model not found: {path}")
        info = InferenceModel(path, RuntimeOptions(ep="cpu", threads=1)).info
        if info.decode == "none":
            raise LmkError(
                f"{path} holds raw heads (--decode none); the page runs files with the decode "
                "inside: export it with --decode fused"
            )
        _refuse_same_name(models, path)
        models.append(SiteModel(path.name, path, f"{info.model} {info.precision}"))
    return models


def _refuse_same_name(models: list[SiteModel], path: Path) -> None:
    if any(m.name == path.name for m in models):
        raise LmkError(
            f"two models are named {path.name}; rename one (the page lists files by name)"
        )


def check_detector(path: Path, models: list[SiteModel]) -> SiteModel:
    """An lmk BlazeFace detector file (``lmk models fetch blazeface``), checked as lmk-run
    opens it; MediaPipe's ``.tflite`` is refused: the page runs the file with the decode."""
    from lmk.runtime.blazeface_detector import BlazeFaceOnnxDetector

    if not path.is_file():
        raise LmkError(f"detector not found: {path}")
    if path.suffix.lower() == ".tflite":
        raise LmkError(
            f"{path} is MediaPipe's .tflite; the page runs lmk's detector file: "
            "`lmk models fetch blazeface` writes it (needs the export extra)"
        )
    detector = BlazeFaceOnnxDetector(path)
    _refuse_same_name(models, path)
    return SiteModel(path.name, path, f"blazeface {detector.input_size} px", "detector")


def default_detector() -> Path | None:
    """The cached lmk BlazeFace detector file (``lmk models fetch blazeface``), if any: the
    page then detects with it, as lmk-run's ``--detector auto`` prefers it."""
    from lmk.runtime.public_models import find_detector

    path = find_detector("blazeface")
    return path if path is not None and path.suffix == ".onnx" else None


def models_index(models: list[SiteModel]) -> bytes:
    """``/models/index.json``: what the page's model menu lists, in the order given."""
    rows = [
        {"name": m.name, "model": m.model, "kind": m.kind, "bytes": m.path.stat().st_size}
        for m in models
    ]
    return (json.dumps(rows, indent=1) + "\n").encode("utf-8")


def site_files(models: list[SiteModel]) -> dict[str, Path]:
    """Every file of the site by its path in the site (``index.html``, ``ort/...``,
    ``models/...``); ``models/index.json`` is generated, see :func:`models_index`."""
    files = {
        p.name: p for p in sorted(PAGE_DIR.iterdir()) if p.is_file() and p.suffix in PAGE_SUFFIXES
    }
    dist = ort_dist()
    files.update({f"ort/{name}": dist / name for name in ORT_FILES})
    files.update({f"models/{m.name}": m.path for m in models})
    return files


def default_models() -> list[Path]:
    """The bundled models (see :mod:`lmk.runtime.bundled`), the default of ``lmk web``."""
    from lmk.runtime.bundled import BUNDLED, bundled_model

    return [bundled_model(name) for name in BUNDLED]
