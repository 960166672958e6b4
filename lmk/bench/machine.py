"""Who ran a benchmark: CPU, cores, library versions (and GPU when there is one).

A latency number means nothing without the machine behind it, so every result file carries
this description, and results are filed under a folder named after the machine
(:func:`machine_slug`) so runs on different machines never overwrite each other.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import subprocess
from importlib import metadata

from lmk.runtime.cpu import cpu_flags, cpu_model  # one reader of /proc/cpuinfo, shared


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask: a container's share, not the host's)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _nvidia_smi(query: str) -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (
        out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    )


def gpu_name() -> str | None:
    return _nvidia_smi("name")


def onnxruntime_providers() -> list[str]:
    """The execution providers this onnxruntime build lists (not proof that they load)."""
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def describe() -> dict:
    versions = {}
    for package in (
        "onnxruntime",
        "onnxruntime-gpu",
        "onnxruntime-openvino",
        "torch",
        "onnx",
        "numpy",
        "opencv-python-headless",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    gpu = gpu_name()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "cpu_flags": cpu_flags(),
        "gpu": gpu,
        "gpu_driver": _nvidia_smi("driver_version") if gpu else None,
        "gpu_memory": _nvidia_smi("memory.total") if gpu else None,
        "onnxruntime_providers": onnxruntime_providers(),
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


QUIET_LOAD = 1.5
"""Above this load average (1 minute) from other work, a result is marked as measured while
other work shared the cores."""


def load_note(start: float, end: float, what: str = "times", own: int = 0) -> str:
    """The sentence a result file carries about the machine's load during its run: the two
    load averages, and a warning that absolute ``what`` are skewed and only the same run's
    rows compare when either is above :data:`QUIET_LOAD`; at the end the run's own ``own``
    busy threads are allowed for (its load, not other work's). Measured, never assumed: a
    fixed "loaded machine" sentence once stayed in result files re-run on a quiet machine."""
    note = f"load average {start:.1f} at the start, {end:.1f} at the end"
    if own:
        note += f" (this run's own {own} thread{'s' if own > 1 else ''} included)"
    if start <= QUIET_LOAD and end <= QUIET_LOAD + own:
        return f"Quiet machine: {note}."
    return (
        f"**Not a quiet machine**: {note}, above {QUIET_LOAD} from other work: it shared the "
        f"cores, so absolute {what} are noisy and worse than the machine alone gives; compare "
        "rows of this run, not machines."
    )
