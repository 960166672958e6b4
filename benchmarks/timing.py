"""Latency measurement: warm-up, round-robin rounds (so drift hits every variant alike),
percentiles and throughput."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def measure(
    variants: dict[str, Callable[[], object]], rounds: int = 5, min_calls: int = 20, warmup: int = 3
) -> dict[str, dict[str, float]]:
    """Time each variant's call; returns per-variant p50/p90/p99 ms and the number of calls."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    per_round = max(1, -(-min_calls // rounds))
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            for _ in range(per_round):
                start = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - start) * 1000.0)
    return {
        name: {
            "p50_ms": float(np.percentile(t, 50)),
            "p90_ms": float(np.percentile(t, 90)),
            "p99_ms": float(np.percentile(t, 99)),
            "calls": len(t),
        }
        for name, t in times.items()
    }
