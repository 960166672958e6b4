"""Latency measurement: warm-up, round-robin rounds (so drift hits every variant alike),
percentiles and throughput.

Why round-robin: on a shared or thermally throttling machine the speed drifts over a run. If
variant A were timed entirely before variant B, the drift would show up as a difference
between them; interleaving them in rounds spreads it over all of them, so ratios taken from one
run are fair even when the absolute numbers wander.

Why a warm-up call at the start of every turn: switching variants costs the next one its
caches and, where the previous one left threads spinning (ONNX Runtime's intra-op pool by
default, OpenMP), its cores. On 2 cores that made one ONNX file measure 2.1x slower right
after another session than on its own. Every ORT session lmk times has spinning off, and each
variant's turn begins with ``turn_warmup`` untimed calls, so a variant is timed after its own
warm-up, never straight after another variant.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np


def summarise(times_ms: list[float]) -> dict[str, float]:
    """p50/p90/p99, mean and min of one variant's call times (ms), and the number of calls."""
    t = np.asarray(times_ms, dtype=np.float64)
    return {
        "p50_ms": float(np.percentile(t, 50)),
        "p90_ms": float(np.percentile(t, 90)),
        "p99_ms": float(np.percentile(t, 99)),
        "mean_ms": float(t.mean()),
        "min_ms": float(t.min()),
        "calls": len(t),
    }


def measure(
    variants: dict[str, Callable[[], object]],
    rounds: int = 5,
    min_calls: int = 20,
    warmup: int = 3,
    min_seconds: float = 0.0,
    turn_warmup: int = 1,
) -> dict[str, dict[str, float]]:
    """Time each variant's call; returns per-variant p50/p90/p99 ms and the number of calls.

    Every variant gets at least ``min_calls`` timed calls and, when ``min_seconds`` > 0, enough
    calls to fill about ``min_seconds`` of timed work (estimated from its fastest warm-up
    call), so a 1 ms variant is sampled as densely as a 100 ms one is long. The calls are
    split evenly over ``rounds`` rounds, each round visiting every variant in turn; each turn
    starts with ``turn_warmup`` untimed calls of that variant.
    """
    if rounds < 1 or min_calls < 1 or turn_warmup < 0:
        raise ValueError("rounds and min_calls must be >= 1, turn_warmup >= 0")
    per_round: dict[str, int] = {}
    for name, fn in variants.items():
        fastest = math.inf
        for _ in range(max(1, warmup)):
            start = time.perf_counter()
            fn()
            fastest = min(fastest, time.perf_counter() - start)
        wanted = min_calls
        if min_seconds > 0:
            wanted = max(wanted, math.ceil(min_seconds / max(fastest, 1e-6)))
        per_round[name] = max(1, math.ceil(wanted / rounds))
    times: dict[str, list[float]] = {name: [] for name in variants}
    round_medians: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            for _ in range(turn_warmup):
                fn()
            this_round = []
            for _ in range(per_round[name]):
                start = time.perf_counter()
                fn()
                this_round.append((time.perf_counter() - start) * 1000.0)
            times[name] += this_round
            round_medians[name].append(float(np.median(this_round)))
    result = {}
    for name, t in times.items():
        row = summarise(t)
        # How far the speed wandered during the run: the spread of the per-round medians.
        # Ratios stay fair under drift (round-robin), absolute numbers less so.
        medians = round_medians[name]
        row["round_spread_pct"] = (max(medians) - min(medians)) / row["p50_ms"] * 100.0
        result[name] = row
    return result
