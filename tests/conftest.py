"""Shared fixtures: the public state_dict facts and small deterministic helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def public_state_dicts() -> dict[str, list[tuple[str, tuple[int, ...]]]]:
    """Key names and shapes, in order, of official PIPNet, torchvision and face-alignment models."""
    raw = json.loads((DATA / "public_state_dicts.json").read_text())
    return {k: [(n, tuple(s)) for n, s in v] for k, v in raw.items() if not k.startswith("_")}
