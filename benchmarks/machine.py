"""Who ran a benchmark: CPU, cores, library versions (and GPU when there is one)."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import subprocess
from importlib import metadata


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (
        out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    )


def describe() -> dict:
    versions = {}
    for package in (
        "onnxruntime",
        "onnxruntime-gpu",
        "torch",
        "onnx",
        "numpy",
        "opencv-python-headless",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "gpu": gpu_name(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def machine_slug(info: dict) -> str:
    """A folder name for results, e.g. ``cpu-amd-epyc-2c`` or the GPU's name."""
    if info.get("gpu"):
        return re.sub(r"[^a-z0-9]+", "-", info["gpu"].lower()).strip("-")
    cpu = re.sub(r"\(.*?\)|cpu|processor|@.*", "", info["cpu"].lower())
    return f"cpu-{re.sub(r'[^a-z0-9]+', '-', cpu).strip('-')}-{info['cores']}c"
