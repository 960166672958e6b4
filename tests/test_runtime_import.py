"""The runtime is what a deployment box installs: it must import without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lmk.errors import LmkError


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_runtime_imports_with_torch_blocked():
    result = _run(
        "import sys; sys.modules['torch'] = None\n"
        "import lmk.runtime, lmk.layouts, lmk.crop\n"
        "assert 'CPUExecutionProvider' in lmk.runtime.available_providers()\n"
        "table = lmk.layouts.get_layout('wflw98').neighbours()\n"
        "print(table.merge.shape)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(98, 1078)"


def test_torch_side_really_needs_torch():
    # The blocking above is real: the same trick stops the torch modules from importing.
    result = _run("import sys; sys.modules['torch'] = None\nimport lmk.decode")
    assert result.returncode != 0
    assert "torch" in result.stderr


def test_missing_onnxruntime_names_the_extra_to_install(monkeypatch):
    import lmk.runtime

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(LmkError, match=r'pip install "lmk\[cpu\]"'):
        lmk.runtime.require_onnxruntime()
