"""The runtime is what a deployment box installs (``lmk[cpu]``: numpy, OpenCV, click, tqdm,
ONNX Runtime). Every module of ``lmk.core`` and ``lmk.runtime``, and what ``lmk demo`` needs
for its runtime part, must import with torch, onnx, onnxscript, onnxsim and scipy missing.

The modules are found by walking the package folders (nothing is imported to list them), so a
new module is covered the day it is added. They are imported in one child process whose import
system refuses the blocked packages, as an install without them would.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import lmk.core
import lmk.runtime
from lmk.core.errors import LmkError

BLOCKED = ("torch", "torchvision", "onnx", "onnxscript", "onnxsim", "scipy")

# Installs a meta-path finder that fails every import of a blocked package (and its
# submodules) with ImportError, then imports each named module and reports what failed.
BLOCKER = """
import importlib, json, sys, traceback
BLOCKED = set(sys.argv[1].split(","))

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked (not installed on an lmk[cpu] box)")
        return None

sys.meta_path.insert(0, Blocker())
"""
IMPORT_EACH = """
failed = {}
for module in sys.argv[2:]:
    try:
        importlib.import_module(module)
    except BaseException as exc:
        failed[module] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
leaked = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
print(json.dumps({"failed": failed, "leaked": leaked}))
"""

# The parts of ``lmk demo`` that run without PyTorch (rendering the clip, tracking it,
# scoring it), and the entry point that launches it.
DEMO_RUNTIME_MODULES = ("lmk.demo", "lmk.entry", "lmk.synth", "lmk.synth.video", "lmk.synth.cli")

# Torch-side modules: the blocker must stop these, or it proves nothing.
CONTROLS = ("lmk.models", "lmk.export.exporter")


def _walk(package) -> list[str]:
    found = [package.__name__]
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
        found.append(info.name)
    return found


TORCH_FREE = sorted({*_walk(lmk.core), *_walk(lmk.runtime), *DEMO_RUNTIME_MODULES})


def _child(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + code, ",".join(BLOCKED), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def blocked_imports() -> dict:
    result = _child(IMPORT_EACH, *TORCH_FREE, *CONTROLS)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_walk_finds_every_core_and_runtime_module():
    files = {
        *(p.stem for p in Path(lmk.core.__file__).parent.glob("*.py")),
        *(p.stem for p in Path(lmk.runtime.__file__).parent.glob("*.py")),
    }
    names = {name.rsplit(".", 1)[-1] for name in TORCH_FREE} | {"__init__"}
    assert files <= names
    assert "lmk.core.decode" in TORCH_FREE
    assert "lmk.runtime.session" in TORCH_FREE


@pytest.mark.parametrize("module", TORCH_FREE)
def test_module_imports_without_torch_onnx_or_scipy(blocked_imports, module):
    assert module not in blocked_imports["failed"], blocked_imports["failed"][module]


def test_no_blocked_package_was_loaded(blocked_imports):
    assert blocked_imports["leaked"] == []


@pytest.mark.parametrize("module", CONTROLS)
def test_the_blocker_really_stops_torch_side_modules(blocked_imports, module):
    assert "is blocked" in blocked_imports["failed"][module]


def test_runtime_works_with_torch_blocked():
    """Importing is not enough: the providers and a layout's neighbour table come up, and the
    metrics score a face (the AUC integral is numpy's, not scipy's)."""
    result = _child(
        "import numpy as np, lmk.runtime, lmk.core.layouts, lmk.core.metrics\n"
        "assert 'CPUExecutionProvider' in lmk.runtime.available_providers()\n"
        "print(lmk.core.layouts.get_layout('wflw98').neighbours().merge.shape)\n"
        "print(lmk.core.metrics.summary(np.array([0.01, 0.2]))['auc'] > 0)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["(98,", "1078)", "True"]


def test_missing_onnxruntime_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(LmkError, match=r'pip install "lmk\[cpu\]"'):
        lmk.runtime.require_onnxruntime()


def test_demo_runs_its_runtime_part_without_torch_onnx_or_scipy(tmp_path):
    """``lmk demo`` on an ``lmk[cpu]`` box: it renders, tracks and scores (NME through
    lmk.core.metrics), skipping only the PyTorch parity, and says so."""
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--frames", "4", "--size", "320x240"]
    args += ["--models", "pipnet", "--runs", "1"]
    result = _child("sys.argv = ['lmk', *sys.argv[2:]]\nfrom lmk.entry import lmk\nlmk()\n", *args)
    assert result.returncode == 0, result.stderr
    assert "PyTorch is not installed" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    model = summary["models"]["pipnet"]
    assert model["parity"] is None and "PyTorch is not installed" in model["note"]
    assert model["frames"] == 4 and model["mean_nme"] > 0
