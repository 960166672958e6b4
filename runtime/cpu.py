"""What this CPU is and can do, read once from ``/proc/cpuinfo``.

The runtime needs it to refuse BF16 on a CPU without BF16 instructions (OpenVINO would
emulate them slowly, or not at all); benchmarks need it to name the machine behind a number
(INT8 and BF16 speed hinge on VNNI / AMX). Both read the flags here, so they agree.
"""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")

REPORTED_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
"""Features that change which kernels ONNX Runtime, OpenVINO and PyTorch pick: what a
benchmark result names."""

BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""Either one lets OpenVINO's CPU plugin run BF16 natively."""

INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
"""Any one gives ONNX Runtime's quantized kernels an exact u8 x s8 dot product; without them
(plain AVX2) MLAS's u8s8 GEMM adds pairs of products in saturating 16-bit lanes."""


@lru_cache(maxsize=4)
def _cpuinfo_field(name: str, source: Path = CPUINFO) -> str | None:
    """The value of the first ``name : value`` line of cpuinfo (None where unreadable)."""
    try:
        with source.open(encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def all_cpu_flags(source: Path = CPUINFO) -> set[str]:
    """Every feature flag the kernel lists for this CPU (empty where unknown)."""
    return set((_cpuinfo_field("flags", source) or "").split())


def cpu_flags(source: Path = CPUINFO) -> list[str]:
    """The features from :data:`REPORTED_FLAGS` this CPU has, in that order."""
    present = all_cpu_flags(source)
    return [flag for flag in REPORTED_FLAGS if flag in present]


def cpu_model(source: Path = CPUINFO) -> str:
    """The CPU's marketing name, e.g. ``Intel(R) Xeon(R) Platinum 8480+``."""
    return _cpuinfo_field("model name", source) or platform.processor() or platform.machine()


def has_bf16(source: Path = CPUINFO) -> bool:
    """Whether the CPU computes BF16 natively (AVX512_BF16 or AMX-BF16)."""
    return bool(all_cpu_flags(source) & set(BF16_FLAGS))


def has_int8_dot(source: Path = CPUINFO) -> bool:
    """Whether the CPU has VNNI or AMX-INT8 (:data:`INT8_DOT_FLAGS`)."""
    return bool(all_cpu_flags(source) & set(INT8_DOT_FLAGS))
