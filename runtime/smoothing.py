"""One Euro filter (Casiez, Roussel and Vogel, CHI 2012) for landmark jitter.

A low-pass filter whose cutoff rises with speed: still faces are smoothed hard, fast motion
passes with little lag. Vectorised over all landmarks of a face; positions are in pixels, so
``min_cutoff`` (Hz) and ``beta`` (per pixel/s) are scaled by the face size by the caller.
"""

from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Filters successive arrays of the same shape sampled ``dt`` seconds apart."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0):
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError("One Euro needs min_cutoff > 0, d_cutoff > 0 and beta >= 0")
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    def reset(self) -> None:
        self._x = self._dx = None

    def __call__(self, x: np.ndarray, dt: float, scale: float = 1.0) -> np.ndarray:
        """Filter ``x``; ``scale`` (e.g. the face's size in pixels / 100) makes ``beta``
        size-independent, so a near face and a far one are smoothed alike."""
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._x.shape != x.shape or dt <= 0:
            self._x, self._dx = x.copy(), np.zeros_like(x)
            return x
        dx = (x - self._x) / dt
        self._dx = self._dx + _alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx) / max(scale, 1e-6)
        self._x = self._x + _alpha(cutoff, dt) * (x - self._x)
        return self._x.copy()
